//! The parallel ingest pipeline: fetch (async, bounded by bytes in flight) → inflate and decode
//! (rayon workers, one reusable decoder each) → record batches and per-file reports.
//!
//! Memory is bounded by settings, not by the corpus: at most `read_ahead_bytes` of fetched
//! files wait for a worker, each worker holds one inflated file and one batch under
//! construction, and the output channel holds a few batches.

use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use futures::StreamExt;
use rayon::prelude::*;
use tokio::sync::{Semaphore, mpsc};

use crate::decode::{
    BatchBuilder, Decoded, Decoder, documents, event_spans, looks_like_json_lines,
};
use crate::decompress::{
    InflateError, Inflater, MemberError, archive_format, for_each_member, is_gzip, is_zstd,
    opens_archive, unzstd,
};
use crate::source::{FileKind, classify};
use crate::{IngestError, InputFile};

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Worker threads (CPU work).
    pub threads: usize,
    /// Rows per record batch.
    pub batch_size: usize,
    /// Largest inflated file accepted, in bytes (a guard against gzip bombs).
    pub max_file_size: usize,
    /// Bytes of fetched, not yet decoded files allowed in memory.
    pub read_ahead_bytes: usize,
    /// Object-store requests in flight.
    pub fetch_concurrency: usize,
    /// Decode only these top-level fields (bit `i` for `RECORD[i]`), the others left null:
    /// for queries that read a few columns. `None` (conversion) decodes every field.
    pub decode_only: Option<u64>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            batch_size: 8192,
            max_file_size: 2 << 30,
            read_ahead_bytes: 64 << 20,
            fetch_concurrency: 32,
            decode_only: None,
        }
    }
}

/// Inflated files above this size are split into runs of events decoded in parallel.
const SPLIT_ABOVE: usize = 4 << 20;
/// Size of one run of events when splitting.
const SPLIT_RUN: usize = 2 << 20;

/// What the pipeline hands out.
#[derive(Debug)]
pub enum Message {
    Batch(RecordBatch),
    File(FileReport),
}

/// How one file went.
#[derive(Debug)]
pub struct FileReport {
    pub file: String,
    pub bytes_read: u64,
    pub bytes_inflated: u64,
    pub records: usize,
    /// Empty when the file was read whole. With `records == 0`, the file was skipped.
    pub errors: Vec<IngestError>,
}

/// Start ingesting `files`; batches and reports arrive on the returned channel, which closes
/// when every file is done. Works inside or outside a tokio runtime.
pub fn start(files: Vec<InputFile>, options: IngestOptions) -> mpsc::Receiver<Message> {
    let threads = options.threads.max(1);
    let (out_tx, out_rx) = mpsc::channel(threads * 2);
    let (file_tx, file_rx) = mpsc::channel::<Fetched>(threads * 2);
    let file_rx = Arc::new(Mutex::new(file_rx));

    let fetch_options = options.clone();
    std::thread::Builder::new()
        .name("trailql-fetch".into())
        .spawn(move || fetch_all(files, fetch_options, file_tx))
        .expect("spawn the fetch thread");

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("trailql-decode-{i}"))
        .build()
        .expect("build the decode thread pool");
    for _ in 0..threads {
        let (rx, tx, options) = (file_rx.clone(), out_tx.clone(), options.clone());
        pool.spawn(move || decode_worker(&rx, &tx, &options));
    }
    out_rx
}

