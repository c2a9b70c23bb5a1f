//! `materialized='indicators'`: a native model kind. The model's SQL selects the input (one row
//! per bar: the batch key, the event time, the price and any text columns to carry); klines
//! computes SMA, EMA, RSI, MACD and Bollinger bands per series in Rust ([`compute`]) and writes
//! the table through the warehouse adapter ([`Warehouse::append`]). Selectors, the graph, tests
//! and artifacts treat it like any other model.
//!
//! Every row stores what the recursive indicators carry (EMAs, RSI's average gain and loss,
//! MACD's two EMAs and signal), so an incremental run continues each changed series from the
//! last stored bar before its first change: it deletes the rows from that change on,
//! recomputes them, and leaves everything before alone. A series whose change falls in its
//! warm-up (before [`compute::Params::warm_bar`]) is recomputed whole. Other periods than the
//! stored table's (a fingerprint kept with the watermarks) mean a full rebuild.

pub mod compute;
mod config;
mod input;

pub use config::params;

use anyhow::Context;

use self::compute::{Carried, Params, Series};
use self::input::{Bars, Input, to_f64};
use super::catalog::Catalog;
use super::changes::{self, Feed};
use super::materialize;
use crate::models::node::Node;
use crate::warehouse::dialect::timestamp_literal;
use crate::warehouse::ident::{literal, quote};
use crate::warehouse::{Column, Columns, RelationType, Value, Warehouse};

/// Bars read per query in a full build (config `read_rows`, default 100,000).
fn read_rows(node: &Node) -> usize {
    node.config
        .all
        .get("read_rows")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .filter(|n| *n > 0)
        .unwrap_or(100_000) as usize
}

/// The watermark row that holds the periods' fingerprint.
const CONFIG_MARK: &str = "klines:indicator-periods";

/// A run of one indicators model.
pub struct Run<'a> {
    pub wh: &'a dyn Warehouse,
    pub node: &'a Node,
    pub schema: &'a str,
    pub feeds: Vec<(String, Feed)>,
    pub full_refresh: bool,
    pub catalog: &'a Catalog,
}

