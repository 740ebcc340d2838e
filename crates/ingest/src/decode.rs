//! Decode CloudTrail JSON into Arrow record batches: simd-json tape in, builders out.
//!
//! simd-json validates a document and builds its tape (stage 2). Its stage-1 structural indexes
//! give the byte offset of every structural character, so while walking the tape we also know
//! where each value sits in the *untouched* source text. That lets us copy free-form payloads
//! (`requestParameters`, unknown keys, values of unexpected types) as their exact source bytes:
//! no `Value` tree per record, no re-serialisation, and numbers, escapes and key order survive.
//!
//! Documents come in three shapes, detected per file: `{"Records":[...]}`, a JSON array of
//! events, and one event per line. A damaged document is not given up: its complete events are
//! found by [`event_spans`] and decoded one by one.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, ListArray, RecordBatch, StringBuilder, StructArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field};
use simd_json::{Buffers, ErrorType, INPUT_PADDING, Node, StaticNode, Tape, fill_tape_padded};
use trailql_schema::{FieldSpec, KeyPrint, Kind, RECORD, UTC, arrow_schema, struct_fields, time};

use crate::IngestError;

/// Keys of which an object must have at least one to count as a CloudTrail event.
const EVENT_KEYS: [&str; 4] = ["eventTime", "eventName", "eventSource", "eventID"];

/// The key, in the unmapped object, of the EventBridge event a CloudTrail event came wrapped in
/// (everything but its `detail`, which is the event).
const ENVELOPE_KEY: &[u8] = b"\"eventBridgeEnvelope\"";

/// The key, in the unmapped object, of the CloudWatch Logs subscription record a CloudTrail
/// event came in (its log group and stream, owner, filters, and the log event's id and time).
const LOGS_ENVELOPE_KEY: &[u8] = b"\"cloudWatchLogsEnvelope\"";

/// The key under which an event's `aws cloudtrail lookup-events` wrapper (`EventId`,
/// `Username`, `Resources`...) is kept in its unmapped object.
const LOOKUP_ENVELOPE_KEY: &[u8] = b"\"lookupEventsEnvelope\"";

/// Deepest nesting for which a document is parsed once (simd-json's default of 128 is too
/// shallow for some payloads).
const MAX_DEPTH: usize = 1024;

/// Deepest nesting accepted in a document that fails `MAX_DEPTH` (parsed a second time).
const DEEPEST: usize = 1 << 20;

/// Numbers beyond f64's range read in one document (each costs a parse of the document again);
/// past this the document is damaged.
const MAX_HUGE_NUMBERS: usize = 64;

/// Per-thread decoding state, reused across documents so the hot path allocates nothing.
pub struct Decoder {
    /// Top-level fields decoded (bit `i` for `RECORD[i]`); the others are stepped over.
    wanted: u64,
    buffers: Buffers,
    work: Vec<u8>,
    tape: Option<Tape<'static>>,
    unmapped: Unmapped,
    scratch: Vec<u8>,
    /// Events that came as JSON text in a document (a CloudWatch Logs subscription record's
    /// messages, `lookup-events`' `CloudTrailEvent`s), decoded once its walk is done.
    messages: Vec<Message>,
    /// Set while a document with `\u` escapes of lone surrogates is read again: simd-json
    /// refuses them, so its copy has each one as `\uFFFD` (see [`mend_lone_surrogates`]).
    mending_surrogates: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// What decoding one file produced besides the records appended to the builder.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Records appended.
    pub records: usize,
    /// Records that could not be read (the rest of the file was still read).
    pub record_errors: Vec<IngestError>,
}

impl Decoder {
    pub fn new() -> Self {
        Self {
            wanted: u64::MAX,
            buffers: Buffers::with_max_depth(1 << 16, MAX_DEPTH),
            work: Vec::new(),
            tape: Some(Tape::null().reset()),
            unmapped: Unmapped::default(),
            scratch: Vec::new(),
            messages: Vec::new(),
            mending_surrogates: false,
        }
    }

    /// Decode only the top-level fields in `fields` (bit `i` for `RECORD[i]`), leaving the
    /// others null and out of `_unmapped`: for a query that reads a few columns. `None`
    /// decodes every field, as conversion must.
    pub fn decoding_only(mut self, fields: Option<u64>) -> Self {
        self.wanted = fields.unwrap_or(u64::MAX);
        self
    }

    /// Decode the (inflated) contents of one file into `out`.
    ///
    /// Fails only when nothing in the file could be read; damaged records are reported in
    /// [`Decoded::record_errors`] while the good ones are kept.
    pub fn decode_file(
        &mut self,
        file: &str,
        data: &[u8],
        out: &mut BatchBuilder,
    ) -> Result<Decoded, IngestError> {
        if let Some(text) = utf16_to_utf8(data) {
            // Saved by a Windows tool (PowerShell's `Out-File`): read as the UTF-8 it holds.
            return self.decode_file(file, text.as_bytes(), out);
        }
        let body = trim_start(data);
        let offset = data.len() - body.len();
        let mut decoded = Decoded::default();
        match body.first() {
            None => return Err(IngestError::Empty { file: file.into() }),
            Some(b'{' | b'[') => {}
            Some(_) if strip_log_timestamp(body).first() == Some(&b'{') => {
                // A CloudWatch Logs export: a timestamp, then the event, on each line.
                self.decode_lines(file, body, offset, 1, out, &mut decoded);
                return Ok(decoded);
            }
            Some(_) => {
                return Err(IngestError::InvalidJson {
                    file: file.into(),
                    record: None,
                    offset,
                    reason: "a JSON document starts with '{' or '['".into(),
                });
            }
        }
        match self.decode_document(file, body, (offset, None), out, &mut decoded, true) {
            Ok(()) => Ok(decoded),
            Err(DocError::NotEvents(reason)) => Err(IngestError::NotCloudTrail {
                file: file.into(),
                record: None,
                reason,
            }),
            Err(DocError::Json { offset: at, reason }) => {
                if looks_like_json_lines(body) {
                    self.decode_lines(file, body, offset, 1, out, &mut decoded);
                    return Ok(decoded);
                }
                let (docs, end) = documents(body);
                if docs.len() < 2 {
                    // One damaged document.
                    self.salvage(file, body, offset, at, reason, out, &mut decoded)?;
                    return Ok(decoded);
                }
                // Documents back to back: each read on its own, a damaged one salvaged.
                for &(a, b) in &docs {
                    self.decode_part(file, &body[a..b], offset + a, out, &mut decoded);
                }
                let rest = trim_start(&body[end..]);
                if !rest.is_empty() {
                    let at = offset + body.len() - rest.len();
                    self.decode_part(file, rest, at, out, &mut decoded);
                }
                Ok(decoded)
            }
        }
    }

