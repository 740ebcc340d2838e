//! Decoded columns of a dataset's files, kept in memory between the statements of a session,
//! as DuckDB's buffer manager keeps its blocks: an investigation asks many questions of the same
//! days, and reading Parquet again for each one (opening every file, converting its schema,
//! decompressing and decoding its pages) costs more than answering them.
//!
//! [`ColumnCache`] holds the Arrow arrays of (file, column) pairs within a memory budget, the
//! least recently used dropped first. [`CachedScanExec`] replaces the dataset's Parquet scan when
//! the files the scan reads (after partition pruning) fit in half the budget and it reads no
//! nested column: it serves cached columns and reads the others, whole and unfiltered, into
//! the cache. Filters run above it, so
//! answers are those of the Parquet scan. Files are immutable under their names, and a key also
//! holds the size, modification time and ETag the listing saw, so a replaced file is read again.
//!
//! A cached text column with few distinct texts per file also gets, when a count by that column
//! first asks for them ([`ColumnCache::text_ids`]), the id of each row's text in one dictionary
//! per column name for the whole session ([`ColumnTexts`]), as DuckDB's storage keeps such
//! columns dictionary-compressed: the count then reads 4 bytes a row and hashes nothing.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringViewArray, new_null_array};
use arrow::buffer::ScalarBuffer;
use arrow::compute::{cast, concat};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetSource;
use datafusion::datasource::physical_plan::parquet::{
    DefaultParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coop::make_cooperative;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};

use crate::texts::{NULL_ID, Texts};

/// Decoded columns of Parquet files within a memory budget, least recently used dropped first.
#[derive(Debug)]
pub(crate) struct ColumnCache {
    budget: usize,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    columns: HashMap<ColumnKey, CachedColumn>,
    /// The cached text chunks by the address of their views: start -> (column, chunk index).
    text_chunks: BTreeMap<usize, (ColumnKey, usize)>,
    /// The session's texts of each column name, and the bytes they held when last counted.
    texts: HashMap<String, (Arc<ColumnTexts>, usize)>,
    /// Bytes of the columns, their text ids and the session's texts.
    used: usize,
    clock: u64,
}

/// One column of one file, as the listing saw the file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ColumnKey {
    path: Path,
    size: u64,
    modified_ms: i64,
    e_tag: Option<String>,
    column: String,
    data_type: DataType,
}

impl ColumnKey {
    fn new(meta: &ObjectMeta, field: &Field) -> Self {
        ColumnKey {
            path: meta.location.clone(),
            size: meta.size,
            modified_ms: meta.last_modified.timestamp_millis(),
            e_tag: meta.e_tag.clone(),
            column: field.name().clone(),
            data_type: field.data_type().clone(),
        }
    }
}

#[derive(Debug)]
struct CachedColumn {
    chunks: Arc<[ArrayRef]>,
    /// With the text ids, once made.
    bytes: usize,
    last_used: u64,
    ids: Ids,
}

/// The text ids of a cached column.
#[derive(Debug)]
enum Ids {
    /// Not asked for yet.
    Untried,
    /// Too many distinct texts: none made.
    Refused,
    /// Per chunk: 0 for a null row, otherwise 1 + its text's id in `texts`; all below `bound`.
    Made {
        chunks: Vec<ScalarBuffer<u32>>,
        bound: usize,
        texts: Arc<ColumnTexts>,
    },
}

/// A file's column is refused text ids when, after this many rows, more than one row in three
/// held a new text: an id, an address, each of its own.
const JUDGED_AFTER: usize = 8192;

/// At most these many texts in one column's [`ColumnTexts`]; beyond, no more ids are made.
const MAX_TEXTS: usize = 1 << 22;

/// The distinct texts of one column name across a session's cached files, each with an id:
/// the dictionary [`TextIds`] index into.
#[derive(Default)]
pub(crate) struct ColumnTexts {
    texts: Mutex<Texts>,
    /// Set when a file held too many distinct texts: then no file's ids are made.
    refused: AtomicBool,
}

impl fmt::Debug for ColumnTexts {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ColumnTexts")
    }
}