impl Run<'_> {
    /// Builds or updates the model; returns (rows written, message).
    pub async fn run(&self, sql: &str) -> anyhow::Result<(u64, String)> {
        let node = self.node;
        let p = params(&node.config.all).map_err(|e| anyhow::anyhow!("{}: {e}", node.path))?;
        let input = Input::describe(self.wh, self.node, sql).await?;
        let grain = changes::grain_millis(node.config.time_grain.as_deref().unwrap_or_default())
            .context("time_grain")?;
        let exists = self.catalog.existing(self.wh, node).await? == Some(RelationType::Table);
        if exists && !self.full_refresh {
            if self.same_shape(&p, &input).await? {
                return self.incremental(&p, &input, grain).await;
            }
            tracing::info!(model = %node.unique_id, "the indicator periods or columns changed: rebuilding the table");
        }
        self.full(&p, &input, grain).await
    }

    fn names(&self, p: &Params, input: &Input) -> Vec<String> {
        let mut names = input.carried.clone();
        names.extend([input.key.clone(), input.time.clone(), "bar_index".into()]);
        names.extend(p.columns());
        names
    }

    /// Whether the stored table has these columns and was built with these periods.
    async fn same_shape(&self, p: &Params, input: &Input) -> anyhow::Result<bool> {
        let stored: Vec<String> = self
            .catalog
            .columns(self.wh, self.node)
            .await?
            .into_iter()
            .map(|(c, _)| c.to_ascii_lowercase())
            .collect();
        let want: Vec<String> = self
            .names(p, input)
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if stored != want {
            return Ok(false);
        }
        let mark = self
            .catalog
            .watermark(self.wh, self.schema, &self.node.unique_id, CONFIG_MARK)
            .await?;
        Ok(mark == Some(p.fingerprint()))
    }

    /// The rows of `bars` computed from `series`, appended to `out`.
    fn compute(
        &self,
        input: &Input,
        key: &str,
        series: &mut Series,
        bars: &Bars,
        out: &mut Columns,
    ) {
        let n = bars.times.len();
        let carried = input.carried.len();
        for (j, c) in bars.carried.iter().enumerate() {
            if let Column::Text(v) = &mut out.columns[j] {
                v.extend(c.iter().cloned());
            }
        }
        if let Column::Text(v) = &mut out.columns[carried] {
            v.extend(std::iter::repeat_n(key.to_string(), n));
        }
        if let Column::Timestamp(v) = &mut out.columns[carried + 1] {
            v.extend(&bars.times);
        }
        let mut values = Vec::new();
        for &x in &bars.closes {
            series.push(x, &mut values);
            if let Column::Int(v) = &mut out.columns[carried + 2] {
                v.push(series.bar);
            }
            for (c, v) in out.columns[carried + 3..].iter_mut().zip(&values) {
                if let Column::Double(col) = c {
                    col.push(*v);
                }
            }
        }
    }

    fn empty(&self, p: &Params, input: &Input) -> Columns {
        let names = self.names(p, input);
        let carried = input.carried.len();
        let columns = (0..names.len())
            .map(|i| match i {
                i if i <= carried => Column::Text(Vec::new()),
                i if i == carried + 1 => Column::Timestamp(Vec::new()),
                i if i == carried + 2 => Column::Int(Vec::new()),
                _ => Column::Double(Vec::new()),
            })
            .collect();
        Columns { names, columns }
    }

    /// The watermarks of a full build: every parent's newest change so far (read before the
    /// build reads its input, so a change that lands meanwhile is processed again next time).
    async fn marks(&self, p: &Params) -> anyhow::Result<Vec<(String, i64)>> {
        let mut marks = vec![(CONFIG_MARK.to_string(), p.fingerprint())];
        for (parent, feed) in &self.feeds {
            if let Some(id) = changes::latest_id(self.wh, self.schema, feed).await? {
                marks.push((parent.clone(), id));
            }
        }
        Ok(marks)
    }

    async fn full(&self, p: &Params, input: &Input, grain: i64) -> anyhow::Result<(u64, String)> {
        let (wh, node) = (self.wh, self.node);
        let kind = wh.dialect();
        let marks = self.marks(p).await?;
        let (tmp_name, tmp) = materialize::clear_tmp(wh, node).await?;
        wh.execute(
            &self
                .empty(p, input)
                .create_table(kind, &node.schema, &tmp_name),
        )
        .await?;
        let keys = input.keys(self.wh).await?;
        let mut ranges = Vec::new();
        // A series is read and written `read_rows` bars at a time, so memory stays bounded
        // however long it is; the computation carries on across the pieces, and the pieces
        // go into the new table in one transaction where the warehouse allows it.
        let chunk = read_rows(node);
        let mut appender = wh.appender(&node.schema, &tmp_name).await?;
        for key in &keys {
            let mut series = Series::new(p);
            let (mut first, mut last) = (None, None);
            loop {
                // Open times are unique per series, and whole milliseconds.
                let from = last.map(|t: i64| t + 1);
                let bars = input
                    .bars(self.wh, &self.node.path, key, from, Some(chunk))
                    .await?;
                if bars.times.is_empty() {
                    break;
                }
                first = first.or(bars.times.first().copied());
                last = bars.times.last().copied();
                let mut out = self.empty(p, input);
                self.compute(input, key, &mut series, &bars, &mut out);
                appender.push(&out).await?;
                if bars.times.len() < chunk {
                    break;
                }
            }
            if let (Some(s), Some(e)) = (first, last) {
                ranges.push((key.clone(), s, e + grain));
            }
        }
        appender.commit().await?;
        let filter = changes::widen(&ranges, grain);
        let mut extra = changes::forget(kind, self.schema, &node.unique_id);
        extra.extend(changes::record(
            kind,
            self.schema,
            &node.unique_id,
            &filter,
            &marks,
            crate::time::now_ms(),
        ));
        let rows = materialize::swap_in(wh, node, &tmp, extra).await?;
        materialize::range_index(
            wh,
            node,
            &quote(kind, &input.key),
            &quote(kind, &input.time),
        )
        .await?;
        Ok((
            rows,
            format!(
                "built {}: {rows} rows in {} series",
                node.relation,
                keys.len()
            ),
        ))
    }

    async fn incremental(
        &self,
        p: &Params,
        input: &Input,
        grain: i64,
    ) -> anyhow::Result<(u64, String)> {
        let (wh, node) = (self.wh, self.node);
        let kind = wh.dialect();
        // The changes and the watermarks from one read of each parent: a change that lands
        // after it is past the watermark, and processed next time.
        let mut first_change: std::collections::BTreeMap<String, i64> = Default::default();
        let mut marks = vec![(CONFIG_MARK.to_string(), p.fingerprint())];
        for (parent, feed) in &self.feeds {
            let pending = self
                .catalog
                .pending(wh, self.schema, &node.unique_id, parent, feed)
                .await?;
            for (key, s, _) in pending.ranges {
                let t = first_change.entry(key).or_insert(s);
                *t = (*t).min(s);
            }
            if let Some(id) = pending.max_id {
                marks.push((parent.clone(), id));
            }
        }
        if first_change.is_empty() {
            return Ok((0, "nothing new".into()));
        }
        let (kq, tq) = (quote(kind, &input.key), quote(kind, &input.time));
        let mut out = self.empty(p, input);
        let (mut deletes, mut ranges, mut whole) = (Vec::new(), Vec::new(), 0usize);
        for (key, &t) in &first_change {
            let resumed = self.resume(p, input, key, t).await?;
            let (mut series, from) = match resumed {
                Some(s) => (s, Some(t)),
                None => {
                    whole += 1;
                    (Series::new(p), None)
                }
            };
            let bars = input
                .bars(self.wh, &self.node.path, key, from, None)
                .await?;
            deletes.push(format!(
                "DELETE FROM {} WHERE {kq} = {}{}",
                node.relation,
                literal(key),
                from.map(|t| format!(" AND {tq} >= {}", timestamp_literal(kind, t)))
                    .unwrap_or_default()
            ));
            if let (Some(&s), Some(&e)) = (bars.times.first(), bars.times.last()) {
                ranges.push((key.clone(), from.unwrap_or(s).min(s), e + grain));
            }
            self.compute(input, key, &mut series, &bars, &mut out);
        }
        let filter = changes::widen(&ranges, grain);
        let record = changes::record(
            kind,
            self.schema,
            &node.unique_id,
            &filter,
            &marks,
            crate::time::now_ms(),
        );
        let counts = wh
            .append(&deletes, &node.schema, &node.identifier, &out, &record)
            .await?;
        let deleted: u64 = counts[..deletes.len()].iter().sum();
        let inserted = out.rows() as u64;
        Ok((
            inserted,
            format!(
                "{} series from their first changed bar ({whole} whole): {deleted} rows deleted, {inserted} inserted",
                first_change.len()
            ),
        ))
    }

    /// The series' state at its last stored bar before `t`, with the closes up to it; `None`
    /// when that bar is in the warm-up (or missing) and the series must be computed whole.
    async fn resume(
        &self,
        p: &Params,
        input: &Input,
        key: &str,
        t: i64,
    ) -> anyhow::Result<Option<Series>> {
        let kind = self.wh.dialect();
        let (kq, tq) = (quote(kind, &input.key), quote(kind, &input.time));
        // The bar, the EMAs, the carried state (in `STATE`'s order) and the signal.
        let mut cols = vec!["bar_index".to_string()];
        cols.extend(p.ema.iter().map(|n| format!("ema_{n}")));
        cols.extend(compute::STATE.map(String::from));
        cols.push("macd_signal".into());
        let list = cols
            .iter()
            .map(|c| quote(kind, c))
            .collect::<Vec<_>>()
            .join(", ");
        let before = format!("{tq} < {}", timestamp_literal(kind, t));
        let rows = self
            .wh
            .query(&format!(
                "SELECT {list} FROM {} WHERE {kq} = {} AND {before} ORDER BY {tq} DESC LIMIT 1",
                self.node.relation,
                literal(key)
            ))
            .await?;
        let Some(r) = rows.rows.first() else {
            return Ok(None);
        };
        let Some(bar) = r[0].as_i64().filter(|b| *b >= p.warm_bar()) else {
            return Ok(None);
        };
        let f = |v: &Value| to_f64(v);
        let ne = p.ema.len();
        let carried = Carried {
            bar,
            ema: r[1..=ne].iter().map(f).collect(),
            gain: f(&r[ne + 1]),
            loss: f(&r[ne + 2]),
            fast: f(&r[ne + 3]),
            slow: f(&r[ne + 4]),
            signal: f(&r[ne + 5]),
        };
        let need = p.window() - 1;
        let closes = self
            .wh
            .query(&format!(
                "SELECT {} FROM (\n{}\n) AS klines_input WHERE {kq} = {} AND {before} ORDER BY {tq} DESC LIMIT {need}",
                quote(kind, &input.price),
                input.sql,
                literal(key)
            ))
            .await?;
        let mut closes: Vec<f64> = closes.rows.iter().filter_map(|r| to_f64(&r[0])).collect();
        if closes.len() < need {
            return Ok(None);
        }
        closes.reverse();
        Ok(Some(Series::resume(p, &carried, &closes)))
    }
}
