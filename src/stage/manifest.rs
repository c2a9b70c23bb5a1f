//! The stage's manifest: one small JSON object per staged data file, written after the file
//! itself, telling the loader what the file holds without opening it.
//!
//! The entry's key carries the data file's content hash, so a file re-staged with other
//! bytes gets a new entry and the loader sees it as new; re-staging the same bytes writes
//! the same entry again.

use anyhow::Context;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::layout::{self, MANIFEST_DIR};
use super::{Stage, StagedObject};
use crate::market::Series;
use crate::market::{Exchange, Interval, Market, Symbol};

pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub version: u32,
    /// The data file's key, relative to the stage root.
    pub path: String,
    /// Absent in entries written before the exchange was part of the series: Binance.
    #[serde(default)]
    pub exchange: Exchange,
    pub market: Market,
    pub symbol: Symbol,
    pub interval: Interval,
    /// Open times `[start, end)` the file accounts for: every kline the exchange has in this
    /// range is in the file.
    pub start: i64,
    pub end: i64,
    /// True when the range is the whole UTC day (or year) of the file's unit.
    pub complete: bool,
    pub rows: u64,
    pub bytes: u64,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
}

impl ManifestEntry {
    /// The entry for the data file `bytes` staged at `path`, holding `rows` klines of `series`
    /// for open times `[start, end)`.
    pub fn new(
        series: &Series,
        path: String,
        (start, end): (i64, i64),
        complete: bool,
        rows: usize,
        bytes: &[u8],
    ) -> ManifestEntry {
        ManifestEntry {
            version: MANIFEST_VERSION,
            path,
            exchange: series.exchange,
            market: series.market,
            symbol: series.symbol.clone(),
            interval: series.interval,
            start,
            end,
            complete,
            rows: rows as u64,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }

    pub fn series(&self) -> Series {
        Series {
            exchange: self.exchange,
            market: self.market,
            symbol: self.symbol.clone(),
            interval: self.interval,
        }
    }

    pub fn key(&self) -> String {
        layout::manifest_key(&self.path, &self.sha256)
    }
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `entry` to the stage.
pub async fn write(stage: &Stage, entry: &ManifestEntry) -> anyhow::Result<()> {
    let body = serde_json::to_vec_pretty(entry)?;
    let key = entry.key();
    stage
        .put(&key, Bytes::from(body))
        .await
        .with_context(|| format!("cannot write manifest entry {key}"))?;
    Ok(())
}

/// A manifest entry as listed, before its body is read.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub data_key: String,
    pub hash_prefix: String,
    pub object: StagedObject,
}

/// Lists the manifest entries, oldest staged first (ties by key).
pub async fn list(stage: &Stage) -> anyhow::Result<Vec<Listed>> {
    let objects = stage
        .list(MANIFEST_DIR)
        .await
        .with_context(|| format!("cannot list {}/{MANIFEST_DIR}", stage.url()))?;
    let mut out: Vec<Listed> = objects
        .into_iter()
        .filter_map(|o| {
            let (data, hash) = layout::parse_manifest_key(&o.key)?;
            Some(Listed {
                key: o.key.clone(),
                data_key: data.to_string(),
                hash_prefix: hash.to_string(),
                object: o,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        a.object
            .last_modified
            .cmp(&b.object.last_modified)
            .then_with(|| a.key.cmp(&b.key))
    });
    Ok(out)
}

/// Reads one entry and checks that it describes the file its key names.
pub async fn read(stage: &Stage, listed: &Listed) -> anyhow::Result<ManifestEntry> {
    let bytes = stage
        .get(&listed.key)
        .await
        .with_context(|| format!("cannot read manifest entry {}", listed.key))?;
    let entry: ManifestEntry = serde_json::from_slice(&bytes)
        .with_context(|| format!("manifest entry {} is not valid", listed.key))?;
    if entry.version != MANIFEST_VERSION {
        anyhow::bail!(
            "manifest entry {}: unsupported version {}",
            listed.key,
            entry.version
        );
    }
    if entry.path != listed.data_key || !entry.sha256.starts_with(&listed.hash_prefix) {
        anyhow::bail!(
            "manifest entry {} describes another file ({})",
            listed.key,
            entry.path
        );
    }
    Ok(entry)
}
