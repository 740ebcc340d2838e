//! `trailql export`: the records of a dataset back as JSON, one per line.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Print the records of a trailql Parquet dataset as JSON, one record per line.
///
/// Each line equals its input record as a JSON value: same keys, strings and numbers (payloads
/// keep their exact source text), fields trailql does not know included.
#[derive(clap::Args)]
pub struct Args {
    /// The dataset folder written by `trailql convert` (or one Parquet file).
    dataset: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let files = parquet_files(&args.dataset)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut buf = Vec::with_capacity(1 << 20);
    for file in files {
        let f = std::fs::File::open(&file).with_context(|| format!("{}", file.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.with_batch_size(8192).build())
            .with_context(|| format!("{}: not a readable Parquet file", file.display()))?;
        for batch in reader {
            let batch = batch.with_context(|| format!("{}", file.display()))?;
            buf.clear();
            trailql_schema::render::write_ndjson(&batch, &mut buf)
                .with_context(|| format!("{}", file.display()))?;
            if let Err(e) = out.write_all(&buf) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(0);
                }
                return Err(e.into());
            }
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// The Parquet files of a dataset folder, in path order; hidden and temporary files excluded.
pub fn parquet_files(root: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    if root.is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    anyhow::ensure!(root.is_dir(), "{}: no such dataset folder", root.display());
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".parquet") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}