impl ColumnTexts {
    /// Runs `f` with the texts (ids as [`TextIds`] hold them, less one).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Texts) -> R) -> R {
        f(&self.texts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn memory_size(&self) -> usize {
        self.with(Texts::memory_size)
    }

    /// The ids of the rows of a file's column `chunks`, and the bound below which they all
    /// are; `None` (and no more ids for this column) if the file holds too many texts.
    fn ids_of(&self, chunks: &[ArrayRef]) -> Option<(Vec<ScalarBuffer<u32>>, usize)> {
        let mut texts = self.texts.lock().unwrap_or_else(|e| e.into_inner());
        if self.refused.load(Ordering::Relaxed) {
            return None;
        }
        let before = texts.len();
        let mut rows = 0;
        let mut made = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let views = chunk.as_string_view_opt()?;
            let mut ids = Vec::with_capacity(views.len());
            texts.each_id(views, |_, id| {
                ids.push(if id == NULL_ID { 0 } else { id + 1 });
            });
            rows += views.len();
            let new = texts.len() - before;
            if texts.len() > MAX_TEXTS || (rows >= JUDGED_AFTER && new * 3 > rows) {
                self.refused.store(true, Ordering::Relaxed);
                return None;
            }
            made.push(ScalarBuffer::from(ids));
        }
        Some((made, texts.len() + 1))
    }
}

/// The text ids of the rows of one batch of a cached text column: 0 for a null, otherwise 1 +
/// the id of the row's text in `texts`; every id is below `bound`.
pub(crate) struct TextIds {
    pub(crate) ids: ScalarBuffer<u32>,
    pub(crate) bound: usize,
    pub(crate) texts: Arc<ColumnTexts>,
}

impl ColumnCache {
    /// A cache holding at most `budget` bytes of arrays.
    pub(crate) fn new(budget: usize) -> Self {
        ColumnCache {
            budget,
            state: Mutex::default(),
        }
    }

