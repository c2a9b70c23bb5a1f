//! Staged files read back for a load: each checked against its manifest entry (size,
//! SHA-256, series, rows, range) and decoded; a batch's files merged per series.

use std::collections::BTreeMap;

use anyhow::Context;

use super::batch::{LoadFile, SeriesRows};
use crate::datasets::klines::KlineBatch;
use crate::market::Series;
use crate::stage::manifest::{self, ManifestEntry};
use crate::stage::{Stage, parquet};

/// Fetches a staged file and checks it against its manifest entry.
pub(crate) async fn fetch(stage: &Stage, entry: &ManifestEntry) -> anyhow::Result<KlineBatch> {
    let bytes = stage
        .get(&entry.path)
        .await
        .with_context(|| format!("{}: cannot read from {}", entry.path, stage.url()))?;
    if bytes.len() as u64 != entry.bytes || manifest::sha256_hex(&bytes) != entry.sha256 {
        anyhow::bail!(
            "{}: content does not match its manifest entry (size or SHA-256 differs)",
            entry.path
        );
    }
    let name = entry.path.clone();
    let decoded = tokio::task::spawn_blocking(move || parquet::decode(&name, bytes)).await??;
    if decoded
        .series
        .as_ref()
        .is_some_and(|s| *s != entry.series())
    {
        anyhow::bail!(
            "{}: holds another series than its manifest entry",
            entry.path
        );
    }
    if decoded.klines.len() as u64 != entry.rows {
        anyhow::bail!(
            "{}: {} rows, its manifest entry says {}",
            entry.path,
            decoded.klines.len(),
            entry.rows
        );
    }
    let k = &decoded.klines;
    if k.open_time.first().is_some_and(|&t| t < entry.start)
        || k.open_time.last().is_some_and(|&t| t >= entry.end)
    {
        anyhow::bail!("{}: holds klines outside its manifest range", entry.path);
    }
    Ok(decoded.klines)
}

/// Merges the files of a batch per series; for a shared open time the later file wins.
pub(crate) fn assemble(files: &[LoadFile], decoded: &[KlineBatch]) -> Vec<SeriesRows> {
    let mut by_series: BTreeMap<Series, Vec<usize>> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        by_series.entry(f.entry.series()).or_default().push(i);
    }
    by_series
        .into_iter()
        .map(|(series, idx)| {
            if idx.len() == 1 {
                let i = idx[0];
                return SeriesRows {
                    series,
                    klines: decoded[i].clone(),
                    file: vec![i as u32; decoded[i].len()],
                };
            }
            let mut winner: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
            for &i in &idx {
                for (r, &t) in decoded[i].open_time.iter().enumerate() {
                    winner.insert(t, (i, r));
                }
            }
            let mut klines = KlineBatch::with_capacity(winner.len());
            let mut file = Vec::with_capacity(winner.len());
            for (i, r) in winner.into_values() {
                klines.extend_from(&decoded[i], r..r + 1);
                file.push(i as u32);
            }
            SeriesRows {
                series,
                klines,
                file,
            }
        })
        .collect()
}
