//! Identifiers: validated before they reach SQL, quoted always, and cased per warehouse.
//!
//! Relation names are upper case on Snowflake and lower case on Postgres (so BI users need no
//! quotes) and as written on DuckDB.

use super::Dialect;

pub use crate::ident::{IdentError, validate};

/// The identifier as the warehouse stores it unquoted.
pub fn fold<D: Dialect + ?Sized>(dialect: &D, ident: &str) -> String {
    dialect.fold(ident)
}

/// `"ident"`, cased for the warehouse. The identifier must be valid.
pub fn quote<D: Dialect + ?Sized>(dialect: &D, ident: &str) -> String {
    format!("\"{}\"", dialect.fold(ident).replace('"', "\"\""))
}

/// `"schema"."name"`, cased for the warehouse.
pub fn relation<D: Dialect + ?Sized>(dialect: &D, schema: &str, name: &str) -> String {
    format!("{}.{}", quote(dialect, schema), quote(dialect, name))
}

/// A SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_cases_identifiers() {
        assert!(validate("TRADES_OHLC_1M").is_ok());
        assert!(validate("_x$1").is_ok());
        assert_eq!(validate(""), Err(IdentError::Empty));
        assert!(matches!(validate("1abc"), Err(IdentError::BadCharacter(_))));
        assert!(matches!(
            validate("a\"; drop table x; --"),
            Err(IdentError::BadCharacter(_))
        ));
        assert!(matches!(validate("a-b"), Err(IdentError::BadCharacter(_))));
        assert_eq!(
            relation(&crate::warehouse::snowflake::DIALECT, "raw", "Klines"),
            "\"RAW\".\"KLINES\""
        );
        assert_eq!(
            relation(
                &crate::warehouse::postgres::DIALECT,
                "Raw",
                "TRADES_OHLC_1M"
            ),
            "\"raw\".\"trades_ohlc_1m\""
        );
        assert_eq!(
            relation(&crate::warehouse::duckdb::DIALECT, "main", "TRADES_OHLC_1M"),
            "\"main\".\"TRADES_OHLC_1M\""
        );
        assert_eq!(literal("it's"), "'it''s'");
    }
}
