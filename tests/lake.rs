//! The dataset as a lake: object stores (a real S3-compatible server), incremental runs,
//! exactly-once after SIGKILL, partitions that crafted values cannot escape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::util::{S3Server, build_awslogs, files_ending, gzip, stderr, trailql};

/// `(eventID, count)` over a dataset, read by trailql's SQL.
fn event_id_counts(out: &std::process::Output) -> BTreeMap<String, u64> {
    assert!(out.status.success(), "query failed: {}", stderr(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|line| {
            let (id, n) = line.rsplit_once(',').expect("id,count");
            (id.to_string(), n.parse().expect("a count"))
        })
        .collect()
}

const COUNT_BY_ID: &str =
    "SELECT eventID, count(*) AS n FROM cloudtrail GROUP BY eventID ORDER BY eventID";

/// Event IDs in a JSON trail file.
fn ids_in(file: &Path) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let records = match &v {
        serde_json::Value::Object(o) => o["Records"].as_array().unwrap().clone(),
        serde_json::Value::Array(a) => a.clone(),
        _ => panic!("not events"),
    };
    records
        .iter()
        .map(|r| r["eventID"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn s3_bucket_to_bucket_runs_incrementally_and_exactly_once() {
    let s3 = S3Server::start();
    s3.create_bucket("trail");
    s3.create_bucket("lake");

    // An organization trail under a prefix: <prefix>/AWSLogs/<o-id>/<account>/CloudTrail/...
    let sources: Vec<PathBuf> = crate::util::json_files(&crate::util::data_dir());
    let key = |i: usize| {
        format!(
            "exports/AWSLogs/o-abc123def4/123456789012/CloudTrail/us-east-1/2023/07/{:02}/123456789012_CloudTrail_us-east-1_20230710T12{:02}Z_{i:016}.json.gz",
            10 + i % 3,
            i % 60
        )
    };
    // First delivery: days 10 and 11, but one file of day 10 arrives late.
    let late = 3;
    let first: Vec<usize> = (0..sources.len())
        .filter(|&i| i % 3 != 2 && i != late)
        .collect();
    let second: Vec<usize> = (0..sources.len()).filter(|i| !first.contains(i)).collect();
    assert_eq!(late % 3, 0, "the late file belongs to an old day");
    for &i in &first {
        s3.put("trail", &key(i), gzip(&std::fs::read(&sources[i]).unwrap()));
    }
    s3.put(
        "trail",
        "exports/AWSLogs/o-abc123def4/123456789012/CloudTrail-Digest/us-east-1/2023/07/10/123456789012_CloudTrail-Digest_us-east-1_t_us-east-1_20230710T130000Z.json.gz",
        gzip(br#"{"awsAccountId":"123456789012","logFiles":[]}"#),
    );

    let convert = [
        "convert",
        "s3://trail/exports/AWSLogs/",
        "--out",
        "s3://lake/cloudtrail/",
    ];
    let run = s3.trailql(&convert);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let expected = |indices: &[usize]| -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for &i in indices {
            for id in ids_in(&sources[i]) {
                *m.entry(id).or_insert(0) += 1;
            }
        }
        m
    };
    let query = [
        "query",
        "s3://lake/cloudtrail/",
        COUNT_BY_ID,
        "--format",
        "csv",
    ];
    assert_eq!(event_id_counts(&s3.trailql(&query)), expected(&first));

    // New objects and a late one into an old day: only they are converted.
    for &i in &second {
        s3.put("trail", &key(i), gzip(&std::fs::read(&sources[i]).unwrap()));
    }
    let run = s3.trailql(&convert);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(
        stderr(&run).contains(&format!("from {} files", second.len())),
        "{}",
        stderr(&run)
    );
    let all: Vec<usize> = (0..sources.len()).collect();
    let counts = event_id_counts(&s3.trailql(&query));
    assert_eq!(counts, expected(&all));
    assert!(counts.values().all(|&n| n == 1));

    // Nothing new: nothing converted, nothing written.
    let run = s3.trailql(&convert);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("0 events from 0 files"),
        "{}",
        stderr(&run)
    );
    assert_eq!(event_id_counts(&s3.trailql(&query)), expected(&all));

    // The same into a Delta table in the bucket, with a commit per input file.
    let delta = [
        "convert",
        "s3://trail/exports/AWSLogs/",
        "--out",
        "s3://lake/delta/",
        "--table-format",
        "delta",
        "--commit-every-mb",
        "0",
    ];
    let run = s3.trailql(&delta);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let query_delta = ["query", "s3://lake/delta/", COUNT_BY_ID, "--format", "csv"];
    assert_eq!(event_id_counts(&s3.trailql(&query_delta)), expected(&all));

    // The late file's events landed in their own day's partition.
    let day = s3.trailql(&[
        "query",
        "s3://lake/cloudtrail/",
        "SELECT DISTINCT date = to_char(eventTime, '%Y-%m-%d') AS same FROM cloudtrail",
        "--format",
        "csv",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&day.stdout).trim(),
        "same\ntrue",
        "{}",
        stderr(&day)
    );
}

/// Every `.parquet` file under `dir` opens as a complete Parquet file.
fn assert_only_complete_parquet_files(dir: &Path) {
    for file in files_ending(dir, ".parquet") {
        let f = std::fs::File::open(&file).unwrap();
        parquet::file::reader::SerializedFileReader::new(f)
            .unwrap_or_else(|e| panic!("{} is not a complete Parquet file: {e}", file.display()));
    }
}

fn convert_command(archive: &Path, out: &Path, format: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trailql"));
    cmd.args(["convert", &archive.display().to_string(), "--out"])
        .arg(out)
        .args(["--quiet", "--commit-every-mb", "0", "-j", "2"])
        .args(["--table-format", format])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn sigkill_at_many_points_then_a_rerun_gives_the_clean_runs_dataset() {
    let archive = tempfile::tempdir().unwrap();
    build_awslogs(archive.path());
    let ids = |dir: &Path| {
        let out = trailql(&[
            "query",
            &dir.display().to_string(),
            COUNT_BY_ID,
            "--format",
            "csv",
        ]);
        event_id_counts(&out)
    };

    for (format, points) in [("parquet", 12), ("delta", 6)] {
        let clean = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let status = convert_command(archive.path(), clean.path(), format)
            .status()
            .unwrap();
        let clean_time = started.elapsed();
        assert!(status.success());
        let expected = ids(clean.path());
        assert!(expected.len() > 3000 && expected.values().all(|&n| n == 1));

        // Kill at points spread over a whole run (commits happen after every input file),
        // some runs twice in a row, so that the rerun itself is killed while it recovers.
        let mut interrupted = 0;
        for k in 1..=points {
            let out = tempfile::tempdir().unwrap();
            let kills = if k % 3 == 0 { 2 } else { 1 };
            for _ in 0..kills {
                let mut child = convert_command(archive.path(), out.path(), format)
                    .spawn()
                    .unwrap();
                std::thread::sleep(clean_time.mul_f64(k as f64 / (points + 1) as f64));
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                assert_only_complete_parquet_files(out.path());
            }
            if ids(out.path()) != expected {
                interrupted += 1; // the kill landed before the run's end
            }
            let rerun = convert_command(archive.path(), out.path(), format)
                .output()
                .unwrap();
            assert!(rerun.status.success(), "{format}: {}", stderr(&rerun));
            assert_only_complete_parquet_files(out.path());
            assert_eq!(
                ids(out.path()),
                expected,
                "{format}: killed at {k}/{}",
                points + 1
            );
        }
        assert!(
            interrupted * 2 >= points,
            "{format}: only {interrupted} of {points} kills stopped a run before its end"
        );
    }
}

#[test]
fn a_crafted_region_cannot_escape_the_dataset_folder() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("crafted.json");
    let event = |id: &str, region: &str| {
        format!(
            r#"{{"eventVersion":"1.08","eventTime":"2024-01-02T03:04:05Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"{region}","eventID":"{id}","recipientAccountId":"123456789012"}}"#
        )
    };
    std::fs::write(
        &input,
        format!(
            r#"{{"Records":[{},{},{}]}}"#,
            event("a", "../../x"),
            event("b", ".hidden"),
            event("c", "%2e%2e%2fy")
        ),
    )
    .unwrap();
    let out = dir.path().join("lake/inner");
    let run = trailql(&[
        "convert",
        &input.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--partition-by",
        "region,date",
        "--quiet",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    // Everything stayed under the output folder, in visible, non-dot folders.
    let mut found = 0;
    for entry in walk(&dir.path().join("lake")) {
        let rel = entry
            .strip_prefix(&out)
            .unwrap_or_else(|_| panic!("{} was written outside the dataset", entry.display()));
        if rel.starts_with("_trailql") {
            continue;
        }
        for part in rel.iter() {
            let part = part.to_string_lossy();
            assert!(!part.starts_with('.'), "{}", entry.display());
        }
        found += 1;
    }
    assert_eq!(found, 3);
    // The folder names hold the values Hive-escaped; readers that decode Hive escapes
    // (DataFusion, Spark, DuckDB) get the values back, and the column keeps them exactly.
    assert!(out.join("region=%2E%2E%2F%2E%2E%2Fx").is_dir());
    assert!(out.join("region=%2Ehidden").is_dir());
    assert!(out.join("region=%252e%252e%252fy").is_dir());
    let q = trailql(&[
        "query",
        &out.display().to_string(),
        "SELECT region, awsRegion FROM cloudtrail ORDER BY eventID",
        "--format",
        "csv",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&q.stdout),
        "region,awsRegion\n../../x,../../x\n.hidden,.hidden\n%2e%2e%2fy,%2e%2e%2fy\n",
        "{}",
        stderr(&q)
    );
    // A second run finds the same files in the log (no file is taken for a leftover).
    let again = trailql(&[
        "convert",
        &dir.path().display().to_string(),
        "--out",
        &out.display().to_string(),
        "--partition-by",
        "region,date",
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(!stderr(&again).contains("removed"), "{}", stderr(&again));
    assert_eq!(files_ending(&out, ".parquet").len(), 3);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Rows per eventSource, as `source count` lines sorted by source, from trailql.
fn trailql_counts_by_source(dataset: &Path) -> String {
    let out = trailql(&[
        "query",
        &dataset.display().to_string(),
        "SELECT eventSource, count(*) AS n FROM cloudtrail GROUP BY 1 ORDER BY 1",
        "--format",
        "csv",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.replace(',', " "))
        .collect::<Vec<_>>()
        .join("\n")
}

const PYTHON_GROUP_BY: &str = r#"
def by_source(table):
    import pyarrow.compute as pc
    g = table.group_by("eventSource").aggregate([("eventSource", "count")])
    rows = sorted(zip(g.column("eventSource").to_pylist(), g.column("eventSource_count").to_pylist()))
    return "\n".join(f"{s} {n}" for s, n in rows)
"#;

#[test]
fn a_delta_table_reads_the_same_in_deltalake_and_trailql_and_grows_incrementally() {
    let archive = tempfile::tempdir().unwrap();
    build_awslogs(archive.path());
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    let events = files_ending(archive.path(), ".json.gz");
    for (i, file) in events
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/CloudTrail/"))
        .enumerate()
    {
        if i % 2 == 0 {
            first.push(file)
        } else {
            rest.push(file)
        }
    }
    let out = tempfile::tempdir().unwrap();
    let table = out.path().join("delta");
    let convert = |files: &[PathBuf]| {
        let mut args: Vec<String> = vec!["convert".into()];
        args.extend(files.iter().map(|p| p.display().to_string()));
        args.extend(
            [
                "--out",
                &table.display().to_string(),
                "--table-format",
                "delta",
                "--partition-by",
                "account,date",
            ]
            .map(String::from),
        );
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = trailql(&argv);
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
        run
    };
    convert(&first);
    let all: Vec<PathBuf> = first.iter().chain(&rest).cloned().collect();
    let run = convert(&all);
    assert!(
        stderr(&run).contains(&format!("from {} files", rest.len())),
        "{}",
        stderr(&run)
    );
    assert!(table.join("_delta_log/00000000000000000000.json").exists());
    assert!(
        !table.join("_trailql").exists(),
        "a Delta table keeps its state in the Delta log"
    );

    let script = format!(
        r#"{PYTHON_GROUP_BY}
from deltalake import DeltaTable
dt = DeltaTable("{table}")
t = dt.to_pyarrow_table()
print(t.num_rows)
print(sorted(dt.metadata().partition_columns))
print(by_source(t))
"#,
        table = table.display()
    );
    let text = crate::util::python_using(&["pyarrow", "deltalake"], &script);
    let mut lines = text.lines();
    let ids = event_id_counts(&trailql(&[
        "query",
        &table.display().to_string(),
        COUNT_BY_ID,
        "--format",
        "csv",
    ]));
    assert!(ids.values().all(|&n| n == 1));
    assert_eq!(lines.next().unwrap(), ids.len().to_string());
    assert_eq!(lines.next().unwrap(), "['account', 'date']");
    assert_eq!(
        lines.collect::<Vec<_>>().join("\n"),
        trailql_counts_by_source(&table)
    );

    // A Delta table stays Delta.
    let wrong = trailql(&[
        "convert",
        &archive.path().display().to_string(),
        "--out",
        &table.display().to_string(),
        "--partition-by",
        "account,date",
    ]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("delta dataset, not parquet"),
        "{}",
        stderr(&wrong)
    );
}

#[test]
fn compaction_merges_small_files_and_every_reader_still_agrees() {
    let archive = tempfile::tempdir().unwrap();
    build_awslogs(archive.path());
    for format in ["parquet", "delta"] {
        let out = tempfile::tempdir().unwrap();
        let dataset = out.path().display().to_string();
        // A commit per input file: many small files per day, as hourly runs leave them.
        let run = trailql(&[
            "convert",
            &archive.path().display().to_string(),
            "--out",
            &dataset,
            "--commit-every-mb",
            "0",
            "--table-format",
            format,
            "--quiet",
        ]);
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
        let before = files_ending(out.path(), ".parquet").len();
        let ids =
            |d: &str| event_id_counts(&trailql(&["query", d, COUNT_BY_ID, "--format", "csv"]));
        let expected = ids(&dataset);
        let by_source = trailql_counts_by_source(out.path());

        let compact = trailql(&["compact", &dataset]);
        assert_eq!(compact.status.code(), Some(0), "{}", stderr(&compact));
        assert!(
            stderr(&compact).contains("files ->"),
            "{}",
            stderr(&compact)
        );
        assert_eq!(ids(&dataset), expected, "{format}");
        assert_eq!(trailql_counts_by_source(out.path()), by_source);
        // One file per day after compaction.
        let days_query = trailql(&[
            "query",
            &dataset,
            "SELECT count(DISTINCT date) FROM cloudtrail",
            "--format",
            "csv",
        ]);
        let days: usize = String::from_utf8_lossy(&days_query.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(before > days);
        let after = files_ending(out.path(), ".parquet").len();
        if format == "parquet" {
            // The replaced files are gone: a reader that lists folders sees the new ones only.
            assert_eq!(after, days, "{before} files before");
            let script = format!(
                r#"{PYTHON_GROUP_BY}
import pyarrow.dataset as ds, duckdb
root = "{dataset}"
t = ds.dataset(root, format="parquet", partitioning="hive").to_table()
n = duckdb.connect().execute(f"select count(*) from read_parquet('{{root}}/**/*.parquet')").fetchone()[0]
print(t.num_rows, n)
print(by_source(t))
"#
            );
            let text = crate::util::python(&script);
            let (counts, groups) = text.split_once('\n').unwrap();
            assert_eq!(counts, format!("{0} {0}", expected.len()));
            assert_eq!(groups.trim_end(), by_source);
        } else {
            // Delta keeps the replaced files for time travel; readers of the log see the new.
            assert!(after > days);
            let script = format!(
                r#"{PYTHON_GROUP_BY}
from deltalake import DeltaTable
dt = DeltaTable("{dataset}")
print(len(dt.file_uris()), dt.to_pyarrow_table().num_rows)
print(by_source(dt.to_pyarrow_table()))
"#
            );
            let text = crate::util::python_using(&["pyarrow", "deltalake"], &script);
            let (counts, groups) = text.split_once('\n').unwrap();
            assert_eq!(counts, format!("{days} {}", expected.len()));
            assert_eq!(groups.trim_end(), by_source);
        }
        // Nothing left to do.
        let again = trailql(&["compact", &dataset]);
        assert!(
            stderr(&again).contains("nothing to compact"),
            "{}",
            stderr(&again)
        );
    }
}

#[test]
fn ddl_describes_the_dataset_and_duckdb_runs_its_view() {
    let (run, dataset) = crate::util::convert(&[&crate::util::data_dir()], &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let root = dataset.path().display().to_string();
    let ddl = |engine: &str| {
        let out = trailql(&[
            "ddl",
            &root,
            "--engine",
            engine,
            "--location",
            "s3://lake/ct/",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let athena = ddl("athena");
    for field in trailql_schema::arrow_schema().fields() {
        assert!(
            athena.contains(&format!("`{}` ", field.name())),
            "{} missing:\n{athena}",
            field.name()
        );
    }
    assert!(
        athena.contains("PARTITIONED BY (`date` string)"),
        "{athena}"
    );
    assert!(athena.contains("LOCATION 's3://lake/ct/'"), "{athena}");
    assert!(
        athena.contains("'storage.location.template' = 's3://lake/ct/date=${date}'"),
        "{athena}"
    );
    assert!(athena.contains("`eventTime` timestamp"), "{athena}");
    let spark = ddl("spark");
    assert!(
        spark.contains("USING PARQUET\nPARTITIONED BY (`date`)"),
        "{spark}"
    );
    assert!(spark.contains("RECOVER PARTITIONS"), "{spark}");
    let trino = ddl("trino");
    assert!(trino.contains("partitioned_by = ARRAY['date']"), "{trino}");
    assert!(
        trino.contains("\"date\" varchar\n)"),
        "Trino wants partition columns last:\n{trino}"
    );

    // The DuckDB view runs, and answers as trailql does.
    let view = trailql(&["ddl", &root, "--engine", "duckdb"]);
    let view = String::from_utf8(view.stdout).unwrap();
    let script = format!(
        r#"
import duckdb
con = duckdb.connect()
con.execute("""{view}""")
print(con.execute("select count(*), count(distinct date), count(distinct eventID) from cloudtrail").fetchone())
"#
    );
    let ours = trailql(&[
        "query",
        &root,
        "SELECT count(*), count(DISTINCT date), count(DISTINCT eventID) FROM cloudtrail",
        "--format",
        "csv",
    ]);
    let ours = String::from_utf8_lossy(&ours.stdout);
    let ours = ours.lines().nth(1).unwrap().replace(',', ", ");
    assert_eq!(crate::util::python(&script).trim(), format!("({ours})"));
}
