//! Data files without a manifest entry. The loader only sees what the manifest lists, so such
//! a file (a manifest write lost, an entry deleted by hand, files copied between stages) would
//! never load: `load` reports them, and `klines repair` writes their entries again.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;

use super::layout::{self, MANIFEST_DIR};
use super::manifest::{self, Listed, ManifestEntry};
use super::{Stage, StagedObject};

/// Data files that no manifest entry names, staged at least `min_age` ago (a backfill writes
/// the entry right after the file, so younger ones may be on their way).
pub async fn orphans(
    stage: &Stage,
    listed: &[Listed],
    min_age: Duration,
) -> anyhow::Result<Vec<StagedObject>> {
    let named: HashSet<&str> = listed.iter().map(|l| l.data_key.as_str()).collect();
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::zero());
    let all = stage
        .list("")
        .await
        .with_context(|| format!("cannot list {}", stage.url()))?;
    Ok(all
        .into_iter()
        .filter(|o| {
            !o.key.starts_with(&format!("{MANIFEST_DIR}/"))
                && layout::parse_data_key(&o.key).is_some()
                && !named.contains(o.key.as_str())
                && o.last_modified <= cutoff
        })
        .collect())
}

/// Reads the data file `key`, checks that it holds only klines of the series and range its
/// name gives, and returns the manifest entry that describes it.
pub async fn entry_for(stage: &Stage, key: &str) -> anyhow::Result<ManifestEntry> {
    let (series, range) =
        layout::parse_data_key(key).with_context(|| format!("{key}: not a klines data file"))?;
    let bytes = stage
        .get(key)
        .await
        .with_context(|| format!("cannot read {key}"))?;
    let decoded = super::parquet::decode(key, bytes.clone())?;
    if let Some(s) = &decoded.series
        && *s != series
    {
        anyhow::bail!("{key}: holds {s}, not the {series} its name says");
    }
    if let Some(t) = decoded
        .klines
        .open_time
        .iter()
        .find(|&&t| t < range.0 || t >= range.1)
    {
        anyhow::bail!(
            "{key}: holds a kline opening at {}, outside the range its name says",
            crate::time::format_ms(*t)
        );
    }
    let complete = layout::unit_of(series.interval, range.0) == range;
    Ok(ManifestEntry::new(
        &series,
        key.to_string(),
        range,
        complete,
        decoded.klines.len(),
        &bytes,
    ))
}

/// Writes the manifest entry of every orphan (all of them when `dry_run` is false); returns
/// each file with its entry or the reason it was refused.
pub async fn repair(
    stage: &Stage,
    dry_run: bool,
) -> anyhow::Result<Vec<(String, anyhow::Result<ManifestEntry>)>> {
    let listed = manifest::list(stage).await?;
    let mut out = Vec::new();
    for o in orphans(stage, &listed, Duration::ZERO).await? {
        let entry = entry_for(stage, &o.key).await;
        let entry = match entry {
            Ok(e) if !dry_run => manifest::write(stage, &e).await.map(|()| e),
            other => other,
        };
        out.push((o.key, entry));
    }
    Ok(out)
}