    /// Decode one of several documents of a file; what fails is reported as an error of the
    /// file at the document's offset, and the other documents are read regardless.
    fn decode_part(
        &mut self,
        file: &str,
        doc: &[u8],
        base: usize,
        out: &mut BatchBuilder,
        decoded: &mut Decoded,
    ) {
        let failed = match self.decode_document(file, doc, (base, None), out, decoded, true) {
            Ok(()) => return,
            Err(DocError::NotEvents(reason)) => IngestError::NotCloudTrail {
                file: file.into(),
                record: None,
                reason: format!("the document at byte {base}: {reason}"),
            },
            Err(DocError::Json { offset, reason }) => {
                match self.salvage(file, doc, base, offset, reason, out, decoded) {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
        };
        decoded.record_errors.push(failed);
    }

    /// Keep every complete event a damaged document (`body`, at `base` in the file) still holds,
    /// reporting the damage (`reason` at `at`) as an error of the file. Fails when the document
    /// holds no complete event.
    #[allow(clippy::too_many_arguments)]
    fn salvage(
        &mut self,
        file: &str,
        body: &[u8],
        base: usize,
        at: usize,
        reason: String,
        out: &mut BatchBuilder,
        decoded: &mut Decoded,
    ) -> Result<(), IngestError> {
        let spans = event_spans(body);
        if spans.is_empty() {
            return Err(IngestError::InvalidJson {
                file: file.into(),
                record: None,
                offset: base + at,
                reason,
            });
        }
        let before = decoded.records;
        for (i, (a, b)) in spans.iter().copied().enumerate() {
            let at = (base + a, Some(i));
            if let Err(e) = self.decode_document(file, &body[a..b], at, out, decoded, false) {
                decoded.record_errors.push(e.into_error(file, i, base + a));
            }
        }
        decoded.record_errors.push(IngestError::InvalidJson {
            file: file.into(),
            record: None,
            offset: base + at,
            reason: format!(
                "{reason}; kept the {} it still holds",
                crate::error::complete_records(decoded.records - before)
            ),
        });
        Ok(())
    }

    /// Decode a contiguous run of events, `[e1,e2,...]` as bytes (used to split large files).
    /// A damaged event costs itself only: the run is then read event by event.
    pub fn decode_events(&mut self, file: &str, events: &[u8], out: &mut BatchBuilder) -> Decoded {
        let mut decoded = Decoded::default();
        self.decode_part(file, events, 0, out, &mut decoded);
        decoded
    }

    /// Decode one event (or one document) per line; `body` starts at byte `base` of the file,
    /// on line `first_line` (counted from 1).
    pub fn decode_lines(
        &mut self,
        file: &str,
        body: &[u8],
        base: usize,
        first_line: usize,
        out: &mut BatchBuilder,
        decoded: &mut Decoded,
    ) {
        let mut start = 0;
        for (i, line) in lines(body).enumerate() {
            let line_no = first_line + i;
            let at = start;
            start += line.len() + 1;
            let text = strip_log_timestamp(trim_start(line));
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let place = (base + at, Some(line_no));
            if let Err(e) = self.decode_document(file, text, place, out, decoded, false) {
                decoded
                    .record_errors
                    .push(e.into_error(file, line_no, base + at));
            }
        }
    }

    /// Parse one JSON document and append the events it holds. With `top_level`, an object that
    /// is neither an event nor `{"Records":[...]}` is an error of the whole file.
    ///
    /// JSON is UTF-8: bytes that are not (a damaged file, a writer's bug) are read as U+FFFD,
    /// as most readers of text do, and reported at `at` (the document's byte in the file and
    /// its record), so that one bad byte does not cost the events around it. A `\u` escape of
    /// a lone surrogate (valid JSON no UTF-8 string can hold) is read as U+FFFD, its string
    /// kept as source text in the unmapped object too: nothing is lost, nothing reported.
    fn decode_document(
        &mut self,
        file: &str,
        src: &[u8],
        at: (usize, Option<usize>),
        out: &mut BatchBuilder,
        decoded: &mut Decoded,
        top_level: bool,
    ) -> Result<(), DocError> {
        let failed = match self.decode_document_in(file, src, out, decoded, top_level, None) {
            Err(e @ DocError::Json { .. }) => e,
            done => return done,
        };
        let not_utf8 = std::str::from_utf8(src).err();
        let surrogates = lone_surrogates(src).next().is_some();
        if not_utf8.is_none() && !surrogates {
            return Err(failed);
        }
        let mended = match not_utf8 {
            Some(_) => Cow::Owned(String::from_utf8_lossy(src).into_owned().into_bytes()),
            None => Cow::Borrowed(src),
        };
        self.mending_surrogates = surrogates;
        let read = self.decode_document_in(file, &mended, out, decoded, top_level, None);
        self.mending_surrogates = false;
        read?;
        if let Some(not_utf8) = not_utf8 {
            decoded.record_errors.push(IngestError::NotUtf8 {
                file: file.into(),
                record: at.1,
                offset: at.0 + not_utf8.valid_up_to(),
            });
        }
        Ok(())
    }

    /// [`Decoder::decode_document`] of a document that came wrapped: `envelope` (its key and
    /// its JSON) is kept in each event's unmapped object.
    fn decode_document_in(
        &mut self,
        file: &str,
        src: &[u8],
        out: &mut BatchBuilder,
        decoded: &mut Decoded,
        top_level: bool,
        envelope: Option<(&[u8], &[u8])>,
    ) -> Result<(), DocError> {
        // Numbers beyond f64's range (`1e400`) are valid JSON that simd-json refuses. Nothing
        // reads a number's value (a number is kept as its source text), so each one is
        // parsed as `0` padded to its length: offsets stay, the text kept is the source's.
        let mut huge_numbers: Vec<(usize, usize)> = Vec::new();
        // A document nested deeper than `MAX_DEPTH` is parsed again with a deeper stack,
        // which is set back afterwards (its size grows with the document's).
        let mut shallow: Option<Buffers> = None;
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        let parsed = loop {
            self.work.clear();
            self.work.extend_from_slice(src);
            for &(at, len) in &huge_numbers {
                self.work[at] = b'0';
                self.work[at + 1..at + len].fill(b' ');
            }
            if self.mending_surrogates {
                mend_lone_surrogates(&mut self.work);
            }
            self.work.resize(src.len() + INPUT_PADDING, 0);
            match fill_tape_padded(&mut self.work, src.len(), &mut self.buffers, &mut tape) {
                Err(e)
                    if matches!(e.error(), ErrorType::InvalidNumber)
                        && huge_numbers.len() < MAX_HUGE_NUMBERS =>
                {
                    match json_number_len(src, e.index()) {
                        Some(len) => {
                            huge_numbers.push((e.index(), len));
                            tape = tape.reset();
                        }
                        None => break Err(e),
                    }
                }
                Err(e)
                    if matches!(e.error(), ErrorType::DepthLimitExceeded) && shallow.is_none() =>
                {
                    let deep = Buffers::with_max_depth(src.len(), DEEPEST);
                    shallow = Some(std::mem::replace(&mut self.buffers, deep));
                    tape = tape.reset();
                }
                parsed => break parsed,
            }
        };
        let result = match parsed {
            Err(e) => Err(json_error(src, &e)),
            Ok(()) => {
                let mut walk = Walk {
                    file,
                    nodes: &tape.0,
                    si: self.buffers.structural_indexes(),
                    src,
                    t: 0,
                    s: 0,
                    un: &mut self.unmapped,
                    scratch: &mut self.scratch,
                    wanted: self.wanted,
                    envelope,
                    messages: &mut self.messages,
                    mended: self.mending_surrogates,
                    in_wrapper: false,
                };
                walk.document(out, decoded, top_level)
            }
        };
        self.tape = Some(tape.reset());
        if let Some(buffers) = shallow {
            self.buffers = buffers;
        }
        // Events written as JSON text in the document.
        let mut messages = std::mem::take(&mut self.messages);
        for (i, message) in messages.iter().enumerate() {
            let envelope = Some((message.envelope_key, message.envelope.as_slice()));
            let text = message.text.as_bytes();
            if let Err(e) = self.decode_document_in(file, text, out, decoded, false, envelope) {
                decoded.record_errors.push(e.into_error(file, i, 0));
            }
        }
        messages.clear();
        self.messages = messages;
        result
    }
}

/// Why one document could not be decoded.
#[derive(Debug)]
enum DocError {
    Json { offset: usize, reason: String },
    NotEvents(String),
}

impl DocError {
    fn into_error(self, file: &str, record: usize, base: usize) -> IngestError {
        match self {
            DocError::Json { offset, reason } => IngestError::InvalidJson {
                file: file.into(),
                record: Some(record),
                offset: base + offset,
                reason,
            },
            DocError::NotEvents(reason) => IngestError::NotCloudTrail {
                file: file.into(),
                record: Some(record),
                reason,
            },
        }
    }
}

/// simd-json's error as the place and the plain words a reader needs to find it: where the
/// bad byte is (simd-json points string errors at the document's start), what is wrong, and
/// the text around it. (Text that is not UTF-8 is no error: [`Decoder::decode_document`]
/// reads it again mended.)
fn json_error(src: &[u8], e: &simd_json::Error) -> DocError {
    let from = e.index().min(src.len());
    let (offset, what) = match e.error() {
        ErrorType::InvalidEscape | ErrorType::InvalidUnicodeEscape => {
            let at = bad_escape(&src[from..]).map(|at| from + at);
            (
                at.or_else(|| bad_escape(src)).unwrap_or(from),
                "invalid escape in a string".to_string(),
            )
        }
        ErrorType::InvalidUnicodeCodepoint => {
            (from, "invalid \\u escape (a lone surrogate?)".into())
        }
        ErrorType::InvalidNumber | ErrorType::InvalidExponent => (from, "invalid number".into()),
        ErrorType::ExpectedTrue | ErrorType::ExpectedFalse | ErrorType::ExpectedNull => {
            (from, "invalid literal (not true, false or null)".into())
        }
        ErrorType::ExpectedObjectContent
        | ErrorType::ExpectedObjectKey
        | ErrorType::ExpectedObjectColon
        | ErrorType::ExpectedMapComma
        | ErrorType::ExpectedMapEnd
        | ErrorType::KeyMustBeAString => (
            from,
            "malformed object (a key, ':', ',' or '}' expected)".into(),
        ),
        ErrorType::ExpectedArrayContent | ErrorType::ExpectedArrayComma => {
            (from, "malformed array (',' or ']' expected)".into())
        }
        ErrorType::UnterminatedString => (from, "unterminated string".into()),
        ErrorType::Eof => (
            src.len(),
            "the document ends before its last value is complete".into(),
        ),
        ErrorType::TrailingData | ErrorType::InternalError => {
            (from, "malformed JSON (text after a complete value?)".into())
        }
        ErrorType::DepthLimitExceeded => (from, "nested too deeply".into()),
        ErrorType::InputTooLarge => (0, "a document of 4 GiB or more".into()),
        other => (from, format!("{other:?}")),
    };
    DocError::Json {
        offset,
        reason: format!("{what} near `{}`", snippet(src, offset)),
    }
}

/// The `\u` escapes in `text` of surrogates that are not half of a pair (`\ud800` alone).
/// JSON's grammar allows them (and programs that write UTF-16 strings produce them), but no
/// UTF-8 text can hold one, so simd-json refuses the document.
fn lone_surrogates(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let unit = |at: usize| {
        let hex = text.get(at..at + 6)?.strip_prefix(b"\\u")?;
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let mut i = 0;
    std::iter::from_fn(move || {
        while let Some(found) = memchr::memchr(b'\\', &text[i..]) {
            let at = i + found;
            match unit(at) {
                Some(0xD800..=0xDBFF) if matches!(unit(at + 6), Some(0xDC00..=0xDFFF)) => {
                    i = at + 12;
                }
                Some(0xD800..=0xDFFF) => {
                    i = at + 6;
                    return Some(at);
                }
                // A backslash is only ever in a string, where it starts a two-byte escape or
                // a `\u` one.
                _ => i = at + 2,
            }
        }
        None
    })
}

/// Write each lone surrogate's escape in `text` as `\uFFFD` (as long: offsets stay).
fn mend_lone_surrogates(text: &mut [u8]) {
    let found: Vec<usize> = lone_surrogates(text).collect();
    for at in found {
        text[at + 2..at + 6].copy_from_slice(b"FFFD");
    }
}

/// The offset of the first backslash in `text` that starts no valid JSON escape.
fn bad_escape(text: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(at) = memchr::memchr(b'\\', &text[i..]) {
        let at = i + at;
        match text.get(at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i = at + 2,
            Some(b'u')
                if text.len() >= at + 6
                    && text[at + 2..at + 6].iter().all(u8::is_ascii_hexdigit) =>
            {
                i = at + 6
            }
            _ => return Some(at),
        }
    }
    None
}

/// About 30 bytes of `src` around `at`, on one line, for an error message.
fn snippet(src: &[u8], at: usize) -> String {
    let (a, b) = (
        at.saturating_sub(20).min(src.len()),
        (at + 12).min(src.len()),
    );
    String::from_utf8_lossy(&src[a..b])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('`', "'")
}

/// The text of a file in UTF-16 (with a byte-order mark, or JSON's `{` or `[` as its first
/// two bytes), as UTF-8; `None` for any other file, or UTF-16 that is no text.
fn utf16_to_utf8(data: &[u8]) -> Option<String> {
    let little_endian = match data {
        [0xFF, 0xFE, ..] | [b'{' | b'[', 0, ..] => true,
        [0xFE, 0xFF, ..] | [0, b'{' | b'[', ..] => false,
        _ => return None,
    };
    if !data.len().is_multiple_of(2) {
        return None;
    }
    let units = data.chunks_exact(2).map(|pair| {
        let pair = [pair[0], pair[1]];
        if little_endian {
            u16::from_le_bytes(pair)
        } else {
            u16::from_be_bytes(pair)
        }
    });
    let text: String = char::decode_utf16(units).collect::<Result<_, _>>().ok()?;
    Some(text.strip_prefix('\u{FEFF}').unwrap_or(&text).to_string())
}

fn trim_start(data: &[u8]) -> &[u8] {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let n = data.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &data[n..]
}

/// One event (or document) per line: the second line starts with `{` and one of the first two
/// is a whole JSON object (past a CloudWatch Logs timestamp, if any). A pretty-printed document
/// fails this, even when damaged.
pub fn looks_like_json_lines(body: &[u8]) -> bool {
    let is_whole_object = |line: &[u8]| {
        line.first() == Some(&b'{')
            && matching_close(line, 0)
                .is_some_and(|end| line[end..].iter().all(u8::is_ascii_whitespace))
    };
    let mut lines = lines(body)
        .map(|line| strip_log_timestamp(trim_start(line)))
        .filter(|l| !l.is_empty());
    let (Some(first), Some(second)) = (lines.next(), lines.next()) else {
        return false;
    };
    second.first() == Some(&b'{') && (is_whole_object(first) || is_whole_object(second))
}

/// The lines of `body`, found with `memchr` (`split` tests each byte through a closure).
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        match memchr::memchr(b'\n', &body[from..]) {
            Some(i) => {
                start = Some(from + i + 1);
                Some(&body[from..from + i])
            }
            None => {
                start = None;
                Some(&body[from..])
            }
        }
    })
}

