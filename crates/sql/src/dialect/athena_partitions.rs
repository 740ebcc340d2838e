//! The partition columns of Athena's CloudTrail tables, which queries written for Athena name
//! to read less: `region`, `year`, `month` and `day` (AWS's table partitioned by hand), `timestamp`
//! as `yyyy/MM/dd` (its table with partition projection) and `account` (an organization's).
//! Each is the value its folder names, taken from the record: `awsRegion`, the UTC day of
//! `eventTime` as text in that format, `recipientAccountId`. A comparison of `timestamp` with a
//! day written in the query is a range of `eventTime`, which prunes files and row groups as
//! Athena's partitions do.

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Ident};

use super::parse::parse_expr;
use super::presto::text_literal;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AthenaPartition {
    Region,
    Account,
    Year,
    Month,
    Day,
    /// `yyyy/MM/dd`, the format of AWS's partition projection for CloudTrail.
    Timestamp,
}

impl AthenaPartition {
    /// The partition column `name` names, in any case.
    pub(super) fn named(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "region" => Self::Region,
            "account" => Self::Account,
            "year" => Self::Year,
            "month" => Self::Month,
            "day" => Self::Day,
            "timestamp" => Self::Timestamp,
            _ => return None,
        })
    }

    /// The value of the partition, from the record's columns (of `table`, when it is named).
    pub(super) fn value(self, table: Option<&Ident>) -> Expr {
        let column = |name: &str| match table {
            Some(table) => Expr::CompoundIdentifier(vec![table.clone(), Ident::new(name)]),
            None => Expr::Identifier(Ident::new(name)),
        };
        let time = column("eventTime");
        let day_part = |format: &str| format!("to_char({time}, '{format}')");
        let sql = match self {
            Self::Region => return column("awsRegion"),
            Self::Account => return column("recipientAccountId"),
            Self::Year => day_part("%Y"),
            Self::Month => day_part("%m"),
            Self::Day => day_part("%d"),
            Self::Timestamp => day_part("%Y/%m/%d"),
        };
        parse_expr(&sql).expect("a call of to_char parses")
    }
}

/// `timestamp <op> 'yyyy/MM/dd'` (either way round) as a range of `eventTime`: `= '2024/03/05'`
/// is that day, `>= ` from its start, `>` from the next day's, and so on. `None` when the
/// other side is no day written in the query.
pub(super) fn day_comparison(
    time: &Expr,
    timestamp_left: bool,
    op: &BinaryOperator,
    day: &Expr,
) -> Option<Expr> {
    use BinaryOperator::*;
    let start = day_start(day)?;
    let next = format!("{start} + INTERVAL '1 day'");
    // As if `timestamp` were on the left.
    let op = match (timestamp_left, op) {
        (true, op) => op.clone(),
        (false, Lt) => Gt,
        (false, LtEq) => GtEq,
        (false, Gt) => Lt,
        (false, GtEq) => LtEq,
        (false, op) => op.clone(),
    };
    let t = time;
    let sql = match op {
        Eq => format!("({t} >= {start} AND {t} < {next})"),
        NotEq => format!("({t} < {start} OR {t} >= {next})"),
        GtEq => format!("{t} >= {start}"),
        Gt => format!("{t} >= {next}"),
        Lt => format!("{t} < {start}"),
        LtEq => format!("{t} < {next}"),
        _ => return None,
    };
    parse_expr(&sql)
}

/// `timestamp BETWEEN 'yyyy/MM/dd' AND 'yyyy/MM/dd'` as a range of `eventTime`, both days in.
pub(super) fn day_range(time: &Expr, low: &Expr, high: &Expr, negated: bool) -> Option<Expr> {
    let (low, high) = (day_start(low)?, day_start(high)?);
    let range = format!("({time} >= {low} AND {time} < {high} + INTERVAL '1 day')");
    parse_expr(&if negated {
        format!("(NOT {range})")
    } else {
        range
    })
}

/// The start of the day a `'yyyy/MM/dd'` literal names, as a timestamp literal.
fn day_start(day: &Expr) -> Option<String> {
    let text = text_literal(day)?;
    let date = chrono::NaiveDate::parse_from_str(&text, "%Y/%m/%d").ok()?;
    // Written in full (`2024/3/5` is no folder's name).
    (date.format("%Y/%m/%d").to_string() == text)
        .then(|| format!("TIMESTAMP '{}T00:00:00Z'", date.format("%Y-%m-%d")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Expr {
        parse_expr(&format!("'{text}'")).unwrap()
    }

    #[test]
    fn comparisons_with_a_day_are_ranges_of_event_time_either_way_round() {
        let time = Expr::Identifier(Ident::new("eventTime"));
        let cmp =
            |left, op, text| day_comparison(&time, left, &op, &day(text)).map(|e| e.to_string());
        let start = "TIMESTAMP '2024-03-05T00:00:00Z'";
        let next = format!("{start} + INTERVAL '1 day'");
        assert_eq!(
            cmp(true, BinaryOperator::Eq, "2024/03/05").unwrap(),
            format!("(eventTime >= {start} AND eventTime < {next})")
        );
        assert_eq!(
            cmp(true, BinaryOperator::Gt, "2024/03/05").unwrap(),
            format!("eventTime >= {next}")
        );
        assert_eq!(
            cmp(false, BinaryOperator::Gt, "2024/03/05").unwrap(),
            format!("eventTime < {start}")
        );
        assert_eq!(
            cmp(false, BinaryOperator::LtEq, "2024/03/05").unwrap(),
            format!("eventTime >= {start}")
        );
        assert_eq!(cmp(true, BinaryOperator::Eq, "2024-03-05"), None);
        assert_eq!(cmp(true, BinaryOperator::Eq, "2024/3/5"), None);
        assert_eq!(cmp(true, BinaryOperator::Eq, "2024/02/30"), None);
        assert_eq!(cmp(true, BinaryOperator::Plus, "2024/03/05"), None);
        assert_eq!(
            day_range(&time, &day("2024/02/28"), &day("2024/03/01"), false)
                .unwrap()
                .to_string(),
            "(eventTime >= TIMESTAMP '2024-02-28T00:00:00Z' AND \
             eventTime < TIMESTAMP '2024-03-01T00:00:00Z' + INTERVAL '1 day')"
        );
    }

    #[test]
    fn partitions_are_named_in_any_case_and_read_from_the_record() {
        assert_eq!(
            AthenaPartition::named("Region"),
            Some(AthenaPartition::Region)
        );
        assert_eq!(AthenaPartition::named("regions"), None);
        assert_eq!(
            AthenaPartition::Account.value(None).to_string(),
            "recipientAccountId"
        );
        assert_eq!(
            AthenaPartition::Timestamp
                .value(Some(&Ident::new("t")))
                .to_string(),
            "to_char(t.eventTime, '%Y/%m/%d')"
        );
    }
}
