//! Find trail files: local paths and object-store URLs (`s3://`, `gs://`, `az://`, `file://`),
//! listed recursively, classified by the `AWSLogs/` layout, and read through `object_store`.

use std::sync::Arc;

use chrono::NaiveDate;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
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
    /// CloudTrail events (management, data, Insights, network activity, or unknown layout),
    /// and archives (zip and tar are opened; bzip2, xz, 7z are named in an error).
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
    /// The store's version tag (S3 ETag; inode, size and time for local files), used to
    /// notice an object that changed since it was converted.
    pub e_tag: Option<String>,
    pub kind: FileKind,
    /// The delivery date in an `AWSLogs/.../YYYY/MM/DD/` path.
    pub path_date: Option<NaiveDate>,
    /// Where a local file is on disk: read with one blocking call instead of the store's
    /// asynchronous API, which costs several thread hand-offs per (often tiny) file.
    pub local: Option<std::path::PathBuf>,
}

impl InputFile {
    /// Read the whole file.
    pub async fn read(&self) -> Result<bytes::Bytes, IngestError> {
        let failed = |reason: String| IngestError::Read {
            file: self.display.clone(),
            reason,
        };
        if let Some(local) = &self.local {
            return std::fs::read(local)
                .map(bytes::Bytes::from)
                .map_err(|e| failed(e.to_string()));
        }
        let read = async { self.store.get(&self.path).await?.bytes().await };
        read.await.map_err(|e| failed(e.to_string()))
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
        let StoreLocation {
            store,
            prefix,
            display_root,
        } = open_store(input, options)?;
        let listed = list_concurrently(&store, &prefix)
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
                // The same name a listing of its folder gives, so that a file is one input
                // however it was named (the log of converted inputs is keyed by it).
                display: display_root.display(meta.location.as_ref()),
                size: meta.size,
                e_tag: meta.e_tag.clone(),
                kind: FileKind::Events,
                path_date: path_date(meta.location.as_ref()),
                local: local_path(&display_root, &meta.location),
                path: meta.location,
            });
            continue;
        }
        for meta in listed {
            let rel = meta.location.as_ref();
            if is_dataset_state(rel) {
                continue; // a trailql dataset's own log, inside a folder being read
            }
            let display = display_root.display(rel);
            files.push(InputFile {
                store: store.clone(),
                kind: classify(rel),
                path_date: path_date(rel),
                display,
                size: meta.size,
                e_tag: meta.e_tag.clone(),
                local: local_path(&display_root, &meta.location),
                path: meta.location,
            });
        }
    }
    files.sort_by(|a, b| a.display.cmp(&b.display));
    files.dedup_by(|a, b| a.display == b.display);
    Ok(files)
}

/// The path on disk of a file of a local store.
fn local_path(root: &DisplayRoot, location: &StorePath) -> Option<std::path::PathBuf> {
    match root {
        DisplayRoot::Local => LocalFileSystem::new().path_to_filesystem(location).ok(),
        DisplayRoot::Url(_) => None,
    }
}

/// Folders listed at once while walking a tree.
const LIST_CONCURRENCY: usize = 32;

/// Every object under `prefix`, found by walking its folders with up to [`LIST_CONCURRENCY`]
/// listings in flight: a trail bucket holds one folder per account, region and day, so this
/// takes a few round trips per level instead of one sequential page per thousand objects.
pub async fn list_concurrently(
    store: &Arc<dyn ObjectStore>,
    prefix: &StorePath,
) -> Result<Vec<ObjectMeta>, object_store::Error> {
    let mut objects = Vec::new();
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut queue = vec![prefix.clone()];
    loop {
        while pending.len() < LIST_CONCURRENCY {
            let Some(folder) = queue.pop() else { break };
            let store = store.clone();
            pending.push(async move { store.list_with_delimiter(Some(&folder)).await });
        }
        match pending.try_next().await? {
            Some(listing) => {
                objects.extend(listing.objects);
                queue.extend(listing.common_prefixes);
            }
            None if queue.is_empty() => return Ok(objects),
            None => {}
        }
    }
}

/// A store and a place in it, as the user named it (local path or URL).
#[derive(Debug, Clone)]
pub struct StoreLocation {
    pub store: Arc<dyn ObjectStore>,
    /// The object or folder named, within `store`.
    pub prefix: StorePath,
    pub display_root: DisplayRoot,
}

