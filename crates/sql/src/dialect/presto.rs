//! Presto's (Athena's) functions as DataFusion's SQL: rewrites of one function call that need
//! nothing of the table (its JSON paths, time units and formats, and functions DataFusion has
//! under another name or shape).

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart, Value,
    ValueWithSpan,
};

use super::parse::parse_expr;
use super::{arguments, rename};

/// `json_extract_scalar(j, '$.a[0]')` -> `json_as_text(j, 'a', 0)`; `json_extract` ->
/// `json_get_json`; `json_size` -> `json_length`. Left as written when the path is not a
/// literal JSONPath of keys and indexes.
pub(super) fn athena_json(function: &mut ast::Function) {
    let functions = [
        ("json_extract_scalar", "json_as_text"),
        // DuckDB's.
        ("json_extract_string", "json_as_text"),
        ("json_extract", "json_get_json"),
        ("json_size", "json_length"),
    ];
    let Some((target, args)) = functions
        .into_iter()
        .find_map(|(athena, target)| Some((target, arguments(function, &[athena])?)))
    else {
        return;
    };
    let [json, path] = args[..] else {
        return;
    };
    let Expr::Value(ValueWithSpan {
        value: Value::SingleQuotedString(path),
        span,
    }) = path
    else {
        return;
    };
    let Some(steps) = json_path(path) else {
        return;
    };
    let steps = steps.into_iter().map(|step| {
        let value = match step {
            Step::Key(key) => Value::SingleQuotedString(key),
            Step::Index(i) => Value::Number(i.to_string(), false),
        };
        Expr::Value(ValueWithSpan { value, span: *span })
    });
    let args = std::iter::once(json.clone())
        .chain(steps)
        .map(|expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)))
        .collect();
    if let FunctionArguments::List(list) = &mut function.args {
        list.args = args;
    }
    rename(function, target);
}

/// DuckDB's and SQLite's JSONPath after an arrow, `j->>'$.a.b[0]'`: `json_as_text(j, 'a', 'b',
/// 0)` (`->` is `json_get_json`); `None` for any other key (a plain key is the JSON functions'
/// own `->`).
pub(super) fn json_arrow_path(json: &Expr, key: &Expr, as_text: bool) -> Option<Expr> {
    let path = text_literal(key)?;
    if !path.starts_with('$') {
        return None;
    }
    let steps = json_path(&path)?;
    if steps.is_empty() {
        return None;
    }
    let steps: Vec<String> = steps
        .into_iter()
        .map(|step| match step {
            Step::Key(key) => quoted(&key),
            Step::Index(i) => i.to_string(),
        })
        .collect();
    let function = if as_text {
        "json_as_text"
    } else {
        "json_get_json"
    };
    parse_expr(&format!("{function}({json}, {})", steps.join(", ")))
}

/// Athena's `date_add('day', -7, now())`: `(now() + INTERVAL '-7 day')`, for a unit and a
/// number written in the query.
pub(super) fn date_add(function: &ast::Function) -> Option<Expr> {
    const UNITS: [&str; 9] = [
        "millisecond",
        "second",
        "minute",
        "hour",
        "day",
        "week",
        "month",
        "quarter",
        "year",
    ];
    let [unit, amount, timestamp] = arguments(function, &["date_add"])?[..] else {
        return None;
    };
    let unit = text_literal(unit)?.to_ascii_lowercase();
    let amount = match amount {
        Expr::Value(ValueWithSpan {
            value: Value::Number(n, _),
            ..
        }) => n.clone(),
        Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(ValueWithSpan {
                value: Value::Number(n, _),
                ..
            }) => format!("-{n}"),
            _ => return None,
        },
        _ => return None,
    };
    if !UNITS.contains(&unit.as_str()) || amount.parse::<i64>().is_err() {
        return None;
    }
    let interval = parse_expr(&format!("INTERVAL '{amount} {unit}'"))?;
    Some(Expr::Nested(Box::new(Expr::BinaryOp {
        left: Box::new(timestamp.clone()),
        op: ast::BinaryOperator::Plus,
        right: Box::new(interval),
    })))
}

