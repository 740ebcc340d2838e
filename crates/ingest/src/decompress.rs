//! Inflate gzip (every member of a multi-member file) with libdeflate, and zstd; hand over the
//! files inside zip and tar archives one by one; pass plain JSON through.
//!
//! libdeflate inflates a whole member in one call at several GB/s, but needs the output size up
//! front and, in its plain API, silently stops after the first member. We call its `_ex` API,
//! which reports the input consumed, loop over members, and grow the output buffer from the
//! ISIZE hint in the trailer (a hint modulo 2^32, never trusted) up to a hard limit.
//!
//! A damaged stream is not given up wholesale: the caller gets the bytes inflated before the
//! damage (through a streaming inflater) so that complete records in them can be kept.

use std::io::Read;
use std::ptr::NonNull;

use libdeflate_sys as sys;

/// Why inflating failed.
#[derive(Debug)]
pub enum InflateError {
    /// Corrupt or truncated data; `prefix` holds what could be inflated before the damage.
    Corrupt { reason: String, prefix: Vec<u8> },
    /// The output would exceed the limit.
    TooLarge,
}

/// The first output buffer of a member, in times its compressed size (CloudTrail inflates
/// about 6-10 times; a member that needs more is inflated again into a larger buffer).
const FIRST_RATIO: usize = 32;

/// The most deflate can expand its input.
const MAX_DEFLATE_RATIO: usize = 1032;

/// Layers of gzip inflated, one inside the other: a trail file gzipped again on its way (by a
/// copy that compressed what it stored) is read; deeper is no trail file.
pub const MAX_LAYERS: usize = 3;

/// Whether `data` starts with the gzip magic bytes.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// Whether `data` starts with the zstd frame magic bytes.
pub fn is_zstd(data: &[u8]) -> bool {
    data.starts_with(&[0x28, 0xB5, 0x2F, 0xFD])
}

/// The archive or compression format `data` is in, of those trailql does not open; `None` for
/// what starts as JSON does (text that happens to hold `ustar` at a tar header's offset).
pub fn archive_format(data: &[u8]) -> Option<&'static str> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'[')) {
        None
    } else if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        Some("zip")
    } else if data.starts_with(b"BZh") && data.get(3).is_some_and(u8::is_ascii_digit) {
        Some("bzip2")
    } else if data.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else if data.starts_with(&[b'7', b'z', 0xBC, 0xAF, 0x27, 0x1C]) {
        Some("7z")
    } else if data.get(257..262) == Some(b"ustar") {
        Some("tar")
    } else {
        None
    }
}

/// Whether trailql reads the members of an archive of this format (of [`archive_format`]'s).
pub fn opens_archive(format: &str) -> bool {
    matches!(format, "zip" | "tar")
}

/// Why one member of an archive could not be read.
#[derive(Debug)]
pub enum MemberError {
    /// It holds more than the limit.
    TooLarge,
    /// Corrupt, encrypted, compressed in a way not read, or cut off.
    Unreadable(String),
}

