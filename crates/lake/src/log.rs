//! The commit log: what a dataset holds and which inputs it was made from.
//!
//! Each run appends numbered commits under `_trailql/log/` (`00000000000000000001.json`, ...),
//! one JSON object each, put with create-if-absent so two writers can never both take the same
//! number. A commit names the input objects it converted (name, size, ETag) and the data files
//! it added and removed. Data files are stored before the commit that names them: a file no
//! commit names belongs to a run that was stopped, and the next run deletes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use trailql_parquet::{DatasetLocation, WrittenFile};

use crate::LakeError;

/// The folder of trailql's own state, relative to the dataset root. Its leading `_` makes
/// Hive, Spark, Athena and Trino skip it.
pub const STATE_DIR: &str = "_trailql";
const LOG_DIR: &str = "_trailql/log";

/// One input object, as it was when converted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// The local path or URL the input was read from.
    pub name: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
}

/// One data file of the dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Relative to the dataset root.
    pub path: String,
    /// Partition column to value (`None`: missing), as in the folder names.
    pub partition: BTreeMap<String, Option<String>>,
    pub rows: u64,
    pub bytes: u64,
    /// First and last `eventTime`, microseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<(i64, i64)>,
}

impl From<&WrittenFile> for DataFile {
    fn from(f: &WrittenFile) -> Self {
        Self {
            path: f.path.clone(),
            partition: f
                .partition
                .values
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            rows: f.rows as u64,
            bytes: f.bytes,
            time_range: f.time_range,
        }
    }
}

/// What a commit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// The dataset's first commit, made before any data file is written, so that a run stopped
    /// before its first real commit is still known to be trailql's.
    Create,
    /// Inputs converted into new files.
    Convert,
    /// Files rewritten into fewer, larger ones; no rows change.
    Compact,
}

/// One commit of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Commit {
    pub version: u64,
    pub operation: Operation,
    pub run_id: String,
    /// UTC, RFC 3339.
    pub time: String,
    #[serde(default)]
    pub inputs: Vec<InputRecord>,
    #[serde(default)]
    pub added: Vec<DataFile>,
    /// Paths of files this commit takes out of the dataset.
    #[serde(default)]
    pub removed: Vec<String>,
}

impl Commit {
    /// A commit of `operation`, numbered when it is made.
    pub fn new(operation: Operation, run_id: &str) -> Self {
        Self {
            version: 0,
            operation,
            run_id: run_id.to_string(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            inputs: Vec::new(),
            added: Vec::new(),
            removed: Vec::new(),
        }
    }
}

/// The dataset as its commits leave it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct State {
    /// Converted inputs by name.
    pub inputs: HashMap<String, InputRecord>,
    /// Live data files by path.
    pub files: BTreeMap<String, DataFile>,
    /// Paths taken out of the dataset by a commit (compaction), whose files may remain.
    pub retired: BTreeSet<String>,
    /// Partition columns in folder order, read off the data files' paths.
    pub partition_columns: Vec<String>,
    /// The last commit's version (0: none yet).
    pub version: u64,
}

impl State {
    /// Apply one commit.
    pub fn apply(&mut self, commit: &Commit) {
        for input in &commit.inputs {
            self.inputs.insert(input.name.clone(), input.clone());
        }
        for path in &commit.removed {
            self.files.remove(path);
            self.retired.insert(path.clone());
        }
        for file in &commit.added {
            if self.partition_columns.is_empty() {
                self.partition_columns = file
                    .path
                    .split('/')
                    .filter_map(|seg| seg.split_once('=').map(|(k, _)| k.to_string()))
                    .collect();
            }
            self.retired.remove(&file.path);
            self.files.insert(file.path.clone(), file.clone());
        }
        self.version = self.version.max(commit.version);
    }

    /// Whether `input` was converted as it is now.
    pub fn status(&self, name: &str, size: u64, e_tag: Option<&str>) -> InputStatus {
        match self.inputs.get(name) {
            None => InputStatus::New,
            Some(seen)
                if seen.size == size
                    && (seen.e_tag.is_none() || seen.e_tag.as_deref() == e_tag) =>
            {
                InputStatus::Converted
            }
            Some(_) => InputStatus::Changed,
        }
    }
}

/// An input compared with the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputStatus {
    New,
    /// Converted before, with the same size and ETag.
    Converted,
    /// Converted before, but it has changed since.
    Changed,
}

