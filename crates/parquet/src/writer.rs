//! The dataset writer: buffer per partition, sort by `eventTime`, encode, store.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};

use arrow::array::builder::{NullBufferBuilder, make_view};
use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringArray, StringViewArray, StructArray,
};
use arrow::buffer::Buffer;
use arrow::compute::{SortOptions, interleave, sort_to_indices};
use arrow::datatypes::{DataType, Field, Fields, Schema, TimestampMicrosecondType};
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{ArrowWriter, add_encoded_arrow_schema_to_metadata};
use parquet::file::properties::WriterProperties;
use tokio::runtime::Handle;
use trailql_schema::{arrow_schema, event_time_index};

use crate::partition::{self, Partition, PartitionKey};
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
///
/// The caller's thread only splits batches into partitions and buffers them. Sorting, encoding and
/// storing a file run on the writer's own encode threads, so that decoding goes on while files are
/// encoded. Rows buffered and rows being encoded count against one budget,
/// [`WriterOptions::buffer_bytes`]. A partition is handed to an encoder when it holds a quarter of
/// the budget (so a file is at most that many rows in memory, and encoding one, which gathers its
/// rows in time order a slice at a time, stays bounded too), when it is a day partition that has
/// received no rows while half the budget's worth came in for others (a past day's last rows, since
/// inputs come day by day: without this they would sit in memory until the budget forced them out,
/// and peak memory would climb through a long run; without date partitions a quiet partition may
/// still receive rows, and writing it early would only make small files), or, the largest one, when
/// all buffered rows reach three quarters of the budget. `write` waits for an encoder only when the
/// budget is spent.
pub struct DatasetWriter {
    location: DatasetLocation,
    runtime: Handle,
    options: WriterOptions,
    props: WriterProperties,
    /// Rows waiting per partition.
    buffers: HashMap<Partition, Buffered>,
    buffered_bytes: usize,
    /// Bytes of rows received so far: the clock that tells an idle partition.
    received_bytes: usize,
    encoders: rayon::ThreadPool,
    done_tx: mpsc::Sender<Finished>,
    done_rx: mpsc::Receiver<Finished>,
    /// Files handed to encoders and not yet stored, and the bytes of rows they hold.
    in_flight: usize,
    in_flight_bytes: usize,
    sequence: usize,
    written: Vec<WrittenFile>,
}

/// A partition's rows waiting to be encoded.
#[derive(Default)]
struct Buffered {
    batches: Vec<RecordBatch>,
    /// Their size in memory.
    bytes: usize,
    /// [`DatasetWriter::received_bytes`] when the last of them arrived.
    last_received: usize,
}

/// An encoder's answer: the bytes of rows it held, and the file it stored.
struct Finished {
    bytes: usize,
    result: Result<WrittenFile, WriteError>,
}

