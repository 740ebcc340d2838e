//! Filters on a JSON payload's value, answered without parsing most rows.
//!
//! `requestParameters->>'bucketName' = 'x'` parses every row's JSON to find one key, and most rows
//! cannot match. A row whose text holds neither the wanted value nor a backslash cannot match:
//! without a backslash every JSON string in it is written out verbatim, and `->>` returns a
//! string's characters or any other value's raw text, so a matching value appears as written.
//! The same holds for `LIKE`: a matching value holds each literal run of the pattern. [`JsonFilterRule`]
//! rewrites such tests in `WHERE` clauses into [`JsonTextMatch`], which looks for the value (or
//! the runs) with `memmem` first and parses only the rows that hold it.
//!
//! The rewritten filter says `false` where the comparison says `false` or null. The rule only
//! rewrites conjuncts and disjuncts of a filter's predicate, where the two lead to the same rows
//! (no `NOT` or `IS` above them).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder};
use arrow::compute::filter;
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::error::Result;
use datafusion::logical_expr::expr::{InList, Like, ScalarFunction};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use memchr::memmem;

/// The JSON functions whose result is a value's text (`->>` plans as `json_as_text`).
const TEXT_FUNCTIONS: &[&str] = &["json_as_text", "json_get_str"];

/// Rewrites `json_as_text(x, path) = 'v'` (`IN ('v', 'w')`, `LIKE 'p%'`) in filters into [`JsonTextMatch`].
#[derive(Debug, Default)]
pub struct JsonFilterRule;

impl AnalyzerRule for JsonFilterRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::Filter(mut f) => {
                let rewritten = rewrite_predicate(f.predicate.clone());
                if rewritten.transformed {
                    f.predicate = rewritten.data;
                    Ok(Transformed::yes(LogicalPlan::Filter(f)))
                } else {
                    Ok(Transformed::no(LogicalPlan::Filter(f)))
                }
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "trailql_json_filter"
    }
}

/// Rewrite the comparisons reached from the top of a predicate through `AND` and `OR` only.
fn rewrite_predicate(expr: Expr) -> Transformed<Expr> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::And | Operator::Or) =>
        {
            let l = rewrite_predicate(*left);
            let r = rewrite_predicate(*right);
            let transformed = l.transformed || r.transformed;
            let e = Expr::BinaryExpr(BinaryExpr::new(Box::new(l.data), op, Box::new(r.data)));
            if transformed {
                Transformed::yes(e)
            } else {
                Transformed::no(e)
            }
        }
        other => match as_text_test(&other) {
            Some((func, test)) => {
                let udf = JsonTextMatch::new(Arc::clone(&func.func), test);
                Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                    Arc::new(ScalarUDF::new_from_impl(udf)),
                    func.args.clone(),
                )))
            }
            None => Transformed::no(other),
        },
    }
}

/// `text_fn(...) = 'v'`, `'v' = text_fn(...)`, `text_fn(...) IN ('v', ...)` or
/// `text_fn(...) LIKE 'p'`.
fn as_text_test(expr: &Expr) -> Option<(&ScalarFunction, TextTest)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let (func, value) = match (text_function(left), text_function(right)) {
                (Some(f), None) => (f, string_literal(right)?),
                (None, Some(f)) => (f, string_literal(left)?),
                _ => return None,
            };
            Some((func, TextTest::In(vec![value])))
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => {
            let func = text_function(expr)?;
            let values = list.iter().map(string_literal).collect::<Option<_>>()?;
            Some((func, TextTest::In(values)))
        }
        Expr::Like(Like {
            negated: false,
            expr,
            pattern,
            escape_char: None,
            case_insensitive: false,
        }) => {
            let func = text_function(expr)?;
            let pattern = string_literal(pattern)?;
            // A backslash escapes a wildcard: keep to patterns read the same by every engine.
            (!pattern.contains('\\')).then_some((func, TextTest::Like(pattern)))
        }
        _ => None,
    }
}

