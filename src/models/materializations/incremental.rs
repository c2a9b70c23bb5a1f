//! `incremental`: by time range (delete and re-insert the changed buckets, see `changes`),
//! `append`, or `delete+insert` on `unique_key`. The first build and `--full-refresh` build a
//! table beside and swap it in, as `table` does.

use anyhow::Context;

use super::{Build, Built, Materialization};
use crate::models::changes::{self, grain_millis};
use crate::models::config::NodeConfig;
use crate::models::materialize;
use crate::models::node::Node;
use crate::warehouse::ident::quote;
use crate::warehouse::{RelationType, Warehouse};

pub struct Incremental;

#[async_trait::async_trait]
impl Materialization for Incremental {
    fn name(&self) -> &'static str {
        "incremental"
    }

    fn check(&self, config: &NodeConfig) -> Result<(), String> {
        if !is_time_range(config) {
            return Ok(());
        }
        for (k, v) in [
            ("batch_key", &config.batch_key),
            ("time_grain", &config.time_grain),
        ] {
            if v.is_none() {
                return Err(format!("incremental by time range needs config {k}"));
            }
        }
        if grain_millis(config.time_grain.as_deref().unwrap_or_default()).is_none() {
            return Err("time_grain must be like 1m, 5m, 15m, 1h or 1d".into());
        }
        if let Some(v) = config.all.get("lookback")
            && v.as_str().and_then(grain_millis).is_none()
        {
            return Err(format!("lookback {v} must be like 1h, 1d or 60d"));
        }
        Ok(())
    }

    fn records_changes(&self, config: &NodeConfig) -> bool {
        is_time_range(config)
    }

    async fn compiles_incremental(&self, wh: &dyn Warehouse, node: &Node) -> anyhow::Result<bool> {
        Ok(materialize::existing(wh, node).await? == Some(RelationType::Table))
    }

    async fn build(&self, b: &Build<'_>) -> anyhow::Result<Built> {
        let exists = b.catalog.existing(b.wh, b.node).await? == Some(RelationType::Table);
        if !is_time_range(&b.node.config) {
            return by_key(b, exists).await;
        }
        if b.feeds.is_empty() {
            anyhow::bail!(
                "{}: incremental by time range needs a parent that records changes (a source with `load_history`, or another such model)",
                b.node.path
            );
        }
        if !exists || b.full_refresh {
            full(b).await
        } else {
            changed_ranges(b).await
        }
    }
}

/// Whether a model is incremental by time range (the default with `event_time`).
fn is_time_range(config: &NodeConfig) -> bool {
    config.event_time.is_some()
        && config
            .incremental_strategy
            .as_deref()
            .unwrap_or("time_range")
            == "time_range"
}

/// A time-range model's `lookback` (`1d`, `60d`, ...) in milliseconds: how far back its
/// windows read.
fn lookback_millis(n: &Node) -> Option<i64> {
    n.config
        .all
        .get("lookback")
        .and_then(|v| v.as_str())
        .and_then(grain_millis)
}

/// The model's (event time, batch key, grain in milliseconds).
fn time_columns(node: &Node) -> anyhow::Result<(String, String, i64)> {
    let grain = grain_millis(node.config.time_grain.as_deref().unwrap_or_default())
        .context("time_grain")?;
    Ok((
        node.config.event_time.clone().unwrap_or_default(),
        node.config.batch_key.clone().unwrap_or_default(),
        grain,
    ))
}

/// `append` and `delete+insert`: the first build makes the table, later ones add the rows.
async fn by_key(b: &Build<'_>, exists: bool) -> anyhow::Result<Built> {
    let (wh, node) = (b.wh, b.node);
    let sql = b.compile(exists && !b.full_refresh, None)?;
    if !exists || b.full_refresh {
        let rows = materialize::table(wh, node, &sql, Vec::new()).await?;
        return Ok(Built::new(
            rows,
            format!("built {}: {rows} rows", node.relation),
        ));
    }
    let rows = match node.config.incremental_strategy.as_deref() {
        Some("delete+insert") | Some("merge") => delete_insert(wh, node, &sql).await?,
        _ => append(wh, node, &sql).await?,
    };
    Ok(Built::new(
        rows,
        format!("inserted {rows} rows into {}", node.relation),
    ))
}

