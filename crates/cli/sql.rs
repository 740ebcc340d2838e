//! `trailql query` and `trailql shell`: SQL over a dataset or raw archives.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use trailql_ingest::{IngestOptions, StoreOptions};
use trailql_sql::{FUNCTIONS, SourceKind, TABLE};

/// Where the `cloudtrail` table reads from, shared by `query` and `shell`.
#[derive(clap::Args)]
pub struct SourceArgs {
    /// A dataset folder written by `trailql convert`, or raw trail files and folders (local or
    /// s3://, gs://, az://), read as the table `cloudtrail`.
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<String>,

    /// Worker threads for raw archives [default: number of cores].
    #[arg(short = 'j', long)]
    threads: Option<usize>,

    /// AWS region for s3:// sources.
    #[arg(long)]
    region: Option<String>,

    /// Endpoint URL of an S3-compatible store.
    #[arg(long)]
    endpoint: Option<String>,
}

/// Run SQL over trail data and print the result.
///
/// The table is `cloudtrail`; identifiers keep their case, so `eventName` and
/// `userIdentity.arn` work unquoted. JSON payloads: `requestParameters->>'bucketName'`,
/// `json_get_str(responseElements, 'role', 'arn')`. trailql's functions: principal(),
/// arn_account(), arn_service(), ip_in_cidr() and more (`trailql shell`, then `\functions`).
///
/// Example: trailql query ./lake "SELECT eventName, count(*) FROM cloudtrail GROUP BY 1"
#[derive(clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    source: SourceArgs,

    /// The SQL to run (omit with --file).
    #[arg(last = true, value_name = "SQL")]
    sql_after: Vec<String>,

    /// Run the statements of a SQL script, in order.
    #[arg(short, long, value_name = "FILE")]
    file: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,

    /// Print each statement's time (planning and execution, not printing) to stderr.
    #[arg(long)]
    timing: bool,

    /// Write the result to a file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

