//! `trailql convert` and `trailql export` over real and damaged inputs.

use std::collections::HashMap;

use serde_json::Value;

use crate::util::*;

fn by_event_id(events: Vec<Value>) -> HashMap<String, Vec<Value>> {
    let mut map: HashMap<String, Vec<Value>> = HashMap::new();
    for e in events {
        let id = e["eventID"].as_str().unwrap_or_default().to_string();
        map.entry(id).or_default().push(e);
    }
    for v in map.values_mut() {
        v.sort_by_key(|e| e.to_string());
    }
    map
}

#[test]
fn every_real_event_round_trips_through_parquet() {
    let input = real_events();
    assert!(
        input.len() > 3000,
        "the real sample has {} events",
        input.len()
    );
    let (run, dataset) = convert(&[&data_dir()], &[]);
    // tests/data holds a README and two licenses: skipped as "not JSON", which is no loss.
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let output = export(dataset.path());
    assert_eq!(output.len(), input.len());
    let (want, got) = (by_event_id(input), by_event_id(output));
    for (id, events) in &want {
        assert_eq!(
            got.get(id),
            Some(events),
            "event {id} differs after the round trip"
        );
    }
}

#[test]
fn awslogs_layout_skips_digests_and_other_services_without_error() {
    let root = tempfile::tempdir().unwrap();
    let files = build_awslogs(root.path());
    let out = tempfile::tempdir().unwrap();
    let run = trailql(&[
        "convert",
        &root.path().display().to_string(),
        "--out",
        &out.path().display().to_string(),
    ]);
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("from {files} files")), "{err}");
    assert!(err.contains("skipped 1 file: CloudTrail digest"), "{err}");
    assert!(
        err.contains("skipped 1 file: other service's logs"),
        "{err}"
    );
    assert_eq!(export(out.path()).len(), real_events().len());
}

#[test]
fn zip_and_tar_archives_are_read_member_by_member_as_their_files_would_be() {
    // An AWSLogs tree as an incident responder receives it: zipped, or tarred and gzipped
    // (by Python's zipfile and tarfile, as other tools make them), with a read-me beside the
    // logs, one trail file cut off mid-record and an older zip inside.
    let root = tempfile::tempdir().unwrap();
    let tree = root.path().join("tree");
    build_awslogs(&tree);
    std::fs::write(tree.join("README.txt"), "copied from the customer's bucket").unwrap();
    let day = "AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/10";
    std::fs::write(
        tree.join(day).join("broken.json"),
        br#"{"Records":[{"eventName":"#,
    )
    .unwrap();
    let (zip, tgz) = (
        root.path().join("evidence.zip"),
        root.path().join("evidence.tar.gz"),
    );
    python_using(
        &[],
        &format!(
            r#"
import os, tarfile, zipfile
tree = {tree:?}
with zipfile.ZipFile(os.path.join(tree, "older.zip"), "w") as z:
    z.writestr("AWSLogs/old.json", '{{"Records":[]}}')
with zipfile.ZipFile({zip:?}, "w", zipfile.ZIP_DEFLATED) as z:
    for folder, _, names in sorted(os.walk(tree)):
        for name in sorted(names):
            path = os.path.join(folder, name)
            z.write(path, os.path.relpath(path, tree))
with tarfile.open({tgz:?}, "w:gz") as t:
    t.add(tree, arcname=".")
"#
        ),
    );
    let want = by_event_id(real_events());
    for archive in [&zip, &tgz] {
        let (run, dataset) = convert(&[archive], &[]);
        let err = stderr(&run);
        // The cut-off member and the zip inside are skipped and named, inside their archive;
        // the digest, the other service's logs and the read-me are passed over as in a folder.
        assert_eq!(run.status.code(), Some(1), "{err}");
        let broken = format!("{}!/{day}/broken.json: invalid JSON", archive.display());
        let nested = format!("{}!/older.zip: a zip archive", archive.display());
        assert!(
            err.contains(&broken) && err.contains(&nested),
            "{broken}, {nested} not in: {err}"
        );
        assert_eq!(err.lines().count(), 2, "two errors only: {err}");
        assert_eq!(
            by_event_id(export(dataset.path())),
            want,
            "{}",
            archive.display()
        );
    }
    // A tar.gz cut off two thirds in: the members before the damage are kept, the damage named.
    let whole = std::fs::read(&tgz).unwrap();
    let cut = root.path().join("cut.tar.gz");
    std::fs::write(&cut, &whole[..whole.len() * 2 / 3]).unwrap();
    let (run, dataset) = convert(&[&cut], &[]);
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cut.tar.gz: corrupt or truncated gzip data") && !err.contains("panicked"),
        "{err}"
    );
    let kept = export(dataset.path()).len();
    assert!(
        kept > 0 && kept < real_events().len(),
        "{kept} events kept: {err}"
    );
    // A raw query reads the archive with the same reader.
    let out = trailql(&[
        "query",
        &zip.display().to_string(),
        "--",
        "SELECT count(*) AS n FROM cloudtrail",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&real_events().len().to_string()),
        "{text} {}",
        stderr(&out)
    );
}

