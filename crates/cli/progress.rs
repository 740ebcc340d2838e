//! Progress on a terminal (none when stderr is piped), and run totals for the closing summary.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use trailql_ingest::FileReport;

/// Totals of an ingest run, and its progress bar.
pub struct Tally {
    bar: ProgressBar,
    started: Instant,
    pub files: usize,
    pub events: usize,
    pub bytes_read: u64,
    pub bytes_inflated: u64,
    /// Files skipped whole, by reason.
    pub skipped: Vec<(String, usize)>,
    /// Files with some records skipped.
    pub partial_files: usize,
    /// Files read whole whose text was mended (bytes that are not UTF-8).
    pub mended_files: usize,
}

impl Tally {
    pub fn new(files_total: usize, quiet: bool) -> Self {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::with_draw_target(
                Some(files_total as u64),
                ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files  {msg}",
                )
                .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        };
        Self {
            bar,
            started: Instant::now(),
            files: 0,
            events: 0,
            bytes_read: 0,
            bytes_inflated: 0,
            skipped: Vec::new(),
            partial_files: 0,
            mended_files: 0,
        }
    }

    /// Count a file skipped before reading (digest, other service, not JSON).
    pub fn skip(&mut self, reason: &str) {
        match self.skipped.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += 1,
            None => self.skipped.push((reason.to_string(), 1)),
        }
    }

    /// Take a file's report: print its errors, count it.
    pub fn file_done(&mut self, report: FileReport) {
        self.files += 1;
        self.events += report.records;
        self.bytes_read += report.bytes_read;
        self.bytes_inflated += report.bytes_inflated;
        if !report.errors.is_empty() {
            if report.records == 0 {
                self.skip(report.errors[0].kind());
            } else if report.errors.iter().all(|e| e.is_repair()) {
                self.mended_files += 1;
            } else {
                self.partial_files += 1;
            }
            self.bar.suspend(|| {
                for e in &report.errors {
                    let what = if e.is_repair() { "mended" } else { "skipped" };
                    eprintln!("trailql: {what}: {e}");
                }
            });
        }
        self.bar.set_position(self.files as u64);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} events  {:.0} MB/s",
            self.events,
            self.bytes_inflated as f64 / 1e6 / secs
        ));
    }

    /// Whether any input was skipped, whole or in part, or read other than it was written
    /// (digests and other services' logs, recognised and skipped on purpose, do not count).
    pub fn anything_lost(&self) -> bool {
        self.partial_files > 0
            || self.mended_files > 0
            || self.skipped.iter().any(|(r, _)| !is_expected_skip(r))
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// One paragraph: files, events, bytes, throughput, skipped and why.
    pub fn summary(&self, written: Option<(usize, u64)>) -> String {
        let secs = self.elapsed().as_secs_f64().max(1e-3);
        let mut s = format!(
            "{} from {} ({:.1} MB read, {:.1} MB of JSON) in {:.2}s: {:.0} events/s, {:.0} MB/s",
            count(self.events, "event"),
            count(self.files, "file"),
            self.bytes_read as f64 / 1e6,
            self.bytes_inflated as f64 / 1e6,
            secs,
            self.events as f64 / secs,
            self.bytes_inflated as f64 / 1e6 / secs,
        );
        if let Some((files, bytes)) = written {
            s.push_str(&format!(
                "\nwrote {}, {:.1} MB",
                count(files, "Parquet file"),
                bytes as f64 / 1e6
            ));
        }
        for (reason, n) in &self.skipped {
            let note = if is_expected_skip(reason) {
                " (not events; expected)"
            } else {
                ""
            };
            s.push_str(&format!("\nskipped {}: {reason}{note}", count(*n, "file")));
        }
        if self.partial_files > 0 {
            s.push_str(&format!(
                "\n{} read in part: some records skipped (named above)",
                count(self.partial_files, "file")
            ));
        }
        if self.mended_files > 0 {
            s.push_str(&format!(
                "\n{} with bytes that are not UTF-8, read as U+FFFD (named above)",
                count(self.mended_files, "file")
            ));
        }
        s
    }
}

/// `n` and `noun`, plural unless `n` is 1: "1 file", "2 files".
pub fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

fn is_expected_skip(reason: &str) -> bool {
    matches!(
        reason,
        "CloudTrail digest" | "other service's logs" | "not JSON"
    )
}