impl DatasetWriter {
    /// A writer into `location`; stores are called through `runtime`, from threads outside it.
    pub fn new(location: DatasetLocation, runtime: Handle, options: WriterOptions) -> Self {
        let props = writer_properties(&options);
        let encoders = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads.max(1))
            .thread_name(|i| format!("trailql-encode-{i}"))
            .build()
            .expect("build the encode thread pool");
        let (done_tx, done_rx) = mpsc::channel();
        Self {
            location,
            runtime,
            options,
            props,
            buffers: HashMap::new(),
            buffered_bytes: 0,
            received_bytes: 0,
            encoders,
            done_tx,
            done_rx,
            in_flight: 0,
            in_flight_bytes: 0,
            sequence: 0,
            written: Vec::new(),
        }
    }

    /// Buffer a batch; hand partitions to the encoders as the buffer fills.
    pub fn write(&mut self, batch: RecordBatch) -> Result<(), WriteError> {
        for (partition, part, bytes) in partition::split(&batch, &self.options.partition_by)? {
            self.buffered_bytes += bytes;
            self.received_bytes += bytes;
            let buffered = self.buffers.entry(partition).or_default();
            buffered.batches.push(part);
            buffered.bytes += bytes;
            buffered.last_received = self.received_bytes;
        }
        while let Ok(finished) = self.done_rx.try_recv() {
            self.settle(finished)?;
        }
        let budget = self.options.buffer_bytes;
        let by_date = self.options.partition_by.contains(&PartitionKey::Date);
        loop {
            let over_budget = self.buffered_bytes + self.in_flight_bytes > budget;
            let encoder_free = self.in_flight < self.options.threads.max(1);
            let full = |b: &Buffered| b.bytes >= budget / 4;
            let idle = |b: &Buffered| by_date && self.received_bytes - b.last_received > budget / 2;
            let crowded = self.buffered_bytes > budget / 4 * 3 || over_budget;
            let largest = self
                .buffers
                .iter()
                .filter(|(_, b)| crowded || full(b) || idle(b))
                .max_by_key(|(_, b)| b.bytes)
                .map(|(p, _)| p);
            if let Some(partition) = largest.filter(|_| encoder_free) {
                let partition = partition.clone();
                self.start(&partition);
            } else if over_budget && self.in_flight > 0 {
                self.wait_one()?;
            } else {
                break;
            }
        }
        Ok(())
    }

    /// Write everything still buffered; the files written by this writer, in the order of
    /// their names.
    pub fn finish(mut self) -> Result<Vec<WrittenFile>, WriteError> {
        let mut partitions: Vec<Partition> = self.buffers.keys().cloned().collect();
        partitions.sort();
        for p in partitions {
            while self.in_flight >= self.options.threads.max(1) {
                self.wait_one()?;
            }
            self.start(&p);
        }
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        self.written.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(self.written)
    }

    fn wait_one(&mut self) -> Result<(), WriteError> {
        let finished = self
            .done_rx
            .recv()
            .expect("the writer holds a sender, so the channel stays open");
        self.settle(finished)
    }

    fn settle(&mut self, finished: Finished) -> Result<(), WriteError> {
        self.in_flight -= 1;
        self.in_flight_bytes -= finished.bytes;
        self.written.push(finished.result?);
        Ok(())
    }

    fn start(&mut self, partition: &Partition) {
        let Some(Buffered { batches, bytes, .. }) = self.buffers.remove(partition) else {
            return;
        };
        self.buffered_bytes -= bytes;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return;
        }
        self.sequence += 1;
        let name = format!("part-{}-{:05}.parquet", self.options.run_id, self.sequence);
        let rel = if partition.dir.is_empty() {
            name
        } else {
            format!("{}/{name}", partition.dir)
        };
        self.in_flight += 1;
        self.in_flight_bytes += bytes;
        let job = EncodeJob {
            location: self.location.clone(),
            runtime: self.runtime.clone(),
            props: self.props.clone(),
            row_group_rows: self.options.row_group_rows,
            partition: partition.clone(),
            rel,
        };
        let done = self.done_tx.clone();
        self.encoders.spawn(move || {
            // A panic here would abort the process (rayon's default) and lose the run: it
            // becomes this file's error instead.
            let display = job.location.display(&job.rel);
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(&batches)))
                    .unwrap_or_else(|panic| {
                        let reason = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(WriteError::Parquet {
                            path: display,
                            source: parquet::errors::ParquetError::General(format!(
                                "internal error while encoding: {reason}"
                            )),
                        })
                    });
            drop(batches);
            // The writer may have gone away after an error: nobody is left to tell.
            let _ = done.send(Finished { bytes, result });
        });
    }
}

/// One file to sort, encode and store, on an encode thread.
struct EncodeJob {
    location: DatasetLocation,
    runtime: Handle,
    props: WriterProperties,
    row_group_rows: usize,
    partition: Partition,
    rel: String,
}

impl EncodeJob {
    fn run(self, batches: &[RecordBatch]) -> Result<WrittenFile, WriteError> {
        let display = || self.location.display(&self.rel);
        let encoded = encode_sorted(batches, &self.props, self.row_group_rows)
            .map_err(|e| e.for_path(&display()))?;
        let bytes = encoded.bytes.len() as u64;
        let path = self.location.path(&self.rel);
        self.runtime
            .block_on(
                self.location
                    .store
                    .put(&path, PutPayload::from(encoded.bytes)),
            )
            .map_err(|source| WriteError::Store {
                path: display(),
                source,
            })?;
        self.location
            .sync(&self.rel)
            .map_err(|e| WriteError::Store {
                path: display(),
                source: object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                },
            })?;
        Ok(WrittenFile {
            path: self.rel,
            partition: self.partition,
            rows: encoded.rows,
            bytes,
            time_range: encoded.time_range,
        })
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

/// Rows gathered at once when sorting a file.
const SORT_SLICE_ROWS: usize = 8192;

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

