//! Functions for investigations: who acted (`principal`), ARN parts, IP ranges; and Presto's
//! URL functions, as Athena has them (IAM writes the policy documents of its requests
//! URL-encoded: `url_decode(requestParameters->>'policyDocument')`).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray, StructArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarFunctionImplementation, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;
use ipnet::IpNet;
use url::Url;

/// Name, signature and description of each function trailql adds, for `\functions` and docs.
pub const FUNCTIONS: &[(&str, &str, &str)] = &[
    (
        "principal",
        "principal(userIdentity) -> string",
        "who acted, whatever the identity type: the ARN of users, roles with their session and root; the service for AWSService; the user id for IdentityCenterUser; the account for AWSAccount",
    ),
    (
        "arn_account",
        "arn_account(arn) -> string",
        "the account id of an ARN",
    ),
    (
        "arn_service",
        "arn_service(arn) -> string",
        "the service of an ARN (iam, s3, sts...)",
    ),
    (
        "arn_region",
        "arn_region(arn) -> string",
        "the region of an ARN (empty for global services)",
    ),
    (
        "arn_resource",
        "arn_resource(arn) -> string",
        "the resource part of an ARN (user/alice, role/x, bucket...)",
    ),
    (
        "ip_in_cidr",
        "ip_in_cidr(ip, cidr) -> boolean",
        "whether an IP address lies in a CIDR range (IPv4 or IPv6); false for service names such as 'AWS Internal'; a range that is none is an error",
    ),
    (
        "is_ip",
        "is_ip(text) -> boolean",
        "whether sourceIPAddress is an IP address rather than a service name",
    ),
    (
        "to_json",
        "to_json(value) -> string",
        "a value as JSON text, structs as objects (null fields left out, as CloudTrail writes them); Athena's CAST(userIdentity AS JSON) is this",
    ),
    (
        "url_decode",
        "url_decode(text) -> string",
        "text with its %XX escapes decoded and + as a space, as Presto's (IAM's policy documents in requestParameters are URL-encoded)",
    ),
    (
        "url_encode",
        "url_encode(text) -> string",
        "text escaped for a URL's query, as Presto's",
    ),
    (
        "url_extract_host",
        "url_extract_host(url) -> string",
        "the host of a URL; also url_extract_protocol, url_extract_path, url_extract_query, url_extract_fragment and url_extract_port (a number), as Presto's",
    ),
    (
        "url_extract_parameter",
        "url_extract_parameter(url, name) -> string",
        "the first value of a parameter of a URL's query, as Presto's",
    ),
];

