//! Write trailql record batches as a Parquet dataset: Hive-style partitions computed from record
//! values, rows sorted by `eventTime` within each file, zstd, statistics and page indexes, and
//! every file written under a temporary name and renamed into place only when complete.
//!
//! Memory is bounded by [`WriterOptions::buffer_bytes`]: rows are buffered per partition until
//! the total reaches it, then the largest partition is sorted and written as one file.

mod partition;

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::{Array, RecordBatch};
use arrow::compute::{SortOptions, interleave_record_batch, sort_to_indices};
use arrow::datatypes::DataType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use trailql_schema::{UNMAPPED, arrow_schema, event_time_index};

pub use partition::{PartitionKey, partition_dir};

/// Errors of the Parquet writer, each naming the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot encode Parquet: {source}")]
    Parquet {
        path: PathBuf,
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
    /// Bytes of rows buffered in memory before the largest partition is written as a file;
    /// sets both peak memory and the size of output files.
    pub buffer_bytes: usize,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// zstd level.
    pub zstd_level: i32,
    /// A name shared by the files of one run, so that runs never overwrite each other.
    pub run_id: String,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            partition_by: vec![PartitionKey::Date],
            buffer_bytes: 192 << 20,
            row_group_rows: 64 * 1024,
            zstd_level: 3,
            run_id: default_run_id(),
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

/// A file the writer completed.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub rows: usize,
    pub bytes: u64,
}

/// Writes batches into a dataset folder.
pub struct DatasetWriter {
    root: PathBuf,
    options: WriterOptions,
    props: WriterProperties,
    buffers: HashMap<String, Vec<RecordBatch>>,
    buffered_bytes: usize,
    sequence: usize,
    written: Vec<WrittenFile>,
}

impl DatasetWriter {
    /// A writer into `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>, options: WriterOptions) -> Result<Self, WriteError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|source| WriteError::Io {
            path: root.clone(),
            source,
        })?;
        let props = writer_properties(&options);
        Ok(Self {
            root,
            options,
            props,
            buffers: HashMap::new(),
            buffered_bytes: 0,
            sequence: 0,
            written: Vec::new(),
        })
    }

    /// Buffer a batch; write files when the buffer is full.
    pub fn write(&mut self, batch: RecordBatch) -> Result<(), WriteError> {
        for (dir, part) in partition::split(&batch, &self.options.partition_by)? {
            self.buffered_bytes += part.get_array_memory_size();
            self.buffers.entry(dir).or_default().push(part);
        }
        while self.buffered_bytes > self.options.buffer_bytes {
            let largest = self
                .buffers
                .iter()
                .max_by_key(|(_, b)| {
                    b.iter()
                        .map(RecordBatch::get_array_memory_size)
                        .sum::<usize>()
                })
                .map(|(dir, _)| dir.clone());
            match largest {
                Some(dir) => self.flush_partition(&dir)?,
                None => break,
            }
        }
        Ok(())
    }

    /// Write everything still buffered; the files written by this writer.
    pub fn finish(mut self) -> Result<Vec<WrittenFile>, WriteError> {
        let mut dirs: Vec<String> = self.buffers.keys().cloned().collect();
        dirs.sort();
        for dir in dirs {
            self.flush_partition(&dir)?;
        }
        Ok(self.written)
    }

    fn flush_partition(&mut self, dir: &str) -> Result<(), WriteError> {
        let Some(batches) = self.buffers.remove(dir) else {
            return Ok(());
        };
        self.buffered_bytes -= batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum::<usize>();
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        let folder = self.root.join(dir);
        fs::create_dir_all(&folder).map_err(|source| WriteError::Io {
            path: folder.clone(),
            source,
        })?;
        self.sequence += 1;
        let name = format!("part-{}-{:05}.parquet", self.options.run_id, self.sequence);
        let file = write_sorted(
            &folder,
            &name,
            &batches,
            &self.props,
            self.options.row_group_rows,
        )?;
        self.written.push(file);
        Ok(())
    }
}

/// Sort `batches` by `eventTime` and write them as `folder/name`, atomically.
fn write_sorted(
    folder: &Path,
    name: &str,
    batches: &[RecordBatch],
    props: &WriterProperties,
    row_group_rows: usize,
) -> Result<WrittenFile, WriteError> {
    // Sort positions (batch, row) by eventTime without copying the rows first.
    let times: Vec<&dyn Array> = batches
        .iter()
        .map(|b| b.column(event_time_index()).as_ref())
        .collect();
    let all_times = arrow::compute::concat(&times)?;
    let order = sort_to_indices(
        &all_times,
        Some(SortOptions {
            descending: false,
            nulls_first: true,
        }),
        None,
    )?;
    let mut starts = Vec::with_capacity(batches.len());
    let mut total = 0usize;
    for b in batches {
        starts.push(total);
        total += b.num_rows();
    }
    let position = |i: u32| {
        let i = i as usize;
        let b = starts.partition_point(|&s| s <= i) - 1;
        (b, i - starts[b])
    };

    let final_path = folder.join(name);
    let tmp_path = folder.join(format!(".{name}.tmp"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Io { path, source }
    };
    let pq = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Parquet { path, source }
    };
    let file = File::create(&tmp_path).map_err(io(&tmp_path))?;
    let mut writer =
        ArrowWriter::try_new(file, arrow_schema(), Some(props.clone())).map_err(pq(&tmp_path))?;
    let batch_refs: Vec<&RecordBatch> = batches.iter().collect();
    for chunk in order.values().chunks(row_group_rows.max(1)) {
        let indices: Vec<(usize, usize)> = chunk.iter().map(|&i| position(i)).collect();
        let sorted = interleave_record_batch(&batch_refs, &indices)?;
        writer.write(&sorted).map_err(pq(&tmp_path))?;
        writer.flush().map_err(pq(&tmp_path))?;
    }
    let file = writer.into_inner().map_err(pq(&tmp_path))?;
    file.sync_all().map_err(io(&tmp_path))?;
    drop(file);
    fs::rename(&tmp_path, &final_path).map_err(io(&final_path))?;
    let bytes = fs::metadata(&final_path).map_err(io(&final_path))?.len();
    Ok(WrittenFile {
        path: final_path,
        rows: total,
        bytes,
    })
}

/// zstd, page statistics, `eventTime` as the sorting column, and no dictionary where values are
/// unique per event (it would only be tried and abandoned).
fn writer_properties(options: &WriterOptions) -> WriterProperties {
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
    for unique in [
        "eventID",
        "requestID",
        "sharedEventID",
        "requestParameters",
        "responseElements",
        UNMAPPED,
    ] {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(unique), false);
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
}
