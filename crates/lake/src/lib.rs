//! Keep a converted CloudTrail dataset in a lake, run after run: the commit log that records
//! which inputs were converted into which files ([`log`]), recovery from a run that was
//! stopped at any point, compaction of small files, Delta Lake tables, and the catalog DDL
//! that lets Athena, Spark and Trino read what was written.
//!
//! A run is exactly-once: data files are stored first, then one commit names them together
//! with the inputs they came from. A stopped run leaves files no commit names; the next run
//! deletes them and converts those inputs again.

pub mod compact;
pub mod ddl;
pub mod delta;
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
    #[error("{path}: cannot read: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Mismatch { path: String, reason: String },
    #[error("{path}: Delta table: {reason}")]
    Delta { path: String, reason: String },
    #[error(transparent)]
    Write(#[from] trailql_parquet::WriteError),
}

/// How the dataset is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// Plain Parquet files in Hive-style folders; trailql's log under `_trailql/log/`.
    Parquet,
    /// A Delta Lake table: the same files, committed to `_delta_log/`.
    Delta,
}

impl TableFormat {
    pub fn name(self) -> &'static str {
        match self {
            TableFormat::Parquet => "parquet",
            TableFormat::Delta => "delta",
        }
    }
}

/// A dataset and its log.
pub struct Lake {
    location: DatasetLocation,
    state: State,
    /// `None` until the dataset's first commit.
    format: Option<TableFormat>,
    /// The Delta table, loaded at the first commit of a run.
    delta_table: Option<deltalake_core::DeltaTable>,
}

/// What [`Lake::recover`] cleaned up.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Data files of stopped runs, or replaced by a finished compaction, now deleted.
    pub deleted: Vec<String>,
}

impl Lake {
    /// Open the dataset at `location` and read its log (a new dataset has none).
    pub async fn open(location: DatasetLocation) -> Result<Self, LakeError> {
        let (state, format) = if delta::exists(&location).await? {
            (delta::read(&location).await?, Some(TableFormat::Delta))
        } else {
            let state = log::read(&location).await?;
            let format = (state.version > 0).then_some(TableFormat::Parquet);
            (state, format)
        };
        Ok(Self {
            location,
            state,
            format,
            delta_table: None,
        })
    }

