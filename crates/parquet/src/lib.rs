//! Write trailql record batches as a Parquet dataset in any object store (a local folder is
//! one): Hive-style partitions computed from record values, rows sorted by `eventTime` within
//! each file, zstd, statistics and page indexes. Each file is encoded whole, then stored with
//! one put, which object stores make visible atomically (local folders: write, then rename).
//!
//! Memory is bounded by [`WriterOptions::buffer_bytes`], which counts rows buffered per
//! partition and rows being encoded: when a partition reaches a quarter of it, or the buffer
//! fills, that partition is handed to an encode thread, sorted and written as one file, while
//! the caller goes on buffering.

mod location;
mod partition;
mod writer;

use arrow::datatypes::DataType;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use trailql_schema::{Kind, RECORD, UNMAPPED, arrow_schema};

pub use location::DatasetLocation;
pub use partition::{
    NULL_PARTITION, Partition, PartitionKey, day_value, partition_dir, safe_segment,
};
pub use writer::{DatasetWriter, EncodeError, Encoded, WrittenFile, encode_sorted};

/// Errors of the Parquet writer, each naming the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: cannot store: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path}: cannot encode Parquet: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("cannot sort or split rows: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// How the dataset is written.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Partition folders, outermost first (empty: no partitions).
    pub partition_by: Vec<PartitionKey>,
    /// Bytes of rows in memory, buffered or being encoded; sets peak memory, and the size of
    /// output files (a file holds at most a quarter of it in memory).
    pub buffer_bytes: usize,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// zstd level.
    pub zstd_level: i32,
    /// A name shared by the files of one run, so that runs never overwrite each other.
    pub run_id: String,
    /// Files sorted, encoded and stored at once, each on its own thread.
    pub threads: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            partition_by: vec![PartitionKey::Date],
            buffer_bytes: 160 << 20,
            row_group_rows: 64 * 1024,
            zstd_level: 1,
            run_id: default_run_id(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// A run id made of the UTC time and the process id.
pub fn default_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{:x}", now.as_secs(), std::process::id())
}

/// Whether a file name is one trailql writes (`part-<run>-<n>.parquet`).
pub fn is_data_file_name(name: &str) -> bool {
    name.starts_with("part-") && name.ends_with(".parquet")
}

/// Text columns of many values in no order but their time's (principals, addresses, user
/// agents, messages): the minimum and maximum of a page or row group span nearly all values
/// (`arn:aws:iam::1...` to `arn:aws:sts::9...`) and prune nothing, but finding them compares
/// every value twice. They get no statistics (their dictionaries stay).
const FREE_TEXT: [&str; 13] = [
    "userIdentity.principalId",
    "userIdentity.arn",
    "userIdentity.accessKeyId",
    "userIdentity.userName",
    "userIdentity.sessionContext.sessionIssuer.principalId",
    "userIdentity.sessionContext.sessionIssuer.arn",
    "userIdentity.sessionContext.sessionIssuer.userName",
    "sourceIPAddress",
    "userAgent",
    "errorMessage",
    "resources.list.item.ARN",
    "tlsDetails.clientProvidedHostHeader",
    "vpcEndpointId",
];

/// The Parquet column path of a dotted name (`userIdentity.arn`).
fn column_path(dotted: &str) -> ColumnPath {
    ColumnPath::new(dotted.split('.').map(str::to_string).collect())
}

/// zstd, page statistics, `eventTime` as the sorting column, and no dictionary where values are
/// unique per event (it would only be tried and abandoned). Neither do those unique ids nor
/// free-form JSON text (payloads, the unmapped column) get statistics: the minimum and maximum
/// of random ids or of JSON documents prune nothing (a page of ids spans nearly all of them),
/// and comparing every value to find them cost the encoder its time.
pub fn writer_properties(options: &WriterOptions) -> WriterProperties {
    let level = ZstdLevel::try_new(options.zstd_level).unwrap_or_default();
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: leaf_index("eventTime") as i32,
            descending: false,
            nulls_first: true,
        }]))
        .set_created_by(format!("trailql {}", env!("CARGO_PKG_VERSION")));
    let unique_ids = ["eventID", "requestID", "sharedEventID"];
    let json_text = RECORD
        .iter()
        .filter(|f| matches!(f.kind, Kind::Json))
        .map(|f| f.name)
        .chain([UNMAPPED]);
    for column in unique_ids.into_iter().chain(json_text) {
        builder = builder
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
    }
    for column in FREE_TEXT {
        builder =
            builder.set_column_statistics_enabled(column_path(column), EnabledStatistics::None);
    }
    builder.build()
}

/// The Parquet leaf-column index of a top-level column.
fn leaf_index(name: &str) -> usize {
    fn leaves(t: &DataType) -> usize {
        match t {
            DataType::Struct(fields) => fields.iter().map(|f| leaves(f.data_type())).sum(),
            DataType::List(item) => leaves(item.data_type()),
            _ => 1,
        }
    }
    let schema = arrow_schema();
    schema
        .fields()
        .iter()
        .take_while(|f| f.name() != name)
        .map(|f| leaves(f.data_type()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_leaf_index_counts_struct_leaves_before_it() {
        let parquet_schema = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&arrow_schema())
            .unwrap();
        let idx = leaf_index("eventTime");
        assert_eq!(parquet_schema.column(idx).path().string(), "eventTime");
    }

    #[test]
    fn free_text_columns_are_leaves_without_statistics_and_the_others_keep_theirs() {
        let parquet_schema = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&arrow_schema())
            .unwrap();
        let props = writer_properties(&WriterOptions::default());
        let leaves: Vec<ColumnPath> = parquet_schema
            .columns()
            .iter()
            .map(|c| c.path().clone())
            .collect();
        for path in FREE_TEXT.map(column_path) {
            assert!(leaves.contains(&path), "{path} is no leaf column");
            assert_eq!(props.statistics_enabled(&path), EnabledStatistics::None);
        }
        let kept = [
            "eventName",
            "eventSource",
            "errorCode",
            "recipientAccountId",
            "eventTime",
        ];
        for path in kept.map(column_path) {
            assert_eq!(props.statistics_enabled(&path), EnabledStatistics::Page);
        }
    }
}
