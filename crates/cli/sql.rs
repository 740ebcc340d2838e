//! `trailql query` and `trailql shell`: SQL over a dataset or raw archives.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::results::{Format, ResultSink};
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

    /// Memory for a dataset's decoded columns kept between statements (shell, or query with
    /// --file), in MiB; 0 keeps none. The second question about the same days reads no file,
    /// and counts and comparisons by text columns read their text ids. A query whose files are
    /// larger than half of it together (or one an eighth) reads them directly.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    cache_mb: usize,

    /// Memory a query's sorts, aggregations, merges and joins hold at once, in MiB: sorts and
    /// aggregations spill to the system's temporary folder (TMPDIR) beyond three quarters of
    /// it, so `ORDER BY` or `GROUP BY eventID` over years of events finishes in the same memory
    /// as over a day; merges and joins may also use the last quarter.
    #[arg(long, value_name = "MIB", default_value_t = trailql_sql::DEFAULT_QUERY_MEMORY >> 20)]
    memory_mb: usize,
}

/// Run SQL over trail data and print the result.
///
/// The table is `cloudtrail` (Athena's `cloudtrail_logs` names it too); identifiers keep their
/// case, so `eventName` and `userIdentity.arn` work unquoted, and Athena's lower-case names
/// (`eventname`, `useridentity.arn`) name the same columns, as do its partition columns
/// (`region`, `account`, `year`, `month`, `day`, `timestamp >= '2024/03/01'`). JSON payloads:
/// `requestParameters->>'bucketName'`, `responseElements.role.arn` (keys as written),
/// `json_get_str(responseElements, 'role', 'arn')`, or Athena's `json_extract_scalar(
/// requestparameters, '$.bucketName')`. trailql's functions: principal(), arn_account(),
/// arn_service(), ip_in_cidr() and more (`trailql shell`, then `\functions`).
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

/// Interactive SQL over trail data, with line editing, history and multi-line statements.
///
/// End statements with `;`. `\d` describes the table, `\dt` lists tables, `\functions` lists
/// trailql's functions, `\timing` toggles timings, `\maxrows N` sets how many rows are shown
/// (40; 0 for all), `\q` quits.
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

/// Open `source`, with its column cache if the session may ask more than one question.
async fn open(
    source: &SourceArgs,
    many_questions: bool,
) -> anyhow::Result<(SessionContext, SourceKind)> {
    let mut ingest = IngestOptions::default();
    if let Some(t) = source.threads {
        ingest.threads = t.max(1);
    }
    let store = StoreOptions {
        region: source.region.clone(),
        endpoint: source.endpoint.clone(),
    };
    let memory = trailql_sql::SessionMemory {
        cache_bytes: if many_questions {
            source.cache_mb.saturating_mul(1 << 20)
        } else {
            0
        },
        query_bytes: source.memory_mb.max(1).saturating_mul(1 << 20),
    };
    Ok(trailql_sql::open(&source.sources, &store, ingest, memory).await?)
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
        let (ctx, _) = open(&args.source, statements.len() > 1).await?;
        let mut sink = ResultSink::new(args.format, args.output.as_deref())?;
        let last = statements.len() - 1;
        for (i, sql) in statements.iter().enumerate() {
            let started = Instant::now();
            let df = trailql_sql::sql(&ctx, sql).await.map_err(clean)?;
            let mut stream = df.execute_stream().await.map_err(clean)?;
            let mut busy = started.elapsed();
            // A statement without columns (SET, CREATE VIEW, ...) has nothing to print.
            let shown = !stream.schema().fields().is_empty() && (i == last || sink.every_result());
            if shown {
                sink.begin(stream.schema())?;
            }
            let mut rows = 0;
            loop {
                let waited = Instant::now();
                let next = stream.next().await;
                busy += waited.elapsed();
                let Some(batch) = next else { break };
                let batch = batch.map_err(clean)?;
                rows += batch.num_rows();
                if shown {
                    sink.write(&batch)?;
                }
            }
            if shown {
                sink.end()?;
            }
            if args.timing {
                eprintln!(
                    "timing: statement {}: {:.6} s, {rows} rows",
                    i + 1,
                    busy.as_secs_f64()
                );
            }
        }
        sink.finish()?;
        let skipped = trailql_sql::skipped(&ctx).await;
        if skipped > 0 {
            eprintln!(
                "trailql: {skipped} damaged files or records were left out of the answer or mended (named above)"
            );
        }
        anyhow::Ok(skipped)
    })
    .map(|skipped| if skipped > 0 { crate::EXIT_SKIPPED } else { 0 })
}

