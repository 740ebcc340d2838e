//! Presto's casts of JSON text to lists, maps and rows, the way Athena's users take a payload's
//! list apart: `CROSS JOIN UNNEST(CAST(json_extract(requestParameters, '$.instancesSet.items')
//! AS ARRAY(JSON))) AS t(item)`. Such a cast is rewritten to `json_cast(json, 'ARRAY(JSON)')`,
//! this module's function, whose result has the Arrow type the SQL type names.
//!
//! Where Presto fails a cast of a value of another shape (an object cast to a list, text cast
//! to a number), the value is NULL here, so one odd event does not fail a query over millions.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, MapArray, StringArray,
    StructArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast;
use serde_json::Value;
use serde_json::value::RawValue;

/// What a JSON value is cast to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JsonType {
    /// JSON text (`JSON`).
    Json,
    /// Text: a string's value, any other value's JSON text (`VARCHAR`).
    Text,
    Int,
    Float,
    Bool,
    Array(Box<JsonType>),
    /// A map from text keys (`MAP(VARCHAR, T)`).
    Map(Box<JsonType>),
    /// An object's members by name, matched in any case as Presto does (`ROW(name T, ...)`).
    Row(Vec<(String, JsonType)>),
}

impl JsonType {
    /// The type a parsed SQL type names, if a JSON value can be cast to it.
    pub(crate) fn of_sql(data_type: &ast::DataType) -> Option<JsonType> {
        use ast::{ArrayElemTypeDef as Elem, DataType as T};
        Some(match data_type {
            T::JSON | T::JSONB => JsonType::Json,
            T::Array(
                Elem::AngleBracket(item) | Elem::SquareBracket(item, _) | Elem::Parenthesis(item),
            ) => JsonType::Array(Box::new(JsonType::of_sql(item)?)),
            T::Map(key, value) => match JsonType::of_sql(key)? {
                JsonType::Text => JsonType::Map(Box::new(JsonType::of_sql(value)?)),
                _ => return None,
            },
            T::Struct(fields, _) => JsonType::Row(
                fields
                    .iter()
                    .map(|f| {
                        Some((
                            f.field_name.as_ref()?.value.clone(),
                            JsonType::of_sql(&f.field_type)?,
                        ))
                    })
                    .collect::<Option<_>>()?,
            ),
            scalar => {
                let name = scalar.to_string().to_ascii_uppercase();
                let name = name.split('(').next().unwrap_or_default().trim();
                match name {
                    "VARCHAR" | "CHAR" | "TEXT" | "STRING" | "CHARACTER VARYING" | "CHARACTER" => {
                        JsonType::Text
                    }
                    "BIGINT" | "INTEGER" | "INT" | "SMALLINT" | "TINYINT" | "INT8" | "INT4"
                    | "INT2" | "INT64" => JsonType::Int,
                    "DOUBLE" | "DOUBLE PRECISION" | "REAL" | "FLOAT" | "FLOAT8" | "FLOAT4"
                    | "FLOAT64" | "DECIMAL" | "NUMERIC" => JsonType::Float,
                    "BOOLEAN" | "BOOL" => JsonType::Bool,
                    _ => return None,
                }
            }
        })
    }

    /// Whether this is a list, map or row (a cast to JSON or text is the value itself here).
    pub(crate) fn is_composite(&self) -> bool {
        matches!(
            self,
            JsonType::Array(_) | JsonType::Map(_) | JsonType::Row(_)
        )
    }

