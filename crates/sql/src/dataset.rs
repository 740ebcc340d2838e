//! The `cloudtrail` table over a Parquet dataset written by `trailql convert`: DataFusion's
//! listing table over the snapshot the dataset's log names, with two additions that keep a
//! query from paying for every file of the dataset:
//! - filters on the partition folders that the query's own filters imply
//!   ([`crate::pruning::implied_partition_filters`]): a one-day query lists and opens one day's
//!   files, not all of them;
//! - no min/max statistics kept for nested columns ([`DatasetFormat`]);
//! - in a session with a column cache, scans of files that fit it go through the cache
//!   ([`crate::cache`]).

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{ScanArgs, ScanResult, Session};
use datafusion::common::stats::Precision;
use datafusion::common::{Result, Statistics};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::{FileFormat, FileMeta};
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::parquet::transform_schema_to_view;
use datafusion::datasource::physical_plan::{FileScanConfig, FileSinkConfig, FileSource};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::LexRequirement;
use datafusion::physical_expr_common::sort_expr::LexOrdering;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use object_store::{ObjectMeta, ObjectStore};
use trailql_ingest::StoreOptions;
use trailql_lake::Lake;
use trailql_parquet::{DatasetLocation, PartitionKey};

use crate::cache::{CachedScanExec, ColumnCache};
use crate::pruning::implied_partition_filters;
use crate::{SqlError, snapshot};

/// A dataset as a table: its listing table, the partition keys its folders were written by,
/// and the session's column cache if it keeps one.
#[derive(Debug)]
pub(crate) struct DatasetTable {
    listing: ListingTable,
    keys: Vec<PartitionKey>,
    cache: Option<Arc<ColumnCache>>,
}

#[async_trait]
impl TableProvider for DatasetTable {
    fn schema(&self) -> SchemaRef {
        self.listing.schema()
    }

    fn table_type(&self) -> TableType {
        self.listing.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.listing.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let args = ScanArgs::default()
            .with_projection(projection.map(|p| p.as_slice()))
            .with_filters(Some(filters))
            .with_limit(limit);
        Ok(self.scan_with_args(state, args).await?.into_inner())
    }

    async fn scan_with_args<'a>(
        &self,
        state: &dyn Session,
        args: ScanArgs<'a>,
    ) -> Result<ScanResult> {
        let mut filters = args.filters().unwrap_or_default().to_vec();
        let filtered = !filters.is_empty();
        filters.extend(implied_partition_filters(&filters, &self.keys));
        let args = ScanArgs::default()
            .with_projection(args.projection())
            .with_filters(Some(&filters))
            .with_limit(args.limit())
            .with_statistics_requests(args.statistics_requests());
        let scan = self.listing.scan_with_args(state, args).await?;
        let cached = self.cache.as_ref().and_then(|cache| {
            CachedScanExec::replacing(scan.plan(), cache, state.config().batch_size(), filtered)
        });
        Ok(match cached {
            Some(exec) => ScanResult::new(Arc::new(exec)),
            None => scan,
        })
    }
}

/// A listing table over `source` if it is a dataset written by `trailql convert` (a local
/// folder or an object-store URL holding a trailql log).
pub(crate) async fn lake_table(
    ctx: &SessionContext,
    source: &str,
    store: &StoreOptions,
    cache: Option<Arc<ColumnCache>>,
) -> Result<Option<DatasetTable>, SqlError> {
    let Ok(found) = trailql_ingest::open_store(source, store) else {
        return Ok(None);
    };
    let is_url = source.contains("://");
    let display = found.display_root.display(found.prefix.as_ref());
    let location = DatasetLocation::new(found.store.clone(), found.prefix, display, !is_url);
    let lake = match Lake::open(location).await {
        Ok(lake) if lake.state().version > 0 => lake,
        _ => return Ok(None),
    };
    let bad = |reason: String| SqlError::Source {
        source_path: source.to_string(),
        reason,
    };
    let partition_cols: Vec<(String, DataType)> = lake
        .state()
        .partition_columns
        .iter()
        .map(|k| (k.clone(), DataType::Utf8))
        .collect();
    let keys = lake
        .state()
        .partition_columns
        .iter()
        .filter_map(|k| PartitionKey::parse(k))
        .collect();
    // The table reads the store through a view of the log's snapshot.
    let live = lake
        .state()
        .files
        .keys()
        .map(|rel| lake.location().path(rel))
        .collect();
    let view = Arc::new(snapshot::SnapshotStore::new(
        found.store,
        lake.location().root.clone(),
        live,
    ));
    let root_url = if is_url {
        let url = url::Url::parse(source).map_err(|e| bad(e.to_string()))?;
        let base = url::Url::parse(&format!(
            "{}://{}",
            url.scheme(),
            url.host_str().unwrap_or_default()
        ))
        .map_err(|e| bad(e.to_string()))?;
        ctx.register_object_store(&base, view);
        format!("{}/", source.trim_end_matches('/'))
    } else {
        let base = url::Url::parse("file://").map_err(|e| bad(e.to_string()))?;
        ctx.register_object_store(&base, view);
        format!("{}/", lake.location().display)
    };
    let url = ListingTableUrl::parse(root_url).map_err(|e| bad(e.to_string()))?;
    Ok(Some(DatasetTable {
        listing: listing_table(ctx, url, partition_cols)?,
        keys,
        cache,
    }))
}