    fn get(&self, key: &ColumnKey) -> Option<Arc<[ArrayRef]>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.clock += 1;
        let now = state.clock;
        let column = state.columns.get_mut(key)?;
        column.last_used = now;
        Some(column.chunks.clone())
    }

    /// Keep `chunks` under `key`, dropping the least recently used columns to make room; a
    /// column larger than the whole budget is not kept.
    fn insert(&self, key: ColumnKey, chunks: Arc<[ArrayRef]>) {
        let bytes = memory_size(&chunks);
        if bytes > self.budget {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.remove(&key);
        state.make_room(bytes, self.budget);
        state.clock += 1;
        let last_used = state.clock;
        state.used += bytes;
        for (i, chunk) in chunks.iter().enumerate() {
            if let Some(views) = chunk.as_string_view_opt().filter(|v| !v.is_empty()) {
                let start = views.views().as_ptr() as usize;
                state.text_chunks.insert(start, (key.clone(), i));
            }
        }
        state.columns.insert(
            key,
            CachedColumn {
                chunks,
                bytes,
                last_used,
                ids: Ids::Untried,
            },
        );
    }

    /// The session's text ids of the rows of `views`, a batch of a cached text column (as the
    /// scan gave it), made for the whole column of its file the first time; `None` if `views`
    /// is not such a batch or its file holds too many distinct texts.
    pub(crate) fn text_ids(&self, views: &StringViewArray) -> Option<TextIds> {
        let address = views.views().as_ptr() as usize;
        let (key, chunk, row, chunks, texts) = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let (&start, (key, chunk)) = state.text_chunks.range(..=address).next_back()?;
            let (key, chunk) = (key.clone(), *chunk);
            let column = state.columns.get(&key)?;
            let cached = column.chunks.get(chunk)?.as_string_view_opt()?;
            // The chunk's views live at `start`, so a batch whose views lie within them is a
            // slice of it, if it also has its data buffers.
            let row = (address - start) / std::mem::size_of::<u128>();
            let same_buffers = cached.data_buffers().len() == views.data_buffers().len()
                && cached
                    .data_buffers()
                    .iter()
                    .zip(views.data_buffers())
                    .all(|(a, b)| a.as_ptr() == b.as_ptr());
            if cached.views().as_ptr() as usize != start
                || !(address - start).is_multiple_of(std::mem::size_of::<u128>())
                || row + views.len() > cached.len()
                || !same_buffers
            {
                return None;
            }
            // And its nulls, not others put over the same views.
            let same_nulls = match (cached.nulls(), views.nulls()) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a.buffer().as_ptr() == b.buffer().as_ptr() && a.offset() + row == b.offset()
                }
                _ => false,
            };
            if !same_nulls {
                return None;
            }
            match &column.ids {
                Ids::Made {
                    chunks,
                    bound,
                    texts,
                } => {
                    return Some(TextIds {
                        ids: chunks[chunk].slice(row, views.len()),
                        bound: *bound,
                        texts: texts.clone(),
                    });
                }
                Ids::Refused => return None,
                Ids::Untried => {}
            }
            let chunks = column.chunks.clone();
            let (texts, texts_bytes) = state.texts.entry(key.column.clone()).or_default();
            // A column's texts are never dropped: once they hold an eighth of the budget, no
            // more of its files get ids.
            if *texts_bytes > self.budget / 8 {
                return None;
            }
            let texts = texts.clone();
            (key, chunk, row, chunks, texts)
        };
        // Made without holding the cache: the other partitions go on meanwhile.
        let made = texts.ids_of(&chunks);
        let texts_bytes = texts.memory_size();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, counted)) = state.texts.get_mut(&key.column) {
            let before = std::mem::replace(counted, texts_bytes);
            state.used = (state.used + texts_bytes).saturating_sub(before);
        }
        let Some((ids, bound)) = made else {
            if let Some(column) = state.columns.get_mut(&key) {
                column.ids = Ids::Refused;
            }
            return None;
        };
        let batch = ids[chunk].slice(row, views.len());
        let bytes: usize = ids.iter().map(|c| c.inner().capacity()).sum();
        // The column may have gone meanwhile; then the ids go too, and this batch's are used.
        if state.columns.contains_key(&key) {
            state.clock += 1;
            let now = state.clock;
            if let Some(column) = state.columns.get_mut(&key) {
                column.last_used = now;
            }
            state.make_room(bytes, self.budget);
            if let Some(column) = state.columns.get_mut(&key) {
                column.bytes += bytes;
                column.ids = Ids::Made {
                    chunks: ids,
                    bound,
                    texts: texts.clone(),
                };
                state.used += bytes;
            }
        }
        Some(TextIds {
            ids: batch,
            bound,
            texts,
        })
    }

    /// Bytes held now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.state.lock().unwrap().used
    }
}

impl CacheState {
    /// Drops the column under `key`, if held.
    fn remove(&mut self, key: &ColumnKey) {
        let Some(old) = self.columns.remove(key) else {
            return;
        };
        self.used -= old.bytes;
        for chunk in old.chunks.iter() {
            if let Some(views) = chunk.as_string_view_opt().filter(|v| !v.is_empty()) {
                let start = views.views().as_ptr() as usize;
                if self.text_chunks.get(&start).is_some_and(|(k, _)| k == key) {
                    self.text_chunks.remove(&start);
                }
            }
        }
    }