    // Rows are gathered in sorted order a slice at a time: the copy made to sort is one slice,
    // not the whole file (the writer keeps only encoded pages until a row group closes). Text,
    // in structs too, is not copied at all: a slice holds views into the batches' own string
    // buffers, which saved the encode threads a copy of every string. The writer is given the
    // slices' schema (text as views: the same Parquet types) and the file the canonical one.
    let schema = arrow_schema();
    let slice_schema = slice_schema(&schema);
    let mut props = props.clone();
    add_encoded_arrow_schema_to_metadata(&schema, &mut props);
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true);
    let mut writer = ArrowWriter::try_new_with_options(Vec::new(), slice_schema.clone(), options)
        .map_err(EncodeError::Parquet)?;
    let sources: Vec<Source> = (0..schema.fields().len())
        .map(|c| Source::of(batches.iter().map(|b| b.column(c).as_ref()).collect()))
        .collect();
    for group in order.values().chunks(row_group_rows.max(1)) {
        for slice in group.chunks(SORT_SLICE_ROWS) {
            let indices: Vec<(usize, usize)> = slice.iter().map(|&i| position(i)).collect();
            let columns = sources
                .iter()
                .map(|source| source.gather(&indices))
                .collect::<Result<Vec<_>, _>>()
                .map_err(EncodeError::Arrow)?;
            let sorted =
                RecordBatch::try_new(slice_schema.clone(), columns).map_err(EncodeError::Arrow)?;
            writer.write(&sorted).map_err(EncodeError::Parquet)?;
        }
        writer.flush().map_err(EncodeError::Parquet)?;
    }
    let bytes = writer.into_inner().map_err(EncodeError::Parquet)?;
    Ok(Encoded {
        bytes,
        rows: total,
        time_range,
    })
}

/// One column of the batches of a file, ready to be gathered in sorted order.
enum Source<'a> {
    /// A text column: gathered as views into its string buffers.
    Text {
        arrays: Vec<&'a StringArray>,
        buffers: Vec<Buffer>,
        nulls: Nulls,
    },
    /// A struct column: its validity gathered, its fields gathered each as its own source.
    Struct {
        arrays: Vec<&'a StructArray>,
        fields: Fields,
        children: Vec<Source<'a>>,
        nulls: Nulls,
    },
    /// Any other column (timestamps, booleans, lists): copied by `interleave`.
    Other(Vec<&'a dyn Array>),
}

impl<'a> Source<'a> {
    fn of(arrays: Vec<&'a dyn Array>) -> Self {
        if let Some(arrays) = arrays
            .iter()
            .map(|a| a.as_string_opt::<i32>())
            .collect::<Option<Vec<_>>>()
        {
            return Source::Text {
                buffers: arrays.iter().map(|a| a.values().clone()).collect(),
                nulls: Nulls::of(arrays.iter().map(|a| a as &dyn Array)),
                arrays,
            };
        }
        if let Some(arrays) = arrays
            .iter()
            .map(|a| a.as_struct_opt())
            .collect::<Option<Vec<_>>>()
            && let Some(first) = arrays.first()
        {
            let children = (0..first.num_columns())
                .map(|c| Source::of(arrays.iter().map(|a| a.column(c).as_ref()).collect()))
                .collect();
            return Source::Struct {
                fields: view_fields(first.fields()),
                nulls: Nulls::of(arrays.iter().map(|a| a as &dyn Array)),
                arrays,
                children,
            };
        }
        Source::Other(arrays)
    }

