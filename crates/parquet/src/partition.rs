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

/// Split a batch into one batch per partition folder.
pub(crate) fn split(
    batch: &RecordBatch,
    keys: &[PartitionKey],
) -> Result<Vec<(Partition, RecordBatch)>, arrow::error::ArrowError> {
    if keys.is_empty() {
        let whole = Partition {
            dir: String::new(),
            values: Vec::new(),
        };
        return Ok(vec![(whole, batch.clone())]);
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
        return Ok(vec![(partition, batch.clone())]);
    }
    groups
        .into_iter()
        .map(|(p, rows)| Ok((p, take_record_batch(batch, &UInt32Array::from(rows))?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
