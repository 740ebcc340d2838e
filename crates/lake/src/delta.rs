//! Delta Lake tables: the same sorted, partitioned Parquet files, made visible by commits to
//! `_delta_log/` through delta-rs, so that a whole run appears at once to Spark, Databricks,
//! Trino, DuckDB and trailql itself. trailql's own commit (inputs converted, files added and
//! removed) rides in each Delta commit's `commitInfo` under the key `trailql`: the Delta log is
//! the one source of truth, and there is no moment when the two could disagree.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::CommitBuilder;
use deltalake_core::kernel::{Action, Add, Remove, StructField, StructType};
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, TableProperty};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::prefix::PrefixStore;
use trailql_parquet::DatasetLocation;

use crate::LakeError;
use crate::log::{Commit, DataFile, Operation, State};

/// The Delta log folder, relative to the table root.
pub const DELTA_LOG: &str = "_delta_log";
/// The `commitInfo` key that holds trailql's commit.
const APP_KEY: &str = "trailql";

fn delta_error(
    location: &DatasetLocation,
) -> impl Fn(deltalake_core::DeltaTableError) -> LakeError {
    let path = location.display.clone();
    move |e| LakeError::Delta {
        path: path.clone(),
        reason: e.to_string(),
    }
}

fn log_store(location: &DatasetLocation) -> Result<LogStoreRef, LakeError> {
    let url = if location.is_local() {
        url::Url::from_directory_path(&location.display).ok()
    } else {
        url::Url::parse(&format!("{}/", location.display)).ok()
    }
    .ok_or_else(|| LakeError::Delta {
        path: location.display.clone(),
        reason: "not a valid table location".into(),
    })?;
    let prefixed = Arc::new(PrefixStore::new(
        location.store.clone(),
        location.root.clone(),
    ));
    Ok(default_logstore(
        prefixed,
        location.store.clone(),
        &url,
        &StorageConfig::default(),
    ))
}

/// Whether the dataset has a Delta log.
pub(crate) async fn exists(location: &DatasetLocation) -> Result<bool, LakeError> {
    let first = location
        .store
        .list(Some(&location.path(DELTA_LOG)))
        .next()
        .await
        .transpose()
        .map_err(|source| LakeError::Store {
            path: location.display(DELTA_LOG),
            source,
        })?;
    Ok(first.is_some())
}