/// The message of a line of a CloudWatch Logs export, `2024-03-01T00:00:00.000Z {...}`: the
/// line past its timestamp when a JSON object follows it, else the line as it is.
fn strip_log_timestamp(line: &[u8]) -> &[u8] {
    let dated = line.len() > 10 && line[..4].iter().all(u8::is_ascii_digit) && line[4] == b'-';
    if let Some(space) = memchr::memchr(b' ', line).filter(|_| dated) {
        let message = trim_start(&line[space + 1..]);
        if message.first() == Some(&b'{') {
            return message;
        }
    }
    line
}

/// The byte ranges of the complete documents of a text holding several back to back, as `cat`
/// of trail files gives (`{"Records":[...]}{"Records":[...]}`, also from a gzip file whose
/// members each hold a whole file), and where the complete ones end: the rest, if any, is a
/// damaged or truncated document. Found by the light scan of [`event_spans`].
pub fn documents(body: &[u8]) -> (Vec<(usize, usize)>, usize) {
    let mut docs = Vec::new();
    let mut end = 0;
    loop {
        let next = end
            + body[end..]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        if next == body.len() {
            return (docs, body.len());
        }
        if !matches!(body[next], b'{' | b'[') {
            return (docs, end);
        }
        match matching_close(body, next) {
            Some(close) => {
                docs.push((next, close));
                end = close;
            }
            None => return (docs, end),
        }
    }
}

/// The byte ranges of the complete events of a `{"Records":[...]}` document or a JSON array,
/// found by a light scan that tracks strings and nesting. Stops at the first incomplete event.
pub fn event_spans(body: &[u8]) -> Vec<(usize, usize)> {
    let start = match body.first() {
        Some(b'[') => 1,
        Some(b'{') => {
            let Some(k) = memchr::memmem::find(body, b"\"Records\"") else {
                return Vec::new();
            };
            let rest = &body[k + 9..];
            let colon = rest.iter().position(|b| !b.is_ascii_whitespace());
            match colon.filter(|&c| rest[c] == b':') {
                Some(c) => match rest[c + 1..].iter().position(|b| !b.is_ascii_whitespace()) {
                    Some(p) if rest[c + 1 + p] == b'[' => k + 9 + c + 1 + p + 1,
                    _ => return Vec::new(),
                },
                None => return Vec::new(),
            }
        }
        _ => return Vec::new(),
    };
    let mut spans = Vec::new();
    let mut i = start;
    loop {
        while i < body.len() && (body[i].is_ascii_whitespace() || body[i] == b',') {
            i += 1;
        }
        if i >= body.len() || body[i] != b'{' {
            return spans;
        }
        match matching_close(body, i) {
            Some(end) => {
                spans.push((i, end));
                i = end;
            }
            None => return spans,
        }
    }
}

