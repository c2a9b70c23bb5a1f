//! Change tracking for incremental models by time range.
//!
//! Every change is a (batch key, time range) with an increasing id: loads record theirs in the
//! raw schema's load history (a source's `load_history` config names that table), model runs in
//! `<schema>.klines_model_changes`. Each model keeps, per parent, the last id it processed in
//! `<schema>.klines_model_watermarks`. A run reads its parents' newer changes, widens them to
//! its buckets, deletes and re-inserts exactly those buckets, and records the ranges it rewrote
//! and its new watermarks, all in one transaction.

use std::collections::BTreeMap;

use anyhow::Context;

use super::jinja::BatchFilter;
use crate::datasets::ColType;
use crate::ranges::RangeSet;
use crate::warehouse::dialect::{sql_type, timestamp_literal};
use crate::warehouse::ident::{literal, quote, relation};
use crate::warehouse::{DialectRef, Warehouse};

pub const CHANGES: &str = "klines_model_changes";
pub const WATERMARKS: &str = "klines_model_watermarks";

/// `1m`, `5m`, `15m`, `1h`, `1d`, ... as milliseconds.
pub fn grain_millis(s: &str) -> Option<i64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    // Buckets must tile days (and so align to UTC midnight).
    let ms = n * unit_ms;
    (86_400_000 % ms == 0 || ms % 86_400_000 == 0).then_some(ms)
}

/// The tables, created if missing.
pub fn ddl(kind: DialectRef, schema: &str) -> Vec<String> {
    let t = |ty| sql_type(kind, ty);
    let seq = relation(kind, schema, "klines_model_change_id");
    let (change_id, before) = kind.identity("change_id", &seq);
    let mut out = vec![format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        quote(kind, schema)
    )];
    out.extend(before);
    out.extend([
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({change_id}, {} {} NOT NULL, {} {} NOT NULL, \
             {} {} NOT NULL, {} {} NOT NULL, {} {} NOT NULL)",
            relation(kind, schema, CHANGES),
            quote(kind, "model"),
            t(ColType::Text),
            quote(kind, "batch_key"),
            t(ColType::Text),
            quote(kind, "range_start"),
            t(ColType::Timestamp),
            quote(kind, "range_end"),
            t(ColType::Timestamp),
            quote(kind, "recorded_at"),
            t(ColType::Timestamp),
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({} {} NOT NULL, {} {} NOT NULL, {} BIGINT NOT NULL, PRIMARY KEY ({}, {}))",
            relation(kind, schema, WATERMARKS),
            quote(kind, "model"),
            t(ColType::Text),
            quote(kind, "parent"),
            t(ColType::Text),
            quote(kind, "last_id"),
            quote(kind, "model"),
            quote(kind, "parent")
        ),
    ]);
    out
}

/// Where a parent's changes come from.
#[derive(Debug, Clone)]
pub enum Feed {
    /// A load history: `symbol`, `range_start`, `range_end`, `load_id`.
    LoadHistory { relation: String },
    /// Another time-range model's recorded changes.
    Model { unique_id: String },
}

/// A parent's changes newer than the model's watermark.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub parent: String,
    /// Highest id seen (the next watermark); `None` when there is none.
    pub max_id: Option<i64>,
    pub ranges: Vec<(String, i64, i64)>,
}

/// Every model's watermarks in `schema`: (model, parent) -> the last change id it processed.
pub async fn watermarks(
    wh: &dyn Warehouse,
    schema: &str,
) -> anyhow::Result<BTreeMap<(String, String), i64>> {
    let kind = wh.dialect();
    let rows = wh
        .query(&format!(
            "SELECT {}, {}, {} FROM {}",
            quote(kind, "model"),
            quote(kind, "parent"),
            quote(kind, "last_id"),
            relation(kind, schema, WATERMARKS),
        ))
        .await?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| {
            let (model, parent, id) = (
                r.first()?.as_str()?,
                r.get(1)?.as_str()?,
                r.get(2)?.as_i64()?,
            );
            Some(((model.to_string(), parent.to_string()), id))
        })
        .collect())
}

fn feed_query(kind: DialectRef, schema: &str, feed: &Feed, after: Option<i64>) -> String {
    let after = after
        .map(|id| id.to_string())
        .unwrap_or_else(|| "-1".into());
    match feed {
        Feed::LoadHistory { relation: rel } => format!(
            "SELECT {}, {}, {}, {} FROM {rel} WHERE {} > {after}",
            quote(kind, "symbol"),
            quote(kind, "range_start"),
            quote(kind, "range_end"),
            quote(kind, "load_id"),
            quote(kind, "load_id")
        ),
        Feed::Model { unique_id } => format!(
            "SELECT {}, {}, {}, {} FROM {} WHERE {} = {} AND {} > {after}",
            quote(kind, "batch_key"),
            quote(kind, "range_start"),
            quote(kind, "range_end"),
            quote(kind, "change_id"),
            relation(kind, schema, CHANGES),
            quote(kind, "model"),
            literal(unique_id),
            quote(kind, "change_id")
        ),
    }
}

