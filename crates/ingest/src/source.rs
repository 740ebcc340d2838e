//! Find trail files: local paths and object-store URLs (`s3://`, `gs://`, `az://`, `file://`),
//! listed recursively, classified by the `AWSLogs/` layout, and read through `object_store`.

use std::sync::Arc;

use chrono::NaiveDate;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::IngestError;

/// Where and how to reach an object store (for URLs; local paths need nothing).
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// `--region` for S3.
    pub region: Option<String>,
    /// `--endpoint` for S3-compatible stores (MinIO, Ceph, moto...).
    pub endpoint: Option<String>,
}

/// What a file found under an input is, judged by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// CloudTrail events (management, data, Insights, network activity, or unknown layout).
    Events,
    /// A `CloudTrail-Digest` integrity file: not events.
    Digest,
    /// Another service's logs under `AWSLogs/` (Config, ELB, VPC flow logs...).
    OtherService,
    /// Not JSON by its name (found while listing a folder).
    NotJson,
}

/// One input file, located in a store.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub store: Arc<dyn ObjectStore>,
    pub path: StorePath,
    /// How the user would write it: a local path or a URL.
    pub display: String,
    pub size: u64,
    pub kind: FileKind,
    /// The delivery date in an `AWSLogs/.../YYYY/MM/DD/` path.
    pub path_date: Option<NaiveDate>,
}

impl InputFile {
    /// Read the whole file.
    pub async fn read(&self) -> Result<bytes::Bytes, IngestError> {
        let read = async { self.store.get(&self.path).await?.bytes().await };
        read.await.map_err(|e| IngestError::Read {
            file: self.display.clone(),
            reason: e.to_string(),
        })
    }
}

/// Every file under `inputs`, in path order (which is time order within a trail folder).
/// A path named directly is always read as events; files found by listing are classified.
pub async fn discover(
    inputs: &[String],
    options: &StoreOptions,
) -> Result<Vec<InputFile>, IngestError> {
    let mut files = Vec::new();
    for input in inputs {
        let (store, prefix, display_root) = open(input, options)?;
        let listed: Vec<_> =
            store
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|e| IngestError::Read {
                    file: input.clone(),
                    reason: e.to_string(),
                })?;
        if listed.is_empty() {
            // Not a folder: a single object (or nothing at all).
            let meta = store.head(&prefix).await.map_err(|e| IngestError::Read {
                file: input.clone(),
                reason: match e {
                    object_store::Error::NotFound { .. } => "no such file or folder".into(),
                    other => other.to_string(),
                },
            })?;
            files.push(InputFile {
                store: store.clone(),
                display: input.clone(),
                size: meta.size,
                kind: FileKind::Events,
                path_date: path_date(meta.location.as_ref()),
                path: meta.location,
            });
            continue;
        }
        for meta in listed {
            let rel = meta.location.as_ref();
            let display = display_root.display(rel);
            files.push(InputFile {
                store: store.clone(),
                kind: classify(rel),
                path_date: path_date(rel),
                display,
                size: meta.size,
                path: meta.location,
            });
        }
    }
    files.sort_by(|a, b| a.display.cmp(&b.display));
    files.dedup_by(|a, b| a.display == b.display);
    Ok(files)
}

/// How to show a listed object: under the local path or URL the user typed.
enum DisplayRoot {
    Local,
    Url(String),
}

impl DisplayRoot {
    fn display(&self, location: &str) -> String {
        match self {
            DisplayRoot::Local => format!("/{location}"),
            DisplayRoot::Url(base) => format!("{base}{location}"),
        }
    }
}