/// Read every commit of the log.
pub(crate) async fn read(location: &DatasetLocation) -> Result<State, LakeError> {
    let mut state = read_checkpoint(location).await.unwrap_or_default();
    let log_dir = location.path(LOG_DIR);
    let mut listed: Vec<_> = location
        .store
        .list(Some(&log_dir))
        .try_collect()
        .await
        .map_err(|source| LakeError::Store {
            path: location.display(LOG_DIR),
            source,
        })?;
    let after_checkpoint = |m: &object_store::ObjectMeta| {
        m.location
            .filename()
            .and_then(|n| n.strip_suffix(".json")?.parse::<u64>().ok())
            .is_some_and(|v| v > state.version)
    };
    listed.retain(after_checkpoint);
    listed.sort_by(|a, b| a.location.cmp(&b.location));
    let commits: Vec<Commit> = futures::stream::iter(listed)
        .map(|meta| async move {
            let display = location.display(&location.rel(&meta.location).unwrap_or_default());
            let bytes = async { location.store.get(&meta.location).await?.bytes().await }
                .await
                .map_err(|source| LakeError::Store {
                    path: display.clone(),
                    source,
                })?;
            serde_json::from_slice::<Commit>(&bytes).map_err(|e| LakeError::Corrupt {
                path: display,
                reason: e.to_string(),
            })
        })
        .buffered(16)
        .try_collect()
        .await?;
    for commit in &commits {
        state.apply(commit);
    }
    Ok(state)
}

/// Checkpoints: the whole [`State`] at a version, gzipped JSON under `_trailql/checkpoint/`,
/// written every [`CHECKPOINT_EVERY`] commits so that a reader replays at most that many
/// commits (an hourly job makes 8,760 a year). A checkpoint only caches what the commits say:
/// one that is missing or unreadable is ignored, and the commits are replayed instead.
const CHECKPOINT_DIR: &str = "_trailql/checkpoint";
/// Commits between checkpoints.
pub const CHECKPOINT_EVERY: u64 = 100;

/// The state at the latest readable checkpoint, if any.
pub(crate) async fn read_checkpoint(location: &DatasetLocation) -> Option<State> {
    let mut listed: Vec<_> = location
        .store
        .list(Some(&location.path(CHECKPOINT_DIR)))
        .try_collect()
        .await
        .ok()?;
    listed.sort_by(|a, b| b.location.cmp(&a.location));
    for meta in listed {
        let Ok(got) = location.store.get(&meta.location).await else {
            continue;
        };
        let Ok(bytes) = got.bytes().await else {
            continue;
        };
        let mut json = Vec::new();
        let inflated =
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut json);
        if inflated.is_ok()
            && let Ok(state) = serde_json::from_slice::<State>(&json)
        {
            return Some(state);
        }
    }
    None
}

/// Write a checkpoint of `state` if its version calls for one. Best effort: a checkpoint that
/// fails to be written costs readers time, never correctness.
pub(crate) async fn maybe_checkpoint(location: &DatasetLocation, state: &State) {
    if state.version == 0 || !state.version.is_multiple_of(CHECKPOINT_EVERY) {
        return;
    }
    let json = serde_json::to_vec(state).expect("a state serialises");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if std::io::Write::write_all(&mut gz, &json).is_err() {
        return;
    }
    let Ok(body) = gz.finish() else { return };
    let rel = format!("{CHECKPOINT_DIR}/{:020}.json.gz", state.version);
    let _ = location
        .store
        .put(&location.path(&rel), PutPayload::from(body))
        .await;
}

/// Store `commit` as version `state.version + 1`; fails with [`LakeError::Conflict`] if that
/// version exists.
pub(crate) async fn append(
    location: &DatasetLocation,
    state: &mut State,
    mut commit: Commit,
) -> Result<u64, LakeError> {
    commit.version = state.version + 1;
    let rel = format!("{LOG_DIR}/{:020}.json", commit.version);
    let body = serde_json::to_vec_pretty(&commit).expect("a commit serialises");
    let path = location.path(&rel);
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let put = location
        .store
        .put_opts(&path, PutPayload::from(body.clone()), create)
        .await;
    match put {
        Ok(_) => {}
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => {
            return Err(LakeError::Conflict {
                path: location.display(&rel),
            });
        }
        Err(object_store::Error::NotImplemented { .. }) => {
            // A store without conditional writes: check, then put.
            if location.store.head(&path).await.is_ok() {
                return Err(LakeError::Conflict {
                    path: location.display(&rel),
                });
            }
            location
                .store
                .put(&path, PutPayload::from(body))
                .await
                .map_err(|source| LakeError::Store {
                    path: location.display(&rel),
                    source,
                })?;
        }
        Err(source) => {
            return Err(LakeError::Store {
                path: location.display(&rel),
                source,
            });
        }
    }
    location.sync(&rel).map_err(|e| LakeError::Store {
        path: location.display(&rel),
        source: object_store::Error::Generic {
            store: "local",
            source: Box::new(e),
        },
    })?;
    state.apply(&commit);
    Ok(commit.version)
}
