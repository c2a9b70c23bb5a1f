//! Which exchange a series comes from: the first part of every series' identity (stage keys,
//! manifest entries, checkpoints, the raw tables' key). Stages and checkpoints written before
//! the exchange was part of the layout are Binance's.
//!
//! The set is open: the built-in exchanges are constants, and an exchange registered at run
//! time ([`Exchange::register`], done by `sources::register`) parses like them.

use std::fmt;
use std::str::FromStr;
use std::sync::RwLock;

/// An exchange: its name (lower case, as in stage keys) and what its candles carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Exchange {
    name: &'static str,
    flow_fields: bool,
}

/// Exchanges registered at run time, beside the built-in ones.
static REGISTERED: RwLock<Vec<Exchange>> = RwLock::new(Vec::new());

impl Exchange {
    pub const BINANCE: Exchange = Exchange::new("binance", true);
    pub const COINBASE: Exchange = Exchange::new("coinbase", false);

    /// An exchange named `name` (lower case letters and digits); `flow_fields`: see
    /// [`Exchange::flow_fields`].
    pub const fn new(name: &'static str, flow_fields: bool) -> Exchange {
        Exchange { name, flow_fields }
    }

    pub fn as_str(self) -> &'static str {
        self.name
    }

    /// Whether its candles carry trade counts, quote volume and taker volumes; where they do
    /// not, those columns are NULL from the stage to the models.
    pub fn flow_fields(self) -> bool {
        self.flow_fields
    }

    /// Makes `exchange` known (to parsing, and so to flags, stage keys and checkpoints). A
    /// name must be lower case letters and digits, and not a built-in one.
    pub fn register(exchange: Exchange) -> Result<(), String> {
        let valid = !exchange.name.is_empty()
            && exchange.name.len() <= 32
            && exchange
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return Err(format!(
                "exchange name {:?}: lower case letters and digits only",
                exchange.name
            ));
        }
        if [Exchange::BINANCE, Exchange::COINBASE]
            .iter()
            .any(|b| b.name == exchange.name)
        {
            return Err(format!("exchange {} is built in", exchange.name));
        }
        let mut all = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
        all.retain(|e| e.name != exchange.name);
        all.push(exchange);
        Ok(())
    }

    /// Every exchange klines knows: the built-in ones, then the registered ones.
    pub fn known() -> Vec<Exchange> {
        let mut all = vec![Exchange::BINANCE, Exchange::COINBASE];
        all.extend(
            REGISTERED
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .copied(),
        );
        all
    }
}

impl Default for Exchange {
    /// Binance: what stages and checkpoints from before the exchange column hold.
    fn default() -> Exchange {
        Exchange::BINANCE
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl FromStr for Exchange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        let known = Exchange::known();
        known
            .iter()
            .copied()
            .find(|e| e.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = known.iter().map(|e| e.name).collect();
                format!("unknown exchange {name:?} (known: {})", names.join(", "))
            })
    }
}

impl serde::Serialize for Exchange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name)
    }
}

impl<'de> serde::Deserialize<'de> for Exchange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Exchange, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        assert_eq!("Binance".parse::<Exchange>(), Ok(Exchange::BINANCE));
        assert_eq!(
            "coinbase"
                .parse::<Exchange>()
                .map(|e| e.to_string())
                .as_deref(),
            Ok("coinbase")
        );
        assert_eq!(
            "kraken".parse::<Exchange>(),
            Err("unknown exchange \"kraken\" (known: binance, coinbase)".to_string())
        );
        assert_eq!(
            serde_json::to_string(&Exchange::COINBASE).unwrap(),
            "\"coinbase\""
        );
        assert_eq!(
            serde_json::from_str::<Exchange>("\"binance\"").unwrap(),
            Exchange::BINANCE
        );
    }

    #[test]
    fn registered_names_are_checked() {
        assert!(Exchange::register(Exchange::new("Bad-Name", true)).is_err());
        assert!(Exchange::register(Exchange::new("binance", false)).is_err());
    }
}