/// How to show an object of a store: under the local path or URL the user typed.
#[derive(Debug, Clone)]
pub enum DisplayRoot {
    Local,
    Url(String),
}

impl DisplayRoot {
    /// The local path or URL of `location`.
    pub fn display(&self, location: &str) -> String {
        match self {
            DisplayRoot::Local => format!("/{location}"),
            DisplayRoot::Url(base) => format!("{base}{location}"),
        }
    }
}

/// Open the store behind a local path (which must exist) or a URL. S3, GCS and Azure take
/// credentials the standard way (environment, web identity, instance or container metadata);
/// requests are retried with backoff on throttling and server errors.
pub fn open_store(input: &str, options: &StoreOptions) -> Result<StoreLocation, IngestError> {
    let bad = |reason: String| IngestError::Read {
        file: input.to_string(),
        reason,
    };
    if let Some(url) = Url::parse(input).ok().filter(|u| u.scheme().len() > 1) {
        let store = url_store(&url, options).map_err(|e| bad(e.to_string()))?;
        let (_, prefix) = object_store::parse_url(&url).map_err(|e| bad(e.to_string()))?;
        let base = format!("{}://{}/", url.scheme(), url.host_str().unwrap_or_default());
        return Ok(StoreLocation {
            store,
            prefix,
            display_root: DisplayRoot::Url(base),
        });
    }
    let path = std::fs::canonicalize(input).map_err(|e| {
        bad(match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or folder".into(),
            _ => e.to_string(),
        })
    })?;
    let prefix = StorePath::from_absolute_path(&path).map_err(|e| bad(e.to_string()))?;
    Ok(StoreLocation {
        store: Arc::new(LocalFileSystem::new()),
        prefix,
        display_root: DisplayRoot::Local,
    })
}

/// A client for the bucket of `url`, configured from the environment first, then from the
/// URL and `options`.
fn url_store(
    url: &Url,
    options: &StoreOptions,
) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    use object_store::ObjectStoreScheme;
    let (scheme, _) = ObjectStoreScheme::parse(url)?;
    Ok(match scheme {
        ObjectStoreScheme::AmazonS3 => {
            let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
            if let Some(region) = &options.region {
                builder = builder.with_region(region);
            }
            if let Some(endpoint) = &options.endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            Arc::new(builder.build()?)
        }
        ObjectStoreScheme::GoogleCloudStorage => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .build()?,
        ),
        ObjectStoreScheme::MicrosoftAzure => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()?,
        ),
        _ => Arc::from(object_store::parse_url(url)?.0),
    })
}

/// Whether `path` lies in a dataset's state folder (trailql's log or a Delta log).
fn is_dataset_state(path: &str) -> bool {
    path.split('/')
        .any(|s| s == "_trailql" || s == "_delta_log")
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
    let stem = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"));
    let name = stem.unwrap_or(&name);
    // Archives are data: zip and tar (gzipped or not) are opened, the others read far enough
    // to be named in an error, never passed over in silence.
    let archive = [".zip", ".bz2", ".xz", ".7z", ".tar", ".tgz"]
        .iter()
        .any(|e| name.ends_with(e));
    // A CloudWatch Logs export names its files `000000.gz`, `000001.gz`, ...
    let log_export = stem.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    if name.contains("cloudtrail-digest") {
        FileKind::Digest
    } else if log_export
        || archive
        || [".json", ".jsonl", ".ndjson"]
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
        let log_export = "exports/d1c1b2a3/123456789012_CloudTrail_us-east-1/000000.gz";
        assert_eq!(classify(log_export), FileKind::Events);
        assert_eq!(classify("exports/aws-logs-write-test"), FileKind::NotJson);
        assert_eq!(classify("logs/access.log.gz"), FileKind::NotJson);
        assert_eq!(classify("exports/events.json.zst"), FileKind::Events);
        assert_eq!(classify("ir/trail-logs.zip"), FileKind::Events);
        assert_eq!(classify("ir/trail-logs.tar.gz"), FileKind::Events);
    }

    #[test]
    fn reads_the_delivery_date_from_the_path() {
        let p = "AWSLogs/123456789012/CloudTrail/eu-west-1/2023/07/10/f.json.gz";
        assert_eq!(path_date(p), NaiveDate::from_ymd_opt(2023, 7, 10));
        assert_eq!(path_date("some/other/file.json"), None);
    }
}