#[test]
fn edge_cases_survive_exactly() {
    let src = fixture("edge-cases.json");
    let (run, dataset) = convert(&[&src], &["--partition-by", "none"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let text =
        String::from_utf8(trailql(&["export", &dataset.path().display().to_string()]).stdout)
            .unwrap();
    let input: Value = serde_json::from_slice(&std::fs::read(&src).unwrap()).unwrap();
    let want = by_event_id(input["Records"].as_array().unwrap().clone());
    let got = by_event_id(
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    );
    assert_eq!(got, want);
    // Number text and escapes are kept as written, not re-encoded through a double.
    for exact in [
        "123456789012345678901234567890",
        "524.0",
        "9.48587e-05",
        "-0.0",
        r"a\u0000b",
        r"\ud83d\ude00",
        r"\u003d",
    ] {
        assert!(text.contains(exact), "{exact} lost from {text}");
    }
    // Repeated keys: the last one wins, as in every JSON reader.
    assert!(text.contains("DupLast"));
}

#[test]
fn typed_columns_hold_best_effort_values_and_unmapped_holds_the_rest() {
    let (run, dataset) = convert(&[&fixture("edge-cases.json")], &["--partition-by", "none"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let script = format!(
        r#"
import duckdb
con = duckdb.connect()
rows = con.execute("select eventID, readOnly, userIdentity.type, _unmapped, requestParameters, responseElements, eventTime::varchar from read_parquet('{}/**/*.parquet') order by eventID").fetchall()
for r in rows: print(r)
"#,
        dataset.path().display()
    );
    let text = python(&script);
    let lines: Vec<&str> = text.lines().collect();
    // edge-1: readOnly "true" is read as true and the original string kept in _unmapped.
    assert!(
        lines[0].starts_with("('edge-1', True, None,"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(r#""readOnly":"true""#), "{}", lines[0]);
    assert!(lines[0].contains(r#""userIdentity":"a string where an object belongs""#));
    assert!(lines[0].contains(r#""managementEvent":null"#));
    // {} stays {}, and "" stays "": distinct from null.
    assert!(lines[0].contains("'{}'"), "{}", lines[0]);
    // edge-2: an unparseable eventTime is NULL in the column and kept as text.
    assert!(
        lines[1].contains(r#""eventTime":"not a time""#),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with("None)"), "{}", lines[1]);
}

#[test]
fn bad_inputs_are_named_skipped_and_never_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let good = json_files(&data_dir())
        .into_iter()
        .find(|p| p.to_string_lossy().contains("invictus"))
        .unwrap();
    let good_bytes = std::fs::read(&good).unwrap();
    let good_events = serde_json::from_slice::<Value>(&good_bytes).unwrap()["Records"]
        .as_array()
        .unwrap()
        .len();
    std::fs::write(dir.path().join("good.json"), &good_bytes).unwrap();
    let gz = gzip(&good_bytes);
    std::fs::write(
        dir.path().join("truncated.json.gz"),
        &gz[..gz.len() * 2 / 3],
    )
    .unwrap();
    std::fs::write(
        dir.path().join("invalid.json"),
        br#"{"Records":[{"eventName":"A","eventID":"a"},{"eventName":"B","#,
    )
    .unwrap();
    std::fs::write(dir.path().join("garbage.json"), b"this is not json").unwrap();
    std::fs::write(dir.path().join("empty.json"), b"").unwrap();
    std::fs::write(
        dir.path().join("not-cloudtrail.json"),
        br#"{"hello":"world"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("numbers.json"), b"[1,2,3]").unwrap();
    // A whole member, then junk whose last four bytes read as a 2 GiB size in the trailer.
    let mut junk_after = gz.clone();
    junk_after.extend_from_slice(b"junk\xff\xff\xff\x7f");
    std::fs::write(dir.path().join("junk-after.json.gz"), &junk_after).unwrap();
    // Valid JSON simd-json refuses: a number beyond f64 (kept), next to a malformed one.
    std::fs::write(
        dir.path().join("huge-number.json"),
        br#"{"Records":[{"eventName":"H","eventID":"huge","requestParameters":{"n":1e400}},{"eventName":"M","eventID":"malformed","requestParameters":{"n":1e400x}}]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("lines.jsonl"), b"{\"eventName\":\"L1\",\"eventID\":\"l1\"}\n{broken\n{\"eventName\":\"L3\",\"eventID\":\"l3\"}\n").unwrap();
    // Bytes that are not UTF-8 in one event's text: read as U+FFFD, the events kept.
    std::fs::write(
        dir.path().join("not-utf8.json"),
        b"{\"Records\":[{\"eventName\":\"U\",\"eventID\":\"u1\",\"userAgent\":\"ab\xff\"},{\"eventName\":\"U\",\"eventID\":\"u2\"}]}",
    )
    .unwrap();
    // Read whole: gzip inside gzip, zstd, UTF-16 with a byte-order mark.
    std::fs::write(dir.path().join("twice.json.gz"), gzip(&gz)).unwrap();
    let zst = zstd::bulk::compress(&good_bytes, 3).unwrap();
    std::fs::write(dir.path().join("good.json.zst"), zst).unwrap();
    let utf16: Vec<u8> = String::from_utf8(good_bytes.clone())
        .unwrap()
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    std::fs::write(
        dir.path().join("utf16.json"),
        [&[0xFF, 0xFE][..], &utf16].concat(),
    )
    .unwrap();
    // Not opened, but named: bzip2. A zip cut off before its directory: named as damaged.
    std::fs::write(dir.path().join("trail-logs.json.bz2"), b"BZh91AY&SY").unwrap();
    std::fs::write(dir.path().join("trail-logs.zip"), b"PK\x03\x04 a zip").unwrap();

    let (run, dataset) = convert(&[dir.path()], &[]);
    let err = stderr(&run);
    assert_eq!(
        run.status.code(),
        Some(1),
        "skipped input must give exit code 1: {err}"
    );
    for name in [
        "truncated.json.gz",
        "invalid.json",
        "garbage.json",
        "empty.json",
        "not-cloudtrail.json",
        "numbers.json",
        "lines.jsonl",
        "junk-after.json.gz",
        "huge-number.json record 1",
        "trail-logs.json.bz2: a bzip2 archive",
        "trail-logs.zip: corrupt or truncated zip data",
    ] {
        assert!(err.contains(name), "{name} not named in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("lines.jsonl record 2"),
        "the bad line is named: {err}"
    );
    assert!(
        err.contains("mended: ")
            && err.contains("not-utf8.json: bytes that are not UTF-8 at byte 59"),
        "{err}"
    );
    // Exported as written: `1e400` is valid JSON that serde_json (like simd-json) refuses.
    let out = trailql(&["export", &dataset.path().display().to_string()]);
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    let lines = String::from_utf8(out.stdout).unwrap();
    let (huge, lines): (Vec<&str>, Vec<&str>) = lines.lines().partition(|l| l.contains("1e400"));
    assert_eq!(huge.len(), 1, "{huge:?}");
    assert!(
        huge[0].contains(r#""eventID":"huge""#)
            && huge[0].contains(r#""requestParameters":{"n":1e400}"#),
        "{huge:?}"
    );
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = events
        .iter()
        .filter_map(|e| e["eventID"].as_str())
        .collect();
    // Every good record is kept: the good file, the complete records of the damaged files
    // (all of the file with junk after its member).
    assert!(
        ids.contains(&"a") && ids.contains(&"l1") && ids.contains(&"l3"),
        "{ids:?}"
    );
    let mended = events
        .iter()
        .find(|e| e["eventID"] == "u1")
        .expect("u1 is kept");
    assert_eq!(mended["userAgent"], "ab\u{FFFD}");
    assert!(ids.contains(&"u2"), "{ids:?}");
    assert!(!ids.contains(&"malformed"), "{ids:?}");
    // Less the good file, the file with junk after its member, the three in other encodings,
    // a, l1, l3, u1 and u2 (huge is apart).
    let salvaged = ids.len() - 5 * good_events - 5;
    assert!(
        salvaged > 0 && salvaged < good_events,
        "the truncated gzip kept {salvaged} of {good_events}"
    );
}

#[test]
fn other_shapes_are_detected_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let events = real_events();
    let ndjson: String = events[..50].iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(dir.path().join("export.ndjson"), &ndjson).unwrap();
    std::fs::write(
        dir.path().join("array.json"),
        serde_json::to_vec(&events[50..80]).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("one.json"),
        serde_json::to_vec(&events[80]).unwrap(),
    )
    .unwrap();
    // Three gzip members, as some tools append them.
    let doc = serde_json::to_vec(&serde_json::json!({"Records": events[81..100]})).unwrap();
    let third = doc.len() / 3;
    let mut multi = gzip(&doc[..third]);
    multi.extend(gzip(&doc[third..2 * third]));
    multi.extend(gzip(&doc[2 * third..]));
    std::fs::write(dir.path().join("multi.json.gz"), multi).unwrap();
    // Two trail files joined by `cat`: two whole documents, one after the other.
    let mut joined = Vec::new();
    for part in [&events[100..110], &events[110..130]] {
        let doc = serde_json::to_vec(&serde_json::json!({ "Records": part })).unwrap();
        joined.extend(gzip(&doc));
    }
    std::fs::write(dir.path().join("joined.json.gz"), joined).unwrap();
    // A CloudWatch Logs export: `000000.gz` in a folder per log stream, a timestamp per line.
    let stream = dir
        .path()
        .join("export/task/123456789012_CloudTrail_us-east-1");
    std::fs::create_dir_all(&stream).unwrap();
    let lines: String = events[130..160]
        .iter()
        .map(|e| format!("2024-03-01T00:00:00.000Z {e}\n"))
        .collect();
    std::fs::write(stream.join("000000.gz"), gzip(lines.as_bytes())).unwrap();
    std::fs::write(
        dir.path().join("export/aws-logs-write-test"),
        "Permission Check Successful",
    )
    .unwrap();
    // EventBridge events as a Firehose stream writes them: back to back, no separator.
    let wrapped: String = events[160..170]
        .iter()
        .map(|e| {
            let envelope = serde_json::json!({"version": "0", "id": e["eventID"], "detail-type": "AWS API Call via CloudTrail", "detail": e});
            envelope.to_string()
        })
        .collect();
    std::fs::write(dir.path().join("firehose.json"), wrapped).unwrap();
    // `aws cloudtrail lookup-events` output, as responders save it: each event as JSON text.
    let lookup: Vec<Value> = events[170..190]
        .iter()
        .map(|e| {
            serde_json::json!({"EventId": e["eventID"], "EventName": e["eventName"], "ReadOnly": "true", "Resources": [], "CloudTrailEvent": e.to_string()})
        })
        .collect();
    std::fs::write(
        dir.path().join("lookup-events.json"),
        serde_json::to_vec(&serde_json::json!({"Events": lookup, "NextToken": "x"})).unwrap(),
    )
    .unwrap();
    // Trail files gathered by `jq -s . *.json`: an array of their objects.
    let slurped: Vec<Value> = [&events[190..195], &events[195..210]]
        .iter()
        .map(|part| serde_json::json!({ "Records": part }))
        .collect();
    std::fs::write(
        dir.path().join("slurped.json"),
        serde_json::to_vec(&slurped).unwrap(),
    )
    .unwrap();
    let (run, dataset) = convert(&[dir.path()], &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let mut exported = export(dataset.path());
    let mut envelopes = 0;
    for e in &mut exported {
        // The envelope of an EventBridge event is kept beside the event.
        if let Some(envelope) = e.as_object_mut().unwrap().remove("eventBridgeEnvelope") {
            assert_eq!(envelope["id"], e["eventID"]);
            assert_eq!(envelope["detail-type"], "AWS API Call via CloudTrail");
            envelopes += 1;
        }
        // So is the wrapper of lookup-events' output.
        if let Some(envelope) = e.as_object_mut().unwrap().remove("lookupEventsEnvelope") {
            assert_eq!(envelope["EventId"], e["eventID"]);
            assert!(envelope.get("CloudTrailEvent").is_none());
            envelopes += 1;
        }
    }
    assert_eq!(envelopes, 30);
    let got = by_event_id(exported);
    assert_eq!(got, by_event_id(events[..210].to_vec()));
}

#[test]
fn output_reads_the_same_in_pyarrow_and_duckdb() {
    let (run, dataset) = convert(&[&data_dir()], &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let script = format!(
        r#"
import pyarrow.dataset as ds, duckdb
root = "{root}"
t = ds.dataset(root, format="parquet", partitioning="hive").to_table()
con = duckdb.connect()
n = con.execute(f"select count(*) from read_parquet('{{root}}/**/*.parquet', hive_partitioning=true)").fetchone()[0]
top = con.execute(f"select eventName, count(*) c from read_parquet('{{root}}/**/*.parquet') group by 1 order by 2 desc, 1 limit 1").fetchone()
arns = con.execute(f"select count(distinct userIdentity.arn) from read_parquet('{{root}}/**/*.parquet')").fetchone()[0]
print(t.num_rows, n, top[0], top[1], arns, t.schema.field("eventTime").type)
"#,
        root = dataset.path().display()
    );
    let text = python(&script);
    let fields: Vec<&str> = text.split_whitespace().collect();
    let events = real_events();
    assert_eq!(fields[0], events.len().to_string());
    assert_eq!(fields[1], events.len().to_string());
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        *counts.entry(e["eventName"].as_str().unwrap()).or_default() += 1;
    }
    let (name, count) = counts
        .iter()
        .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))
        .unwrap();
    assert_eq!((fields[2], fields[3]), (*name, count.to_string().as_str()));
    let arns: std::collections::HashSet<&str> = events
        .iter()
        .filter_map(|e| e["userIdentity"]["arn"].as_str())
        .collect();
    assert_eq!(fields[4], arns.len().to_string());
    assert!(text.contains("timestamp[us, tz=UTC]"), "{text}");
}

#[test]
fn files_are_sorted_by_event_time_and_no_temporary_file_is_left() {
    let (run, dataset) = convert(&[&data_dir()], &["--partition-by", "none"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let names: Vec<String> = std::fs::read_dir(dataset.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "_trailql")
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("part-") && n.ends_with(".parquet")),
        "{names:?}"
    );
    let script = format!(
        r#"
import pyarrow.parquet as pq, glob
for f in glob.glob("{}/*.parquet"):
    t = pq.read_table(f, columns=["eventTime"]).column(0).to_pylist()
    assert t == sorted(t), f
    md = pq.ParquetFile(f).metadata
    assert md.row_group(0).column(0).compression == "ZSTD", md.row_group(0).column(0).compression
print("ok")
"#,
        dataset.path().display()
    );
    assert_eq!(python(&script).trim(), "ok");
}

#[test]
fn missing_source_and_bad_options_fail_in_plain_words() {
    let out = tempfile::tempdir().unwrap();
    let run = trailql(&[
        "convert",
        "/no/such/folder",
        "--out",
        &out.path().display().to_string(),
    ]);
    assert_eq!(run.status.code(), Some(2));
    let err = stderr(&run);
    assert!(
        err.contains("/no/such/folder") && err.contains("no such file or folder"),
        "{err}"
    );
    let run = trailql(&["convert", ".", "--out", "x", "--partition-by", "month"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("unknown partition key `month`"));
}

#[test]
fn generated_corpora_are_deterministic_and_convert_whole() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let templates = data_dir().display().to_string();
    for dir in [&a, &b] {
        let run = trailql(&[
            "generate",
            &dir.path().display().to_string(),
            "--events",
            "3000",
            "--seed",
            "9",
            "--templates",
            &templates,
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
    }
    let files = files_ending(a.path(), ".json.gz");
    assert!(files.len() > 5, "{} files", files.len());
    for f in &files {
        let twin = b.path().join(f.strip_prefix(a.path()).unwrap());
        assert_eq!(
            std::fs::read(f).unwrap(),
            std::fs::read(&twin).unwrap(),
            "{}",
            f.display()
        );
        assert!(
            f.to_string_lossy().contains("/AWSLogs/")
                && f.to_string_lossy().contains("_CloudTrail_")
        );
    }
    let (run, dataset) = convert(&[a.path()], &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let events = export(dataset.path());
    assert_eq!(events.len(), 3000);
    let ids: std::collections::HashSet<&str> = events
        .iter()
        .map(|e| e["eventID"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3000, "event ids are unique");
}

#[test]
fn a_large_single_file_is_split_across_workers_and_loses_nothing() {
    // About 24 MB of JSON in one gzip file: above the 4 MiB split threshold, so it is decoded
    // as parallel runs of events, a few runs at a time, each run's batches sent on at once.
    let events = real_events();
    let mut all = Vec::new();
    for copy in 0..6 {
        for e in &events {
            let mut e = e.clone();
            e["eventID"] = format!("{copy}-{}", e["eventID"].as_str().unwrap()).into();
            all.push(e);
        }
    }
    let doc = serde_json::to_vec(&serde_json::json!({ "Records": all })).unwrap();
    assert!(doc.len() > 17 << 20, "{} bytes", doc.len());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.json.gz"), gzip(&doc)).unwrap();
    let (run, dataset) = convert(&[dir.path()], &["--threads", "2"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(by_event_id(export(dataset.path())), by_event_id(all));
}

#[test]
fn json_access_agrees_with_duckdb_on_the_real_data() {
    let (run, dataset) = convert(&[&data_dir()], &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let root = dataset.path().display().to_string();
    let ours = trailql(&[
        "query",
        &root,
        "SELECT json_get_str(requestParameters, 'bucketName') AS b, count(*) AS n FROM cloudtrail WHERE requestParameters->>'bucketName' IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1",
        "--format",
        "csv",
    ]);
    assert!(ours.status.success(), "{}", stderr(&ours));
    let script = format!(
        r#"
import duckdb
rows = duckdb.connect().execute("select json_extract_string(requestParameters, '$.bucketName') b, count(*) n from read_parquet('{root}/**/*.parquet') where json_extract_string(requestParameters, '$.bucketName') is not null group by 1 order by 2 desc, 1").fetchall()
print("b,n")
for b, n in rows: print(f"{{b}},{{n}}")
"#
    );
    assert_eq!(String::from_utf8_lossy(&ours.stdout), python(&script));
}
