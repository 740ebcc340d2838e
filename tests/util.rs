//! Helpers shared by the integration tests: running the binary, building trail layouts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

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
    python_using(&["pyarrow", "duckdb"], script)
}

/// Run a Python script with `packages` (PyPI names that are also module names) importable,
/// installing them with pip the first time; its standard output.
pub fn python_using(packages: &[&str], script: &str) -> String {
    ensure_python_packages(packages);
    // Leave without interpreter teardown once the script is done: the deltalake package's
    // native threads can abort the process at exit ("terminate called without an active
    // exception") after every line was printed. An error in the script still fails.
    let script = format!("{script}\nimport os, sys\nsys.stdout.flush()\nos._exit(0)\n");
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Install `packages` with pip unless they import already.
fn ensure_python_packages(packages: &[&str]) {
    static INSTALL: Mutex<()> = Mutex::new(());
    if packages.is_empty() {
        return;
    }
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
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
}

/// An S3-compatible server (moto's server mode, from PyPI) on a free loopback port, stopped
/// when dropped.
pub struct S3Server {
    child: std::process::Child,
    pub endpoint: String,
    port: u16,
}

impl S3Server {
    pub fn start() -> Self {
        ensure_python_packages(&["moto", "flask", "flask_cors"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto's S3 server");
        let server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        server
    }

    /// Create a bucket (moto takes unsigned requests).
    pub fn create_bucket(&self, name: &str) {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    /// Put `body` at `s3://bucket/key`.
    pub fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        use object_store::ObjectStoreExt;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(store.put(&key.into(), body.into()))
            .unwrap();
    }

    /// Run `trailql` with credentials for this server.
    pub fn trailql(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_trailql"))
            .arg(args[0])
            .args(["--endpoint", &self.endpoint, "--region", "us-east-1"])
            .args(&args[1..])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .expect("run trailql")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