pub(crate) fn register(ctx: &SessionContext) {
    for (name, part) in [
        ("arn_account", 4),
        ("arn_service", 2),
        ("arn_region", 3),
        ("arn_resource", 5),
    ] {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Utf8],
            DataType::Utf8,
            Volatility::Immutable,
            string_fn(move |arn| arn_part(arn, part).map(Cow::Borrowed)),
        ));
    }
    type UrlPart = fn(&Url) -> Option<Cow<'_, str>>;
    let url_parts: [(&str, UrlPart); 5] = [
        ("url_extract_host", |u| u.host_str().map(Cow::Borrowed)),
        ("url_extract_protocol", |u| Some(Cow::Borrowed(u.scheme()))),
        ("url_extract_path", |u| Some(Cow::Borrowed(u.path()))),
        ("url_extract_query", |u| u.query().map(Cow::Borrowed)),
        ("url_extract_fragment", |u| u.fragment().map(Cow::Borrowed)),
    ];
    for (name, part) in url_parts {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Utf8],
            DataType::Utf8,
            Volatility::Immutable,
            string_fn(move |text| {
                let url = Url::parse(text).ok()?;
                part(&url).map(|p| Cow::Owned(p.into_owned()))
            }),
        ));
    }
    for (name, f) in [
        ("url_decode", url_decode as fn(&str) -> Option<Cow<'_, str>>),
        ("url_encode", |t| Some(url_encode(t))),
    ] {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Utf8],
            DataType::Utf8,
            Volatility::Immutable,
            string_fn(f),
        ));
    }
    ctx.register_udf(create_udf(
        "url_extract_port",
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let texts = utf8(&args[0], rows(args))?;
            let out: Int64Array = texts
                .as_string::<i32>()
                .iter()
                .map(|t| Url::parse(t?).ok()?.port().map(i64::from))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    ctx.register_udf(create_udf(
        "url_extract_parameter",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let n = rows(args);
            let (urls, names) = (utf8(&args[0], n)?, utf8(&args[1], n)?);
            let out: StringArray = urls
                .as_string::<i32>()
                .iter()
                .zip(names.as_string::<i32>().iter())
                .map(|(url, name)| {
                    let (url, name) = (Url::parse(url?).ok()?, name?);
                    let value = url.query_pairs().find(|(k, _)| k == name)?.1;
                    Some(value.into_owned())
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    ctx.register_udf(create_udf(
        "ip_in_cidr",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(ip_in_cidr),
    ));
    ctx.register_udf(create_udf(
        "is_ip",
        vec![DataType::Utf8],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let texts = utf8(&args[0], 1)?;
            let out: BooleanArray = texts
                .as_string::<i32>()
                .iter()
                .map(|t| t.map(|t| t.parse::<IpAddr>().is_ok()))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    ctx.register_udf(ScalarUDF::from(ToJson {
        signature: Signature::any(1, Volatility::Immutable),
    }));
    let identity = trailql_schema::arrow_schema()
        .field_with_name("userIdentity")
        .expect("userIdentity is in the schema")
        .data_type()
        .clone();
    ctx.register_udf(create_udf(
        "principal",
        vec![identity],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(principal),
    ));
}

/// `to_json(value)`: any value as JSON text, by arrow's JSON writer.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToJson {
    signature: Signature,
}

impl ScalarUDFImpl for ToJson {
    fn name(&self) -> &str {
        "to_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let values = args.args[0].clone().into_array(args.number_rows)?;
        Ok(ColumnarValue::Array(Arc::new(to_json(&values)?)))
    }
}

/// Each value of `values` as JSON text (NULL for a null). Written as the member `v` of one
/// object a line, then cut out of it.
fn to_json(values: &ArrayRef) -> Result<StringArray> {
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("v", values.data_type().clone(), true),
    ]));
    let batch = arrow::record_batch::RecordBatch::try_new(schema, vec![Arc::clone(values)])?;
    let mut lines = Vec::new();
    let mut writer = arrow::json::LineDelimitedWriter::new(&mut lines);
    writer.write(&batch)?;
    writer.finish()?;
    let text = String::from_utf8_lossy(&lines);
    Ok(text
        .lines()
        .map(|line| {
            line.strip_prefix("{\"v\":")
                .and_then(|l| l.strip_suffix('}'))
        })
        .collect())
}

/// The argument as a Utf8 array of `rows` rows.
fn utf8(arg: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let array = arg.clone().into_array(rows)?;
    Ok(cast(&array, &DataType::Utf8)?)
}

fn rows(args: &[ColumnarValue]) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1)
}

fn string_fn(
    f: impl Fn(&str) -> Option<Cow<'_, str>> + Send + Sync + 'static,
) -> ScalarFunctionImplementation {
    Arc::new(move |args: &[ColumnarValue]| {
        let input = utf8(&args[0], rows(args))?;
        let out: StringArray = input
            .as_string::<i32>()
            .iter()
            .map(|v| v.and_then(&f))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    })
}

/// Part `n` of `arn:partition:service:region:account:resource` (the resource keeps its colons).
fn arn_part(arn: &str, n: usize) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    if parts.next() != Some("arn") {
        return None;
    }
    parts.nth(n - 1)
}

