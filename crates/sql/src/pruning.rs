//! What a query's filters say about where its rows can be, so that files which cannot hold
//! any are never opened: the `eventTime` range they bound (for raw archives, whose delivery
//! folders are dated), and the partition folders of a dataset they imply (`date`, `account`,
//! `region` are written from `eventTime`, `recipientAccountId`, `awsRegion`).

use chrono::NaiveDate;
use datafusion::common::Column;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, lit};
use datafusion::scalar::ScalarValue;
use trailql_parquet::{PartitionKey, day_value, safe_segment};

/// How a filter may name `eventTime` and its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeColumn {
    /// The column itself against a timestamp literal (DataFusion has folded a text or cast
    /// literal into one by the time filters reach a table): the bounds are exact.
    Plain,
    /// Also the column cast to another type, and text read as a UTC time: the bounds are right
    /// to within a day either way, as good as raw archives' delivery dates need.
    ThroughCasts,
}

/// The tightest `eventTime` bounds, inclusive, in microseconds, implied by conjunctive filters.
pub(crate) fn time_bounds(filters: &[Expr], column: TimeColumn) -> (Option<i64>, Option<i64>) {
    let mut lo: Option<i64> = None;
    let mut hi: Option<i64> = None;
    fn raise(lo: &mut Option<i64>, v: i64) {
        *lo = Some(lo.map_or(v, |l| l.max(v)));
    }
    fn lower(hi: &mut Option<i64>, v: i64) {
        *hi = Some(hi.map_or(v, |h| h.min(v)));
    }
    let is_time = |e: &Expr| is_event_time(e, column);
    for expr in filters.iter().flat_map(split_conjunction) {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, value) = match (is_time(left), is_time(right)) {
                    (true, false) => (*op, micros(right, column)),
                    (false, true) => match op.swap() {
                        Some(op) => (op, micros(left, column)),
                        None => continue,
                    },
                    _ => continue,
                };
                let Some(v) = value else { continue };
                // The column holds whole microseconds: `< v` is `<= v - 1`.
                match op {
                    Operator::Gt => raise(&mut lo, v.saturating_add(1)),
                    Operator::GtEq => raise(&mut lo, v),
                    Operator::Lt => lower(&mut hi, v.saturating_sub(1)),
                    Operator::LtEq => lower(&mut hi, v),
                    Operator::Eq => {
                        raise(&mut lo, v);
                        lower(&mut hi, v);
                    }
                    _ => {}
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_time(expr) => {
                if let Some(v) = micros(low, column) {
                    raise(&mut lo, v);
                }
                if let Some(v) = micros(high, column) {
                    lower(&mut hi, v);
                }
            }
            _ => {}
        }
    }
    (lo, hi)
}

fn is_event_time(expr: &Expr, column: TimeColumn) -> bool {
    match expr {
        Expr::Column(c) => c.name == "eventTime",
        Expr::Cast(c) if column == TimeColumn::ThroughCasts => is_event_time(&c.expr, column),
        Expr::TryCast(c) if column == TimeColumn::ThroughCasts => is_event_time(&c.expr, column),
        _ => false,
    }
}

/// A literal time as microseconds since the epoch, when it is one exactly.
fn micros(expr: &Expr, column: TimeColumn) -> Option<i64> {
    let lenient = column == TimeColumn::ThroughCasts;
    match expr {
        Expr::Literal(value, _) => match value {
            ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
            ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
            ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
            ScalarValue::TimestampNanosecond(Some(v), _) if v % 1_000 == 0 => Some(v / 1_000),
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
                if lenient =>
            {
                trailql_schema::time::parse(s)
                    .map(|p| p.micros)
                    .or_else(|| {
                        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
                        Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
                    })
            }
            _ => None,
        },
        Expr::Cast(c) if lenient => micros(&c.expr, column),
        Expr::TryCast(c) if lenient => micros(&c.expr, column),
        _ => None,
    }
}