struct Fetched {
    file: InputFile,
    bytes: Result<bytes::Bytes, IngestError>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

fn fetch_all(files: Vec<InputFile>, options: IngestOptions, tx: mpsc::Sender<Fetched>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("start the fetch runtime");
    let budget_kib = (options.read_ahead_bytes >> 10).clamp(1, u32::MAX as usize >> 1);
    let budget = Arc::new(Semaphore::new(budget_kib));
    runtime.block_on(async move {
        let fetches = futures::stream::iter(files).map(|file| {
            let budget = budget.clone();
            async move {
                let cost = ((file.size >> 10) as usize + 1).min(budget_kib) as u32;
                let permit = budget.acquire_many_owned(cost).await.expect("never closed");
                let bytes = file.read().await;
                Fetched {
                    file,
                    bytes,
                    _permit: permit,
                }
            }
        });
        let mut fetches = fetches.buffered(options.fetch_concurrency.max(1));
        while let Some(fetched) = fetches.next().await {
            if tx.send(fetched).await.is_err() {
                break; // the consumer went away
            }
        }
    });
}

fn decode_worker(
    rx: &Mutex<mpsc::Receiver<Fetched>>,
    tx: &mpsc::Sender<Message>,
    options: &IngestOptions,
) {
    let mut decoder = Decoder::new().decoding_only(options.decode_only);
    let mut inflater = Inflater::new();
    let mut inflated = Vec::new();
    let mut builder = BatchBuilder::new(options.batch_size);
    loop {
        let next = rx.lock().expect("fetch queue lock").blocking_recv();
        let Some(fetched) = next else { break };
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_file(
                &fetched,
                tx,
                &mut decoder,
                &mut inflater,
                &mut inflated,
                &mut builder,
                options,
            )
        }));
        let report = attempt.unwrap_or_else(|panic| {
            // A bug, not bad input: the builder may hold half a row. Keep the batches already
            // cut, start afresh, and name the file.
            let ready = builder.take_ready();
            builder = BatchBuilder::new(options.batch_size);
            builder.push_ready(ready);
            decoder = Decoder::new().decoding_only(options.decode_only);
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            FileReport {
                file: fetched.file.display.clone(),
                bytes_read: 0,
                bytes_inflated: 0,
                records: 0,
                errors: vec![IngestError::Internal {
                    file: fetched.file.display.clone(),
                    reason,
                }],
            }
        });
        drop(fetched);
        for batch in builder.take_ready() {
            if tx.blocking_send(Message::Batch(batch)).is_err() {
                return;
            }
        }
        if tx.blocking_send(Message::File(report)).is_err() {
            return;
        }
        if inflated.capacity() > SPLIT_ABOVE * 4 {
            inflated = Vec::new(); // give a huge file's buffer back
        }
    }
    for batch in builder.flush() {
        if tx.blocking_send(Message::Batch(batch)).is_err() {
            return;
        }
    }
}

/// Inflate and decode one fetched file into `builder`.
fn read_file(
    fetched: &Fetched,
    tx: &mpsc::Sender<Message>,
    decoder: &mut Decoder,
    inflater: &mut Inflater,
    inflated: &mut Vec<u8>,
    builder: &mut BatchBuilder,
    options: &IngestOptions,
) -> FileReport {
    let name = fetched.file.display.clone();
    let mut report = FileReport {
        file: name.clone(),
        bytes_read: 0,
        bytes_inflated: 0,
        records: 0,
        errors: Vec::new(),
    };
    let data = match &fetched.bytes {
        Ok(bytes) => bytes,
        Err(e) => {
            report.errors.push(IngestError::Read {
                file: name,
                reason: e.to_string(),
            });
            return report;
        }
    };
    report.bytes_read = data.len() as u64;
    let mut reader = Reader {
        tx,
        decoder,
        inflater,
        builder,
        options,
        report: &mut report,
    };
    reader.document(&name, data, inflated, false);
    report
}

/// What reading one fetched file uses, and the report it fills.
struct Reader<'a> {
    tx: &'a mpsc::Sender<Message>,
    decoder: &'a mut Decoder,
    inflater: &'a mut Inflater,
    builder: &'a mut BatchBuilder,
    options: &'a IngestOptions,
    report: &'a mut FileReport,
}

