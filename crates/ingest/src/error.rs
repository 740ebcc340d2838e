//! What can go wrong while reading trail files, with the file (and record) it happened in.

/// Errors of the ingest pipeline. Every variant names the file; none of them stops a run: the
/// pipeline reports it, skips what it must, and goes on.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be listed or read.
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    /// The gzip (or zstd) data is truncated or corrupt.
    #[error(
        "{file}: corrupt or truncated {format} data ({reason}); kept the {} before the damage",
        complete_records(*.salvaged)
    )]
    Compressed {
        file: String,
        format: &'static str,
        reason: String,
        salvaged: usize,
    },
    /// Inflating the file would exceed the configured size limit.
    #[error("{file}: inflates to more than {limit} bytes (limit set by --max-file-size)")]
    TooLarge { file: String, limit: usize },
    /// The file is empty (or only white space).
    #[error("{file}: empty file")]
    Empty { file: String },
    /// The file, or one record in it, is not valid JSON.
    #[error("{file}{}: invalid JSON at byte {offset}: {reason}", record_suffix(*.record))]
    InvalidJson {
        file: String,
        record: Option<usize>,
        offset: usize,
        reason: String,
    },
    /// An archive or compression trailql does not open (bzip2, xz, 7z; a zip or tar inside
    /// another archive).
    #[error(
        "{file}: a {format} archive, which trailql does not open: unpack it first (trailql reads JSON as it is, compressed with gzip or zstd, and in zip and tar archives, not nested ones)"
    )]
    Archive { file: String, format: &'static str },
    /// A bug met while decoding the file: reported, and the run goes on.
    #[error("{file}: internal error while decoding ({reason}); please report it")]
    Internal { file: String, reason: String },
    /// Bytes of a document that are not UTF-8 (JSON's encoding): read as U+FFFD, so the events
    /// around them are kept. Reported, as the text is not the file's.
    #[error(
        "{file}{}: bytes that are not UTF-8 at byte {offset}, read as U+FFFD (the events are kept)",
        record_suffix(*.record)
    )]
    NotUtf8 {
        file: String,
        record: Option<usize>,
        offset: usize,
    },
    /// The file is JSON but holds no CloudTrail events (or one record is not an event).
    #[error("{file}{}: not a CloudTrail event: {reason}", record_suffix(*.record))]
    NotCloudTrail {
        file: String,
        record: Option<usize>,
        reason: String,
    },
}

/// "1 complete record", "2 complete records".
pub(crate) fn complete_records(n: usize) -> String {
    match n {
        1 => "1 complete record".into(),
        n => format!("{n} complete records"),
    }
}

fn record_suffix(record: Option<usize>) -> String {
    record.map(|r| format!(" record {r}")).unwrap_or_default()
}

impl IngestError {
    /// The file the error is about.
    pub fn file(&self) -> &str {
        match self {
            IngestError::Read { file, .. }
            | IngestError::Compressed { file, .. }
            | IngestError::TooLarge { file, .. }
            | IngestError::Empty { file }
            | IngestError::InvalidJson { file, .. }
            | IngestError::NotUtf8 { file, .. }
            | IngestError::Internal { file, .. }
            | IngestError::Archive { file, .. }
            | IngestError::NotCloudTrail { file, .. } => file,
        }
    }

    /// Move an error found in a part of a file to the file: its byte offset by `offset`, its
    /// record number by `first_record` (the part's first record in the file).
    pub fn relocate(&mut self, offset: isize, first_record: usize) {
        match self {
            IngestError::InvalidJson {
                record, offset: at, ..
            }
            | IngestError::NotUtf8 {
                record, offset: at, ..
            } => {
                *at = at.saturating_add_signed(offset);
                *record = record.map(|r| r + first_record);
            }
            IngestError::NotCloudTrail { record, .. } => {
                *record = record.map(|r| r + first_record);
            }
            _ => {}
        }
    }

    /// Whether nothing was skipped: the events were kept, their text mended (`NotUtf8`).
    pub fn is_repair(&self) -> bool {
        matches!(self, IngestError::NotUtf8 { .. })
    }

    /// A short name of the kind of error, for summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            IngestError::Read { .. } => "unreadable",
            IngestError::Compressed { format: "gzip", .. } => "corrupt gzip",
            IngestError::Compressed { .. } => "corrupt zstd",
            IngestError::TooLarge { .. } => "too large",
            IngestError::Empty { .. } => "empty",
            IngestError::InvalidJson { .. } => "invalid JSON",
            IngestError::NotUtf8 { .. } => "not UTF-8",
            IngestError::NotCloudTrail { .. } => "not CloudTrail",
            IngestError::Internal { .. } => "internal error",
            IngestError::Archive { .. } => "archive not opened",
        }
    }
}
