//! The backfill checkpoint of one series: what is staged, what the exchange confirmed empty.
//!
//! A checkpoint only moves forward after the files it points at are durably staged, so the
//! stage always holds at least what the checkpoint claims.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::market::Series;
use crate::ranges::RangeSet;

pub const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    #[serde(flatten)]
    pub series: SeriesId,
    /// Open time of the series' first kline on the exchange, once asked.
    #[serde(default)]
    pub listed_from: Option<i64>,
    /// Open-time ranges whose klines are all staged (or confirmed absent).
    pub covered: RangeSet,
    /// The parts of `covered` where the exchange has no klines: outages, or before listing.
    pub empty: RangeSet,
    /// Days (or years) only partly covered, by unit start, with the files holding their rows:
    /// the next run that extends such a unit reads them back to write the unit whole.
    #[serde(default, with = "partial_units")]
    pub partial: BTreeMap<i64, Vec<String>>,
    /// Archive files staged, by file name, with the checksum they had: a later run that finds
    /// another checksum published stages the range again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub archives: BTreeMap<String, ArchiveFile>,
}

pub use crate::sources::history::ArchiveFile;

/// The series fields as they appear in the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesId {
    /// Absent in checkpoints written before the exchange was part of the series: Binance.
    #[serde(default)]
    pub exchange: crate::market::Exchange,
    pub market: crate::market::Market,
    pub symbol: crate::market::Symbol,
    pub interval: crate::market::Interval,
}

impl Checkpoint {
    pub fn new(series: &Series) -> Checkpoint {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            series: SeriesId {
                exchange: series.exchange,
                market: series.market,
                symbol: series.symbol.clone(),
                interval: series.interval,
            },
            listed_from: None,
            covered: RangeSet::new(),
            empty: RangeSet::new(),
            partial: BTreeMap::new(),
            archives: BTreeMap::new(),
        }
    }

    pub fn matches(&self, series: &Series) -> bool {
        self.series.exchange == series.exchange
            && self.series.market == series.market
            && self.series.symbol == series.symbol
            && self.series.interval == series.interval
    }

    /// Parses a checkpoint file, refusing versions this build does not know.
    pub fn from_json(name: &str, bytes: &[u8]) -> anyhow::Result<Checkpoint> {
        #[derive(Deserialize)]
        struct Probe {
            version: u32,
        }
        let probe: Probe = serde_json::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("checkpoint {name} is not valid JSON: {e}"))?;
        if probe.version != CHECKPOINT_VERSION {
            anyhow::bail!(
                "checkpoint {name} has version {}, this klines reads version {CHECKPOINT_VERSION}",
                probe.version
            );
        }
        serde_json::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("checkpoint {name} is not valid: {e}"))
    }
}

mod partial_units {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Unit {
        unit_start: i64,
        files: Vec<String>,
    }

    pub fn serialize<S: serde::Serializer>(
        m: &BTreeMap<i64, Vec<String>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let v: Vec<Unit> = m
            .iter()
            .map(|(&unit_start, files)| Unit {
                unit_start,
                files: files.clone(),
            })
            .collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<i64, Vec<String>>, D::Error> {
        let v: Vec<Unit> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|u| (u.unit_start, u.files)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::{Interval, Market, Symbol};

    #[test]
    fn round_trips_and_refuses_unknown_versions() {
        let series = Series {
            exchange: crate::market::Exchange::BINANCE,
            market: Market::Spot,
            symbol: Symbol::parse("BTCUSDT").unwrap(),
            interval: Interval::M1,
        };
        let mut cp = Checkpoint::new(&series);
        cp.covered.insert(0, 120_000);
        cp.empty.insert(60_000, 120_000);
        cp.partial.insert(0, vec!["a.parquet".into()]);
        let json = serde_json::to_vec(&cp).unwrap();
        assert_eq!(Checkpoint::from_json("x", &json).unwrap(), cp);
        insta::assert_snapshot!(String::from_utf8(json.clone()).unwrap(), @r#"{"version":1,"exchange":"binance","market":"spot","symbol":"BTCUSDT","interval":"1m","listed_from":null,"covered":[[0,120000]],"empty":[[60000,120000]],"partial":[{"unit_start":0,"files":["a.parquet"]}]}"#);
        // Checkpoints written before the exchange was part of the series are Binance's.
        let legacy = String::from_utf8(json.clone())
            .unwrap()
            .replace("\"exchange\":\"binance\",", "");
        assert_eq!(
            Checkpoint::from_json("old.json", legacy.as_bytes()).unwrap(),
            cp
        );
        let future = String::from_utf8(json)
            .unwrap()
            .replace("\"version\":1", "\"version\":2");
        let err = Checkpoint::from_json("x.json", future.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }
}