    /// Drops the least recently used columns until `bytes` more fit in `budget`.
    fn make_room(&mut self, bytes: usize, budget: usize) {
        while self.used + bytes > budget {
            let Some(oldest) = self
                .columns
                .iter()
                .min_by_key(|(_, c)| c.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
    }
}

/// Memory held by `arrays`, each buffer counted once: the batches of a column read from one
/// dictionary page share the page's strings.
fn memory_size(arrays: &[ArrayRef]) -> usize {
    fn walk(data: &arrow::array::ArrayData, seen: &mut std::collections::HashSet<usize>) -> usize {
        let mut total = 0;
        let buffers = data
            .buffers()
            .iter()
            .chain(data.nulls().map(|n| n.buffer()));
        for buffer in buffers {
            if seen.insert(buffer.data_ptr().as_ptr() as usize) {
                total += buffer.capacity();
            }
        }
        total
            + data
                .child_data()
                .iter()
                .map(|c| walk(c, seen))
                .sum::<usize>()
    }
    let mut seen = std::collections::HashSet::new();
    arrays.iter().map(|a| walk(&a.to_data(), &mut seen)).sum()
}

/// Where an output column of the scan comes from.
#[derive(Debug, Clone)]
enum Source {
    /// A column of the Parquet files.
    File(FieldRef),
    /// A partition column: the file's value for it, at this index of its partition values.
    Partition(usize),
}

/// A scan of a dataset's Parquet files through a [`ColumnCache`]: the same files, partitions,
/// order and output as the Parquet scan it stands for.
#[derive(Debug)]
pub(crate) struct CachedScanExec {
    cache: Arc<ColumnCache>,
    store_url: ObjectStoreUrl,
    groups: Vec<Vec<PartitionedFile>>,
    sources: Arc<[Source]>,
    batch_size: usize,
    /// The Parquet scan replaced, for its statistics.
    parquet: Arc<dyn ExecutionPlan>,
    filtered: bool,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl CachedScanExec {
    /// The cached scan standing for `plan`, if `plan` is an unlimited Parquet scan of whole
    /// files projecting at least one file column and no nested one, and its files together
    /// fit in half the budget, each in an eighth. `filtered`: the query filters the scan's
    /// rows (its statistics are then inexact).
    pub(crate) fn replacing(
        plan: &Arc<dyn ExecutionPlan>,
        cache: &Arc<ColumnCache>,
        batch_size: usize,
        filtered: bool,
    ) -> Option<Self> {
        let exec = plan.downcast_ref::<DataSourceExec>()?;
        let (config, _) = exec.downcast_to_file_source::<ParquetSource>()?;
        if config.limit.is_some() {
            return None;
        }
        let files: Vec<&PartitionedFile> =
            config.file_groups.iter().flat_map(|g| g.iter()).collect();
        if files.iter().any(|f| f.range.is_some()) {
            return None;
        }
        // A file is read whole before its batches go on: none may be large next to the budget.
        let budget = cache.budget as u64;
        let bytes: u64 = files.iter().map(|f| f.object_meta.size).sum();
        if bytes > budget / 2 || files.iter().any(|f| f.object_meta.size > budget / 8) {
            return None;
        }
        let file_schema = config.file_schema();
        let partition_cols = config.table_partition_cols();
        let mut sources = Vec::new();
        for field in plan.schema().fields() {
            if let Ok(found) = file_schema.field_with_name(field.name()) {
                // A nested column read whole costs several times what DataFusion's scan
                // of the fields a query names does (`userIdentity.arn`): those stay with it.
                if found.data_type() != field.data_type() || found.data_type().is_nested() {
                    return None;
                }
                sources.push(Source::File(field.clone()));
            } else {
                let index = partition_cols
                    .iter()
                    .position(|p| p.name() == field.name())?;
                sources.push(Source::Partition(index));
            }
        }
        if !sources.iter().any(|s| matches!(s, Source::File(_))) {
            return None;
        }
        Some(CachedScanExec {
            cache: cache.clone(),
            store_url: config.object_store_url.clone(),
            groups: config
                .file_groups
                .iter()
                .map(|g| g.files().to_vec())
                .collect(),
            sources: sources.into(),
            batch_size: batch_size.max(1),
            parquet: plan.clone(),
            filtered,
            properties: plan.properties().clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl CachedScanExec {
    /// The cache the scan reads through.
    pub(crate) fn cache(&self) -> &Arc<ColumnCache> {
        &self.cache
    }
}

impl DisplayAs for CachedScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let columns: Vec<String> = self
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        match t {
            DisplayFormatType::TreeRender => write!(
                f,
                "files={}",
                self.groups.iter().map(Vec::len).sum::<usize>()
            ),
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "CachedScanExec: file_groups={{{} groups: [",
                    self.groups.len()
                )?;
                for (i, group) in self.groups.iter().enumerate() {
                    write!(f, "{}[", if i > 0 { ", " } else { "" })?;
                    let shown = match t {
                        DisplayFormatType::Verbose => group.len(),
                        _ => group.len().min(5),
                    };
                    for (j, file) in group.iter().take(shown).enumerate() {
                        write!(
                            f,
                            "{}{}",
                            if j > 0 { ", " } else { "" },
                            file.object_meta.location
                        )?;
                    }
                    if shown < group.len() {
                        write!(f, ", ...")?;
                    }
                    write!(f, "]")?;
                }
                write!(f, "]}}, projection=[{}]", columns.join(", "))
            }
        }
    }
}

impl ExecutionPlan for CachedScanExec {
    fn name(&self) -> &'static str {
        "CachedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let store = context.runtime_env().object_store(&self.store_url)?;
        let read = Reader {
            cache: self.cache.clone(),
            files: Arc::new(DefaultParquetFileReaderFactory::new(store)),
            partition,
            metrics: self.metrics.clone(),
            sources: self.sources.clone(),
            schema: self.schema(),
            batch_size: self.batch_size,
            files_read: MetricBuilder::new(&self.metrics).counter("files_read", partition),
            files_from_cache: MetricBuilder::new(&self.metrics)
                .counter("files_from_cache", partition),
        };
        let files = self.groups.get(partition).cloned().unwrap_or_default();
        let stream = futures::stream::iter(files)
            .then(move |file| {
                let read = read.clone();
                async move { read.file(&file).await }
            })
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten();
        Ok(make_cooperative(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        ))))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let stats = self.parquet.statistics_from_inputs(&[], args)?;
        Ok(if self.filtered {
            Arc::new(stats.as_ref().clone().to_inexact())
        } else {
            stats
        })
    }
}