/// Presto's (Athena's) functions that DataFusion has under another name or shape, as that SQL:
/// `count_if(c)`, `arbitrary(x)`, `approx_percentile(x, p)`, `to_iso8601(t)`,
/// `regexp_extract(s, pattern[, group])`, `regexp_replace(s, pattern[, r])`, `date_diff(unit, a,
/// b)`, the parts of a time (`year(t)` to `second(t)`, `day_of_week`, `day_of_year`,
/// `quarter`, `week`), `split(s, d)`, `json_array_length`, `json_array_get`, `json_parse` and
/// `json_format` (JSON is text here), `if`, `date`, `last_day_of_month`, `at_timezone`,
/// `typeof`, `every`, `max_by`, `min_by`, `slice`, `sequence`, `zip`, `levenshtein_distance`,
/// `to_utf8`, `from_utf8`, `to_hex` (of bytes), `to_base64`, `from_base64`, `contains(range,
/// ip)`, `is_subnet_of`, and the time formats of `date_parse`, `date_format`, `parse_datetime`
/// and `format_datetime` (for a format written in the query).
pub(super) fn presto(function: &ast::Function) -> Option<Expr> {
    if function.over.is_some() || function.filter.is_some() {
        return None;
    }
    let [ObjectNamePart::Identifier(name)] = function.name.0.as_slice() else {
        return None;
    };
    let name = name.value.to_ascii_lowercase();
    let args = arguments(function, &[&name])?;
    let sql = match (name.as_str(), &args[..]) {
        ("count_if", [condition]) => format!("count(CASE WHEN {condition} THEN 1 END)"),
        ("arbitrary", [x]) => format!("first_value({x})"),
        ("approx_percentile", [x, p]) => format!("approx_percentile_cont({x}, {p})"),
        ("to_iso8601", [t]) => format!("to_char({t}, '%Y-%m-%dT%H:%M:%S%.3fZ')"),
        // The whole match is group 0: the pattern is put in a group of its own first.
        ("regexp_extract", [s, pattern]) => {
            format!("array_element(regexp_match({s}, concat('(', {pattern}, ')')), 1)")
        }
        ("regexp_extract", [s, pattern, group]) => {
            format!("array_element(regexp_match({s}, concat('(', {pattern}, ')')), {group} + 1)")
        }
        ("date_diff", [unit, a, b]) => date_diff(&text_literal(unit)?, a, b)?,
        (
            "year" | "quarter" | "month" | "week" | "week_of_year" | "day" | "day_of_month"
            | "day_of_year" | "doy" | "hour" | "minute" | "second",
            [t],
        ) => {
            let part = match name.as_str() {
                "week_of_year" => "week",
                "day_of_month" => "day",
                "day_of_year" => "doy",
                part => part,
            };
            format!("CAST(date_part('{part}', {t}) AS BIGINT)")
        }
        // ISO's numbering, as Presto's: Monday is 1, Sunday 7.
        ("day_of_week" | "dow", [t]) => {
            format!("((CAST(date_part('dow', {t}) AS BIGINT) + 6) % 7 + 1)")
        }
        ("split", [s, delimiter]) => format!("string_to_array({s}, {delimiter})"),
        ("if", [condition, then]) => format!("CASE WHEN {condition} THEN {then} END"),
        ("if", [condition, then, otherwise]) => {
            format!("CASE WHEN {condition} THEN {then} ELSE {otherwise} END")
        }
        // A cast would be named as `t` is (`GROUP BY date(t), t` would make two `t`).
        ("date", [t]) => format!("arrow_cast({t}, 'Date32')"),
        ("last_day_of_month", [t]) => {
            format!(
                "CAST(date_trunc('month', {t}) + INTERVAL '1 month' - INTERVAL '1 day' AS DATE)"
            )
        }
        ("at_timezone", [t, zone]) => format!("({t} AT TIME ZONE {zone})"),
        ("typeof", [x]) => format!("arrow_typeof({x})"),
        ("every", [condition]) => format!("bool_and({condition})"),
        ("max_by", [x, by]) => format!("first_value({x} ORDER BY {by} DESC NULLS LAST)"),
        ("min_by", [x, by]) => format!("first_value({x} ORDER BY {by} ASC NULLS LAST)"),
        // Presto's `try` makes an error NULL: a cast is a `TRY_CAST`; anything else is itself,
        // which is the same for the JSON and ARN functions (NULL for text that is none) but
        // still an error where DataFusion's function fails (`to_timestamp('garbage')`).
        (
            "try",
            [
                Expr::Cast {
                    expr, data_type, ..
                },
            ],
        ) => format!("TRY_CAST({expr} AS {data_type})"),
        ("try", [x]) => format!("({x})"),
        ("format", [format, values @ ..]) => format_as_concat(&text_literal(format)?, values)?,
        // Every match, as Athena, Trino and Spark replace them (and CloudTrail Lake, and
        // Presto's two-argument form removes them); PostgreSQL's and DuckDB's change the first
        // unless given 'g', which their four-argument form still says as written.
        ("regexp_replace", [text, pattern]) => {
            format!("regexp_replace({text}, {pattern}, '', 'g')")
        }
        ("regexp_replace", [text, pattern, replacement]) => {
            format!("regexp_replace({text}, {pattern}, {replacement}, 'g')")
        }
        ("json_array_length", [json]) => format!("json_length({json})"),
        ("json_array_get", [json, index]) => format!("json_get_json({json}, {index})"),
        // DuckDB's names.
        ("string_split" | "str_split", [s, delimiter]) => {
            format!("string_to_array({s}, {delimiter})")
        }
        ("strptime", [s, format]) => format!("to_timestamp({s}, {format})"),
        ("epoch_ms", [t]) => format!("CAST(date_part('epoch', {t}) * 1000 AS BIGINT)"),
        ("struct_extract", [s, field]) if text_literal(field).is_some() => {
            format!("get_field({s}, {field})")
        }
        ("count_star", []) => "count(*)".to_string(),
        ("time_bucket", [width, t]) => format!("date_bin({width}, {t})"),
        ("approx_count_distinct", [x]) => format!("approx_distinct({x})"),
        ("arg_max", [x, by]) => format!("first_value({x} ORDER BY {by} DESC NULLS LAST)"),
        ("arg_min", [x, by]) => format!("first_value({x} ORDER BY {by} ASC NULLS LAST)"),
        // A map's (a list's was renamed `array_element`): its value, where DataFusion's
        // gives a list of it.
        ("element_at", [map, key]) => format!("array_element(map_extract({map}, {key}), 1)"),
        // Presto's lists: `slice` takes a start and a length, `sequence` ends where it says.
        ("slice", [list, start, length]) => {
            format!("array_slice({list}, {start}, ({start}) + ({length}) - 1)")
        }
        ("sequence", [from, to]) => format!("generate_series({from}, {to})"),
        ("sequence", [from, to, step]) => format!("generate_series({from}, {to}, {step})"),
        ("zip", lists) if lists.len() >= 2 => format!("arrays_zip({})", join(lists)),
        ("levenshtein_distance", [a, b]) => format!("levenshtein({a}, {b})"),
        // Presto's text as bytes, and bytes as hex (in capitals) or base64.
        ("to_utf8", [text]) => format!("CAST({text} AS BYTEA)"),
        ("from_utf8", [bytes]) => format!("CAST({bytes} AS VARCHAR)"),
        ("to_hex", [bytes @ Expr::Cast { .. }]) => format!("upper(encode({bytes}, 'hex'))"),
        // DataFusion's base64 has no padding, Presto's has.
        ("to_base64", [bytes]) => {
            let text = format!("encode({bytes}, 'base64')");
            format!("rpad({text}, CAST((length({text}) + 3) / 4 * 4 AS INT), '=')")
        }
        ("from_base64", [text]) => format!("decode({text}, 'base64')"),
        // Presto's `contains(IPPREFIX '10.0.0.0/8', CAST(ip AS IPADDRESS))` (the types are
        // text here) and `is_subnet_of(prefix, ip)`.
        ("contains", [range, ip]) if text_literal(range).is_some_and(|r| is_ip_range(&r)) => {
            format!("ip_in_cidr({ip}, {range})")
        }
        ("is_subnet_of", [range, ip]) => format!("ip_in_cidr({ip}, {range})"),
        // DuckDB's (and SQLite's, format first) `strftime`, and its `epoch` and
        // `regexp_matches` (a test, as `regexp_like`).
        ("strftime", [format, t]) if text_literal(format).is_some_and(|f| f.contains('%')) => {
            format!("to_char({t}, {format})")
        }
        ("strftime", [t, format]) => format!("to_char({t}, {format})"),
        ("epoch", [t]) => format!("date_part('epoch', {t})"),
        ("regexp_matches", [s, pattern]) => format!("regexp_like({s}, {pattern})"),
        // PostgreSQL's paths of keys.
        ("json_extract_path_text", [json, keys @ ..]) if !keys.is_empty() => {
            format!("json_as_text({json}, {})", join(keys))
        }
        ("json_extract_path", [json, keys @ ..]) if !keys.is_empty() => {
            format!("json_get_json({json}, {})", join(keys))
        }
        ("json_parse" | "json_format", [json]) => format!("({json})"),
        ("date_parse", [s, format]) => {
            let format = mysql_format(&text_literal(format)?)?;
            format!("to_timestamp({s}, {})", quoted(&format))
        }
        // DataFusion's `date_format` is `to_char`, whose formats are chrono's: a format is read
        // as Presto's (MySQL's) when it names minutes or seconds the MySQL way, `%i` or `%s`.
        ("date_format", [t, format]) => {
            let format = text_literal(format)?;
            if !(format.contains("%i") || format.contains("%s")) {
                return None;
            }
            format!("to_char({t}, {})", quoted(&mysql_format(&format)?))
        }
        ("parse_datetime", [s, format]) => {
            let format = joda_format(&text_literal(format)?)?;
            format!("to_timestamp({s}, {})", quoted(&format))
        }
        ("format_datetime", [t, format]) => {
            let format = joda_format(&text_literal(format)?)?;
            format!("to_char({t}, {})", quoted(&format))
        }
        _ => return None,
    };
    parse_expr(&sql)
}

