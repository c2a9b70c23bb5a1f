//! Plain identifiers (schemas, tables, columns): what may reach SQL unquoted. Configuration
//! checks them as it reads them, the warehouses again before they quote them.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_identifiers_only() {
        assert!(validate("TRADES_OHLC_1M").is_ok());
        assert!(validate("_x$1").is_ok());
        assert_eq!(validate(""), Err(IdentError::Empty));
        assert!(matches!(validate("1abc"), Err(IdentError::BadCharacter(_))));
        assert!(matches!(
            validate(&"a".repeat(128)),
            Err(IdentError::TooLong(_))
        ));
        assert!(validate(&"a".repeat(127)).is_ok());
    }
}