/// What one partition's stream needs to produce a file's batches.
#[derive(Clone)]
struct Reader {
    cache: Arc<ColumnCache>,
    files: Arc<DefaultParquetFileReaderFactory>,
    partition: usize,
    metrics: ExecutionPlanMetricsSet,
    sources: Arc<[Source]>,
    schema: SchemaRef,
    batch_size: usize,
    files_read: Count,
    files_from_cache: Count,
}

impl Reader {
    /// The scan's batches of `file`: cached columns as they are, the others read into the
    /// cache first.
    async fn file(&self, file: &PartitionedFile) -> Result<Vec<RecordBatch>> {
        let fields: Vec<&FieldRef> = self
            .sources
            .iter()
            .filter_map(|s| match s {
                Source::File(field) => Some(field),
                Source::Partition(_) => None,
            })
            .collect();
        let keys: Vec<ColumnKey> = fields
            .iter()
            .map(|f| ColumnKey::new(&file.object_meta, f))
            .collect();
        let mut columns: Vec<Option<Arc<[ArrayRef]>>> =
            keys.iter().map(|k| self.cache.get(k)).collect();
        let missing: Vec<usize> = (0..columns.len())
            .filter(|&i| columns[i].is_none())
            .collect();
        if missing.is_empty() {
            self.files_from_cache.add(1);
        } else {
            self.files_read.add(1);
            let wanted: Vec<&FieldRef> = missing.iter().map(|&i| fields[i]).collect();
            let reader =
                self.files
                    .create_reader(self.partition, file.clone(), None, &self.metrics)?;
            let read = read_columns(reader, &wanted, self.batch_size)
                .await
                .map_err(|e| e.context(format!("reading {}", file.object_meta.location)))?;
            for (i, chunks) in missing.into_iter().zip(read) {
                let chunks: Arc<[ArrayRef]> = chunks.into();
                self.cache.insert(keys[i].clone(), chunks.clone());
                columns[i] = Some(chunks);
            }
        }
        let columns: Vec<Arc<[ArrayRef]>> = columns.into_iter().flatten().collect();
        self.assemble(file, &columns)
    }