/// Presto's functions of a list and a lambda: `transform` (and DuckDB's `list_apply`), `filter`
/// and `any_match` are DataFusion's `array_transform`, `array_filter` and `array_any_match`;
/// `none_match(a, f)` is `NOT array_any_match(a, f)` and `all_match(a, x -> p)` is `NOT
/// array_any_match(a, x -> NOT (p))`, the `Some` returned (the call itself is renamed).
pub(super) fn lambda_functions(function: &mut ast::Function) -> Option<Expr> {
    let [ObjectNamePart::Identifier(name)] = function.name.0.as_slice() else {
        return None;
    };
    let name = name.value.to_ascii_lowercase();
    let FunctionArguments::List(list) = &mut function.args else {
        return None;
    };
    let [
        _,
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Lambda(lambda))),
    ] = list.args.as_mut_slice()
    else {
        return None;
    };
    let target = match name.as_str() {
        // DuckDB's `list_apply` and `apply` are its `list_transform`.
        "transform" | "list_apply" | "array_apply" | "apply" => "array_transform",
        "filter" => "array_filter",
        "any_match" | "none_match" => "array_any_match",
        "all_match" => {
            let body = std::mem::replace(&mut *lambda.body, Expr::value(Value::Null));
            *lambda.body = Expr::UnaryOp {
                op: ast::UnaryOperator::Not,
                expr: Box::new(Expr::Nested(Box::new(body))),
            };
            "array_any_match"
        }
        _ => return None,
    };
    rename(function, target);
    matches!(name.as_str(), "none_match" | "all_match").then(|| Expr::UnaryOp {
        op: ast::UnaryOperator::Not,
        expr: Box::new(Expr::Nested(Box::new(Expr::Function(function.clone())))),
    })
}

