//! Hive-style partitions computed from record values, made safe as folder names.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::TimestampMicrosecondType;

/// A partition column, named as in the folder names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKey {
    /// `account=<recipientAccountId>`
    Account,
    /// `region=<awsRegion>`
    Region,
    /// `date=<YYYY-MM-DD of eventTime, UTC>`
    Date,
}

impl PartitionKey {
    pub fn name(self) -> &'static str {
        match self {
            PartitionKey::Account => "account",
            PartitionKey::Region => "region",
            PartitionKey::Date => "date",
        }
    }

    /// The column whose value names the folder: `recipientAccountId`, `awsRegion`, or
    /// `eventTime` (its UTC day, [`day_value`]).
    pub fn source_column(self) -> &'static str {
        match self {
            PartitionKey::Account => "recipientAccountId",
            PartitionKey::Region => "awsRegion",
            PartitionKey::Date => "eventTime",
        }
    }

    /// Parse `account`, `region` or `date`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "account" => Some(PartitionKey::Account),
            "region" => Some(PartitionKey::Region),
            "date" => Some(PartitionKey::Date),
            _ => None,
        }
    }
}

/// The value Hive uses for a missing partition value.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// The folder (relative to the dataset root) of a row with these values.
pub fn partition_dir(keys: &[PartitionKey], values: &[Option<String>]) -> String {
    keys.iter()
        .zip(values)
        .map(|(k, v)| format!("{}={}", k.name(), safe_segment(v.as_deref())))
        .collect::<Vec<_>>()
        .join("/")
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The `date` partition value of an `eventTime` (microseconds since the epoch): its UTC day as
/// `YYYY-MM-DD`.
pub fn day_value(micros: i64) -> Option<String> {
    day_name(micros.div_euclid(MICROS_PER_DAY))
}

fn day_name(day: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(day.checked_mul(86_400)?, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
}

/// A value made safe as one folder name: letters, digits, `-` and `_` stay, everything else
/// (`/`, `.`, `%`, control characters...) is percent-encoded, so a value can never leave the
/// dataset root, name a hidden file, or clash with another value.
pub fn safe_segment(value: Option<&str>) -> String {
    match value {
        None | Some("") => NULL_PARTITION.to_string(),
        Some(v) => {
            let mut out = String::with_capacity(v.len());
            for b in v.bytes().take(200) {
                if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        }
    }
}

/// One partition: its folder and the values that name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// The folder relative to the dataset root (`date=2024-01-02`), empty when unpartitioned.
    pub dir: String,
    /// `(column, value)` per partition key, outermost first; `None` for a missing value.
    pub values: Vec<(&'static str, Option<String>)>,
}

/// A partition's rows of a split batch, and the bytes of memory they hold.
pub(crate) type Part = (Partition, RecordBatch, usize);

/// The largest partition of a batch is handed on as at most this many slices of it (runs of
/// consecutive rows); in more runs, it is copied too.
const MAX_SLICES: usize = 8;

/// Split a batch into its rows of each partition folder. The partition with the most rows
/// keeps the batch's memory, as slices of it: rows come file by file, a file's rows are of one
/// day but for a few, so its rows are a few runs. The other partitions' rows are copied (as
/// all of them were before: copying cost a conversion 3-5% of its instructions). The slices
/// are charged the whole batch, which they hold, and copies their own size: what the buffer
/// counts is what it holds.
pub(crate) fn split(
    batch: &RecordBatch,
    keys: &[PartitionKey],
) -> Result<Vec<Part>, arrow::error::ArrowError> {
    let bytes = batch.get_array_memory_size();
    if keys.is_empty() {
        let whole = Partition {
            dir: String::new(),
            values: Vec::new(),
        };
        return Ok(vec![(whole, batch.clone(), bytes)]);
    }
    // Rows are grouped by borrowed values (the day as a number, strings from the arrays), so
    // no row allocates; a partition's folder name is made once per group.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Value<'a> {
        Missing,
        Day(i64),
        Text(&'a str),
    }
    let columns: Vec<Result<&dyn Array, ()>> = keys
        .iter()
        .map(|k| {
            batch
                .column_by_name(k.source_column())
                .map(|c| c.as_ref())
                .ok_or(())
        })
        .collect();
    let value = |i: usize, row: usize| -> Value<'_> {
        let Ok(col) = columns[i] else {
            return Value::Missing;
        };
        if !col.is_valid(row) {
            return Value::Missing;
        }
        match keys[i] {
            PartitionKey::Date => Value::Day(
                col.as_primitive::<TimestampMicrosecondType>()
                    .value(row)
                    .div_euclid(MICROS_PER_DAY),
            ),
            _ => match col.as_string_opt::<i32>() {
                Some(text) => Value::Text(text.value(row)),
                None => Value::Missing,
            },
        }
    };
    // At most three keys: account, region and date, each named once (the CLI refuses repeats).
    debug_assert!(keys.len() <= 3);
    let mut groups: BTreeMap<[Value<'_>; 3], Vec<u32>> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let mut key = [Value::Missing; 3];
        for (i, slot) in key.iter_mut().enumerate().take(keys.len()) {
            *slot = value(i, row);
        }
        groups.entry(key).or_default().push(row as u32);
    }
    let name = |v: Value<'_>| -> Option<String> {
        match v {
            Value::Missing => None,
            Value::Day(day) => day_name(day),
            Value::Text(t) => Some(t.to_string()),
        }
    };
    let groups: Vec<(Partition, Vec<u32>)> = groups
        .into_iter()
        .map(|(key, rows)| {
            let vals: Vec<Option<String>> = key[..keys.len()].iter().map(|&v| name(v)).collect();
            let partition = Partition {
                dir: partition_dir(keys, &vals),
                values: keys.iter().map(|k| k.name()).zip(vals).collect(),
            };
            (partition, rows)
        })
        .collect();
    if groups.len() == 1 {
        let (partition, _) = groups.into_iter().next().expect("one group");
        return Ok(vec![(partition, batch.clone(), bytes)]);
    }
    let largest = (0..groups.len())
        .max_by_key(|&i| groups[i].1.len())
        .expect("two groups or more");
    let mut parts = Vec::new();
    for (i, (partition, rows)) in groups.into_iter().enumerate() {
        let runs = runs(&rows);
        if i == largest && runs.len() <= MAX_SLICES {
            let n = runs.len();
            for (k, (start, len)) in runs.into_iter().enumerate() {
                let charge = if k + 1 == n { bytes } else { 0 };
                parts.push((partition.clone(), batch.slice(start, len), charge));
            }
        } else {
            let part = take_record_batch(batch, &UInt32Array::from(rows))?;
            let bytes = part.get_array_memory_size();
            parts.push((partition, part, bytes));
        }
    }
    Ok(parts)
}

/// Ascending `rows` as runs of consecutive rows, `(first, length)`.
fn runs(rows: &[u32]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &row in rows {
        match runs.last_mut() {
            Some((start, len)) if *start + *len == row as usize => *len += 1,
            _ => runs.push((row as usize, 1)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_partition_of_a_batch_is_slices_of_it_and_the_others_copies() {
        use arrow::array::{StringArray, TimestampMicrosecondArray};
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let day = MICROS_PER_DAY;
        let batch_of = |times: Vec<i64>| {
            let schema = Schema::new(vec![
                Field::new(
                    "eventTime",
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                    true,
                ),
                Field::new("eventName", DataType::Utf8, true),
            ]);
            let names: Vec<String> = (0..times.len()).map(|i| format!("e{i}")).collect();
            RecordBatch::try_new(
                std::sync::Arc::new(schema),
                vec![
                    std::sync::Arc::new(TimestampMicrosecondArray::from(times)),
                    std::sync::Arc::new(StringArray::from(names)),
                ],
            )
            .unwrap()
        };
        let names = |parts: &[Part], dir: &str| -> (usize, Vec<String>, usize) {
            let of: Vec<&Part> = parts.iter().filter(|(p, ..)| p.dir == dir).collect();
            let rows = of
                .iter()
                .flat_map(|(_, b, _)| {
                    b.column(1)
                        .as_string::<i32>()
                        .iter()
                        .flatten()
                        .map(String::from)
                })
                .collect();
            (of.len(), rows, of.iter().map(|(.., bytes)| bytes).sum())
        };
        // Day 1 has most rows, in two runs: two slices charged the whole batch. Day 0 is
        // copied.
        let batch = batch_of(vec![day, day, day, 0, 0, day, day, 0]);
        let parts = split(&batch, &[PartitionKey::Date]).unwrap();
        let (slices, rows, charged) = names(&parts, "date=1970-01-02");
        assert_eq!(slices, 2);
        assert_eq!(rows, ["e0", "e1", "e2", "e5", "e6"]);
        assert_eq!(charged, batch.get_array_memory_size());
        let (copies, rows, charged) = names(&parts, "date=1970-01-01");
        assert_eq!(
            (copies, rows),
            (1, vec!["e3".into(), "e4".into(), "e7".into()])
        );
        assert!(charged > 0);
        // The largest partition scattered in more runs than `MAX_SLICES`: copied too.
        let times = (0..2 * MAX_SLICES + 4).map(|i| {
            if i % 2 == 0 || i > 2 * MAX_SLICES {
                day
            } else {
                0
            }
        });
        let batch = batch_of(times.collect());
        let parts = split(&batch, &[PartitionKey::Date]).unwrap();
        assert_eq!(parts.len(), 2);
        assert!(
            parts
                .iter()
                .all(|(_, b, bytes)| *bytes == b.get_array_memory_size())
        );
        assert_eq!(
            parts.iter().map(|(_, b, _)| b.num_rows()).sum::<usize>(),
            batch.num_rows()
        );
    }

    #[test]
    fn crafted_values_cannot_escape_or_hide() {
        let keys = [PartitionKey::Region];
        for evil in ["../../x", "..", ".hidden", "a/b", "x\0y", "%2e%2e"] {
            let dir = partition_dir(&keys, &[Some(evil.to_string())]);
            let seg = dir.strip_prefix("region=").unwrap();
            assert!(
                !seg.contains('/') && !seg.contains('.') && !seg.contains('\0'),
                "{dir}"
            );
            assert!(!seg.is_empty());
        }
        assert_eq!(
            partition_dir(&keys, &[Some("us-east-1".into())]),
            "region=us-east-1"
        );
        assert_eq!(
            partition_dir(&keys, &[None]),
            format!("region={NULL_PARTITION}")
        );
    }
}
