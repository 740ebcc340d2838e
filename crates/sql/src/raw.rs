//! The `cloudtrail` table over raw trail files: every scan runs the ingest pipeline (the one
//! decoder of trailql), skipping files whose `AWSLogs/.../YYYY/MM/DD` delivery date cannot hold
//! events in the query's `eventTime` range.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use chrono::{DateTime, Days, NaiveDate};
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use trailql_ingest::{FileKind, IngestOptions, InputFile, Message};

use crate::pruning::{TimeColumn, time_bounds};

/// Days before the first and after the last day of a time filter whose deliveries are still
/// read: events land in the folder of their delivery, usually within minutes, at times a day
/// or more late.
const DELIVERY_MARGIN_BEFORE: u64 = 1;
const DELIVERY_MARGIN_AFTER: u64 = 2;

/// Raw trail files as a table.
#[derive(Debug)]
pub struct RawTrailTable {
    files: Arc<Vec<InputFile>>,
    options: IngestOptions,
    skipped: Arc<AtomicUsize>,
}

impl RawTrailTable {
    /// A table over `files` (non-event files among them are left out).
    pub fn new(files: Vec<InputFile>, options: IngestOptions) -> Self {
        let files = files
            .into_iter()
            .filter(|f| f.kind == FileKind::Events)
            .collect();
        Self {
            files: Arc::new(files),
            options,
            skipped: Arc::default(),
        }
    }

    /// How many damaged files and records the queries so far skipped (each named on stderr
    /// when met), so that a caller can say in its exit code that the answer left some out.
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl TableProvider for RawTrailTable {
    fn schema(&self) -> SchemaRef {
        trailql_schema::arrow_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters only choose files; DataFusion still applies every one of them to the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (lo, hi) = time_bounds(filters, TimeColumn::ThroughCasts);
        let files: Vec<InputFile> = self
            .files
            .iter()
            .filter(|f| delivery_may_hold(f.path_date, lo, hi))
            .cloned()
            .collect();
        let mut options = self.options.clone();
        options.decode_only = decode_only(projection);
        let partition = Arc::new(RawPartition {
            schema: self.schema(),
            files: Arc::new(files),
            options,
            skipped: self.skipped.clone(),
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            self.schema(),
            vec![partition],
            projection,
            Vec::new(),
            false,
            limit,
        )?))
    }
}

#[derive(Debug)]
struct RawPartition {
    schema: SchemaRef,
    files: Arc<Vec<InputFile>>,
    options: IngestOptions,
    skipped: Arc<AtomicUsize>,
}

impl PartitionStream for RawPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rx = trailql_ingest::start(self.files.as_ref().clone(), self.options.clone());
        let skipped = self.skipped.clone();
        let stream = futures::stream::unfold(rx, move |mut rx| {
            let skipped = skipped.clone();
            async move {
                loop {
                    match rx.recv().await? {
                        Message::Batch(batch) => return Some((Ok(batch), rx)),
                        Message::File(report) => {
                            skipped.fetch_add(report.errors.len(), Ordering::Relaxed);
                            for e in &report.errors {
                                let what = if e.is_repair() { "mended" } else { "skipped" };
                                eprintln!("trailql: {what}: {e}");
                            }
                        }
                    }
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// The top-level fields the decoder must fill for `projection` (the columns the query reads,
/// those of its filters included): `None`, every field, when `_unmapped` is read, since it
/// holds what the other fields could not.
fn decode_only(projection: Option<&Vec<usize>>) -> Option<u64> {
    let fields = trailql_schema::RECORD.len();
    let projection = projection?;
    if projection.iter().any(|&i| i >= fields) {
        return None;
    }
    Some(projection.iter().fold(0, |mask, &i| mask | 1 << i))
}

/// Whether a file delivered on `date` may hold events in `[lo, hi]` (microseconds, UTC).
fn delivery_may_hold(date: Option<NaiveDate>, lo: Option<i64>, hi: Option<i64>) -> bool {
    let Some(date) = date else { return true };
    let day = |micros: i64| DateTime::from_timestamp_micros(micros).map(|d| d.date_naive());
    if let Some(first) = lo.and_then(day)
        && date
            < first
                .checked_sub_days(Days::new(DELIVERY_MARGIN_BEFORE))
                .unwrap_or(first)
    {
        return false;
    }
    if let Some(last) = hi.and_then(day)
        && date
            > last
                .checked_add_days(Days::new(DELIVERY_MARGIN_AFTER))
                .unwrap_or(last)
    {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        trailql_schema::time::parse(s).unwrap().micros
    }

    #[test]
    fn the_decoder_fills_the_projected_fields_or_all_when_unmapped_is_read() {
        let fields = trailql_schema::RECORD.len();
        assert_eq!(decode_only(None), None);
        assert_eq!(decode_only(Some(&vec![0, 3])), Some(0b1001));
        assert_eq!(
            decode_only(Some(&vec![3, fields])),
            None,
            "_unmapped is last"
        );
        assert_eq!(
            decode_only(Some(&vec![])),
            Some(0),
            "count(*) reads no field"
        );
    }

    #[test]
    fn delivery_dates_keep_a_margin() {
        let day = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        let (lo, hi) = (
            Some(ts("2023-07-10T00:00:00Z")),
            Some(ts("2023-07-10T23:59:59Z")),
        );
        assert!(delivery_may_hold(day("2023-07-10"), lo, hi));
        assert!(
            delivery_may_hold(day("2023-07-11"), lo, hi),
            "next-day delivery of late events"
        );
        assert!(delivery_may_hold(day("2023-07-12"), lo, hi));
        assert!(!delivery_may_hold(day("2023-07-13"), lo, hi));
        assert!(!delivery_may_hold(day("2023-07-08"), lo, hi));
        assert!(
            delivery_may_hold(None, lo, hi),
            "files outside AWSLogs/ are always read"
        );
    }
}
