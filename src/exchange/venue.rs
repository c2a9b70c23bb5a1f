//! Which exchange a series comes from: the first part of every series' identity (stage keys,
//! manifest entries, checkpoints). Binance is the only one klines fetches from today; stages
//! and checkpoints written before the exchange was part of the layout are Binance's.

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
}

impl Exchange {
    pub fn as_str(self) -> &'static str {
        match self {
            Exchange::Binance => "binance",
        }
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
            other => Err(format!("unknown exchange {other:?} (known: binance)")),
        }
    }
}
