//! What trailql's SQL accepts beyond DataFusion's parser and planner, as Athena, PostgreSQL and
//! DuckDB users write it. Each is a rewrite of the parsed statement before planning:
//!
//! - **Athena's table names**, `cloudtrail_logs` and `cloudtrail_logs_<bucket>`, are the
//!   `cloudtrail` table (when the session has no table of that name), also in Athena's
//!   database and catalog (`"default"."cloudtrail_logs"`).
//! - **Names in any case**, as Athena takes them: `eventname`, `useridentity.sessioncontext.
//!   sessionissuer.username`, `resources[1].arn`, `"useridentity"."arn"`. A name that is no
//!   column's (or field's) but one column's in another case is written as that column's; names
//!   written in their own case are left as they are.
//! - **DuckDB's `SELECT * EXCLUDE (...)`**, parsed by the [`parse`] module's dialect, its names
//!   in any case too.
//! - **Athena's partition columns** (`region`, `account`, `year`, `month`, `day`, `timestamp`)
//!   are read from the record, and `timestamp` compared with a day is a time range (the
//!   [`athena_partitions`] module).
//! - **Athena's JSON functions**: `json_extract_scalar(json, '$.a.b[0]')` is `json_as_text(json,
//!   'a', 'b', 0)`, `json_extract(json, '$.a')` is `json_get_json(json, 'a')`.
//! - **Athena's `from_iso8601_timestamp(eventtime)`** is `eventTime` (a timestamp here, text in
//!   Athena's table), and `to_timestamp(text)` for text.
//! - **Athena's `eventtime` as text**: `eventtime LIKE '2024-03-05%'` is that day's time range,
//!   and a timestamp matched with another pattern or cut with a text function (`substr`,
//!   `split_part`...) is its text as CloudTrail writes it, `2024-03-05T17:04:09Z`.
//! - **Athena's `date_add('day', -7, now())`** is `(now() + INTERVAL '-7 day')` (for a unit and
//!   a number written in the query).
//! - **Presto's functions under other names**: `count_if`, `arbitrary`, `approx_percentile`,
//!   `to_iso8601`, `regexp_extract`, `date_diff`, `year(t)` and the other parts of a time,
//!   `split`, `json_array_length`, and the time formats of `date_parse`, `date_format`,
//!   `parse_datetime` and `format_datetime` are the DataFusion SQL they are. These rewrites of
//!   one call, which need nothing of the table, are the [`presto`] module's.
//! - **DuckDB's JSONPath after an arrow**, `j->>'$.a.b'`, is `json_as_text(j, 'a', 'b')` (and
//!   `->` `json_get_json`), and DuckDB's functions under other names (`string_split`,
//!   `strptime`, `epoch_ms`, `struct_extract`, `count_star`, `time_bucket`, `arg_max`...) are
//!   the [`presto`] module's too.
//! - **Presto's lambdas**: `transform`, `filter`, `any_match`, `none_match` and `all_match` are
//!   DataFusion's `array_transform`, `array_filter` and `array_any_match` (negated as they
//!   must be), and a field of a lambda's parameter, `r -> r.arn`, is `r['ARN']` (the
//!   [`parse`] module parses them).
//! - **Presto's addresses and ranges** (`IPADDRESS`, `IPPREFIX`, and PostgreSQL's `inet` and
//!   `cidr`) are text: a cast to one is its value, and `contains(range, ip)` and
//!   `is_subnet_of(range, ip)` are `ip_in_cidr(ip, range)`.
//! - **`TABLESAMPLE`** (`BERNOULLI (10)`, `SYSTEM (10)`, `(100 ROWS)`, `(BUCKET 1 OUT OF 10)`),
//!   which DataFusion parses and then plans as the whole table, is a subquery that draws them;
//!   DuckDB's `USING SAMPLE 10%` is read as that (the [`parse`] module).
//! - **Presto's casts of JSON to lists, maps and rows**, `CAST(j AS ARRAY(JSON))`,
//!   `MAP(VARCHAR, VARCHAR)`, `ARRAY(ROW(key VARCHAR, value VARCHAR))` (parsed by the
//!   [`parse`] module's dialect), are [`crate::json_cast`]'s `json_cast(j, 'ARRAY(JSON)')`.
//! - **Athena's `CROSS JOIN UNNEST(resources) AS t(r)`** (DataFusion cannot plan a list of the
//!   table it joins) is a subquery with `unnest(resources) AS r`; as in Trino, `WITH
//!   ORDINALITY` numbers the elements, a map unnests to its keys and values (`AS t(k, v)`), a
//!   list of rows to a column per field when the alias names one for each, and `LEFT JOIN
//!   UNNEST(...) ON TRUE` keeps the rows whose list is empty, with NULLs.
//! - **Athena's `element_at(list, i)`** is `array_element(list, i)` (DataFusion's
//!   `element_at` is for maps), and `contains(list, x)` is `array_has(list, x)`.
//! - **A field of a JSON text column named as a struct's would be**, `requestParameters.
//!   bucketName`, is `json_as_text(requestParameters, 'bucketName')` (keys as written).
//! - **A field named with a dot after a subscript or a function**, `resources[1].ARN`,
//!   `element_at(resources, 1).arn` (DataFusion plans `resources[1]['ARN']` and
//!   `resources[1].'ARN'` only): the name is made a quoted string.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use arrow::datatypes::{DataType, Field, Fields};
use datafusion::sql::parser::{CopyToSource, Statement};
use datafusion::sql::sqlparser::ast::{
    self, AccessExpr, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Join,
    JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, Query, Select, SelectItem, SetExpr,
    TableAlias, TableFactor, Value, ValueWithSpan, Visit, VisitMut, Visitor, VisitorMut,
};
use trailql_schema::{FieldSpec, Kind, RECORD, UNMAPPED};

use crate::json_cast::JsonType;

mod athena_partitions;
mod parse;
mod presto;
use athena_partitions::{AthenaPartition, day_comparison, day_range};
use parse::parse_expr;
pub(crate) use parse::{parse_presto_type, parse_statement};
use presto::{
    as_athena_text, athena_json, date_add, json_arrow_path, lambda_functions, presto, quoted,
    text_literal, time_prefix_range,
};

/// Rewrite `statement` (see the module's text); `columns` are the `cloudtrail` table's, and
/// `tables` the names of the session's tables.
pub(crate) fn rewrite(statement: &mut Statement, columns: &Fields, tables: &[String]) {
    let mut visitor = Rewrite {
        columns,
        tables,
        unnested: HashMap::new(),
        unnest_tables: HashMap::new(),
        select_items: Vec::new(),
        defined: HashSet::new(),
        partition_scopes: Vec::new(),
        lambda_parameters: Vec::new(),
    };
    match statement {
        Statement::Statement(inner) => {
            visitor.described_table(inner);
            visitor.unnested = unnested(inner.as_ref(), &visitor);
            visitor.defined = defined_names(inner.as_ref());
            let _ = inner.visit(&mut visitor);
        }
        Statement::Explain(explain) => rewrite(&mut explain.statement, columns, tables),
        Statement::CopyTo(copy) => {
            if let CopyToSource::Query(query) = &mut copy.source {
                visitor.unnested = unnested(query.as_ref(), &visitor);
                visitor.defined = defined_names(query.as_ref());
                let _ = query.visit(&mut visitor);
            }
        }
        Statement::CreateExternalTable(_) | Statement::Reset(_) => {}
    }
}

struct Rewrite<'a> {
    columns: &'a Fields,
    tables: &'a [String],
    /// Names given to the elements of unnested lists of structs (`unnest(resources) AS r`,
    /// `CROSS JOIN UNNEST(resources) AS t(r)`), with the elements' type: `r.arn` is `r.ARN`.
    unnested: HashMap<String, DataType>,
    /// The names of `UNNEST` tables made columns of the table they unnested, with its name:
    /// `t.r` is `cloudtrail.r` (see [`Rewrite::cross_join_unnest`]).
    unnest_tables: HashMap<String, Ident>,
    /// For each `SELECT` being rewritten (innermost last), its unnamed items as written (see
    /// [`Rewrite::name_translated_items`]).
    select_items: Vec<Vec<Option<WrittenItem>>>,
    /// The names the statement gives to columns (aliases of items, of tables' columns), in
    /// lower case: such a name is never read as an Athena partition column.
    defined: HashSet<String>,
    /// For each query being rewritten (innermost last), whether it selects from the
    /// `cloudtrail` table, where Athena's partition columns are read from the record.
    partition_scopes: Vec<bool>,
    /// The parameters of the lambdas being rewritten (innermost last), with the type of the
    /// items of the list they are given when it is known: `r -> r.arn` is `r['ARN']`.
    lambda_parameters: Vec<(String, Option<DataType>)>,
}

