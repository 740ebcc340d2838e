//! `trailql generate`: realistic CloudTrail archives for benchmarks, deterministic for a seed.
//!
//! Events are drawn from real templates (by default the real events in `tests/data`) and given
//! new identities, accounts, regions, addresses, times and ids. Files follow AWS's layout and
//! names, one gzip stream each, with heavy-tailed sizes like real deliveries (median about a
//! hundred events, a long tail of files with thousands).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::Value;

/// Generate a corpus of CloudTrail archives shaped like real deliveries.
#[derive(clap::Args)]
pub struct Args {
    /// Folder to write the `AWSLogs/` tree into.
    out: PathBuf,

    /// Number of events.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,

    /// Random seed: the same seed gives the same corpus.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Days the corpus spans, starting 2024-03-01.
    #[arg(long, default_value_t = 30)]
    days: u32,

    /// Folder of real CloudTrail JSON files whose events serve as templates.
    #[arg(long, default_value = "tests/data")]
    templates: PathBuf,
}

const ACCOUNTS: usize = 12;
const REGIONS: &[&str] = &[
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
    "ap-northeast-1",
];
const USERS: usize = 400;
const ADDRESSES: usize = 5000;

/// One file to write: where, when, how many events.
struct Planned {
    account: usize,
    region: usize,
    day: u32,
    minute: u32,
    events: usize,
    seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let templates = load_templates(&args.templates)?;
    anyhow::ensure!(
        !templates.is_empty(),
        "no template events under {}",
        args.templates.display()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut plan = Vec::new();
    let mut left = args.events;
    while left > 0 {
        // log-normal file sizes: median 100, long tail; AWS caps nothing, we cap at 20,000.
        let normal: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
        let size = ((100f64.ln() + 1.3 * normal).exp() as usize)
            .clamp(1, 20_000)
            .min(left);
        plan.push(Planned {
            account: rng.random_range(0..ACCOUNTS),
            region: weighted(&mut rng, REGIONS.len()),
            day: rng.random_range(0..args.days.max(1)),
            minute: rng.random_range(0..24 * 12) * 5,
            events: size,
            seed: rng.random(),
        });
        left -= size;
    }
    let bytes: u64 = plan
        .par_iter()
        .map(|p| write_file(&args.out, p, &templates))
        .collect::<anyhow::Result<Vec<u64>>>()?
        .into_iter()
        .sum();
    eprintln!(
        "wrote {} events in {} files ({:.1} MB gzipped) under {}",
        args.events,
        plan.len(),
        bytes as f64 / 1e6,
        args.out.join("AWSLogs").display()
    );
    Ok(0)
}

/// An index in `0..n`, low indices far more likely (Zipf-like).
fn weighted(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let u: f64 = rng.random();
    ((n as f64).powf(u) - 1.0) as usize % n
}

fn account_id(i: usize) -> String {
    format!("{:012}", 100_000_000_000u64 + i as u64 * 7_919_191)
}

fn load_templates(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let mut events = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("templates: {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let v: Value = serde_json::from_slice(&std::fs::read(&path)?)
                    .with_context(|| format!("{}", path.display()))?;
                match v {
                    Value::Array(items) => events.extend(items),
                    Value::Object(mut o) => {
                        if let Some(Value::Array(items)) = o.remove("Records") {
                            events.extend(items);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    // Sort for determinism (read_dir order is not).
    events.sort_by_cached_key(|e| e["eventID"].as_str().unwrap_or_default().to_string());
    Ok(events)
}

fn write_file(root: &Path, p: &Planned, templates: &[Value]) -> anyhow::Result<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let account = account_id(p.account);
    let region = REGIONS[p.region];
    let date = chrono::NaiveDate::from_ymd_opt(2024, 3, 1).expect("valid")
        + chrono::Days::new(p.day.into());
    let start = date.and_hms_opt(0, 0, 0).expect("valid").and_utc()
        + chrono::Duration::minutes(p.minute.into());
    let mut records = Vec::with_capacity(p.events);
    for _ in 0..p.events {
        let mut e = templates[weighted_template(&mut rng, templates.len())].clone();
        let at = start - chrono::Duration::seconds(rng.random_range(0..900));
        vary(
            &mut e,
            &mut rng,
            &account,
            region,
            &at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        records.push(e);
    }
    // Events near midnight are delivered in the next day's folder, as AWS does.
    let delivered = start + chrono::Duration::minutes(rng.random_range(1..15));
    let dir = root.join(format!(
        "AWSLogs/{account}/CloudTrail/{region}/{}",
        delivered.format("%Y/%m/%d")
    ));
    std::fs::create_dir_all(&dir)?;
    let suffix: String = (0..16)
        .map(|_| {
            char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                    [rng.random_range(0..62)],
            )
        })
        .collect();
    let name = format!(
        "{account}_CloudTrail_{region}_{}_{suffix}.json.gz",
        delivered.format("%Y%m%dT%H%MZ")
    );
    let json = serde_json::to_vec(&serde_json::json!({ "Records": records }))?;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(json.len() / 8),
        flate2::Compression::new(6),
    );
    gz.write_all(&json)?;
    let data = gz.finish()?;
    std::fs::write(dir.join(name), &data)?;
    Ok(data.len() as u64)
}

fn weighted_template(rng: &mut ChaCha8Rng, n: usize) -> usize {
    // Mostly uniform over templates (real traffic is dominated by a few calls already).
    rng.random_range(0..n)
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    let b: [u8; 16] = rng.random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

/// Give a template event a new identity, place, time and ids.
fn vary(e: &mut Value, rng: &mut ChaCha8Rng, account: &str, region: &str, time: &str) {
    let Some(obj) = e.as_object_mut() else { return };
    let old_account = obj
        .get("recipientAccountId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    obj.insert("eventTime".into(), time.into());
    obj.insert("eventID".into(), uuid(rng).into());
    obj.insert("requestID".into(), uuid(rng).into());
    obj.insert("recipientAccountId".into(), account.into());
    obj.insert("awsRegion".into(), region.into());
    if obj
        .get("sourceIPAddress")
        .and_then(Value::as_str)
        .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok())
    {
        let i = weighted(rng, ADDRESSES) as u64;
        let ip = std::net::Ipv4Addr::from((0x0300_0000 + i * 2_654_435 % 0x0EFF_FFFF) as u32);
        obj.insert("sourceIPAddress".into(), ip.to_string().into());
    }
    if rng.random_ratio(1, 40) && obj.get("errorCode").is_none() {
        obj.insert("errorCode".into(), "AccessDenied".into());
        obj.insert(
            "errorMessage".into(),
            "User is not authorized to perform this operation".into(),
        );
    }
    if let Some(Value::Object(identity)) = obj.get_mut("userIdentity") {
        let user = format!("user-{:03}", weighted(rng, USERS));
        for (key, value) in identity.iter_mut() {
            match (key.as_str(), value) {
                ("accountId", v) => *v = account.into(),
                ("userName", v) => *v = user.clone().into(),
                ("arn", Value::String(arn)) => {
                    let mut new = arn.replace(&old_account, account);
                    if let Some(pos) = new.find(":user/") {
                        new.truncate(pos + 6);
                        new.push_str(&user);
                    }
                    *arn = new;
                }
                ("accessKeyId", Value::String(k)) if k.len() == 20 => {
                    *k = format!("AKIA{:016}", weighted(rng, USERS * 2));
                }
                _ => {}
            }
        }
    }
}