impl Reader<'_> {
    /// Inflate `data` (into `inflated`) if it is compressed, and decode it: the file itself, or
    /// a member of the zip or tar archive it is (`in_archive`), named `name`.
    fn document(&mut self, name: &str, data: &[u8], inflated: &mut Vec<u8>, in_archive: bool) {
        let limit = self.options.max_file_size;
        let too_large = || IngestError::TooLarge {
            file: name.to_string(),
            limit,
        };
        // The damage of compressed data (its format and what is wrong): what came before it
        // is read.
        let mut damage = None;
        let compressed = if is_gzip(data) {
            Some(("gzip", self.inflater.gunzip(data, inflated, limit)))
        } else if is_zstd(data) {
            Some(("zstd", unzstd(data, inflated, limit)))
        } else {
            None
        };
        let text: &[u8] = match compressed {
            Some((_, Ok(()))) => inflated,
            Some((_, Err(InflateError::TooLarge))) => return self.report.errors.push(too_large()),
            Some((format, Err(InflateError::Corrupt { reason, prefix }))) => {
                damage = Some((format, reason));
                *inflated = prefix;
                inflated
            }
            None if data.len() > limit => return self.report.errors.push(too_large()),
            None => data,
        };
        if let Some(format) = archive_format(text) {
            if opens_archive(format) && !in_archive {
                // A tar.gz cut off: the members before the damage are read.
                let before = self.report.records;
                self.archive(format, name, text);
                if let Some((format, reason)) = damage {
                    self.report.errors.push(IngestError::Compressed {
                        file: name.to_string(),
                        format,
                        reason,
                        salvaged: self.report.records - before,
                    });
                }
                return;
            }
            // Archives in archives are named, never passed over in silence.
            let file = name.to_string();
            return self
                .report
                .errors
                .push(IngestError::Archive { file, format });
        }
        self.report.bytes_inflated += text.len() as u64;
        let decoded = if text.len() > SPLIT_ABOVE && damage.is_none() {
            decode_split(
                name,
                text,
                self.tx,
                self.decoder,
                self.builder,
                self.options,
            )
        } else {
            self.decoder.decode_file(name, text, self.builder)
        };
        let mut errors = Vec::new();
        let mut records = 0;
        match decoded {
            Ok(d) => {
                records = d.records;
                errors = d.record_errors;
            }
            Err(e) if damage.is_none() => errors.push(e),
            Err(_) => {}
        }
        if let Some((format, reason)) = damage {
            // The JSON error of the cut-off tail says nothing new: the damage replaces it.
            errors.retain(|e| !matches!(e, IngestError::InvalidJson { record: None, .. }));
            errors.push(IngestError::Compressed {
                file: name.to_string(),
                format,
                reason,
                salvaged: records,
            });
        }
        self.report.records += records;
        self.report.errors.extend(errors);
    }

    /// Read the trail files of a zip or tar archive, each as a file of its own named
    /// `archive!/member` in errors; other members (digests, read-me files) are passed over, as
    /// they are in a folder.
    fn archive(&mut self, format: &'static str, name: &str, text: &[u8]) {
        let limit = self.options.max_file_size;
        let (mut member_bytes, mut inflated) = (Vec::new(), Vec::new());
        let trail_file = |member: &str| classify(member) == FileKind::Events;
        let listed = for_each_member(
            format,
            text,
            limit,
            &mut member_bytes,
            trail_file,
            |member, read| {
                let file = format!("{name}!/{member}");
                match read {
                    Ok(data) => self.document(&file, data, &mut inflated, true),
                    Err(MemberError::TooLarge) => {
                        self.report
                            .errors
                            .push(IngestError::TooLarge { file, limit });
                    }
                    Err(MemberError::Unreadable(reason)) => {
                        self.report.errors.push(IngestError::Read { file, reason });
                    }
                }
            },
        );
        if let Err(reason) = listed {
            self.report.errors.push(IngestError::Compressed {
                file: name.to_string(),
                format,
                reason,
                salvaged: self.report.records,
            });
        }
    }
}

/// Decode a large file as runs decoded in parallel, twice as many at once as there are threads,
/// sending each group's batches on before decoding the next: memory holds a few runs, not the
/// whole file's rows. Falls back to one pass when the file cannot be cut (a damaged document).
fn decode_split(
    name: &str,
    text: &[u8],
    tx: &mpsc::Sender<Message>,
    decoder: &mut Decoder,
    builder: &mut BatchBuilder,
    options: &IngestOptions,
) -> Result<Decoded, IngestError> {
    let Some(runs) = split_runs(text) else {
        return decoder.decode_file(name, text, builder);
    };
    let mut total = Decoded::default();
    for group in runs.chunks(options.threads.max(1) * 2) {
        let results: Vec<(Vec<RecordBatch>, Decoded)> = group
            .par_iter()
            .map_init(
                || Decoder::new().decoding_only(options.decode_only),
                |dec, run| {
                    let mut local = BatchBuilder::new(options.batch_size);
                    let decoded = run.decode(dec, name, text, &mut local);
                    (local.flush(), decoded)
                },
            )
            .collect();
        for (batches, decoded) in results {
            total.records += decoded.records;
            total.record_errors.extend(decoded.record_errors);
            for batch in batches {
                if tx.blocking_send(Message::Batch(batch)).is_err() {
                    return Ok(total); // the consumer went away
                }
            }
        }
    }
    Ok(total)
}

/// A part of a large file decoded on its own.
enum Run {
    /// Complete events, back to back with commas between (bytes `start..end`), the first of
    /// them record `first_record` of its document.
    Events {
        start: usize,
        end: usize,
        first_record: usize,
    },
    /// One complete document of several back to back (bytes `a..b`), of any shape.
    Document(usize, usize),
    /// Whole lines of a file of one event (or one document) per line.
    Lines {
        start: usize,
        end: usize,
        first_line: usize,
    },
}

