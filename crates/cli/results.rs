//! How `trailql query` and `trailql shell` write results: table, CSV, JSON lines or Parquet,
//! with the columns a format cannot hold turned into text.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// Output formats of `trailql query`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

/// Where `trailql query` writes results: every statement's in the text formats (as `psql -f`
/// does), the last one's in Parquet (one file holds one table). Rows are written as they come,
/// except in a table, which needs every row to size its columns.
pub enum ResultSink {
    Table {
        out: Box<dyn Write>,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    Csv {
        out: Box<dyn Write>,
    },
    Json {
        out: Box<dyn Write>,
    },
    Parquet {
        path: PathBuf,
        writer: Option<Box<parquet::arrow::ArrowWriter<std::fs::File>>>,
    },
}

impl ResultSink {
    pub fn new(format: Format, output: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let out = || -> anyhow::Result<Box<dyn Write>> {
            Ok(match output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).with_context(|| format!("{}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            })
        };
        Ok(match format {
            Format::Table => ResultSink::Table {
                out: out()?,
                schema: Arc::new(Schema::empty()),
                batches: Vec::new(),
            },
            Format::Csv => ResultSink::Csv { out: out()? },
            Format::Json => ResultSink::Json { out: out()? },
            Format::Parquet => ResultSink::Parquet {
                path: output.context("--format parquet needs -o FILE")?.into(),
                writer: None,
            },
        })
    }

    pub fn every_result(&self) -> bool {
        !matches!(self, ResultSink::Parquet { .. })
    }

    pub fn begin(&mut self, schema: SchemaRef) -> anyhow::Result<()> {
        let schema = unions_as_text(&RecordBatch::new_empty(schema))?.schema();
        match self {
            ResultSink::Table {
                schema: shown,
                batches,
                ..
            } => {
                *shown = schema;
                batches.clear();
            }
            // The header, also for a result without rows.
            ResultSink::Csv { out } => {
                let header = nested_as_json(&RecordBatch::new_empty(schema))?;
                out.write_all(&csv(&header, true)?)?;
            }
            ResultSink::Json { .. } => {}
            ResultSink::Parquet { path, writer } => {
                let file =
                    std::fs::File::create(&*path).with_context(|| format!("{}", path.display()))?;
                *writer = Some(Box::new(parquet::arrow::ArrowWriter::try_new(
                    file, schema, None,
                )?));
            }
        }
        Ok(())
    }

    pub fn write(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        let batch = &map_keys_as_text(&unions_as_text(batch)?)?;
        match self {
            ResultSink::Table { batches, .. } => batches.push(batch.clone()),
            ResultSink::Csv { out } => out.write_all(&csv(&nested_as_json(batch)?, false)?)?,
            ResultSink::Json { out } => {
                let mut lines = Vec::new();
                let mut w = arrow::json::LineDelimitedWriter::new(&mut lines);
                w.write(batch)?;
                w.finish()?;
                out.write_all(&lines)?;
            }
            ResultSink::Parquet { writer, .. } => {
                writer.as_mut().expect("begun").write(batch)?;
            }
        }
        Ok(())
    }

    pub fn end(&mut self) -> anyhow::Result<()> {
        if let ResultSink::Table {
            out,
            schema,
            batches,
        } = self
        {
            writeln!(out, "{}", table(schema.clone(), batches)?)?;
            batches.clear();
        }
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            ResultSink::Table { mut out, .. }
            | ResultSink::Csv { mut out }
            | ResultSink::Json { mut out } => out.flush()?,
            ResultSink::Parquet { path, writer } => match writer {
                Some(w) => {
                    w.close()?;
                }
                None => anyhow::bail!(
                    "{}: the last statement returned no table to write",
                    path.display()
                ),
            },
        }
        Ok(())
    }
}

/// A batch as CSV text. Formatted in memory and written by the caller, so that a write error
/// keeps its kind (a reader gone away, `| head`, is not a failure).
fn csv(batch: &RecordBatch, header: bool) -> anyhow::Result<Vec<u8>> {
    let mut text = Vec::new();
    arrow::csv::WriterBuilder::new()
        .with_header(header)
        .build(&mut text)
        .write(batch)?;
    Ok(text)
}

/// A result as a table, unions shown as text; with the schema, a result without rows still
/// shows its header.
pub fn table(schema: SchemaRef, batches: &[RecordBatch]) -> anyhow::Result<impl std::fmt::Display> {
    let schema = unions_as_text(&RecordBatch::new_empty(schema))?.schema();
    let batches = batches
        .iter()
        .map(unions_as_text)
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(arrow::util::pretty::pretty_format_batches_with_schema(
        schema, &batches,
    )?)
}

/// The batch with its union columns as text: `requestParameters->'key'` gives a union of the
/// JSON types, which no output format holds and a table shows as `{str=...}`. A row becomes its
/// value's text (a string's characters, an object's JSON), or null.
fn unions_as_text(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    columns_as_text(
        batch,
        |t| matches!(t, DataType::Union(..)),
        |column| {
            let union = column.as_union();
            let DataType::Union(variants, _) = union.data_type() else {
                unreachable!("chosen as a union")
            };
            // Per variant: its formatter and its nulls (logical: a `Null` variant is all null).
            let options = FormatOptions::default();
            let variants = variants
                .iter()
                .map(|(id, _)| {
                    let child = union.child(id);
                    let formatter = ArrayFormatter::try_new(child, &options)?;
                    Ok((id, formatter, child.logical_nulls()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut text = StringBuilder::new();
            for row in 0..union.len() {
                let id = union.type_id(row);
                let at = union.value_offset(row);
                match variants.iter().find(|(i, ..)| *i == id) {
                    Some((_, f, nulls)) if !nulls.as_ref().is_some_and(|n| n.is_null(at)) => {
                        text.append_value(f.value(at).to_string())
                    }
                    _ => text.append_null(),
                }
            }
            Ok(text.finish())
        },
    )
}

/// The batch with the keys of its map columns as text where they are not (`histogram(readOnly)`
/// counts by booleans): JSON's keys are text.
fn map_keys_as_text(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    let text_keys = |t: &DataType| match t {
        DataType::Map(entries, sorted) => match entries.data_type() {
            DataType::Struct(fields)
                if !matches!(
                    fields[0].data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                let mut fields: Vec<Field> = fields.iter().map(|f| f.as_ref().clone()).collect();
                fields[0] = Field::new(fields[0].name(), DataType::Utf8, false);
                let entries = entries
                    .as_ref()
                    .clone()
                    .with_data_type(DataType::Struct(fields.into()));
                Some(DataType::Map(Arc::new(entries), *sorted))
            }
            _ => None,
        },
        _ => None,
    };
    replace_columns(batch, |field, column| {
        let Some(to) = text_keys(field.data_type()) else {
            return Ok(None);
        };
        let text = arrow::compute::cast(column, &to)?;
        Ok(Some((field.as_ref().clone().with_data_type(to), text)))
    })
}

/// The batch with its struct, list and map columns as JSON text, which CSV can hold.
fn nested_as_json(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    columns_as_text(batch, DataType::is_nested, |column| {
        // One JSON object per row, `{"v":...}`, or `{}` where the value is null.
        let field = Field::new("v", column.data_type().clone(), true);
        let one = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![column.clone()])?;
        let mut lines = Vec::new();
        let mut w = arrow::json::LineDelimitedWriter::new(&mut lines);
        w.write(&one)?;
        w.finish()?;
        let mut text = StringBuilder::new();
        for (row, line) in std::str::from_utf8(&lines)?.lines().enumerate() {
            let value = line
                .strip_prefix(r#"{"v":"#)
                .and_then(|l| l.strip_suffix('}'));
            match value {
                Some(value) if column.is_valid(row) => text.append_value(value),
                _ => text.append_null(),
            }
        }
        Ok(text.finish())
    })
}

/// The batch with each column of a type `chosen` replaced by the text `to_text` makes of it.
fn columns_as_text(
    batch: &RecordBatch,
    chosen: impl Fn(&DataType) -> bool,
    to_text: impl Fn(&ArrayRef) -> anyhow::Result<StringArray>,
) -> anyhow::Result<RecordBatch> {
    replace_columns(batch, |field, column| {
        if !chosen(field.data_type()) {
            return Ok(None);
        }
        let text = Arc::new(to_text(column)?) as ArrayRef;
        Ok(Some((Field::new(field.name(), DataType::Utf8, true), text)))
    })
}

/// The batch with the columns `replace` gives a new field and array for replaced by them (the
/// batch itself when it replaces none).
fn replace_columns(
    batch: &RecordBatch,
    replace: impl Fn(&FieldRef, &ArrayRef) -> anyhow::Result<Option<(Field, ArrayRef)>>,
) -> anyhow::Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    let mut replaced = false;
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match replace(field, column)? {
            Some((field, column)) => {
                replaced = true;
                fields.push(Arc::new(field));
                columns.push(column);
            }
            None => {
                fields.push(field.clone());
                columns.push(column.clone());
            }
        }
    }
    if !replaced {
        return Ok(batch.clone());
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
