//! Compaction: a partition's small files rewritten into few large, sorted ones, committed in
//! one step (a Delta `OPTIMIZE`-style commit, or a trailql log commit), so that readers of the
//! log never see both the old and the new files, or neither.

use std::collections::BTreeMap;

use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::runtime::Handle;
use trailql_parquet::{DatasetWriter, PartitionKey, WriterOptions};

use crate::{Commit, DataFile, Lake, LakeError, Operation, TableFormat};

/// What to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Files smaller than this are rewritten.
    pub small_bytes: u64,
    /// A partition is rewritten only when it holds at least this many small files.
    pub min_files: usize,
    /// Only these partition folders (`date=2024-01-02`); all when empty.
    pub partitions: Vec<String>,
    /// Rows buffered before a file is written: sets the size of new files and peak memory.
    pub buffer_bytes: usize,
    pub zstd_level: i32,
    pub run_id: String,
}

/// One partition's rewrite.
#[derive(Debug)]
pub struct Compacted {
    pub partition: String,
    pub files_before: usize,
    pub files_after: usize,
    pub rows: u64,
}

/// Compact `lake`; one commit per partition. Call from outside `runtime`.
pub fn compact(
    lake: &mut Lake,
    runtime: &Handle,
    options: &CompactOptions,
) -> Result<Vec<Compacted>, LakeError> {
    let keys: Vec<PartitionKey> = lake
        .state()
        .partition_columns
        .iter()
        .filter_map(|c| PartitionKey::parse(c))
        .collect();
    let mut by_partition: BTreeMap<String, Vec<DataFile>> = BTreeMap::new();
    for file in lake.state().files.values() {
        if file.bytes >= options.small_bytes {
            continue;
        }
        let dir = file
            .path
            .rsplit_once('/')
            .map_or("", |(d, _)| d)
            .to_string();
        if options.partitions.is_empty() || options.partitions.contains(&dir) {
            by_partition.entry(dir).or_default().push(file.clone());
        }
    }
    let mut done = Vec::new();
    for (n, (dir, files)) in by_partition.into_iter().enumerate() {
        if files.len() < options.min_files.max(2) {
            continue;
        }
        let run_id = format!("{}-c{n:04}", options.run_id);
        let mut writer = DatasetWriter::new(
            lake.location().clone(),
            runtime.clone(),
            WriterOptions {
                partition_by: keys.clone(),
                buffer_bytes: options.buffer_bytes,
                zstd_level: options.zstd_level,
                run_id: run_id.clone(),
                ..WriterOptions::default()
            },
        );
        for file in &files {
            let location = lake.location();
            let display = location.display(&file.path);
            let parquet_error = |e: parquet::errors::ParquetError| LakeError::Read {
                path: display.clone(),
                reason: e.to_string(),
            };
            // Small files by definition: read whole, one at a time.
            let path = location.path(&file.path);
            let bytes = runtime
                .block_on(async { location.store.get(&path).await?.bytes().await })
                .map_err(|e| LakeError::Read {
                    path: display.clone(),
                    reason: e.to_string(),
                })?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .map_err(parquet_error)?
                .build()
                .map_err(parquet_error)?;
            for batch in reader {
                let batch = batch.map_err(|e| LakeError::Read {
                    path: display.clone(),
                    reason: e.to_string(),
                })?;
                writer.write(batch)?;
            }
        }
        let written = writer.finish()?;
        let rows_before: u64 = files.iter().map(|f| f.rows).sum();
        let rows_after: u64 = written.iter().map(|f| f.rows as u64).sum();
        if rows_before != 0 && rows_before != rows_after {
            return Err(LakeError::Read {
                path: lake.location().display(&dir),
                reason: format!(
                    "compaction read {rows_after} rows where the log records {rows_before}; nothing was committed"
                ),
            });
        }
        let mut commit = Commit::new(Operation::Compact, &run_id);
        commit.added = written.iter().map(DataFile::from).collect();
        commit.removed = files.iter().map(|f| f.path.clone()).collect();
        runtime.block_on(lake.commit(commit))?;
        if lake.format() == Some(TableFormat::Parquet) {
            // Committed: the old files are out of the dataset. A stop here leaves them for
            // the next run's recovery to delete.
            for file in &files {
                let path = lake.location().path(&file.path);
                let _ = runtime.block_on(lake.location().store.delete(&path));
            }
        }
        done.push(Compacted {
            partition: dir,
            files_before: files.len(),
            files_after: written.len(),
            rows: rows_after,
        });
    }
    Ok(done)
}
