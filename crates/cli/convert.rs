//! `trailql convert`: CloudTrail archives in, a Parquet dataset out.

use std::collections::HashMap;

use anyhow::Context;
use trailql_ingest::{
    FileKind, FileReport, IngestError, IngestOptions, InputFile, Message, StoreOptions,
};
use trailql_lake::{Commit, DataFile, InputRecord, InputStatus, Lake, Operation, TableFormat};
use trailql_parquet::{DatasetWriter, PartitionKey, WriterOptions, default_run_id};

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
///
/// Run it again (hourly, say) and it converts only input files that are new or changed since
/// the last run, late deliveries into old days included. Each commit records the inputs it
/// converted inside the dataset (_trailql/log/, or the Delta log). Stop it at any point and
/// run it again: every event ends up in the dataset exactly once.
#[derive(clap::Args)]
pub struct Args {
    /// Trail files, folders or URLs to read.
    #[arg(required = true, value_name = "SRC")]
    sources: Vec<String>,

    /// Dataset to write: a folder or an object-store URL (created if missing). Running again
    /// converts only inputs that are new or changed since the last run.
    #[arg(short, long, value_name = "DIR|URL")]
    out: String,

    /// Table format: plain Parquet files (trailql's log in _trailql/), or a Delta Lake table
    /// (the same files, committed to _delta_log/ so each run appears at once).
    #[arg(long, value_enum, default_value_t = Format::Parquet)]
    table_format: Format,

    /// Partition folders, outermost first: any of account, region, date (by eventTime, UTC),
    /// comma separated; "none" for a flat folder.
    #[arg(long, default_value = "date", value_name = "KEYS")]
    partition_by: String,

    /// Decode threads, and files encoded at once [default: number of cores].
    #[arg(short = 'j', long)]
    threads: Option<usize>,

    /// Memory for rows waiting to be sorted and written, and being written, in MiB. Sets peak
    /// memory and the size of output files.
    #[arg(long, default_value_t = 160, value_name = "MIB")]
    buffer_mb: usize,

    /// Rows per record batch.
    #[arg(long, default_value_t = 8192)]
    batch_size: usize,

    /// Largest inflated input file (or archive member) accepted, in MiB (guards against gzip
    /// bombs).
    #[arg(long, default_value_t = 2048, value_name = "MIB")]
    max_file_size: usize,

    /// Commit after about this much input (compressed MiB): a stopped run keeps what it
    /// committed, and the next run starts from there.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    commit_every_mb: usize,

    /// zstd compression level (1-22). Level 1 encodes with 14% fewer instructions than 3, for
    /// files 1% larger; `trailql compact` rewrites at 3.
    #[arg(long, default_value_t = 1)]
    zstd_level: i32,

    /// AWS region for s3:// sources and outputs.
    #[arg(long)]
    region: Option<String>,

    /// Endpoint URL of an S3-compatible store.
    #[arg(long)]
    endpoint: Option<String>,

    /// No progress bar and no summary.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Parquet,
    Delta,
}