/// The length of the JSON number at `at` in `text` (`-? int frac? exp?`, followed by a delimiter
/// or the end), or `None` if none is there.
fn json_number_len(text: &[u8], at: usize) -> Option<usize> {
    let digits = |i: usize| {
        text[i.min(text.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut i = at + usize::from(text.get(at) == Some(&b'-'));
    match text.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(i),
        _ => return None,
    }
    if text.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return None;
        }
        i += 1 + n;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(text.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(i);
        if n == 0 {
            return None;
        }
        i += n;
    }
    match text.get(i) {
        None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') => Some(i - at),
        Some(_) => None,
    }
}

/// The end (exclusive) of the object or array opening at `open`, or `None` if it never closes.
fn matching_close(body: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < body.len() {
        match body[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'"' => {
                i += 1;
                loop {
                    let j = memchr::memchr2(b'"', b'\\', &body[i..])?;
                    if body[i + j] == b'\\' {
                        i += j + 2;
                    } else {
                        i += j;
                        break;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A walk over one parsed document: the tape (`t`), the structural indexes (`s`) and the
/// untouched source text, kept in step.
struct Walk<'a, 'n> {
    file: &'a str,
    nodes: &'a [Node<'n>],
    si: &'a [u32],
    src: &'a [u8],
    t: usize,
    s: usize,
    un: &'a mut Unmapped,
    scratch: &'a mut Vec<u8>,
    wanted: u64,
    /// What the document came wrapped in (key and JSON), kept with each of its events.
    envelope: Option<(&'a [u8], &'a [u8])>,
    /// Where events written as JSON text go (see [`Walk::cloudwatch_logs`] and
    /// [`Walk::lookup_event`]).
    messages: &'a mut Vec<Message>,
    /// Whether the tape was parsed from a copy with lone surrogates mended: a string holding
    /// U+FFFD is then kept in the unmapped object as its source text too.
    mended: bool,
    /// Whether the walk is in a `{"Records": [...]}` that was an element of an array.
    in_wrapper: bool,
}

/// An event written as JSON text inside a document, and what wrapped it.
struct Message {
    text: String,
    /// The key and JSON of the wrapper, kept in the event's unmapped object.
    envelope_key: &'static [u8],
    envelope: Vec<u8>,
}

impl<'a, 'n> Walk<'a, 'n> {
    fn document(
        &mut self,
        out: &mut BatchBuilder,
        decoded: &mut Decoded,
        top_level: bool,
    ) -> Result<(), DocError> {
        match self.nodes[0] {
            Node::Array { len, .. } => {
                self.t += 1;
                self.s += 1;
                for i in 0..len {
                    self.event_or_skip(out, decoded, i);
                    self.s += 1; // ',' or ']'
                }
                Ok(())
            }
            Node::Object { .. } if is_event(self.nodes, 0) => {
                self.event(out);
                decoded.records += 1;
                Ok(())
            }
            Node::Object { len, .. } if is_eventbridge(self.nodes, 0) => {
                self.eventbridge(out, len);
                decoded.records += 1;
                Ok(())
            }
            Node::Object { len, .. } if is_cloudwatch_logs(self.nodes, 0) => {
                self.cloudwatch_logs(len, decoded);
                Ok(())
            }
            Node::Object { len, .. } if is_lookup_event(self.nodes, 0) => {
                self.lookup_event(len);
                Ok(())
            }
            Node::Object { len, .. } => self.records(out, decoded, len, top_level),
            _ => Err(DocError::NotEvents(
                "the document is a single JSON value".into(),
            )),
        }
    }

    /// The object at the cursor as `{"Records": [...]}`, possibly beside other keys, or
    /// `lookup-events`' `{"Events": [...], "NextToken": ...}`: each element of its array an
    /// event. With `top_level`, an object with no such array is an error of the whole file.
    fn records(
        &mut self,
        out: &mut BatchBuilder,
        decoded: &mut Decoded,
        len: usize,
        top_level: bool,
    ) -> Result<(), DocError> {
        let at = self.t;
        // `{"Records": [...]}`, possibly beside other keys; or `lookup-events`'
        // `{"Events": [...], "NextToken": ...}`.
        self.t += 1;
        self.s += 1;
        let mut found = false;
        let mut records_not_array = None;
        for _ in 0..len {
            let key = self.key();
            if key == "Records" && !matches!(self.nodes[self.t], Node::Array { .. }) {
                records_not_array = Some(match self.nodes[self.t] {
                    Node::Object { .. } => "an object",
                    Node::String(_) => "a string",
                    Node::Static(StaticNode::Null) => "null",
                    Node::Static(StaticNode::Bool(_)) => "a boolean",
                    Node::Static(_) => "a number",
                    Node::Array { .. } => unreachable!(),
                });
            }
            if (key == "Records" || key == "Events")
                && matches!(self.nodes[self.t], Node::Array { .. })
                && !found
            {
                found = true;
                let Node::Array { len, .. } = self.nodes[self.t] else {
                    unreachable!()
                };
                self.t += 1;
                self.s += 1;
                for i in 0..len {
                    self.event_or_skip(out, decoded, i);
                    self.s += 1;
                }
                if len == 0 {
                    self.s += 1;
                }
            } else {
                self.skip_value();
            }
            self.s += 1;
        }
        match (found, records_not_array, top_level) {
            (true, _, _) => Ok(()),
            (false, Some(kind), _) => Err(DocError::NotEvents(format!(
                "\"Records\" is {kind}, not an array of events"
            ))),
            (false, None, true) => Err(DocError::NotEvents(format!(
                "an object with keys {} and no \"Records\" array",
                top_keys(self.nodes, at).join(", ")
            ))),
            (false, None, false) => Err(DocError::NotEvents(
                "no eventTime, eventName, eventSource or eventID".into(),
            )),
        }
    }

    /// Decode the array element at the cursor as an event, or skip it and count an error.
    fn event_or_skip(&mut self, out: &mut BatchBuilder, decoded: &mut Decoded, i: usize) {
        if is_event(self.nodes, self.t) {
            self.event(out);
            decoded.records += 1;
        } else if let Node::Object { len, .. } = self.nodes[self.t]
            && is_eventbridge(self.nodes, self.t)
        {
            self.eventbridge(out, len);
            decoded.records += 1;
        } else if let Node::Object { len, .. } = self.nodes[self.t]
            && is_lookup_event(self.nodes, self.t)
        {
            self.lookup_event(len);
        } else if let Node::Object { len, .. } = self.nodes[self.t]
            && !self.in_wrapper
            && members(self.nodes, self.t)
                .any(|(k, v)| k == "Records" && matches!(self.nodes[v], Node::Array { .. }))
        {
            // A delivery file's object in an array: trail files gathered by `jq -s`. (One
            // level: a wrapper in it is no event.)
            let a = self.pos(self.s);
            self.in_wrapper = true;
            let read = self.records(out, decoded, len, false);
            self.in_wrapper = false;
            if let Err(e) = read {
                decoded.record_errors.push(e.into_error(self.file, i, a));
            }
        } else {
            let (a, _) = self.skip_value();
            decoded.record_errors.push(
                DocError::NotEvents(
                    "not an object with eventTime, eventName, eventSource or eventID".into(),
                )
                .into_error(self.file, i, a),
            );
        }
    }

    fn event(&mut self, out: &mut BatchBuilder) {
        self.event_in(out, self.envelope);
    }

    /// Decode the event at the cursor; `envelope`, the key and JSON of what wrapped it, is kept
    /// in the unmapped object.
    fn event_in(&mut self, out: &mut BatchBuilder, envelope: Option<(&[u8], &[u8])>) {
        self.un.clear();
        self.object(RECORD, &mut out.root, self.wanted);
        if let Some((key, envelope)) = envelope {
            self.un.entry(key, envelope);
        }
        match self.un.finish() {
            Some(text) => out.unmapped.append_value(text),
            None => out.unmapped.append_null(),
        }
        out.end_row();
    }

    /// The EventBridge event at the cursor (an object of `len` members, checked by
    /// [`is_eventbridge`]): its `detail` decoded as the event, the rest of it kept as JSON.
    fn eventbridge(&mut self, out: &mut BatchBuilder, len: usize) {
        let (detail, envelope) = self.object_but(len, |key, _| key == "detail");
        let end = (self.t, self.s);
        (self.t, self.s) = detail.expect("is_eventbridge found the detail");
        self.event_in(out, Some((ENVELOPE_KEY, &envelope)));
        (self.t, self.s) = end;
    }

    /// A CloudWatch Logs subscription record (as Firehose delivers a log group's events to S3,
    /// an object of `len` members, checked by [`is_cloudwatch_logs`]): each log event's
    /// `message` is an event's JSON text, queued in [`Walk::messages`] with the record's other
    /// members and the log event's `id` and `timestamp` as its envelope. A control message
    /// (`"messageType": "CONTROL_MESSAGE"`, Firehose checking its destination) holds no events.
    fn cloudwatch_logs(&mut self, len: usize, decoded: &mut Decoded) {
        self.t += 1;
        self.s += 1;
        let mut envelope = b"{".to_vec();
        let (mut data, mut log_events) = (false, None);
        for _ in 0..len {
            let key_s = self.s;
            let key = self.key();
            if key == "logEvents" && log_events.is_none() {
                log_events = Some((self.t, self.s));
                self.skip_value();
            } else {
                data |= key == "messageType"
                    && matches!(self.nodes[self.t], Node::String("DATA_MESSAGE"));
                let (a, b) = self.skip_value();
                envelope.extend_from_slice(self.key_text(key_s));
                envelope.push(b':');
                envelope.extend_from_slice(compact(&self.src[a..b], self.scratch));
                envelope.push(b',');
            }
            self.s += 1; // ',' or '}'
        }
        let end = (self.t, self.s);
        let Some(at) = log_events.filter(|_| data) else {
            return;
        };
        (self.t, self.s) = at;
        let Node::Array { len, .. } = self.nodes[self.t] else {
            unreachable!("is_cloudwatch_logs found an array")
        };
        self.t += 1;
        self.s += 1;
        for i in 0..len {
            let mut message = None;
            let mut own = Vec::new();
            if let Node::Object { len: members, .. } = self.nodes[self.t] {
                self.t += 1;
                self.s += 1;
                for _ in 0..members {
                    let key_s = self.s;
                    let key = self.key();
                    if let (Node::String(text), "message", None) =
                        (self.nodes[self.t], key, &message)
                    {
                        message = Some(text.to_string());
                        self.skip_value();
                    } else {
                        let (a, b) = self.skip_value();
                        own.push(b',');
                        own.extend_from_slice(self.key_text(key_s));
                        own.push(b':');
                        own.extend_from_slice(compact(&self.src[a..b], self.scratch));
                    }
                    self.s += 1; // ',' or '}'
                }
            } else {
                self.skip_value();
            }
            self.s += 1; // ',' or ']'
            let Some(message) = message else {
                decoded.record_errors.push(IngestError::NotCloudTrail {
                    file: self.file.into(),
                    record: Some(i),
                    reason: "a log event without a message".into(),
                });
                continue;
            };
            let mut full = envelope.clone();
            full.extend_from_slice(b"\"logEvent\":{");
            full.extend_from_slice(own.strip_prefix(b",").unwrap_or(&own));
            full.extend_from_slice(b"}}");
            self.messages.push(Message {
                text: message,
                envelope_key: LOGS_ENVELOPE_KEY,
                envelope: full,
            });
        }
        (self.t, self.s) = end;
    }

    /// An event as `aws cloudtrail lookup-events` gives it (an object of `len` members, checked
    /// by [`is_lookup_event`]): its `CloudTrailEvent` is the event's JSON text, queued in
    /// [`Walk::messages`] with the other members (`EventId`, `Username`, `Resources`...) as
    /// its envelope.
    fn lookup_event(&mut self, len: usize) {
        let (event, envelope) = self.object_but(len, |key, value| {
            key == "CloudTrailEvent" && matches!(value, Node::String(_))
        });
        let Some(Node::String(text)) = event.map(|(t, _)| self.nodes[t]) else {
            unreachable!("is_lookup_event found the event's text")
        };
        self.messages.push(Message {
            text: text.to_string(),
            envelope_key: LOOKUP_ENVELOPE_KEY,
            envelope,
        });
    }

    /// Step over the object of `len` members at the cursor: the cursor (tape and structural
    /// index) of the value of its first member that is `wanted`, and the JSON of the object
    /// without that member (its other members compacted, in their order).
    fn object_but(
        &mut self,
        len: usize,
        wanted: impl Fn(&str, &Node<'_>) -> bool,
    ) -> (Option<(usize, usize)>, Vec<u8>) {
        self.t += 1;
        self.s += 1;
        let mut rest = b"{".to_vec();
        let mut found = None;
        for _ in 0..len {
            let key_s = self.s;
            let key = self.key();
            if found.is_none() && wanted(key, &self.nodes[self.t]) {
                found = Some((self.t, self.s));
                self.skip_value();
            } else {
                let (a, b) = self.skip_value();
                if rest.len() > 1 {
                    rest.push(b',');
                }
                rest.extend_from_slice(self.key_text(key_s));
                rest.push(b':');
                rest.extend_from_slice(compact(&self.src[a..b], self.scratch));
            }
            self.s += 1; // ',' or '}'
        }
        rest.push(b'}');
        (found, rest)
    }

    fn pos(&self, s: usize) -> usize {
        self.si[s] as usize
    }

    /// The source text of the key at structural `s` (quotes and escapes included).
    fn key_text(&self, s: usize) -> &'a [u8] {
        let (a, b) = (self.pos(s), self.pos(s + 1));
        &self.src[a..trim_end(self.src, a, b)]
    }

    /// Read the key at the cursor and step over it and its ':'.
    fn key(&mut self) -> &'n str {
        let Node::String(k) = self.nodes[self.t] else {
            unreachable!("object keys are strings")
        };
        self.t += 1;
        self.s += 2;
        k
    }

    /// Step over the value at the cursor; return its byte range in the source.
    fn skip_value(&mut self) -> (usize, usize) {
        let start = self.pos(self.s);
        match self.nodes[self.t] {
            Node::Object { count, .. } | Node::Array { count, .. } => {
                // Count the container's structurals from its tape nodes instead of reading each
                // one's character: a node's start, a container's close, a key's ':' and the ','
                // between members.
                let subtree = &self.nodes[self.t..=self.t + count];
                let mut structurals = subtree.len();
                for node in subtree {
                    match *node {
                        Node::Object { len, .. } => structurals += 1 + len + len.saturating_sub(1),
                        Node::Array { len, .. } => structurals += 1 + len.saturating_sub(1),
                        _ => {}
                    }
                }
                self.t += 1 + count;
                let close = self.s + structurals - 1;
                debug_assert!(matches!(self.src[self.pos(close)], b'}' | b']'));
                self.s = close + 1;
                (start, self.pos(close) + 1)
            }
            _ => {
                self.t += 1;
                self.s += 1;
                let end = self.si.get(self.s).map_or(self.src.len(), |&p| p as usize);
                (start, trim_end(self.src, start, end))
            }
        }
    }

    /// Step over the value at the cursor and keep it, under its key, in the unmapped object.
    fn keep_unmapped(&mut self, key_s: usize) {
        let (a, b) = self.skip_value();
        let key = self.key_text(key_s);
        let value = compact(&self.src[a..b], self.scratch);
        self.un.entry(key, value);
    }

    /// Decode the object at the cursor into a struct column; fields not in `wanted` (bit `i`
    /// for `specs[i]`) are stepped over and left null.
    fn object(&mut self, specs: &'static [FieldSpec], col: &mut StructCol, wanted: u64) {
        let Node::Object { len, .. } = self.nodes[self.t] else {
            unreachable!()
        };
        self.t += 1;
        self.s += 1;
        let mut seen = 0u64;
        let mut hint = 0;
        for _ in 0..len {
            let key_s = self.s;
            let key = self.key();
            match find_field(specs, key, hint) {
                Some(i) if wanted & (1 << i) == 0 => {
                    hint = i + 1;
                    self.skip_value();
                }
                Some(i) if seen & (1 << i) == 0 => {
                    seen |= 1 << i;
                    hint = i + 1;
                    let child = &mut col.children[i];
                    child.pad_to(col.len);
                    self.field(&specs[i], child, key_s);
                }
                _ => self.keep_unmapped(key_s),
            }
            self.s += 1; // ',' or '}'
        }
        if len == 0 {
            self.s += 1;
        }
        // Fields the object lacks are not written now: a child column is padded with nulls
        // when it next receives a value, or when the batch is cut (`StructCol`).
        col.validity.append_non_null();
        col.len += 1;
    }

    fn field(&mut self, spec: &'static FieldSpec, col: &mut Col, key_s: usize) {
        let node = self.nodes[self.t];
        match (col, node) {
            (Col::Str(b), Node::String(v)) => {
                b.append_value(v);
                if self.mended && v.contains('\u{FFFD}') {
                    self.keep_unmapped(key_s);
                } else {
                    self.skip_scalar();
                }
            }
            (Col::Json(b), Node::Static(StaticNode::Null)) => {
                b.append_null();
                self.keep_unmapped(key_s);
            }
            (Col::Json(b), _) => {
                let (a, e) = self.skip_value();
                let text = compact(&self.src[a..e], self.scratch);
                // SAFETY: simd-json validated the document as UTF-8; a value's span starts and
                // ends at ASCII structural characters and compacting drops only ASCII white
                // space outside strings, so the text is valid UTF-8 too.
                b.append_value(unsafe { std::str::from_utf8_unchecked(text) });
            }
            (Col::Bool(b), Node::Static(StaticNode::Bool(v))) => {
                b.append_value(v);
                self.skip_scalar();
            }
            (Col::Bool(b), Node::String(v @ ("true" | "false"))) => {
                b.append_value(v == "true");
                self.keep_unmapped(key_s);
            }
            (Col::Time(b), Node::String(v)) => match time::parse(v) {
                Some(p) => {
                    b.append_value(p.micros);
                    if p.canonical {
                        self.skip_scalar();
                    } else {
                        self.keep_unmapped(key_s);
                    }
                }
                None => {
                    b.append_null();
                    self.keep_unmapped(key_s);
                }
            },
            (Col::Struct(sc), Node::Object { .. }) => {
                let Kind::Struct(children) = spec.kind else {
                    unreachable!()
                };
                self.un.enter(spec.name);
                self.object(children, sc, u64::MAX);
                self.un.leave();
            }
            (Col::List(lc), Node::Array { len, .. }) => {
                let Kind::ListOfStruct(children) = spec.kind else {
                    unreachable!()
                };
                let (start_t, start_s) = (self.t, self.s);
                self.t += 1;
                self.s += 1;
                self.un.begin_probe();
                for _ in 0..len {
                    if matches!(self.nodes[self.t], Node::Object { .. }) {
                        self.un.enter("");
                        self.object(children, &mut lc.item, u64::MAX);
                        self.un.leave();
                    } else {
                        self.skip_value();
                        lc.item.append_null();
                        self.un.hit();
                    }
                    self.s += 1;
                }
                if len == 0 {
                    self.s += 1;
                }
                lc.end_list();
                if self.un.end_probe() {
                    // An element held something the typed list cannot: keep the whole array.
                    (self.t, self.s) = (start_t, start_s);
                    self.keep_unmapped(key_s);
                }
            }
            (col, _) => {
                col.append_null();
                self.keep_unmapped(key_s);
            }
        }
    }

    fn skip_scalar(&mut self) {
        self.t += 1;
        self.s += 1;
    }
}

fn node_size(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => 1 + count,
        _ => 1,
    }
}

/// The members of the object at `t` (none for another node): each key, and the tape index of
/// its value.
fn members<'t, 'n>(nodes: &'t [Node<'n>], t: usize) -> impl Iterator<Item = (&'n str, usize)> + 't {
    let len = match nodes[t] {
        Node::Object { len, .. } => len,
        _ => 0,
    };
    let mut i = t + 1;
    (0..len).filter_map(move |_| {
        let key = i;
        i += 1 + node_size(&nodes[key + 1]);
        match nodes[key] {
            Node::String(k) => Some((k, key + 1)),
            _ => None,
        }
    })
}

/// Whether the node at `t` is an object with at least one of [`EVENT_KEYS`].
fn is_event(nodes: &[Node<'_>], t: usize) -> bool {
    members(nodes, t).any(|(k, _)| EVENT_KEYS.contains(&k))
}

/// Whether the node at `t` is an EventBridge event wrapping a CloudTrail event (`"detail-type":
/// "AWS API Call via CloudTrail"` and the event under `"detail"`), as rules deliver them to
/// Firehose, SQS or CloudWatch Logs.
fn is_eventbridge(nodes: &[Node<'_>], t: usize) -> bool {
    members(nodes, t).any(|(k, _)| k == "detail-type")
        && members(nodes, t).any(|(k, v)| k == "detail" && is_event(nodes, v))
}

/// Whether the object at `t` is a CloudWatch Logs subscription record: `messageType` and a
/// `logEvents` array.
fn is_cloudwatch_logs(nodes: &[Node<'_>], t: usize) -> bool {
    members(nodes, t).any(|(k, _)| k == "messageType")
        && members(nodes, t)
            .any(|(k, v)| k == "logEvents" && matches!(nodes[v], Node::Array { .. }))
}

/// Whether the object at `t` is an event as `aws cloudtrail lookup-events` gives it: the
/// event's JSON as the text of `CloudTrailEvent`, beside `EventId`, `EventName`...
fn is_lookup_event(nodes: &[Node<'_>], t: usize) -> bool {
    members(nodes, t).any(|(k, v)| k == "CloudTrailEvent" && matches!(nodes[v], Node::String(_)))
}

fn top_keys(nodes: &[Node<'_>], t: usize) -> Vec<String> {
    members(nodes, t)
        .take(6)
        .map(|(k, _)| format!("\"{k}\""))
        .collect()
}

/// Find `key` among `specs`, starting at `hint` (keys mostly arrive in schema order).
fn find_field(specs: &[FieldSpec], key: &str, hint: usize) -> Option<usize> {
    let print = KeyPrint::of_key(key);
    let hint = hint.min(specs.len());
    (hint..specs.len())
        .chain(0..hint)
        .find(|&i| specs[i].print.matches(specs[i].name, &print, key))
}

/// The JSON text `span` on one line: white space outside strings dropped when the span has
/// line breaks or tabs, every token (number text, string escapes) exactly as in the source.
fn compact<'s>(span: &'s [u8], scratch: &'s mut Vec<u8>) -> &'s [u8] {
    if memchr::memchr3(b'\n', b'\r', b'\t', span).is_none() {
        return span;
    }
    scratch.clear();
    let mut in_string = false;
    let mut escaped = false;
    for &c in span {
        if in_string {
            scratch.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if c == b'"' {
            in_string = true;
            scratch.push(c);
        } else if !c.is_ascii_whitespace() {
            scratch.push(c);
        }
    }
    scratch
}

fn trim_end(src: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && src[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    end
}

/// Builds the unmapped object of one record lazily: nothing is written until the first entry,
/// and then only the path of struct keys down to it.
#[derive(Default)]
struct Unmapped {
    buf: Vec<u8>,
    path: Vec<&'static str>,
    /// Objects currently open in `buf`, the record's own included.
    opened: usize,
    /// Per open level, whether it has a member already (for commas).
    has_member: Vec<bool>,
    probing: u32,
    probe_hits: usize,
}

impl Unmapped {
    fn clear(&mut self) {
        self.buf.clear();
        self.path.clear();
        self.opened = 0;
    }

    fn enter(&mut self, name: &'static str) {
        self.path.push(name);
    }

    fn leave(&mut self) {
        if self.opened > self.path.len() {
            self.buf.push(b'}');
            self.opened -= 1;
        }
        self.path.pop();
    }

    fn begin_probe(&mut self) {
        if self.probing == 0 {
            self.probe_hits = 0;
        }
        self.probing += 1;
    }

    fn hit(&mut self) {
        self.probe_hits += 1;
    }

    /// End a probe; whether anything would have been written during it.
    fn end_probe(&mut self) -> bool {
        self.probing -= 1;
        self.probe_hits > 0
    }

    fn comma(&mut self, level: usize) {
        if self.has_member[level] {
            self.buf.push(b',');
        }
        self.has_member[level] = true;
    }

    fn entry(&mut self, key: &[u8], value: &[u8]) {
        if self.probing > 0 {
            self.probe_hits += 1;
            return;
        }
        let depth = self.path.len();
        if self.has_member.len() <= depth {
            self.has_member.resize(depth + 1, false);
        }
        while self.opened <= depth {
            let level = self.opened;
            if level == 0 {
                self.buf.push(b'{');
            } else {
                self.comma(level - 1);
                self.buf.push(b'"');
                self.buf.extend_from_slice(self.path[level - 1].as_bytes());
                self.buf.extend_from_slice(b"\":{");
            }
            self.has_member[level] = false;
            self.opened += 1;
        }
        self.comma(depth);
        self.buf.extend_from_slice(key);
        self.buf.push(b':');
        self.buf.extend_from_slice(value);
    }

    fn finish(&mut self) -> Option<&str> {
        if self.buf.is_empty() {
            return None;
        }
        while self.opened > 0 {
            self.buf.push(b'}');
            self.opened -= 1;
        }
        // SAFETY: the buffer holds only slices of validated UTF-8 source cut at ASCII
        // characters, static ASCII names and ASCII punctuation.
        Some(unsafe { std::str::from_utf8_unchecked(&self.buf) })
    }
}

/// Arrow builders for the canonical schema; rows are appended by [`Decoder`].
pub struct BatchBuilder {
    root: StructCol,
    unmapped: StringBuilder,
    rows: usize,
    batch_size: usize,
    ready: Vec<RecordBatch>,
}

impl BatchBuilder {
    /// A builder that cuts a batch every `batch_size` rows.
    pub fn new(batch_size: usize) -> Self {
        Self {
            root: StructCol::new(RECORD),
            unmapped: StringBuilder::new(),
            rows: 0,
            batch_size: batch_size.max(1),
            ready: Vec::new(),
        }
    }

    fn end_row(&mut self) {
        self.rows += 1;
        if self.rows >= self.batch_size {
            let batch = self.finish_batch();
            self.ready.push(batch);
        }
    }

    /// Add batches decoded elsewhere (runs of a split file) to those ready.
    pub fn push_ready(&mut self, batches: Vec<RecordBatch>) {
        self.ready.extend(batches);
    }

    /// Batches cut so far, handed over.
    pub fn take_ready(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.ready)
    }

    /// Every batch not yet handed over, the rows still pending cut into a last one.
    pub fn flush(&mut self) -> Vec<RecordBatch> {
        if self.rows > 0 {
            let batch = self.finish_batch();
            self.ready.push(batch);
        }
        self.take_ready()
    }

    fn finish_batch(&mut self) -> RecordBatch {
        self.rows = 0;
        let mut columns = self.root.finish_children();
        columns.push(Arc::new(finish_presized(&mut self.unmapped)) as ArrayRef);
        RecordBatch::try_new(arrow_schema(), columns).expect("builders follow the schema")
    }
}

enum Col {
    Str(StringBuilder),
    Json(StringBuilder),
    Bool(BooleanBuilder),
    Time(TimestampMicrosecondBuilder),
    Struct(StructCol),
    List(ListCol),
}

impl Col {
    fn new(kind: &'static Kind) -> Self {
        match kind {
            Kind::Str => Col::Str(StringBuilder::new()),
            Kind::Json => Col::Json(StringBuilder::new()),
            Kind::Bool => Col::Bool(BooleanBuilder::new()),
            Kind::Timestamp => Col::Time(TimestampMicrosecondBuilder::new().with_timezone(UTC)),
            Kind::Struct(children) => Col::Struct(StructCol::new(children)),
            Kind::ListOfStruct(children) => Col::List(ListCol {
                offsets: vec![0],
                validity: NullBufferBuilder::new(0),
                item: StructCol::new(children),
            }),
        }
    }

    fn append_null(&mut self) {
        self.append_nulls(1);
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            Col::Str(b) | Col::Json(b) => b.append_nulls(n),
            Col::Bool(b) => b.append_nulls(n),
            Col::Time(b) => b.append_nulls(n),
            Col::Struct(s) => s.append_nulls(n),
            Col::List(l) => {
                let last = *l.offsets.last().expect("offsets start at 0");
                l.offsets.extend(std::iter::repeat_n(last, n));
                l.validity.append_n_nulls(n);
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Col::Str(b) | Col::Json(b) => b.len(),
            Col::Bool(b) => b.len(),
            Col::Time(b) => b.len(),
            Col::Struct(s) => s.len,
            Col::List(l) => l.offsets.len() - 1,
        }
    }

    /// Append nulls up to `rows` rows: the rows of its struct that lacked this field.
    #[inline]
    fn pad_to(&mut self, rows: usize) {
        let len = self.len();
        if len < rows {
            self.append_nulls(rows - len);
        }
    }

    /// The column's array; the builder starts the next batch with room for as much as this one
    /// held (batches of a run are alike), so it does not grow by doubling, copying and
    /// faulting in fresh pages batch after batch.
    fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Str(b) | Col::Json(b) => Arc::new(finish_presized(b)),
            Col::Bool(b) => {
                let rows = b.len();
                Arc::new(std::mem::replace(b, BooleanBuilder::with_capacity(rows)).finish())
            }
            Col::Time(b) => {
                let next = TimestampMicrosecondBuilder::with_capacity(b.len()).with_timezone(UTC);
                Arc::new(std::mem::replace(b, next).finish())
            }
            Col::Struct(s) => Arc::new(s.finish()),
            Col::List(l) => {
                let mut next = Vec::with_capacity(l.offsets.len());
                next.push(0);
                let offsets = std::mem::replace(&mut l.offsets, next);
                let item = l.item.finish();
                let field = Field::new("item", DataType::Struct(struct_fields(l.item.specs)), true);
                Arc::new(ListArray::new(
                    Arc::new(field),
                    OffsetBuffer::new(offsets.into()),
                    Arc::new(item),
                    l.validity.finish(),
                ))
            }
        }
    }
}

/// Finish a string builder, leaving it room for as many rows and bytes as it held (up to a
/// limit, so that one huge batch does not pin its size on every later one).
fn finish_presized(b: &mut StringBuilder) -> arrow::array::StringArray {
    const MAX_RESERVE: usize = 16 << 20;
    let (rows, bytes) = (b.len(), b.values_slice().len());
    let next = StringBuilder::with_capacity(rows, (bytes + bytes / 8).min(MAX_RESERVE));
    std::mem::replace(b, next).finish()
}

struct StructCol {
    specs: &'static [FieldSpec],
    children: Vec<Col>,
    validity: NullBufferBuilder,
    len: usize,
}

impl StructCol {
    fn new(specs: &'static [FieldSpec]) -> Self {
        assert!(
            specs.len() <= 64,
            "a struct level holds at most 64 known fields"
        );
        Self {
            specs,
            children: specs.iter().map(|s| Col::new(&s.kind)).collect(),
            validity: NullBufferBuilder::new(0),
            len: 0,
        }
    }

    /// Null rows; the children are padded later (see [`Col::pad_to`]).
    fn append_null(&mut self) {
        self.append_nulls(1);
    }

    fn append_nulls(&mut self, n: usize) {
        self.validity.append_n_nulls(n);
        self.len += n;
    }

    /// The children's arrays, each padded to the struct's rows.
    fn finish_children(&mut self) -> Vec<ArrayRef> {
        let len = std::mem::take(&mut self.len);
        self.validity = NullBufferBuilder::new(len);
        self.children
            .iter_mut()
            .map(|c| {
                c.pad_to(len);
                c.finish()
            })
            .collect()
    }

    fn finish(&mut self) -> StructArray {
        let len = self.len;
        let nulls = self.validity.finish();
        let columns = self.finish_children();
        debug_assert!(columns.iter().all(|c| c.len() == len));
        StructArray::new(struct_fields(self.specs), columns, nulls)
    }
}

struct ListCol {
    offsets: Vec<i32>,
    validity: NullBufferBuilder,
    item: StructCol,
}

impl ListCol {
    fn end_list(&mut self) {
        self.offsets
            .push(i32::try_from(self.item.len).expect("fewer than 2^31 list items per batch"));
        self.validity.append_non_null();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    fn decode(text: &str) -> (RecordBatch, Decoded) {
        let mut out = BatchBuilder::new(1024);
        let decoded = Decoder::new()
            .decode_file("t.json", text.as_bytes(), &mut out)
            .unwrap();
        let batches = out.flush();
        assert_eq!(batches.len(), 1);
        (batches.into_iter().next().unwrap(), decoded)
    }

    /// The texts of a text column with no NULL.
    fn texts(batch: &RecordBatch, column: &str) -> Vec<String> {
        let column = batch.column_by_name(column).unwrap().as_string::<i32>();
        column.iter().map(|v| v.unwrap().to_string()).collect()
    }

    fn unmapped(batch: &RecordBatch, row: usize) -> Option<String> {
        let col = batch
            .column_by_name(trailql_schema::UNMAPPED)
            .unwrap()
            .as_string::<i32>();
        col.is_valid(row).then(|| col.value(row).to_string())
    }

    #[test]
    fn a_field_an_event_lacks_is_null_in_that_row_only_across_batch_cuts() {
        // Fields appear and disappear from event to event, nested three deep, and batches are
        // cut every two rows: each value lands in its own row, every gap is null.
        let text = r#"{"Records":[
            {"eventName":"A","userIdentity":{"type":"X","sessionContext":{"sessionIssuer":{"arn":"arn:1"}}}},
            {"eventName":"B"},
            {"eventSource":"s","userIdentity":{"type":"Y"},"resources":[{"ARN":"r"}]},
            {"eventName":"D","userIdentity":{"sessionContext":{"attributes":{"mfaAuthenticated":"true"}}}},
            {"eventName":"E","userIdentity":{"sessionContext":{"sessionIssuer":{"arn":"arn:5"}}}}
        ]}"#;
        let mut out = BatchBuilder::new(2);
        let decoded = Decoder::new()
            .decode_file("t.json", text.as_bytes(), &mut out)
            .unwrap();
        assert_eq!(decoded.records, 5);
        let batches = out.flush();
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        let batch = arrow::compute::concat_batches(&arrow_schema(), &batches).unwrap();
        let texts = |col: &dyn Array| -> Vec<Option<String>> {
            let col = col.as_string::<i32>();
            col.iter().map(|v| v.map(String::from)).collect()
        };
        let expect = |values: [Option<&str>; 5]| values.map(|v| v.map(String::from)).to_vec();
        let valid = |col: &dyn Array| (0..5).map(|r| col.is_valid(r)).collect::<Vec<_>>();
        let names = texts(batch.column_by_name("eventName").unwrap());
        assert_eq!(
            names,
            expect([Some("A"), Some("B"), None, Some("D"), Some("E")])
        );
        let identity = batch.column_by_name("userIdentity").unwrap().as_struct();
        assert_eq!(valid(identity), [true, false, true, true, true]);
        let types = texts(identity.column_by_name("type").unwrap());
        assert_eq!(types, expect([Some("X"), None, Some("Y"), None, None]));
        let context = identity
            .column_by_name("sessionContext")
            .unwrap()
            .as_struct();
        let issuer = context.column_by_name("sessionIssuer").unwrap().as_struct();
        let arns = texts(issuer.column_by_name("arn").unwrap());
        assert_eq!(
            arns,
            expect([Some("arn:1"), None, None, None, Some("arn:5")])
        );
        assert_eq!(valid(issuer), [true, false, false, false, true]);
        let attributes = context.column_by_name("attributes").unwrap().as_struct();
        let mfa = texts(attributes.column_by_name("mfaAuthenticated").unwrap());
        assert_eq!(mfa, expect([None, None, None, Some("true"), None]));
        let resources = batch.column_by_name("resources").unwrap().as_list::<i32>();
        let listed: Vec<usize> = (0..5)
            .map(|r| {
                if resources.is_valid(r) {
                    resources.value(r).len()
                } else {
                    0
                }
            })
            .collect();
        assert_eq!(listed, [0, 0, 1, 0, 0]);
        assert_eq!(resources.null_count(), 4);
    }

    #[test]
    fn unknown_keys_are_kept_at_their_path() {
        let (b, d) = decode(
            r#"{"Records":[{"eventName":"A","new":1,"userIdentity":{"type":"Root","sessionContext":{"attributes":{"x":"y"}},"z":[1]},"tlsDetails":{"q":true}}]}"#,
        );
        assert_eq!(d.records, 1);
        assert_eq!(
            unmapped(&b, 0).unwrap(),
            r#"{"new":1,"userIdentity":{"sessionContext":{"attributes":{"x":"y"}},"z":[1]},"tlsDetails":{"q":true}}"#
        );
    }

    #[test]
    fn records_without_surprises_have_no_unmapped_value() {
        let (b, _) = decode(r#"[{"eventName":"A","requestParameters":{"a":1},"readOnly":true}]"#);
        assert_eq!(unmapped(&b, 0), None);
        let rp = b
            .column_by_name("requestParameters")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(rp.value(0), r#"{"a":1}"#);
    }

    #[test]
    fn payload_spans_are_compacted_but_tokens_kept() {
        let (b, _) = decode(
            "{\"eventName\":\"A\",\"requestParameters\": {\n  \"a b\" : 1.50e+3,\n  \"c\": \"x  \\\" y\"\n}}",
        );
        let rp = b
            .column_by_name("requestParameters")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(rp.value(0), r#"{"a b":1.50e+3,"c":"x  \" y"}"#);
    }

    #[test]
    fn a_payload_nested_deeper_than_the_first_parse_allows_is_kept() {
        let depth = MAX_DEPTH * 4;
        let payload = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let text = format!(r#"{{"Records":[{{"eventName":"A","requestParameters":{payload}}}]}}"#);
        let mut decoder = Decoder::new();
        let mut out = BatchBuilder::new(1024);
        let d = decoder
            .decode_file("t.json", text.as_bytes(), &mut out)
            .unwrap();
        assert_eq!(d.records, 1, "{:?}", d.record_errors);
        let b = out.flush().remove(0);
        let rp = b
            .column_by_name("requestParameters")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(rp.value(0), payload);
        // The decoder goes on with its own buffers.
        let again = decoder.decode_file("t.json", br#"[{"eventName":"B"}]"#, &mut out);
        assert_eq!(again.unwrap().records, 1);
    }

    #[test]
    fn numbers_beyond_f64_are_kept_as_their_text_and_bad_numbers_still_fail() {
        // simd-json refuses `1e400` (valid JSON): the event is kept, its text exact.
        let (b, d) = decode(
            r#"{"Records":[{"eventName":"A","requestParameters":{"n":-1.5E+400,"a":[1e999,2]},"x":1e309},
            {"eventName":"B","requestParameters":{"n":1e400x}}]}"#,
        );
        assert_eq!(d.records, 1, "{:?}", d.record_errors);
        let rp = b
            .column_by_name("requestParameters")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(rp.value(0), r#"{"n":-1.5E+400,"a":[1e999,2]}"#);
        assert_eq!(unmapped(&b, 0).unwrap(), r#"{"x":1e309}"#);
        assert!(d.record_errors[0].to_string().contains("record 1"));
        assert_eq!(json_number_len(b"-0.5e+3,", 0), Some(7));
        assert_eq!(json_number_len(b"01", 0), None);
        assert_eq!(json_number_len(b"1.}", 0), None);
        assert_eq!(json_number_len(b"1e400", 0), Some(5));
    }

    #[test]
    fn a_list_with_anything_unusual_is_kept_whole() {
        let (b, _) = decode(r#"[{"eventName":"A","resources":[{"ARN":"a"},{"ARN":"b","new":1}]}]"#);
        assert_eq!(
            unmapped(&b, 0).unwrap(),
            r#"{"resources":[{"ARN":"a"},{"ARN":"b","new":1}]}"#
        );
        let list = b.column_by_name("resources").unwrap().as_list::<i32>();
        assert_eq!(list.value(0).len(), 2);
    }

    #[test]
    fn a_file_in_utf16_is_read_as_the_text_it_holds() {
        let text = r#"{"Records":[{"eventID":"e1","eventName":"GetObject \u00e9 é"}]}"#;
        let le: Vec<u8> = [0xFEFF]
            .into_iter()
            .chain(text.encode_utf16())
            .flat_map(u16::to_le_bytes)
            .collect();
        let be_without_bom: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        for data in [le, be_without_bom] {
            let mut out = BatchBuilder::new(16);
            let decoded = Decoder::new().decode_file("f", &data, &mut out).unwrap();
            assert_eq!(decoded.records, 1);
            let batch = out.flush().pop().unwrap();
            let names = batch
                .column_by_name("eventName")
                .unwrap()
                .as_string::<i32>();
            assert_eq!(names.value(0), "GetObject é é");
        }
        assert_eq!(utf16_to_utf8(b"{\"Records\":[]}"), None);
        assert_eq!(utf16_to_utf8(&[0xFF, 0xFE, 0x00, 0xD8]), None); // a lone surrogate
    }

    #[test]
    fn event_spans_find_complete_events_only() {
        let text = br#"{"Records": [ {"a":"}"} , {"b":[1,{"c":"\""}]}, {"d":"#;
        let spans = event_spans(text);
        assert_eq!(spans.len(), 2);
        assert_eq!(&text[spans[0].0..spans[0].1], br#"{"a":"}"}"#);
        assert_eq!(&text[spans[1].0..spans[1].1], br#"{"b":[1,{"c":"\""}]}"#);
    }

    #[test]
    fn documents_back_to_back_are_each_read_and_a_damaged_one_salvaged() {
        let text = concat!(
            r#"{"Records":[{"eventName":"A"}]}"#,
            r#"{"Records":[{"eventName":"B"},{"eventName":"C"}]}"#,
            "\n",
            r#"{"Records":[{"eventName":"D"},{"eventName":"E""#,
        );
        let mut out = BatchBuilder::new(16);
        let d = Decoder::new()
            .decode_file("cat.json", text.as_bytes(), &mut out)
            .unwrap();
        assert_eq!(d.records, 4, "{:?}", d.record_errors);
        let batch = &out.flush()[0];
        let names = batch
            .column_by_name("eventName")
            .unwrap()
            .as_string::<i32>();
        let names: Vec<&str> = names.iter().flatten().collect();
        assert_eq!(names, ["A", "B", "C", "D"]);
        assert_eq!(d.record_errors.len(), 1);
        let damage = d.record_errors[0].to_string();
        assert!(damage.contains("kept the 1 complete record it"), "{damage}");
        assert_eq!(documents(text.as_bytes()).0.len(), 2);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_read_as_replacement_characters_and_reported() {
        let user_agents = |out: &mut BatchBuilder| -> Vec<Option<String>> {
            let batch = &out.flush()[0];
            let column = batch
                .column_by_name("userAgent")
                .unwrap()
                .as_string::<i32>();
            column.iter().map(|v| v.map(str::to_string)).collect()
        };
        let text = b"{\"Records\":[{\"eventName\":\"A\",\"eventID\":\"1\"},\
            {\"eventName\":\"B\",\"eventID\":\"2\",\"userAgent\":\"Bad\xff\xfe!\"}]}";
        let mut out = BatchBuilder::new(16);
        let d = Decoder::new()
            .decode_file("t.json", text, &mut out)
            .unwrap();
        assert_eq!(d.records, 2, "both events are kept");
        let bad = text.iter().position(|&b| b == 0xff).unwrap();
        assert!(
            matches!(&d.record_errors[..], [IngestError::NotUtf8 { record: None, offset, .. }] if *offset == bad),
            "{:?}",
            d.record_errors
        );
        assert!(d.record_errors[0].is_repair());
        assert_eq!(
            user_agents(&mut out),
            [None, Some("Bad\u{FFFD}\u{FFFD}!".to_string())]
        );
        // One event a line: the line is named.
        let lines = b"{\"eventName\":\"A\",\"eventID\":\"1\"}\n{\"eventName\":\"B\",\"userAgent\":\"\xc3\"}\n";
        let mut out = BatchBuilder::new(16);
        let d = Decoder::new()
            .decode_file("t.jsonl", lines, &mut out)
            .unwrap();
        assert_eq!(d.records, 2);
        let bad = lines.iter().position(|&b| b == 0xc3).unwrap();
        assert!(
            matches!(&d.record_errors[..], [IngestError::NotUtf8 { record: Some(2), offset, .. }] if *offset == bad),
            "{:?}",
            d.record_errors
        );
        assert_eq!(user_agents(&mut out), [None, Some("\u{FFFD}".to_string())]);
    }

    #[test]
    fn escapes_of_lone_surrogates_are_read_as_replacement_characters_and_lose_nothing() {
        // A lone high and a lone low surrogate in typed strings, one in a payload and one in a
        // key; a pair and an escaped backslash before `ud800` are not lone.
        let events = [
            r#"{"eventName":"A","userAgent":"x\ud800y","eventID":"1"}"#,
            r#"{"eventName":"B","userAgent":"\udc00","requestParameters":{"k":"\ud83d\ude00 \udbff"},"eventID":"2"}"#,
            r#"{"eventName":"C","userAgent":"\ud83d\ude00 \\ud800","eventID":"3","x\udfff":1}"#,
        ];
        let text = format!("{{\"Records\":[{}]}}", events.join(","));
        let (batch, d) = decode(&text);
        assert_eq!(d.records, 3);
        assert!(d.record_errors.is_empty(), "{:?}", d.record_errors);
        assert_eq!(
            texts(&batch, "userAgent"),
            ["x\u{FFFD}y", "\u{FFFD}", "\u{1F600} \\ud800"]
        );
        assert_eq!(
            unmapped(&batch, 0).as_deref(),
            Some(r#"{"userAgent":"x\ud800y"}"#)
        );
        assert_eq!(unmapped(&batch, 2).as_deref(), Some(r#"{"x\udfff":1}"#));
        // Rendered back, each event is its source text (the pair, a character UTF-8 holds, is
        // written as that character).
        let mut rendered = Vec::new();
        trailql_schema::render::write_ndjson(&batch, &mut rendered).unwrap();
        let rendered = String::from_utf8(rendered).unwrap();
        let mut expected = events.map(str::to_string);
        expected[2] = expected[2].replace("\\ud83d\\ude00", "\u{1F600}");
        assert_eq!(rendered.lines().collect::<Vec<_>>(), expected);
        assert_eq!(lone_surrogates(text.as_bytes()).count(), 4);
    }

    #[test]
    fn a_json_error_names_the_bad_byte_in_plain_words_with_the_text_around_it() {
        let good = r#"{"eventName":"A","eventID":"1"}"#;
        let cases: [(&[u8], &str, &str); 3] = [
            (br#""a\qb""#, "invalid escape in a string", r#"\qb"#),
            (b"tru", "invalid literal", "tru"),
            (b"01", "invalid number", "01"),
        ];
        for (value, words, near) in cases {
            let bad = [br#"{"eventName":"B","x":"#.as_slice(), value, b"}"].concat();
            let text = [br#"{"Records":["#, good.as_bytes(), b",", &bad, b"]}"].concat();
            let mut out = BatchBuilder::new(16);
            let d = Decoder::new()
                .decode_file("t.json", &text, &mut out)
                .unwrap();
            assert_eq!(d.records, 1, "the good record is kept");
            let IngestError::InvalidJson {
                record: Some(1),
                offset,
                reason,
                ..
            } = &d.record_errors[0]
            else {
                panic!("{:?}", d.record_errors);
            };
            // The offset is the file's byte where the value goes wrong, not its record's start.
            let value_at = text.len() - 3 - value.len();
            assert!(
                (value_at..value_at + value.len()).contains(offset),
                "{words}: byte {offset}, value at {value_at}"
            );
            assert!(reason.starts_with(words), "{reason}");
            assert!(reason.contains(near), "{reason}");
        }
        let mut out = BatchBuilder::new(16);
        let trailing = format!(r#"{{"Records":[{good}]}} trailing"#);
        let d = Decoder::new()
            .decode_file("t.json", trailing.as_bytes(), &mut out)
            .unwrap();
        assert_eq!(d.records, 1);
        let damage = d.record_errors[0].to_string();
        assert!(damage.contains("text after a complete value"), "{damage}");
        assert!(damage.contains("}]} trailing"), "{damage}");
    }

    #[test]
    fn a_damaged_pretty_printed_document_is_not_read_as_lines() {
        let text = "{\n  \"Records\": [\n    {\n      \"eventName\": \"A\"\n    },\n    {\n      \"eventName\": \"B\"\n    },\n    {\n      \"eventNa";
        assert!(!looks_like_json_lines(text.as_bytes()));
        let mut out = BatchBuilder::new(16);
        let d = Decoder::new()
            .decode_file("pretty.json", text.as_bytes(), &mut out)
            .unwrap();
        assert_eq!(d.records, 2);
        assert_eq!(d.record_errors.len(), 1, "{:?}", d.record_errors);
        // One event per line is still found when its first line is the broken one.
        let lines = "{\"eventName\":\n{\"eventName\":\"B\"}\n{\"eventName\":\"C\"}\n";
        assert!(looks_like_json_lines(lines.as_bytes()));
        let d = Decoder::new()
            .decode_file("lines.json", lines.as_bytes(), &mut out)
            .unwrap();
        assert_eq!(d.records, 2);
        assert!(
            d.record_errors[0]
                .to_string()
                .contains("lines.json record 1")
        );
    }

    #[test]
    fn cloudwatch_logs_export_lines_are_read_past_their_timestamp() {
        let text = concat!(
            "2024-03-01T00:00:01.000Z {\"eventName\":\"A\",\"eventID\":\"a\"}\n",
            "2024-03-01T00:00:02.000Z {\"eventName\":\"B\",\"eventID\":\"b\"}\n",
            "2024-03-01T00:00:03.000Z not json\n",
        );
        assert!(looks_like_json_lines(text.as_bytes()));
        let mut out = BatchBuilder::new(16);
        let d = Decoder::new()
            .decode_file("000000", text.as_bytes(), &mut out)
            .unwrap();
        assert_eq!(d.records, 2);
        assert!(d.record_errors[0].to_string().contains("000000 record 3"));
        let (b, d) = decode("2024-03-01T00:00:01.000Z {\"eventName\":\"A\"}");
        assert_eq!((b.num_rows(), d.records), (1, 1));
        assert_eq!(
            unmapped(&b, 0),
            None,
            "the timestamp is not part of the event"
        );
    }

    #[test]
    fn cloudwatch_logs_subscription_records_are_their_messages_events_with_the_envelope_kept() {
        let record = |events: &str| {
            format!(
                r#"{{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvents":[{events}]}}"#
            )
        };
        let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#;
        // Back to back, as Firehose writes them: two events, a control message, a bad message
        // and a log event without one, then one more event.
        let text = [
            record(r#"{"id":"1","timestamp":10,"message":"{\"eventID\":\"a\",\"eventName\":\"A\",\"requestParameters\":{\"k\": \"v\\\"\"}}"},{"id":"2","timestamp":20,"message":"{\"eventID\":\"b\",\"eventName\":\"B\"}"}"#),
            control.to_string(),
            record(r#"{"id":"3","timestamp":30,"message":"not json"},{"id":"4","timestamp":40}"#),
            record(r#"{"id":"5","timestamp":50,"message":"{\"eventID\":\"c\",\"eventName\":\"C\"}"}"#),
        ]
        .concat();
        let mut out = BatchBuilder::new(16);
        let decoded = Decoder::new()
            .decode_file("f", text.as_bytes(), &mut out)
            .unwrap();
        assert_eq!(decoded.records, 3);
        let errors: Vec<String> = decoded
            .record_errors
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("without a message")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("not json")), "{errors:?}");
        let b = out.flush().pop().unwrap();
        let ids = b.column_by_name("eventID").unwrap().as_string::<i32>();
        assert_eq!((ids.value(0), ids.value(1), ids.value(2)), ("a", "b", "c"));
        // The message's own text, escapes and spacing as written in it.
        let params = b
            .column_by_name("requestParameters")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(params.value(0), r#"{"k": "v\""}"#);
        assert_eq!(
            unmapped(&b, 1).unwrap(),
            r#"{"cloudWatchLogsEnvelope":{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvent":{"id":"2","timestamp":20}}}"#
        );
    }

    #[test]
    fn lookup_events_output_is_its_cloudtrail_events_with_the_wrapper_kept() {
        // As `aws cloudtrail lookup-events` prints it: the event as JSON text, beside fields
        // taken from it (and a bad one, which is a record error).
        let event = |id: &str, name: &str| {
            format!(
                r#"{{"EventId":"{id}","EventName":"{name}","ReadOnly":"true","EventTime":"2024-03-05T10:00:00+00:00","Resources":[],"CloudTrailEvent":"{{\"eventID\":\"{id}\",\"eventName\":\"{name}\",\"requestParameters\":{{\"k\": 1}}}}"}}"#
            )
        };
        let bad = r#"{"EventId":"x","CloudTrailEvent":"{not json"}"#;
        let text = format!(
            r#"{{"Events":[{},{bad},{}],"NextToken":"t"}}"#,
            event("a", "A"),
            event("b", "B")
        );
        let mut out = BatchBuilder::new(16);
        let decoded = Decoder::new()
            .decode_file("lookup.json", text.as_bytes(), &mut out)
            .unwrap();
        assert_eq!(decoded.records, 2);
        assert_eq!(
            decoded.record_errors.len(),
            1,
            "{:?}",
            decoded.record_errors
        );
        let b = out.flush().pop().unwrap();
        let ids = b.column_by_name("eventID").unwrap().as_string::<i32>();
        assert_eq!((ids.value(0), ids.value(1)), ("a", "b"));
        let params = b
            .column_by_name("requestParameters")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(params.value(1), r#"{"k": 1}"#);
        assert_eq!(
            unmapped(&b, 0).unwrap(),
            r#"{"lookupEventsEnvelope":{"EventId":"a","EventName":"A","ReadOnly":"true","EventTime":"2024-03-05T10:00:00+00:00","Resources":[]}}"#
        );
        // One such object alone, an array of them (`jq .Events`), or one a line.
        for text in [
            event("c", "C"),
            format!("[{}]", event("c", "C")),
            format!("{}\n{}\n", event("c", "C"), event("d", "D")),
        ] {
            let (b, d) = decode(&text);
            assert!(d.records >= 1 && b.num_rows() == d.records, "{text}");
        }
    }

    #[test]
    fn an_eventbridge_event_is_its_detail_with_the_envelope_kept() {
        let envelope = r#"{"version":"0","id":"e1","detail-type":"AWS API Call via CloudTrail","source":"aws.s3","resources":[]"#;
        let text = format!(
            "{envelope},\"detail\":{{\"eventName\":\"A\",\"new\":1}},\"after\":true}}\n{envelope},\"detail\":{{\"eventName\":\"B\"}}}}\n"
        );
        let (b, d) = decode(&text);
        assert_eq!(d.records, 2);
        let names = b.column_by_name("eventName").unwrap().as_string::<i32>();
        assert_eq!((names.value(0), names.value(1)), ("A", "B"));
        assert_eq!(
            unmapped(&b, 0).unwrap(),
            format!(r#"{{"new":1,"eventBridgeEnvelope":{envelope},"after":true}}}}"#)
        );
        assert_eq!(
            unmapped(&b, 1).unwrap(),
            format!(r#"{{"eventBridgeEnvelope":{envelope}}}}}"#)
        );
        // In an array too.
        let array = format!("[{envelope},\"detail\":{{\"eventName\":\"C\"}}}}]");
        let (b, d) = decode(&array);
        assert_eq!((b.num_rows(), d.records), (1, 1));
        // Not CloudTrail inside: not an event.
        let other = r#"{"detail-type":"EC2 Instance State-change Notification","detail":{"state":"running"}}"#;
        let mut out = BatchBuilder::new(16);
        assert!(
            Decoder::new()
                .decode_file("o.json", other.as_bytes(), &mut out)
                .is_err()
        );
    }

    #[test]
    fn decoding_only_some_fields_leaves_the_others_null() {
        let text =
            r#"[{"eventName":"A","eventSource":"s","readOnly":"odd","new":1,"eventName":"B"}]"#;
        let name = RECORD.iter().position(|f| f.name == "eventName").unwrap();
        let mut out = BatchBuilder::new(16);
        let d = Decoder::new()
            .decoding_only(Some(1 << name))
            .decode_file("t.json", text.as_bytes(), &mut out)
            .unwrap();
        assert_eq!(d.records, 1);
        let b = &out.flush()[0];
        let names = b.column_by_name("eventName").unwrap().as_string::<i32>();
        assert_eq!(names.value(0), "A");
        assert!(b.column_by_name("eventSource").unwrap().is_null(0));
        assert!(b.column_by_name("readOnly").unwrap().is_null(0));
        // Every field decoded: the same record in full.
        let (full, _) = decode(text);
        assert_eq!(full.column_by_name("eventSource").unwrap().null_count(), 0);
        assert_eq!(
            unmapped(&full, 0).unwrap(),
            r#"{"readOnly":"odd","new":1,"eventName":"B"}"#
        );
    }

    #[test]
    fn trail_files_gathered_in_an_array_are_each_read_one_level_deep() {
        // `jq -s . *.json`: an array of delivery files' objects, one with other keys beside.
        let text = r#"[{"Records":[{"eventName":"A","eventID":"1"},{"eventName":"B","eventID":"2"}]},
            {"x":1,"Records":[{"eventName":"C","eventID":"3"}]},
            {"eventName":"D","eventID":"4"},
            {"Records":[{"Records":[{"eventName":"E","eventID":"5"}]}]}]"#;
        let (batch, d) = decode(text);
        assert_eq!(texts(&batch, "eventName"), ["A", "B", "C", "D"]);
        assert_eq!(d.records, 4);
        // A wrapper in a wrapper in the array is no event: one error, E not read.
        assert!(
            matches!(
                &d.record_errors[..],
                [IngestError::NotCloudTrail {
                    record: Some(0),
                    ..
                }]
            ),
            "{:?}",
            d.record_errors
        );
    }

    #[test]
    fn a_non_event_array_element_is_a_record_error() {
        let mut out = BatchBuilder::new(16);
        let d = Decoder::new()
            .decode_file("f.json", br#"[{"eventName":"A"},42,{"other":1}]"#, &mut out)
            .unwrap();
        assert_eq!(d.records, 1);
        assert_eq!(d.record_errors.len(), 2);
        assert!(d.record_errors[0].to_string().contains("f.json record 1"));
    }
}