fn open(
    input: &str,
    options: &StoreOptions,
) -> Result<(Arc<dyn ObjectStore>, StorePath, DisplayRoot), IngestError> {
    let bad = |reason: String| IngestError::Read {
        file: input.to_string(),
        reason,
    };
    if let Some(url) = Url::parse(input).ok().filter(|u| u.scheme().len() > 1) {
        let mut opts: Vec<(String, String)> = Vec::new();
        if url.scheme() == "s3" {
            if let Some(region) = &options.region {
                opts.push(("aws_region".into(), region.clone()));
            }
            if let Some(endpoint) = &options.endpoint {
                opts.push(("aws_endpoint".into(), endpoint.clone()));
                if endpoint.starts_with("http://") {
                    opts.push(("aws_allow_http".into(), "true".into()));
                }
            }
        }
        let (store, prefix) =
            object_store::parse_url_opts(&url, opts).map_err(|e| bad(e.to_string()))?;
        let base = format!("{}://{}/", url.scheme(), url.host_str().unwrap_or_default());
        return Ok((Arc::from(store), prefix, DisplayRoot::Url(base)));
    }
    let path = std::fs::canonicalize(input).map_err(|e| {
        bad(match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or folder".into(),
            _ => e.to_string(),
        })
    })?;
    let prefix = StorePath::from_absolute_path(&path).map_err(|e| bad(e.to_string()))?;
    Ok((Arc::new(LocalFileSystem::new()), prefix, DisplayRoot::Local))
}

/// Judge a listed file by its path.
pub fn classify(path: &str) -> FileKind {
    let segments: Vec<&str> = path.split('/').collect();
    if let Some(i) = segments.iter().position(|s| *s == "AWSLogs") {
        let rest = &segments[i + 1..];
        // AWSLogs/<account>/<Service>/... or AWSLogs/<o-org>/<account>/<Service>/...
        let service = match rest.first() {
            Some(org) if org.starts_with("o-") => rest.get(2),
            _ => rest.get(1),
        };
        match service.copied() {
            Some("CloudTrail-Digest") => return FileKind::Digest,
            Some(s) if s.starts_with("CloudTrail") => {}
            Some(_) if rest.len() > 2 => return FileKind::OtherService,
            _ => {}
        }
    }
    let name = segments
        .last()
        .copied()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.contains("cloudtrail-digest") {
        FileKind::Digest
    } else if [".json", ".jsonl", ".ndjson"]
        .iter()
        .any(|e| name.ends_with(e))
    {
        FileKind::Events
    } else {
        FileKind::NotJson
    }
}

/// The `YYYY/MM/DD` delivery date of an `AWSLogs/` path.
pub fn path_date(path: &str) -> Option<NaiveDate> {
    let segments: Vec<&str> = path.split('/').collect();
    segments.windows(3).rev().find_map(|w| {
        let ok = w[0].len() == 4 && w[1].len() == 2 && w[2].len() == 2;
        ok.then(|| {
            NaiveDate::from_ymd_opt(w[0].parse().ok()?, w[1].parse().ok()?, w[2].parse().ok()?)
        })
        .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_awslogs_layout() {
        let ct = "b/AWSLogs/123456789012/CloudTrail/us-east-1/2024/01/02/123456789012_CloudTrail_us-east-1_20240102T0000Z_abc.json.gz";
        assert_eq!(classify(ct), FileKind::Events);
        let org = "AWSLogs/o-abc123/123456789012/CloudTrail-Insight/us-east-1/2024/01/02/x.json.gz";
        assert_eq!(classify(org), FileKind::Events);
        let digest = "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/01/02/123456789012_CloudTrail-Digest_us-east-1_t_20240102T000000Z.json.gz";
        assert_eq!(classify(digest), FileKind::Digest);
        let config = "AWSLogs/123456789012/Config/us-east-1/2024/1/2/ConfigSnapshot/x.json.gz";
        assert_eq!(classify(config), FileKind::OtherService);
        assert_eq!(classify("exports/events.ndjson"), FileKind::Events);
        assert_eq!(classify("exports/README.md"), FileKind::NotJson);
    }

    #[test]
    fn reads_the_delivery_date_from_the_path() {
        let p = "AWSLogs/123456789012/CloudTrail/eu-west-1/2023/07/10/f.json.gz";
        assert_eq!(path_date(p), NaiveDate::from_ymd_opt(2023, 7, 10));
        assert_eq!(path_date("some/other/file.json"), None);
    }
}
