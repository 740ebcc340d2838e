//! `trailql`: convert CloudTrail archives to Parquet, export them back, and query either with SQL.

mod convert;
mod export;
mod generate;
mod lake;
mod progress;
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

/// glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB); from then
/// on large buffers (inflated files, Arrow columns) come from the heap, which fragments over a
/// long decode of raw archives: peak memory crept up with the corpus (+100 MiB at 4x). A fixed
/// threshold gives such buffers back to the system when freed. Only for commands that decode
/// raw archives: over Parquet the page faults of fresh mappings cost queries 15-40%.
pub(crate) fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter, under glibc's arena lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Convert(_) | Command::Compact(_)) {
        fix_mmap_threshold();
    }
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
        Err(e) => {
            eprintln!("trailql: error: {}", error_text(&e));
            ExitCode::from(EXIT_FAILED)
        }
    }
}
