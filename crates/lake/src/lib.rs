//! Keep a converted CloudTrail dataset in a lake, run after run: the commit log that records
//! which inputs were converted into which files ([`log`]), recovery from a run that was
//! stopped at any point, compaction of small files, Delta Lake tables, and the catalog DDL
//! that lets Athena, Spark and Trino read what was written.
//!
//! A run is exactly-once: data files are stored first, then one commit names them together
//! with the inputs they came from. A stopped run leaves files no commit names; the next run
//! deletes them and converts those inputs again.

pub mod log;

use trailql_parquet::{DatasetLocation, is_data_file_name};

use futures::TryStreamExt;
use object_store::ObjectStoreExt;

pub use log::{Commit, DataFile, InputRecord, InputStatus, Operation, STATE_DIR, State};

/// Errors of the lake, each naming the object it concerns.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path}: unreadable commit: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "{path}: another run committed first; run again (only one writer at a time per dataset)"
    )]
    Conflict { path: String },
    #[error(
        "{path} holds Parquet files but no trailql log ({STATE_DIR}/): it was not written by this version of trailql; choose an empty folder"
    )]
    Foreign { path: String },
    #[error(transparent)]
    Write(#[from] trailql_parquet::WriteError),
}

/// A dataset and its log.
pub struct Lake {
    location: DatasetLocation,
    state: State,
}

/// What [`Lake::recover`] cleaned up.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Data files of stopped runs, or replaced by a finished compaction, now deleted.
    pub deleted: Vec<String>,
}

impl Lake {
    /// Open the dataset at `location` and read its log (an empty dataset has none).
    pub async fn open(location: DatasetLocation) -> Result<Self, LakeError> {
        let state = log::read(&location).await?;
        Ok(Self { location, state })
    }

    pub fn location(&self) -> &DatasetLocation {
        &self.location
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Make the dataset ready for a writer. A new dataset gets its first commit. An existing
    /// one loses the data files no commit names: those of runs stopped before their commit,
    /// and those a finished compaction replaced. Other files (not named like trailql's) stay.
    pub async fn recover(&mut self, run_id: &str) -> Result<Recovered, LakeError> {
        let root = self.location.root.clone();
        let listed: Vec<_> = self
            .location
            .store
            .list(Some(&root))
            .try_collect()
            .await
            .map_err(|source| LakeError::Store {
                path: self.location.display.clone(),
                source,
            })?;
        let mut recovered = Recovered::default();
        if self.state.version == 0 {
            let has_data = listed.iter().any(|m| {
                m.location
                    .filename()
                    .is_some_and(|n| n.ends_with(".parquet"))
            });
            if has_data {
                return Err(LakeError::Foreign {
                    path: self.location.display.clone(),
                });
            }
            self.commit(Commit::new(Operation::Create, run_id)).await?;
            return Ok(recovered);
        }
        for meta in listed {
            let Some(rel) = self.location.rel(&meta.location) else {
                continue;
            };
            let name = rel.rsplit('/').next().unwrap_or_default();
            if rel.starts_with(STATE_DIR)
                || !is_data_file_name(name)
                || self.state.files.contains_key(&rel)
            {
                continue;
            }
            match self.location.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => recovered.deleted.push(rel),
                Err(source) => {
                    return Err(LakeError::Store {
                        path: self.location.display(&rel),
                        source,
                    });
                }
            }
        }
        Ok(recovered)
    }

    /// Append `commit` to the log; its files become part of the dataset.
    pub async fn commit(&mut self, commit: Commit) -> Result<u64, LakeError> {
        log::append(&self.location, &mut self.state, commit).await
    }
}