/// The dataset as its Delta log leaves it: live files from every commit's adds and removes
/// (whoever wrote them), converted inputs from trailql's commits.
pub(crate) async fn read(location: &DatasetLocation) -> Result<State, LakeError> {
    let mut listed: Vec<_> = location
        .store
        .list(Some(&location.path(DELTA_LOG)))
        .try_collect()
        .await
        .map_err(|source| LakeError::Store {
            path: location.display(DELTA_LOG),
            source,
        })?;
    let version_of = |m: &object_store::ObjectMeta| -> Option<u64> {
        m.location.filename()?.strip_suffix(".json")?.parse().ok()
    };
    let mut state = crate::log::read_checkpoint(location)
        .await
        .unwrap_or_default();
    // Delta version v is trailql version v + 1 (the checkpoint's numbering).
    let known = state.version;
    listed.retain(|m| version_of(m).is_some_and(|v| v + 1 > known));
    listed.sort_by_key(|m| version_of(m));
    let commits: Vec<(u64, Vec<Action>)> = futures::stream::iter(listed)
        .map(|meta| async move {
            let rel = location.rel(&meta.location).unwrap_or_default();
            let bytes = async { location.store.get(&meta.location).await?.bytes().await }
                .await
                .map_err(|source| LakeError::Store {
                    path: location.display(&rel),
                    source,
                })?;
            let actions = bytes
                .split(|&b| b == b'\n')
                .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
                .filter_map(|line| serde_json::from_slice::<Action>(line).ok())
                .collect();
            Ok::<_, LakeError>((version_of(&meta).unwrap_or_default(), actions))
        })
        .buffered(16)
        .try_collect()
        .await?;
    for (version, actions) in commits {
        let mut commit = Commit::new(Operation::Convert, "");
        for action in actions {
            match action {
                Action::Add(add) => commit.added.push(DataFile {
                    path: add.path,
                    partition: add.partition_values.into_iter().collect(),
                    rows: 0,
                    bytes: add.size.max(0) as u64,
                    time_range: None,
                }),
                Action::Remove(remove) => commit.removed.push(remove.path),
                Action::CommitInfo(info) => {
                    if let Some(ours) = info.info.get(APP_KEY)
                        && let Ok(ours) = serde_json::from_value::<Commit>(ours.clone())
                    {
                        commit.inputs = ours.inputs;
                        // trailql's record of the files knows their rows and times.
                        for file in ours.added {
                            if let Some(found) =
                                commit.added.iter_mut().find(|f| f.path == file.path)
                            {
                                *found = file;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        commit.version = version + 1;
        state.apply(&commit);
    }
    Ok(state)
}

/// Create the table: trailql's columns, then the partition columns (strings, as in the
/// folder names; Delta keeps them out of the data files, as Hive does).
pub(crate) async fn create(
    location: &DatasetLocation,
    partition_columns: &[&str],
    commit: &Commit,
) -> Result<(), LakeError> {
    let err = delta_error(location);
    let schema: StructType = trailql_schema::arrow_schema()
        .as_ref()
        .try_into_kernel()
        .map_err(|e| LakeError::Delta {
            path: location.display.clone(),
            reason: e.to_string(),
        })?;
    let mut columns: Vec<StructField> = schema.fields().cloned().collect();
    for p in partition_columns {
        columns.push(StructField::nullable(
            *p,
            deltalake_core::kernel::DataType::STRING,
        ));
    }
    let app = HashMap::from([(
        APP_KEY.to_string(),
        serde_json::to_value(commit).expect("serialises"),
    )]);
    CreateBuilder::new()
        .with_log_store(log_store(location)?)
        .with_table_name("cloudtrail")
        .with_comment("AWS CloudTrail events written by trailql")
        .with_columns(columns)
        .with_partition_columns(partition_columns.iter().map(|p| p.to_string()))
        // trailql's record of converted inputs lives in the commits: keep them all.
        .with_configuration_property(TableProperty::EnableExpiredLogCleanup, Some("false"))
        .with_commit_properties(
            deltalake_core::kernel::transaction::CommitProperties::default().with_metadata(app),
        )
        .await
        .map_err(err)?;
    Ok(())
}

/// Commit `commit`'s files (adds, and removes for a compaction) in one Delta commit; its
/// version, counted from 1. `table` is kept loaded between commits and brought up to date
/// before each, so a run's commits cost one log replay, not one each.
pub(crate) async fn append(
    location: &DatasetLocation,
    table: &mut Option<DeltaTable>,
    commit: &Commit,
) -> Result<u64, LakeError> {
    let err = delta_error(location);
    let store = log_store(location)?;
    let table = match table {
        Some(table) => table,
        None => table.insert(DeltaTable::new(store.clone())),
    };
    table.update_incremental(None).await.map_err(&err)?;
    let now = chrono::Utc::now().timestamp_millis();
    let data_change = commit.operation == Operation::Convert;
    let mut actions: Vec<Action> = commit
        .added
        .iter()
        .map(|f| {
            Action::Add(Add {
                path: f.path.clone(),
                partition_values: f.partition.clone().into_iter().collect(),
                size: f.bytes as i64,
                modification_time: now,
                data_change,
                stats: Some(stats(f)),
                ..Add::default()
            })
        })
        .collect();
    actions.extend(commit.removed.iter().map(|path| {
        Action::Remove(Remove {
            path: path.clone(),
            data_change,
            deletion_timestamp: Some(now),
            ..Remove::default()
        })
    }));
    let operation = match commit.operation {
        Operation::Compact => DeltaOperation::Optimize {
            predicate: None,
            target_size: 0,
        },
        _ => DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: None,
            predicate: None,
        },
    };
    let app = HashMap::from([(
        APP_KEY.to_string(),
        serde_json::to_value(commit).expect("serialises"),
    )]);
    let snapshot = table.snapshot().map_err(&err)?;
    let done = CommitBuilder::default()
        .with_actions(actions)
        .with_app_metadata(app)
        .build(Some(snapshot), store, operation)
        .await
        .map_err(&err)?;
    Ok(done.version as u64 + 1)
}

/// Delta file statistics: the row count and the `eventTime` range, so readers skip files.
fn stats(file: &DataFile) -> String {
    let mut stats = serde_json::json!({ "numRecords": file.rows });
    if let Some((lo, hi)) = file.time_range {
        let fmt = |t: i64| {
            chrono::DateTime::from_timestamp_micros(t)
                .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        };
        if let (Some(lo), Some(hi)) = (fmt(lo), fmt(hi)) {
            stats["minValues"] = serde_json::json!({ "eventTime": lo });
            stats["maxValues"] = serde_json::json!({ "eventTime": hi });
        }
    }
    stats.to_string()
}