/// Interactive SQL over trail data, with line editing, history and multi-line statements.
///
/// End statements with `;`. `\d` describes the table, `\dt` lists tables, `\functions` lists
/// trailql's functions, `\timing` toggles timings, `\q` quits.
#[derive(clap::Args)]
pub struct ShellArgs {
    #[command(flatten)]
    source: SourceArgs,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn open(source: &SourceArgs) -> anyhow::Result<(SessionContext, SourceKind)> {
    let mut ingest = IngestOptions::default();
    if let Some(t) = source.threads {
        ingest.threads = t.max(1);
    }
    let store = StoreOptions {
        region: source.region.clone(),
        endpoint: source.endpoint.clone(),
    };
    Ok(trailql_sql::open(&source.sources, &store, ingest).await?)
}

pub fn query(mut args: QueryArgs) -> anyhow::Result<u8> {
    // `trailql query SOURCE "SQL"`: the last positional is the SQL unless --file is given.
    let script = match &args.file {
        Some(file) => {
            std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?
        }
        None if !args.sql_after.is_empty() => args.sql_after.join(" "),
        None if args.source.sources.len() > 1 => args.source.sources.pop().expect("two or more"),
        None => {
            anyhow::bail!("no SQL given: trailql query SOURCE \"SELECT ...\" (or --file q.sql)")
        }
    };
    let statements = split_statements(&script);
    anyhow::ensure!(!statements.is_empty(), "the script holds no SQL statement");
    runtime()?.block_on(async {
        let (ctx, _) = open(&args.source).await?;
        let mut results = Vec::new();
        for (i, sql) in statements.iter().enumerate() {
            let started = std::time::Instant::now();
            let df = ctx.sql(sql).await.map_err(clean)?;
            results = df.collect().await.map_err(clean)?;
            if args.timing {
                let rows: usize = results.iter().map(RecordBatch::num_rows).sum();
                eprintln!(
                    "timing: statement {}: {:.6} s, {rows} rows",
                    i + 1,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        // Only the last statement's result is printed (earlier ones set things up).
        write_result(&results, args.format, args.output.as_deref())
    })?;
    Ok(0)
}

/// DataFusion errors without their wrapping: one readable line.
fn clean(e: datafusion::error::DataFusionError) -> anyhow::Error {
    let root = e.find_root().to_string();
    anyhow::anyhow!("{}", root.lines().next().unwrap_or_default())
}

fn write_result(
    batches: &[RecordBatch],
    format: Format,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let Format::Parquet = format {
        let path = output.context("--format parquet needs -o FILE")?;
        let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => std::sync::Arc::new(arrow::datatypes::Schema::empty()),
        };
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
        for b in batches {
            w.write(b)?;
        }
        w.close()?;
        return Ok(());
    }
    let mut sink: Box<dyn Write> = match output {
        Some(path) => {
            Box::new(std::fs::File::create(path).with_context(|| format!("{}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    match format {
        Format::Table => writeln!(
            sink,
            "{}",
            arrow::util::pretty::pretty_format_batches(batches)?
        )?,
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut sink);
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut sink);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        Format::Parquet => unreachable!("written above"),
    }
    sink.flush()?;
    Ok(())
}

/// Statements of a script, split at `;` outside quotes and comments.
pub fn split_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '-') if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        current.push('\n');
                        break;
                    }
                }
                continue;
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                if !current.trim().is_empty() {
                    out.push(current.trim().to_string());
                }
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

pub fn shell(args: ShellArgs) -> anyhow::Result<u8> {
    let rt = runtime()?;
    let (ctx, kind) = rt.block_on(open(&args.source))?;
    let what = match kind {
        SourceKind::Parquet => "Parquet dataset",
        SourceKind::Raw => "raw trail files (decoded on every query)",
    };
    println!(
        "trailql {}: table `{TABLE}` over {what}. End statements with ';', \\? for help, \\q to quit.",
        env!("CARGO_PKG_VERSION")
    );
    let mut editor = DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".trailql_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut timing = true;
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "trailql> "
        } else {
            "     ..> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            let sql = match trimmed.split_whitespace().next().unwrap_or_default() {
                "\\q" | "\\quit" => break,
                "\\?" | "\\h" | "\\help" => {
                    println!(
                        "\\d [table]   describe the table (columns and types)\n\\dt          list tables\n\\functions   trailql's functions\n\\timing      toggle query timing\n\\q           quit\nJSON payloads: requestParameters->>'key', json_get_str(col, 'a', 'b'), json_contains, json_length"
                    );
                    continue;
                }
                "\\timing" => {
                    timing = !timing;
                    println!("timing {}", if timing { "on" } else { "off" });
                    continue;
                }
                "\\functions" => {
                    for (_, signature, doc) in FUNCTIONS {
                        println!("{signature}\n    {doc}");
                    }
                    continue;
                }
                "\\dt" => "SHOW TABLES".to_string(),
                "\\d" => format!(
                    "DESCRIBE {}",
                    trimmed.split_whitespace().nth(1).unwrap_or(TABLE)
                ),
                other => {
                    eprintln!("unknown command {other}; \\? lists the commands");
                    continue;
                }
            };
            run_interactive(&rt, &ctx, &sql, timing);
            continue;
        }
        if !buffer.is_empty() {
            buffer.push('\n');
        }
        buffer.push_str(&line);
        if trimmed.ends_with(';') {
            let _ = editor.add_history_entry(buffer.as_str());
            for sql in split_statements(&buffer) {
                run_interactive(&rt, &ctx, &sql, timing);
            }
            buffer.clear();
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(0)
}

fn run_interactive(rt: &tokio::runtime::Runtime, ctx: &SessionContext, sql: &str, timing: bool) {
    let started = Instant::now();
    let result = rt.block_on(async {
        let df = ctx.sql(sql).await?;
        df.collect().await
    });
    match result {
        Ok(batches) => {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            match arrow::util::pretty::pretty_format_batches(&batches) {
                Ok(table) if rows > 0 => println!("{table}"),
                _ => {}
            }
            if timing {
                println!("{rows} rows in {:.3}s", started.elapsed().as_secs_f64());
            }
        }
        Err(e) => eprintln!("error: {}", e.find_root()),
    }
}

#[cfg(test)]
mod tests {
    use super::split_statements;

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let s = split_statements("select 1; -- a; comment\nselect ';' ; select \"a;b\" from t");
        assert_eq!(s, vec!["select 1", "select ';'", "select \"a;b\" from t"]);
    }
}