impl Run {
    /// Decode this run of `text`, a file named `name`, into `out`.
    fn decode(
        &self,
        dec: &mut Decoder,
        name: &str,
        text: &[u8],
        out: &mut BatchBuilder,
    ) -> Decoded {
        match *self {
            Run::Events {
                start,
                end,
                first_record,
            } => {
                let mut doc = Vec::with_capacity(end - start + 2);
                doc.push(b'[');
                doc.extend_from_slice(&text[start..end]);
                doc.push(b']');
                let mut decoded = dec.decode_events(name, &doc, out);
                // Positions in the file, not in the run (whose `[` is not in the file).
                for e in &mut decoded.record_errors {
                    e.relocate(start as isize - 1, first_record);
                }
                decoded
            }
            Run::Document(a, b) => {
                let mut decoded =
                    dec.decode_file(name, &text[a..b], out)
                        .unwrap_or_else(|e| Decoded {
                            records: 0,
                            record_errors: vec![e],
                        });
                for e in &mut decoded.record_errors {
                    e.relocate(a as isize, 0);
                }
                decoded
            }
            Run::Lines {
                start,
                end,
                first_line,
            } => {
                let mut decoded = Decoded::default();
                dec.decode_lines(
                    name,
                    &text[start..end],
                    start,
                    first_line,
                    out,
                    &mut decoded,
                );
                decoded
            }
        }
    }
}

/// Cut a large file into runs of about [`SPLIT_RUN`] bytes: the events of a `{"Records":[...]}`
/// document or a JSON array, of several such documents back to back, or whole lines. `None`
/// when the file is none of these, or damaged: it is then read in one pass, which salvages.
fn split_runs(text: &[u8]) -> Option<Vec<Run>> {
    let body_start = text.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let body = &text[body_start..];
    let mut runs = Vec::new();
    let spans = event_spans(body);
    if spans.len() >= 2 && ends_cleanly(body, &spans) {
        push_event_runs(&mut runs, body_start, &spans);
        return Some(runs);
    }
    if looks_like_json_lines(body) {
        return Some(line_runs(text));
    }
    let (docs, end) = documents(text);
    if docs.len() < 2 || end != text.len() {
        return None;
    }
    for (a, b) in docs {
        let doc = &text[a..b];
        let spans = event_spans(doc);
        if spans.len() >= 2 && ends_cleanly(doc, &spans) {
            push_event_runs(&mut runs, a, &spans);
        } else {
            // An empty or one-event delivery, an event, an EventBridge event: read whole.
            runs.push(Run::Document(a, b));
        }
    }
    Some(runs)
}

/// Group the events `spans` of a document at `base` into runs of about [`SPLIT_RUN`] bytes.
fn push_event_runs(runs: &mut Vec<Run>, base: usize, spans: &[(usize, usize)]) {
    let mut first = 0;
    for i in 1..spans.len() {
        if spans[i].1 - spans[first].0 > SPLIT_RUN {
            runs.push(Run::Events {
                start: base + spans[first].0,
                end: base + spans[i - 1].1,
                first_record: first,
            });
            first = i;
        }
    }
    runs.push(Run::Events {
        start: base + spans[first].0,
        end: base + spans[spans.len() - 1].1,
        first_record: first,
    });
}

/// Whether nothing but the closing `]` or `]}` follows the last event of a document.
fn ends_cleanly(doc: &[u8], spans: &[(usize, usize)]) -> bool {
    spans.last().is_some_and(|&(_, end)| {
        // At most three characters are looked at: the rest may be many more documents.
        let mut tail = doc[end..].iter().filter(|b| !b.is_ascii_whitespace());
        matches!(
            (tail.next(), tail.next(), tail.next()),
            (Some(b']'), None, _) | (Some(b']'), Some(b'}'), None)
        )
    })
}