fn text_function(expr: &Expr) -> Option<&ScalarFunction> {
    match expr {
        Expr::ScalarFunction(f) if TEXT_FUNCTIONS.contains(&f.func.name()) => Some(f),
        Expr::Cast(c) if is_string(c.field.data_type()) => text_function(&c.expr),
        _ => None,
    }
}

fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        Expr::Cast(c) if is_string(c.field.data_type()) => string_literal(&c.expr),
        _ => None,
    }
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
}

/// The test on a JSON value's text.
#[derive(Debug, PartialEq, Eq, Hash)]
enum TextTest {
    /// Equal to one of these.
    In(Vec<String>),
    /// Matches this `LIKE` pattern (no escapes).
    Like(String),
}

impl TextTest {
    /// Whether `json`, holding no backslash, can hold a value passing the test: it holds one of
    /// the values, or every literal run of the pattern.
    fn finder(&self) -> impl Fn(&[u8]) -> bool + use<> {
        let (needles, all) = match self {
            TextTest::In(values) => (values.clone(), false),
            TextTest::Like(pattern) => {
                let runs = pattern.split(['%', '_']).filter(|r| !r.is_empty());
                (runs.map(str::to_string).collect(), true)
            }
        };
        let finders: Vec<memmem::Finder<'static>> = needles
            .iter()
            .map(|n| memmem::Finder::new(n.as_bytes()).into_owned())
            .collect();
        move |json: &[u8]| {
            if all {
                finders.iter().all(|f| f.find(json).is_some())
            } else {
                finders.iter().any(|f| f.find(json).is_some())
            }
        }
    }

    fn evaluate(&self, text: &ArrayRef) -> Result<BooleanArray> {
        let text = arrow::compute::cast(text, &DataType::Utf8)?;
        let matched = match self {
            TextTest::In(values) => {
                let hits: Vec<bool> = text
                    .as_string::<i32>()
                    .iter()
                    .map(|t| t.is_some_and(|t| values.iter().any(|v| v == t)))
                    .collect();
                BooleanArray::from(hits)
            }
            TextTest::Like(pattern) => {
                let pattern = arrow::array::StringArray::new_scalar(pattern);
                arrow::compute::kernels::comparison::like(&text, &pattern)?
            }
        };
        // Null (no text) is false here: the rule only rewrites where the two lead to the same rows.
        Ok(match matched.nulls() {
            Some(nulls) => BooleanArray::new(matched.values() & nulls.inner(), None),
            None => matched,
        })
    }

    fn describe(&self) -> String {
        match self {
            TextTest::In(values) => {
                let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
                format!("in[{}]", quoted.join(", "))
            }
            TextTest::Like(pattern) => format!("like['{pattern}']"),
        }
    }
}

/// `inner(json, path...) IN (values)` or `LIKE pattern` as a filter: true where it holds, false
/// elsewhere (including where it is null). Rows whose JSON text holds no backslash and cannot
/// hold a passing value are answered without calling `inner`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonTextMatch {
    inner: Arc<ScalarUDF>,
    test: TextTest,
    /// What `EXPLAIN` shows: `json_as_text_in['v', 'w'](json, path)`.
    name: String,
    signature: Signature,
}

