//! `trailql compact` and `trailql ddl`: keeping a converted dataset in shape, and letting other
//! engines read it.

use anyhow::Context;
use trailql_ingest::StoreOptions;
use trailql_lake::compact::{CompactOptions, compact};
use trailql_lake::ddl::{Engine, Table, ddl};
use trailql_lake::{Lake, TableFormat};
use trailql_parquet::default_run_id;

/// Where a dataset is, and how to reach its store.
#[derive(clap::Args)]
pub struct DatasetArgs {
    /// The dataset: a folder or object-store URL written by `trailql convert`.
    #[arg(value_name = "DATASET")]
    dataset: String,

    /// AWS region, for s3:// datasets.
    #[arg(long)]
    region: Option<String>,

    /// Endpoint URL of an S3-compatible store.
    #[arg(long)]
    endpoint: Option<String>,
}

impl DatasetArgs {
    fn open(&self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Lake> {
        let store = StoreOptions {
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
        };
        anyhow::ensure!(
            self.dataset.contains("://") || std::path::Path::new(&self.dataset).is_dir(),
            "{}: no such folder",
            self.dataset
        );
        let location = crate::output_location(&self.dataset, &store)?;
        let lake = runtime
            .block_on(Lake::open(location))
            .with_context(|| format!("cannot open the dataset {}", self.dataset))?;
        anyhow::ensure!(
            lake.format().is_some(),
            "{}: not a dataset written by trailql convert (no _trailql/ or _delta_log/)",
            self.dataset
        );
        Ok(lake)
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Rewrite each partition's small files into few large, sorted ones.
///
/// Hourly runs leave one small file per partition per run. Compaction reads a partition's
/// small files, writes their rows sorted by eventTime into new files (each holds at most
/// --buffer-mb of rows), and commits the swap in one step: trailql and Delta readers see the old files
/// or the new ones, never both. For plain Parquet, the old files are deleted right after the
/// commit (an engine that lists folders may see both for that moment). Safe to stop at any
/// point; do not run it while a convert writes to the same dataset.
#[derive(clap::Args)]
pub struct CompactArgs {
    #[command(flatten)]
    dataset: DatasetArgs,

    /// Only this partition folder (e.g. date=2024-01-02); repeat for more. Default: all.
    #[arg(long, value_name = "DIR")]
    partition: Vec<String>,

    /// Files smaller than this many MiB count as small.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    small_mb: u64,

    /// Rewrite a partition only if it has at least this many small files.
    #[arg(long, default_value_t = 2)]
    min_files: usize,

    /// Memory for rows being sorted and written, in MiB (sets the size of new files).
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    buffer_mb: usize,

    /// No summary.
    #[arg(short, long)]
    quiet: bool,
}

pub fn compact_command(args: CompactArgs) -> anyhow::Result<u8> {
    let runtime = runtime()?;
    let mut lake = args.dataset.open(&runtime)?;
    let run_id = default_run_id();
    let format = lake.format().expect("checked on open");
    let partitions = lake.state().partition_columns.clone();
    let names: Vec<&str> = partitions.iter().map(String::as_str).collect();
    let recovered = runtime.block_on(lake.recover(&run_id, format, &names))?;
    let options = CompactOptions {
        small_bytes: args.small_mb << 20,
        min_files: args.min_files,
        partitions: args.partition.clone(),
        buffer_bytes: args.buffer_mb << 20,
        zstd_level: 3,
        run_id,
    };
    let done = compact(&mut lake, runtime.handle(), &options)?;
    if !args.quiet {
        if !recovered.deleted.is_empty() {
            eprintln!(
                "removed {} data files no commit names",
                recovered.deleted.len()
            );
        }
        for c in &done {
            eprintln!(
                "{}: {} files -> {} ({} rows)",
                if c.partition.is_empty() {
                    "."
                } else {
                    &c.partition
                },
                c.files_before,
                c.files_after,
                c.rows
            );
        }
        if done.is_empty() {
            eprintln!("nothing to compact");
        }
    }
    Ok(0)
}

/// Print the DDL that makes another engine read the dataset as written.
///
/// Athena/Glue: a Parquet table with partition projection (no crawler, no MSCK REPAIR), or a
/// Delta table. Spark: CREATE TABLE ... USING PARQUET|DELTA. Trino: a Hive-connector table
/// and its partition sync, or a Delta-connector registration. DuckDB: a view.
#[derive(clap::Args)]
pub struct DdlArgs {
    #[command(flatten)]
    dataset: DatasetArgs,

    /// The engine to write for.
    #[arg(long, value_enum, default_value_t = EngineArg::Athena)]
    engine: EngineArg,

    /// Table name (may be qualified, e.g. security.cloudtrail).
    #[arg(long, default_value = "cloudtrail")]
    table: String,

    /// The dataset's location as the engine reaches it [default: DATASET as given].
    #[arg(long, value_name = "URL")]
    location: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EngineArg {
    Athena,
    Spark,
    Trino,
    Duckdb,
}

pub fn ddl_command(args: DdlArgs) -> anyhow::Result<u8> {
    let runtime = runtime()?;
    let lake = args.dataset.open(&runtime)?;
    let location = match &args.location {
        Some(l) => l.clone(),
        None => lake.location().display.clone(),
    };
    let engine = match args.engine {
        EngineArg::Athena => Engine::Athena,
        EngineArg::Spark => Engine::Spark,
        EngineArg::Trino => Engine::Trino,
        EngineArg::Duckdb => Engine::DuckDb,
    };
    let table = Table {
        name: &args.table,
        location: &location,
        format: lake.format().unwrap_or(TableFormat::Parquet),
        state: lake.state(),
    };
    print!("{}", ddl(engine, &table));
    Ok(0)
}