/// A table of trailql-schema Parquet files under `url`, with Hive partition columns. File
/// statistics are kept in the session's cache, so that each query does not read every footer
/// again to plan. Top-level strings are read as `Utf8View`: a view points into the page's
/// dictionary instead of copying every value out of it (`eventName` over a month is a million
/// copies otherwise). Values, and so answers, are the same as the raw table's `Utf8`.
fn listing_table(
    ctx: &SessionContext,
    url: ListingTableUrl,
    partition_cols: Vec<(String, DataType)>,
) -> Result<ListingTable, SqlError> {
    let options = ListingOptions::new(Arc::new(DatasetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(partition_cols);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(Arc::new(transform_schema_to_view(
            &trailql_schema::arrow_schema(),
        )));
    let statistics = ctx.runtime_env().cache_manager.get_file_statistic_cache();
    Ok(ListingTable::try_new(config)?.with_cache(statistics))
}

/// A listing table over `path` if it is a local folder of Parquet files without a trailql
/// log (written by another tool, or by trailql before it kept one).
pub(crate) async fn parquet_table(
    ctx: &SessionContext,
    path: &str,
    cache: Option<Arc<ColumnCache>>,
) -> Result<Option<DatasetTable>, SqlError> {
    let root = std::path::Path::new(path);
    let Some(first) = first_parquet(root) else {
        return Ok(None);
    };
    let partition_cols: Vec<(String, DataType)> = first
        .strip_prefix(root)
        .unwrap_or(&first)
        .parent()
        .map(|p| {
            p.iter()
                .filter_map(|seg| seg.to_str()?.split_once('=').map(|(k, _)| k.to_string()))
                .map(|k| (k, DataType::Utf8))
                .collect()
        })
        .unwrap_or_default();
    let bad = |reason: String| SqlError::Source {
        source_path: path.to_string(),
        reason,
    };
    let abs = std::fs::canonicalize(root).map_err(|e| bad(e.to_string()))?;
    let url =
        ListingTableUrl::parse(format!("{}/", abs.display())).map_err(|e| bad(e.to_string()))?;
    // Folders named by another tool may mean something else by `date=`: no implied filters.
    Ok(Some(DatasetTable {
        listing: listing_table(ctx, url, partition_cols)?,
        keys: Vec::new(),
        cache,
    }))
}

/// The first Parquet file under `root` in path order (hidden files and folders skipped).
fn first_parquet(root: &std::path::Path) -> Option<std::path::PathBuf> {
    if !root.is_dir() {
        return None;
    }
    let mut entries: Vec<_> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name()?.to_str()?;
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if path.is_dir() {
            if let Some(found) = first_parquet(&path) {
                return Some(found);
            }
        } else if name.ends_with(".parquet") {
            return Some(path);
        }
    }
    None
}

/// DataFusion's [`ParquetFormat`] without min/max statistics for nested columns. A Parquet
/// footer has none for a struct or list, yet DataFusion records one per file (a null) and
/// merges them across every file on every query, through arrow kernels: 38% of the time of a
/// query that reads nothing. Such a value prunes nothing, so it is dropped; row counts, null
/// counts and sizes are kept.
#[derive(Debug, Default)]
pub struct DatasetFormat {
    parquet: ParquetFormat,
}

/// Drop the min/max of every nested column of `schema` from `statistics`.
fn without_nested_min_max(mut statistics: Statistics, schema: &SchemaRef) -> Statistics {
    for (column, field) in statistics.column_statistics.iter_mut().zip(schema.fields()) {
        if field.data_type().is_nested() {
            column.min_value = Precision::Absent;
            column.max_value = Precision::Absent;
        }
    }
    statistics
}

#[async_trait]
impl FileFormat for DatasetFormat {
    fn get_ext(&self) -> String {
        self.parquet.get_ext()
    }

    fn get_ext_with_compression(&self, compression: &FileCompressionType) -> Result<String> {
        self.parquet.get_ext_with_compression(compression)
    }

    fn compression_type(&self) -> Option<FileCompressionType> {
        self.parquet.compression_type()
    }

    async fn infer_schema(
        &self,
        state: &dyn Session,
        store: &Arc<dyn ObjectStore>,
        objects: &[ObjectMeta],
    ) -> Result<SchemaRef> {
        self.parquet.infer_schema(state, store, objects).await
    }

    async fn infer_stats(
        &self,
        state: &dyn Session,
        store: &Arc<dyn ObjectStore>,
        table_schema: SchemaRef,
        object: &ObjectMeta,
    ) -> Result<Statistics> {
        let statistics = self
            .parquet
            .infer_stats(state, store, Arc::clone(&table_schema), object)
            .await?;
        Ok(without_nested_min_max(statistics, &table_schema))
    }

    async fn infer_ordering(
        &self,
        state: &dyn Session,
        store: &Arc<dyn ObjectStore>,
        table_schema: SchemaRef,
        object: &ObjectMeta,
    ) -> Result<Option<LexOrdering>> {
        self.parquet
            .infer_ordering(state, store, table_schema, object)
            .await
    }

    async fn infer_stats_and_ordering(
        &self,
        state: &dyn Session,
        store: &Arc<dyn ObjectStore>,
        table_schema: SchemaRef,
        object: &ObjectMeta,
    ) -> Result<FileMeta> {
        let mut meta = self
            .parquet
            .infer_stats_and_ordering(state, store, Arc::clone(&table_schema), object)
            .await?;
        meta.statistics = without_nested_min_max(meta.statistics, &table_schema);
        Ok(meta)
    }

    async fn create_physical_plan(
        &self,
        state: &dyn Session,
        conf: FileScanConfig,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.parquet.create_physical_plan(state, conf).await
    }

    async fn create_writer_physical_plan(
        &self,
        input: Arc<dyn ExecutionPlan>,
        state: &dyn Session,
        conf: FileSinkConfig,
        order_requirements: Option<LexRequirement>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.parquet
            .create_writer_physical_plan(input, state, conf, order_requirements)
            .await
    }

    fn file_source(&self, table_schema: TableSchema) -> Arc<dyn FileSource> {
        self.parquet.file_source(table_schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, RecordBatch, StringArray, StructArray};
    use arrow::datatypes::Field;
    use datafusion::parquet::arrow::ArrowWriter;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use object_store::path::Path;

    #[tokio::test]
    async fn nested_columns_keep_no_min_max_and_the_rest_keep_theirs() {
        let name: ArrayRef = Arc::new(StringArray::from(vec!["b", "a"]));
        let arn = Arc::new(StringArray::from(vec!["x", "y"]));
        let identity: ArrayRef = Arc::new(StructArray::from(vec![(
            Arc::new(Field::new("arn", DataType::Utf8, true)),
            arn as ArrayRef,
        )]));
        let batch =
            RecordBatch::try_from_iter([("eventName", name), ("userIdentity", identity)]).unwrap();
        let schema: SchemaRef = batch.schema();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema.clone(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("f.parquet");
        store.put(&path, bytes.into()).await.unwrap();
        let meta = store.head(&path).await.unwrap();
        let state = SessionContext::new().state();

        let plain = ParquetFormat::default()
            .infer_stats(&state, &store, schema.clone(), &meta)
            .await
            .unwrap();
        assert_ne!(
            plain.column_statistics[1].min_value,
            Precision::Absent,
            "DataFusion records a min for the struct"
        );
        let ours = DatasetFormat::default()
            .infer_stats(&state, &store, schema.clone(), &meta)
            .await
            .unwrap();
        let both = DatasetFormat::default()
            .infer_stats_and_ordering(&state, &store, schema.clone(), &meta)
            .await
            .unwrap()
            .statistics;
        for stats in [ours, both] {
            assert_eq!(stats.num_rows, Precision::Exact(2));
            let (name, identity) = (&stats.column_statistics[0], &stats.column_statistics[1]);
            assert_eq!(name.min_value, plain.column_statistics[0].min_value);
            assert_eq!(name.max_value, plain.column_statistics[0].max_value);
            assert_eq!(identity.min_value, Precision::Absent);
            assert_eq!(identity.max_value, Precision::Absent);
            assert_eq!(identity.null_count, plain.column_statistics[1].null_count);
        }
    }
}