impl JsonTextMatch {
    fn new(inner: Arc<ScalarUDF>, test: TextTest) -> Self {
        JsonTextMatch {
            name: format!("{}_{}", inner.name(), test.describe()),
            inner,
            test,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    /// Which rows may match: those that may hold a passing value, or a backslash. `None` if the
    /// JSON argument is not a string array (then every row is parsed).
    fn candidates(&self, json: &ArrayRef) -> Option<BooleanArray> {
        let may_hold = self.test.finder();
        let may_match = |text: &str| {
            let bytes = text.as_bytes();
            memchr::memchr(b'\\', bytes).is_some() || may_hold(bytes)
        };
        let mut mask = BooleanBufferBuilder::new(json.len());
        match json.data_type() {
            DataType::Utf8View => json
                .as_string_view()
                .iter()
                .for_each(|t| mask.append(t.is_some_and(may_match))),
            DataType::Utf8 => json
                .as_string::<i32>()
                .iter()
                .for_each(|t| mask.append(t.is_some_and(may_match))),
            DataType::LargeUtf8 => json
                .as_string::<i64>()
                .iter()
                .for_each(|t| mask.append(t.is_some_and(may_match))),
            _ => return None,
        }
        Some(BooleanArray::new(mask.finish(), None))
    }

    /// The test on `inner(columns)` over `rows` rows.
    fn compare(
        &self,
        args: &ScalarFunctionArgs,
        columns: Vec<ColumnarValue>,
        rows: usize,
    ) -> Result<BooleanArray> {
        let inner_args = ScalarFunctionArgs {
            args: columns,
            arg_fields: args.arg_fields.clone(),
            number_rows: rows,
            return_field: Arc::new(arrow::datatypes::Field::new("text", DataType::Utf8, true)),
            config_options: Arc::clone(&args.config_options),
        };
        let text = self.inner.invoke_with_args(inner_args)?.into_array(rows)?;
        self.test.evaluate(&text)
    }
}

impl ScalarUDFImpl for JsonTextMatch {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        // No mask for a scalar JSON argument or one that is not text: every row is parsed.
        let mask = match args.args.first() {
            Some(ColumnarValue::Array(json)) => self.candidates(json),
            _ => None,
        };
        let answer = match mask {
            Some(mask) if mask.true_count() == 0 => BooleanArray::from(vec![false; rows]),
            Some(mask) if mask.true_count() < rows => {
                // Call `inner` on the candidate rows only, then scatter its answers back.
                let columns = args
                    .args
                    .iter()
                    .map(|c| match c {
                        ColumnarValue::Array(a) => Ok(ColumnarValue::Array(filter(a, &mask)?)),
                        scalar => Ok(scalar.clone()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let matched = self.compare(&args, columns, mask.true_count())?;
                let mut next = matched.values().iter();
                let mut out = BooleanBufferBuilder::new(rows);
                for candidate in mask.values().iter() {
                    out.append(candidate && next.next().unwrap_or(false));
                }
                BooleanArray::new(out.finish(), None)
            }
            _ => self.compare(&args, args.args.clone(), rows)?,
        };
        Ok(ColumnarValue::Array(Arc::new(answer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringViewArray;
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// Payloads where the text and the value differ: escapes, numbers, nested values, nulls.
    const PAYLOADS: &[Option<&str>] = &[
        Some(r#"{"bucketName":"logs","key":"a/b"}"#),
        Some(r#"{"bucketName":"lo\u0067s"}"#),
        Some(r#"{"bucketName":"x\/y"}"#),
        Some(r#"{"bucketName":"say \"hi\""}"#),
        Some(r#"{"other":"logs"}"#),
        Some(r#"{"bucketName":5}"#),
        Some(r#"{"bucketName":{"n":1}}"#),
        Some(r#"{"bucketName":null}"#),
        Some(r#"{"nested":{"bucketName":"logs"}}"#),
        Some("not json logs"),
        None,
        Some(r#"{"bucketName":"logs"}"#),
    ];

    async fn context() -> SessionContext {
        let ctx = crate::new_context().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("j", DataType::Utf8View, true)]));
        let column = StringViewArray::from(PAYLOADS.to_vec());
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(column)]).unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    async fn count(ctx: &SessionContext, sql: &str) -> i64 {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let col = batches[0].column(0);
        col.as_primitive::<arrow::datatypes::Int64Type>().value(0)
    }

    async fn plan(ctx: &SessionContext, sql: &str) -> String {
        let df = ctx.sql(sql).await.unwrap();
        df.into_optimized_plan()
            .unwrap()
            .display_indent()
            .to_string()
    }

    fn is_rewritten(plan: &str) -> bool {
        plan.contains("_in[") || plan.contains("_like[")
    }

    #[tokio::test]
    async fn filtered_counts_equal_the_comparison_evaluated_on_every_row() {
        let ctx = context().await;
        for condition in [
            "j->>'bucketName' = 'logs'",
            "j->>'bucketName' = 'x/y'",
            "j->>'bucketName' = 'say \"hi\"'",
            "j->>'bucketName' = '5'",
            "j->>'bucketName' = '{\"n\":1}'",
            "j->>'bucketName' = 'absent'",
            "j->>'bucketName' = ''",
            "j->>'bucketName' IN ('x/y', '5', 'z')",
            "json_get_str(j, 'nested', 'bucketName') = 'logs'",
            "json_get_str(j, 'key') = 'a/b'",
            "j->>'bucketName' LIKE 'lo%'",
            "j->>'bucketName' LIKE '%g_'",
            "j->>'bucketName' LIKE 'x%y'",
            "j->>'bucketName' LIKE '%hi%'",
            "j->>'bucketName' LIKE '%'",
            "j->>'bucketName' LIKE '{%'",
        ] {
            let filtered = format!("SELECT count(*) FROM t WHERE {condition}");
            let p = plan(&ctx, &filtered).await;
            assert!(is_rewritten(&p), "not rewritten: {filtered}: {p}");
            let every_row = format!("SELECT sum(CASE WHEN {condition} THEN 1 ELSE 0 END) FROM t");
            assert_eq!(
                count(&ctx, &filtered).await,
                count(&ctx, &every_row).await,
                "{filtered}"
            );
        }
        assert_eq!(
            count(
                &ctx,
                "SELECT count(*) FROM t WHERE j->>'bucketName' LIKE 'lo_s'"
            )
            .await,
            3
        );
        assert_eq!(
            count(
                &ctx,
                "SELECT count(*) FROM t WHERE j->>'bucketName' = 'logs'"
            )
            .await,
            3
        );
        assert_eq!(
            count(
                &ctx,
                "SELECT count(*) FROM t WHERE j->>'bucketName' IN ('x/y', '5', 'z')"
            )
            .await,
            2
        );
    }

    #[tokio::test]
    async fn only_conjuncts_and_disjuncts_of_a_filter_are_rewritten() {
        let ctx = context().await;
        let rewritten = plan(
            &ctx,
            "SELECT count(*) FROM t WHERE j IS NOT NULL AND (j->>'a' = 'b' OR 'c' = j->>'d')",
        )
        .await;
        assert_eq!(
            rewritten.matches("json_as_text_in[").count(),
            2,
            "{rewritten}"
        );
        for kept in [
            "SELECT count(*) FROM t WHERE NOT (j->>'a' = 'b')",
            "SELECT count(*) FROM t WHERE (j->>'a' = 'b') IS NOT TRUE",
            "SELECT count(*) FROM t WHERE j->>'a' NOT IN ('b')",
            "SELECT j->>'a' = 'b' FROM t",
            "SELECT count(*) FROM t WHERE j->>'a' ILIKE 'b'",
            "SELECT count(*) FROM t WHERE j->>'a' LIKE 'b\\_'",
        ] {
            let p = plan(&ctx, kept).await;
            assert!(!is_rewritten(&p), "{kept}: {p}");
        }
        // NOT over a comparison keeps its null: the row without the key is neither = nor <>.
        assert_eq!(
            count(
                &ctx,
                "SELECT count(*) FROM t WHERE NOT (j->>'bucketName' = 'logs')"
            )
            .await,
            count(
                &ctx,
                "SELECT count(*) FROM t WHERE j->>'bucketName' <> 'logs'"
            )
            .await
        );
    }
}
