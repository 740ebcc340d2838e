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

fn convert_command(archive: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trailql"));
    cmd.args(["convert", &archive.display().to_string(), "--out"])
        .arg(out)
        .args(["--quiet", "--commit-every-mb", "0", "-j", "2"])
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

    let clean = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let status = convert_command(archive.path(), clean.path())
        .status()
        .unwrap();
    let clean_time = started.elapsed();
    assert!(status.success());
    let expected = ids(clean.path());
    assert!(expected.len() > 3000 && expected.values().all(|&n| n == 1));

    // Kill at points spread over a whole run (commits happen after every input file), some
    // runs twice in a row, so that the rerun itself is killed while it recovers.
    let points = 12;
    for k in 1..=points {
        let out = tempfile::tempdir().unwrap();
        let kills = if k % 3 == 0 { 2 } else { 1 };
        for _ in 0..kills {
            let mut child = convert_command(archive.path(), out.path()).spawn().unwrap();
            std::thread::sleep(clean_time.mul_f64(k as f64 / (points + 1) as f64));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            assert_only_complete_parquet_files(out.path());
        }
        let rerun = convert_command(archive.path(), out.path())
            .output()
            .unwrap();
        assert!(rerun.status.success(), "{}", stderr(&rerun));
        assert_only_complete_parquet_files(out.path());
        assert_eq!(ids(out.path()), expected, "killed at {k}/{}", points + 1);
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
    // The column keeps the value exactly; the folder name holds it Hive-escaped (readers
    // that decode Hive escapes get the value back, DataFusion shows the escaped form).
    let q = trailql(&[
        "query",
        &out.display().to_string(),
        "SELECT region, awsRegion FROM cloudtrail ORDER BY eventID",
        "--format",
        "csv",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&q.stdout),
        "region,awsRegion\n%2E%2E%2F%2E%2E%2Fx,../../x\n%2Ehidden,.hidden\n%252e%252e%252fy,%2e%2e%2fy\n",
        "{}",
        stderr(&q)
    );
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
