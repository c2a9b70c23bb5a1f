//! Which exchange a series comes from: the first part of every series' identity (stage keys,
//! manifest entries, checkpoints, the raw tables' key). Stages and checkpoints written before
//! the exchange was part of the layout are Binance's.

use std::fmt;
use std::str::FromStr;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Exchange {
    #[default]
    Binance,
    Coinbase,
}

impl Exchange {
    pub fn as_str(self) -> &'static str {
        match self {
            Exchange::Binance => "binance",
            Exchange::Coinbase => "coinbase",
        }
    }

    /// Whether its candles carry trade counts, quote volume and taker volumes; where they do
    /// not, those columns are NULL from the stage to the models.
    pub fn flow_fields(self) -> bool {
        matches!(self, Exchange::Binance)
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Exchange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "binance" => Ok(Exchange::Binance),
            "coinbase" => Ok(Exchange::Coinbase),
            other => Err(format!("unknown exchange {other:?} (known: binance, coinbase)")),
        }
    }
}
