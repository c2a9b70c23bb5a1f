//! Identifiers: validated before they reach SQL, quoted always, and cased per warehouse.
//!
//! Relation names are upper case on Snowflake and lower case on Postgres (so BI users need no
//! quotes) and as written on DuckDB.

use super::Kind;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IdentError {
    #[error("empty identifier")]
    Empty,
    #[error("identifier {0:?} is longer than 127 characters")]
    TooLong(String),
    #[error(
        "identifier {0:?} must start with a letter or '_' and hold only letters, digits, '_' and '$'"
    )]
    BadCharacter(String),
}

/// Checks a plain identifier: a letter or `_`, then letters, digits, `_` or `$`.
pub fn validate(ident: &str) -> Result<(), IdentError> {
    let mut chars = ident.chars();
    match chars.next() {
        None => return Err(IdentError::Empty),
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        Some(_) => return Err(IdentError::BadCharacter(ident.to_string())),
    }
    if ident.len() > 127 {
        return Err(IdentError::TooLong(ident.to_string()));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
        return Err(IdentError::BadCharacter(ident.to_string()));
    }
    Ok(())
}

/// The identifier as the warehouse stores it unquoted.
pub fn fold(kind: Kind, ident: &str) -> String {
    match kind {
        Kind::Snowflake => ident.to_ascii_uppercase(),
        Kind::Postgres => ident.to_ascii_lowercase(),
        Kind::DuckDb => ident.to_string(),
    }
}

/// `"ident"`, cased for the warehouse. The identifier must be valid.
pub fn quote(kind: Kind, ident: &str) -> String {
    format!("\"{}\"", fold(kind, ident).replace('"', "\"\""))
}

/// `"schema"."name"`, cased for the warehouse.
pub fn relation(kind: Kind, schema: &str, name: &str) -> String {
    format!("{}.{}", quote(kind, schema), quote(kind, name))
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
            relation(Kind::Snowflake, "raw", "Klines"),
            "\"RAW\".\"KLINES\""
        );
        assert_eq!(
            relation(Kind::Postgres, "Raw", "TRADES_OHLC_1M"),
            "\"raw\".\"trades_ohlc_1m\""
        );
        assert_eq!(
            relation(Kind::DuckDb, "main", "TRADES_OHLC_1M"),
            "\"main\".\"TRADES_OHLC_1M\""
        );
        assert_eq!(literal("it's"), "'it''s'");
    }
}
