//! Helpers shared by the integration tests: running the binary, building trail layouts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository's `tests/data` folder of real CloudTrail events.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Run `trailql` with `args`.
pub fn trailql(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trailql"))
        .args(args)
        .output()
        .expect("run trailql")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every real event under `tests/data`, as JSON values.
pub fn real_events() -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    for file in json_files(&data_dir()) {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        match v {
            serde_json::Value::Array(items) => events.extend(items),
            serde_json::Value::Object(mut o) => match o.remove("Records") {
                Some(serde_json::Value::Array(items)) => events.extend(items),
                _ => panic!("{}: no Records", file.display()),
            },
            _ => panic!("{}: not JSON events", file.display()),
        }
    }
    events
}

pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    files_ending(dir, ".json")
}

/// Files under `dir` whose names end with `suffix`, in path order.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_ending(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            out.push(path);
        }
    }
    out.sort();
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Lay the real events out as AWS delivers them: gzipped files under
/// `AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`, with a digest file and a Config file
/// beside them. Returns the number of event files written.
pub fn build_awslogs(root: &Path) -> usize {
    let mut n = 0;
    for (i, file) in json_files(&data_dir()).iter().enumerate() {
        let dir = root.join(format!(
            "AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/{:02}",
            10 + i % 3
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!(
            "123456789012_CloudTrail_us-east-1_20230710T12{:02}Z_{i:016}.json.gz",
            i % 60
        );
        std::fs::write(dir.join(name), gzip(&std::fs::read(file).unwrap())).unwrap();
        n += 1;
    }
    let digest = root.join("AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2023/07/10");
    std::fs::create_dir_all(&digest).unwrap();
    std::fs::write(
        digest.join("123456789012_CloudTrail-Digest_us-east-1_trail_us-east-1_20230710T130000Z.json.gz"),
        gzip(br#"{"awsAccountId":"123456789012","digestStartTime":"2023-07-10T12:00:00Z","logFiles":[]}"#),
    )
    .unwrap();
    let config = root.join("AWSLogs/123456789012/Config/us-east-1/2023/7/10/ConfigHistory");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("123456789012_Config_us-east-1_ConfigHistory_x.json.gz"),
        gzip(br#"{"fileVersion":"1.0","configurationItems":[]}"#),
    )
    .unwrap();
    n
}

/// Run a Python script with pyarrow and duckdb importable; its standard output.
pub fn python(script: &str) -> String {
    let out = Command::new(python_with(&["pyarrow", "duckdb"]))
        .args(["-c", script])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// A Python interpreter with `packages` importable, installing them with pip the first time.
fn python_with(packages: &[&str]) -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let probe = format!("import {}", packages.join(", "));
        let ok = Command::new("python3")
            .args(["-c", &probe])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let status = Command::new("python3")
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
                .args(packages)
                .status()
                .expect("run pip");
            assert!(status.success(), "pip install {packages:?} failed");
        }
    });
    "python3"
}

/// Convert `sources` into a fresh temporary dataset; the run's output and the folder.
pub fn convert(sources: &[&Path], extra: &[&str]) -> (Output, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec!["convert".into()];
    args.extend(sources.iter().map(|p| p.display().to_string()));
    args.extend([
        "--out".into(),
        out.path().display().to_string(),
        "--quiet".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    (trailql(&argv), out)
}

/// `trailql export` of a dataset, one JSON value per line.
pub fn export(dataset: &Path) -> Vec<serde_json::Value> {
    let out = trailql(&["export", &dataset.display().to_string()]);
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
