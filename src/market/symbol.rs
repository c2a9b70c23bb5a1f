//! Validated trading-pair symbols and the markets they trade on.
//!
//! A symbol reaches URLs, object keys and SQL, so it is checked once, here, and carried as a
//! [`Symbol`] from then on.

use std::fmt;
use std::str::FromStr;

/// A symbol such as Binance's `BTCUSDT` or Coinbase's `BTC-USD`: 1 to 32 ASCII upper-case
/// letters, digits, `_` or `-` (not first).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(String);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SymbolError {
    #[error("invalid symbol {0:?}: empty")]
    Empty(String),
    #[error("invalid symbol {0:?}: longer than 32 characters")]
    TooLong(String),
    #[error("invalid symbol {0:?}: only letters A-Z, digits, '_' and '-' are allowed")]
    BadCharacter(String),
}

impl Symbol {
    /// Parses a symbol, accepting lower case (`btcusdt` becomes `BTCUSDT`).
    pub fn parse(raw: &str) -> Result<Symbol, SymbolError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(SymbolError::Empty(raw.to_string()));
        }
        if s.len() > 32 {
            return Err(SymbolError::TooLong(raw.to_string()));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            || s.starts_with('-')
        {
            return Err(SymbolError::BadCharacter(raw.to_string()));
        }
        Ok(Symbol(s.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Symbol {
    type Err = SymbolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symbol::parse(s)
    }
}

impl serde::Serialize for Symbol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Symbol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Symbol::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The Binance market a kline comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Market {
    /// Spot: `/api/v3/...`.
    #[default]
    Spot,
    /// USD-M futures: `/fapi/v1/...`.
    UsdM,
}

impl Market {
    pub fn as_str(self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::UsdM => "usdm",
        }
    }

    pub fn klines_path(self) -> &'static str {
        match self {
            Market::Spot => "/api/v3/klines",
            Market::UsdM => "/fapi/v1/klines",
        }
    }

    pub fn time_path(self) -> &'static str {
        match self {
            Market::Spot => "/api/v3/time",
            Market::UsdM => "/fapi/v1/time",
        }
    }

    pub fn exchange_info_path(self) -> &'static str {
        match self {
            Market::Spot => "/api/v3/exchangeInfo",
            Market::UsdM => "/fapi/v1/exchangeInfo",
        }
    }

    /// Rows asked for per klines request: spot costs 2 whatever the limit, so ask for the
    /// most; USD-M weight grows with the limit and 499 rows is the cheapest per row.
    pub fn page_limit(self) -> u32 {
        match self {
            Market::Spot => 1000,
            Market::UsdM => 499,
        }
    }

    /// Request weight of one klines request with `limit` rows.
    pub fn klines_weight(self, limit: u32) -> u32 {
        match self {
            Market::Spot => 2,
            Market::UsdM => match limit {
                0..100 => 1,
                100..500 => 2,
                500..=1000 => 5,
                _ => 10,
            },
        }
    }

    pub fn exchange_info_weight(self) -> u32 {
        match self {
            Market::Spot => 20,
            Market::UsdM => 1,
        }
    }
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown market {0:?} (expected spot or usdm)")]
pub struct UnknownMarket(String);

impl FromStr for Market {
    type Err = UnknownMarket;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spot" => Ok(Market::Spot),
            "usdm" | "um" => Ok(Market::UsdM),
            _ => Err(UnknownMarket(s.to_string())),
        }
    }
}

impl serde::Serialize for Market {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Market {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_upper_cased_and_checked() {
        assert_eq!(Symbol::parse("btcusdt").unwrap().as_str(), "BTCUSDT");
        assert_eq!(
            Symbol::parse("BTCUSDT_240628").unwrap().as_str(),
            "BTCUSDT_240628"
        );
        assert!(matches!(Symbol::parse(""), Err(SymbolError::Empty(_))));
        // Coinbase's products.
        assert_eq!(Symbol::parse("btc-usd").unwrap().as_str(), "BTC-USD");
        assert!(matches!(
            Symbol::parse("-BTC"),
            Err(SymbolError::BadCharacter(_))
        ));
        assert!(matches!(
            Symbol::parse("BTC/USDT"),
            Err(SymbolError::BadCharacter(_))
        ));
        assert!(matches!(
            Symbol::parse("BTC'; DROP"),
            Err(SymbolError::BadCharacter(_))
        ));
        assert!(matches!(
            Symbol::parse("../etc"),
            Err(SymbolError::BadCharacter(_))
        ));
        assert!(matches!(
            Symbol::parse(&"A".repeat(33)),
            Err(SymbolError::TooLong(_))
        ));
    }

    #[test]
    fn futures_weight_follows_the_limit() {
        assert_eq!(Market::UsdM.klines_weight(99), 1);
        assert_eq!(Market::UsdM.klines_weight(499), 2);
        assert_eq!(Market::UsdM.klines_weight(1000), 5);
        assert_eq!(Market::UsdM.klines_weight(1500), 10);
        assert_eq!(Market::Spot.klines_weight(1000), 2);
    }
}