/// Runs of whole lines, each about [`SPLIT_RUN`] bytes, with the number of its first line.
fn line_runs(text: &[u8]) -> Vec<Run> {
    let mut runs = Vec::new();
    let (mut start, mut first_line) = (0, 1);
    while start < text.len() {
        let cut = (start + SPLIT_RUN).min(text.len());
        let end = memchr::memchr(b'\n', &text[cut..]).map_or(text.len(), |i| cut + i + 1);
        runs.push(Run::Lines {
            start,
            end,
            first_line,
        });
        first_line += memchr::memchr_iter(b'\n', &text[start..end]).count();
        start = end;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> String {
        format!(
            r#"{{"eventName":"E{i}","eventID":"{i:08}","requestParameters":{{"pad":"{}"}}}}"#,
            "x".repeat(200)
        )
    }

    /// The events of every run, decoded the way `decode_split` decodes them.
    fn decode_runs(text: &[u8], runs: &[Run]) -> Vec<String> {
        let mut out = BatchBuilder::new(1 << 16);
        let mut decoder = Decoder::new();
        for run in runs {
            let decoded = run.decode(&mut decoder, "t", text, &mut out);
            assert!(
                decoded.record_errors.is_empty(),
                "{:?}",
                decoded.record_errors
            );
        }
        use arrow::array::AsArray;
        out.flush()
            .iter()
            .flat_map(|b| {
                let ids = b.column_by_name("eventID").unwrap().as_string::<i32>();
                ids.iter().flatten().map(str::to_string).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn large_files_of_every_shape_are_cut_into_runs_that_lose_nothing() {
        let n = 30_000; // about 7 MB: several runs of 2 MiB
        let ids: Vec<String> = (0..n).map(|i| format!("{i:08}")).collect();
        let events: Vec<String> = (0..n).map(event).collect();
        let records = |evs: &[String]| format!(r#"{{"Records":[{}]}}"#, evs.join(","));
        let shapes = [
            ("one document", records(&events)),
            ("an array", format!("[{}]", events.join(",\n"))),
            (
                "documents back to back",
                records(&events[..n / 2])
                    + &records(&[])
                    + &records(&events[n / 2..n - 1])
                    + &events[n - 1],
            ),
            ("one event per line", events.join("\n") + "\n"),
        ];
        for (shape, text) in shapes {
            let runs = split_runs(text.as_bytes()).unwrap_or_else(|| panic!("{shape}: not cut"));
            assert!(runs.len() >= 3, "{shape}: {} runs", runs.len());
            assert_eq!(decode_runs(text.as_bytes(), &runs), ids, "{shape}");
        }
        // Damaged: read in one pass instead, which salvages.
        let whole = records(&events);
        assert!(split_runs(&whole.as_bytes()[..whole.len() - 100]).is_none());
        let two = records(&events[..10]) + &records(&events[10..]);
        assert!(split_runs(&two.as_bytes()[..two.len() - 100]).is_none());
    }

    #[test]
    fn errors_in_a_cut_file_name_the_record_and_offset_in_the_file() {
        let mut events: Vec<Vec<u8>> = (0..30_000).map(|i| event(i).into_bytes()).collect();
        events[20_000] = br#"{"other":1}"#.to_vec();
        events[25_000] = br#"{"eventName":"bad \q"}"#.to_vec();
        let mut text = br#"{"Records":["#.to_vec();
        text.extend(events.join(&b',').iter());
        text.extend(b"]}");
        let runs = split_runs(&text).unwrap();
        assert!(runs.len() >= 3);
        let mut out = BatchBuilder::new(1 << 16);
        let mut decoder = Decoder::new();
        let errors: Vec<IngestError> = runs
            .iter()
            .flat_map(|run| run.decode(&mut decoder, "t", &text, &mut out).record_errors)
            .collect();
        let bad_at = memchr::memmem::find(&text, br"bad \q").unwrap();
        // Each damaged event named, beside one line on the damaged run; no good event lost.
        assert_eq!(
            out.flush().iter().map(|b| b.num_rows()).sum::<usize>(),
            29_998
        );
        let found: Vec<(Option<usize>, Option<usize>)> = errors
            .iter()
            .filter(|e| !matches!(e, IngestError::InvalidJson { record: None, .. }))
            .map(|e| match e {
                IngestError::NotCloudTrail { record, .. } => (*record, None),
                IngestError::InvalidJson { record, offset, .. } => (*record, Some(*offset)),
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(found.len(), 2, "{errors:?}");
        assert_eq!(found[0], (Some(20_000), None));
        let (record, offset) = found[1];
        assert_eq!(record, Some(25_000));
        let offset = offset.unwrap();
        let event_start = bad_at - br#"{"eventName":""#.len();
        assert!(
            (event_start..bad_at + 6).contains(&offset),
            "offset {offset} not in the bad event at {event_start}"
        );
    }

    #[test]
    fn line_runs_number_their_lines_from_the_start_of_the_file() {
        let text: String = (0..30_000).map(|i| event(i) + "\n").collect();
        let runs = line_runs(text.as_bytes());
        assert!(runs.len() >= 3);
        for run in &runs {
            let Run::Lines {
                start, first_line, ..
            } = *run
            else {
                panic!("not lines")
            };
            let before = text.as_bytes()[..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            assert_eq!(first_line, before + 1);
        }
    }
}
