//! CloudTrail timestamps: a fast exact parser for the canonical `YYYY-MM-DDTHH:MM:SSZ` form, a
//! lenient fallback for anything RFC 3339, and the canonical renderer.

use chrono::{DateTime, SecondsFormat, Utc};

/// A timestamp read from text: microseconds since the epoch, and whether the text is exactly
/// what [`format_micros`] renders (if not, the caller keeps the original text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub micros: i64,
    pub canonical: bool,
}

/// Parse a timestamp. `None` when the text is no timestamp at all.
pub fn parse(text: &str) -> Option<Parsed> {
    if let Some(micros) = parse_canonical(text.as_bytes()) {
        return Some(Parsed {
            micros,
            canonical: true,
        });
    }
    let dt = DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|d| d.with_timezone(&Utc))
        .or_else(|| {
            // `2023-07-10 11:54:39` and `2023-07-10T11:54:39` (no zone): read as UTC.
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .find_map(|fmt| chrono::NaiveDateTime::parse_from_str(text, fmt).ok())
                .map(|n| n.and_utc())
        })?;
    Some(Parsed {
        micros: dt.timestamp_micros(),
        canonical: false,
    })
}

/// Render microseconds since the epoch the way CloudTrail writes `eventTime`.
pub fn format_micros(micros: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(micros) {
        Some(dt) if micros % 1_000_000 == 0 => dt.to_rfc3339_opts(SecondsFormat::Secs, true),
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => micros.to_string(),
    }
}

fn parse_canonical(b: &[u8]) -> Option<i64> {
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    Some(((days * 24 + hh) * 60 + mm) * 60_000_000 + ss * 1_000_000)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_round_trips() {
        for text in [
            "2023-07-10T11:54:39Z",
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59Z",
        ] {
            let p = parse(text).unwrap();
            assert!(p.canonical, "{text}");
            assert_eq!(format_micros(p.micros), text);
            let chrono = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_micros();
            assert_eq!(p.micros, chrono, "{text}");
        }
    }

    #[test]
    fn other_forms_parse_but_are_not_canonical() {
        let p = parse("2023-07-10T11:54:39.250+02:00").unwrap();
        assert!(!p.canonical);
        assert_eq!(format_micros(p.micros), "2023-07-10T09:54:39.250Z");
        assert!(!parse("2023-07-10 11:54:39").unwrap().canonical);
    }

    #[test]
    fn invalid_dates_are_rejected() {
        for text in [
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "yesterday",
            "",
            "2023-07-10T24:00:00Z",
        ] {
            assert!(parse(text).is_none(), "{text}");
        }
    }
}