    /// The type as Presto writes it, which [`crate::dialect`] parses back.
    pub(crate) fn sql(&self) -> String {
        match self {
            JsonType::Json => "JSON".into(),
            JsonType::Text => "VARCHAR".into(),
            JsonType::Int => "BIGINT".into(),
            JsonType::Float => "DOUBLE".into(),
            JsonType::Bool => "BOOLEAN".into(),
            JsonType::Array(item) => format!("ARRAY({})", item.sql()),
            JsonType::Map(value) => format!("MAP(VARCHAR, {})", value.sql()),
            JsonType::Row(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(name, t)| format!("{} {}", ast::Ident::with_quote('"', name), t.sql()))
                    .collect();
                format!("ROW({})", fields.join(", "))
            }
        }
    }

    fn arrow(&self) -> DataType {
        match self {
            JsonType::Json | JsonType::Text => DataType::Utf8,
            JsonType::Int => DataType::Int64,
            JsonType::Float => DataType::Float64,
            JsonType::Bool => DataType::Boolean,
            JsonType::Array(item) => {
                DataType::List(Arc::new(Field::new("item", item.arrow(), true)))
            }
            JsonType::Map(value) => DataType::Map(map_entries(value), false),
            JsonType::Row(fields) => DataType::Struct(row_fields(fields)),
        }
    }

    /// `values` (a JSON value a row, as its source text, or none) as an array of this type.
    fn build(&self, values: &[Option<&RawValue>]) -> ArrayRef {
        let scalar = |v: &Option<&RawValue>| -> Option<Value> {
            serde_json::from_str(present(v)?.get()).ok()
        };
        match self {
            JsonType::Json => Arc::new(
                values
                    .iter()
                    .map(|v| present(v).map(RawValue::get))
                    .collect::<StringArray>(),
            ),
            JsonType::Text => Arc::new(
                values
                    .iter()
                    .map(|v| {
                        let raw = present(v)?.get();
                        match raw.starts_with('"') {
                            true => serde_json::from_str::<String>(raw).ok(),
                            false => Some(raw.to_string()),
                        }
                    })
                    .collect::<StringArray>(),
            ),
            JsonType::Int => Arc::new(
                values
                    .iter()
                    .map(|v| match scalar(v)? {
                        // A fraction is rounded, as Presto rounds it.
                        Value::Number(n) => n.as_i64().or_else(|| {
                            n.as_f64()
                                .filter(|f| f.abs() < 9.2e18)
                                .map(|f| f.round() as i64)
                        }),
                        Value::String(s) => s.trim().parse().ok(),
                        _ => None,
                    })
                    .collect::<Int64Array>(),
            ),
            JsonType::Float => Arc::new(
                values
                    .iter()
                    .map(|v| match scalar(v)? {
                        Value::Number(n) => n.as_f64(),
                        Value::String(s) => s.trim().parse().ok(),
                        _ => None,
                    })
                    .collect::<Float64Array>(),
            ),
            JsonType::Bool => Arc::new(
                values
                    .iter()
                    .map(|v| match scalar(v)? {
                        Value::Bool(b) => Some(b),
                        Value::String(s) if s == "true" => Some(true),
                        Value::String(s) if s == "false" => Some(false),
                        _ => None,
                    })
                    .collect::<BooleanArray>(),
            ),
            JsonType::Array(item) => {
                let (offsets, valid, items) = spread(values, |raw| {
                    let items: Vec<&RawValue> = serde_json::from_str(raw.get()).ok()?;
                    Some(items.into_iter().map(|i| (String::new(), i)).collect())
                });
                let field = Arc::new(Field::new("item", item.arrow(), true));
                let items: Vec<Option<&RawValue>> = items.iter().map(|(_, v)| Some(*v)).collect();
                Arc::new(ListArray::new(field, offsets, item.build(&items), valid))
            }
            JsonType::Map(value) => {
                let (offsets, valid, entries) = spread(values, |raw| {
                    let members: BTreeMap<String, &RawValue> =
                        serde_json::from_str(raw.get()).ok()?;
                    Some(members.into_iter().collect())
                });
                let keys: StringArray = entries.iter().map(|(k, _)| Some(k.as_str())).collect();
                let values: Vec<Option<&RawValue>> =
                    entries.iter().map(|(_, v)| Some(*v)).collect();
                let DataType::Struct(fields) = map_entries(value).data_type().clone() else {
                    unreachable!("a map's entries are a struct")
                };
                let entries =
                    StructArray::new(fields, vec![Arc::new(keys), value.build(&values)], None);
                Arc::new(MapArray::new(
                    map_entries(value),
                    offsets,
                    entries,
                    valid,
                    false,
                ))
            }
            JsonType::Row(fields) => {
                let objects: Vec<Option<BTreeMap<String, &RawValue>>> = values
                    .iter()
                    .map(|v| serde_json::from_str(present(v)?.get()).ok())
                    .collect();
                let columns = fields
                    .iter()
                    .map(|(name, t)| {
                        let members: Vec<Option<&RawValue>> = objects
                            .iter()
                            .map(|o| {
                                let o = o.as_ref()?;
                                o.get(name)
                                    .or_else(|| {
                                        o.iter()
                                            .find(|(k, _)| k.eq_ignore_ascii_case(name))
                                            .map(|(_, v)| v)
                                    })
                                    .copied()
                            })
                            .collect();
                        t.build(&members)
                    })
                    .collect();
                let valid =
                    NullBuffer::from(objects.iter().map(Option::is_some).collect::<Vec<_>>());
                Arc::new(StructArray::new(row_fields(fields), columns, Some(valid)))
            }
        }
    }
}

