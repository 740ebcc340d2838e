//! The dataset writer: buffer per partition, sort by `eventTime`, encode, store.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{SortOptions, interleave_record_batch, sort_to_indices};
use arrow::datatypes::TimestampMicrosecondType;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::runtime::Handle;
use trailql_schema::{arrow_schema, event_time_index};

use crate::partition::{self, Partition};
use crate::{DatasetLocation, WriteError, WriterOptions, writer_properties};

/// A file the writer stored.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    /// The path relative to the dataset root (`date=2024-01-02/part-....parquet`).
    pub path: String,
    pub partition: Partition,
    pub rows: usize,
    pub bytes: u64,
    /// The first and last `eventTime` in the file, in microseconds since the epoch.
    pub time_range: Option<(i64, i64)>,
}

/// Writes batches into a dataset folder.
pub struct DatasetWriter {
    location: DatasetLocation,
    runtime: Handle,
    options: WriterOptions,
    props: WriterProperties,
    /// Rows waiting per partition, with their size in memory.
    buffers: HashMap<Partition, (Vec<RecordBatch>, usize)>,
    buffered_bytes: usize,
    sequence: usize,
    written: Vec<WrittenFile>,
}

impl DatasetWriter {
    /// A writer into `location`; stores are called through `runtime`, from a thread outside it.
    pub fn new(location: DatasetLocation, runtime: Handle, options: WriterOptions) -> Self {
        let props = writer_properties(&options);
        Self {
            location,
            runtime,
            options,
            props,
            buffers: HashMap::new(),
            buffered_bytes: 0,
            sequence: 0,
            written: Vec::new(),
        }
    }

    /// Buffer a batch; write files when the buffer is full.
    pub fn write(&mut self, batch: RecordBatch) -> Result<(), WriteError> {
        for (partition, part) in partition::split(&batch, &self.options.partition_by)? {
            let bytes = part.get_array_memory_size();
            self.buffered_bytes += bytes;
            let buffered = self.buffers.entry(partition).or_default();
            buffered.0.push(part);
            buffered.1 += bytes;
        }
        while self.buffered_bytes > self.options.buffer_bytes {
            let largest = self
                .buffers
                .iter()
                .max_by_key(|(_, (_, bytes))| *bytes)
                .map(|(p, _)| p.clone());
            match largest {
                Some(p) => self.flush_partition(&p)?,
                None => break,
            }
        }
        Ok(())
    }

    /// Write everything still buffered; the files written by this writer.
    pub fn finish(mut self) -> Result<Vec<WrittenFile>, WriteError> {
        let mut partitions: Vec<Partition> = self.buffers.keys().cloned().collect();
        partitions.sort();
        for p in partitions {
            self.flush_partition(&p)?;
        }
        Ok(self.written)
    }

    fn flush_partition(&mut self, partition: &Partition) -> Result<(), WriteError> {
        let Some((batches, bytes)) = self.buffers.remove(partition) else {
            return Ok(());
        };
        self.buffered_bytes -= bytes;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        self.sequence += 1;
        let name = format!("part-{}-{:05}.parquet", self.options.run_id, self.sequence);
        let rel = if partition.dir.is_empty() {
            name
        } else {
            format!("{}/{name}", partition.dir)
        };
        let encoded = encode_sorted(&batches, &self.props, self.options.row_group_rows)
            .map_err(|e| e.for_path(&self.location.display(&rel)))?;
        let bytes = encoded.bytes.len() as u64;
        let path = self.location.path(&rel);
        let store = self.location.store.clone();
        self.runtime
            .block_on(store.put(&path, PutPayload::from(encoded.bytes)))
            .map_err(|source| WriteError::Store {
                path: self.location.display(&rel),
                source,
            })?;
        self.location.sync(&rel).map_err(|e| WriteError::Store {
            path: self.location.display(&rel),
            source: object_store::Error::Generic {
                store: "local",
                source: Box::new(e),
            },
        })?;
        self.written.push(WrittenFile {
            path: rel,
            partition: partition.clone(),
            rows: encoded.rows,
            bytes,
            time_range: encoded.time_range,
        });
        Ok(())
    }
}

/// A Parquet file encoded in memory.
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub rows: usize,
    pub time_range: Option<(i64, i64)>,
}

/// Why encoding failed, before the file has a name.
#[derive(Debug)]
pub enum EncodeError {
    Parquet(parquet::errors::ParquetError),
    Arrow(arrow::error::ArrowError),
}

impl EncodeError {
    fn for_path(self, path: &str) -> WriteError {
        match self {
            EncodeError::Parquet(source) => WriteError::Parquet {
                path: path.to_string(),
                source,
            },
            EncodeError::Arrow(e) => WriteError::Arrow(e),
        }
    }
}

/// Sort `batches` by `eventTime` (without copying the rows first) and encode them as one
/// Parquet file.
pub fn encode_sorted(
    batches: &[RecordBatch],
    props: &WriterProperties,
    row_group_rows: usize,
) -> Result<Encoded, EncodeError> {
    let times: Vec<&dyn Array> = batches
        .iter()
        .map(|b| b.column(event_time_index()).as_ref())
        .collect();
    let all_times = arrow::compute::concat(&times).map_err(EncodeError::Arrow)?;
    let order = sort_to_indices(
        &all_times,
        Some(SortOptions {
            descending: false,
            nulls_first: true,
        }),
        None,
    )
    .map_err(EncodeError::Arrow)?;
    let micros = all_times.as_primitive::<TimestampMicrosecondType>();
    let time_range = arrow::compute::min(micros).zip(arrow::compute::max(micros));
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

    let mut writer = ArrowWriter::try_new(Vec::new(), arrow_schema(), Some(props.clone()))
        .map_err(EncodeError::Parquet)?;
    let batch_refs: Vec<&RecordBatch> = batches.iter().collect();
    for chunk in order.values().chunks(row_group_rows.max(1)) {
        let indices: Vec<(usize, usize)> = chunk.iter().map(|&i| position(i)).collect();
        let sorted = interleave_record_batch(&batch_refs, &indices).map_err(EncodeError::Arrow)?;
        writer.write(&sorted).map_err(EncodeError::Parquet)?;
        writer.flush().map_err(EncodeError::Parquet)?;
    }
    let bytes = writer.into_inner().map_err(EncodeError::Parquet)?;
    Ok(Encoded {
        bytes,
        rows: total,
        time_range,
    })
}