/// Whether `text` is an address range, `10.0.0.0/8` or `2600:1f00::/24`.
fn is_ip_range(text: &str) -> bool {
    text.split_once('/').is_some_and(|(address, bits)| {
        address.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
    })
}

/// Expressions as a list of arguments.
fn join(args: &[&Expr]) -> String {
    args.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Presto's `format(format, values...)` when its format has no specifier but `%s` (and `%%`):
/// the text and values concatenated. `None` for any other format, or other counts of values.
fn format_as_concat(format: &str, values: &[&Expr]) -> Option<String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut values = values.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        match chars.next()? {
            '%' => text.push('%'),
            's' => {
                parts.push(quoted(&std::mem::take(&mut text)));
                parts.push(format!("CAST({} AS VARCHAR)", values.next()?));
            }
            _ => return None,
        }
    }
    if values.next().is_some() {
        return None;
    }
    parts.push(quoted(&text));
    Some(format!("concat({})", parts.join(", ")))
}

/// Presto's `date_diff(unit, a, b)`: whole units from `a` to `b`, towards zero. Units of fixed
/// length by the seconds between; months (quarters, years) counted on the calendar, less one
/// when the day and time of `b` have not reached `a`'s (`a` plus the months is after `b`).
pub(super) fn date_diff(unit: &str, a: &Expr, b: &Expr) -> Option<String> {
    let seconds = match unit.to_ascii_lowercase().as_str() {
        "millisecond" => 0.001,
        "second" => 1.0,
        "minute" => 60.0,
        "hour" => 3_600.0,
        "day" => 86_400.0,
        "week" => 604_800.0,
        "month" => return Some(months_between(a, b)),
        "quarter" => return Some(format!("({} / 3)", months_between(a, b))),
        "year" => return Some(format!("({} / 12)", months_between(a, b))),
        _ => return None,
    };
    Some(format!(
        "CAST(trunc((date_part('epoch', {b}) - date_part('epoch', {a})) / {seconds:?}) AS BIGINT)"
    ))
}

