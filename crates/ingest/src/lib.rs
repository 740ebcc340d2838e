//! Read CloudTrail archives into Arrow record batches of the canonical trailql schema.
//!
//! The one decoder of trailql, shared by conversion and by SQL over raw archives:
//! [`source`] finds files (local or object store, the `AWSLogs/` layout), [`decompress`]
//! inflates them and opens zip and tar archives, [`decode`] turns JSON into batches through
//! simd-json, and [`pipeline`] runs all three in parallel with bounded memory.

pub mod decode;
pub mod decompress;
mod error;
pub mod pipeline;
pub mod source;

pub use decode::{BatchBuilder, Decoded, Decoder};
pub use error::IngestError;
pub use pipeline::{FileReport, IngestOptions, Message, start};
pub use source::{
    DisplayRoot, FileKind, InputFile, StoreLocation, StoreOptions, discover, open_store,
};