    /// The rows at `indices` (batch, row), in that order.
    fn gather(&self, indices: &[(usize, usize)]) -> Result<ArrayRef, arrow::error::ArrowError> {
        match self {
            Source::Other(arrays) => interleave(arrays, indices),
            Source::Struct {
                arrays,
                fields,
                children,
                nulls: any_nulls,
            } => {
                let mut nulls = NullBufferBuilder::new(indices.len());
                match any_nulls {
                    Nulls::None => {}
                    Nulls::All => nulls.append_n_nulls(indices.len()),
                    Nulls::Some => {
                        for &(b, row) in indices {
                            nulls.append(arrays[b].is_valid(row));
                        }
                    }
                }
                let columns = children
                    .iter()
                    .map(|c| c.gather(indices))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Arc::new(StructArray::try_new(
                    fields.clone(),
                    columns,
                    nulls.finish(),
                )?))
            }
            Source::Text {
                nulls: Nulls::All, ..
            } => Ok(Arc::new(StringViewArray::new_null(indices.len()))),
            Source::Text {
                arrays,
                buffers,
                nulls: any_nulls,
            } => {
                let mut views = Vec::with_capacity(indices.len());
                let mut nulls = NullBufferBuilder::new(indices.len());
                let offsets: Vec<&[i32]> = arrays.iter().map(|a| a.value_offsets()).collect();
                let values: Vec<&[u8]> = arrays.iter().map(|a| a.values().as_slice()).collect();
                // Rows come from anywhere in the file's batches, and each one's offsets and
                // then its text miss the cache: the offsets of the row `AHEAD` rows on are
                // fetched early, and the text of the row half as far on, whose offsets are in.
                const AHEAD: usize = 64;
                for (i, &(b, row)) in indices.iter().enumerate() {
                    if let Some(&(b, row)) = indices.get(i + AHEAD) {
                        prefetch(offsets[b].as_ptr().wrapping_add(row).cast());
                    }
                    if let Some(&(b, row)) = indices.get(i + AHEAD / 2) {
                        let start = offsets[b][row] as usize;
                        prefetch(values[b].as_ptr().wrapping_add(start));
                    }
                    if !matches!(any_nulls, Nulls::None) {
                        if arrays[b].is_null(row) {
                            views.push(0u128);
                            nulls.append_null();
                            continue;
                        }
                        nulls.append_non_null();
                    }
                    let (start, end) = (offsets[b][row] as usize, offsets[b][row + 1] as usize);
                    views.push(view(values[b], start, end, b as u32));
                }
                // SAFETY: each view is made by `view` from a valid string of `arrays[b]`,
                // whose value buffer is `buffers[b]`, at its own offset in that buffer (below
                // 2^31, as the array's offsets are i32); null rows have null views.
                let array = unsafe {
                    StringViewArray::new_unchecked(views.into(), buffers.clone(), nulls.finish())
                };
                Ok(Arc::new(array))
            }
        }
    }
}

/// Asks for the cache line at `at` to be fetched, if the target can.
#[inline(always)]
fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints; it reads nothing and faults on no address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Which rows of a column's batches are null: a column no event of a file has (many of the
/// schema's) is gathered as nulls without a look at its rows.
enum Nulls {
    None,
    Some,
    All,
}

impl Nulls {
    fn of<'a>(arrays: impl Iterator<Item = &'a dyn Array> + Clone) -> Self {
        if arrays.clone().all(|a| a.null_count() == 0) {
            Nulls::None
        } else if arrays.into_iter().all(|a| a.null_count() == a.len()) {
            Nulls::All
        } else {
            Nulls::Some
        }
    }
}

/// A type with its text, and the text of the structs in it, as views (lists are kept as they
/// are: they are gathered by copying).
fn view_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8 => DataType::Utf8View,
        DataType::Struct(fields) => DataType::Struct(view_fields(fields)),
        other => other.clone(),
    }
}

fn view_fields(fields: &Fields) -> Fields {
    fields
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(view_type(f.data_type())))
        .collect()
}

/// The view of `values[start..end]` in buffer `block`, as arrow's `make_view` makes it, without
/// its call and its match on the length: a string of up to 12 bytes is inlined with one fixed
/// 12-byte load (when the buffer has 12 bytes from `start`) and a mask.
#[inline]
fn view(values: &[u8], start: usize, end: usize, block: u32) -> u128 {
    let len = end - start;
    if len > 12 {
        let prefix = u32::from_le_bytes(values[start..start + 4].try_into().expect("4 bytes"));
        return len as u128
            | (prefix as u128) << 32
            | (block as u128) << 64
            | (start as u128) << 96;
    }
    let Some(bytes) = values.get(start..start + 12) else {
        return make_view(&values[start..end], block, start as u32);
    };
    let mut word = [0u8; 16];
    word[4..].copy_from_slice(bytes);
    let kept = ((1u128 << (8 * len)) - 1) << 32;
    u128::from_le_bytes(word) & kept | len as u128
}