/// A time-range model's first build (or `--full-refresh`): the whole table, recorded as new
/// for the models downstream, with the parents' changes up to now marked as taken.
async fn full(b: &Build<'_>) -> anyhow::Result<Built> {
    let (wh, node, schema) = (b.wh, b.node, b.schema);
    let (event_time, batch_key, grain) = time_columns(node)?;
    let mut marks = Vec::new();
    for (parent, feed) in &b.feeds {
        if let Some(id) = changes::latest_id(wh, schema, feed).await? {
            marks.push((parent.clone(), id));
        }
    }
    let sql = b.compile(false, None)?;
    let tmp = materialize::build_tmp(wh, node, &sql).await?;
    let spans = wh
        .query(&format!(
            "SELECT {batch_key}, min({event_time}), max({event_time}) FROM {tmp} GROUP BY {batch_key}"
        ))
        .await?;
    let mut ranges = Vec::new();
    for r in &spans.rows {
        if let (Some(k), Some(s), Some(e)) = (r[0].as_str(), r[1].as_millis(), r[2].as_millis()) {
            ranges.push((k.to_string(), s, e + grain));
        }
    }
    let filter = changes::widen(&ranges, grain);
    let kind = wh.dialect();
    let mut extra = changes::forget(kind, schema, &node.unique_id);
    extra.extend(changes::record(
        kind,
        schema,
        &node.unique_id,
        &filter,
        &marks,
        crate::time::now_ms(),
    ));
    let rows = materialize::swap_in(wh, node, &tmp, extra).await?;
    materialize::range_index(wh, node, &batch_key, &event_time).await?;
    Ok(Built::new(
        rows,
        format!("built {}: {rows} rows", node.relation),
    ))
}

/// A time-range model's later builds: the buckets its parents changed since its last build
/// are deleted and inserted again, in one transaction with the new marks.
async fn changed_ranges(b: &Build<'_>) -> anyhow::Result<Built> {
    let (wh, node, schema) = (b.wh, b.node, b.schema);
    let (event_time, batch_key, grain) = time_columns(node)?;
    let mut ranges = Vec::new();
    let mut marks = Vec::new();
    for (parent, feed) in &b.feeds {
        let p = b
            .catalog
            .pending(wh, schema, &node.unique_id, parent, feed)
            .await?;
        ranges.extend(p.ranges);
        if let Some(id) = p.max_id {
            marks.push((parent.clone(), id));
        }
    }
    if ranges.is_empty() {
        return Ok(Built::new(0, "nothing new"));
    }
    // With a lookback, a change also rewrites the buckets after it that its windows reach,
    // and the rows read start that much earlier; only the rewritten ranges are inserted.
    let lookback = lookback_millis(node).unwrap_or(0);
    let ranges: Vec<_> = ranges
        .into_iter()
        .map(|(k, s, e)| (k, s, e + lookback))
        .collect();
    let filter = changes::widen(&ranges, grain);
    let kind = wh.dialect();
    let condition = filter.condition(kind, &batch_key, &event_time);
    let read: Vec<_> = ranges
        .iter()
        .map(|(k, s, e)| (k.clone(), s - lookback, *e))
        .collect();
    let sql = b.compile(true, Some(changes::widen(&read, grain)))?;
    let sql = if lookback > 0 {
        format!("SELECT * FROM (\n{sql}\n) AS klines_lookback WHERE {condition}")
    } else {
        sql
    };
    let mut statements = materialize::replace_range(wh, node, &condition, &sql).await?;
    statements.extend(changes::record(
        kind,
        schema,
        &node.unique_id,
        &filter,
        &marks,
        crate::time::now_ms(),
    ));
    let counts = wh.transaction(&statements).await?;
    let buckets: usize = filter.ranges.values().map(|r| r.ranges().len()).sum();
    Ok(Built::new(
        counts[1],
        format!(
            "{} ranges in {} keys: {} rows deleted, {} inserted",
            buckets,
            filter.ranges.len(),
            counts[0],
            counts[1]
        ),
    ))
}

/// `append`: insert the model's rows.
async fn append(wh: &dyn Warehouse, node: &Node, sql: &str) -> anyhow::Result<u64> {
    let list = materialize::column_list(wh, node).await?;
    let counts = wh
        .transaction(&[format!(
            "INSERT INTO {} ({list}) SELECT {list} FROM (\n{sql}\n) AS klines_new",
            node.relation
        )])
        .await?;
    Ok(counts[0])
}

/// `delete+insert`: the new rows replace the rows with the same key.
async fn delete_insert(wh: &dyn Warehouse, node: &Node, sql: &str) -> anyhow::Result<u64> {
    let kind = wh.dialect();
    if node.config.unique_key.is_empty() {
        anyhow::bail!(
            "{}: incremental_strategy delete+insert needs unique_key",
            node.path
        );
    }
    let tmp = materialize::build_tmp(wh, node, sql).await?;
    let list = materialize::column_list(wh, node).await?;
    let keys = node
        .config
        .unique_key
        .iter()
        .map(|k| quote(kind, k))
        .collect::<Vec<_>>()
        .join(", ");
    let counts = wh
        .transaction(&[
            format!(
                "DELETE FROM {} WHERE ({keys}) IN (SELECT {keys} FROM {tmp})",
                node.relation
            ),
            format!(
                "INSERT INTO {} ({list}) SELECT {list} FROM {tmp}",
                node.relation
            ),
            format!("DROP TABLE {tmp}"),
        ])
        .await?;
    Ok(counts[1])
}
