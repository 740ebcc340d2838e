//! Presto's aggregations into a map, as Athena has them: `histogram(x)`, how many rows hold each
//! value (`histogram(eventName)` per principal), and `map_agg(key, value)`. Rows whose key is
//! NULL are left out, as Presto leaves them; a key given twice to `map_agg` keeps its first
//! value (Presto keeps one of them). Entries are in the order of their keys, so an answer
//! prints the same every time. DuckDB's and PostgreSQL's `mode(x)`, the most frequent value
//! (the least of those tied, as PostgreSQL's), is read from the same counts.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, MapArray, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

pub(crate) fn register(ctx: &SessionContext) {
    for kind in [Kind::Histogram, Kind::MapAgg, Kind::Mode] {
        ctx.register_udaf(AggregateUDF::from(MapAggregate::new(kind)));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `histogram(x)`: each value of `x` and its number of rows.
    Histogram,
    /// `map_agg(key, value)`.
    MapAgg,
    /// `mode(x)`: the value of `x` in most rows.
    Mode,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct MapAggregate {
    kind: Kind,
    signature: Signature,
}

impl MapAggregate {
    fn new(kind: Kind) -> Self {
        let arguments = match kind {
            Kind::Histogram | Kind::Mode => 1,
            Kind::MapAgg => 2,
        };
        Self {
            kind,
            signature: Signature::any(arguments, Volatility::Immutable),
        }
    }
}

/// A map of `key` to `value`, as Arrow and Presto have it (the keys are never null).
fn map_type(key: &DataType, value: &DataType) -> DataType {
    let entries = Fields::from(vec![
        Field::new("key", key.clone(), false),
        Field::new("value", value.clone(), true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

impl AggregateUDFImpl for MapAggregate {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Histogram => "histogram",
            Kind::MapAgg => "map_agg",
            Kind::Mode => "mode",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match (self.kind, arg_types) {
            (Kind::Histogram, [key]) => Ok(map_type(key, &DataType::Int64)),
            (Kind::MapAgg, [key, value]) => Ok(map_type(key, value)),
            (Kind::Mode, [key]) => Ok(key.clone()),
            _ => Err(DataFusionError::Plan(
                "histogram and mode take one argument, map_agg two (a key and a value)".into(),
            )),
        }
    }

    /// The map so far: the result of `histogram` and `map_agg`, the counts of `mode`.
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let state = match self.kind {
            Kind::Mode => map_type(args.input_fields[0].data_type(), &DataType::Int64),
            _ => args.return_type().clone(),
        };
        Ok(vec![Arc::new(Field::new(
            format!("{}[map]", args.name),
            state,
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let map_type = match self.kind {
            Kind::Mode => map_type(args.expr_fields[0].data_type(), &DataType::Int64),
            _ => args.return_field.data_type().clone(),
        };
        Ok(Box::new(MapAccumulator {
            kind: self.kind,
            map_type,
            keys: Vec::new(),
            values: Vec::new(),
            index: HashMap::new(),
        }))
    }
}

#[derive(Debug)]
struct MapAccumulator {
    kind: Kind,
    map_type: DataType,
    keys: Vec<ScalarValue>,
    values: Vec<ScalarValue>,
    /// Where each key is in `keys`.
    index: HashMap<ScalarValue, usize>,
}

impl MapAccumulator {
    /// Adds `value` to `key`'s: counts are summed; `map_agg` keeps the first value.
    fn add(&mut self, key: ScalarValue, value: ScalarValue) -> Result<()> {
        match self.index.get(&key) {
            Some(&at) if self.kind != Kind::MapAgg => {
                self.values[at] = self.values[at].add(&value)?;
            }
            Some(_) => {}
            None => {
                self.index.insert(key.clone(), self.keys.len());
                self.keys.push(key);
                self.values.push(value);
            }
        }
        Ok(())
    }

    /// The map's entries: their field, and the fields of a key and a value.
    fn entries(&self) -> Result<(&FieldRef, &Fields)> {
        let DataType::Map(entries, _) = &self.map_type else {
            return Err(DataFusionError::Internal("a map aggregate's type".into()));
        };
        let DataType::Struct(fields) = entries.data_type() else {
            return Err(DataFusionError::Internal("a map's entries".into()));
        };
        Ok((entries, fields))
    }

    /// The map, its entries in the order of their keys; NULL when no row had a key.
    fn map(&self) -> Result<ScalarValue> {
        if self.keys.is_empty() {
            return ScalarValue::try_from(&self.map_type);
        }
        let (entries_field, entry_fields) = self.entries()?;
        let mut order: Vec<usize> = (0..self.keys.len()).collect();
        order.sort_by(|&a, &b| {
            self.keys[a]
                .partial_cmp(&self.keys[b])
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let column = |scalars: &[ScalarValue], field: &Field| {
            ScalarValue::iter_to_array(order.iter().map(|&i| scalars[i].clone()))
                .and_then(|a| Ok(arrow::compute::cast(&a, field.data_type())?))
        };
        let keys = column(&self.keys, &entry_fields[0])?;
        let values = column(&self.values, &entry_fields[1])?;
        let entries = StructArray::try_new(entry_fields.clone(), vec![keys, values], None)?;
        let offsets = OffsetBuffer::from_lengths([entries.len()]);
        let map = MapArray::try_new(entries_field.clone(), offsets, entries, None, false)?;
        Ok(ScalarValue::Map(Arc::new(map)))
    }

    /// The key of most rows, the least of those tied; NULL when no row had one.
    fn mode(&self) -> Result<ScalarValue> {
        let count = |i: usize| match self.values[i] {
            ScalarValue::Int64(Some(n)) => n,
            _ => 0,
        };
        let best = (0..self.keys.len()).max_by(|&a, &b| {
            count(a).cmp(&count(b)).then_with(|| {
                self.keys[b]
                    .partial_cmp(&self.keys[a])
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
        });
        match best {
            Some(i) => Ok(self.keys[i].clone()),
            None => ScalarValue::try_from(self.entries()?.1[0].data_type()),
        }
    }
}

impl Accumulator for MapAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let keys = &values[0];
        for row in 0..keys.len() {
            if keys.is_null(row) {
                continue;
            }
            let key = ScalarValue::try_from_array(keys, row)?;
            let value = match self.kind {
                Kind::Histogram | Kind::Mode => ScalarValue::Int64(Some(1)),
                Kind::MapAgg => ScalarValue::try_from_array(&values[1], row)?,
            };
            self.add(key, value)?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let maps = states[0].as_map();
        for row in 0..maps.len() {
            if maps.is_null(row) {
                continue;
            }
            let entries = maps.value(row);
            for entry in 0..entries.len() {
                let key = ScalarValue::try_from_array(entries.column(0), entry)?;
                let value = ScalarValue::try_from_array(entries.column(1), entry)?;
                self.add(key, value)?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.map()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match self.kind {
            Kind::Mode => self.mode(),
            _ => self.map(),
        }
    }

    fn size(&self) -> usize {
        let scalars: usize = self
            .keys
            .iter()
            .chain(&self.values)
            .map(ScalarValue::size)
            .sum();
        std::mem::size_of_val(self) + 2 * scalars
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::util::pretty::pretty_format_batches;

    async fn answer(sql: &str) -> String {
        let ctx = SessionContext::new();
        register(&ctx);
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    #[tokio::test]
    async fn histograms_count_each_value_and_map_agg_keeps_the_first_value_of_a_key() {
        let rows = "(VALUES ('a', 1), ('b', 2), (NULL, 3), ('a', 4), ('c', NULL)) AS t(k, v)";
        let got = answer(&format!(
            "SELECT histogram(k) h, map_agg(k, v) m FROM {rows}"
        ))
        .await;
        assert!(
            got.contains("| {a: 2, b: 1, c: 1} | {a: 1, b: 2, c: } |"),
            "{got}"
        );
        // Partial maps of many batches (and groups) merge into the same answer.
        let grouped = answer(&format!(
            "SELECT k IS NULL n, histogram(k) h FROM (SELECT * FROM {rows} UNION ALL SELECT * FROM {rows}) GROUP BY 1 ORDER BY 1"
        ))
        .await;
        assert!(
            grouped.contains("| false | {a: 4, b: 2, c: 2} |"),
            "{grouped}"
        );
        assert!(
            grouped.contains("| true  |                    |"),
            "{grouped}"
        );
    }

    #[tokio::test]
    async fn the_mode_is_the_value_of_most_rows_the_least_of_those_tied() {
        let rows = "(VALUES ('b', 1), ('a', 1), (NULL, 1), (NULL, 1), ('b', 2), ('a', 2), ('c', 2), ('c', 2), (NULL, 3)) AS t(k, g)";
        let got = answer(&format!(
            "SELECT g, mode(k) m FROM (SELECT * FROM {rows} UNION ALL SELECT * FROM {rows}) GROUP BY g ORDER BY g"
        ))
        .await;
        for row in ["| 1 | a |", "| 2 | c |", "| 3 |   |"] {
            assert!(got.contains(row), "{got}");
        }
        // 1 and 2 are in four rows each.
        assert!(
            answer(&format!("SELECT mode(g) m FROM {rows}"))
                .await
                .contains("| 1 |")
        );
    }
}