/// Presto's `url_decode`: `%XX` escapes decoded and `+` a space; `None` when the bytes so
/// decoded are no UTF-8 (an escape that is no escape is kept as written, as browsers do).
fn url_decode(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains(['%', '+']) {
        return Some(Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Presto's `url_encode`: letters, digits and `-_.*` kept, a space as `+`, any other byte as
/// `%XX` (upper-case hex).
fn url_encode(text: &str) -> Cow<'_, str> {
    let kept = |b: u8| b.is_ascii_alphanumeric() || b"-_.*".contains(&b);
    if text.bytes().all(kept) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        match b {
            b' ' => out.push('+'),
            b if kept(b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    Cow::Owned(out)
}

/// A range as `ip_in_cidr` takes it: `a.b.c.d/n`, an IPv6 range, or one address.
fn ip_range(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn ip_in_cidr(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    // A range written in the query that is none is a mistake to point out, not a reason to
    // answer "no" for every row; a column of ranges may hold a bad one (false for that row).
    if let ColumnarValue::Scalar(range) = &args[1]
        && let Some(Some(text)) = range.try_as_str()
        && ip_range(text).is_none()
    {
        return Err(datafusion::error::DataFusionError::Execution(format!(
            "ip_in_cidr: '{text}' is not an IP range (such as 10.0.0.0/8 or 2001:db8::/32) or address"
        )));
    }
    let n = rows(args);
    let (ips, cidrs) = (utf8(&args[0], n)?, utf8(&args[1], n)?);
    let mut last: Option<(String, Option<IpNet>)> = None;
    let out: BooleanArray = ips
        .as_string::<i32>()
        .iter()
        .zip(cidrs.as_string::<i32>().iter())
        .map(|(ip, cidr)| {
            let (ip, cidr) = (ip?, cidr?);
            let net = match &last {
                Some((text, net)) if text == cidr => *net,
                _ => {
                    let net = ip_range(cidr);
                    last = Some((cidr.to_string(), net));
                    net
                }
            };
            Some(matches!((ip.parse::<IpAddr>(), net), (Ok(ip), Some(net)) if net.contains(&ip)))
        })
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out)))
}

fn principal(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let array = args[0].clone().into_array(rows(args))?;
    let identity = array.as_struct();
    let field =
        |s: &StructArray, name: &str| -> Option<ArrayRef> { s.column_by_name(name).cloned() };
    let text = |a: &Option<ArrayRef>, row: usize| -> Option<String> {
        let a = a.as_ref()?.as_string_opt::<i32>()?;
        a.is_valid(row).then(|| a.value(row).to_string())
    };
    let kind = field(identity, "type");
    let arn = field(identity, "arn");
    let principal_id = field(identity, "principalId");
    let account = field(identity, "accountId");
    let user_name = field(identity, "userName");
    let invoked_by = field(identity, "invokedBy");
    let on_behalf_user = field(identity, "onBehalfOf").and_then(|o| field(o.as_struct(), "userId"));
    let out: StringArray = (0..identity.len())
        .map(|row| {
            if identity.is_null(row) {
                return None;
            }
            match text(&kind, row).as_deref() {
                Some("AWSService") => text(&invoked_by, row),
                Some("IdentityCenterUser") => {
                    text(&on_behalf_user, row).or_else(|| text(&user_name, row))
                }
                Some("AWSAccount") => text(&account, row).or_else(|| text(&principal_id, row)),
                Some("SAMLUser" | "WebIdentityUser") => {
                    text(&user_name, row).or_else(|| text(&principal_id, row))
                }
                _ => text(&arn, row)
                    .or_else(|| text(&principal_id, row))
                    .or_else(|| text(&invoked_by, row))
                    .or_else(|| text(&account, row)),
            }
        })
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_parts() {
        let arn = "arn:aws:sts::123456789012:assumed-role/Admin/alice";
        assert_eq!(arn_part(arn, 2), Some("sts"));
        assert_eq!(arn_part(arn, 3), Some(""));
        assert_eq!(arn_part(arn, 4), Some("123456789012"));
        assert_eq!(arn_part(arn, 5), Some("assumed-role/Admin/alice"));
        assert_eq!(
            arn_part("arn:aws:s3:::bucket/key:with:colons", 5),
            Some("bucket/key:with:colons")
        );
        assert_eq!(arn_part("not an arn", 2), None);
    }

    #[test]
    fn values_as_json_are_objects_without_their_null_fields_and_null_for_null() {
        use arrow::array::{Int64Array, StructArray};
        use arrow::datatypes::Field;
        let names: ArrayRef = Arc::new(StringArray::from(vec![Some("a\"b"), None, Some("c")]));
        let counts: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), Some(2), None]));
        let structs = StructArray::new(
            vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("n", DataType::Int64, true),
            ]
            .into(),
            vec![names, counts],
            Some(vec![true, true, false].into()),
        );
        let json = to_json(&(Arc::new(structs) as ArrayRef)).unwrap();
        let got: Vec<Option<&str>> = json.iter().collect();
        assert_eq!(
            got,
            [Some(r#"{"name":"a\"b","n":1}"#), Some(r#"{"n":2}"#), None]
        );
    }

    #[test]
    fn url_escapes_are_decoded_and_encoded_as_presto_does() {
        assert_eq!(
            url_decode("%7B%22Version%22%3A%20%222012-10-17%22+%7D").as_deref(),
            Some(r#"{"Version": "2012-10-17" }"#)
        );
        assert_eq!(url_decode("100%").as_deref(), Some("100%"));
        assert_eq!(url_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(url_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(url_decode("%C3"), None);
        assert_eq!(url_encode("a b/é-_.*"), "a+b%2F%C3%A9-_.*");
        assert_eq!(
            url_decode(&url_encode("{\"a\": [1, 2]}")).as_deref(),
            Some("{\"a\": [1, 2]}")
        );
    }
}
