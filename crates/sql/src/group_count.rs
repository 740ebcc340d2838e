//! Counting by text columns without hashing every row's text: the first, per-partition step of
//! `SELECT eventName, count(*) ... GROUP BY eventName` and its kin, the commonest question asked
//! of a trail.
//!
//! Text comes out of Parquet (and the column cache) as string views, and the rows of one batch
//! that hold the same dictionary value hold the same 16-byte view. [`GroupCountExec`] looks each
//! row's view up in a small per-batch table and hashes the text only once per distinct view
//! and batch (views of short texts, and of long ones while the batches keep the same buffers,
//! stay known across batches); DataFusion's aggregation hashes and compares every row's text,
//! which was 80% of such a query's time over cached columns. A count of rows grouped by one
//! column is counted per text id in a dense array, in the same pass; over the column cache, by
//! the session's ids of the column's texts, which the cache keeps beside the column
//! ([`crate::cache::ColumnCache::text_ids`]): 4 bytes read a row, no view looked up.
//! [`GroupCountRule`] puts it in place of DataFusion's partial aggregation where that only
//! counts (`count(*)`, `count(x)`, no DISTINCT or FILTER) grouped by text columns; the final
//! aggregation above is DataFusion's, unchanged.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringViewArray, StringViewBuilder,
};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::StreamExt;

use crate::cache::{CachedScanExec, ColumnCache, ColumnTexts, TextIds};
use crate::texts::{IdTable, NULL_ID, Texts};

/// Groups held before they are handed on to the final aggregation (which merges them): keeps
/// memory bounded when the text is nearly unique per row.
const MAX_GROUPS: usize = 1 << 16;

/// Lanes of the counts of a column of few ids ([`CachedCounts`]), and the most ids counted so.
const LANES: usize = 4;
const MAX_LANED_IDS: usize = 1 << 12;

/// Puts [`GroupCountExec`] in place of each partial aggregation it can do.
#[derive(Debug, Default)]
pub(crate) struct GroupCountRule;

