//! Functions for investigations: who acted (`principal`), ARN parts, IP ranges.

use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray, StructArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionImplementation, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;
use ipnet::IpNet;

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
            string_fn(move |arn| arn_part(arn, part)),
        ));
    }
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
    f: impl Fn(&str) -> Option<&str> + Send + Sync + 'static,
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
}