/// Hand every regular file of the zip or tar `data` whose path in the archive is `wanted` to
/// `each`, in the archive's order, with that path: a zip member inflated into `buf` (deflate or stored, its checksum
/// checked, at most `limit` bytes), a tar member as a slice of `data`. A member that cannot be
/// read is handed over as the reason, and the next one is read. An archive whose listing cannot
/// be read (a zip without its central directory, a damaged tar header) is an error, after the
/// members before the damage were handed over.
pub fn for_each_member(
    format: &str,
    data: &[u8],
    limit: usize,
    buf: &mut Vec<u8>,
    wanted: impl Fn(&str) -> bool,
    mut each: impl FnMut(&str, Result<&[u8], MemberError>),
) -> Result<(), String> {
    if format == "zip" {
        let mut zip =
            zip::ZipArchive::new(std::io::Cursor::new(data)).map_err(|e| e.to_string())?;
        for i in 0..zip.len() {
            let name = zip
                .name_for_index(i)
                .and_then(Result::ok)
                .map_or_else(|| format!("#{}", i + 1), |n| n.into_owned());
            if !wanted(&name) {
                continue; // not inflated either
            }
            let mut file = match zip.by_index(i) {
                Ok(file) => file,
                Err(e) => {
                    each(&name, Err(MemberError::Unreadable(e.to_string())));
                    continue;
                }
            };
            if !file.is_file() {
                continue;
            }
            buf.clear();
            let read = (&mut file).take(limit as u64 + 1).read_to_end(buf);
            drop(file);
            match read {
                Err(e) => each(&name, Err(MemberError::Unreadable(e.to_string()))),
                Ok(_) if buf.len() > limit => each(&name, Err(MemberError::TooLarge)),
                Ok(_) => each(&name, Ok(buf)),
            }
        }
        return Ok(());
    }
    let mut tar = tar::Archive::new(std::io::Cursor::new(data));
    for entry in tar.entries_with_seek().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        if !matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        // `tar -C dir .` names every member `./...`.
        let name = path.trim_start_matches("./");
        if !wanted(name) {
            continue;
        }
        let start = usize::try_from(entry.raw_file_position()).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(entry.size()).unwrap_or(usize::MAX));
        if end - start > limit {
            each(name, Err(MemberError::TooLarge));
        } else if let Some(member) = data.get(start..end) {
            each(name, Ok(member));
        } else {
            let reason = "cut off: the archive ends inside it".to_string();
            each(name, Err(MemberError::Unreadable(reason)));
            break;
        }
    }
    Ok(())
}

/// Decompress the zstd frames of `data` into `out` (cleared first), up to `limit` bytes.
pub fn unzstd(data: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
    use std::io::Read;
    out.clear();
    let mut decoder = match zstd::stream::read::Decoder::with_buffer(data) {
        Ok(decoder) => decoder.take(limit as u64 + 1),
        Err(e) => {
            return Err(InflateError::Corrupt {
                reason: e.to_string(),
                prefix: Vec::new(),
            });
        }
    };
    // What is read before the damage is kept, as for gzip.
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) => {
                return Err(InflateError::Corrupt {
                    reason: e.to_string(),
                    prefix: std::mem::take(out),
                });
            }
        }
    }
    if out.len() > limit {
        return Err(InflateError::TooLarge);
    }
    Ok(())
}

/// A reusable libdeflate decompressor (one per thread).
pub struct Inflater {
    raw: NonNull<sys::libdeflate_decompressor>,
}

// SAFETY: a libdeflate decompressor holds no thread-affine state; it is used by one thread at a
// time through `&mut self`.
unsafe impl Send for Inflater {}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: `raw` came from libdeflate_alloc_decompressor and is freed once.
        unsafe { sys::libdeflate_free_decompressor(self.raw.as_ptr()) }
    }
}

impl Inflater {
    pub fn new() -> Self {
        // SAFETY: plain allocation; a null result is handled.
        let raw = unsafe { sys::libdeflate_alloc_decompressor() };
        Self {
            raw: NonNull::new(raw).expect("libdeflate could not allocate a decompressor"),
        }
    }

    /// Inflate all gzip members of `data` into `out` (cleared first), up to `limit` bytes. What
    /// inflates to gzip again (a file compressed twice on its way) is inflated again, up to
    /// [`MAX_LAYERS`] deep.
    pub fn gunzip(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        self.gunzip_members(data, out, limit)?;
        for _ in 1..MAX_LAYERS {
            if !is_gzip(out) {
                break;
            }
            let outer = std::mem::take(out);
            self.gunzip_members(&outer, out, limit)?;
        }
        Ok(())
    }

