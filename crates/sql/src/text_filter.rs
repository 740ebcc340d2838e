//! `WHERE eventName = 'ConsoleLogin'` (or `<>`) over the column cache, compared by text id: the literal is
//! looked up once a batch in the session's texts of the column ([`ColumnTexts`]), and each row's
//! id compared with it (4 bytes a row) instead of its text. [`TextFilterRule`] puts
//! [`TextEquals`] in place of each comparison of a text column with a text literal in a filter
//! right above a cached scan; a batch without ids is compared as before.
//!
//! [`ColumnTexts`]: crate::cache::ColumnTexts

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{DataType, FieldRef, Schema};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};

use crate::cache::{CachedScanExec, ColumnCache, TextIds};

/// Compares text columns with text literals by id in filters over cached scans.
#[derive(Debug, Default)]
pub(crate) struct TextFilterRule;

impl PhysicalOptimizerRule for TextFilterRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(scan) = filter.input().downcast_ref::<CachedScanExec>() else {
                return Ok(Transformed::no(node));
            };
            let schema = filter.input().schema();
            let predicate = filter.predicate().clone().transform_up(|expr| {
                Ok(match TextEquals::replacing(&expr, &schema, scan.cache()) {
                    Some(by_id) => Transformed::yes(Arc::new(by_id) as Arc<dyn PhysicalExpr>),
                    None => Transformed::no(expr),
                })
            })?;
            if !predicate.transformed {
                return Ok(Transformed::no(node));
            }
            let rebuilt = FilterExecBuilder::from(filter)
                .with_predicate(predicate.data)
                .build()?;
            Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "trailql_text_filter"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `column = 'text'` (or `<>`), compared by the session's text ids where the batch has them.
#[derive(Debug)]
pub(crate) struct TextEquals {
    /// The comparison replaced: its children, and its answer for a batch without ids.
    compared: Arc<dyn PhysicalExpr>,
    column: Arc<dyn PhysicalExpr>,
    text: String,
    /// `<>` rather than `=`.
    negated: bool,
    cache: Arc<ColumnCache>,
}

impl TextEquals {
    /// The replacement for `expr` if it compares a string-view column of `schema` with a
    /// non-null text literal for equality.
    fn replacing(
        expr: &Arc<dyn PhysicalExpr>,
        schema: &Schema,
        cache: &Arc<ColumnCache>,
    ) -> Option<Self> {
        let by_id = Self::comparing(expr, cache)?;
        (by_id.column.data_type(schema).ok()? == DataType::Utf8View).then_some(by_id)
    }

    /// `expr` compared by id, if it is `column = 'text'` (or `'text' = column`).
    fn comparing(expr: &Arc<dyn PhysicalExpr>, cache: &Arc<ColumnCache>) -> Option<Self> {
        let binary = expr.downcast_ref::<BinaryExpr>()?;
        let negated = match binary.op() {
            Operator::Eq => false,
            Operator::NotEq => true,
            _ => return None,
        };
        let (column, literal) = match binary.left().downcast_ref::<Literal>() {
            Some(literal) => (binary.right(), literal),
            None => (binary.left(), binary.right().downcast_ref::<Literal>()?),
        };
        column.downcast_ref::<Column>()?;
        let text = match literal.value() {
            ScalarValue::Utf8(Some(t))
            | ScalarValue::Utf8View(Some(t))
            | ScalarValue::LargeUtf8(Some(t)) => t.clone(),
            _ => return None,
        };
        Some(TextEquals {
            compared: expr.clone(),
            column: column.clone(),
            text,
            negated,
            cache: cache.clone(),
        })
    }
}

impl fmt::Display for TextEquals {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} (by text id)", self.compared)
    }
}

impl PartialEq for TextEquals {
    fn eq(&self, other: &Self) -> bool {
        self.compared.as_ref() == other.compared.as_ref() && Arc::ptr_eq(&self.cache, &other.cache)
    }
}

impl Eq for TextEquals {}

impl Hash for TextEquals {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.compared.hash(state);
    }
}

impl PhysicalExpr for TextEquals {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.compared.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let array = self.column.evaluate(batch)?.into_array(batch.num_rows())?;
        let Some(views) = array.as_string_view_opt() else {
            return self.compared.evaluate(batch);
        };
        let Some(TextIds { ids, texts, .. }) = self.cache.text_ids(views) else {
            return self.compared.evaluate(batch);
        };
        // Ids are 1 + the text's id (0 for a null); a text the column never held matches none.
        let values = match texts.with(|t| t.find(&self.text)) {
            Some(id) => {
                // Arrow's kernel: compared many rows at a time.
                let ids = UInt32Array::new(ids, None);
                let wanted = UInt32Array::new_scalar(id + 1);
                let compared = match self.negated {
                    false => arrow::compute::kernels::cmp::eq(&ids, &wanted)?,
                    true => arrow::compute::kernels::cmp::neq(&ids, &wanted)?,
                };
                compared.values().clone()
            }
            None if self.negated => BooleanBuffer::new_set(ids.len()),
            None => BooleanBuffer::new_unset(ids.len()),
        };
        // A null compared is null, as the comparison gives it.
        let nulls = views.nulls().cloned();
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
            values, nulls,
        ))))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.compared]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let Some(compared) = children.into_iter().next() else {
            return Ok(self);
        };
        // The comparison as it now is, by id if it still compares a column with a text.
        Ok(match Self::comparing(&compared, &self.cache) {
            Some(by_id) => Arc::new(by_id),
            None => compared,
        })
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.compared.fmt_sql(f)
    }
}