impl From<Format> for TableFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Parquet => TableFormat::Parquet,
            Format::Delta => TableFormat::Delta,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let partition_by = parse_partitions(&args.partition_by)?;
    let store = StoreOptions {
        region: args.region.clone(),
        endpoint: args.endpoint.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("trailql-io")
        .enable_all()
        .build()?;
    let found = runtime.block_on(trailql_ingest::discover(&args.sources, &store))?;
    let location = crate::output_location(&args.out, &store)?;
    let mut lake = runtime
        .block_on(Lake::open(location))
        .with_context(|| format!("cannot open the dataset {}", args.out))?;
    let run_id = default_run_id();
    let partition_names: Vec<&str> = partition_by.iter().map(|k| k.name()).collect();
    let recovered =
        runtime.block_on(lake.recover(&run_id, args.table_format.into(), &partition_names))?;
    if !recovered.deleted.is_empty() && !args.quiet {
        eprintln!(
            "trailql: removed {} data files of a run that did not finish",
            recovered.deleted.len()
        );
    }

    // Which inputs need converting: new ones, and ones changed since they were converted.
    let (events, others): (Vec<_>, Vec<_>) =
        found.into_iter().partition(|f| f.kind == FileKind::Events);
    let mut todo = Vec::new();
    let mut up_to_date = 0usize;
    for file in events {
        let e_tag = input_tag(&file);
        match lake
            .state()
            .status(&file.display, file.size, e_tag.as_deref())
        {
            InputStatus::Converted => up_to_date += 1,
            InputStatus::New => todo.push(file),
            InputStatus::Changed => {
                eprintln!(
                    "trailql: warning: {} changed since it was converted; converting it again \
                     (rows of its earlier version stay)",
                    file.display
                );
                todo.push(file);
            }
        }
    }
    // Day by day (the delivery date of `AWSLogs/.../YYYY/MM/DD/`), every account and region
    // together: the writer then has one or two date partitions open at a time and writes each
    // as few large files, instead of a sliver of every day of the month per buffer.
    todo.sort_by(|a, b| (a.path_date, &a.display).cmp(&(b.path_date, &b.display)));
    let mut tally = Tally::new(todo.len(), args.quiet);
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
    let writer_options = WriterOptions {
        partition_by,
        buffer_bytes: args.buffer_mb << 20,
        zstd_level: args.zstd_level,
        run_id: run_id.clone(),
        threads: options.threads,
        ..WriterOptions::default()
    };

    // One commit per part of about `commit_every_mb` of input: a stopped run keeps every
    // part it committed.
    let mut written_files = 0usize;
    let mut written_bytes = 0u64;
    for (part, inputs) in split_by_size(todo, args.commit_every_mb << 20)
        .into_iter()
        .enumerate()
    {
        let part_id = format!("{run_id}-{part:03}");
        let records: HashMap<String, InputRecord> = inputs
            .iter()
            .map(|f| {
                let record = InputRecord {
                    name: f.display.clone(),
                    size: f.size,
                    e_tag: input_tag(f),
                };
                (f.display.clone(), record)
            })
            .collect();
        let mut writer = DatasetWriter::new(
            lake.location().clone(),
            runtime.handle().clone(),
            WriterOptions {
                run_id: part_id.clone(),
                ..writer_options.clone()
            },
        );
        let mut commit = Commit::new(Operation::Convert, &part_id);
        let mut rx = trailql_ingest::start(inputs, options.clone());
        while let Some(message) = rx.blocking_recv() {
            match message {
                Message::Batch(batch) => writer.write(batch)?,
                Message::File(report) => {
                    if is_settled(&report) {
                        commit.inputs.extend(records.get(&report.file).cloned());
                    }
                    tally.file_done(report);
                }
            }
        }
        let written = writer.finish()?;
        written_files += written.len();
        written_bytes += written.iter().map(|f| f.bytes).sum::<u64>();
        commit.added = written.iter().map(DataFile::from).collect();
        if !commit.inputs.is_empty() || !commit.added.is_empty() {
            runtime.block_on(lake.commit(commit))?;
        }
    }
    tally.finish();
    if !args.quiet {
        eprintln!("{}", tally.summary(Some((written_files, written_bytes))));
        if up_to_date > 0 {
            eprintln!(
                "{} converted by earlier runs and left as they are",
                match up_to_date {
                    1 => "1 file was".to_string(),
                    n => format!("{n} files were"),
                }
            );
        }
        eprintln!("dataset: {}", args.out);
    }
    Ok(if tally.anything_lost() {
        EXIT_SKIPPED
    } else {
        0
    })
}

/// The version tag to remember for an input. Local files have none: their tag changes with
/// every copy or `touch`, which would convert the same events twice.
fn input_tag(file: &InputFile) -> Option<String> {
    file.display
        .contains("://")
        .then(|| file.e_tag.clone())
        .flatten()
}

/// Whether a file is done with, whatever its errors: true unless it could not be read at all
/// or was over the size limit, which a later run (or a larger limit) may get past.
fn is_settled(report: &FileReport) -> bool {
    !report
        .errors
        .iter()
        .any(|e| matches!(e, IngestError::Read { .. } | IngestError::TooLarge { .. }))
}

/// Consecutive runs of inputs of about `bytes` each (at least one input per run).
fn split_by_size(inputs: Vec<InputFile>, bytes: usize) -> Vec<Vec<InputFile>> {
    let mut parts: Vec<Vec<InputFile>> = Vec::new();
    let mut size = 0usize;
    for file in inputs {
        if parts.is_empty() || size >= bytes {
            parts.push(Vec::new());
            size = 0;
        }
        size += file.size as usize;
        parts.last_mut().expect("a part").push(file);
    }
    parts
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