/// The schema of the sorted slices: the file's schema with text as views (see [`view_type`]).
fn slice_schema(schema: &Schema) -> Arc<Schema> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(view_type(f.data_type())))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

#[cfg(test)]
mod tests {

    use arrow::array::{Int64Array, new_null_array};
    use object_store::memory::InMemory;

    use super::*;

    const DAY_MICROS: i64 = 86_400_000_000;

    /// `rows` events of one day in one account, every other column null.
    fn batch(day: i64, account: &str, rows: usize) -> RecordBatch {
        let schema = arrow_schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "eventTime" => {
                    let micros = Int64Array::from(vec![day * DAY_MICROS; rows]);
                    arrow::compute::cast(&micros, f.data_type()).unwrap()
                }
                "recipientAccountId" => {
                    let accounts = StringArray::from(vec![account; rows]);
                    arrow::compute::cast(&accounts, f.data_type()).unwrap()
                }
                _ => new_null_array(f.data_type(), rows),
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn writer(runtime: &tokio::runtime::Runtime, partition_by: Vec<PartitionKey>) -> DatasetWriter {
        let store = Arc::new(InMemory::new());
        let location = DatasetLocation::new(store, "lake".into(), "lake".into(), false);
        let unit = batch(0, "a", 1000).get_array_memory_size();
        let options = WriterOptions {
            partition_by,
            buffer_bytes: 40 * unit,
            threads: 1,
            ..WriterOptions::default()
        };
        DatasetWriter::new(location, runtime.handle().clone(), options)
    }

    fn partition_of(batch: &RecordBatch, keys: &[PartitionKey]) -> Partition {
        partition::split(batch, keys).unwrap()[0].0.clone()
    }

    #[test]
    fn views_are_made_as_arrow_makes_them() {
        let values: Vec<u8> = (0u8..64).map(|i| b'a' + i % 26).collect();
        for start in 0..values.len() {
            for end in start..=values.len().min(start + 20) {
                assert_eq!(
                    view(&values, start, end, 7),
                    make_view(&values[start..end], 7, start as u32),
                    "{start}..{end}"
                );
            }
        }
    }

    #[test]
    fn a_file_holds_every_row_sorted_by_time_with_its_own_values() {
        // Three batches, the last a slice of a larger one (its strings do not start at the
        // buffer's start), with null, short (inlined in a view) and long text values and times
        // out of order: the file must hold each row whole, sorted by time.
        let schema = arrow_schema();
        // `userIdentity` is null where `kind` is, else a struct whose `type` is `kind`.
        let identity = |field: &Field, kinds: &[Option<&str>]| -> ArrayRef {
            let DataType::Struct(fields) = field.data_type() else {
                panic!("userIdentity is a struct")
            };
            let children = fields
                .iter()
                .map(|f| match f.name().as_str() {
                    "type" => Arc::new(StringArray::from(kinds.to_vec())) as ArrayRef,
                    _ => new_null_array(f.data_type(), kinds.len()),
                })
                .collect();
            let nulls = kinds.iter().map(|k| k.is_some()).collect::<Vec<_>>();
            Arc::new(StructArray::new(
                fields.clone(),
                children,
                Some(nulls.into()),
            ))
        };
        let make = |times: &[i64], names: &[Option<&str>], payloads: &[Option<&str>]| {
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|f| match f.name().as_str() {
                    "userIdentity" => identity(f, names),
                    "eventTime" => {
                        arrow::compute::cast(&Int64Array::from(times.to_vec()), f.data_type())
                            .unwrap()
                    }
                    "eventName" => Arc::new(StringArray::from(names.to_vec())) as ArrayRef,
                    "requestParameters" => {
                        Arc::new(StringArray::from(payloads.to_vec())) as ArrayRef
                    }
                    _ => new_null_array(f.data_type(), times.len()),
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let long = |i: i64| format!("{{\"bucketName\":\"a-bucket-with-a-long-name-{i}\"}}");
        let (l1, l2, l3, l4) = (long(1), long(2), long(3), long(4));
        let first = make(&[30, 10], &[Some("Put"), None], &[Some(&l3), Some(&l1)]);
        let second = make(&[20], &[Some("GetObjectAcl")], &[None]);
        let wide = make(
            &[99, 40, 5],
            &[Some("skipped"), Some("ListBuckets"), Some("Get")],
            &[Some("{}"), Some(&l4), Some(&l2)],
        );
        let third = wide.slice(1, 2);
        let props = crate::writer_properties(&WriterOptions::default());
        let encoded = encode_sorted(&[first, second, third], &props, 2).unwrap();
        assert_eq!(encoded.rows, 5);
        assert_eq!(encoded.time_range, Some((5, 40)));
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            bytes::Bytes::from(encoded.bytes),
            1024,
        )
        .unwrap();
        let read: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        let all = arrow::compute::concat_batches(&read[0].schema(), &read).unwrap();
        assert_eq!(all.schema(), schema, "the file keeps the canonical schema");
        let times = all
            .column(event_time_index())
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(times.values().to_vec(), [5, 10, 20, 30, 40]);
        let text = |name: &str| -> Vec<Option<String>> {
            let col = all.column_by_name(name).unwrap().as_string::<i32>();
            col.iter().map(|v| v.map(String::from)).collect()
        };
        let some = |v: &str| Some(v.to_string());
        assert_eq!(
            text("eventName"),
            [
                some("Get"),
                None,
                some("GetObjectAcl"),
                some("Put"),
                some("ListBuckets")
            ]
        );
        assert_eq!(
            text("requestParameters"),
            [some(&l2), some(&l1), None, some(&l3), some(&l4)]
        );
        // A struct's text is gathered as views too: each row keeps its own value.
        let identity = all.column_by_name("userIdentity").unwrap().as_struct();
        let present: Vec<bool> = (0..5).map(|r| identity.is_valid(r)).collect();
        assert_eq!(present, [true, false, true, true, true]);
        let kinds = identity.column_by_name("type").unwrap().as_string::<i32>();
        let kinds: Vec<Option<String>> = kinds.iter().map(|v| v.map(String::from)).collect();
        assert_eq!(kinds, text("eventName"));
    }

    #[test]
    fn a_day_that_stops_receiving_rows_is_written_before_the_budget_forces_it() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let keys = vec![PartitionKey::Date];
        let mut writer = writer(&runtime, keys.clone());
        let day = |d: i64| partition_of(&batch(d, "a", 1), &keys);
        // Day 0 gets three batches, then 25 other days one each: no partition reaches a quarter
        // of the budget and all of them together stay under three quarters.
        for _ in 0..3 {
            writer.write(batch(0, "a", 1000)).unwrap();
        }
        for d in 1..=25 {
            writer.write(batch(d, "a", 1000)).unwrap();
            if d == 19 {
                assert!(writer.buffers.contains_key(&day(0)), "not idle yet");
            }
        }
        assert!(
            !writer.buffers.contains_key(&day(0)),
            "day 0 still buffered"
        );
        assert!(writer.buffers.contains_key(&day(25)));
        let written = writer.finish().unwrap();
        assert_eq!(written.len(), 26);
        let day0: Vec<_> = written.iter().filter(|f| f.partition == day(0)).collect();
        assert_eq!(day0.len(), 1);
        assert_eq!(day0[0].rows, 3000);
    }

    #[test]
    fn without_date_partitions_a_quiet_partition_waits_for_more_rows() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let keys = vec![PartitionKey::Account];
        let mut writer = writer(&runtime, keys.clone());
        for _ in 0..3 {
            writer.write(batch(0, "a", 1000)).unwrap();
        }
        for n in 1..=25 {
            writer.write(batch(0, &format!("b{n}"), 1000)).unwrap();
        }
        let a = partition_of(&batch(0, "a", 1), &keys);
        assert!(writer.buffers.contains_key(&a));
        writer.write(batch(0, "a", 1000)).unwrap();
        let written = writer.finish().unwrap();
        let files_of_a: Vec<_> = written.iter().filter(|f| f.partition == a).collect();
        assert_eq!(files_of_a.len(), 1);
        assert_eq!(files_of_a[0].rows, 4000);
    }
}
