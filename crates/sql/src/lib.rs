//! SQL over CloudTrail with DataFusion: one table, `cloudtrail`, over a converted Parquet dataset
//! or straight over raw archives (read through the same ingest pipeline and schema), with JSON
//! payload access and functions investigators need.

mod cache;
mod dataset;
mod dialect;
mod functions;
mod group_count;
mod json_cast;
mod json_filter;
mod map_aggregates;
mod memory;
mod pruning;
mod raw;
mod snapshot;
mod text_filter;
mod texts;

use std::num::NonZeroUsize;
use std::sync::Arc;

use arrow::datatypes::Fields;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::TrackConsumersPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use trailql_ingest::{IngestOptions, StoreOptions};

pub use functions::FUNCTIONS;
pub use raw::RawTrailTable;

/// The name of the table.
pub const TABLE: &str = "cloudtrail";

/// Memory a query's sorts, aggregations, merges and joins may hold at once, by default: sorts
/// and aggregations spill to temporary files to stay within it ([`memory::QueryMemoryPool`]).
pub const DEFAULT_QUERY_MEMORY: usize = 2 << 30;

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
/// (`eventName` works unquoted), JSON functions and trailql's functions registered, counts by
/// text columns done by [`group_count`]; queries hold up to [`DEFAULT_QUERY_MEMORY`].
pub fn new_context() -> Result<SessionContext, SqlError> {
    new_context_with_memory(DEFAULT_QUERY_MEMORY)
}

/// [`new_context`] whose queries hold up to `memory_bytes` in sorts, aggregations, merges and
/// joins (see [`memory::QueryMemoryPool`]), sorts and aggregations spilling the rest to the
/// system's temporary folder: what a query holds depends on this, not on the data it reads.
pub fn new_context_with_memory(memory_bytes: usize) -> Result<SessionContext, SqlError> {
    let mut config = SessionConfig::new().with_information_schema(true);
    let options = config.options_mut();
    options.sql_parser.enable_ident_normalization = false;
    // PostgreSQL's operator precedence: `col->>'key' IS NOT NULL` applies `->>` first. [`sql`]
    // parses with its own dialect, PostgreSQL's and more ([`dialect::parse_statement`]); this
    // is for DataFusion's own entry points (`SessionContext::sql`).
    options.sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    options.execution.parquet.pushdown_filters = true;
    options.execution.parquet.reorder_filters = true;
    let pool = TrackConsumersPool::new(
        memory::QueryMemoryPool::new(memory_bytes),
        NonZeroUsize::new(3).expect("3 is not 0"),
    );
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .build_arc()?;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        // Comparisons by text id first: a count takes in the filter below it as it is then.
        .with_physical_optimizer_rule(Arc::new(text_filter::TextFilterRule))
        .with_physical_optimizer_rule(Arc::new(group_count::GroupCountRule))
        .build();
    let mut ctx = SessionContext::new_with_state(state);
    datafusion_functions_json::register_all(&mut ctx)?;
    functions::register(&ctx);
    map_aggregates::register(&ctx);
    json_cast::register(&ctx);
    ctx.add_analyzer_rule(Arc::new(json_filter::JsonFilterRule));
    Ok(ctx)
}

/// Plan `text`, one SQL statement, as a query of `ctx`: DataFusion's SQL, with trailql's
/// additions ([`dialect`]). Use this instead of `ctx.sql`.
pub async fn sql(
    ctx: &SessionContext,
    text: &str,
) -> datafusion::error::Result<datafusion::dataframe::DataFrame> {
    let state = ctx.state();
    let mut statement = dialect::parse_statement(&state, text)?;
    let columns = match ctx.table_provider(TABLE).await {
        Ok(table) => table.schema().fields().clone(),
        Err(_) => Fields::empty(),
    };
    let tables: Vec<String> = ctx
        .catalog_names()
        .into_iter()
        .filter_map(|c| ctx.catalog(&c))
        .flat_map(|catalog| {
            let schemas = catalog.schema_names();
            schemas
                .into_iter()
                .filter_map(|s| catalog.schema(&s))
                .flat_map(|schema| schema.table_names())
                .collect::<Vec<_>>()
        })
        .collect();
    dialect::rewrite(&mut statement, &columns, &tables);
    let plan = state.statement_to_plan(statement).await?;
    ctx.execute_logical_plan(plan).await
}

/// The memory a session may use besides what reading takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionMemory {
    /// A dataset's decoded columns kept between statements (0: none).
    pub cache_bytes: usize,
    /// What a query's sorts, aggregations, merges and joins hold at once.
    pub query_bytes: usize,
}

impl Default for SessionMemory {
    fn default() -> Self {
        Self {
            cache_bytes: 0,
            query_bytes: DEFAULT_QUERY_MEMORY,
        }
    }
}

/// A session whose `cloudtrail` table reads `source`: a dataset folder holding Parquet files, or
/// any mix of trail files and folders (local or object store) read raw, within `memory`.
pub async fn open(
    sources: &[String],
    store: &StoreOptions,
    ingest: IngestOptions,
    memory: SessionMemory,
) -> Result<(SessionContext, SourceKind), SqlError> {
    let ctx = new_context_with_memory(memory.query_bytes)?;
    let kind = register(&ctx, TABLE, sources, store, ingest, memory.cache_bytes).await?;
    Ok((ctx, kind))
}

/// Register a table over `sources` under `name`; whether it reads Parquet or raw files. A
/// Parquet table keeps up to `cache_bytes` of decoded columns between statements (0: none).
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    sources: &[String],
    store: &StoreOptions,
    ingest: IngestOptions,
    cache_bytes: usize,
) -> Result<SourceKind, SqlError> {
    if let [single] = sources {
        let cache = (cache_bytes > 0).then(|| Arc::new(cache::ColumnCache::new(cache_bytes)));
        if let Some(table) = dataset::lake_table(ctx, single, store, cache.clone()).await? {
            ctx.register_table(name, Arc::new(table))?;
            return Ok(SourceKind::Parquet);
        }
        if let Some(table) = dataset::parquet_table(ctx, single, cache).await? {
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
