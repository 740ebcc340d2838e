//! SQL tests in sqllogictest format (`tests/sql/*.slt`), each file run against the raw archive
//! in `tests/data` **and** the Parquet dataset converted from it: both must give the answers
//! written in the file. `TRAILQL_SLT_COMPLETE=1 cargo test --test integration sql::` rewrites
//! the expected results from the Parquet table (review the diff before committing).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use sqllogictest::{DBOutput, DefaultColumnType};
use trailql_ingest::{IngestOptions, StoreOptions};

use crate::util::*;

struct TrailDb {
    ctx: SessionContext,
}

#[async_trait]
impl sqllogictest::AsyncDB for TrailDb {
    type Error = datafusion::error::DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let df = trailql_sql::sql(&self.ctx, sql).await?;
        let columns = df.schema().fields().len();
        let batches = df.collect().await?;
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .map(|f| match f.value(row).to_string() {
                            s if s.is_empty() => "(empty)".to_string(),
                            s => s,
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; columns],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "trailql"
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

async fn context(source: &Path) -> SessionContext {
    context_with_cache(source, 0).await
}

/// A session over `source` keeping up to `cache_bytes` of a dataset's decoded columns.
async fn context_with_cache(source: &Path, cache_bytes: usize) -> SessionContext {
    let options = IngestOptions {
        threads: 2,
        ..IngestOptions::default()
    };
    let memory = trailql_sql::SessionMemory {
        cache_bytes,
        ..Default::default()
    };
    trailql_sql::open(
        &[source.display().to_string()],
        &StoreOptions::default(),
        options,
        memory,
    )
    .await
    .expect("open the source")
    .0
}

/// Run every SQL test file over `source`, in a session keeping up to `cache_bytes` of decoded
/// columns.
async fn run_all(source: &Path, complete: bool, cache_bytes: usize) {
    for file in slt_files() {
        let ctx = context_with_cache(source, cache_bytes).await;
        let mut runner = sqllogictest::Runner::new(move || {
            let ctx = ctx.clone();
            async move { Ok(TrailDb { ctx }) }
        });
        if complete {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        } else {
            runner
                .run_file_async(&file)
                .await
                .unwrap_or_else(|e| panic!("{} over {}:\n{e}", file.display(), source.display()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_over_the_converted_parquet_dataset() {
    let (run, dataset) = convert(&[&data_dir()], &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let complete = std::env::var_os("TRAILQL_SLT_COMPLETE").is_some();
    run_all(dataset.path(), complete, 0).await;
    if !complete {
        // Through the column cache, read cold and then warm as the statements repeat columns.
        run_all(dataset.path(), false, 64 << 20).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_over_the_raw_archive() {
    if std::env::var_os("TRAILQL_SLT_COMPLETE").is_some() {
        return; // completed from the Parquet table; checked against raw on the next run
    }
    run_all(&data_dir(), false, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_over_an_awslogs_tree_with_time_pruning() {
    let root = tempfile::tempdir().unwrap();
    build_awslogs(root.path());
    let ctx = context(root.path()).await;
    let total = answer(&ctx, "SELECT count(*) FROM cloudtrail").await;
    assert!(total.contains(&real_events().len().to_string()), "{total}");
    // A filter on eventTime reads only deliveries within a margin of the range, and still gives
    // exactly the rows a full scan gives.
    let q = "SELECT count(*) FROM cloudtrail WHERE eventTime >= TIMESTAMP '2023-07-10T12:00:00Z' AND eventTime < TIMESTAMP '2023-07-10T12:30:00Z'";
    let full_ctx = context(&data_dir()).await;
    assert_eq!(answer(&ctx, q).await, answer(&full_ctx, q).await);
}

/// The partition folders of the Parquet files the plan of `sql` reads, as `key=value/...`.
async fn folders_read(ctx: &SessionContext, sql: &str) -> BTreeSet<String> {
    let text = explain(ctx, sql).await;
    assert!(!text.contains("..."), "every file listed: {text}");
    text.split(|c: char| c.is_whitespace() || "[],|".contains(c))
        .filter(|token| token.contains(".parquet"))
        .map(|path| {
            path.split('/')
                .filter(|segment| segment.contains('='))
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

/// The partition folders under `root` holding Parquet files, as `key=value/...`.
fn folders_with_files(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let rel = dir.strip_prefix(root).unwrap();
                found.insert(rel.display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_choose_the_partition_folders_read_and_change_no_answer() {
    let (run, dataset) = convert(&[&data_dir()], &["--partition-by", "account,region,date"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    // Every SQL test gives the raw archive's answers over this layout too.
    run_all(dataset.path(), false, 0).await;

    let ctx = context(dataset.path()).await;
    let day = "SELECT count(*) FROM cloudtrail WHERE eventTime >= TIMESTAMP '2024-07-31T00:00:00Z' AND eventTime < TIMESTAMP '2024-08-01T00:00:00Z'";
    let read = folders_read(&ctx, day).await;
    let expected: BTreeSet<String> = folders_with_files(dataset.path())
        .into_iter()
        .filter(|f| f.ends_with("/date=2024-07-31"))
        .collect();
    assert!(expected.len() > 1, "{expected:?}");
    assert_eq!(read, expected);

    let account = "SELECT count(*) FROM cloudtrail WHERE recipientAccountId = '123456789012' AND awsRegion IN ('us-west-2', 'us-east-1')";
    let read = folders_read(&ctx, account).await;
    assert_eq!(read.len(), 3, "{read:?}");
    assert!(
        read.iter()
            .all(|f| f.starts_with("account=123456789012/region=us-west-2/")),
        "{read:?}"
    );
    let before =
        "SELECT count(*) FROM cloudtrail WHERE eventTime < TIMESTAMP '2023-07-10T00:00:00Z'";
    assert!(folders_read(&ctx, before).await.is_empty());

    // Through the column cache, the scan reads the same folders.
    let cached = context_with_cache(dataset.path(), 64 << 20).await;
    let day_names = day.replace("count(*)", "count(DISTINCT eventName)");
    let plan = explain(&cached, &day_names).await;
    assert!(plan.contains("CachedScanExec"), "{plan}");
    assert_eq!(folders_read(&cached, &day_names).await, expected);
}

/// How many Parquet files there are under `root`.
fn parquet_files(root: &Path) -> usize {
    std::fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .map(|path| match path.is_dir() {
            true if !path.ends_with("_trailql") => parquet_files(&path),
            _ => usize::from(path.extension().is_some_and(|e| e == "parquet")),
        })
        .sum()
}

/// The text of `EXPLAIN sql`.
async fn explain(ctx: &SessionContext, sql: &str) -> String {
    answer(ctx, &format!("EXPLAIN {sql}")).await
}

/// The plan of `sql` run, with its metrics (`EXPLAIN ANALYZE sql`).
async fn analyze(ctx: &SessionContext, sql: &str) -> String {
    answer(ctx, &format!("EXPLAIN ANALYZE {sql}")).await
}

/// The value of the first metric `name` in the text of an `EXPLAIN ANALYZE`.
fn metric(analyzed: &str, name: &str) -> Option<String> {
    analyzed
        .split(&format!("{name}="))
        .nth(1)
        .and_then(|rest| rest.split([',', ']']).next())
        .map(str::to_string)
}

/// That the `EXPLAIN ANALYZE` text `analyzed` shows metric `name` at `value`.
#[track_caller]
fn assert_metric(analyzed: &str, name: &str, value: &str) {
    assert_eq!(metric(analyzed, name).as_deref(), Some(value), "{analyzed}");
}

/// The answer to `sql` as a printed table.
async fn answer(ctx: &SessionContext, sql: &str) -> String {
    let batches = trailql_sql::sql(ctx, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_column_cache_answers_as_parquet_does_and_reads_each_file_once() {
    let (run, dataset) = convert(&[&data_dir()], &["--partition-by", "account,date"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let plain = context(dataset.path()).await;
    let cached = context_with_cache(dataset.path(), 64 << 20).await;
    let queries = [
        "SELECT eventName, count(*) AS n FROM cloudtrail GROUP BY 1 ORDER BY n DESC, 1",
        "SELECT account, date, count(*) FROM cloudtrail GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT eventTime, eventID, readOnly, userAgent, requestParameters->>'bucketName', _unmapped FROM cloudtrail WHERE eventName LIKE 'Get%' ORDER BY eventTime, eventID",
        "SELECT eventSource, errorCode, count(*) FROM cloudtrail WHERE errorCode IS NOT NULL GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        "SELECT count(*), count(DISTINCT sourceIPAddress) FROM cloudtrail WHERE eventTime >= TIMESTAMP '2024-07-31T00:00:00Z' AND eventTime < TIMESTAMP '2024-08-01T00:00:00Z'",
        "SELECT * FROM cloudtrail ORDER BY eventTime, eventID",
        // Counted by the session's text ids once cached: nulls, and a text per row.
        "SELECT errorCode, count(*), count(1) FROM cloudtrail GROUP BY 1 ORDER BY 2 DESC, 1",
        "SELECT requestID, count(*) FROM cloudtrail GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20",
    ];
    for sql in queries {
        let expected = answer(&plain, sql).await;
        assert!(
            expected.lines().count() > 4,
            "{sql} answers too little: {expected}"
        );
        assert_eq!(answer(&cached, sql).await, expected, "cold: {sql}");
        assert_eq!(answer(&cached, sql).await, expected, "warm: {sql}");
    }
    // Asked again, a question reads no file: every one comes from the cache.
    let analyzed = analyze(&cached, queries[3]).await;
    assert!(analyzed.contains("CachedScanExec"), "{analyzed}");
    assert!(analyzed.contains("files_read=0"), "{analyzed}");
    assert!(!analyzed.contains("files_from_cache=0"), "{analyzed}");
    // A count of rows by one cached column reads the session's text ids, hashing no text.
    let analyzed = analyze(&cached, queries[0]).await;
    let counted = metric(&analyzed, "counted_by_id");
    assert!(
        analyzed.contains("GroupCountExec") && counted.is_some_and(|n| n != "0"),
        "{analyzed}"
    );
    // The first question about a column reads every file once.
    let fresh = context_with_cache(dataset.path(), 64 << 20).await;
    let files = parquet_files(dataset.path());
    assert!(files > 1, "{files} files");
    let analyzed = analyze(&fresh, queries[0]).await;
    assert!(
        analyzed.contains(&format!("files_read={files}")),
        "{analyzed}"
    );
    // Nested columns are read by DataFusion's scan, which reads only the fields named.
    let nested = "SELECT userIdentity.arn, count(*) FROM cloudtrail GROUP BY 1 ORDER BY 2 DESC, 1";
    let plan = explain(&cached, nested).await;
    assert!(
        !plan.contains("CachedScanExec") && plan.contains("DataSourceExec"),
        "{plan}"
    );
    assert_eq!(answer(&cached, nested).await, answer(&plain, nested).await);
    // Files larger than half the budget are read as before, not through the cache.
    let small = context_with_cache(dataset.path(), 1024).await;
    let plan = explain(&small, queries[0]).await;
    assert!(
        !plan.contains("CachedScanExec") && plan.contains("DataSourceExec"),
        "{plan}"
    );
    assert_eq!(
        answer(&small, queries[0]).await,
        answer(&plain, queries[0]).await
    );
}

#[test]
fn every_cookbook_query_is_in_the_sql_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cookbook = std::fs::read_to_string(root.join("docs/cookbook.md")).unwrap();
    let slt = std::fs::read_to_string(root.join("tests/sql/cookbook.slt")).unwrap();
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let slt = norm(&slt);
    let queries: Vec<&str> = cookbook
        .split("```sql")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(
        queries.len() >= 20,
        "the cookbook has {} queries",
        queries.len()
    );
    for q in queries {
        assert!(
            slt.contains(&norm(q)),
            "cookbook query not tested in cookbook.slt:\n{q}"
        );
    }
}

#[test]
fn query_prints_every_format_and_runs_scripts() {
    let data = data_dir().display().to_string();
    let sql = "SELECT eventName, count(*) AS n FROM cloudtrail WHERE eventName LIKE 'CreateAccess%' GROUP BY 1";
    let csv = trailql(&["query", &data, sql, "--format", "csv"]);
    assert_eq!(
        String::from_utf8_lossy(&csv.stdout),
        "eventName,n\nCreateAccessKey,4\n",
        "{}",
        stderr(&csv)
    );
    let json = trailql(&["query", &data, sql, "--format", "json"]);
    assert_eq!(
        String::from_utf8_lossy(&json.stdout).trim(),
        r#"{"eventName":"CreateAccessKey","n":4}"#
    );
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("q.sql");
    std::fs::write(
        &script,
        format!(
            "-- a comment; with a semicolon\nSET datafusion.execution.batch_size = 1024;\n{sql};\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("r.parquet");
    let run = trailql(&[
        "query",
        &data,
        "--file",
        &script.display().to_string(),
        "--format",
        "parquet",
        "-o",
        &out.display().to_string(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let file = std::fs::File::open(&out).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let table = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(table.contains("| CreateAccessKey | 4 |"), "{table}");

    // A script prints every statement's result; nested columns and the JSON union of `->`
    // are written as text, which CSV can hold.
    std::fs::write(
        &script,
        "SELECT 1 AS a;\nSET datafusion.execution.batch_size = 1024;\n\
         SELECT userIdentity, resources, requestParameters->'bucketName' AS b, \
         requestParameters->'missing' AS m FROM cloudtrail \
         WHERE eventID = '00606850-2d9f-43e1-accf-f00e2b6aaab9';\n\
         SELECT eventName FROM cloudtrail WHERE false;\n",
    )
    .unwrap();
    let run = trailql(&[
        "query",
        &data,
        "--file",
        &script.display().to_string(),
        "--format",
        "csv",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let user = r#""{""type"":""IAMUser"",""principalId"":""AIDATFQR7NSC5U6Q3TMDR"",""arn"":""arn:aws:iam::123837392027:user/benjamin"",""accountId"":""123837392027"",""accessKeyId"":""AKIATFQR7NSCUXC3DDDP"",""userName"":""benjamin""}""#;
    let resources = r#""[{""ARN"":""arn:aws:s3:::config-bucket-123837392027"",""accountId"":""123837392027"",""type"":""AWS::S3::Bucket""}]""#;
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        format!(
            "a\n1\nuserIdentity,resources,b,m\n{user},{resources},config-bucket-123837392027,\neventName\n"
        )
    );

    // Maps are JSON objects, their keys as text whatever their type (`histogram(readOnly)`).
    let maps =
        "SELECT histogram(readOnly) AS h FROM cloudtrail WHERE eventName LIKE 'CreateAccess%'";
    let csv = trailql(&["query", &data, maps, "--format", "csv"]);
    assert_eq!(
        String::from_utf8_lossy(&csv.stdout),
        "h\n\"{\"\"false\"\":4}\"\n",
        "{}",
        stderr(&csv)
    );
    let json = trailql(&["query", &data, maps, "--format", "json"]);
    assert_eq!(
        String::from_utf8_lossy(&json.stdout).trim(),
        r#"{"h":{"false":4}}"#,
        "{}",
        stderr(&json)
    );
}

#[test]
fn query_errors_are_one_clear_line() {
    let data = data_dir().display().to_string();
    for (args, needle) in [
        (vec!["query", &data, "SELEC 1"], "SELEC"),
        (
            vec!["query", &data, "SELECT nosuch FROM cloudtrail"],
            "nosuch",
        ),
        (vec!["query", "/no/such/path", "SELECT 1"], "/no/such/path"),
        // A correlated reference DataFusion cannot plan: said in words, not as its plan node.
        (
            vec![
                "query",
                &data,
                "SELECT count(*) FROM cloudtrail LEFT JOIN UNNEST(resources) AS t(r) ON r.type = 'x'",
            ],
            "LEFT JOIN UNNEST(list) AS t(x) ON TRUE",
        ),
    ] {
        let run = trailql(&args);
        let err = stderr(&run);
        assert_eq!(run.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(needle) && !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
}

#[test]
fn a_query_over_damaged_raw_files_answers_names_them_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let events = real_events();
    let doc = serde_json::to_vec(&serde_json::json!({ "Records": events[..20] })).unwrap();
    std::fs::write(dir.path().join("good.json"), &doc).unwrap();
    // The last record cut in half: the 19 before it are still read.
    let cut = serde_json::to_vec(&serde_json::json!({ "Records": events[20..40] })).unwrap();
    std::fs::write(dir.path().join("cut.json"), &cut[..cut.len() - 50]).unwrap();
    let run = trailql(&[
        "query",
        &dir.path().display().to_string(),
        "SELECT count(*) AS n FROM cloudtrail",
        "--format",
        "csv",
    ]);
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert_eq!(String::from_utf8_lossy(&run.stdout), "n\n39\n");
    assert!(
        err.contains("cut.json") && !err.contains("good.json"),
        "{err}"
    );
}

#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    use std::io::Read;
    // `trailql query ... | head -1`: several MB of CSV, of which the reader takes one line.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trailql"))
        .args(["query", &data_dir().display().to_string()])
        .args(["SELECT * FROM cloudtrail", "--format", "csv"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is closed here, with most of the output unwritten.
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with(b"eventVersion,"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_with_other_columns_and_types_read_the_same_through_the_cache() {
    use arrow::array::{ArrayRef, LargeStringArray, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    // A folder of Parquet written by another tool: some of the columns, in other types
    // (milliseconds, large text), one column trailql does not know.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("date=2024-03-01");
    std::fs::create_dir_all(&folder).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "eventTime",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("eventName", DataType::LargeUtf8, true),
        Field::new("sourceIPAddress", DataType::Utf8, true),
        Field::new("somethingElse", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMillisecondArray::from(vec![
                1_709_251_200_123,
                1_709_251_201_000,
                1_709_251_202_500,
            ])
            .with_timezone("UTC"),
        ),
        Arc::new(LargeStringArray::from(vec![
            Some("GetObject"),
            None,
            Some("GetObject"),
        ])),
        Arc::new(StringArray::from(vec!["10.0.0.1", "10.0.0.2", "10.0.0.1"])),
        Arc::new(StringArray::from(vec!["x", "y", "z"])),
    ];
    let batch = arrow::record_batch::RecordBatch::try_new(schema.clone(), columns).unwrap();
    let file = std::fs::File::create(folder.join("part-0.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let plain = context(dir.path()).await;
    let cached = context_with_cache(dir.path(), 64 << 20).await;
    for sql in [
        "SELECT eventName, sourceIPAddress, errorCode, count(*) FROM cloudtrail GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        "SELECT date, eventTime, eventName, readOnly FROM cloudtrail ORDER BY eventTime",
    ] {
        let expected = answer(&plain, sql).await;
        assert!(
            expected.contains("10.0.0.2") || expected.contains("00:00:02.500"),
            "{expected}"
        );
        let plan = explain(&cached, sql).await;
        assert!(plan.contains("CachedScanExec"), "{plan}");
        assert_eq!(answer(&cached, sql).await, expected, "cold: {sql}");
        assert_eq!(answer(&cached, sql).await, expected, "warm: {sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_by_the_caches_text_ids_answer_as_parquet_does() {
    use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    // Two files of 80,000 and 80,001 rows (a partition each, more rows than are judged before handing a
    // count of mostly distinct texts over to DataFusion): few names, with nulls; an error
    // code in one row of five; an address of its own per row; 6,154 user agents, a new one every
    // 13 rows (more ids than are counted in lanes).
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "eventTime",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("eventName", DataType::Utf8, true),
        Field::new("errorCode", DataType::Utf8, true),
        Field::new("sourceIPAddress", DataType::Utf8, true),
        Field::new("userAgent", DataType::Utf8, true),
    ]));
    let names = [
        "GetObject",
        "DescribeInstanceInformation",
        "AssumeRole",
        "ListBuckets",
        "Decrypt",
        "GetParameter",
        "DescribeRouteTables",
        "PutObject",
    ];
    for (file, day) in ["2024-03-01", "2024-03-02"].iter().enumerate() {
        let folder = dir.path().join(format!("date={day}"));
        std::fs::create_dir_all(&folder).unwrap();
        // The second file one row longer: its batches end in a row the lanes do not fill.
        let rows = 0..80_000 + file;
        let start = 1_709_251_200_000_000i64 + file as i64 * 86_400_000_000;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.clone().map(|i| start + i as i64))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter(rows.clone().map(|i| {
                (i % 9 != 4).then(|| names[(i * 7 + file) % names.len()])
            }))),
            Arc::new(StringArray::from_iter(rows.clone().map(|i| {
                (i % 5 == 0).then(|| ["AccessDenied", "ThrottlingException", "NoSuchKey"][i % 3])
            }))),
            Arc::new(StringArray::from_iter_values(
                rows.clone()
                    .map(|i| format!("10.{file}.{}.{}", i / 256, i % 256)),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.map(|i| format!("aws-cli/2.{}", i / 13)),
            )),
        ];
        let batch = arrow::record_batch::RecordBatch::try_new(schema.clone(), columns).unwrap();
        let out = std::fs::File::create(folder.join("part-0.parquet")).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(out, schema.clone(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    let plain = context(dir.path()).await;
    let cached = context_with_cache(dir.path(), 256 << 20).await;
    let queries = [
        "SELECT eventName, count(*) FROM cloudtrail GROUP BY 1 ORDER BY 1",
        "SELECT eventName, errorCode, count(*) FROM cloudtrail WHERE errorCode IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT errorCode, eventName, count(*), count(1) FROM cloudtrail GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT count(*), sum(c) FROM (SELECT sourceIPAddress, count(*) AS c FROM cloudtrail WHERE eventName <> 'GetObject' GROUP BY 1)",
        "SELECT sourceIPAddress, eventName, count(*) FROM cloudtrail WHERE errorCode = 'AccessDenied' GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 5",
        "SELECT date, eventName, count(*) FROM cloudtrail WHERE eventName LIKE 'Get%' GROUP BY 1, 2 ORDER BY 1, 2",
        // Compared by text id: in a count's filter, `<>` (a null compared stays null, not
        // counted), a text the column never held, an address per row (no ids: as texts).
        "SELECT errorCode, count(*) FROM cloudtrail WHERE eventName = 'AssumeRole' GROUP BY 1 ORDER BY 1",
        "SELECT count(*), count(eventName) FROM cloudtrail WHERE NOT (eventName = 'GetObject')",
        "SELECT eventTime, eventName, errorCode FROM cloudtrail WHERE 'Decrypt' = eventName OR errorCode = 'NoSuchKey' ORDER BY eventTime LIMIT 5",
        "SELECT count(*) FROM cloudtrail WHERE eventName = 'NoSuchEvent' OR sourceIPAddress = '10.1.2.3'",
        "SELECT userAgent, count(*) FROM cloudtrail GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
        "SELECT count(*), sum(c) FROM (SELECT userAgent, count(*) AS c FROM cloudtrail GROUP BY 1)",
    ];
    for sql in queries {
        let expected = answer(&plain, sql).await;
        assert!(expected.lines().count() > 4, "{sql}: {expected}");
        assert_eq!(answer(&cached, sql).await, expected, "cold: {sql}");
        assert_eq!(answer(&cached, sql).await, expected, "warm: {sql}");
    }
    let plan = explain(&cached, queries[7]).await;
    assert!(plan.contains("(by text id)"), "{plan}");
    // 6,154 user agents are counted by id too (not in lanes: too many).
    let analyzed = analyze(&cached, queries[11]).await;
    assert_metric(&analyzed, "counted_by_id", "160.0 K");
    // The filter is taken into the count, which counts the cached batches by their ids.
    let plan = explain(&cached, queries[1]).await;
    assert!(
        plan.contains("filter=errorCode@") && !plan.contains("FilterExec"),
        "{plan}"
    );
    let analyzed = analyze(&cached, queries[1]).await;
    assert_metric(&analyzed, "counted_by_id", "32.00 K");
    // An address per row gets no ids: the count is handed over, the filter kept.
    let plan = explain(&cached, queries[3]).await;
    assert!(
        plan.contains("filter=eventName@") && !plan.contains("FilterExec"),
        "{plan}"
    );
    let analyzed = analyze(&cached, queries[3]).await;
    assert_metric(&analyzed, "handed_over", "2");
    assert_metric(&analyzed, "counted_by_id", "0");
}

/// Random draws for generated queries, the same for a seed.
struct Draw(rand_chacha::ChaCha8Rng);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        use rand::Rng;
        self.0.random_range(0..n)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Stock DataFusion over a converted dataset's Parquet files: none of trailql's plans (column
/// cache, counts by text, comparisons by id, JSON filters), identifiers kept in their case, the
/// JSON functions (row by row) and PostgreSQL's precedence of `->>`, as trailql has them.
async fn stock_datafusion(dataset: &Path) -> SessionContext {
    use datafusion::prelude::{ParquetReadOptions, SessionConfig};
    let mut config = SessionConfig::new().with_target_partitions(2);
    config.options_mut().sql_parser.enable_ident_normalization = false;
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    let mut ctx = SessionContext::new_with_config(config);
    datafusion_functions_json::register_all(&mut ctx).unwrap();
    let options = ParquetReadOptions::default()
        .table_partition_cols(vec![("date".to_string(), arrow::datatypes::DataType::Utf8)]);
    ctx.register_parquet("cloudtrail", dataset.display().to_string(), options)
        .await
        .expect("register the dataset's Parquet files");
    ctx
}

/// `sql` in lower case but for its quoted strings ('...', with '' inside).
fn lower_case_but_strings(sql: &str) -> String {
    let mut quoted = false;
    sql.chars()
        .map(|c| {
            if c == '\'' {
                quoted = !quoted;
            }
            if quoted { c } else { c.to_ascii_lowercase() }
        })
        .collect()
}

/// Generated counts, filters and group-bys over a generated archive: trailql's answers, through
/// the column cache cold and warm and without it (and over the raw archive, for some), are stock
/// DataFusion's over the same Parquet files; so are they for the queries in lower case (some).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_queries_answer_as_stock_datafusion_does() {
    let archive = tempfile::tempdir().unwrap();
    let templates = data_dir().display().to_string();
    let archive_dir = archive.path().display().to_string();
    // Days of 15,000 events: each file's columns come in several batches, and later batches
    // bring texts the first did not hold.
    let generate = trailql(&[
        "generate",
        &archive_dir,
        "--events",
        "45000",
        "--days",
        "3",
        "--seed",
        "7",
        "--templates",
        &templates,
    ]);
    assert_eq!(generate.status.code(), Some(0), "{}", stderr(&generate));
    let (run, dataset) = convert(&[archive.path()], &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let stock = stock_datafusion(dataset.path()).await;
    let plain = context(dataset.path()).await;
    let cached = context_with_cache(dataset.path(), 256 << 20).await;
    let raw = context(archive.path()).await;

    // Literals: texts each column holds, and texts it does not.
    let filtered = [
        "eventName",
        "eventSource",
        "awsRegion",
        "errorCode",
        "eventType",
        "recipientAccountId",
        "eventVersion",
        "sourceIPAddress",
        "userAgent",
        "date",
        "userIdentity.type",
        "userIdentity.arn",
        "requestParameters->>'bucketName'",
        "requestParameters->>'roleArn'",
        "additionalEventData->>'MFAUsed'",
    ];
    let mut literals = Vec::new();
    for column in filtered {
        let sql = format!(
            "SELECT {column} FROM cloudtrail WHERE {column} IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 4"
        );
        let batches = stock.sql(&sql).await.unwrap().collect().await.unwrap();
        let mut texts: Vec<String> = vec![
            String::new(),
            "NoSuchText".into(),
            "a text no column holds, longer than a view".into(),
        ];
        for batch in &batches {
            let formatter =
                ArrayFormatter::try_new(batch.column(0), &FormatOptions::default()).unwrap();
            texts.extend((0..batch.num_rows()).map(|row| formatter.value(row).to_string()));
        }
        assert!(texts.len() > 4, "{column} holds no text");
        literals.push((column, texts));
    }
    // Another seed draws other queries: `TRAILQL_QUERY_SEED=n cargo test --test integration
    // generated_queries`.
    let seed = std::env::var("TRAILQL_QUERY_SEED").map_or(7, |s| s.parse().expect("a number"));
    let mut draw = Draw(rand::SeedableRng::seed_from_u64(seed));
    let predicate = |draw: &mut Draw| {
        let (column, texts) = draw.pick(&literals);
        let mut text = || format!("'{}'", draw.pick(texts).replace('\'', "''"));
        let (a, b) = (text(), text());
        match draw.below(9) {
            0 => format!("{column} = {a}"),
            1 => format!("{column} <> {a}"),
            2 => format!("{a} = {column}"),
            3 => format!("{column} IS NULL"),
            4 => format!("{column} IS NOT NULL"),
            5 => format!("{column} IN ({a}, {b})"),
            6 => format!("NOT ({column} = {a})"),
            7 => format!(
                "{column} LIKE {}",
                draw.pick(&["'%e%'", "'arn:%'", "'A%'", "'%-1'"])
            ),
            _ => {
                // Times and days within the archive's three days, and just outside them.
                let day = format!(
                    "2024-0{}",
                    draw.pick(&["3-01", "3-02", "3-03", "2-29", "3-04"])
                );
                let time = format!("{day}T{:02}:{:02}:00", draw.below(24), draw.below(60));
                match draw.below(8) {
                    0 => format!("eventTime >= TIMESTAMP '{time}Z'"),
                    1 => format!("eventTime < '{time}Z'"),
                    2 => format!("eventTime BETWEEN '{day}T00:00:00Z' AND TIMESTAMP '{time}Z'"),
                    3 => format!("eventTime > TIMESTAMP '{time}+02:00'"),
                    4 => format!("CAST(eventTime AS DATE) = DATE '{day}'"),
                    5 => format!("date_trunc('hour', eventTime) = TIMESTAMP '{time}Z'"),
                    6 => format!("date {} '{day}'", draw.pick(&["=", "<", ">=", "<>"])),
                    _ => format!("eventTime <= TIMESTAMP '{time}Z' - INTERVAL '90 minutes'"),
                }
            }
        }
    };
    let grouped = [
        "eventName",
        "eventSource",
        "awsRegion",
        "errorCode",
        "eventType",
        "recipientAccountId",
        "sessionCredentialFromConsole",
        "readOnly",
        "date",
        "userIdentity.type",
        "sourceIPAddress",
    ];
    let aggregates = [
        "count(*)",
        "count(errorCode)",
        "count(1)",
        "count(DISTINCT awsRegion)",
        "min(eventTime)",
        "max(eventName)",
        "sum(CASE WHEN readOnly THEN 1 ELSE 0 END)",
    ];
    let mut queries = Vec::new();
    for _ in 0..200 {
        let filters: Vec<String> = (0..draw.below(4))
            .map(|_| format!("({})", predicate(&mut draw)))
            .collect();
        let joined = filters.join(*draw.pick(&[" AND ", " OR "]));
        let filter = if joined.is_empty() {
            String::new()
        } else {
            format!(" WHERE {joined}")
        };
        let sql = if draw.below(4) == 0 {
            format!("SELECT count(*) AS n FROM cloudtrail{filter}")
        } else {
            let mut groups: Vec<&str> = Vec::new();
            for _ in 0..*draw.pick(&[1, 1, 2, 3]) {
                let group = *draw.pick(&grouped);
                if !groups.contains(&group) {
                    groups.push(group);
                }
            }
            let counts: Vec<String> = (0..1 + draw.below(2))
                .map(|i| format!("{} AS a{i}", draw.pick(&aggregates)))
                .collect();
            let having = if draw.below(5) == 0 {
                " HAVING count(*) > 5"
            } else {
                ""
            };
            let columns = groups.len() + counts.len();
            let order: Vec<String> = (1..=columns).map(|c| c.to_string()).collect();
            format!(
                "SELECT {}, {} FROM cloudtrail{filter} GROUP BY {}{having} ORDER BY {}",
                groups.join(", "),
                counts.join(", "),
                groups.join(", "),
                order.join(", ")
            )
        };
        queries.push(sql);
    }
    let mut answered = 0;
    // How many plans took each of trailql's own paths.
    let mut paths = [
        ("CachedScanExec", 0),
        ("GroupCountExec", 0),
        ("(by text id)", 0),
        ("json_as_text_in", 0),
    ];
    for (i, sql) in queries.iter().enumerate() {
        let batches = stock.sql(sql).await.unwrap().collect().await.unwrap();
        let expected = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        answered += usize::from(batches.iter().any(|b| b.num_rows() > 0));
        assert_eq!(answer(&plain, sql).await, expected, "no cache: {sql}");
        // The raw table has no partition columns.
        let names_date = sql
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .any(|word| word == "date");
        if i % 4 == 0 && !names_date {
            assert_eq!(answer(&raw, sql).await, expected, "raw archive: {sql}");
        }
        // Written as Athena users write names (`eventname`, `useridentity.type`).
        if i % 4 == 1 {
            let lower = lower_case_but_strings(sql);
            assert_eq!(
                answer(&plain, &lower).await,
                expected,
                "lower case: {lower}"
            );
        }
        for run in ["cold", "warm", "warm again"] {
            assert_eq!(answer(&cached, sql).await, expected, "{run}: {sql}");
        }
        let plan = explain(&cached, sql).await;
        for (path, plans) in &mut paths {
            *plans += usize::from(plan.contains(*path));
        }
    }
    assert!(answered > 150, "{answered} of 200 queries answered rows");
    assert!(paths.iter().all(|(_, plans)| *plans >= 10), "{paths:?}");
}

/// A sort of more than `--memory-mb` spills to disk and answers as one that fits: what a query
/// holds is set by the option, not by the data it reads.
#[test]
fn a_sort_larger_than_the_query_memory_spills_and_answers_the_same() {
    let (corpus, lake) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let templates = data_dir().display().to_string();
    let corpus_dir = corpus.path().display().to_string();
    let run = trailql(&[
        "generate",
        &corpus_dir,
        "--events",
        "60000",
        "--seed",
        "3",
        "--templates",
        &templates,
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let lake_dir = lake.path().join("lake").display().to_string();
    let run = trailql(&["convert", &corpus_dir, "--out", &lake_dir]);
    assert!(run.status.success(), "{}", stderr(&run));
    let sql = "SELECT eventID, requestParameters, responseElements FROM cloudtrail \
               ORDER BY requestParameters, eventID";
    let run_with = |memory_mb: &str, sql: &str| {
        let run = trailql(&[
            "query",
            &lake_dir,
            "--memory-mb",
            memory_mb,
            "--format",
            "csv",
            "--",
            sql,
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
        String::from_utf8(run.stdout).unwrap()
    };
    // The sort of 60,000 events' payloads in 48 MiB spills (its metrics say how often)...
    let explained = run_with("48", &format!("EXPLAIN ANALYZE {sql}"));
    let spills: u64 = explained
        .split("spill_count=")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(spills > 0, "no spill in 48 MiB:\n{explained}");
    let roomy = run_with("2048", &format!("EXPLAIN ANALYZE {sql}"));
    assert!(roomy.contains("spill_count=0"), "{roomy}");
    // ...and gives the same answer as in 2 GiB, every row.
    let (small, large) = (run_with("48", sql), run_with("2048", sql));
    assert_eq!(small.lines().count(), 60_001);
    assert!(small == large, "the answers differ");
}