/// The changes of `parent` after `wm`, the last change id the model processed (its
/// watermark; [`super::catalog::Catalog::pending`] finds it).
pub async fn pending(
    wh: &dyn Warehouse,
    schema: &str,
    wm: Option<i64>,
    parent: &str,
    feed: &Feed,
) -> anyhow::Result<Pending> {
    let kind = wh.dialect();
    let rows = wh
        .query(&feed_query(kind, schema, feed, wm))
        .await
        .with_context(|| format!("reading the changes of {parent}"))?;
    let mut out = Pending {
        parent: parent.to_string(),
        max_id: wm,
        ranges: Vec::new(),
    };
    for r in &rows.rows {
        let (Some(key), Some(s), Some(e), Some(id)) = (
            r[0].as_str(),
            r[1].as_millis(),
            r[2].as_millis(),
            r[3].as_i64(),
        ) else {
            continue;
        };
        out.ranges.push((key.to_string(), s, e));
        out.max_id = Some(out.max_id.map_or(id, |m| m.max(id)));
    }
    Ok(out)
}

/// The current highest id of a feed (for a full build, which covers everything so far).
pub async fn latest_id(
    wh: &dyn Warehouse,
    schema: &str,
    feed: &Feed,
) -> anyhow::Result<Option<i64>> {
    let kind = wh.dialect();
    let sql = match feed {
        Feed::LoadHistory { relation: rel } => {
            format!("SELECT max({}) FROM {rel}", quote(kind, "load_id"))
        }
        Feed::Model { unique_id } => format!(
            "SELECT max({}) FROM {} WHERE {} = {}",
            quote(kind, "change_id"),
            relation(kind, schema, CHANGES),
            quote(kind, "model"),
            literal(unique_id)
        ),
    };
    Ok(wh.query(&sql).await?.scalar().and_then(|v| v.as_i64()))
}

/// Widens ranges to whole buckets of `grain` ms (aligned to the epoch, so to UTC days).
pub fn widen(ranges: &[(String, i64, i64)], grain: i64) -> BatchFilter {
    let mut out: BTreeMap<String, RangeSet> = BTreeMap::new();
    for (key, s, e) in ranges {
        let start = s.div_euclid(grain) * grain;
        let end = (e + grain - 1).div_euclid(grain) * grain;
        out.entry(key.clone())
            .or_default()
            .insert(start, end.max(start + grain));
    }
    BatchFilter { ranges: out }
}

/// Statements recording what `model` rewrote and the ids it has now processed.
pub fn record(
    kind: DialectRef,
    schema: &str,
    model: &str,
    filter: &BatchFilter,
    watermarks: &[(String, i64)],
    now_ms: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    let rows: Vec<String> = filter
        .ranges
        .iter()
        .flat_map(|(key, set)| {
            set.ranges().iter().map(move |&(s, e)| {
                format!(
                    "({}, {}, {}, {}, {})",
                    literal(model),
                    literal(key),
                    timestamp_literal(kind, s),
                    timestamp_literal(kind, e),
                    timestamp_literal(kind, now_ms)
                )
            })
        })
        .collect();
    if !rows.is_empty() {
        out.push(format!(
            "INSERT INTO {} ({}, {}, {}, {}, {}) VALUES {}",
            relation(kind, schema, CHANGES),
            quote(kind, "model"),
            quote(kind, "batch_key"),
            quote(kind, "range_start"),
            quote(kind, "range_end"),
            quote(kind, "recorded_at"),
            rows.join(", ")
        ));
    }
    for (parent, id) in watermarks {
        let cond = format!(
            "{} = {} AND {} = {}",
            quote(kind, "model"),
            literal(model),
            quote(kind, "parent"),
            literal(parent)
        );
        out.push(format!(
            "DELETE FROM {} WHERE {cond}",
            relation(kind, schema, WATERMARKS)
        ));
        out.push(format!(
            "INSERT INTO {} ({}, {}, {}) VALUES ({}, {}, {id})",
            relation(kind, schema, WATERMARKS),
            quote(kind, "model"),
            quote(kind, "parent"),
            quote(kind, "last_id"),
            literal(model),
            literal(parent)
        ));
    }
    out
}

/// Statements forgetting a model's changes and watermarks (before a full rebuild).
pub fn forget(kind: DialectRef, schema: &str, model: &str) -> Vec<String> {
    vec![format!(
        "DELETE FROM {} WHERE {} = {}",
        relation(kind, schema, WATERMARKS),
        quote(kind, "model"),
        literal(model)
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grains_tile_days() {
        assert_eq!(grain_millis("5m"), Some(300_000));
        assert_eq!(grain_millis("1d"), Some(86_400_000));
        assert_eq!(grain_millis("7m"), None);
        assert_eq!(grain_millis("0m"), None);
        assert_eq!(grain_millis("m"), None);
    }

    #[test]
    fn widening_covers_whole_buckets() {
        let m = 60_000;
        let f = widen(
            &[
                ("A".into(), 7 * m, 8 * m),
                ("A".into(), 14 * m, 16 * m),
                ("B".into(), 0, m),
            ],
            5 * m,
        );
        assert_eq!(f.ranges["A"].ranges(), &[(5 * m, 20 * m)]);
        assert_eq!(f.ranges["B"].ranges(), &[(0, 5 * m)]);
    }
}
