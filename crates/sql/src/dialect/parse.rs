//! The SQL trailql parses: PostgreSQL's (its operator precedence makes `col->>'key' IS NOT
//! NULL` mean what it says), with DuckDB's and Snowflake's `SELECT * EXCLUDE (...)`, which
//! DataFusion plans but the PostgreSQL dialect does not parse.

use std::any::TypeId;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

/// PostgreSQL's dialect and `SELECT * EXCLUDE`: every method PostgreSQL's dialect defines is
/// its, and it is PostgreSQL to the parser's checks of the dialect.
#[derive(Debug, Default)]
struct TrailqlDialect(PostgreSqlDialect);

/// Parse `text`, one statement, as `state` would (its recursion limit), in trailql's dialect.
pub(crate) fn parse_statement(state: &SessionState, text: &str) -> Result<Statement> {
    let recursion_limit = state.config().options().sql_parser.recursion_limit.get();
    let mut statements = DFParserBuilder::new(text)
        .with_dialect(&TrailqlDialect::default())
        .with_recursion_limit(recursion_limit)
        .build()?
        .parse_statements()?;
    if statements.len() > 1 {
        return Err(DataFusionError::NotImplemented(
            "one SQL statement at a time (a --file script may hold several)".into(),
        ));
    }
    statements.pop_front().ok_or_else(|| {
        DataFusionError::Plan("No SQL statements were provided in the query string".into())
    })
}

impl Dialect for TrailqlDialect {
    fn dialect(&self) -> TypeId {
        self.0.dialect()
    }

    fn supports_select_wildcard_exclude(&self) -> bool {
        true
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.0.identifier_quote_style(identifier)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.0.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.0.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.0.is_identifier_part(ch)
    }

    fn supports_unicode_string_literal(&self) -> bool {
        self.0.supports_unicode_string_literal()
    }

    fn is_reserved_for_identifier(&self, kw: Keyword) -> bool {
        self.0.is_reserved_for_identifier(kw)
    }

    fn is_custom_operator_part(&self, ch: char) -> bool {
        self.0.is_custom_operator_part(ch)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        self.0.get_next_precedence(parser)
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        self.0.supports_filter_during_aggregation()
    }

    fn supports_group_by_expr(&self) -> bool {
        self.0.supports_group_by_expr()
    }

    fn prec_value(&self, prec: Precedence) -> u8 {
        self.0.prec_value(prec)
    }

    fn allow_extract_custom(&self) -> bool {
        self.0.allow_extract_custom()
    }

    fn allow_extract_single_quotes(&self) -> bool {
        self.0.allow_extract_single_quotes()
    }

    fn supports_create_index_with_clause(&self) -> bool {
        self.0.supports_create_index_with_clause()
    }

    fn supports_explain_with_utility_options(&self) -> bool {
        self.0.supports_explain_with_utility_options()
    }

    fn supports_listen_notify(&self) -> bool {
        self.0.supports_listen_notify()
    }

    fn supports_factorial_operator(&self) -> bool {
        self.0.supports_factorial_operator()
    }

    fn supports_bitwise_shift_operators(&self) -> bool {
        self.0.supports_bitwise_shift_operators()
    }

    fn supports_comment_on(&self) -> bool {
        self.0.supports_comment_on()
    }

    fn supports_load_extension(&self) -> bool {
        self.0.supports_load_extension()
    }

    fn supports_named_fn_args_with_colon_operator(&self) -> bool {
        self.0.supports_named_fn_args_with_colon_operator()
    }

    fn supports_named_fn_args_with_expr_name(&self) -> bool {
        self.0.supports_named_fn_args_with_expr_name()
    }

    fn supports_empty_projections(&self) -> bool {
        self.0.supports_empty_projections()
    }

    fn supports_nested_comments(&self) -> bool {
        self.0.supports_nested_comments()
    }

    fn supports_string_escape_constant(&self) -> bool {
        self.0.supports_string_escape_constant()
    }

    fn supports_numeric_literal_underscores(&self) -> bool {
        self.0.supports_numeric_literal_underscores()
    }

    fn supports_array_typedef_with_brackets(&self) -> bool {
        self.0.supports_array_typedef_with_brackets()
    }

    fn supports_geometric_types(&self) -> bool {
        self.0.supports_geometric_types()
    }

    fn supports_set_names(&self) -> bool {
        self.0.supports_set_names()
    }

    fn supports_alter_column_type_using(&self) -> bool {
        self.0.supports_alter_column_type_using()
    }

    fn supports_notnull_operator(&self) -> bool {
        self.0.supports_notnull_operator()
    }

    fn supports_interval_options(&self) -> bool {
        self.0.supports_interval_options()
    }

    fn supports_insert_table_alias(&self) -> bool {
        self.0.supports_insert_table_alias()
    }

    fn supports_create_table_like_parenthesized(&self) -> bool {
        self.0.supports_create_table_like_parenthesized()
    }

    fn supports_select_wildcard_with_alias(&self) -> bool {
        self.0.supports_select_wildcard_with_alias()
    }

    fn supports_comma_separated_trim(&self) -> bool {
        self.0.supports_comma_separated_trim()
    }

    fn supports_xml_expressions(&self) -> bool {
        self.0.supports_xml_expressions()
    }

    fn supports_comment_optimizer_hint(&self) -> bool {
        self.0.supports_comment_optimizer_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresql_with_select_star_exclude() {
        let state = datafusion::prelude::SessionContext::new().state();
        let parsed = |sql: &str| parse_statement(&state, sql).map(|s| s.to_string());
        assert_eq!(
            parsed("SELECT * EXCLUDE (a, b) FROM t").unwrap(),
            "SELECT * EXCLUDE (a, b) FROM t"
        );
        // PostgreSQL's precedence: `->>` before `IS NOT NULL`.
        assert_eq!(
            parsed("SELECT a->>'k' IS NOT NULL FROM t").unwrap(),
            "SELECT a ->> 'k' IS NOT NULL FROM t"
        );
        assert!(parsed("SELECT 1; SELECT 2").is_err());
        assert!(parsed("SELEC 1").is_err());
    }
}
