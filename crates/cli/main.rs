//! `trailql`: convert CloudTrail archives to Parquet, export them back, and query either with SQL.

mod convert;
mod export;
mod generate;
mod lake;
mod progress;
mod results;
mod sql;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code when the command did its work but skipped files or records it could not read.
pub const EXIT_SKIPPED: u8 = 1;
/// Exit code when the command failed.
pub const EXIT_FAILED: u8 = 2;

#[derive(Parser)]
#[command(
    name = "trailql",
    version,
    about = "Turn AWS CloudTrail archives into a fast, lossless, queryable data lake",
    long_about = "Turn AWS CloudTrail archives into a fast, lossless, queryable data lake.\n\n\
        trailql reads trail logs as AWS delivers them (AWSLogs/ trees of .json.gz files, JSON \
        arrays, one event per line), converts them to a sorted, partitioned Parquet dataset that \
        keeps every field of every record, and runs SQL over the dataset or over raw archives.",
    after_help = "Examples:\n  \
        trailql convert ./AWSLogs --out ./lake           convert a local archive\n  \
        trailql query ./lake \"SELECT eventName, count(*) FROM cloudtrail GROUP BY 1 ORDER BY 2 DESC\"\n  \
        trailql shell ./AWSLogs                          interactive SQL over raw logs\n  \
        trailql export ./lake > events.jsonl             the records back as JSON\n  \
        trailql convert s3://trail/AWSLogs/ --out s3://lake/cloudtrail/   hourly: converts only new files\n  \
        trailql compact s3://lake/cloudtrail/            merge the small files of hourly runs\n  \
        trailql ddl s3://lake/cloudtrail/ --engine athena   CREATE TABLE for Athena, Spark, Trino, DuckDB\n\n\
        Exit codes: 0 all input read; 1 done, but some files or records were skipped \
        (each one is named on stderr); 2 failed."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Convert(convert::Args),
    Compact(lake::CompactArgs),
    Ddl(lake::DdlArgs),
    Export(export::Args),
    Generate(generate::Args),
    Query(sql::QueryArgs),
    Shell(sql::ShellArgs),
}

/// The dataset at `target` (a local folder, created if missing, or an object-store URL).
pub fn output_location(
    target: &str,
    store: &trailql_ingest::StoreOptions,
) -> anyhow::Result<trailql_parquet::DatasetLocation> {
    use anyhow::Context;
    let is_url = target.contains("://");
    if !is_url {
        std::fs::create_dir_all(target).with_context(|| format!("cannot create {target}"))?;
    }
    let found = trailql_ingest::open_store(target, store)?;
    let display = if is_url {
        target.to_string()
    } else {
        found.display_root.display(found.prefix.as_ref())
    };
    Ok(trailql_parquet::DatasetLocation::new(
        found.store,
        found.prefix,
        display,
        !is_url,
    ))
}

/// An error and its causes on one line, each cause once: object-store errors repeat their
/// source's text in their own, which would print a response body several times.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn error_text(e: &anyhow::Error) -> String {
    let mut kept: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !kept.iter().any(|k| k.contains(&text)) {
            kept.push(text);
        }
    }
    kept.join(": ")
}

/// jemalloc, returning freed pages to the system after half a second. glibc's malloc fragments over a
/// long conversion (peak memory grew 15-25% for a 4x corpus, with a fixed mmap threshold, and
/// more without); jemalloc's stays within 3-8% and converts as fast. With a quarter of a second
/// (before), the kernel took a fifth of a conversion's CPU time, mostly page faults and TLB
/// flushes, as rows freed by the encoders were handed back and faulted in again by the decoders. Measured on 1M and 4M
/// events with the 192 MiB row budget of the time: 1 s peaked at 448-494 MiB; 5 s at 487 and
/// 504 MiB; never returning memory at 572 and 885 MiB, growing with the corpus. The row budget
/// went down to 160 MiB to pay for it (410-416 and 438-444 MiB). Later runs of 1 s drew 4M-event
/// peaks of 432-456 MiB against 380-432 for 1M events, up to 15% apart; half a second, four runs
/// each (2026-12-01): 389-399 and 412-419 MiB, 4-8% apart, with wall times that overlap
/// (3.8-4.2 s and 15.3-16.0 s, against 4.0-4.3 and 14.9-15.5 s) for a fifth more system time.
///
/// jemalloc is the process's `malloc` too where it can be (Linux), so that the C libraries'
/// allocations, zstd's contexts above all (one per column of every file written), come from
/// its caches instead of glibc's thread arenas, which handed their memory back and faulted it
/// in again: runs of a 1M-event conversion took 277-344 thousand minor faults against 326-372
/// thousand when only Rust's allocations went to jemalloc (11 and 10 runs, 2026-12-02; wall
/// times alike).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc at start-up (`MALLOC_CONF` in the environment overrides it; on Apple's
/// systems, Android and DragonFly, where jemalloc keeps its prefix, `_RJEM_MALLOC_CONF`).
#[cfg(not(target_env = "msvc"))]
#[cfg_attr(
    any(
        target_vendor = "apple",
        target_os = "android",
        target_os = "dragonfly"
    ),
    unsafe(export_name = "_rjem_malloc_conf")
)]
#[cfg_attr(
    not(any(
        target_vendor = "apple",
        target_os = "android",
        target_os = "dragonfly"
    )),
    unsafe(export_name = "malloc_conf")
)]
static MALLOC_CONF: &[u8; 59] = b"background_thread:true,dirty_decay_ms:500,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Compact(args) => lake::compact_command(args),
        Command::Ddl(args) => lake::ddl_command(args),
        Command::Export(args) => export::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Query(args) => sql::query(args),
        Command::Shell(args) => sql::shell(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader of the output went away (`trailql ... | head`): done, as ripgrep does.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trailql: error: {}", error_text(&e));
            ExitCode::from(EXIT_FAILED)
        }
    }
}