    pub fn location(&self) -> &DatasetLocation {
        &self.location
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The format of an existing dataset; `None` for a new one.
    pub fn format(&self) -> Option<TableFormat> {
        self.format
    }

    /// Make the dataset ready for a writer that wants `format` and `partition_columns`.
    ///
    /// A new dataset gets its first commit (so that a run stopped before its first real
    /// commit still leaves a dataset known to be trailql's). An existing one must have the
    /// same format and partitions, and loses the data files no commit names: those of runs
    /// stopped before their commit and, for plain Parquet, those a finished compaction
    /// replaced (a Delta table keeps them for time travel until `VACUUM`). Files not named
    /// like trailql's are never touched.
    pub async fn recover(
        &mut self,
        run_id: &str,
        format: TableFormat,
        partition_columns: &[&str],
    ) -> Result<Recovered, LakeError> {
        let mut recovered = Recovered::default();
        let listed: Vec<_> = self
            .location
            .store
            .list(Some(&self.location.root))
            .try_collect()
            .await
            .map_err(|source| LakeError::Store {
                path: self.location.display.clone(),
                source,
            })?;
        let Some(existing) = self.format else {
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
            let create = Commit::new(Operation::Create, run_id);
            match format {
                TableFormat::Parquet => {
                    log::append(&self.location, &mut self.state, create).await?;
                }
                TableFormat::Delta => {
                    delta::create(&self.location, partition_columns, &create).await?;
                    self.state = delta::read(&self.location).await?;
                }
            }
            self.format = Some(format);
            return Ok(recovered);
        };
        if existing != format {
            return Err(LakeError::Mismatch {
                path: self.location.display.clone(),
                reason: format!("it is a {} dataset, not {}", existing.name(), format.name()),
            });
        }
        let theirs = &self.state.partition_columns;
        if !self.state.files.is_empty()
            && theirs
                .iter()
                .map(String::as_str)
                .ne(partition_columns.iter().copied())
        {
            return Err(LakeError::Mismatch {
                path: self.location.display.clone(),
                reason: format!(
                    "it is partitioned by `{}`; pass --partition-by {}",
                    theirs.join(","),
                    if theirs.is_empty() {
                        "none".to_string()
                    } else {
                        theirs.join(",")
                    }
                ),
            });
        }
        for meta in listed {
            let Some(rel) = self.location.rel(&meta.location) else {
                continue;
            };
            let name = rel.rsplit('/').next().unwrap_or_default();
            let keep = rel.starts_with(STATE_DIR)
                || rel.starts_with(delta::DELTA_LOG)
                || !is_data_file_name(name)
                || self.state.files.contains_key(&rel)
                || (format == TableFormat::Delta && self.state.retired.contains(&rel));
            if keep {
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

    /// Append `commit` to the log: its files become part of the dataset at once (for Delta
    /// readers, and for trailql), its inputs count as converted.
    pub async fn commit(&mut self, mut commit: Commit) -> Result<u64, LakeError> {
        let version = match self.format {
            Some(TableFormat::Delta) => {
                commit.version =
                    delta::append(&self.location, &mut self.delta_table, &commit).await?;
                self.state.apply(&commit);
                commit.version
            }
            _ => log::append(&self.location, &mut self.state, commit).await?,
        };
        log::maybe_checkpoint(&self.location, &self.state).await;
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::local::LocalFileSystem;
    use object_store::path::Path as StorePath;

    use super::*;

    fn location(dir: &std::path::Path) -> DatasetLocation {
        let root = StorePath::from_absolute_path(dir).unwrap();
        DatasetLocation::new(
            Arc::new(LocalFileSystem::new()),
            root,
            dir.display().to_string(),
            true,
        )
    }

    fn commit(n: u64) -> Commit {
        let mut c = Commit::new(Operation::Convert, &format!("run-{n}"));
        c.inputs.push(InputRecord {
            name: format!("s3://trail/AWSLogs/f{n}.json.gz"),
            size: n,
            e_tag: Some(format!("\"{n}\"")),
        });
        c.added.push(DataFile {
            path: format!("date=2024-01-01/part-run-{n}-00001.parquet"),
            partition: [("date".to_string(), Some("2024-01-01".to_string()))].into(),
            rows: n,
            bytes: 10 * n,
            time_range: Some((n as i64, n as i64 + 5)),
        });
        c
    }

    #[tokio::test]
    async fn checkpoints_give_the_state_a_full_replay_gives() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::open(location(dir.path())).await.unwrap();
        lake.recover("run-0", TableFormat::Parquet, &["date"])
            .await
            .unwrap();
        for n in 1..250 {
            lake.commit(commit(n)).await.unwrap();
        }
        assert_eq!(lake.state().version, 250);
        let checkpoints = dir.path().join("_trailql/checkpoint");
        let mut names: Vec<_> = std::fs::read_dir(&checkpoints)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "00000000000000000100.json.gz",
                "00000000000000000200.json.gz"
            ]
        );

        // Read through the checkpoint: commits at or before it are not read at all.
        std::fs::write(
            dir.path().join("_trailql/log/00000000000000000007.json"),
            b"not JSON",
        )
        .unwrap();
        let through = Lake::open(location(dir.path())).await.unwrap();
        assert_eq!(through.state().version, 250);
        assert_eq!(through.state().files, lake.state().files);
        assert_eq!(through.state().inputs, lake.state().inputs);

        // Without (or with unreadable) checkpoints, the commits alone give the same state.
        std::fs::write(
            dir.path().join("_trailql/log/00000000000000000007.json"),
            serde_json::to_vec(&{
                let mut c = commit(6);
                c.version = 7;
                c
            })
            .unwrap(),
        )
        .unwrap();
        std::fs::write(checkpoints.join("00000000000000000200.json.gz"), b"junk").unwrap();
        std::fs::remove_file(checkpoints.join("00000000000000000100.json.gz")).unwrap();
        let replayed = Lake::open(location(dir.path())).await.unwrap();
        assert_eq!(replayed.state().files, lake.state().files);
        assert_eq!(replayed.state().inputs, lake.state().inputs);
        assert_eq!(replayed.state().version, 250);
    }
}