impl PhysicalOptimizerRule for GroupCountRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(match GroupCountExec::replacing(&node) {
                Some(exec) => Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "trailql_group_count"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// What one count adds for a row.
#[derive(Debug, Clone)]
enum Counted {
    /// Every row (`count(*)`, `count(1)`).
    Rows,
    /// Rows where the expression is not null (`count(x)`).
    NonNull(Arc<dyn PhysicalExpr>),
}

/// A partial aggregation counting rows per distinct combination of text columns.
#[derive(Debug)]
pub(crate) struct GroupCountExec {
    input: Arc<dyn ExecutionPlan>,
    groups: Vec<Arc<dyn PhysicalExpr>>,
    counts: Vec<Counted>,
    /// A filter taken in from below: only the rows its predicate holds for are counted (a
    /// cached scan's batches are then counted as they come, by their text ids), and it is put
    /// back above the input when the count is handed over.
    filter: Option<Arc<dyn ExecutionPlan>>,
    /// The aggregation replaced, which takes over when texts are mostly distinct.
    aggregate: Arc<dyn ExecutionPlan>,
    /// Its display.
    shown: String,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl GroupCountExec {
    /// The replacement for `plan` if it is a partial aggregation, grouped by up to four
    /// string-view expressions (no grouping sets), computing only plain counts, with no
    /// limit or dynamic filter.
    fn replacing(plan: &Arc<dyn ExecutionPlan>) -> Option<Self> {
        let agg = plan.downcast_ref::<AggregateExec>()?;
        if *agg.mode() != AggregateMode::Partial
            || agg.limit_options().is_some()
            || !agg.dynamic_expressions_produced().is_empty()
            || !agg.group_expr().is_single()
            || agg.group_expr().is_empty()
            || agg.group_expr().expr().len() > 4
            || agg.filter_expr().iter().any(Option::is_some)
        {
            return None;
        }
        let input_schema = agg.input().schema();
        let mut groups = Vec::new();
        for (expr, _) in agg.group_expr().expr() {
            if expr.data_type(&input_schema).ok()? != DataType::Utf8View {
                return None;
            }
            groups.push(expr.clone());
        }
        let schema = agg.schema();
        let mut counts = Vec::new();
        for (i, aggr) in agg.aggr_expr().iter().enumerate() {
            let state = schema.field(groups.len() + i);
            if aggr.fun().name() != "count"
                || aggr.is_distinct()
                || !aggr.order_bys().is_empty()
                || *state.data_type() != DataType::Int64
            {
                return None;
            }
            counts.push(match aggr.expressions().as_slice() {
                [] => Counted::Rows,
                [arg] => match arg.downcast_ref::<Literal>() {
                    Some(lit) if !lit.value().is_null() => Counted::Rows,
                    Some(_) => return None,
                    None => Counted::NonNull(arg.clone()),
                },
                _ => return None,
            });
        }
        if schema.fields().len() != groups.len() + counts.len() {
            return None;
        }
        let mut input = agg.input().clone();
        let mut filter = None;
        if let Some(below) = input.downcast_ref::<FilterExec>()
            && below.fetch().is_none()
            && below.input().downcast_ref::<CachedScanExec>().is_some()
            && counts_rows_by_columns(&groups, &counts)
        {
            // The group columns, as columns of the filter's input.
            if let Some(projection) = below.projection() {
                for group in &mut groups {
                    let column = group.downcast_ref::<Column>()?;
                    let index = *projection.get(column.index())?;
                    *group = Arc::new(Column::new(column.name(), index));
                }
            }
            filter = Some(input.clone());
            input = below.input().clone();
        }
        Some(GroupCountExec {
            aggregate: plan.clone(),
            input,
            filter,
            groups,
            counts,
            shown: datafusion::physical_plan::displayable(agg)
                .one_line()
                .to_string()
                .trim_end()
                .to_string(),
            schema,
            properties: agg.properties().clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

/// Whether only rows are counted, grouped by columns (not expressions): what the session's
/// text ids of cached columns can count.
fn counts_rows_by_columns(groups: &[Arc<dyn PhysicalExpr>], counts: &[Counted]) -> bool {
    groups.iter().all(|g| g.downcast_ref::<Column>().is_some())
        && counts.iter().all(|c| matches!(c, Counted::Rows))
}

impl GroupCountExec {
    fn counts_rows_by_columns(&self) -> bool {
        counts_rows_by_columns(&self.groups, &self.counts)
    }

    /// The predicate of the filter taken in.
    fn predicate(&self) -> Option<&Arc<dyn PhysicalExpr>> {
        Some(
            self.filter
                .as_ref()?
                .downcast_ref::<FilterExec>()?
                .predicate(),
        )
    }
}

impl DisplayAs for GroupCountExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::TreeRender => write!(f, "counts by view"),
            _ => {
                write!(
                    f,
                    "GroupCountExec: {}",
                    self.shown.trim_start_matches("AggregateExec: ")
                )?;
                match self.predicate() {
                    Some(predicate) => write!(f, ", filter={predicate}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl ExecutionPlan for GroupCountExec {
    fn name(&self) -> &'static str {
        "GroupCountExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for expr in self.groups.iter().chain(self.predicate()) {
            if f(expr)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        for count in &self.counts {
            if let Counted::NonNull(expr) = count
                && f(expr)? == TreeNodeRecursion::Stop
            {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .into_iter()
            .next()
            .unwrap_or_else(|| self.input.clone());
        Ok(Arc::new(GroupCountExec {
            aggregate: self.aggregate.clone(),
            input,
            filter: self.filter.clone(),
            groups: self.groups.clone(),
            counts: self.counts.clone(),
            shown: self.shown.clone(),
            schema: self.schema.clone(),
            properties: self.properties.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let output = baseline.clone();
        let handed_over = MetricBuilder::new(&self.metrics).counter("handed_over", partition);
        let mut counter = Counter::new(
            self.groups.clone(),
            self.counts.clone(),
            self.schema.clone(),
        );
        // The session's text ids of cached columns, for a count of rows by those columns.
        if let Some(scan) = self.input.downcast_ref::<CachedScanExec>()
            && self.counts_rows_by_columns()
        {
            let counted = MetricBuilder::new(&self.metrics).counter("counted_by_id", partition);
            counter.cached = Some(CachedCounts::new(
                scan.cache().clone(),
                self.groups.len(),
                counted,
            ));
        }
        counter.filter = self.predicate().cloned();
        let counter = Box::new(counter);
        let handover = HandOver {
            aggregate: self.aggregate.clone(),
            input: self.input.clone(),
            filter: self.filter.clone(),
            partition,
            context,
        };
        let stream = futures::stream::unfold(Step::Count(input, counter), move |step| {
            let baseline = baseline.clone();
            let handover = handover.clone();
            let handed_over = handed_over.clone();
            async move {
                let (mut input, mut counter) = match step {
                    Step::Count(input, counter) => (input, counter),
                    Step::Delegate(mut rest) => {
                        let next = rest.next().await?;
                        return Some((next, Step::Delegate(rest)));
                    }
                    Step::Done => return None,
                };
                loop {
                    match input.next().await {
                        Some(Ok(batch)) => {
                            let timer = baseline.elapsed_compute().timer();
                            let added = counter.add(&batch);
                            timer.done();
                            if let Err(e) = added {
                                return Some((Err(e), Step::Done));
                            }
                            if counter.high_cardinality() {
                                // What is counted so far is a valid partial result; the
                                // rest of the input goes to DataFusion's aggregation.
                                let out = counter.take();
                                handed_over.add(1);
                                return Some(match handover.rest(input) {
                                    Ok(rest) => (out, Step::Delegate(rest)),
                                    Err(e) => (Err(e), Step::Done),
                                });
                            }
                            if counter.len() >= MAX_GROUPS {
                                let out = counter.take();
                                return Some((out, Step::Count(input, counter)));
                            }
                        }
                        Some(Err(e)) => return Some((Err(e), Step::Done)),
                        None => return Some((counter.take(), Step::Done)),
                    }
                }
            }
        })
        .filter(|batch| futures::future::ready(!matches!(batch, Ok(b) if b.num_rows() == 0)))
        .inspect(move |batch| {
            if let Ok(batch) = batch {
                output.record_output(batch.num_rows());
                output.output_batches().add(1);
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Where a partition's stream is.
enum Step {
    /// Counting the input's batches.
    Count(SendableRecordBatchStream, Box<Counter>),
    /// Passing on DataFusion's aggregation of the rest of the input.
    Delegate(SendableRecordBatchStream),
    Done,
}

/// How to hand the rest of a partition's input to the aggregation replaced.
#[derive(Clone)]
struct HandOver {
    aggregate: Arc<dyn ExecutionPlan>,
    input: Arc<dyn ExecutionPlan>,
    /// The filter taken in from below the aggregation, put back above `input`.
    filter: Option<Arc<dyn ExecutionPlan>>,
    partition: usize,
    context: Arc<TaskContext>,
}

impl HandOver {
    /// The aggregation replaced, run over what is left of `input`.
    fn rest(&self, input: SendableRecordBatchStream) -> Result<SendableRecordBatchStream> {
        let schema = self.input.schema();
        let mut input = Some(input);
        let partitions = (0..self.input.output_partitioning().partition_count())
            .map(|p| {
                let stream = if p == self.partition {
                    input.take()
                } else {
                    None
                };
                Arc::new(Started {
                    schema: schema.clone(),
                    stream: std::sync::Mutex::new(stream),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let mut rest: Arc<dyn ExecutionPlan> = Arc::new(StreamingTableExec::try_new(
            schema,
            partitions,
            None,
            Vec::new(),
            false,
            None,
        )?);
        if let Some(filter) = &self.filter {
            rest = filter.clone().replace_children(
                vec![rest],
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )?;
        }
        self.aggregate
            .clone()
            .replace_children(
                vec![rest],
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )?
            .execute(self.partition, self.context.clone())
    }
}

/// One partition of the input, already started: executed once, by the aggregation that takes
/// it over (the other partitions of [`HandOver::rest`]'s plan are never executed).
struct Started {
    schema: SchemaRef,
    stream: std::sync::Mutex<Option<SendableRecordBatchStream>>,
}

impl fmt::Debug for Started {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Started")
    }
}

impl PartitionStream for Started {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().unwrap_or_else(|e| e.into_inner()).take();
        taken.unwrap_or_else(|| {
            let error = datafusion::common::DataFusionError::Internal(
                "a handed-over input executed twice, or a partition not handed over".into(),
            );
            Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async move { Err(error) }),
            ))
        })
    }
}

/// The ids counted at least once in `counts` (indexed by id), with their counts.
fn counted_ids(counts: &[i64]) -> impl Iterator<Item = (usize, i64)> + '_ {
    counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(id, &c)| (id, c))
}

/// Rows counted per text id of one column, for a count grouped by that column alone: one
/// pass over the rows and no group table. (Counting rows of the same text in several lanes,
/// so that an add need not wait for the last one's store, was measured: no gain.)
#[derive(Default)]
struct RowsByText {
    /// Per text id.
    counts: Vec<i64>,
    nulls: i64,
}

impl RowsByText {
    /// Text ids seen (the groups held, nulls aside).
    fn len(&self) -> usize {
        self.counts.len()
    }

    fn add(&mut self, texts: &mut Texts, views: &StringViewArray) {
        let (counts, nulls) = (&mut self.counts, &mut self.nulls);
        texts.each_id(views, |_, id| {
            if id == NULL_ID {
                *nulls += 1;
                return;
            }
            let id = id as usize;
            if id >= counts.len() {
                counts.resize(id + 1, 0);
            }
            counts[id] += 1;
        });
    }

    /// Each text id counted (`NULL_ID` for nulls) with its count; the counts start again.
    fn drain(&mut self) -> Vec<(u32, i64)> {
        let mut counted: Vec<(u32, i64)> = counted_ids(&self.counts)
            .map(|(id, c)| (id as u32, c))
            .collect();
        if self.nulls > 0 {
            counted.push((NULL_ID, self.nulls));
        }
        self.counts.fill(0);
        self.nulls = 0;
        counted
    }
}

/// Rows counted by the session's ids of the texts of cached columns ([`TextIds`]): 4 bytes
/// read a row and column, nothing hashed; with one column, counted per id in a dense array.
struct CachedCounts {
    cache: Arc<ColumnCache>,
    /// Rows counted so.
    counted: Count,
    /// Per group column: the texts its ids are of (those of the first batch that had ids).
    texts: Vec<Option<Arc<ColumnTexts>>>,
    /// One column: rows per id (0: nulls).
    counts: Vec<i64>,
    /// One column of few ids, all rows: rows per id in [`LANES`] lanes (`id * LANES + lane`),
    /// added to `counts` when drained.
    lanes: Vec<i64>,
    /// Several columns: packed ids (32 bits a column) -> group; per group, its key and rows.
    group_ids: IdTable,
    keys: Vec<u128>,
    rows: Vec<i64>,
    /// One column: ids counted at least once.
    counted_ids: usize,
}

impl CachedCounts {
    fn new(cache: Arc<ColumnCache>, columns: usize, counted: Count) -> Self {
        CachedCounts {
            cache,
            counted,
            texts: vec![None; columns],
            counts: Vec::new(),
            lanes: Vec::new(),
            group_ids: IdTable::new(),
            keys: Vec::new(),
            rows: Vec::new(),
            counted_ids: 0,
        }
    }

    /// Groups held.
    fn len(&self) -> usize {
        self.counted_ids + self.keys.len()
    }

    /// Counts the rows of `columns` (those `selected`, or all) by their ids, if the cache has
    /// them for every column; false if not.
    fn add(&mut self, columns: &[&StringViewArray], selected: Option<&BooleanBuffer>) -> bool {
        let mut ids = Vec::with_capacity(columns.len());
        for (known, views) in self.texts.iter_mut().zip(columns) {
            let Some(found) = self.cache.text_ids(views) else {
                return false;
            };
            match known {
                Some(known) if !Arc::ptr_eq(known, &found.texts) => return false,
                Some(_) => {}
                None => *known = Some(found.texts.clone()),
            }
            ids.push(found);
        }
        let rows = match selected {
            Some(selected) => selected.count_set_bits(),
            None => columns.first().map_or(0, |c| c.len()),
        };
        if let ([TextIds { ids, bound, .. }], None) = (ids.as_slice(), selected)
            && *bound <= MAX_LANED_IDS
        {
            // Rows of the same text follow each other, and an add to a count waits for the
            // last add's store: consecutive rows go to different lanes.
            if self.lanes.len() < *bound * LANES {
                self.lanes.resize(*bound * LANES, 0);
            }
            let lanes = &mut self.lanes[..*bound * LANES];
            let mut rows = ids.chunks_exact(LANES);
            for row in &mut rows {
                for (lane, &id) in row.iter().enumerate() {
                    lanes[id as usize * LANES + lane] += 1;
                }
            }
            for &id in rows.remainder() {
                lanes[id as usize * LANES] += 1;
            }
            // At most `bound` ids counted: fewer than a hand-on's worth of groups.
            self.counted_ids = self.counted_ids.max(*bound);
        } else if let [TextIds { ids, bound, .. }] = ids.as_slice() {
            if self.counts.len() < *bound {
                self.counts.resize(*bound, 0);
            }
            let counts = &mut self.counts[..*bound];
            let mut new = 0;
            let mut count = |id: u32| {
                let count = &mut counts[id as usize];
                new += usize::from(*count == 0);
                *count += 1;
            };
            match selected {
                None => ids.iter().for_each(|&id| count(id)),
                Some(selected) => selected.set_indices().for_each(|row| count(ids[row])),
            }
            self.counted_ids += new;
        } else {
            let key = |row: usize| {
                ids.iter().enumerate().fold(0u128, |key, (c, t)| {
                    key | u128::from(t.ids[row]) << (32 * c)
                })
            };
            let mut count = |key: u128| {
                let group = match self.group_ids.get(key) {
                    Some(group) => group,
                    None => {
                        let group = self.keys.len() as u32;
                        self.keys.push(key);
                        self.rows.push(0);
                        if let Err(slot) = self.group_ids.find(key, |_| true) {
                            self.group_ids.insert(slot, key, group);
                        }
                        group
                    }
                };
                self.rows[group as usize] += 1;
            };
            match selected {
                None => (0..rows).for_each(|row| count(key(row))),
                Some(selected) => selected.set_indices().for_each(|row| count(key(row))),
            }
        }
        self.counted.add(rows);
        true
    }

    /// Each group counted (its packed ids, 0 for a null) with its rows; the counts start
    /// again.
    fn drain(&mut self) -> Vec<(u128, i64)> {
        if self.counts.len() * LANES < self.lanes.len() {
            self.counts.resize(self.lanes.len() / LANES, 0);
        }
        for (count, lanes) in self.counts.iter_mut().zip(self.lanes.chunks_exact(LANES)) {
            *count += lanes.iter().sum::<i64>();
        }
        self.lanes.fill(0);
        let mut counted: Vec<(u128, i64)> = counted_ids(&self.counts)
            .map(|(id, c)| (id as u128, c))
            .collect();
        counted.extend(self.keys.drain(..).zip(self.rows.drain(..)));
        self.counts.fill(0);
        self.group_ids.clear();
        self.counted_ids = 0;
        counted
    }
}

/// Counts per group, for one partition.
struct Counter {
    groups: Vec<Arc<dyn PhysicalExpr>>,
    counts: Vec<Counted>,
    schema: SchemaRef,
    texts: Vec<Texts>,
    /// With several group columns: packed column ids (32 bits each) -> group.
    group_ids: IdTable,
    /// With one group column: 1 + its text id (0 for null) -> group + 1, or 0.
    by_text: Vec<u32>,
    /// Per group: its packed column ids.
    keys: Vec<u128>,
    /// Per count, per group.
    totals: Vec<Vec<i64>>,
    /// Per row of the batch being added: its packed column ids, and its group (reused).
    packed: Vec<u128>,
    rows: Vec<u32>,
    /// Counting only rows grouped by one column: rows per text id, counted in one pass (made
    /// groups by [`Counter::take`]).
    rows_by_text: Option<RowsByText>,
    /// Counting only rows grouped by columns of a cached scan: rows per ids of the session's
    /// texts of those columns, for the batches that have them.
    cached: Option<CachedCounts>,
    /// The rows counted: those for which this holds (a filter taken in from below), or all.
    filter: Option<Arc<dyn PhysicalExpr>>,
}

impl Counter {
    fn new(groups: Vec<Arc<dyn PhysicalExpr>>, counts: Vec<Counted>, schema: SchemaRef) -> Self {
        let texts = groups.iter().map(|_| Texts::new()).collect();
        let totals = counts.iter().map(|_| Vec::new()).collect();
        let rows_only = counts.iter().all(|c| matches!(c, Counted::Rows));
        let rows_by_text = (groups.len() == 1 && rows_only).then(RowsByText::default);
        Counter {
            groups,
            counts,
            schema,
            texts,
            group_ids: IdTable::new(),
            by_text: Vec::new(),
            keys: Vec::new(),
            totals,
            packed: Vec::new(),
            rows: Vec::new(),
            rows_by_text,
            cached: None,
            filter: None,
        }
    }

    /// Groups held (with one column counted by text: at most that).
    fn len(&self) -> usize {
        match &self.rows_by_text {
            Some(rows_by_text) => {
                rows_by_text.len() + 1 + self.cached.as_ref().map_or(0, CachedCounts::len)
            }
            None => self.keys.len() + self.cached.as_ref().map_or(0, CachedCounts::len),
        }
    }

    /// Whether a group column has so many distinct texts that DataFusion's aggregation,
    /// which compares texts directly, should take over.
    fn high_cardinality(&self) -> bool {
        self.texts.iter().any(Texts::high_cardinality)
    }

    /// A new group for `key`, counted zero times.
    fn new_group(&mut self, key: u128) -> u32 {
        let group = self.keys.len() as u32;
        self.keys.push(key);
        for totals in &mut self.totals {
            totals.push(0);
        }
        group
    }

    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        let selected = match &self.filter {
            Some(predicate) => {
                let mask = predicate.evaluate(batch)?.into_array(n)?;
                let mask = mask.as_boolean_opt().ok_or_else(|| {
                    datafusion::common::DataFusionError::Internal(
                        "a filter of a count gave no booleans".into(),
                    )
                })?;
                // A null is not true: not counted.
                Some(match mask.null_count() {
                    0 => mask.clone(),
                    _ => arrow::compute::prep_null_mask_filter(mask),
                })
            }
            None => None,
        };
        if let Some(cached) = &mut self.cached {
            let arrays = self
                .groups
                .iter()
                .map(|g| g.evaluate(batch)?.into_array(n))
                .collect::<Result<Vec<_>>>()?;
            let views: Vec<&StringViewArray> = arrays.iter().map(|a| a.as_string_view()).collect();
            if cached.add(&views, selected.as_ref().map(|s| s.values())) {
                return Ok(());
            }
        }
        match selected {
            Some(selected) => {
                self.add_views(&arrow::compute::filter_record_batch(batch, &selected)?)
            }
            None => self.add_views(batch),
        }
    }

    /// Counts the rows of `batch` by their views.
    fn add_views(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if let Some(rows_by_text) = &mut self.rows_by_text {
            let array = self.groups[0].evaluate(batch)?.into_array(n)?;
            rows_by_text.add(&mut self.texts[0], array.as_string_view());
            return Ok(());
        }
        let mut packed = std::mem::take(&mut self.packed);
        packed.clear();
        packed.resize(n, 0);
        for (c, expr) in self.groups.iter().enumerate() {
            let array = expr.evaluate(batch)?.into_array(n)?;
            self.texts[c].add(array.as_string_view(), &mut packed, 32 * c as u32);
        }
        self.rows.clear();
        if let [texts] = self.texts.as_slice() {
            // One column: its id picks the group from a dense table, nulls in the first slot
            // (one that stays theirs as later batches bring new texts).
            self.by_text.resize(texts.len() + 1, 0);
            for &key in &packed {
                let slot = match key as u32 {
                    NULL_ID => 0,
                    id => id as usize + 1,
                };
                let group = match self.by_text[slot] {
                    0 => {
                        let group = self.new_group(key);
                        self.by_text[slot] = group + 1;
                        group
                    }
                    g => g - 1,
                };
                self.rows.push(group);
            }
        } else {
            for &key in &packed {
                let group = match self.group_ids.get(key) {
                    Some(group) => group,
                    None => {
                        let group = self.new_group(key);
                        if let Err(slot) = self.group_ids.find(key, |_| true) {
                            self.group_ids.insert(slot, key, group);
                        }
                        group
                    }
                };
                self.rows.push(group);
            }
        }
        self.packed = packed;
        for (counted, totals) in self.counts.iter().zip(&mut self.totals) {
            match counted {
                Counted::Rows => {
                    for &g in &self.rows {
                        totals[g as usize] += 1;
                    }
                }
                Counted::NonNull(expr) => {
                    let values = expr.evaluate(batch)?.into_array(n)?;
                    for (row, &g) in self.rows.iter().enumerate() {
                        if values.is_valid(row) {
                            totals[g as usize] += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The groups counted so far as a batch, and a fresh start (texts' ids are kept).
    fn take(&mut self) -> Result<RecordBatch> {
        if let Some(rows_by_text) = &mut self.rows_by_text {
            for (id, count) in rows_by_text.drain() {
                self.keys.push(u128::from(id));
                for totals in &mut self.totals {
                    totals.push(count);
                }
            }
        }
        // Groups counted by the session's ids, after those of the partition's own.
        let cached = self.cached.as_mut().map(|c| (c.texts.clone(), c.drain()));
        if let Some((_, counted)) = &cached {
            for totals in &mut self.totals {
                totals.extend(counted.iter().map(|&(_, count)| count));
            }
        }
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (c, texts) in self.texts.iter().enumerate() {
            let mut builder = StringViewBuilder::with_capacity(self.keys.len());
            for key in &self.keys {
                match (key >> (32 * c)) as u32 {
                    NULL_ID => builder.append_null(),
                    id => builder.append_value(texts.value(id)),
                }
            }
            if let Some((session, counted)) = &cached
                && let Some(Some(session)) = session.get(c)
            {
                session.with(|texts| {
                    for &(key, _) in counted {
                        match (key >> (32 * c)) as u32 {
                            0 => builder.append_null(),
                            id => builder.append_value(texts.value(id - 1)),
                        }
                    }
                });
            }
            columns.push(Arc::new(builder.finish()));
        }
        for totals in &mut self.totals {
            columns.push(Arc::new(Int64Array::from(std::mem::take(totals))));
        }
        self.keys.clear();
        self.group_ids.clear();
        self.by_text.clear();
        if self.texts.iter().any(|t| t.len() + 1 >= MAX_GROUPS) {
            for texts in &mut self.texts {
                *texts = Texts::new();
            }
            if let Some(rows_by_text) = &mut self.rows_by_text {
                *rows_by_text = RowsByText::default();
            }
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringViewArray};
    use arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// Two partitions of 72,000 rows: `k` a few texts, with nulls (equal texts share views),
    /// `k2` another, `u` a different text per row, `n` a number with nulls, `a` and `b` 300
    /// texts each whose pairs are all different (more groups than [`MAX_GROUPS`]); `s` long
    /// texts whose views are the same in every batch while the texts are not (each batch its
    /// own buffer); `d` short and long texts, each batch a slice of one array (as Parquet's
    /// dictionary pages give them: the same buffer and views batch after batch); `late` texts
    /// with nulls, each batch one text more than the batch before.
    fn table() -> MemTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8View, true),
            Field::new("k2", DataType::Utf8View, true),
            Field::new("u", DataType::Utf8View, true),
            Field::new("n", DataType::Int64, true),
            Field::new("a", DataType::Utf8View, false),
            Field::new("b", DataType::Utf8View, false),
            Field::new("s", DataType::Utf8View, false),
            Field::new("d", DataType::Utf8View, true),
            Field::new("late", DataType::Utf8View, true),
        ]));
        let names = [
            "GetObject",
            "DescribeInstanceStatus",
            "DescribeInstances",
            "AssumeRole",
        ];
        let dictionary = |part: usize| {
            let d: arrow::array::DictionaryArray<arrow::datatypes::Int32Type> = (0..72_000)
                .map(|i| (i % 11 != 0).then(|| [names[i % 4], "ListBuckets"][(i + part) % 2]))
                .collect();
            arrow::compute::cast(&d, &DataType::Utf8View).unwrap()
        };
        let batch = |part: usize, start: usize, d: &ArrayRef| {
            let rows = start..start + 8000;
            // As Parquet's dictionary pages give them: equal texts, equal views.
            let k: arrow::array::DictionaryArray<arrow::datatypes::Int32Type> = rows
                .clone()
                .map(|i| (i % 7 != 0).then(|| names[i % names.len()]))
                .collect();
            let k = arrow::compute::cast(&k, &DataType::Utf8View).unwrap();
            let k2 = StringViewArray::from_iter_values(rows.clone().map(|i| ["a", "b"][i % 2]));
            let u = StringViewArray::from_iter_values(
                rows.clone()
                    .map(|i| format!("arn:aws:iam::1:user/u-{part}-{i}")),
            );
            let n = Int64Array::from_iter(rows.clone().map(|i| (i % 3 != 0).then_some(i as i64)));
            let a =
                StringViewArray::from_iter_values(rows.clone().map(|i| format!("a{}", i % 300)));
            let b =
                StringViewArray::from_iter_values(rows.clone().map(|i| format!("b{}", i / 300)));
            let late = StringViewArray::from_iter(rows.clone().map(|i| {
                (i % 5 != 0).then(|| format!("late-{}", (i - start) % (start / 8000 + 1)))
            }));
            let s = StringViewArray::from_iter_values(rows.map(|i| match (i - start) % 4 {
                0 | 1 => format!("role/batch-{:05}-{}", start + part, i % 2),
                // 13 bytes: the shortest text a view does not hold.
                _ => format!("xyz-{}-b{:06}", i % 2, start + part),
            }));
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    k,
                    Arc::new(k2),
                    Arc::new(u),
                    Arc::new(n),
                    Arc::new(a),
                    Arc::new(b),
                    Arc::new(s),
                    d.slice(start, 8000),
                    Arc::new(late),
                ],
            )
            .unwrap()
        };
        let partitions = (0..2)
            .map(|p| {
                let d = dictionary(p);
                (0..9).map(|b| batch(p, b * 8000, &d)).collect()
            })
            .collect();
        MemTable::try_new(schema, partitions).unwrap()
    }

    async fn answer(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_are_datafusions_for_few_and_for_mostly_distinct_texts() {
        let ours = crate::new_context().unwrap();
        let theirs = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_target_partitions(2),
        );
        for ctx in [&ours, &theirs] {
            ctx.register_table("t", Arc::new(table())).unwrap();
        }
        let queries = [
            "SELECT k, count(*), count(n), count(k) FROM t GROUP BY k ORDER BY k",
            "SELECT k2, k, count(*) FROM t WHERE n > 100 GROUP BY k2, k ORDER BY 1, 2",
            "SELECT u, count(*) AS c FROM t GROUP BY u ORDER BY c DESC, u LIMIT 5",
            "SELECT count(*) FROM (SELECT u FROM t GROUP BY u)",
            // DISTINCT is planned as a grouping by both columns, without aggregates, first.
            "SELECT k, count(DISTINCT k2) FROM t GROUP BY k ORDER BY k",
            // 72,000 groups in each partition: handed on in parts, merged by the final step.
            "SELECT count(*), sum(c) FROM (SELECT a, b, count(*) AS c FROM t GROUP BY a, b)",
            "SELECT s, count(*) FROM t GROUP BY s ORDER BY s",
            "SELECT d, count(*), count(d) FROM t GROUP BY d ORDER BY d",
            // Texts new to later batches than the first null.
            "SELECT late, count(*), count(late) FROM t GROUP BY late ORDER BY late",
            // Only rows counted, by one column: counted per text id in one pass.
            "SELECT k, count(*) FROM t GROUP BY k ORDER BY k",
            "SELECT d, count(*), count(1) FROM t GROUP BY d ORDER BY d",
            "SELECT d, s, count(*) FROM t WHERE n > 10 GROUP BY d, s ORDER BY d, s",
        ];
        for sql in queries {
            let plan = answer(&ours, &format!("EXPLAIN {sql}")).await;
            assert!(plan.contains("GroupCountExec"), "{sql}: {plan}");
            assert_eq!(
                answer(&ours, sql).await,
                answer(&theirs, sql).await,
                "{sql}"
            );
        }
        // Nearly every `u` is new to its batch: DataFusion's aggregation took over.
        let analyzed = answer(&ours, &format!("EXPLAIN ANALYZE {}", queries[3])).await;
        assert!(analyzed.contains("handed_over=2"), "{analyzed}");
        let analyzed = answer(&ours, &format!("EXPLAIN ANALYZE {}", queries[0])).await;
        assert!(analyzed.contains("handed_over=0"), "{analyzed}");
        let analyzed = answer(&ours, &format!("EXPLAIN ANALYZE {}", queries[5])).await;
        assert!(
            analyzed.contains("handed_over=0")
                && analyzed.contains("output_rows=144.0 K")
                && analyzed.contains("output_batches=4"),
            "{analyzed}"
        );
        // Counts with a FILTER stay with DataFusion.
        let sql = "SELECT k, count(*) FILTER (WHERE n > 5) FROM t GROUP BY k";
        let plan = answer(&ours, &format!("EXPLAIN {sql}")).await;
        assert!(!plan.contains("GroupCountExec"), "{sql}: {plan}");
    }
}