    fn gunzip_members(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        out.clear();
        let mut pos = 0;
        while pos < data.len() {
            let member = &data[pos..];
            if !is_gzip(member) {
                if member.iter().all(|&b| b == 0) {
                    break; // zero padding after the last member, as gzip(1) tolerates
                }
                return Err(self.corrupt(
                    data,
                    limit,
                    "bytes after the last gzip member are not gzip",
                ));
            }
            // ISIZE of a single-member file is its size mod 2^32: a good first guess, but one
            // read before the member is checked. In a damaged file (truncated, or with bytes
            // after the last member) the last four bytes are anything, and a 100-byte file
            // could have a buffer of gigabytes zeroed (and kept by this thread) for it. So
            // the first buffer is at most `FIRST_RATIO` times the input, and the hint is
            // trusted further only once the member has needed more and only as far as deflate
            // can expand (1032:1).
            let hint = u32::from_le_bytes(data[data.len() - 4..].try_into().unwrap_or([0; 4]));
            let hint = hint as usize;
            let most = member.len().saturating_mul(MAX_DEFLATE_RATIO);
            let mut want = hint
                .min(member.len().saturating_mul(FIRST_RATIO))
                .max(member.len() * 4)
                .max(4096);
            loop {
                let start = out.len();
                let room = want.min(limit.saturating_sub(start));
                // Inflated into the spare capacity as it is: zeroing it first cost a pass
                // over every byte of the output (2% of a conversion's instructions).
                out.reserve(room);
                let (mut used_in, mut used_out) = (0usize, 0usize);
                // SAFETY: the pointers and lengths describe live, non-overlapping buffers, and
                // `room` bytes of spare capacity were reserved. What the spare capacity held
                // does not matter: libdeflate's output depends on its input only (its own
                // gzip tool inflates into fresh `malloc`ed memory).
                let ret = unsafe {
                    sys::libdeflate_gzip_decompress_ex(
                        self.raw.as_ptr(),
                        member.as_ptr().cast(),
                        member.len(),
                        out.spare_capacity_mut().as_mut_ptr().cast(),
                        room,
                        &mut used_in,
                        &mut used_out,
                    )
                };
                match ret {
                    sys::libdeflate_result_LIBDEFLATE_SUCCESS => {
                        // SAFETY: libdeflate wrote `used_out <= room` bytes after `start`.
                        unsafe { out.set_len(start + used_out) };
                        pos += used_in;
                        break;
                    }
                    sys::libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => {
                        out.truncate(start);
                        if start + room >= limit {
                            return Err(InflateError::TooLarge);
                        }
                        want = if hint > room && hint <= most {
                            hint
                        } else {
                            room.saturating_mul(2)
                        };
                    }
                    _ => {
                        out.truncate(start);
                        return Err(self.corrupt(
                            data,
                            limit,
                            "truncated or corrupt deflate stream",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The error for damaged data, with the longest prefix a streaming inflater recovers (up
    /// to `limit` bytes, as for whole files).
    fn corrupt(&self, data: &[u8], limit: usize, reason: &str) -> InflateError {
        let mut prefix = Vec::new();
        let mut reader = flate2::read::MultiGzDecoder::new(data);
        let mut chunk = [0u8; 64 * 1024];
        while prefix.len() < limit {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => prefix.extend_from_slice(&chunk[..n.min(limit - prefix.len())]),
            }
        }
        InflateError::Corrupt {
            reason: reason.to_string(),
            prefix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn zstd_frames_are_decompressed_up_to_the_limit_and_damage_keeps_what_came_before() {
        let text = b"{\"Records\":[]}".repeat(1000);
        let mut data = zstd::bulk::compress(&text[..7000], 3).unwrap();
        data.extend(zstd::bulk::compress(&text[7000..], 3).unwrap());
        assert!(is_zstd(&data));
        let mut out = Vec::new();
        unzstd(&data, &mut out, 1 << 20).unwrap();
        assert_eq!(out, text);
        assert!(matches!(
            unzstd(&data, &mut out, text.len() - 1),
            Err(InflateError::TooLarge)
        ));
        let cut = &data[..data.len() - 20];
        match unzstd(cut, &mut out, 1 << 20) {
            Err(InflateError::Corrupt { prefix, .. }) => {
                assert!(prefix.len() >= 7000 && text.starts_with(&prefix))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn archives_trailql_does_not_open_are_named_by_their_first_bytes() {
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(archive_format(&tar), Some("tar"));
        assert_eq!(archive_format(b"PK\x03\x04rest"), Some("zip"));
        assert_eq!(archive_format(b"BZh91AY&SY"), Some("bzip2"));
        assert_eq!(archive_format(b"\xFD7zXZ\x00\x00"), Some("xz"));
        assert_eq!(archive_format(b"{\"Records\":[]}"), None);
        let mut json = b"{\"Records\":[{\"userAgent\":\"".to_vec();
        json.resize(257, b'a');
        json.extend_from_slice(b"ustard\"}]}");
        assert_eq!(archive_format(&json), None);
        assert_eq!(archive_format(b"BZh is no bzip2"), None);
    }

    #[test]
    fn a_file_gzipped_twice_is_inflated_twice_and_no_deeper_than_the_layers_allowed() {
        let mut data = b"{\"Records\":[]}".to_vec();
        let mut out = Vec::new();
        for layer in 1..=MAX_LAYERS + 1 {
            data = gz(&data);
            Inflater::new().gunzip(&data, &mut out, 1 << 20).unwrap();
            if layer <= MAX_LAYERS {
                assert_eq!(out, b"{\"Records\":[]}", "{layer} layers");
            } else {
                assert!(is_gzip(&out), "{layer} layers");
            }
        }
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflates_every_member_of_a_multi_member_file() {
        let mut data = gz(b"{\"Records\":[");
        data.extend(gz(b"1,2,"));
        data.extend(gz(b"3]}"));
        let mut out = Vec::new();
        Inflater::new().gunzip(&data, &mut out, 1 << 20).unwrap();
        assert_eq!(out, b"{\"Records\":[1,2,3]}");
    }

    #[test]
    fn grows_past_a_lying_size_hint_and_stops_at_the_limit() {
        let big = vec![b'x'; 1 << 20];
        let mut data = gz(&big);
        let n = data.len();
        data[n - 4..].copy_from_slice(&16u32.to_le_bytes()); // ISIZE says 16 bytes
        let mut out = Vec::new();
        // the trailer's ISIZE is part of the checksummed member, so a lie is caught as corrupt
        // or, with a true ISIZE, a small limit is enforced:
        let ok = gz(&big);
        Inflater::new().gunzip(&ok, &mut out, 2 << 20).unwrap();
        assert_eq!(out.len(), big.len());
        assert!(matches!(
            Inflater::new().gunzip(&ok, &mut out, 1000),
            Err(InflateError::TooLarge)
        ));
        assert!(Inflater::new().gunzip(&data, &mut out, 2 << 20).is_err());
    }

    #[test]
    fn a_damaged_files_last_bytes_are_not_trusted_as_its_size() {
        // Bytes after the member end the file: its last four read as ISIZE say 2 GiB. Before
        // the member is found damaged, no buffer of that size may be zeroed.
        let mut data = gz(b"{\"Records\":[]}");
        data.extend_from_slice(b"\xff\xff\xff\x7f");
        let mut out = Vec::new();
        let damaged = Inflater::new().gunzip(&data, &mut out, 1 << 30);
        assert!(matches!(damaged, Err(InflateError::Corrupt { .. })));
        assert!(out.capacity() < 1 << 20, "{} bytes", out.capacity());
        // A file that inflates beyond the first guess (about 1000:1 here) is still read whole.
        let repetitive = vec![b'x'; 4 << 20];
        Inflater::new()
            .gunzip(&gz(&repetitive), &mut out, 1 << 30)
            .unwrap();
        assert_eq!(out, repetitive);
    }

    #[test]
    fn a_damaged_prefix_is_kept_up_to_the_limit() {
        let text = vec![b'y'; 1 << 20];
        let mut data = gz(&text);
        data.truncate(data.len() - 2);
        match Inflater::new().corrupt(&data, 1000, "cut") {
            InflateError::Corrupt { prefix, .. } => assert_eq!(prefix.len(), 1000),
            other => panic!("expected corrupt, got {other:?}"),
        }
    }

    #[test]
    fn truncated_stream_is_corrupt_and_keeps_a_prefix() {
        let text: Vec<u8> = (0..20000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let data = gz(&text);
        let cut = &data[..data.len() / 2];
        let mut out = Vec::new();
        match Inflater::new().gunzip(cut, &mut out, 1 << 24) {
            Err(InflateError::Corrupt { prefix, .. }) => {
                assert!(!prefix.is_empty());
                assert!(text.starts_with(&prefix));
            }
            other => panic!("expected corrupt, got {other:?}"),
        }
    }

    /// The members `for_each_member` hands over, but for `.txt` ones: name and text, or the
    /// error's words.
    fn members(
        format: &str,
        data: &[u8],
        limit: usize,
    ) -> (Vec<(String, String)>, Result<(), String>) {
        let mut seen = Vec::new();
        let wanted = |name: &str| !name.ends_with(".txt");
        let listed = for_each_member(
            format,
            data,
            limit,
            &mut Vec::new(),
            wanted,
            |name, read| {
                let what = match read {
                    Ok(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    Err(MemberError::TooLarge) => "too large".into(),
                    Err(MemberError::Unreadable(reason)) => format!("unreadable: {reason}"),
                };
                seen.push((name.to_string(), what));
            },
        );
        (seen, listed)
    }

    fn zip_of(members: &[(&str, &[u8], zip::CompressionMethod)]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        out.add_directory("logs/", zip::write::SimpleFileOptions::default())
            .unwrap();
        for &(name, data, method) in members {
            let options = zip::write::SimpleFileOptions::default().compression_method(method);
            out.start_file(name, options).unwrap();
            out.write_all(data).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    #[test]
    fn zip_members_are_read_stored_or_deflated_and_a_damaged_one_does_not_stop_the_rest() {
        use zip::CompressionMethod::{Deflated, Stored};
        let data = zip_of(&[
            ("logs/a.json", b"{\"Records\":[]}", Deflated),
            ("logs/b.json", b"BBBBBBBBBBBBBBBBBBBBBBBB", Stored),
            ("logs/c.json", b"{}", Deflated),
            ("logs/read-me.txt", b"not wanted", Deflated),
        ]);
        let (seen, listed) = members("zip", &data, 1 << 20);
        assert_eq!(listed, Ok(()));
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["logs/a.json", "logs/b.json", "logs/c.json"],
            "no directory"
        );
        assert_eq!(seen[0].1, "{\"Records\":[]}");
        assert_eq!(seen[1].1, "BBBBBBBBBBBBBBBBBBBBBBBB");
        // One byte of the stored member changed: its checksum fails, the next is read.
        let mut damaged = data.clone();
        let at = damaged.windows(4).position(|w| w == b"BBBB").unwrap();
        damaged[at] = b'X';
        let (seen, listed) = members("zip", &damaged, 1 << 20);
        assert_eq!(listed, Ok(()));
        assert!(
            seen[1].1.starts_with("unreadable: ") && seen[1].1.contains("checksum"),
            "{seen:?}"
        );
        assert_eq!(seen[2], ("logs/c.json".to_string(), "{}".to_string()));
        // A member above the limit is named, not read.
        let (seen, _) = members("zip", &data, 20);
        assert_eq!(seen[1].1, "too large");
        assert_eq!(seen[0].1, "{\"Records\":[]}");
        // Cut before its central directory: an error, nothing handed over.
        let (seen, listed) = members("zip", &data[..data.len() / 2], 1 << 20);
        assert!(seen.is_empty() && listed.is_err(), "{seen:?} {listed:?}");
    }

    #[test]
    fn tar_members_are_slices_named_without_a_leading_dot_and_a_cut_off_one_ends_the_listing() {
        let mut out = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("./logs/a.json", &b"AAAA"[..]),
            ("./logs/b.json", &[b'B'; 2000][..]),
            ("./logs/notes.txt", &b"not wanted"[..]),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            out.append_data(&mut header, name, data).unwrap();
        }
        let data = out.into_inner().unwrap();
        assert_eq!(archive_format(&data), Some("tar"));
        let (seen, listed) = members("tar", &data, 1 << 20);
        assert_eq!(listed, Ok(()));
        assert_eq!(seen.len(), 2, "nothing unwanted");
        assert_eq!(seen[0], ("logs/a.json".to_string(), "AAAA".to_string()));
        assert_eq!(seen[1].1.len(), 2000);
        // Cut inside the second member: the first is read, the second named as cut off.
        let (seen, listed) = members("tar", &data[..512 * 3 + 100], 1 << 20);
        assert_eq!(listed, Ok(()));
        assert_eq!(seen[0].1, "AAAA");
        assert_eq!(seen[1].0, "logs/b.json");
        assert!(seen[1].1.contains("cut off"), "{seen:?}");
    }
}
