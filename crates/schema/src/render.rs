//! Rebuild CloudTrail records as JSON text from trailql batches: the inverse of the decoder.
//!
//! Typed columns are rendered field by field; JSON text columns are copied verbatim (they hold
//! the source text); then the `_unmapped` object is laid over the result, recursively where a
//! typed struct and an unmapped object meet, replacing the typed value everywhere else.

use std::fmt;

use arrow::array::{
    Array, AsArray, BooleanArray, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::TimestampMicrosecondType;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::{FieldSpec, Kind, RECORD, SchemaError, UNMAPPED, time};

/// A column of a batch seen through its field's kind.
enum View<'a> {
    Str(&'a StringArray),
    Json(&'a StringArray),
    Bool(&'a BooleanArray),
    Time(&'a TimestampMicrosecondArray),
    Struct(&'a StructArray, Vec<View<'a>>),
    List(&'a ListArray, Vec<View<'a>>),
}

impl<'a> View<'a> {
    fn new(spec: &FieldSpec, array: &'a dyn Array) -> Result<Self, SchemaError> {
        let mismatch = || SchemaError::Mismatch {
            reason: format!("column `{}` has type {}", spec.name, array.data_type()),
        };
        Ok(match &spec.kind {
            Kind::Str => View::Str(array.as_string_opt().ok_or_else(mismatch)?),
            Kind::Json => View::Json(array.as_string_opt().ok_or_else(mismatch)?),
            Kind::Bool => View::Bool(array.as_boolean_opt().ok_or_else(mismatch)?),
            Kind::Timestamp => View::Time(
                array
                    .as_primitive_opt::<TimestampMicrosecondType>()
                    .ok_or_else(mismatch)?,
            ),
            Kind::Struct(children) => {
                let s = array.as_struct_opt().ok_or_else(mismatch)?;
                View::Struct(s, children_views(children, s)?)
            }
            Kind::ListOfStruct(children) => {
                let l = array.as_list_opt::<i32>().ok_or_else(mismatch)?;
                let items = l.values().as_struct_opt().ok_or_else(mismatch)?;
                View::List(l, children_views(children, items)?)
            }
        })
    }

    fn is_valid(&self, row: usize) -> bool {
        match self {
            View::Str(a) | View::Json(a) => a.is_valid(row),
            View::Bool(a) => a.is_valid(row),
            View::Time(a) => a.is_valid(row),
            View::Struct(a, _) => a.is_valid(row),
            View::List(a, _) => a.is_valid(row),
        }
    }
}

fn children_views<'a>(
    specs: &[FieldSpec],
    s: &'a StructArray,
) -> Result<Vec<View<'a>>, SchemaError> {
    specs
        .iter()
        .map(|spec| {
            let col = s
                .column_by_name(spec.name)
                .ok_or_else(|| SchemaError::Mismatch {
                    reason: format!("struct lacks member `{}`", spec.name),
                })?;
            View::new(spec, col.as_ref())
        })
        .collect()
}

/// The members of a JSON object in source order, keys and values kept as raw text.
struct Entries(Vec<(Key, Box<RawValue>)>);

/// A member's key as written (quotes and escapes included) and the text it stands for, which
/// is `None` for a key no UTF-8 text can hold (an escape of a lone surrogate, `"\ud800"`).
struct Key {
    raw: Box<RawValue>,
    text: Option<String>,
}

impl Key {
    fn new(raw: Box<RawValue>) -> Self {
        let quoted = raw.get();
        let text = match quoted.contains('\\') {
            false => Some(quoted[1..quoted.len() - 1].to_string()),
            true => serde_json::from_str(quoted).ok(),
        };
        Key { raw, text }
    }
}

impl Entries {
    /// The last value under `key` (the one a JSON reader keeps when a key repeats).
    fn get(&self, key: &str) -> Option<&RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.text.as_deref() == Some(key))
            .map(|(_, v)| v.as_ref())
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some((key, value)) = map.next_entry::<Box<RawValue>, Box<RawValue>>()? {
                    out.push((Key::new(key), value));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Append every row of `batch` to `out` as one JSON object per line.
pub fn write_ndjson(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), SchemaError> {
    let views = RECORD
        .iter()
        .map(|spec| {
            let col = batch
                .column_by_name(spec.name)
                .ok_or_else(|| SchemaError::Mismatch {
                    reason: format!("missing column `{}`", spec.name),
                })?;
            View::new(spec, col.as_ref())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let unmapped = batch
        .column_by_name(UNMAPPED)
        .and_then(|c| c.as_string_opt::<i32>());
    for row in 0..batch.num_rows() {
        let extra = match unmapped.filter(|u| u.is_valid(row)) {
            Some(u) => Some(parse_entries(u.value(row), row, UNMAPPED)?),
            None => None,
        };
        render_object(RECORD, &views, row, extra.as_ref(), out)?;
        out.push(b'\n');
    }
    Ok(())
}

fn parse_entries(text: &str, row: usize, column: &str) -> Result<Entries, SchemaError> {
    serde_json::from_str(text).map_err(|e| SchemaError::InvalidJson {
        row,
        column: column.to_string(),
        reason: e.to_string(),
    })
}

fn write_key(out: &mut Vec<u8>, first: &mut bool, key: &str) {
    separate(out, first);
    write_str(out, key);
    out.push(b':');
}

/// [`write_key`] of a key kept as JSON text.
fn write_raw_key(out: &mut Vec<u8>, first: &mut bool, key: &RawValue) {
    separate(out, first);
    out.extend_from_slice(key.get().as_bytes());
    out.push(b':');
}

/// The `,` before an object's member, unless it is the `first`.
fn separate(out: &mut Vec<u8>, first: &mut bool) {
    if !std::mem::replace(first, false) {
        out.push(b',');
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn render_object(
    specs: &[FieldSpec],
    views: &[View<'_>],
    row: usize,
    extra: Option<&Entries>,
    out: &mut Vec<u8>,
) -> Result<(), SchemaError> {
    out.push(b'{');
    let mut first = true;
    for (spec, view) in specs.iter().zip(views) {
        if let Some(raw) = extra.and_then(|e| e.get(spec.name)) {
            write_key(out, &mut first, spec.name);
            match view {
                View::Struct(_, children) if view.is_valid(row) && raw.get().starts_with('{') => {
                    let nested = parse_entries(raw.get(), row, UNMAPPED)?;
                    render_object(spec_children(spec), children, row, Some(&nested), out)?;
                }
                _ => out.extend_from_slice(raw.get().as_bytes()),
            }
            continue;
        }
        if view.is_valid(row) {
            write_key(out, &mut first, spec.name);
            render_value(spec, view, row, out)?;
        }
    }
    if let Some(extra) = extra {
        for (key, raw) in &extra.0 {
            if !specs.iter().any(|s| Some(s.name) == key.text.as_deref()) {
                write_raw_key(out, &mut first, &key.raw);
                out.extend_from_slice(raw.get().as_bytes());
            }
        }
    }
    out.push(b'}');
    Ok(())
}

fn spec_children(spec: &FieldSpec) -> &'static [FieldSpec] {
    match spec.kind {
        Kind::Struct(c) | Kind::ListOfStruct(c) => c,
        _ => &[],
    }
}

fn render_value(
    spec: &FieldSpec,
    view: &View<'_>,
    row: usize,
    out: &mut Vec<u8>,
) -> Result<(), SchemaError> {
    match view {
        View::Str(a) => write_str(out, a.value(row)),
        View::Json(a) => out.extend_from_slice(a.value(row).as_bytes()),
        View::Bool(a) => out.extend_from_slice(if a.value(row) { b"true" } else { b"false" }),
        View::Time(a) => write_str(out, &time::format_micros(a.value(row))),
        View::Struct(_, children) => render_object(spec_children(spec), children, row, None, out)?,
        View::List(list, children) => {
            out.push(b'[');
            let offsets = list.value_offsets();
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            let items = list.values().as_struct();
            for item in start..end {
                if item > start {
                    out.push(b',');
                }
                if items.is_valid(item) {
                    render_object(spec_children(spec), children, item, None, out)?;
                } else {
                    out.extend_from_slice(b"null");
                }
            }
            out.push(b']');
        }
    }
    Ok(())
}
