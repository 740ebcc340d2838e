//! SQL over CloudTrail with DataFusion: one table, `cloudtrail`, over a converted Parquet dataset
//! or straight over raw archives (read through the same ingest pipeline and schema), with JSON
//! payload access and functions investigators need.

mod functions;
mod json_filter;
mod raw;
mod snapshot;

use std::sync::Arc;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::parquet::transform_schema_to_view;
use datafusion::prelude::{SessionConfig, SessionContext};
use trailql_ingest::{IngestOptions, StoreOptions};
use trailql_lake::Lake;
use trailql_parquet::DatasetLocation;

pub use functions::FUNCTIONS;
pub use raw::RawTrailTable;

/// The name of the table.
pub const TABLE: &str = "cloudtrail";

/// Errors of the SQL layer.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The source could not be opened.
    #[error("{source_path}: {reason}")]
    Source { source_path: String, reason: String },
    /// The raw files could not be listed or read.
    #[error(transparent)]
    Ingest(#[from] trailql_ingest::IngestError),
    /// Planning or running a query failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

/// What the `cloudtrail` table reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A Parquet dataset written by `trailql convert`.
    Parquet,
    /// Raw trail files (`.json`, `.json.gz`), decoded on every query.
    Raw,
}

/// A session with DataFusion set up for CloudTrail: identifiers keep their case
/// (`eventName` works unquoted), JSON functions and trailql's functions registered.
pub fn new_context() -> Result<SessionContext, SqlError> {
    let mut config = SessionConfig::new().with_information_schema(true);
    let options = config.options_mut();
    options.sql_parser.enable_ident_normalization = false;
    // PostgreSQL's operator precedence: `col->>'key' IS NOT NULL` applies `->>` first.
    options.sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    options.execution.parquet.pushdown_filters = true;
    options.execution.parquet.reorder_filters = true;
    let mut ctx = SessionContext::new_with_config(config);
    datafusion_functions_json::register_all(&mut ctx)?;
    functions::register(&ctx);
    ctx.add_analyzer_rule(Arc::new(json_filter::JsonFilterRule));
    Ok(ctx)
}

/// A session whose `cloudtrail` table reads `source`: a dataset folder holding Parquet files, or
/// any mix of trail files and folders (local or object store) read raw.
pub async fn open(
    sources: &[String],
    store: &StoreOptions,
    ingest: IngestOptions,
) -> Result<(SessionContext, SourceKind), SqlError> {
    let ctx = new_context()?;
    let kind = register(&ctx, TABLE, sources, store, ingest).await?;
    Ok((ctx, kind))
}

/// Register a table over `sources` under `name`; whether it reads Parquet or raw files.
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    sources: &[String],
    store: &StoreOptions,
    ingest: IngestOptions,
) -> Result<SourceKind, SqlError> {
    if let [single] = sources {
        if let Some(table) = lake_table(ctx, single, store).await? {
            ctx.register_table(name, Arc::new(table))?;
            return Ok(SourceKind::Parquet);
        }
        if let Some(table) = parquet_table(ctx, single).await? {
            ctx.register_table(name, Arc::new(table))?;
            return Ok(SourceKind::Parquet);
        }
    }
    let files = trailql_ingest::discover(sources, store).await?;
    ctx.register_table(name, Arc::new(RawTrailTable::new(files, ingest)))?;
    Ok(SourceKind::Raw)
}

/// How many damaged files and records the session's raw table has skipped so far (0 over a
/// Parquet dataset): the queries answered without them.
pub async fn skipped(ctx: &SessionContext) -> usize {
    match ctx.table_provider(TABLE).await {
        Ok(table) => table
            .downcast_ref::<RawTrailTable>()
            .map_or(0, RawTrailTable::skipped),
        Err(_) => 0,
    }
}

/// A listing table over `source` if it is a dataset written by `trailql convert` (a local
/// folder or an object-store URL holding a trailql log).
async fn lake_table(
    ctx: &SessionContext,
    source: &str,
    store: &StoreOptions,
) -> Result<Option<ListingTable>, SqlError> {
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
    let partition_cols: Vec<(String, arrow::datatypes::DataType)> = lake
        .state()
        .partition_columns
        .iter()
        .map(|k| (k.clone(), arrow::datatypes::DataType::Utf8))
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
    Ok(Some(listing_table(ctx, url, partition_cols)?))
}

/// A table of trailql-schema Parquet files under `url`, with Hive partition columns. File
/// statistics are kept in the session's cache, so that each query does not read every footer
/// again to plan. Top-level strings are read as `Utf8View`: a view points into the page's
/// dictionary instead of copying every value out of it (`eventName` over a month is a million
/// copies otherwise). Values, and so answers, are the same as the raw table's `Utf8`.
fn listing_table(
    ctx: &SessionContext,
    url: ListingTableUrl,
    partition_cols: Vec<(String, arrow::datatypes::DataType)>,
) -> Result<ListingTable, SqlError> {
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
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
async fn parquet_table(ctx: &SessionContext, path: &str) -> Result<Option<ListingTable>, SqlError> {
    let root = std::path::Path::new(path);
    let Some(first) = first_parquet(root) else {
        return Ok(None);
    };
    let partition_cols: Vec<(String, arrow::datatypes::DataType)> = first
        .strip_prefix(root)
        .unwrap_or(&first)
        .parent()
        .map(|p| {
            p.iter()
                .filter_map(|seg| seg.to_str()?.split_once('=').map(|(k, _)| k.to_string()))
                .map(|k| (k, arrow::datatypes::DataType::Utf8))
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
    Ok(Some(listing_table(ctx, url, partition_cols)?))
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