/// Whole calendar months from `a` to `b`, towards zero, as Presto (Joda) counts them: January
/// 31 plus one month is February 28, so one month has passed by then.
pub(super) fn months_between(a: &Expr, b: &Expr) -> String {
    let part = |p: &str, t: &Expr| format!("CAST(date_part('{p}', {t}) AS BIGINT)");
    let m = format!(
        "(({} - {}) * 12 + {} - {})",
        part("year", b),
        part("year", a),
        part("month", b),
        part("month", a)
    );
    let plus_m = format!("{a} + CAST(concat({m}, ' month') AS INTERVAL)");
    format!(
        "(CASE WHEN {m} > 0 AND {plus_m} > {b} THEN {m} - 1 \
         WHEN {m} < 0 AND {plus_m} < {b} THEN {m} + 1 ELSE {m} END)"
    )
}

/// A timestamp as CloudTrail writes it (`2024-03-05T17:04:09Z`), as Athena's table holds it.
pub(super) fn as_athena_text(t: &Expr) -> Expr {
    parse_expr(&format!("to_char({t}, '%Y-%m-%dT%H:%M:%SZ')")).unwrap_or_else(|| t.clone())
}

/// Athena's `eventtime LIKE '2024-03-05%'` (text there): the time range that text prefix
/// names, which prunes (a year, month, day, hour, minute or second; a trailing separator may be
/// written). `None` for any other pattern.
pub(super) fn time_prefix_range(t: &Expr, pattern: &Expr) -> Option<Expr> {
    const FIRST: &str = "0000-01-01T00:00:00Z";
    let pattern = text_literal(pattern)?;
    let prefix = pattern.strip_suffix('%')?;
    if prefix.contains(['%', '_', '\\']) {
        return None;
    }
    let prefix = prefix.strip_suffix(['-', 'T', ':']).unwrap_or(prefix);
    let unit = match prefix.len() {
        4 => "year",
        7 => "month",
        10 => "day",
        13 => "hour",
        16 => "minute",
        19 => "second",
        _ => return None,
    };
    let start = format!("{prefix}{}", &FIRST[prefix.len()..]);
    // The prefix is a time only if it reads as one, separators and all.
    let parsed = chrono::DateTime::parse_from_rfc3339(&start).ok()?;
    if parsed.format("%Y-%m-%dT%H:%M:%SZ").to_string() != start {
        return None;
    }
    parse_expr(&format!(
        "({t} >= TIMESTAMP '{start}' AND {t} < TIMESTAMP '{start}' + INTERVAL '1 {unit}')"
    ))
}

/// The text of a single-quoted string literal.
pub(super) fn text_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(text),
            ..
        }) => Some(text.clone()),
        _ => None,
    }
}

/// `text` as a SQL string literal.
pub(super) fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A Presto (MySQL) time format as chrono's; `None` for a specifier chrono has no match for.
pub(super) fn mysql_format(format: &str) -> Option<String> {
    let mut out = String::with_capacity(format.len() + 8);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        out.push_str(match chars.next()? {
            'a' => "%a",
            'b' => "%b",
            'c' => "%-m",
            'd' => "%d",
            'e' => "%-d",
            'f' => "%6f",
            'H' => "%H",
            'h' | 'I' => "%I",
            'i' => "%M",
            'j' => "%j",
            'k' => "%-H",
            'l' => "%-I",
            'M' => "%B",
            'm' => "%m",
            'p' => "%p",
            'r' => "%I:%M:%S %p",
            'S' | 's' => "%S",
            'T' => "%H:%M:%S",
            'U' => "%U",
            'u' => "%W",
            'W' => "%A",
            'Y' => "%Y",
            'y' => "%y",
            '%' => "%%",
            _ => return None,
        });
    }
    Some(out)
}

