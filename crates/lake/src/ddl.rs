//! The catalog DDL that reads a dataset as trailql wrote it: Athena (Glue), Spark, Trino and
//! DuckDB, for plain Parquet and for Delta tables.

use arrow::datatypes::{DataType, Field};

use crate::{State, TableFormat};

/// The engine to write DDL for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Athena,
    Spark,
    Trino,
    DuckDb,
}

/// What the DDL describes.
pub struct Table<'a> {
    /// The table name (may be qualified: `db.cloudtrail`).
    pub name: &'a str,
    /// The dataset's URL as the engine reaches it (`s3://lake/cloudtrail/`).
    pub location: &'a str,
    pub format: TableFormat,
    pub state: &'a State,
}

/// The statements, ending with a newline.
pub fn ddl(engine: Engine, table: &Table<'_>) -> String {
    let location = format!("{}/", table.location.trim_end_matches('/'));
    let partitions = &table.state.partition_columns;
    let schema = trailql_schema::arrow_schema();
    let name = table.name;
    match (engine, table.format) {
        (Engine::Athena, TableFormat::Delta) => format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS {name}\nLOCATION '{location}'\nTBLPROPERTIES ('table_type' = 'DELTA');\n"
        ),
        (Engine::Spark, TableFormat::Delta) => {
            format!("CREATE TABLE IF NOT EXISTS {name}\nUSING DELTA\nLOCATION '{location}';\n")
        }
        (Engine::Trino, TableFormat::Delta) => {
            let (schema_name, table_name) = name.rsplit_once('.').unwrap_or(("default", name));
            format!(
                "CALL delta.system.register_table(schema_name => '{schema_name}', table_name => '{table_name}', table_location => '{location}');\n"
            )
        }
        (Engine::DuckDb, format) => {
            let scan = match format {
                TableFormat::Delta => format!("delta_scan('{location}')"),
                TableFormat::Parquet => format!(
                    "read_parquet('{location}**/*.parquet', hive_partitioning = {}, hive_types_autocast = false)",
                    !partitions.is_empty()
                ),
            };
            format!("CREATE OR REPLACE VIEW {name} AS SELECT * FROM {scan};\n")
        }
        (Engine::Athena, TableFormat::Parquet) => {
            let columns = columns(&schema.fields, hive_type, "`");
            let mut out = format!("CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n{columns}\n)\n");
            if !partitions.is_empty() {
                let cols: Vec<String> =
                    partitions.iter().map(|p| format!("`{p}` string")).collect();
                out.push_str(&format!("PARTITIONED BY ({})\n", cols.join(", ")));
            }
            out.push_str(&format!("STORED AS PARQUET\nLOCATION '{location}'\nTBLPROPERTIES (\n  'parquet.compression' = 'ZSTD'"));
            if !partitions.is_empty() {
                // Partition projection: no MSCK REPAIR, no crawler, new days are seen at once.
                out.push_str(",\n  'projection.enabled' = 'true'");
                for p in partitions {
                    if p == "date" {
                        out.push_str(",\n  'projection.date.type' = 'date',\n  'projection.date.format' = 'yyyy-MM-dd',\n  'projection.date.range' = '2013-11-01,NOW',\n  'projection.date.interval' = '1',\n  'projection.date.interval.unit' = 'DAYS'");
                    } else {
                        let values = partition_values(table.state, p);
                        out.push_str(&format!(",\n  'projection.{p}.type' = 'enum',\n  'projection.{p}.values' = '{}'", values.join(",")));
                    }
                }
                let template: Vec<String> =
                    partitions.iter().map(|p| format!("{p}=${{{p}}}")).collect();
                out.push_str(&format!(
                    ",\n  'storage.location.template' = '{location}{}'",
                    template.join("/")
                ));
            }
            out.push_str("\n);\n");
            out
        }
        (Engine::Spark, TableFormat::Parquet) => {
            let mut fields: Vec<String> = schema
                .fields
                .iter()
                .map(|f| format!("  `{}` {}", f.name(), hive_type(f.data_type())))
                .collect();
            fields.extend(partitions.iter().map(|p| format!("  `{p}` STRING")));
            let mut out = format!(
                "CREATE TABLE IF NOT EXISTS {name} (\n{}\n)\nUSING PARQUET\n",
                fields.join(",\n")
            );
            if !partitions.is_empty() {
                let cols: Vec<String> = partitions.iter().map(|p| format!("`{p}`")).collect();
                out.push_str(&format!("PARTITIONED BY ({})\n", cols.join(", ")));
            }
            out.push_str(&format!("LOCATION '{location}';\n"));
            if !partitions.is_empty() {
                out.push_str(&format!("ALTER TABLE {name} RECOVER PARTITIONS;\n"));
            }
            out
        }
        (Engine::Trino, TableFormat::Parquet) => {
            let mut fields: Vec<String> = schema
                .fields
                .iter()
                .map(|f| format!("  \"{}\" {}", f.name(), trino_type(f.data_type())))
                .collect();
            fields.extend(partitions.iter().map(|p| format!("  \"{p}\" varchar")));
            let (schema_name, table_name) = name.rsplit_once('.').unwrap_or(("default", name));
            let mut with = vec![
                format!("external_location = '{location}'"),
                "format = 'PARQUET'".to_string(),
            ];
            if !partitions.is_empty() {
                let cols: Vec<String> = partitions.iter().map(|p| format!("'{p}'")).collect();
                with.push(format!("partitioned_by = ARRAY[{}]", cols.join(", ")));
            }
            let mut out = format!(
                "CREATE TABLE IF NOT EXISTS hive.{schema_name}.{table_name} (\n{}\n)\nWITH (\n  {}\n);\n",
                fields.join(",\n"),
                with.join(",\n  ")
            );
            if !partitions.is_empty() {
                out.push_str(&format!("CALL hive.system.sync_partition_metadata('{schema_name}', '{table_name}', 'ADD');\n"));
            }
            out
        }
    }
}

/// Every value a partition column has in the dataset, sorted.
fn partition_values(state: &State, column: &str) -> Vec<String> {
    let mut values: Vec<String> = state
        .files
        .values()
        .filter_map(|f| f.partition.get(column).cloned().flatten())
        .collect();
    values.sort();
    values.dedup();
    values
}

fn columns(fields: &[std::sync::Arc<Field>], ty: fn(&DataType) -> String, quote: &str) -> String {
    fields
        .iter()
        .map(|f| format!("  {quote}{}{quote} {}", f.name(), ty(f.data_type())))
        .collect::<Vec<_>>()
        .join(",\n")
}

/// A Hive type name (Athena, Glue, Spark).
pub fn hive_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float64 => "double".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), hive_type(f.data_type())))
                .collect();
            format!("struct<{}>", inner.join(","))
        }
        DataType::List(item) | DataType::LargeList(item) => {
            format!("array<{}>", hive_type(item.data_type()))
        }
        other => other.to_string().to_lowercase(),
    }
}

/// A Trino type name.
pub fn trino_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "varchar".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float64 => "double".into(),
        DataType::Timestamp(..) => "timestamp(6)".into(),
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("\"{}\" {}", f.name(), trino_type(f.data_type())))
                .collect();
            format!("row({})", inner.join(", "))
        }
        DataType::List(item) | DataType::LargeList(item) => {
            format!("array({})", trino_type(item.data_type()))
        }
        other => other.to_string().to_lowercase(),
    }
}