    /// Batches of the scan's schema from a file's column chunks and partition values.
    fn assemble(
        &self,
        file: &PartitionedFile,
        columns: &[Arc<[ArrayRef]>],
    ) -> Result<Vec<RecordBatch>> {
        let lengths: Vec<usize> = columns[0].iter().map(|a| a.len()).collect();
        let aligned = columns.iter().all(|c| {
            c.len() == lengths.len() && c.iter().zip(&lengths).all(|(a, &n)| a.len() == n)
        });
        // Chunks read with different batch sizes: one array per column, cut again.
        let rechunked: Vec<Arc<[ArrayRef]>>;
        let (columns, lengths) = if aligned {
            (columns, lengths)
        } else {
            rechunked = columns
                .iter()
                .map(|c| {
                    let parts: Vec<&dyn Array> = c.iter().map(|a| a.as_ref()).collect();
                    Ok(vec![concat(&parts)?].into())
                })
                .collect::<Result<_>>()?;
            let rows = rechunked[0][0].len();
            if rechunked.iter().any(|c| c[0].len() != rows) {
                return Err(DataFusionError::Internal(format!(
                    "{}: cached columns hold different numbers of rows",
                    file.object_meta.location
                )));
            }
            (rechunked.as_slice(), vec![rows])
        };
        let mut batches = Vec::new();
        for (chunk, &rows) in lengths.iter().enumerate() {
            let mut file_columns = columns.iter();
            let mut arrays = Vec::with_capacity(self.sources.len());
            for (source, field) in self.sources.iter().zip(self.schema.fields()) {
                let array = match source {
                    Source::File(_) => file_columns.next().map(|c| c[chunk].clone()),
                    Source::Partition(i) => match file.partition_values.get(*i) {
                        Some(value) => {
                            let array = value.to_array_of_size(rows)?;
                            Some(if array.data_type() == field.data_type() {
                                array
                            } else {
                                cast(&array, field.data_type())?
                            })
                        }
                        None => None,
                    },
                };
                arrays.push(array.unwrap_or_else(|| new_null_array(field.data_type(), rows)));
            }
            for start in (0..rows).step_by(self.batch_size.max(1)) {
                let len = self.batch_size.min(rows - start);
                let sliced = arrays.iter().map(|a| a.slice(start, len)).collect();
                batches.push(RecordBatch::try_new(self.schema.clone(), sliced)?);
            }
        }
        Ok(batches)
    }
}

