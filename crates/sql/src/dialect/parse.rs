//! The SQL trailql parses: PostgreSQL's (its operator precedence makes `col->>'key' IS NOT
//! NULL` mean what it says), with DuckDB's and Snowflake's `SELECT * EXCLUDE (...)`, which
//! DataFusion plans but the PostgreSQL dialect does not parse, and Presto's and DuckDB's
//! lambdas (`any_match(resources, r -> r.type = 'AWS::S3::Bucket')`) in the statements that
//! pass one to a function that takes one. Elsewhere `x -> 'key'` is PostgreSQL's JSON operator.
//! Presto's types in casts (`CAST(j AS ARRAY(JSON))`) are parsed too; a statement that does not
//! parse is tried once more with Presto's address literals and DuckDB's `USING SAMPLE` written
//! as PostgreSQL's dialect reads them.

use std::any::TypeId;
use std::ops::ControlFlow;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::ast::{self, BinaryOperator, Expr, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

/// PostgreSQL's dialect, `SELECT * EXCLUDE` and, when `lambdas`, `x -> ...` as a lambda: every
/// other method PostgreSQL's dialect defines is its, and it is PostgreSQL to the parser's checks
/// of the dialect.
#[derive(Debug, Default)]
struct TrailqlDialect {
    postgres: PostgreSqlDialect,
    lambdas: bool,
}

/// Functions that take a lambda: Presto's, DuckDB's and DataFusion's names (those DataFusion has
/// not, `reduce`, are parsed so that the error names the function).
const HIGHER_ORDER: [&str; 18] = [
    "any_match",
    "all_match",
    "none_match",
    "transform",
    "filter",
    "array_transform",
    "array_filter",
    "array_any_match",
    "list_transform",
    "list_filter",
    "list_apply",
    "array_apply",
    "apply",
    "reduce",
    "zip_with",
    "map_filter",
    "transform_keys",
    "transform_values",
];

/// Parse `text`, one statement, as `state` would (its recursion limit), in trailql's dialect:
/// parsed again with lambdas when, without, a function that takes one was given what PostgreSQL
/// reads as JSON access of a bare name (`r -> r.arn`) or of a list of names (`(s, x) -> s + x`).
pub(crate) fn parse_statement(state: &SessionState, text: &str) -> Result<Statement> {
    let statement = match parse_in(state, text, false) {
        Ok(statement) => statement,
        // What PostgreSQL's dialect does not parse, written as what it does: Presto's
        // `IPPREFIX '10.0.0.0/8'` (addresses are text here), DuckDB's `USING SAMPLE`.
        Err(error) => {
            for rewritten in [
                without_ip_literal_types(text),
                with_sample_as_tablesample(text),
            ]
            .into_iter()
            .flatten()
            {
                if let Ok(statement) = parse_statement(state, &rewritten) {
                    return Ok(statement);
                }
            }
            return Err(error);
        }
    };
    if statement_passes_lambdas(&statement) {
        return parse_in(state, text, true);
    }
    Ok(statement)
}

/// `text` without the type names of Presto's literals of addresses and ranges (`IPADDRESS
/// '10.1.2.3'`, `IPPREFIX '10.0.0.0/8'`), `None` if it has none.
fn without_ip_literal_types(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut found = false;
    while at < text.len() {
        let rest = &lower[at..];
        let word = ["ipaddress", "ipprefix"].into_iter().find(|w| {
            rest.starts_with(w)
                && !lower[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                && rest[w.len()..].trim_start().starts_with('\'')
                && rest[w.len()..].starts_with(char::is_whitespace)
        });
        match word {
            Some(word) => {
                found = true;
                at += word.len();
            }
            None => {
                let c = text[at..].chars().next().expect("at is within text");
                out.push(c);
                at += c.len_utf8();
            }
        }
    }
    found.then_some(out)
}

/// `text` with DuckDB's `USING SAMPLE 10%` (or `10 PERCENT`, `100 ROWS`, a method in
/// parentheses after it, or `bernoulli(10%)`), which ends a `SELECT`'s body and samples what its
/// `FROM` reads, as `TABLESAMPLE` of that `FROM`'s table (see the rewrite of `TABLESAMPLE`);
/// `None` when it has none, or its `FROM` joins tables. A seed is not kept, as there.
fn with_sample_as_tablesample(text: &str) -> Option<String> {
    let dialect = TrailqlDialect::default();
    let tokens = datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&dialect, text)
        .tokenize()
        .ok()?;
    let word = |i: usize, w: &str| matches!(tokens.get(i), Some(Token::Word(t)) if t.quote_style.is_none() && t.value.eq_ignore_ascii_case(w));
    let next = |mut i: usize| {
        i += 1;
        while matches!(tokens.get(i), Some(Token::Whitespace(_))) {
            i += 1;
        }
        i
    };
    // Each token's depth in parentheses.
    let mut depths = Vec::with_capacity(tokens.len());
    let mut depth = 0usize;
    for token in &tokens {
        if matches!(token, Token::RParen) {
            depth = depth.saturating_sub(1);
        }
        depths.push(depth);
        if matches!(token, Token::LParen) {
            depth += 1;
        }
    }
    let using = (0..tokens.len()).find(|&i| word(i, "USING") && word(next(i), "SAMPLE"))?;
    let level = depths[using];
    // The quantity: `10%`, `10 PERCENT`, `10 ROWS`, or `method(...)` around them.
    let mut at = next(next(using));
    let method_first = ["bernoulli", "system", "reservoir"]
        .iter()
        .any(|m| word(at, m))
        && matches!(tokens.get(next(at)), Some(Token::LParen));
    if method_first {
        at = next(next(at));
    }
    let Some(Token::Number(quantity, _)) = tokens.get(at) else {
        return None;
    };
    at = next(at);
    let rows = word(at, "ROWS");
    if rows || word(at, "PERCENT") || matches!(tokens.get(at), Some(Token::Mod)) {
        at = next(at);
    }
    if method_first {
        matches!(tokens.get(at), Some(Token::RParen)).then_some(())?;
        at = next(at);
    } else if matches!(tokens.get(at), Some(Token::LParen)) {
        // `(bernoulli)`, `(reservoir, 42)`: to its closing parenthesis.
        at = (at..tokens.len()).find(|&i| matches!(tokens[i], Token::RParen))? + 1;
    }
    // The `FROM` of the same `SELECT`, and the end of its one table.
    let from = (0..using)
        .rev()
        .find(|&i| depths[i] == level && word(i, "FROM"))?;
    let ends = ["WHERE", "GROUP", "HAVING", "QUALIFY", "WINDOW"];
    let end = (from + 1..using)
        .find(|&i| depths[i] == level && ends.iter().any(|w| word(i, w)))
        .unwrap_or(using);
    let joins = (from + 1..end)
        .any(|i| depths[i] == level && (matches!(tokens[i], Token::Comma) || word(i, "JOIN")));
    if joins {
        return None;
    }
    let sample = match rows {
        true => format!(" TABLESAMPLE ({quantity} ROWS) "),
        false => format!(" TABLESAMPLE BERNOULLI ({quantity}) "),
    };
    let text_of = |range: std::ops::Range<usize>| -> String {
        tokens[range].iter().map(ToString::to_string).collect()
    };
    Some(format!(
        "{}{sample}{}{}",
        text_of(0..end),
        text_of(end..using),
        text_of(at.min(tokens.len())..tokens.len())
    ))
}

fn parse_in(state: &SessionState, text: &str, lambdas: bool) -> Result<Statement> {
    let recursion_limit = state.config().options().sql_parser.recursion_limit.get();
    let dialect = TrailqlDialect {
        lambdas,
        ..TrailqlDialect::default()
    };
    let mut statements = DFParserBuilder::new(text)
        .with_dialect(&dialect)
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

/// Whether `sql` holds a function that takes a lambda given `name -> ...` or `(a, b) -> ...`,
/// as PostgreSQL's dialect parses them.
fn passes_lambdas<V: Visit>(sql: &V) -> bool {
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(function) = expr
                && let ast::FunctionArguments::List(list) = &function.args
                && HIGHER_ORDER.contains(&function.name.to_string().to_ascii_lowercase().as_str())
                && list.visit(&mut ArrowFinder).is_break()
            {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    struct ArrowFinder;
    impl Visitor for ArrowFinder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::BinaryOp {
                left,
                op: BinaryOperator::Arrow,
                ..
            } = expr
            {
                let names = match &**left {
                    Expr::Identifier(_) => true,
                    Expr::Nested(inner) => matches!(**inner, Expr::Identifier(_)),
                    Expr::Tuple(items) => items.iter().all(|i| matches!(i, Expr::Identifier(_))),
                    _ => false,
                };
                if names {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    sql.visit(&mut Finder).is_break()
}

fn statement_passes_lambdas(statement: &Statement) -> bool {
    match statement {
        Statement::Statement(inner) => passes_lambdas(inner),
        Statement::Explain(explain) => statement_passes_lambdas(&explain.statement),
        _ => false,
    }
}

/// An expression written as SQL (by a rewrite), as trailql's dialect reads it.
pub(super) fn parse_expr(sql: &str) -> Option<Expr> {
    parse_with_lambdas_if_passed(|dialect| {
        Parser::new(dialect)
            .try_with_sql(sql)
            .ok()?
            .parse_expr()
            .ok()
    })
}

/// Statements written as SQL (by a rewrite), as trailql's dialect reads them.
pub(super) fn parse_sql(sql: &str) -> Option<Vec<ast::Statement>> {
    parse_with_lambdas_if_passed(|dialect| Parser::parse_sql(dialect, sql).ok())
}

/// What `parse` makes without lambdas, or with them if that passes one.
fn parse_with_lambdas_if_passed<T: Visit>(
    parse: impl Fn(&TrailqlDialect) -> Option<T>,
) -> Option<T> {
    let parsed = parse(&TrailqlDialect::default())?;
    if passes_lambdas(&parsed) {
        return parse(&TrailqlDialect {
            lambdas: true,
            ..TrailqlDialect::default()
        });
    }
    Some(parsed)
}

impl Dialect for TrailqlDialect {
    fn dialect(&self) -> TypeId {
        self.postgres.dialect()
    }

    /// Presto's `CAST(x AS ARRAY(JSON))`, `MAP(VARCHAR, VARCHAR)` and `ROW(name VARCHAR, ...)`,
    /// which PostgreSQL's dialect does not parse; every other cast is left to it.
    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let kind = match &parser.peek_token_ref().token {
            Token::Word(w) if w.keyword == Keyword::CAST => ast::CastKind::Cast,
            Token::Word(w) if w.keyword == Keyword::TRY_CAST => ast::CastKind::TryCast,
            _ => return None,
        };
        if !casts_to_presto_type(parser) {
            return None;
        }
        match parser.maybe_parse(|p| {
            p.next_token();
            p.expect_token(&Token::LParen)?;
            let expr = p.parse_expr()?;
            p.expect_keyword_is(Keyword::AS)?;
            let data_type = presto_type(p, true)?;
            p.expect_token(&Token::RParen)?;
            Ok(Expr::Cast {
                kind: kind.clone(),
                expr: Box::new(expr),
                data_type,
                array: false,
                format: None,
            })
        }) {
            Ok(Some(cast)) => Some(Ok(cast)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    fn supports_select_wildcard_exclude(&self) -> bool {
        true
    }

    fn supports_lambda_functions(&self) -> bool {
        self.lambdas
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.postgres.identifier_quote_style(identifier)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.postgres.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.postgres.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.postgres.is_identifier_part(ch)
    }

    fn supports_unicode_string_literal(&self) -> bool {
        self.postgres.supports_unicode_string_literal()
    }

    fn is_reserved_for_identifier(&self, kw: Keyword) -> bool {
        self.postgres.is_reserved_for_identifier(kw)
    }

    fn is_custom_operator_part(&self, ch: char) -> bool {
        self.postgres.is_custom_operator_part(ch)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        self.postgres.get_next_precedence(parser)
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        self.postgres.supports_filter_during_aggregation()
    }

    fn supports_group_by_expr(&self) -> bool {
        self.postgres.supports_group_by_expr()
    }

    fn prec_value(&self, prec: Precedence) -> u8 {
        self.postgres.prec_value(prec)
    }

    fn allow_extract_custom(&self) -> bool {
        self.postgres.allow_extract_custom()
    }

    fn allow_extract_single_quotes(&self) -> bool {
        self.postgres.allow_extract_single_quotes()
    }

    fn supports_create_index_with_clause(&self) -> bool {
        self.postgres.supports_create_index_with_clause()
    }

    fn supports_explain_with_utility_options(&self) -> bool {
        self.postgres.supports_explain_with_utility_options()
    }

    fn supports_listen_notify(&self) -> bool {
        self.postgres.supports_listen_notify()
    }

    fn supports_factorial_operator(&self) -> bool {
        self.postgres.supports_factorial_operator()
    }

    fn supports_bitwise_shift_operators(&self) -> bool {
        self.postgres.supports_bitwise_shift_operators()
    }

    fn supports_comment_on(&self) -> bool {
        self.postgres.supports_comment_on()
    }

    fn supports_load_extension(&self) -> bool {
        self.postgres.supports_load_extension()
    }

    fn supports_named_fn_args_with_colon_operator(&self) -> bool {
        self.postgres.supports_named_fn_args_with_colon_operator()
    }

    fn supports_named_fn_args_with_expr_name(&self) -> bool {
        self.postgres.supports_named_fn_args_with_expr_name()
    }

    fn supports_empty_projections(&self) -> bool {
        self.postgres.supports_empty_projections()
    }

    fn supports_nested_comments(&self) -> bool {
        self.postgres.supports_nested_comments()
    }

    fn supports_string_escape_constant(&self) -> bool {
        self.postgres.supports_string_escape_constant()
    }

    fn supports_numeric_literal_underscores(&self) -> bool {
        self.postgres.supports_numeric_literal_underscores()
    }

    fn supports_array_typedef_with_brackets(&self) -> bool {
        self.postgres.supports_array_typedef_with_brackets()
    }

    fn supports_geometric_types(&self) -> bool {
        self.postgres.supports_geometric_types()
    }

    fn supports_set_names(&self) -> bool {
        self.postgres.supports_set_names()
    }

    fn supports_alter_column_type_using(&self) -> bool {
        self.postgres.supports_alter_column_type_using()
    }

    fn supports_notnull_operator(&self) -> bool {
        self.postgres.supports_notnull_operator()
    }

    fn supports_interval_options(&self) -> bool {
        self.postgres.supports_interval_options()
    }

    fn supports_insert_table_alias(&self) -> bool {
        self.postgres.supports_insert_table_alias()
    }

    fn supports_create_table_like_parenthesized(&self) -> bool {
        self.postgres.supports_create_table_like_parenthesized()
    }

    fn supports_select_wildcard_with_alias(&self) -> bool {
        self.postgres.supports_select_wildcard_with_alias()
    }

    fn supports_comma_separated_trim(&self) -> bool {
        self.postgres.supports_comma_separated_trim()
    }

    fn supports_xml_expressions(&self) -> bool {
        self.postgres.supports_xml_expressions()
    }

    fn supports_comment_optimizer_hint(&self) -> bool {
        self.postgres.supports_comment_optimizer_hint()
    }
}

/// Whether the `CAST(` at the parser's cursor casts to `ARRAY(`, `ARRAY<`, `MAP(`, `ROW(` or
/// `STRUCT(`, read from its tokens: the cast is parsed once more only then (a cast inside
/// another would otherwise be parsed twice at each level).
fn casts_to_presto_type(parser: &Parser) -> bool {
    let mut depth = 0usize;
    for n in 1.. {
        match &parser.peek_nth_token_ref(n).token {
            Token::EOF => return false,
            Token::LParen => depth += 1,
            Token::RParen if depth <= 1 => return false,
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 1 && w.keyword == Keyword::AS => {
                let composite = matches!(&parser.peek_nth_token_ref(n + 1).token,
                    Token::Word(t) if t.quote_style.is_none()
                        && ["ARRAY", "MAP", "ROW", "STRUCT"]
                            .contains(&t.value.to_ascii_uppercase().as_str()));
                let open = matches!(
                    parser.peek_nth_token_ref(n + 2).token,
                    Token::LParen | Token::Lt
                );
                return composite && open;
            }
            _ => {}
        }
    }
    false
}

/// A type as Presto writes it: `ARRAY(T)` (or `ARRAY<T>`), `MAP(K, V)`, `ROW(name T, ...)` (or
/// `STRUCT(...)`), any of them inside another; other types as the parser reads them. With
/// `composite`, a type that is none of those three is an error.
fn presto_type(p: &mut Parser, composite: bool) -> Result<ast::DataType, ParserError> {
    let word = match &p.peek_token_ref().token {
        Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
        _ => String::new(),
    };
    let open = p.peek_nth_token_ref(1).token.clone();
    let data_type = match (word.as_str(), open) {
        ("ARRAY", Token::LParen | Token::Lt) => {
            p.next_token();
            let close = match p.next_token().token {
                Token::LParen => Token::RParen,
                _ => Token::Gt,
            };
            let item = presto_type(p, false)?;
            p.expect_token(&close)?;
            ast::DataType::Array(ast::ArrayElemTypeDef::AngleBracket(Box::new(item)))
        }
        ("MAP", Token::LParen) => {
            p.next_token();
            p.next_token();
            let key = presto_type(p, false)?;
            p.expect_token(&Token::Comma)?;
            let value = presto_type(p, false)?;
            p.expect_token(&Token::RParen)?;
            ast::DataType::Map(Box::new(key), Box::new(value))
        }
        ("ROW" | "STRUCT", Token::LParen) => {
            p.next_token();
            p.next_token();
            let mut fields = Vec::new();
            loop {
                let name = p.parse_identifier()?;
                fields.push(ast::StructField {
                    field_name: Some(name),
                    field_type: presto_type(p, false)?,
                    options: None,
                });
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            p.expect_token(&Token::RParen)?;
            ast::DataType::Struct(fields, ast::StructBracketKind::Parentheses)
        }
        _ if composite => return p.expected("ARRAY(, MAP( or ROW(", p.peek_token()),
        _ => p.parse_data_type()?,
    };
    Ok(data_type)
}

/// `text`, a type as Presto writes it (see [`presto_type`]), parsed.
pub(crate) fn parse_presto_type(text: &str) -> Option<ast::DataType> {
    let dialect = TrailqlDialect::default();
    let mut parser = Parser::new(&dialect).try_with_sql(text).ok()?;
    let data_type = presto_type(&mut parser, false).ok()?;
    (parser.peek_token_ref().token == Token::EOF).then_some(data_type)
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
        // Lambdas in a statement that passes one to a function that takes one, and
        // PostgreSQL's JSON arrow in the others.
        let is_lambda = |sql: &str| {
            let Ok(Statement::Statement(statement)) = parse_statement(&state, sql) else {
                panic!("{sql} parses");
            };
            let ast::Statement::Query(query) = *statement else {
                panic!("{sql} is a query");
            };
            let ast::SetExpr::Select(select) = *query.body else {
                panic!("{sql} is a SELECT");
            };
            match &select.projection[0] {
                ast::SelectItem::UnnamedExpr(Expr::Function(f)) => {
                    let ast::FunctionArguments::List(list) = &f.args else {
                        panic!("{sql} has arguments");
                    };
                    matches!(
                        list.args[1],
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Lambda(_)))
                    )
                }
                ast::SelectItem::UnnamedExpr(Expr::BinaryOp { .. }) => false,
                other => panic!("{other}"),
            }
        };
        assert!(is_lambda("SELECT transform(l, x -> x + 1) FROM t"));
        assert!(is_lambda("SELECT any_match(l, (a, b) -> a = b) FROM t"));
        assert!(is_lambda(
            "SELECT all_match(l, x -> x.k -> 'j' IS NULL) FROM t"
        ));
        assert!(!is_lambda("SELECT j -> 'k' FROM t"));
        assert!(!is_lambda("SELECT concat(j, j -> 'k') FROM t"));
        assert_eq!(
            parsed("SELECT contains(IPPREFIX '10.0.0.0/8', IPADDRESS '10.1.2.3')").unwrap(),
            "SELECT contains('10.0.0.0/8', '10.1.2.3')"
        );
        assert!(parsed("SELEC 1").is_err());
        // Presto's types in casts, at any depth, and casts inside casts parsed once each (40
        // levels would take 2^40 parses if each were tried twice).
        assert_eq!(
            parsed("SELECT CAST(CAST(j AS ARRAY(MAP(VARCHAR, JSON))) AS ARRAY(ROW(a BIGINT)))")
                .unwrap(),
            "SELECT CAST(CAST(j AS ARRAY<Map(VARCHAR, JSON)>) AS ARRAY<STRUCT(a BIGINT)>)"
        );
        let deep = (0..40).fold("x".to_string(), |e, _| format!("CAST({e} AS BIGINT)"));
        assert!(parsed(&format!("SELECT {deep}")).is_ok());
        // DuckDB's USING SAMPLE, at the end of a SELECT's body, samples its FROM's table.
        for (duckdb, tablesample) in [
            (
                "SELECT count(*) FROM t WHERE a > 1 USING SAMPLE 10% ORDER BY 1",
                "SELECT count(*) FROM t TABLESAMPLE BERNOULLI (10) WHERE a > 1 ORDER BY 1",
            ),
            (
                "SELECT * FROM t AS x USING SAMPLE 5 PERCENT (bernoulli, 42)",
                "SELECT * FROM t AS x TABLESAMPLE BERNOULLI (5)",
            ),
            (
                "SELECT * FROM (SELECT * FROM t USING SAMPLE reservoir(20 ROWS)) s",
                "SELECT * FROM (SELECT * FROM t TABLESAMPLE (20 ROWS)) s",
            ),
        ] {
            assert_eq!(parsed(duckdb).unwrap(), tablesample, "{duckdb}");
        }
        assert!(parsed("SELECT * FROM t JOIN u ON t.a = u.a USING SAMPLE 10%").is_err());
    }
}