/// A value, unless it is none or JSON's `null` (SQL's NULL).
fn present<'v>(value: &Option<&'v RawValue>) -> Option<&'v RawValue> {
    value.filter(|v| v.get() != "null")
}

/// An array's or object's members (with their keys), each row's as `members` finds them.
type Members<'v> = Vec<(String, &'v RawValue)>;

/// The list offsets, validity and members of `values`, each row's those `members` finds in it
/// (`None`: the row is NULL).
fn spread<'v>(
    values: &[Option<&'v RawValue>],
    members: impl Fn(&'v RawValue) -> Option<Members<'v>>,
) -> (OffsetBuffer<i32>, Option<NullBuffer>, Members<'v>) {
    let mut offsets = Vec::with_capacity(values.len() + 1);
    offsets.push(0i32);
    let mut valid = Vec::with_capacity(values.len());
    let mut all = Vec::new();
    for v in values {
        match v.and_then(&members) {
            Some(found) => {
                all.extend(found);
                valid.push(true);
            }
            None => valid.push(false),
        }
        offsets.push(i32::try_from(all.len()).unwrap_or(i32::MAX));
    }
    (
        OffsetBuffer::new(offsets.into()),
        Some(NullBuffer::from(valid)),
        all,
    )
}

fn map_entries(value: &JsonType) -> FieldRef {
    Arc::new(Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", value.arrow(), true),
        ])),
        false,
    ))
}

fn row_fields(fields: &[(String, JsonType)]) -> Fields {
    fields
        .iter()
        .map(|(name, t)| Field::new(name, t.arrow(), true))
        .collect()
}

/// `json_cast(json, 'TYPE')`: JSON text cast to the type Presto names `TYPE`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonCast {
    signature: Signature,
}

impl JsonCast {
    fn target(args: &[Option<&ScalarValue>]) -> Result<JsonType> {
        let text = match args.get(1) {
            Some(Some(ScalarValue::Utf8(Some(t)) | ScalarValue::Utf8View(Some(t)))) => t,
            _ => return plan_err!("json_cast's second argument is a type written as text"),
        };
        match crate::dialect::parse_presto_type(text)
            .as_ref()
            .and_then(JsonType::of_sql)
        {
            Some(t) => Ok(t),
            None => plan_err!("json_cast cannot cast JSON to {text}"),
        }
    }
}

impl ScalarUDFImpl for JsonCast {
    fn name(&self) -> &str {
        "json_cast"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("json_cast's type is read from its second argument")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let target = Self::target(args.scalar_arguments)?;
        Ok(Arc::new(Field::new(self.name(), target.arrow(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let text = match &args.args[1] {
            ColumnarValue::Scalar(s) => Some(s),
            ColumnarValue::Array(_) => None,
        };
        let target = Self::target(&[None, text])?;
        let json = args.args[0].clone().into_array(args.number_rows)?;
        let json = match json.data_type() {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => {
                cast(&json, &DataType::Utf8)?
            }
            other => return exec_err!("json_cast reads JSON text, not {other}"),
        };
        let json = json
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        let values: Vec<Option<&RawValue>> = json
            .iter()
            .map(|text| text.and_then(|t| serde_json::from_str(t).ok()))
            .collect();
        Ok(ColumnarValue::Array(target.build(&values)))
    }
}

pub(crate) fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(JsonCast {
        signature: Signature::any(2, Volatility::Immutable),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_as_presto_writes_them_parse_back_to_themselves() {
        for text in [
            "ARRAY(JSON)",
            "MAP(VARCHAR, ARRAY(BIGINT))",
            "ARRAY(ROW(\"key\" VARCHAR, \"Value\" ROW(\"n\" DOUBLE, \"b\" BOOLEAN)))",
        ] {
            let parsed = crate::dialect::parse_presto_type(text).expect(text);
            assert_eq!(JsonType::of_sql(&parsed).expect(text).sql(), text);
        }
        // Written as PostgreSQL and DuckDB write them, and in any case.
        let of =
            |text: &str| crate::dialect::parse_presto_type(text).and_then(|t| JsonType::of_sql(&t));
        assert_eq!(of("array<json>"), of("ARRAY(JSON)"));
        assert_eq!(
            of("STRUCT(a varchar)").map(|t| t.sql()).as_deref(),
            Some("ROW(\"a\" VARCHAR)")
        );
        // Maps have text keys; a type JSON cannot be cast to is none.
        assert_eq!(of("MAP(BIGINT, JSON)"), None);
        assert_eq!(of("ARRAY(TIMESTAMP)"), None);
        assert_eq!(of("ARRAY(JSON) x"), None);
    }
}