/// A Joda time format (Presto's `format_datetime`) as chrono's: letters in runs (`yyyy`, `MM`,
/// `HH`...), text in single quotes kept; `None` for a letter chrono has no match for.
pub(super) fn joda_format(format: &str) -> Option<String> {
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::with_capacity(format.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted text; '' is a quote.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\'') {
                out.push('\'');
                i = j + 1;
                continue;
            }
            while j < chars.len() {
                if chars[j] == '\'' {
                    if chars.get(j + 1) == Some(&'\'') {
                        out.push('\'');
                        j += 2;
                        continue;
                    }
                    break;
                }
                if chars[j] == '%' {
                    out.push('%');
                }
                out.push(chars[j]);
                j += 1;
            }
            i = j + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            if c == '%' {
                out.push('%');
            }
            out.push(c);
            i += 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        out.push_str(match (c, n) {
            ('y' | 'Y', 2) => "%y",
            ('y' | 'Y', _) => "%Y",
            ('M', 1) => "%-m",
            ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', 1) => "%-d",
            ('d', _) => "%d",
            ('D', _) => "%j",
            ('H', 1) => "%-H",
            ('H', _) => "%H",
            ('h', 1) => "%-I",
            ('h', _) => "%I",
            ('m', 1) => "%-M",
            ('m', _) => "%M",
            ('s', 1) => "%-S",
            ('s', _) => "%S",
            ('S', 3) => "%3f",
            ('S', 6) => "%6f",
            ('S', 9) => "%9f",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('Z', 1) => "%z",
            ('Z', _) => "%:z",
            _ => return None,
        });
        i += n;
    }
    Some(out)
}

#[derive(Debug, PartialEq)]
pub(super) enum Step {
    Key(String),
    Index(u64),
}

/// The keys and indexes of a JSONPath such as `$.a.b[0]["c d"]`; `None` for anything else
/// (wildcards, filters, recursive descent).
pub(super) fn json_path(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            if key.is_empty() || key.contains('*') {
                return None;
            }
            steps.push(Step::Key(key.to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']')?;
            let inside = after[..close].trim();
            let quoted = inside
                .strip_prefix('"')
                .and_then(|k| k.strip_suffix('"'))
                .or_else(|| inside.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')));
            steps.push(match quoted {
                Some(key) => Step::Key(key.to_string()),
                None => Step::Index(inside.parse().ok()?),
            });
            rest = &after[close + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_and_joda_time_formats_are_written_as_chrono_formats() {
        assert_eq!(
            mysql_format("%Y-%m-%d %H:%i:%s.%f").as_deref(),
            Some("%Y-%m-%d %H:%M:%S.%6f")
        );
        assert_eq!(
            mysql_format("%W %M %e, %c/%d %h%p %T %r 100%%").as_deref(),
            Some("%A %B %-d, %-m/%d %I%p %H:%M:%S %I:%M:%S %p 100%%")
        );
        assert_eq!(mysql_format("%D"), None);
        assert_eq!(mysql_format("%"), None);
        assert_eq!(
            joda_format("yyyy-MM-dd'T'HH:mm:ss.SSSZ").as_deref(),
            Some("%Y-%m-%dT%H:%M:%S.%3f%z")
        );
        assert_eq!(
            joda_format("EEEE, d MMMM yy h:m a 'o''clock' 5%").as_deref(),
            Some("%A, %-d %B %y %-I:%-M %p o'clock 5%%")
        );
        assert_eq!(joda_format("yyyy-ww"), None);
    }

    #[test]
    fn a_jsonpath_of_keys_and_indexes_is_its_steps_and_any_other_none() {
        assert_eq!(json_path("$"), Some(vec![]));
        assert_eq!(
            json_path("$.a['k'][12].b"),
            Some(vec![
                Step::Key("a".into()),
                Step::Key("k".into()),
                Step::Index(12),
                Step::Key("b".into())
            ])
        );
        assert_eq!(json_path("a.b"), None);
        assert_eq!(json_path("$..a"), None);
    }
}