/// Read `fields` of a Parquet file, whole, as chunks of `batch_size` rows, in the fields'
/// types: top-level text is read as views, a column the file lacks is all null, and one of
/// another type is cast.
async fn read_columns(
    mut reader: Box<dyn AsyncFileReader>,
    fields: &[&FieldRef],
    batch_size: usize,
) -> Result<Vec<Vec<ArrayRef>>> {
    let mut metadata =
        ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new()).await?;
    let file_schema = metadata.schema().clone();
    let mut coerced = false;
    let read_fields: Vec<FieldRef> = file_schema
        .fields()
        .iter()
        .map(|f| {
            let wanted = fields.iter().find(|w| w.name() == f.name());
            let view = match (wanted.map(|w| w.data_type()), f.data_type()) {
                (Some(DataType::Utf8View), DataType::Utf8 | DataType::LargeUtf8) => {
                    Some(DataType::Utf8View)
                }
                (Some(DataType::BinaryView), DataType::Binary | DataType::LargeBinary) => {
                    Some(DataType::BinaryView)
                }
                _ => None,
            };
            match view {
                Some(t) => {
                    coerced = true;
                    Arc::new(f.as_ref().clone().with_data_type(t))
                }
                None => f.clone(),
            }
        })
        .collect();
    if coerced {
        let schema = Schema::new_with_metadata(read_fields, file_schema.metadata().clone());
        metadata = ArrowReaderMetadata::try_new(
            metadata.metadata().clone(),
            ArrowReaderOptions::new().with_schema(Arc::new(schema)),
        )?;
    }
    let roots: Vec<usize> = fields
        .iter()
        .filter_map(|w| file_schema.index_of(w.name()).ok())
        .collect();
    let mask = ProjectionMask::roots(metadata.parquet_schema(), roots);
    let batches: Vec<RecordBatch> =
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata)
            .with_projection(mask)
            .with_batch_size(batch_size)
            .build()?
            .try_collect()
            .await?;
    let mut columns = vec![Vec::with_capacity(batches.len()); fields.len()];
    for batch in &batches {
        for (column, wanted) in columns.iter_mut().zip(fields) {
            let array = match batch.column_by_name(wanted.name()) {
                Some(a) if a.data_type() == wanted.data_type() => a.clone(),
                Some(a) => cast(a, wanted.data_type())?,
                None => new_null_array(wanted.data_type(), batch.num_rows()),
            };
            column.push(array);
        }
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn key(name: &str) -> ColumnKey {
        ColumnKey {
            path: Path::from(format!("date=2024-03-01/{name}.parquet")),
            size: 1,
            modified_ms: 0,
            e_tag: None,
            column: "c".into(),
            data_type: DataType::Int64,
        }
    }

    fn chunks(rows: usize) -> Arc<[ArrayRef]> {
        vec![Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef].into()
    }

    #[test]
    fn the_least_recently_used_column_goes_first_and_the_budget_holds() {
        let one = memory_size(&chunks(1000));
        let cache = ColumnCache::new(2 * one + one / 2);
        cache.insert(key("a"), chunks(1000));
        cache.insert(key("b"), chunks(1000));
        assert!(cache.get(&key("a")).is_some()); // a is now more recent than b
        cache.insert(key("c"), chunks(1000));
        assert!(
            cache.get(&key("b")).is_none(),
            "b was the least recently used"
        );
        assert!(cache.get(&key("a")).is_some());
        assert!(cache.get(&key("c")).is_some());
        assert_eq!(cache.used(), 2 * one);
        // Too large for the whole budget: not kept, nothing dropped for it.
        cache.insert(key("d"), chunks(3000));
        assert!(cache.get(&key("d")).is_none());
        assert_eq!(cache.used(), 2 * one);
        // The same key again replaces, not adds.
        cache.insert(key("a"), chunks(1000));
        assert_eq!(cache.used(), 2 * one);
    }

    fn text_key(name: &str, column: &str) -> ColumnKey {
        ColumnKey {
            column: column.into(),
            data_type: DataType::Utf8View,
            ..key(name)
        }
    }

    /// Chunks of 5,000 rows of `texts(row)`, as Parquet's dictionary pages give them (equal
    /// texts, equal views).
    fn text_chunks(rows: usize, text: impl Fn(usize) -> Option<String>) -> Arc<[ArrayRef]> {
        (0..rows)
            .step_by(5000)
            .map(|start| {
                let texts: Vec<Option<String>> =
                    (start..rows.min(start + 5000)).map(&text).collect();
                let d: arrow::array::DictionaryArray<arrow::datatypes::Int32Type> =
                    texts.iter().map(Option::as_deref).collect();
                cast(&d, &DataType::Utf8View).unwrap()
            })
            .collect()
    }

    /// The texts of `ids` (None for a null).
    fn texts_of(ids: &TextIds) -> Vec<Option<String>> {
        ids.texts.with(|texts| {
            ids.ids
                .iter()
                .map(|&id| {
                    assert!((id as usize) < ids.bound);
                    (id > 0).then(|| texts.value(id - 1).to_string())
                })
                .collect()
        })
    }

    #[test]
    fn cached_text_columns_get_the_sessions_ids_of_their_texts() {
        let name = |i: usize| {
            (!i.is_multiple_of(13))
                .then(|| ["GetObject", "DescribeInstanceInformation", "x"][i % 3].to_string())
        };
        let cache = ColumnCache::new(64 << 20);
        let (a, b) = (
            text_chunks(12_000, name),
            text_chunks(7_000, |i| name(i + 1)),
        );
        cache.insert(text_key("a", "eventName"), a.clone());
        cache.insert(text_key("b", "eventName"), b.clone());
        let before = cache.used();
        // A whole chunk, and a slice within one, as the scan's batches are.
        let first = cache
            .text_ids(a[0].as_string_view())
            .expect("ids of a cached chunk");
        let expected: Vec<Option<String>> = (0..5000).map(name).collect();
        assert_eq!(texts_of(&first), expected);
        let slice = a[2].slice(100, 900);
        let sliced = cache
            .text_ids(slice.as_string_view())
            .expect("ids of a slice");
        assert_eq!(
            texts_of(&sliced),
            (10_100..11_000).map(name).collect::<Vec<_>>()
        );
        // Another file of the column: the same texts, the same ids.
        let other = cache
            .text_ids(b[1].as_string_view())
            .expect("ids of another file");
        assert!(Arc::ptr_eq(&first.texts, &other.texts));
        assert_eq!(texts_of(&other), (5001..7001).map(name).collect::<Vec<_>>());
        assert!(
            cache.used() > before + 4 * 19_000,
            "the ids are counted in the budget"
        );
        // An array the cache does not hold, or its views over other buffers: none.
        let copy = cast(&cast(&a[0], &DataType::Utf8).unwrap(), &DataType::Utf8View).unwrap();
        assert!(cache.text_ids(copy.as_string_view()).is_none());
        let views = a[0].as_string_view();
        let moved = copy.as_string_view();
        if !moved.data_buffers().is_empty() {
            // SAFETY: not read; only the lookup, which refuses it, sees it.
            let mixed = unsafe {
                StringViewArray::new_unchecked(
                    views.views().clone(),
                    moved.data_buffers().to_vec(),
                    views.nulls().cloned(),
                )
            };
            assert!(cache.text_ids(&mixed).is_none());
        }
        // Its views and buffers with other nulls: none.
        let renulled = StringViewArray::new(
            views.views().clone(),
            views.data_buffers().to_vec(),
            Some(arrow::buffer::NullBuffer::new_null(views.len())),
        );
        assert!(cache.text_ids(&renulled).is_none());
        // Dropped from the cache: its chunks are not found any more.
        cache.insert(text_key("a", "eventName"), text_chunks(10, name));
        assert!(cache.text_ids(a[0].as_string_view()).is_none());
    }

    #[test]
    fn a_column_of_mostly_distinct_texts_gets_no_ids() {
        let cache = ColumnCache::new(64 << 20);
        let ids = text_chunks(20_000, |i| Some(format!("request-{i:08}")));
        cache.insert(text_key("a", "requestID"), ids.clone());
        assert!(cache.text_ids(ids[0].as_string_view()).is_none());
        assert!(cache.text_ids(ids[3].as_string_view()).is_none());
        // Nor does any other file of that column, this session.
        let few = text_chunks(10_000, |i| Some(format!("r{}", i % 4)));
        cache.insert(text_key("b", "requestID"), few.clone());
        assert!(cache.text_ids(few[0].as_string_view()).is_none());
        // Another column is judged on its own.
        cache.insert(text_key("b", "eventName"), few.clone());
        assert!(cache.text_ids(few[0].as_string_view()).is_some());
    }

    #[test]
    fn a_columns_texts_take_at_most_an_eighth_of_the_budget() {
        let cache = ColumnCache::new(4 << 20);
        let text = |i: usize| {
            Some(format!(
                "arn:aws:iam::123456789012:role/role-{:06}",
                i % 3000
            ))
        };
        let a = text_chunks(24_000, text);
        cache.insert(text_key("a", "userArn"), a.clone());
        assert!(cache.text_ids(a[0].as_string_view()).is_some());
        assert!(cache.used() <= 4 << 20);
        // 3,000 texts of 40 bytes and their tables: past half a MiB, no more files get ids.
        let b = text_chunks(24_000, |i| text(i + 3));
        cache.insert(text_key("b", "userArn"), b.clone());
        assert!(cache.text_ids(b[0].as_string_view()).is_none());
    }

    #[test]
    fn shared_buffers_are_counted_once() {
        let values: ArrayRef = Arc::new(StringArray::from(vec!["GetObject"; 100]));
        let one = memory_size(std::slice::from_ref(&values));
        let halves = [values.slice(0, 50), values.slice(50, 50)];
        assert_eq!(memory_size(&halves), one);
        assert!(memory_size(&[values.clone(), Arc::new(StringArray::from(vec!["x"; 100]))]) > one);
    }

    #[test]
    fn a_replaced_file_is_another_key() {
        let mut meta = ObjectMeta {
            location: Path::from("date=2024-03-01/part-0.parquet"),
            last_modified: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            size: 10,
            e_tag: None,
            version: None,
        };
        let field = Field::new("eventName", DataType::Utf8View, true);
        let before = ColumnKey::new(&meta, &field);
        meta.size = 11;
        assert_ne!(before, ColumnKey::new(&meta, &field));
    }
}