/// Filters on a dataset's partition columns that `filters` imply: every row the filters keep
/// lies in a folder these keep, so adding them changes no answer, but DataFusion then lists and
/// opens only those folders' files instead of all of them.
///
/// - `eventTime` bounds become bounds on `date`: folder names `YYYY-MM-DD` sort as the days
///   do. A day outside the years 0 to 9999 is named with a sign (`-0001-01-01`, and
///   `%2B10000-01-01` for `+10000`), which sorts before every digit: such folders are kept,
///   except those before year 0 when the query starts after it. The folder of rows without a
///   time is dropped: no bound holds for them.
/// - `recipientAccountId` and `awsRegion` compared for equality, or with `IN`, become the same
///   test on `account` and `region` (the values as folder names).
pub(crate) fn implied_partition_filters(filters: &[Expr], keys: &[PartitionKey]) -> Vec<Expr> {
    let partition = |key: PartitionKey| Expr::Column(Column::new_unqualified(key.name()));
    let mut implied = Vec::new();
    if keys.contains(&PartitionKey::Date) {
        let (lo, hi) = time_bounds(filters, TimeColumn::Plain);
        let date = partition(PartitionKey::Date);
        // Years 0 to 9999: other days are named with a sign, which sorts before the digits.
        let day = |micros| {
            day_value(micros).filter(|d| d.len() == 10 && d.as_bytes()[0].is_ascii_digit())
        };
        if let Some(first) = lo.and_then(day) {
            // `date < '0'` keeps the days after 9999 (`%2B10000-01-01`).
            implied.push(date.clone().gt_eq(lit(first)).or(date.clone().lt(lit("0"))));
        }
        if let Some(last) = hi.and_then(day) {
            implied.push(date.lt_eq(lit(last)));
        }
    }
    for &key in keys {
        if key == PartitionKey::Date {
            continue;
        }
        for expr in filters.iter().flat_map(split_conjunction) {
            let values = match expr {
                Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Eq,
                    right,
                }) => match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), value) | (value, Expr::Column(c))
                        if c.name == key.source_column() =>
                    {
                        vec![value]
                    }
                    _ => continue,
                },
                Expr::InList(list) if !list.negated => match list.expr.as_ref() {
                    Expr::Column(c) if c.name == key.source_column() => list.list.iter().collect(),
                    _ => continue,
                },
                _ => continue,
            };
            let Some(names) = values
                .into_iter()
                .map(folder_name)
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            implied.push(partition(key).in_list(names.into_iter().map(lit).collect(), false));
        }
    }
    implied
}

