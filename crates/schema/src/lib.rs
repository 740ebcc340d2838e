//! The canonical schema of a CloudTrail record and the rules that map JSON onto it.
//!
//! One table describes every known field ([`RECORD`]); from it come the Arrow schema that every
//! trailql dataset shares ([`arrow_schema`]), the decoder's field lookup (in `trailql-ingest`), the
//! JSON renderer that rebuilds records from columns ([`render`]), and `docs/schema.md`.
//!
//! The lossless rule, in one sentence: whatever a typed column cannot hold exactly (unknown keys at
//! any level, values of an unexpected type, JSON `null` where a typed field usually has a value,
//! timestamps whose text is not canonical) is kept as the original JSON text in the [`UNMAPPED`]
//! column, an object that mirrors the record's structure and wins over the typed columns when a
//! record is rebuilt.

mod fields;
pub mod render;
pub mod time;

pub use fields::{FieldSpec, KeyPrint, Kind, RECORD, UNMAPPED};

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Time zone of every timestamp column.
pub const UTC: &str = "UTC";

/// Errors raised while rebuilding records from columns.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A batch does not have the canonical columns.
    #[error("batch does not match the trailql schema: {reason}")]
    Mismatch { reason: String },
    /// A JSON text column holds text that is not JSON.
    #[error("row {row}: column `{column}` does not hold valid JSON: {reason}")]
    InvalidJson {
        row: usize,
        column: String,
        reason: String,
    },
}

/// The Arrow data type of a field of kind `kind`.
pub fn data_type(kind: &Kind) -> DataType {
    match kind {
        Kind::Str | Kind::Json => DataType::Utf8,
        Kind::Bool => DataType::Boolean,
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        Kind::Struct(children) => DataType::Struct(struct_fields(children)),
        Kind::ListOfStruct(children) => DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(struct_fields(children)),
            true,
        ))),
    }
}

/// The Arrow fields of a struct whose members are `specs`.
pub fn struct_fields(specs: &[FieldSpec]) -> Fields {
    specs
        .iter()
        .map(|s| Field::new(s.name, data_type(&s.kind), true))
        .collect()
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields: Vec<Field> = struct_fields(RECORD)
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(UNMAPPED, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
});

/// The one Arrow schema of trailql: every field of [`RECORD`] in order, then [`UNMAPPED`].
pub fn arrow_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Index of the `eventTime` column in [`arrow_schema`].
pub fn event_time_index() -> usize {
    RECORD
        .iter()
        .position(|f| f.name == "eventTime")
        .expect("eventTime is in the schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_has_every_top_level_field_once_and_unmapped_last() {
        let schema = arrow_schema();
        assert_eq!(schema.fields().len(), RECORD.len() + 1);
        assert_eq!(schema.field(schema.fields().len() - 1).name(), UNMAPPED);
        let mut names: Vec<_> = schema.fields().iter().map(|f| f.name().clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), RECORD.len() + 1, "duplicate column names");
    }

    #[test]
    fn event_time_is_a_utc_timestamp() {
        let schema = arrow_schema();
        assert_eq!(
            schema.field(event_time_index()).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }

    #[test]
    fn schema_doc_lists_every_column() {
        let doc = include_str!("../../../docs/schema.md");
        fn walk(prefix: &str, specs: &[FieldSpec], doc: &str) {
            for s in specs {
                let path = format!("{prefix}{}", s.name);
                assert!(
                    doc.contains(&format!("`{path}`")),
                    "docs/schema.md lacks `{path}`"
                );
                match &s.kind {
                    Kind::Struct(c) | Kind::ListOfStruct(c) => walk(&format!("{path}."), c, doc),
                    _ => {}
                }
            }
        }
        walk("", RECORD, doc);
        assert!(doc.contains(&format!("`{UNMAPPED}`")));
    }
}