/// DataFusion errors without their wrapping: one readable line.
fn clean(e: datafusion::error::DataFusionError) -> anyhow::Error {
    let root = e.find_root();
    let text = root.to_string();
    let first = text.lines().next().unwrap_or_default();
    if let datafusion::error::DataFusionError::ResourcesExhausted(_) = root {
        // The list of consumers that follows is DataFusion's; what to do about it is ours.
        let what = first
            .split(" with top memory consumers")
            .next()
            .unwrap_or(first);
        return anyhow::anyhow!(
            "{what}: the query needs more memory than --memory-mb gives it, even with its \
             sorts and aggregations spilled; raise it, or select fewer columns"
        );
    }
    if first.contains("OuterReferenceColumn") {
        // DataFusion's words name its plan's node and print the column's whole type.
        return anyhow::anyhow!(
            "a column of the table is used inside a join's UNNEST or a subquery in a way \
             DataFusion cannot plan (a correlated reference); a list is unnested with CROSS \
             JOIN UNNEST(list) AS t(x), LEFT JOIN UNNEST(list) AS t(x) ON TRUE, or SELECT \
             unnest(list) AS x FROM cloudtrail"
        );
    }
    anyhow::anyhow!("{first}")
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
    let (ctx, kind) = rt.block_on(open(&args.source, true))?;
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
    let mut max_rows = SHELL_MAX_ROWS;
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
                        "\\d [table]   describe the table (columns and types)\n\\dt          list tables\n\\functions   trailql's functions\n\\timing      toggle query timing\n\\maxrows N   show at most N rows of a result (0: all; default 40)\n\\q           quit\nJSON payloads: requestParameters->>'key', requestParameters.a.b, json_get_str(col, 'a', 'b'), json_contains, json_length"
                    );
                    continue;
                }
                "\\timing" => {
                    timing = !timing;
                    println!("timing {}", if timing { "on" } else { "off" });
                    continue;
                }
                "\\maxrows" => {
                    match trimmed.split_whitespace().nth(1).map(str::parse::<usize>) {
                        Some(Ok(n)) => max_rows = n,
                        _ => eprintln!("usage: \\maxrows N (0 shows every row)"),
                    }
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
            run_interactive(&rt, &ctx, &sql, timing, max_rows);
            continue;
        }
        if !buffer.is_empty() {
            buffer.push('\n');
        }
        buffer.push_str(&line);
        if trimmed.ends_with(';') {
            let _ = editor.add_history_entry(buffer.as_str());
            for sql in split_statements(&buffer) {
                run_interactive(&rt, &ctx, &sql, timing, max_rows);
            }
            buffer.clear();
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(0)
}

/// Rows the shell shows of a result unless `\maxrows` says otherwise (as datafusion-cli).
const SHELL_MAX_ROWS: usize = 40;

/// Run one statement in the shell: every row is read (and counted) as it comes, the first
/// `max_rows` (all with 0) are kept and shown, so a large result needs little memory.
fn run_interactive(
    rt: &tokio::runtime::Runtime,
    ctx: &SessionContext,
    sql: &str,
    timing: bool,
    max_rows: usize,
) {
    let started = Instant::now();
    let result = rt.block_on(async {
        let df = trailql_sql::sql(ctx, sql).await?;
        let mut stream = df.execute_stream().await?;
        let schema = stream.schema();
        let (mut shown, mut rows) = (Vec::new(), 0);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let room = if max_rows == 0 {
                batch.num_rows()
            } else {
                max_rows.saturating_sub(rows).min(batch.num_rows())
            };
            if room > 0 {
                shown.push(batch.slice(0, room));
            }
            rows += batch.num_rows();
        }
        Ok::<_, datafusion::error::DataFusionError>((schema, shown, rows))
    });
    match result {
        Ok((schema, shown, rows)) => {
            if !schema.fields().is_empty() {
                let table = crate::results::table(schema, &shown);
                match table {
                    Ok(table) => println!("{table}"),
                    Err(e) => eprintln!("error: {e}"),
                }
            }
            let more = if max_rows > 0 && rows > max_rows {
                format!(" (first {max_rows} shown; \\maxrows N to change, 0 for all)")
            } else {
                String::new()
            };
            if timing {
                println!(
                    "{rows} rows in {:.3}s{more}",
                    started.elapsed().as_secs_f64()
                );
            } else if !more.is_empty() {
                println!("{rows} rows{more}");
            }
        }
        Err(e) => eprintln!("error: {}", clean(e)),
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