/// The folder name of a literal text value, when it reads back as the same text (DataFusion
/// percent-decodes folder names; a value needing no encoding is its own name).
fn folder_name(value: &Expr) -> Option<String> {
    let Expr::Literal(
        ScalarValue::Utf8(Some(text))
        | ScalarValue::Utf8View(Some(text))
        | ScalarValue::LargeUtf8(Some(text)),
        _,
    ) = value
    else {
        return None;
    };
    let name = safe_segment(Some(text));
    (name == *text).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;
    use datafusion::logical_expr::Cast;
    use datafusion::prelude::{ident as col, lit_timestamp_nano};

    fn ts(s: &str) -> i64 {
        trailql_schema::time::parse(s).unwrap().micros
    }

    fn micros_literal(micros: i64) -> ScalarValue {
        ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into()))
    }

    /// A timestamp literal, as DataFusion folds `TIMESTAMP '...'` or `'...'` compared with a time.
    fn t(s: &str) -> Expr {
        lit(micros_literal(ts(s)))
    }

    /// `filter` gives no exact bound, and a lower bound of 2023-07-10 through casts.
    fn bounded_only_through_casts(filter: Expr) {
        let filters = [filter];
        assert_eq!(time_bounds(&filters, TimeColumn::Plain), (None, None));
        assert_eq!(
            time_bounds(&filters, TimeColumn::ThroughCasts).0,
            Some(ts("2023-07-10T00:00:00Z"))
        );
    }

    #[test]
    fn bounds_come_from_comparisons_and_between() {
        let f = col("eventTime")
            .gt_eq(t("2023-07-10T00:00:00Z"))
            .and(col("eventTime").lt(t("2023-07-11T00:00:00Z")));
        assert_eq!(
            time_bounds(&[f], TimeColumn::Plain),
            (
                Some(ts("2023-07-10T00:00:00Z")),
                Some(ts("2023-07-11T00:00:00Z") - 1)
            )
        );
        let f = col("eventTime").between(t("2023-07-10T00:00:00Z"), t("2023-07-12T00:00:00Z"));
        assert_eq!(
            time_bounds(&[f], TimeColumn::Plain),
            (
                Some(ts("2023-07-10T00:00:00Z")),
                Some(ts("2023-07-12T00:00:00Z"))
            )
        );
        // Text is read as a UTC time only where a day either way does not matter: DataFusion
        // folds it into a timestamp by its own rules (its session time zone) before a scan.
        bounded_only_through_casts(col("eventTime").between(lit("2023-07-10"), lit("2023-07-12")));
        let f = t("2023-07-10T00:00:00Z").lt(col("eventTime"));
        assert_eq!(
            time_bounds(&[f], TimeColumn::Plain),
            (Some(ts("2023-07-10T00:00:00Z") + 1), None),
            "literal first"
        );
        assert_eq!(
            time_bounds(&[col("eventName").eq(lit("x"))], TimeColumn::Plain),
            (None, None)
        );
        let cast = Expr::Cast(Cast::new(Box::new(col("eventTime")), DataType::Date32));
        bounded_only_through_casts(cast.gt_eq(t("2023-07-10T00:00:00Z")));
        let inexact = col("eventTime").lt(lit_timestamp_nano(1_000_000_001));
        assert_eq!(time_bounds(&[inexact], TimeColumn::Plain), (None, None));
    }

    fn implied(filter: Expr) -> Vec<String> {
        let keys = [
            PartitionKey::Account,
            PartitionKey::Region,
            PartitionKey::Date,
        ];
        implied_partition_filters(&[filter], &keys)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn time_bounds_become_day_bounds_that_keep_odd_folders() {
        let f = col("eventTime")
            .gt_eq(t("2024-07-31T10:00:00Z"))
            .and(col("eventTime").lt(t("2024-08-02T00:00:00Z")));
        assert_eq!(
            implied(f),
            [
                "date >= Utf8(\"2024-07-31\") OR date < Utf8(\"0\")",
                "date <= Utf8(\"2024-08-01\")",
            ],
            "`<` midnight ends the day before"
        );
        let f = col("eventTime").lt_eq(t("2024-08-02T00:00:00Z"));
        assert_eq!(implied(f), ["date <= Utf8(\"2024-08-02\")"]);
        // Folder names of odd days sort before `0`, as the bounds assume.
        let folder = |micros| trailql_parquet::safe_segment(day_value(micros).as_deref());
        let after_9999 = ts("9999-12-31T23:59:59Z") + 1_000_000;
        let before_0 = ts("0000-01-01T00:00:00Z") - 1;
        assert_eq!(folder(after_9999), "%2B10000-01-01");
        assert_eq!(folder(before_0), "-0001-12-31");
        assert!(folder(after_9999).as_str() < "0" && folder(before_0).as_str() < "0");
        assert!(
            implied(col("eventTime").gt_eq(lit(micros_literal(after_9999)))).is_empty()
                && implied(col("eventTime").lt(lit_timestamp_nano(0)))
                    == ["date <= Utf8(\"1969-12-31\")"],
            "no bound from a day named with a sign"
        );
    }

    #[test]
    fn account_and_region_tests_carry_over_when_values_are_folder_names() {
        assert_eq!(
            implied(col("recipientAccountId").eq(lit("123456789012"))),
            ["account IN ([Utf8(\"123456789012\")])"]
        );
        assert_eq!(
            implied(
                lit("us-east-1")
                    .eq(col("awsRegion"))
                    .and(col("eventName").eq(lit("x")))
            ),
            ["region IN ([Utf8(\"us-east-1\")])"]
        );
        assert_eq!(
            implied(col("awsRegion").in_list(vec![lit("us-east-1"), lit("eu-west-1")], false)),
            ["region IN ([Utf8(\"us-east-1\"), Utf8(\"eu-west-1\")])"]
        );
        assert!(implied(col("awsRegion").in_list(vec![lit("us-east-1")], true)).is_empty());
        assert!(
            implied(col("awsRegion").eq(lit("a/b"))).is_empty(),
            "encoded folder name"
        );
        assert!(implied(col("awsRegion").not_eq(lit("us-east-1"))).is_empty());
        assert!(
            implied(
                col("awsRegion")
                    .eq(lit("us-east-1"))
                    .or(col("eventName").eq(lit("x")))
            )
            .is_empty(),
            "a disjunction implies nothing"
        );
    }
}
