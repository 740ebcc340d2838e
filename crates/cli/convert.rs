//! `trailql convert`: CloudTrail archives in, a Parquet dataset out.

use std::path::PathBuf;

use anyhow::Context;
use trailql_ingest::{FileKind, IngestOptions, Message, StoreOptions};
use trailql_parquet::{DatasetWriter, PartitionKey, WriterOptions};

use crate::EXIT_SKIPPED;
use crate::progress::Tally;

/// Convert CloudTrail logs to a Parquet dataset.
///
/// SRC is any mix of files, folders (searched recursively) and object-store URLs (s3://, gs://,
/// az://). Files may be .json or .json.gz (multi-member gzip too) holding {"Records":[...]}, a
/// JSON array of events, or one event per line. In AWSLogs/ trees, digest files and other
/// services' logs are recognised and skipped.
///
/// The dataset keeps every field of every record: known fields typed, free-form payloads as
/// JSON text, anything else in the `_unmapped` column. Files are sorted by eventTime, zstd
/// compressed, and appear under their final names only when complete.
#[derive(clap::Args)]
pub struct Args {
    /// Trail files, folders or URLs to read.
    #[arg(required = true, value_name = "SRC")]
    sources: Vec<String>,

    /// Dataset folder to write (created if missing; new files are added beside existing ones).
    #[arg(short, long, value_name = "DIR")]
    out: PathBuf,

    /// Partition folders, outermost first: any of account, region, date (by eventTime, UTC),
    /// comma separated; "none" for a flat folder.
    #[arg(long, default_value = "date", value_name = "KEYS")]
    partition_by: String,

    /// Worker threads [default: number of cores].
    #[arg(short = 'j', long)]
    threads: Option<usize>,

    /// Memory for rows waiting to be sorted and written, in MiB. Sets peak memory and the size
    /// of output files (about a sixth of it, compressed).
    #[arg(long, default_value_t = 192, value_name = "MIB")]
    buffer_mb: usize,

    /// Rows per record batch.
    #[arg(long, default_value_t = 8192)]
    batch_size: usize,

    /// Largest inflated input file accepted, in MiB (guards against gzip bombs).
    #[arg(long, default_value_t = 2048, value_name = "MIB")]
    max_file_size: usize,

    /// zstd compression level (1-22).
    #[arg(long, default_value_t = 3)]
    zstd_level: i32,

    /// AWS region for s3:// sources.
    #[arg(long)]
    region: Option<String>,

    /// Endpoint URL of an S3-compatible store.
    #[arg(long)]
    endpoint: Option<String>,

    /// No progress bar and no summary.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let partition_by = parse_partitions(&args.partition_by)?;
    let store = StoreOptions {
        region: args.region.clone(),
        endpoint: args.endpoint.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let found = runtime.block_on(trailql_ingest::discover(&args.sources, &store))?;
    let (events, others): (Vec<_>, Vec<_>) =
        found.into_iter().partition(|f| f.kind == FileKind::Events);
    let mut tally = Tally::new(events.len(), args.quiet);
    for other in &others {
        tally.skip(match other.kind {
            FileKind::Digest => "CloudTrail digest",
            FileKind::OtherService => "other service's logs",
            _ => "not JSON",
        });
    }
    let mut options = IngestOptions::default();
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    options.batch_size = args.batch_size.max(1);
    options.max_file_size = args.max_file_size << 20;
    let mut writer = DatasetWriter::new(
        &args.out,
        WriterOptions {
            partition_by,
            buffer_bytes: args.buffer_mb << 20,
            zstd_level: args.zstd_level,
            ..WriterOptions::default()
        },
    )
    .with_context(|| format!("cannot write to {}", args.out.display()))?;

    let mut rx = trailql_ingest::start(events, options);
    while let Some(message) = rx.blocking_recv() {
        match message {
            Message::Batch(batch) => writer.write(batch)?,
            Message::File(report) => tally.file_done(report),
        }
    }
    let written = writer.finish()?;
    tally.finish();
    if !args.quiet {
        let bytes = written.iter().map(|f| f.bytes).sum();
        eprintln!("{}", tally.summary(Some((written.len(), bytes))));
        eprintln!("dataset: {}", args.out.display());
    }
    Ok(if tally.anything_lost() {
        EXIT_SKIPPED
    } else {
        0
    })
}

fn parse_partitions(text: &str) -> anyhow::Result<Vec<PartitionKey>> {
    if text.trim() == "none" {
        return Ok(Vec::new());
    }
    let keys = text
        .split(',')
        .map(|k| {
            PartitionKey::parse(k).with_context(|| {
                format!("unknown partition key `{k}`: use account, region, date or none")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut unique = keys.clone();
    unique.dedup();
    anyhow::ensure!(
        unique.len() == keys.len(),
        "a partition key is named twice in `{text}`"
    );
    Ok(keys)
}
