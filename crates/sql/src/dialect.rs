//! What trailql's SQL accepts beyond DataFusion's parser and planner: a field named with a dot
//! after a subscript, `resources[1].ARN`, as PostgreSQL, DuckDB and Athena accept it (DataFusion
//! plans `resources[1]['ARN']` and `resources[1].'ARN'` only). The name after the subscript is
//! made a quoted string before planning.

use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, Statement};
use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr, Value, ValueWithSpan, visit_expressions_mut,
};

/// Rewrite `x[i].name` to `x[i].'name'` everywhere in `statement`.
pub(crate) fn name_fields_after_subscripts(statement: &mut Statement) {
    match statement {
        Statement::Statement(inner) => {
            let _ = visit_expressions_mut(inner.as_mut(), rewrite);
        }
        Statement::Explain(explain) => name_fields_after_subscripts(&mut explain.statement),
        Statement::CopyTo(copy) => {
            if let CopyToSource::Query(query) = &mut copy.source {
                let _ = visit_expressions_mut(query.as_mut(), rewrite);
            }
        }
        Statement::CreateExternalTable(_) | Statement::Reset(_) => {}
    }
}

fn rewrite(expr: &mut Expr) -> ControlFlow<()> {
    if let Expr::CompoundFieldAccess { access_chain, .. } = expr {
        // Dots before the first subscript name the column (`cloudtrail.resources`): kept.
        let mut after_subscript = false;
        for access in access_chain.iter_mut() {
            match access {
                AccessExpr::Subscript(_) => after_subscript = true,
                AccessExpr::Dot(Expr::Identifier(ident)) if after_subscript => {
                    *access = AccessExpr::Dot(Expr::Value(ValueWithSpan {
                        value: Value::SingleQuotedString(ident.value.clone()),
                        span: ident.span,
                    }));
                }
                AccessExpr::Dot(_) => {}
            }
        }
    }
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn rewritten(sql: &str) -> String {
        let mut statement = DFParser::parse_sql(sql).unwrap().pop_front().unwrap();
        name_fields_after_subscripts(&mut statement);
        statement.to_string()
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
}