/// An unnamed item of a projection as it was written.
enum WrittenItem {
    /// A call of `function` (in lower case).
    Call { function: String, text: String },
    /// A name with dots.
    Path(String),
    /// An Athena partition column (`region`, `t.region`), by its name.
    Partition(String),
}

/// The names `statement` gives to elements of unnested lists of structs, wherever they are
/// given (a name in `FROM` is used in the projection before it).
fn unnested<V: Visit>(statement: &V, rewrite: &Rewrite<'_>) -> HashMap<String, DataType> {
    struct Names<'r, 'a> {
        rewrite: &'r Rewrite<'a>,
        found: HashMap<String, DataType>,
    }
    impl Names<'_, '_> {
        fn element(&mut self, name: &Ident, list: &Expr) {
            if let Some(item @ DataType::Struct(_)) = self.rewrite.type_of(list).and_then(list_item)
            {
                self.found.insert(name.value.clone(), item.clone());
            }
        }
    }
    impl Visitor for Names<'_, '_> {
        type Break = ();
        fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
            for item in &select.projection {
                if let SelectItem::ExprWithAlias {
                    expr: Expr::Function(function),
                    alias,
                } = item
                    && let Some([list]) = arguments(function, &["unnest"]).as_deref()
                {
                    self.element(alias, list);
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::UNNEST {
                alias: Some(alias),
                array_exprs,
                ..
            } = factor
            {
                for (i, list) in array_exprs.iter().enumerate() {
                    let name = alias.columns.get(i).map_or(&alias.name, |c| &c.name);
                    self.element(name, list);
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names {
        rewrite,
        found: HashMap::new(),
    };
    let _ = statement.visit(&mut names);
    names.found
}

/// The names `statement` gives to columns, in lower case: aliases of its items and the
/// columns of its tables' aliases (`WITH t(a, b)`, `AS u(x)`).
fn defined_names<V: Visit>(statement: &V) -> HashSet<String> {
    struct Names(HashSet<String>);
    impl Names {
        fn add(&mut self, name: &Ident) {
            self.0.insert(name.value.to_ascii_lowercase());
        }
    }
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            for cte in query.with.iter().flat_map(|w| w.cte_tables.iter()) {
                cte.alias.columns.iter().for_each(|c| self.add(&c.name));
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
            for item in &select.projection {
                match item {
                    SelectItem::ExprWithAlias { alias, .. } => self.add(alias),
                    SelectItem::ExprWithAliases { aliases, .. } => {
                        aliases.iter().for_each(|a| self.add(a))
                    }
                    _ => {}
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                alias: Some(alias), ..
            }
            | TableFactor::Derived {
                alias: Some(alias), ..
            }
            | TableFactor::UNNEST {
                alias: Some(alias), ..
            }
            | TableFactor::TableFunction {
                alias: Some(alias), ..
            }
            | TableFactor::Function {
                alias: Some(alias), ..
            } = factor
            {
                alias.columns.iter().for_each(|c| self.add(&c.name));
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names(HashSet::new());
    let _ = statement.visit(&mut names);
    names.0
}

impl VisitorMut for Rewrite<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        for cte in query.with.iter_mut().flat_map(|w| w.cte_tables.iter_mut()) {
            self.alias_columns(&mut cte.alias);
        }
        // For the query's `ORDER BY` (each `SELECT` has a scope of its own); a `UNION`'s names
        // its output's columns, which are named as written.
        let from_cloudtrail = matches!(&*query.body, SetExpr::Select(select)
            if select.from.iter().any(|from| self.is_cloudtrail(&from.relation)));
        self.partition_scopes.push(from_cloudtrail);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.partition_scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        // A scalar subquery is named as its column is (`count(*)`); beside other items it is
        // named as written, as DuckDB names it, so that `SELECT count(*), (SELECT count(*)
        // FROM t)` is no clash of names.
        if select.projection.len() > 1 {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(subquery @ Expr::Subquery(_)) = item {
                    *item = SelectItem::ExprWithAlias {
                        alias: Ident::with_quote('"', subquery.to_string()),
                        expr: subquery.clone(),
                    };
                }
            }
        }
        // An alias that is a column's name in another case is written as the column's, as
        // are the names that refer to it (`SELECT eventname AS eventname ... ORDER BY eventname`).
        for item in &mut select.projection {
            match item {
                SelectItem::ExprWithAlias { alias, .. } => self.top_level(alias),
                SelectItem::ExprWithAliases { aliases, .. } => {
                    aliases.iter_mut().for_each(|a| self.top_level(a))
                }
                // `SELECT * EXCLUDE (requestparameters)`.
                SelectItem::Wildcard(options) => {
                    let names = match &mut options.opt_exclude {
                        Some(ast::ExcludeSelectItem::Single(name)) => std::slice::from_mut(name),
                        Some(ast::ExcludeSelectItem::Multiple(names)) => names.as_mut_slice(),
                        None => &mut [],
                    };
                    for part in names.iter_mut().flat_map(|n| n.0.iter_mut()) {
                        if let ObjectNamePart::Identifier(ident) = part {
                            self.top_level(ident);
                        }
                    }
                }
                _ => {}
            }
        }
        self.cross_join_unnest(select);
        let partition = |name: &Ident| {
            AthenaPartition::named(&name.value).map(|_| WrittenItem::Partition(name.value.clone()))
        };
        let items = select.projection.iter().map(|item| match item {
            SelectItem::UnnamedExpr(Expr::Function(f)) => Some(WrittenItem::Call {
                function: f.name.to_string().to_ascii_lowercase(),
                text: f.to_string(),
            }),
            SelectItem::UnnamedExpr(e @ Expr::CompoundIdentifier(parts)) => match &parts[..] {
                [_, name] => partition(name),
                _ => None,
            }
            .or_else(|| Some(WrittenItem::Path(e.to_string()))),
            SelectItem::UnnamedExpr(Expr::Identifier(ident)) => partition(ident),
            _ => None,
        });
        self.select_items.push(items.collect());
        let from_cloudtrail = select
            .from
            .iter()
            .any(|from| self.is_cloudtrail(&from.relation));
        self.partition_scopes.push(from_cloudtrail);
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        self.partition_scopes.pop();
        self.name_translated_items(select);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        table_sample(factor);
        self.athena_table(factor);
        match factor {
            TableFactor::Table { alias, .. }
            | TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::UNNEST { alias, .. }
            | TableFactor::NestedJoin { alias, .. } => {
                if let Some(alias) = alias {
                    self.alias_columns(alias);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.enter_lambdas(expr);
        // The `eventTime` of the Athena partition column `timestamp`, when `e` is that.
        let time_of = |e: &Expr| match self.partition_reference(e)? {
            (AthenaPartition::Timestamp, table) => Some(match table {
                Some(table) => Expr::CompoundIdentifier(vec![table, Ident::new("eventTime")]),
                None => Expr::Identifier(Ident::new("eventTime")),
            }),
            _ => None,
        };
        let range = match &*expr {
            Expr::BinaryOp { left, op, right } => match (time_of(left), time_of(right)) {
                (Some(t), _) => day_comparison(&t, true, op, right),
                (_, Some(t)) => day_comparison(&t, false, op, left),
                _ => None,
            },
            Expr::Between {
                expr: t,
                negated,
                low,
                high,
            } => time_of(t).and_then(|t| day_range(&t, low, high, *negated)),
            _ => None,
        };
        if let Some(range) = range {
            *expr = range;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Identifier(ident) => {
                if find(self.columns, ident).is_none()
                    && self.lambda_parameter(ident).is_none()
                    && let Some(partition) = self.partition(ident)
                {
                    *expr = partition.value(None);
                }
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(table) = self.unnest_tables.get(&parts[0].value) {
                    parts[0] = table.clone();
                }
                self.path(parts);
                // A field of a lambda's parameter, which DataFusion plans as `r['ARN']`.
                if self.lambda_parameter(&parts[0]).is_some() {
                    let root = Box::new(Expr::Identifier(parts[0].clone()));
                    let access_chain = parts[1..]
                        .iter()
                        .map(|part| {
                            AccessExpr::Subscript(ast::Subscript::Index {
                                index: Expr::Value(ValueWithSpan {
                                    value: Value::SingleQuotedString(part.value.clone()),
                                    span: part.span,
                                }),
                            })
                        })
                        .collect();
                    *expr = Expr::CompoundFieldAccess { root, access_chain };
                } else if let Some(json) = self.json_field(parts) {
                    *expr = json;
                } else if let Some((partition, table)) = self.partition_reference(expr) {
                    *expr = partition.value(table.as_ref());
                }
            }
            Expr::CompoundFieldAccess { root, access_chain } => {
                let mut at = self.type_of(root);
                // Dots before the first subscript name the column (`cloudtrail.resources`);
                // after anything else (`element_at(resources, 1).ARN`) they name a field.
                let mut after_subscript =
                    !matches!(**root, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                for access in access_chain.iter_mut() {
                    at = match access {
                        AccessExpr::Subscript(_) => {
                            after_subscript = true;
                            at.and_then(list_item)
                        }
                        AccessExpr::Dot(Expr::Identifier(ident)) => {
                            let field = at.and_then(struct_fields).and_then(|f| find(f, ident));
                            let (name, span) = (ident.value.clone(), ident.span);
                            if after_subscript {
                                *access = AccessExpr::Dot(Expr::Value(ValueWithSpan {
                                    value: Value::SingleQuotedString(name),
                                    span,
                                }));
                            }
                            field.map(|f| f.data_type())
                        }
                        AccessExpr::Dot(_) => None,
                    };
                }
            }
            // `userIdentity->>'arn'`, as if the struct were JSON, is its field.
            Expr::BinaryOp {
                left,
                op: op @ (ast::BinaryOperator::Arrow | ast::BinaryOperator::LongArrow),
                right,
            } => {
                let as_text = matches!(op, ast::BinaryOperator::LongArrow);
                if let Some(field) = self.struct_member(left, right, as_text) {
                    *expr = field;
                } else if let Some(value) = json_arrow_path(left, right, as_text) {
                    *expr = value;
                }
            }
            // Athena's `CAST(userIdentity AS JSON)`; text is JSON here as it is.
            Expr::Cast {
                expr: value,
                data_type: ast::DataType::JSON | ast::DataType::JSONB,
                ..
            } => {
                let value = std::mem::replace(&mut **value, Expr::value(Value::Null));
                *expr = match self.type_of(&value) {
                    Some(DataType::Struct(_) | DataType::List(_)) => {
                        parse_expr(&format!("to_json({value})")).expect("a call parses")
                    }
                    _ => Expr::Nested(Box::new(value)),
                };
            }
            // Presto's `CAST(json AS ARRAY(JSON))`, `MAP(VARCHAR, VARCHAR)`, `ROW(...)` of JSON
            // text (or of a struct or list, as its JSON): the `json_cast` function.
            Expr::Cast {
                expr: value,
                data_type,
                ..
            } if let Some(target) = JsonType::of_sql(data_type).filter(JsonType::is_composite)
                && let Some(json) = self.json_text(value) =>
            {
                *expr = parse_expr(&format!("json_cast({json}, {})", quoted(&target.sql())))
                    .expect("a call parses");
            }
            // Presto's `CAST(sourceipaddress AS IPADDRESS)` and `IPPREFIX '10.0.0.0/8'`,
            // PostgreSQL's `::inet` and `::cidr`: addresses and ranges are text here, which
            // `ip_in_cidr` reads.
            Expr::Cast {
                expr: value,
                data_type,
                ..
            } if is_ip_data_type(data_type) => {
                *expr = Expr::Nested(Box::new(std::mem::replace(
                    &mut **value,
                    Expr::value(Value::Null),
                )));
            }
            Expr::TypedString(typed) if is_ip_data_type(&typed.data_type) => {
                *expr = Expr::Value(typed.value.clone());
            }
            // Athena's `readonly` is text: `readonly = 'false'` compares a boolean here.
            Expr::BinaryOp { left, right, .. } => {
                self.boolean_literal(left, right);
                self.boolean_literal(right, left);
            }
            Expr::Like {
                negated,
                any: false,
                expr: text,
                pattern,
                escape_char: None,
            } if self.is_timestamp(text) => {
                *expr = match time_prefix_range(text, pattern) {
                    Some(range) if *negated => Expr::UnaryOp {
                        op: ast::UnaryOperator::Not,
                        expr: Box::new(range),
                    },
                    Some(range) => range,
                    None => {
                        **text = as_athena_text(text);
                        return ControlFlow::Continue(());
                    }
                };
            }
            Expr::ILike { expr: text, .. } | Expr::Substring { expr: text, .. }
                if self.is_timestamp(text) =>
            {
                **text = as_athena_text(text);
            }
            Expr::Function(function) => {
                self.leave_lambdas(function);
                self.timestamps_as_text(function);
                athena_json(function);
                self.list_functions(function);
                if let Some(timestamp) = self.iso8601_timestamp(function) {
                    *expr = timestamp;
                } else if let Some(negated) = lambda_functions(function) {
                    *expr = negated;
                } else if let Some(sum) = date_add(function) {
                    *expr = sum;
                } else if let Some(same) = presto(function) {
                    *expr = same;
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Rewrite<'_> {
    /// An unnamed item of `select` that called a function, or named a JSON field, translated
    /// into other SQL is named as it was written: `date(eventtime)` (a cast) would otherwise be
    /// named as `eventTime` is, and two items of one name are an error.
    fn name_translated_items(&mut self, select: &mut Select) {
        let Some(items) = self.select_items.pop() else {
            return;
        };
        for (item, before) in select.projection.iter_mut().zip(items) {
            let (Some(before), SelectItem::UnnamedExpr(expr)) = (before, &item) else {
                continue;
            };
            let (same, text) = match before {
                WrittenItem::Call { function, text } => (
                    matches!(expr, Expr::Function(f)
                        if f.name.to_string().eq_ignore_ascii_case(&function)),
                    text,
                ),
                WrittenItem::Path(text) => (matches!(expr, Expr::CompoundIdentifier(_)), text),
                WrittenItem::Partition(name) => {
                    let last = match expr {
                        Expr::Identifier(ident) => Some(ident),
                        Expr::CompoundIdentifier(parts) => parts.last(),
                        _ => None,
                    };
                    (last.is_some_and(|l| l.value == name), name)
                }
            };
            if !same {
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: Ident::with_quote('"', text),
                };
            }
        }
    }

    /// Athena's and Trino's `FROM t CROSS JOIN UNNEST(t.list) AS u(x)` (or `FROM t,
    /// UNNEST(t.list) AS u(x)`), which DataFusion cannot plan (the list is an outer reference),
    /// is `FROM (SELECT *, unnest(t.list) AS x FROM t) AS t`: a row per element, and none for a
    /// row whose list is empty or null, as there.
    fn cross_join_unnest(&mut self, select: &mut Select) {
        let is_unnest = |f: &TableFactor| matches!(f, TableFactor::UNNEST { .. });
        if select.from.len() == 2
            && select.from[1].joins.is_empty()
            && is_unnest(&select.from[1].relation)
        {
            let unnest = select.from.remove(1).relation;
            select.from[0].joins.insert(
                0,
                Join {
                    relation: unnest,
                    global: false,
                    join_operator: JoinOperator::CrossJoin(JoinConstraint::None),
                },
            );
        }
        let Some(from) = select.from.first_mut() else {
            return;
        };
        let Some(Join {
            relation:
                TableFactor::UNNEST {
                    alias: Some(unnest_alias),
                    array_exprs,
                    with_offset: false,
                    with_ordinality,
                    ..
                },
            join_operator,
            ..
        }) = from.joins.first()
        else {
            return;
        };
        // `LEFT JOIN UNNEST(list) AS t(x) ON TRUE` keeps a row whose list is empty or NULL,
        // with NULL for `x`: the list is then one NULL.
        let on_true = |c: &JoinConstraint| match c {
            JoinConstraint::On(Expr::Value(v)) => v.value == Value::Boolean(true),
            _ => false,
        };
        let outer = match join_operator {
            JoinOperator::CrossJoin(JoinConstraint::None)
            | JoinOperator::Join(JoinConstraint::None) => false,
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) if on_true(c) => true,
            _ => return,
        };
        let list = |list: String| match outer {
            true => {
                format!("CASE WHEN cardinality({list}) > 0 THEN {list} ELSE make_array(NULL) END")
            }
            false => list,
        };
        let names: Vec<&Ident> = unnest_alias.columns.iter().map(|c| &c.name).collect();
        let (names, ordinal) = match (with_ordinality, names.split_last()) {
            (true, Some((ordinal, names))) => (names, Some(ordinal)),
            (true, None) => return,
            (false, _) => (names.as_slice(), None),
        };
        let Some(mut items) = self.unnest_items(array_exprs, names, &list) else {
            return;
        };
        if let Some(ordinal) = ordinal {
            let lengths: Vec<String> = array_exprs
                .iter()
                .map(|list| format!("cardinality({list})"))
                .collect();
            let longest = match &lengths[..] {
                [one] => one.clone(),
                many => format!("greatest({})", many.join(", ")),
            };
            let positions = list(format!("generate_series(1, {longest})"));
            items.push(format!("unnest({positions}) AS {ordinal}"));
        }
        let TableFactor::Table { name, alias, .. } = &from.relation else {
            return;
        };
        let table = match alias {
            Some(alias) => alias.name.clone(),
            None => match name.0.last() {
                Some(ObjectNamePart::Identifier(ident)) => ident.clone(),
                _ => return,
            },
        };
        let relation = &from.relation;
        let sql = format!(
            "SELECT * FROM (SELECT *, {} FROM {relation}) AS {table}",
            items.join(", ")
        );
        let Some(derived) = first_table_of(&sql) else {
            return;
        };
        self.unnest_tables
            .insert(unnest_alias.name.value.clone(), table);
        from.relation = derived;
        from.joins.remove(0);
    }

    /// The items of a subquery's projection that are `UNNEST(lists) AS t(names)`, as Trino
    /// unnests: a list to a column each; one map to its keys and values; one list of rows to a
    /// column per field (when `names` has one for each), as `get_field(unnest(list), 'field')`.
    /// `padded` writes each list as it is unnested (see [`Rewrite::cross_join_unnest`]).
    fn unnest_items(
        &self,
        lists: &[Expr],
        names: &[&Ident],
        padded: &dyn Fn(String) -> String,
    ) -> Option<Vec<String>> {
        if lists.len() == names.len() {
            return Some(
                lists
                    .iter()
                    .zip(names)
                    .map(|(list, name)| format!("unnest({}) AS {name}", padded(list.to_string())))
                    .collect(),
            );
        }
        let [list] = lists else {
            return None;
        };
        if let [key, value] = names
            && self.is_map(list)
        {
            return Some(vec![
                format!("unnest({}) AS {key}", padded(format!("map_keys({list})"))),
                format!(
                    "unnest({}) AS {value}",
                    padded(format!("map_values({list})"))
                ),
            ]);
        }
        let fields = self.row_fields(list)?;
        let rows = padded(list.to_string());
        (fields.len() == names.len()).then(|| {
            fields
                .iter()
                .zip(names)
                .map(|(field, name)| {
                    format!("get_field(unnest({rows}), {}) AS {name}", quoted(field))
                })
                .collect()
        })
    }

    /// Whether `e` is a map: a map column, a cast to one, or a function that makes one.
    fn is_map(&self, e: &Expr) -> bool {
        match e {
            Expr::Cast { data_type, .. } => matches!(data_type, ast::DataType::Map(..)),
            Expr::Function(f) => ["histogram", "map_agg", "map", "map_from_arrays", "make_map"]
                .contains(&f.name.to_string().to_ascii_lowercase().as_str()),
            Expr::Nested(inner) => self.is_map(inner),
            _ => matches!(self.type_of(e), Some(DataType::Map(..))),
        }
    }

    /// The field names of the rows a list of rows holds: a column's, or a cast's to
    /// `ARRAY(ROW(...))`.
    fn row_fields(&self, list: &Expr) -> Option<Vec<String>> {
        if let Expr::Cast { data_type, .. } = list {
            return match JsonType::of_sql(data_type)? {
                JsonType::Array(item) => match *item {
                    JsonType::Row(fields) => {
                        Some(fields.into_iter().map(|(name, _)| name).collect())
                    }
                    _ => None,
                },
                _ => None,
            };
        }
        let fields = struct_fields(self.type_of(list).and_then(list_item)?)?;
        Some(fields.iter().map(|f| f.name().clone()).collect())
    }

    /// Athena's names for the table, `cloudtrail_logs` and `cloudtrail_logs_<bucket>` (what its
    /// console names it), are `cloudtrail` under that name, when the session has no such table;
    /// so are those names and `cloudtrail` in Athena's database and catalog
    /// (`"default"."cloudtrail_logs"`, `awsdatacatalog.default.cloudtrail`).
    fn athena_table(&self, factor: &mut TableFactor) {
        let TableFactor::Table { name, alias, .. } = factor else {
            return;
        };
        let Some(table) = self.athena_table_name(name) else {
            return;
        };
        if alias.is_none() {
            *alias = Some(TableAlias {
                explicit: true,
                name: table,
                columns: Vec::new(),
                at: None,
            });
        }
        *name = ObjectName::from(vec![Ident::new(crate::TABLE)]);
    }

    /// Athena's name of the table in `DESCRIBE cloudtrail_logs` and `SHOW COLUMNS FROM
    /// cloudtrail_logs` is the `cloudtrail` table's.
    fn described_table(&self, statement: &mut ast::Statement) {
        let name = match statement {
            ast::Statement::ExplainTable { table_name, .. } => table_name,
            ast::Statement::ShowColumns { show_options, .. } => {
                match show_options
                    .show_in
                    .as_mut()
                    .and_then(|i| i.parent_name.as_mut())
                {
                    Some(name) => name,
                    None => return,
                }
            }
            _ => return,
        };
        if self.athena_table_name(name).is_some() {
            *name = ObjectName::from(vec![Ident::new(crate::TABLE)]);
        }
    }

    /// The table's name as written when `name` is one of Athena's for the `cloudtrail` table
    /// (see [`Rewrite::athena_table`]).
    fn athena_table_name(&self, name: &ObjectName) -> Option<Ident> {
        let Some((ObjectNamePart::Identifier(table), schema)) = name.0.split_last() else {
            return None;
        };
        let in_datafusion = schema.iter().all(|part| {
            matches!(part, ObjectNamePart::Identifier(p)
                if ["datafusion", "public"].contains(&p.value.to_ascii_lowercase().as_str()))
        });
        let athena = if in_datafusion {
            is_athena_table_name(&table.value)
                && !self
                    .tables
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(&table.value))
        } else {
            schema.len() <= 2
                && (is_athena_table_name(&table.value)
                    || table.value.eq_ignore_ascii_case(crate::TABLE))
        };
        athena.then(|| table.clone())
    }

    /// A name that is one top-level column's in another case becomes the column's.
    fn top_level(&self, ident: &mut Ident) {
        find(self.columns, ident);
    }

    /// The field `key` names of the struct `value` (a column or a field of one, `key` a text
    /// written in the query), as text when `as_text` and the field is neither text nor a
    /// struct. `None` for anything else, which is left to the JSON functions.
    fn struct_member(&self, value: &Expr, key: &Expr, as_text: bool) -> Option<Expr> {
        let mut parts = match value {
            Expr::Identifier(ident) => vec![ident.clone()],
            Expr::CompoundIdentifier(parts) => parts.clone(),
            _ => return None,
        };
        let Some(DataType::Struct(fields)) = self.type_of(value) else {
            return None;
        };
        let mut name = Ident::new(text_literal(key)?);
        let field = find(fields, &mut name)?;
        let text_like = matches!(
            field.data_type(),
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Struct(_)
        );
        parts.push(name);
        let member = Expr::CompoundIdentifier(parts);
        Some(if as_text && !text_like {
            parse_expr(&format!("CAST({member} AS VARCHAR)")).expect("a cast parses")
        } else {
            member
        })
    }

    /// `'true'` or `'false'` in `value` as a boolean when `column` is one (Athena's `readonly` is
    /// text).
    fn boolean_literal(&self, column: &Expr, value: &mut Expr) {
        if let Some(DataType::Boolean) = self.type_of(column)
            && let Some(truth) =
                text_literal(value).and_then(|t| t.to_ascii_lowercase().parse().ok())
        {
            *value = Expr::Value(Value::Boolean(truth).into());
        }
    }

    /// The Athena partition column `ident` names, in a query of the `cloudtrail` table that
    /// has no column of that name and gives no column that name.
    fn partition(&self, ident: &Ident) -> Option<AthenaPartition> {
        let partition = AthenaPartition::named(&ident.value)?;
        let in_scope = self.partition_scopes.last() == Some(&true)
            && !self.defined.contains(&ident.value.to_ascii_lowercase())
            && find(self.columns, &mut ident.clone()).is_none();
        in_scope.then_some(partition)
    }

    /// The Athena partition column `expr` names (see [`Rewrite::partition`]), alone or after
    /// a table's name (`t.region`), with that name.
    fn partition_reference(&self, expr: &Expr) -> Option<(AthenaPartition, Option<Ident>)> {
        match expr {
            Expr::Identifier(ident) => Some((self.partition(ident)?, None)),
            Expr::CompoundIdentifier(parts) => match &parts[..] {
                [table, name]
                    if self.path(&mut parts.clone()).is_none()
                        && find(self.columns, &mut table.clone()).is_none() =>
                {
                    Some((self.partition(name)?, Some(table.clone())))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether `factor` is the `cloudtrail` table, by its name or Athena's.
    fn is_cloudtrail(&self, factor: &TableFactor) -> bool {
        let TableFactor::Table { name, .. } = factor else {
            return false;
        };
        let Some(ObjectNamePart::Identifier(table)) = name.0.last() else {
            return false;
        };
        table.value.eq_ignore_ascii_case(crate::TABLE) || is_athena_table_name(&table.value)
    }

    fn alias_columns(&self, alias: &mut TableAlias) {
        for column in &mut alias.columns {
            self.top_level(&mut column.name);
        }
    }

    /// `a.b.c`: a column and fields of it, or a table (or alias) then a column and fields, or an
    /// unnested element and fields of it; the names written as the schema's, and the type named.
    fn path(&self, parts: &mut [Ident]) -> Option<&DataType> {
        let mut start = None;
        for (i, part) in parts.iter_mut().enumerate().take(2) {
            if let Some(column) = find(self.columns, part) {
                start = Some((i, column.data_type()));
            } else if let Some(element) = self.unnested.get(&part.value) {
                start = Some((i, element));
            } else if let Some(item) = self.lambda_parameter(part) {
                start = Some((i, item.as_ref()?));
            }
            if start.is_some() {
                break;
            }
        }
        let (i, mut at) = start?;
        for part in &mut parts[i + 1..] {
            at = find(struct_fields(at)?, part)?.data_type();
        }
        Some(at)
    }

    /// The type of the items a lambda's parameter named `ident` takes (`Some(None)` when it is
    /// not known).
    fn lambda_parameter(&self, ident: &Ident) -> Option<&Option<DataType>> {
        self.lambda_parameters
            .iter()
            .rev()
            .find(|(name, _)| *name == ident.value)
            .map(|(_, item)| item)
    }

    /// A lambda's parameters, pushed before its body is rewritten: `transform(resources, r ->
    /// ...)` gives `r` the type of `resources`' items.
    fn enter_lambdas(&mut self, expr: &Expr) {
        let Expr::Function(function) = expr else {
            return;
        };
        let FunctionArguments::List(list) = &function.args else {
            return;
        };
        let mut args = list.args.iter().filter_map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        });
        let items = args
            .next()
            .and_then(|list| self.type_of(list))
            .and_then(list_item)
            .cloned();
        for arg in args {
            let Expr::Lambda(lambda) = arg else { continue };
            let params = match &lambda.params {
                ast::OneOrManyWithParens::One(p) => vec![(p.name.value.clone(), items.clone())],
                ast::OneOrManyWithParens::Many(ps) => {
                    ps.iter().map(|p| (p.name.value.clone(), None)).collect()
                }
            };
            self.lambda_parameters.extend(params);
        }
    }

    /// Pops what [`Rewrite::enter_lambdas`] pushed for `function`.
    fn leave_lambdas(&mut self, function: &ast::Function) {
        let FunctionArguments::List(list) = &function.args else {
            return;
        };
        for arg in &list.args {
            if let FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Lambda(lambda))) = arg {
                let n = match &lambda.params {
                    ast::OneOrManyWithParens::One(_) => 1,
                    ast::OneOrManyWithParens::Many(ps) => ps.len(),
                };
                let keep = self.lambda_parameters.len().saturating_sub(n);
                self.lambda_parameters.truncate(keep);
            }
        }
    }

    /// A field of a JSON text column named as a struct's would be, `requestParameters.
    /// bucketName`: `json_as_text(requestParameters, 'bucketName')` (the keys as written: JSON's
    /// are case-sensitive). `None` for any other name.
    fn json_field(&self, parts: &[Ident]) -> Option<Expr> {
        let (mut k, mut field) = parts
            .iter()
            .take(2)
            .enumerate()
            .find_map(|(i, part)| Some((i + 1, self.columns.find(&part.value)?.1)))?;
        while !is_json_text(field) {
            let next = parts.get(k)?;
            field = struct_fields(field.data_type())?.find(&next.value)?.1;
            k += 1;
        }
        if k == parts.len() {
            return None;
        }
        let column = parts[..k].iter().map(Ident::to_string).collect::<Vec<_>>();
        let keys = parts[k..].iter().map(|key| quoted(&key.value));
        let args = std::iter::once(column.join("."))
            .chain(keys)
            .collect::<Vec<_>>();
        parse_expr(&format!("json_as_text({})", args.join(", ")))
    }

    /// Whether `expr` names a timestamp column (or field).
    fn is_timestamp(&self, expr: &Expr) -> bool {
        matches!(self.type_of(expr), Some(DataType::Timestamp(..)))
    }

    /// Athena's `substr(eventtime, 1, 10)` and the like: a timestamp where a text function
    /// takes text is its text as CloudTrail writes it, as Athena's `eventtime` is.
    fn timestamps_as_text(&self, function: &mut ast::Function) {
        // (`substr(t, 1, 10)` is parsed as a `SUBSTRING` expression, rewritten where it is.)
        const TEXT_FUNCTIONS: [&str; 8] = [
            "split_part",
            "starts_with",
            "strpos",
            "left",
            "right",
            "regexp_like",
            "regexp_extract",
            "regexp_replace",
        ];
        if arguments(function, &TEXT_FUNCTIONS).is_none() {
            return;
        }
        if let FunctionArguments::List(list) = &mut function.args
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) = list.args.first_mut()
            && self.is_timestamp(first)
        {
            *first = as_athena_text(first);
        }
    }

    /// Athena's `from_iso8601_timestamp(eventtime)` (its `eventtime` is text): the column itself
    /// when it is a timestamp here (so that time filters still prune), `to_timestamp(text)`
    /// otherwise.
    fn iso8601_timestamp(&self, function: &mut ast::Function) -> Option<Expr> {
        let [arg] = arguments(function, &["from_iso8601_timestamp"])?[..] else {
            return None;
        };
        if let Some(DataType::Timestamp(..)) = self.type_of(arg) {
            return Some(arg.clone());
        }
        rename(function, "to_timestamp");
        None
    }

    /// The type of a column reference (after its names were rewritten), or of an element of one.
    fn type_of(&self, expr: &Expr) -> Option<&DataType> {
        match expr {
            Expr::Identifier(ident) => self.path(&mut [ident.clone()]),
            Expr::CompoundIdentifier(parts) => self.path(&mut parts.clone()),
            Expr::Function(function) => self.element_type(function),
            _ => None,
        }
    }

    /// `value` as JSON text, for a cast of JSON: itself when it is text (a column of text, a
    /// JSON function's result, `->`, a literal), a struct or list as its JSON; `None` for other
    /// values, which DataFusion casts.
    fn json_text(&self, value: &Expr) -> Option<String> {
        match self.type_of(value) {
            Some(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => {
                return Some(value.to_string());
            }
            Some(DataType::Struct(_) | DataType::List(_)) => {
                return Some(format!("to_json({value})"));
            }
            Some(_) => return None,
            None => {}
        }
        let json = match value {
            Expr::Function(f) => f.name.to_string().to_ascii_lowercase().starts_with("json"),
            Expr::BinaryOp {
                op: ast::BinaryOperator::Arrow | ast::BinaryOperator::LongArrow,
                ..
            } => true,
            Expr::Value(v) => matches!(v.value, Value::SingleQuotedString(_)),
            Expr::Nested(inner) => return self.json_text(inner),
            _ => false,
        };
        json.then(|| value.to_string())
    }

    /// Athena's `element_at(list, i)` (DataFusion's is for maps) is `array_element(list, i)`,
    /// and its `contains(list, x)` (DataFusion's is for text) `array_has(list, x)`.
    fn list_functions(&self, function: &mut ast::Function) {
        for (presto, datafusion) in [("element_at", "array_element"), ("contains", "array_has")] {
            if let Some([list, _]) = arguments(function, &[presto]).as_deref()
                && (self.type_of(list).and_then(list_item).is_some() || makes_list(list))
            {
                rename(function, datafusion);
            }
        }
    }

    /// `array_element(list, i)` (or `element_at`): the type of the list's items.
    fn element_type(&self, function: &ast::Function) -> Option<&DataType> {
        let names = ["element_at", "array_element", "list_element"];
        let [list, _] = arguments(function, &names)?[..] else {
            return None;
        };
        list_item(self.type_of(list)?)
    }
}

/// Whether `field` is one of the record's free-form JSON values kept as text (`Kind::Json`), or
/// the unmapped column.
fn is_json_text(field: &Field) -> bool {
    fn json_names(specs: &[FieldSpec], names: &mut Vec<&'static str>) {
        for spec in specs {
            match spec.kind {
                Kind::Json => names.push(spec.name),
                Kind::Struct(fields) | Kind::ListOfStruct(fields) => json_names(fields, names),
                _ => {}
            }
        }
    }
    static NAMES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        let mut names = vec![UNMAPPED];
        json_names(RECORD, &mut names);
        names
    });
    let text = matches!(
        field.data_type(),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
    );
    text && NAMES.contains(&field.name().as_str())
}

/// Whether `expr` is an array written out or a call of a function that returns one (`split`,
/// as rewritten, `regexp_match`, `array_agg`...).
fn makes_list(expr: &Expr) -> bool {
    const LIST_FUNCTIONS: [&str; 14] = [
        "array_transform",
        "array_filter",
        "generate_series",
        "arrays_zip",
        "array_concat",
        "string_to_array",
        "split",
        "regexp_match",
        "array_agg",
        "make_array",
        "array_distinct",
        "array_sort",
        "array_slice",
        "json_object_keys",
    ];
    match expr {
        Expr::Array(_) => true,
        Expr::Nested(inner) => makes_list(inner),
        Expr::Function(f) => arguments(f, &LIST_FUNCTIONS).is_some(),
        _ => false,
    }
}

/// The unnamed arguments of `function` when it is a call of one of `names` (in any case).
fn arguments<'f>(function: &'f ast::Function, names: &[&str]) -> Option<Vec<&'f Expr>> {
    let [ObjectNamePart::Identifier(name)] = function.name.0.as_slice() else {
        return None;
    };
    if !names.iter().any(|n| name.value.eq_ignore_ascii_case(n)) {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
            _ => None,
        })
        .collect()
}

fn rename(function: &mut ast::Function, name: &str) {
    function.name = ObjectName::from(vec![Ident::new(name)]);
}

/// The field of `fields` that `ident` names: by its own name, or by the one field's name that
/// is the same in another case (then written into `ident`). Quoted or not, as Athena reads
/// `"useridentity"."arn"`.
fn find<'f>(fields: &'f Fields, ident: &mut Ident) -> Option<&'f Field> {
    if let Some((_, field)) = fields.find(&ident.value) {
        return Some(field);
    }
    let mut same = fields
        .iter()
        .filter(|f| f.name().eq_ignore_ascii_case(&ident.value));
    match (same.next(), same.next()) {
        (Some(field), None) => {
            ident.value = field.name().clone();
            Some(field)
        }
        _ => None,
    }
}

/// Athena's names for a CloudTrail table: `cloudtrail_logs`, `cloudtrail_logs_<bucket>`.
/// Presto's and PostgreSQL's types of addresses and ranges.
fn is_ip_data_type(data_type: &ast::DataType) -> bool {
    let ast::DataType::Custom(name, _) = data_type else {
        return false;
    };
    let name = name.to_string().to_ascii_lowercase();
    matches!(name.as_str(), "ipaddress" | "ipprefix" | "inet" | "cidr")
}

fn is_athena_table_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "cloudtrail_logs" || lower.starts_with("cloudtrail_logs_")
}

fn struct_fields(t: &DataType) -> Option<&Fields> {
    match t {
        DataType::Struct(fields) => Some(fields),
        _ => None,
    }
}

fn list_item(t: &DataType) -> Option<&DataType> {
    match t {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            Some(item.data_type())
        }
        _ => None,
    }
}

/// `FROM t TABLESAMPLE BERNOULLI (10)` (or `SYSTEM`, or no method: a percentage of the rows,
/// each row drawn on its own), `TABLESAMPLE (100 ROWS)` (that many rows, drawn at random) and
/// `TABLESAMPLE (BUCKET 1 OUT OF 10)` are a subquery of `t` that draws them, under `t`'s name
/// or alias: DataFusion parses a sample and plans the whole table. A seed (`REPEATABLE (1)`)
/// is not kept: each run draws its own sample.
fn table_sample(factor: &mut TableFactor) {
    let TableFactor::Table {
        name,
        alias,
        sample:
            Some(
                ast::TableSampleKind::BeforeTableAlias(drawn)
                | ast::TableSampleKind::AfterTableAlias(drawn),
            ),
        ..
    } = factor
    else {
        return;
    };
    let outer = match alias {
        Some(alias) => TableAlias {
            explicit: true,
            ..alias.clone()
        }
        .to_string(),
        None => match name.0.last() {
            Some(ObjectNamePart::Identifier(ident)) => format!("AS {ident}"),
            _ => return,
        },
    };
    // Rows drawn: that many, or a part of a whole.
    let (rows, part, whole) = match (&drawn.quantity, &drawn.bucket) {
        (Some(q), _) if q.unit == Some(ast::TableSampleUnit::Rows) => {
            (Some(q.value.to_string()), String::new(), String::new())
        }
        (Some(q), _) => (None, q.value.to_string(), "100".to_string()),
        (None, Some(b)) => (None, b.bucket.to_string(), b.total.to_string()),
        (None, None) => return,
    };
    let mut table = factor.clone();
    if let TableFactor::Table { alias, sample, .. } = &mut table {
        (*alias, *sample) = (None, None);
    }
    let drawn = match rows {
        // The order is a column of its own: a sort of rows without any column (`count(*)`
        // over a raw archive) is an error in DataFusion's top-k.
        Some(rows) => format!(
            "SELECT * EXCLUDE (sample_order) FROM (SELECT *, random() AS sample_order \
             FROM {table}) ORDER BY sample_order LIMIT {rows}"
        ),
        None => format!("SELECT * FROM {table} WHERE random() < CAST({part} AS DOUBLE) / {whole}"),
    };
    let sql = format!("SELECT * FROM ({drawn}) {outer}");
    if let Some(derived) = first_table_of(&sql) {
        *factor = derived;
    }
}

/// The first table of the `FROM` of `sql`, a query written by a rewrite.
fn first_table_of(sql: &str) -> Option<TableFactor> {
    parse::parse_sql(sql)
        .and_then(|mut statements| statements.pop())
        .and_then(|statement| match statement {
            ast::Statement::Query(query) => match *query.body {
                SetExpr::Select(select) => select.from.into_iter().next(),
                _ => None,
            },
            _ => None,
        })
        .map(|from| from.relation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn rewritten(sql: &str) -> String {
        let mut statement = DFParser::parse_sql(sql).unwrap().pop_front().unwrap();
        rewrite(
            &mut statement,
            trailql_schema::arrow_schema().fields(),
            &["cloudtrail".into()],
        );
        statement.to_string()
    }

    #[test]
    fn a_field_of_a_json_column_named_with_dots_is_read_from_its_text() {
        assert_eq!(
            rewritten(
                "SELECT c.requestparameters.bucketName, userIdentity.sessionContext.webIdFederationData.attributes.x.Y \
                 FROM cloudtrail c WHERE requestParameters.a.b = 'x' AND _unmapped.k IS NULL"
            ),
            "SELECT json_as_text(c.requestParameters, 'bucketName') AS \"c.requestparameters.bucketName\", \
             json_as_text(userIdentity.sessionContext.webIdFederationData.attributes, 'x', 'Y') \
             AS \"userIdentity.sessionContext.webIdFederationData.attributes.x.Y\" \
             FROM cloudtrail c WHERE json_as_text(requestParameters, 'a', 'b') = 'x' \
             AND json_as_text(_unmapped, 'k') IS NULL"
        );
        // A text column that is no JSON, and a JSON column named alone, are left as they are.
        assert_eq!(
            rewritten("SELECT eventName.x, requestParameters FROM cloudtrail"),
            "SELECT eventName.x, requestParameters FROM cloudtrail"
        );
    }

    #[test]
    fn a_timestamp_matched_or_cut_as_text_is_its_text_and_a_prefix_its_time_range() {
        assert_eq!(
            rewritten(
                "SELECT 1 FROM t WHERE eventtime LIKE '2024-03%' AND eventTime NOT LIKE '2024-03-05T%'"
            ),
            "SELECT 1 FROM t WHERE (eventTime >= TIMESTAMP '2024-03-01T00:00:00Z' AND eventTime < \
             TIMESTAMP '2024-03-01T00:00:00Z' + INTERVAL '1 month') AND NOT (eventTime >= \
             TIMESTAMP '2024-03-05T00:00:00Z' AND eventTime < TIMESTAMP '2024-03-05T00:00:00Z' + \
             INTERVAL '1 day')"
        );
        // Not a whole unit, not a time, or not a prefix: matched against the text.
        for pattern in ["2024-03-0%", "2024-13%", "%T12:%", "2024_03%"] {
            assert_eq!(
                rewritten(&format!("SELECT 1 FROM t WHERE eventTime LIKE '{pattern}'")),
                format!(
                    "SELECT 1 FROM t WHERE to_char(eventTime, '%Y-%m-%dT%H:%M:%SZ') LIKE '{pattern}'"
                )
            );
        }
        assert_eq!(
            rewritten(
                "SELECT 1 FROM t WHERE split_part(eventtime, 'T', 1) = substr(eventtime, 1, 10) AND eventName LIKE 'Get%'"
            ),
            "SELECT 1 FROM t WHERE split_part(to_char(eventTime, '%Y-%m-%dT%H:%M:%SZ'), 'T', 1) = \
             SUBSTR(to_char(eventTime, '%Y-%m-%dT%H:%M:%SZ'), 1, 10) AND eventName LIKE 'Get%'"
        );
    }

    #[test]
    fn presto_functions_are_written_as_datafusion_sql() {
        assert_eq!(
            rewritten("SELECT 1 FROM t WHERE year(eventTime) = day_of_week(t) + split(a, '/')"),
            "SELECT 1 FROM t WHERE CAST(date_part('year', eventTime) AS BIGINT) = \
             ((CAST(date_part('dow', t) AS BIGINT) + 6) % 7 + 1) + string_to_array(a, '/')"
        );
        assert_eq!(
            rewritten(
                "SELECT 1 FROM t WHERE date_parse(s, '%d/%m/%Y %H:%i') = date_format(t, '%H:%M')"
            ),
            "SELECT 1 FROM t WHERE to_timestamp(s, '%d/%m/%Y %H:%M') = date_format(t, '%H:%M')"
        );
        // An item of the projection that was translated is named as it was written, and only
        // such an item.
        assert_eq!(
            rewritten(
                "SELECT element_at(split(a, '/'), -1), map_extract(m, 'k'), lower(eventname), date(t) AS d FROM t"
            ),
            "SELECT array_element(string_to_array(a, '/'), -1) AS \"element_at(split(a, '/'), -1)\", \
             map_extract(m, 'k'), lower(eventName), arrow_cast(t, 'Date32') AS d FROM t"
        );
        // Addresses and ranges are text; `contains` of a range is `ip_in_cidr`, of other text
        // DataFusion's.
        assert_eq!(
            rewritten(
                "SELECT 1 FROM t WHERE contains('10.0.0.0/8', CAST(ip AS IPADDRESS)) \
                 AND contains('a/b', s) AND ip::inet = '10.1.1.1'"
            ),
            "SELECT 1 FROM t WHERE ip_in_cidr((ip), '10.0.0.0/8') AND contains('a/b', s) \
             AND (ip) = '10.1.1.1'"
        );
        // `element_at` of what is no list is a map's value.
        assert_eq!(
            rewritten("SELECT 1 FROM t WHERE element_at(m, 'k') = 2"),
            "SELECT 1 FROM t WHERE array_element(map_extract(m, 'k'), 1) = 2"
        );
        assert_eq!(
            rewritten(
                "SELECT try(CAST(a AS INTEGER)), try(json_extract_scalar(j, '$.a')), \
                 format('%s:%s 100%%', a, b), format('%d', a) FROM t WHERE 'false' = readonly"
            ),
            "SELECT TRY_CAST(a AS INTEGER) AS \"try(CAST(a AS INTEGER))\", \
             (json_as_text(j, 'a')) AS \"try(json_extract_scalar(j, '$.a'))\", \
             concat('', CAST(a AS VARCHAR), ':', CAST(b AS VARCHAR), ' 100%') AS \"format('%s:%s 100%%', a, b)\", \
             format('%d', a) FROM t WHERE false = readOnly"
        );
        // Structs read as JSON are their fields; DuckDB's and PostgreSQL's JSON and time functions.
        assert_eq!(
            rewritten(
                "SELECT useridentity->'sessioncontext'->>'sessionissuer', userIdentity->>'arn', \
                 useridentity.sessioncontext.attributes->>'creationdate', requestParameters->>'a', \
                 CAST(useridentity AS JSON), requestparameters::json, \
                 json_extract_string(j, '$.a[1]'), json_extract_path_text(j, 'a', 'b'), \
                 strftime(eventTime, '%Y'), strftime('%Y', eventTime), epoch(t) FROM t"
            ),
            "SELECT userIdentity.sessionContext.sessionIssuer, userIdentity.arn, \
             CAST(userIdentity.sessionContext.attributes.creationDate AS VARCHAR), \
             requestParameters ->> 'a', to_json(userIdentity), (requestParameters), \
             json_as_text(j, 'a', 1) AS \"json_extract_string(j, '$.a[1]')\", \
             json_as_text(j, 'a', 'b') AS \"json_extract_path_text(j, 'a', 'b')\", \
             to_char(eventTime, '%Y') AS \"strftime(eventTime, '%Y')\", \
             to_char(eventTime, '%Y') AS \"strftime('%Y', eventTime)\", \
             date_part('epoch', t) AS \"epoch(t)\" FROM t"
        );
        // A format that is not written in the query is left to the function as it is.
        assert_eq!(
            rewritten("SELECT date_parse(s, f), json_size(j, p) FROM t"),
            "SELECT date_parse(s, f), json_size(j, p) FROM t"
        );
    }

    #[test]
    fn a_dot_after_a_subscript_names_a_field_and_dots_before_it_stay() {
        assert_eq!(
            rewritten("SELECT cloudtrail.resources[1].ARN FROM cloudtrail"),
            "SELECT cloudtrail.resources[1].'ARN' FROM cloudtrail"
        );
        assert_eq!(
            rewritten("EXPLAIN SELECT x FROM t WHERE x IN (SELECT a[2].b.c FROM u)"),
            "EXPLAIN SELECT x FROM t WHERE x IN (SELECT a[2].'b'.'c' FROM u)"
        );
        assert_eq!(
            rewritten("SELECT userIdentity.arn, a['k'].b FROM t"),
            "SELECT userIdentity.arn, a['k'].'b' FROM t"
        );
    }

    #[test]
    fn names_in_another_case_are_the_columns_and_fields_they_name() {
        assert_eq!(
            rewritten(
                "SELECT eventname, useridentity.sessioncontext.sessionissuer.username, \
                 cloudtrail.sourceipaddress, count(*) AS EVENTSOURCE FROM cloudtrail AS c \
                 WHERE c.useridentity.arn = 'x' AND resources[1].arn IS NOT NULL \
                 GROUP BY eventname, eventsource ORDER BY eventsource"
            ),
            "SELECT eventName, userIdentity.sessionContext.sessionIssuer.userName, \
             cloudtrail.sourceIPAddress, count(*) AS eventSource FROM cloudtrail AS c \
             WHERE c.userIdentity.arn = 'x' AND resources[1].'ARN' IS NOT NULL \
             GROUP BY eventName, eventSource ORDER BY eventSource"
        );
        assert_eq!(
            rewritten("SELECT element_at(resources, 1).arn, f(x).y FROM t"),
            "SELECT array_element(resources, 1).'ARN', f(x).'y' FROM t"
        );
        assert_eq!(
            rewritten(
                "SELECT r.arn, t.r.type, u.accountid FROM (SELECT unnest(resources) AS u FROM t), \
                 t CROSS JOIN UNNEST(cloudtrail.Resources) AS t(r)"
            ),
            "SELECT r.ARN, t.r.type, u.accountId FROM (SELECT unnest(resources) AS u FROM t), \
             t CROSS JOIN UNNEST(cloudtrail.resources) AS t (r)"
        );
        assert_eq!(
            rewritten(
                "SELECT eventname, r.arn, t.r.type FROM cloudtrail CROSS JOIN UNNEST(resources) AS t(r)"
            ),
            "SELECT eventName, r.ARN, cloudtrail.r.type \
             FROM (SELECT *, unnest(resources) AS r FROM cloudtrail) AS cloudtrail"
        );
        assert_eq!(
            rewritten("SELECT x.arn FROM cloudtrail AS c, UNNEST(c.resources) AS u(x)"),
            "SELECT x.ARN FROM (SELECT *, unnest(c.resources) AS x FROM cloudtrail AS c) AS c"
        );
        assert_eq!(
            rewritten(
                "SELECT cloudtrail_logs.eventname FROM cloudtrail_logs \
                 JOIN Cloudtrail_Logs_My_Bucket AS b ON b.eventid = cloudtrail_logs.eventid"
            ),
            "SELECT cloudtrail_logs.eventName FROM cloudtrail AS cloudtrail_logs \
             JOIN cloudtrail AS b ON b.eventID = cloudtrail_logs.eventID"
        );
        // Quoted names too, as in Athena; names of nothing stay, for DataFusion to name in its
        // error.
        assert_eq!(
            rewritten(
                r#"SELECT "eventname", "useridentity"."arn", nosuchcolumn, useridentity.nosuchfield FROM t"#
            ),
            r#"SELECT "eventName", "userIdentity"."arn", nosuchcolumn, userIdentity.nosuchfield FROM t"#
        );
        assert_eq!(
            rewritten("WITH e(eventname) AS (SELECT eventname FROM t) SELECT EventName FROM e"),
            "WITH e (eventName) AS (SELECT eventName FROM t) SELECT eventName FROM e"
        );
    }

    #[test]
    fn athenas_json_functions_are_datafusions_with_the_path_as_steps() {
        assert_eq!(
            rewritten(
                r#"SELECT json_extract_scalar(requestparameters, '$.bucketName'), JSON_EXTRACT(responseElements, '$.a[0]["b c"]') FROM t"#
            ),
            r#"SELECT json_as_text(requestParameters, 'bucketName') AS "json_extract_scalar(requestparameters, '$.bucketName')", json_get_json(responseElements, 'a', 0, 'b c') AS "JSON_EXTRACT(responseElements, '$.a[0][""b c""]')" FROM t"#
        );
        // What is no path of keys and indexes is left for DataFusion to refuse.
        assert_eq!(
            rewritten("SELECT json_extract_scalar(x, '$.a[*]'), json_extract(x, y) FROM t"),
            "SELECT json_extract_scalar(x, '$.a[*]'), json_extract(x, y) FROM t"
        );
        assert_eq!(
            rewritten(
                "SELECT from_iso8601_timestamp(eventtime), from_iso8601_timestamp(x) FROM t \
                 WHERE from_iso8601_timestamp(cloudtrail.eventtime) > now()"
            ),
            "SELECT eventTime AS \"from_iso8601_timestamp(eventtime)\", to_timestamp(x) AS \"from_iso8601_timestamp(x)\" FROM t WHERE cloudtrail.eventTime > now()"
        );
        assert_eq!(
            rewritten(
                "SELECT date_add('day', -7, now()), date_add('Hour', 2, eventtime), date_add('day', x, now()) FROM t"
            ),
            "SELECT (now() + INTERVAL '-7 day') AS \"date_add('day', -7, now())\", \
             (eventTime + INTERVAL '2 hour') AS \"date_add('Hour', 2, eventtime)\", \
             date_add('day', x, now()) FROM t"
        );
        assert_eq!(
            rewritten(
                "SELECT count_if(errorcode IS NOT NULL) AS a, regexp_extract(useragent, '^[^/]+', 0) AS b, \
                 date_diff('hour', a, b) AS c, to_iso8601(eventtime) AS d, count_if(x) OVER () FROM t"
            ),
            "SELECT count(CASE WHEN errorCode IS NOT NULL THEN 1 END) AS a, \
             array_element(regexp_match(userAgent, concat('(', '^[^/]+', ')')), 0 + 1) AS b, \
             CAST(trunc((date_part('epoch', b) - date_part('epoch', a)) / 3600.0) AS BIGINT) AS c, \
             to_char(eventTime, '%Y-%m-%dT%H:%M:%S%.3fZ') AS d, count_if(x) OVER () FROM t"
        );
    }

    #[test]
    fn athena_tables_in_its_database_and_catalog_are_the_cloudtrail_table() {
        assert_eq!(
            rewritten(r#"SELECT count(*) FROM "default"."cloudtrail_logs""#),
            r#"SELECT count(*) FROM cloudtrail AS "cloudtrail_logs""#
        );
        assert_eq!(
            rewritten(
                "SELECT 1 FROM awsdatacatalog.default.cloudtrail_logs_my_bucket, db.cloudtrail"
            ),
            "SELECT 1 FROM cloudtrail AS cloudtrail_logs_my_bucket, cloudtrail AS cloudtrail"
        );
        // Outside a query too.
        assert_eq!(
            rewritten("DESCRIBE \"default\".cloudtrail_logs"),
            "DESCRIBE cloudtrail"
        );
        assert_eq!(
            rewritten("SHOW COLUMNS FROM cloudtrail_logs"),
            "SHOW COLUMNS FROM cloudtrail"
        );
        // DataFusion's own names, and names of other tables, stay.
        assert_eq!(
            rewritten("SELECT 1 FROM datafusion.public.cloudtrail, db.other, a.b.c.cloudtrail"),
            "SELECT 1 FROM datafusion.public.cloudtrail, db.other, a.b.c.cloudtrail"
        );
    }

    #[test]
    fn athena_partition_columns_are_read_from_the_record_where_nothing_else_has_their_name() {
        assert_eq!(
            rewritten(
                "SELECT region, year, count(*) FROM cloudtrail_logs WHERE account = '1' \
                 AND \"timestamp\" >= '2024/03/05' AND month = '03' GROUP BY region, year \
                 ORDER BY region"
            ),
            "SELECT awsRegion AS \"region\", to_char(eventTime, '%Y') AS \"year\", count(*) \
             FROM cloudtrail AS cloudtrail_logs WHERE recipientAccountId = '1' \
             AND eventTime >= TIMESTAMP '2024-03-05T00:00:00Z' \
             AND to_char(eventTime, '%m') = '03' GROUP BY awsRegion, to_char(eventTime, '%Y') \
             ORDER BY awsRegion"
        );
        assert_eq!(
            rewritten(
                "SELECT 1 FROM cloudtrail WHERE timestamp BETWEEN '2024/03/01' AND '2024/03/31'"
            ),
            "SELECT 1 FROM cloudtrail WHERE (eventTime >= TIMESTAMP '2024-03-01T00:00:00Z' \
             AND eventTime < TIMESTAMP '2024-03-31T00:00:00Z' + INTERVAL '1 day')"
        );
        // After the table's name, and in each query of a UNION.
        assert_eq!(
            rewritten(
                "SELECT t.region FROM cloudtrail_logs AS t WHERE t.timestamp = '2024/03/05' \
                 UNION ALL SELECT region FROM cloudtrail ORDER BY region"
            ),
            "SELECT t.awsRegion AS \"region\" FROM cloudtrail AS t \
             WHERE (t.eventTime >= TIMESTAMP '2024-03-05T00:00:00Z' \
             AND t.eventTime < TIMESTAMP '2024-03-05T00:00:00Z' + INTERVAL '1 day') \
             UNION ALL SELECT awsRegion AS \"region\" FROM cloudtrail ORDER BY region"
        );
        // A name the query gives a column, or a query of another table, keeps the name.
        assert_eq!(
            rewritten("SELECT substr(awsregion, 1, 2) AS region FROM cloudtrail GROUP BY region"),
            "SELECT SUBSTR(awsRegion, 1, 2) AS region FROM cloudtrail GROUP BY region"
        );
        assert_eq!(
            rewritten("WITH t AS (SELECT region FROM cloudtrail) SELECT region, day FROM t, other"),
            "WITH t AS (SELECT awsRegion AS \"region\" FROM cloudtrail) SELECT region, day FROM t, other"
        );
    }
}
