//! Backfilling one series: from the checkpoint's gaps to staged day files.
//!
//! 1. The missing open-time ranges are `[from, end)` minus the checkpoint's coverage, where
//!    `end` is the open time of the first candle not yet closed (or `--to`).
//! 2. Ranges before the symbol's first kline are empty without asking; the rest is cut into
//!    spans of one request each, fetched a few at a time but consumed in order.
//! 3. Rows are gathered per file unit (a UTC day, or a year for daily and longer intervals).
//!    Once no later span touches a unit, the unit is written: rows read back from its earlier
//!    partial file (if any) plus the new ones, to one Parquet file, then its manifest entry.
//!    The checkpoint follows (at most once a second, and at the end or on a failure). A crash
//!    anywhere in between only means the next run writes the same files again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};

mod prefetched;
mod write;

use super::checkpoint::{ArchiveFile, Checkpoint};
use super::state::{SeriesLock, StateStore};
use crate::datasets::klines::KlineBatch;
use crate::market::{Interval, Series};
use crate::progress::Task;
use crate::ranges::RangeSet;
use crate::sources::KlineSource;
use crate::sources::history::{Fetched, History, Span};
use crate::stage::layout;
use crate::stage::manifest::{self, ManifestEntry};
use crate::stage::{Stage, parquet};
pub use prefetched::Prefetched;
use write::{Saver, fetch_and_write};

/// What every series of a run shares.
pub struct RunContext {
    /// The exchange's REST API (its clock, first candles and page size).
    pub client: Arc<dyn KlineSource>,
    /// How missing ranges are planned and fetched (REST pages, archives then REST).
    pub history: Arc<dyn History>,
    pub stage: Stage,
    pub state: StateStore,
    pub server_time: i64,
    pub from: i64,
    pub to: i64,
    pub full_refresh: bool,
    /// Requests in flight per series.
    pub spans_in_flight: usize,
    pub totals: Totals,
    /// Closed candles that arrived another way (the WebSocket): a span they cover whole is
    /// taken from here instead of a request.
    pub prefetched: Option<Arc<Prefetched>>,
    /// A live run (`klines stream`): no progress bars or "up to date" lines every tick, and
    /// a unit's superseded partial files are deleted once the checkpoint no longer names them.
    pub live: bool,
}

#[derive(Debug, Default)]
pub struct Totals {
    pub rows: AtomicU64,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    /// The manifest entries written, with when (epoch ms): a live run loads exactly these.
    pub staged: std::sync::Mutex<Vec<(ManifestEntry, i64)>>,
}

struct UnitBuf {
    end: i64,
    rows: KlineBatch,
    fetched: RangeSet,
    empty: RangeSet,
}

/// The open-time range a run aims at: candles opening in `[start, end)`, all closed.
pub fn target_range(interval: Interval, from: i64, to: i64, server_time: i64) -> (i64, i64) {
    // The candle containing serverTime is still open; `to` is exclusive on open times.
    (
        interval.ceil(from),
        interval.ceil(to).min(interval.floor(server_time)),
    )
}

/// Backfills one series: its checkpoint's gaps in the run's range, fetched and staged.
pub async fn run(ctx: &RunContext, series: &Series, lock: &SeriesLock) -> anyhow::Result<()> {
    let interval = series.interval;
    let mut cp = checkpoint(ctx, series, lock).await?;
    let (start, end) = target_range(interval, ctx.from, ctx.to, ctx.server_time);
    if start < end && !cp.archives.is_empty() {
        forget_republished(ctx, series, lock, &mut cp, start, end).await?;
    }
    let missing = if start < end {
        cp.covered.missing(start, end)
    } else {
        Vec::new()
    };
    let total: i64 = missing.iter().map(|(s, e)| e - s).sum();
    if missing.is_empty() {
        if !ctx.live {
            Task::new(series.to_string(), 0, "backfill").finish("up to date");
            tracing::info!(series = %series, "up to date");
        }
        return Ok(());
    }
    let task = if ctx.live {
        Task::hidden()
    } else {
        Task::new(series.to_string(), total.max(0) as u64, "backfill")
    };
    let listed_from = match cp.listed_from {
        Some(t) => Some(t),
        None => {
            let first = ctx.client.first_open_time(&series.symbol, interval).await?;
            if let Some(t) = first.filter(|&t| t != i64::MIN) {
                cp.listed_from = Some(t);
                tracing::debug!(series = %series, first_kline = t, "first kline");
            }
            first
        }
    };
    // Before the first kline there is nothing to fetch; with no kline at all, everything
    // up to now is empty.
    let (pending, listed_missing) = units(interval, &missing, listed_from.unwrap_or(end));
    let spans = ctx.history.plan(series, &listed_missing, ctx.server_time);
    let pre_listing: i64 = pending.values().map(|u| u.empty.total()).sum();
    task.advance(pre_listing as u64, "");
    let mut saver = Saver {
        last: std::time::Instant::now(),
        dirty: false,
        superseded: Vec::new(),
    };
    let result = fetch_and_write(
        ctx, series, lock, &mut cp, &mut saver, pending, spans, &task,
    )
    .await;
    // Whatever was staged before a failure is kept: the checkpoint records it.
    if saver.dirty {
        saver.save(ctx, &cp, lock).await?;
    }
    result?;
    task.finish("done");
    Ok(())
}

/// The series' checkpoint (a new one with `--full-refresh`). Coverage past the exchange's
/// clock cannot be true (a checkpoint from another exchange or clock, or edited): it would
/// skip ranges silently, so it is dropped, with a warning.
async fn checkpoint(
    ctx: &RunContext,
    series: &Series,
    lock: &SeriesLock,
) -> anyhow::Result<Checkpoint> {
    let mut cp = if ctx.full_refresh {
        ctx.state.reset(series, lock).await?;
        Checkpoint::new(series)
    } else {
        ctx.state
            .load(series)
            .await?
            .unwrap_or_else(|| Checkpoint::new(series))
    };
    let closed_until = series.interval.floor(ctx.server_time);
    if let Some((_, covered_end)) = cp.covered.span()
        && covered_end > closed_until
    {
        tracing::warn!(
            series = %series,
            checkpoint_until = %crate::time::format_ms(covered_end),
            exchange_clock = %crate::time::format_ms(ctx.server_time),
            "the checkpoint covers candles past the exchange's clock; that part is fetched again"
        );
        cp.covered = cp.covered.within(i64::MIN, closed_until);
        cp.empty = cp.empty.within(i64::MIN, closed_until);
    }
    Ok(cp)
}

/// Archive files the exchange published again since they were staged: their ranges are
/// fetched again.
async fn forget_republished(
    ctx: &RunContext,
    series: &Series,
    lock: &SeriesLock,
    cp: &mut Checkpoint,
    start: i64,
    end: i64,
) -> anyhow::Result<()> {
    let republished = ctx
        .history
        .republished(series, &cp.archives, start, end)
        .await?;
    for name in &republished {
        if let Some(f) = cp.archives.remove(name) {
            cp.covered.remove(f.start, f.end);
            cp.empty.remove(f.start, f.end);
        }
    }
    if !republished.is_empty() {
        ctx.state.save(cp, lock).await?;
    }
    Ok(())
}

/// The file units the missing ranges touch, with what lies before the first candle
/// (`listed`) already known empty; and the missing ranges from `listed` on, to fetch.
fn units(
    interval: Interval,
    missing: &[(i64, i64)],
    listed: i64,
) -> (BTreeMap<i64, UnitBuf>, Vec<(i64, i64)>) {
    let mut pending: BTreeMap<i64, UnitBuf> = BTreeMap::new();
    let mut listed_missing = Vec::new();
    for &(s, e) in missing {
        let mut t = s;
        while t < e {
            let (us, ue) = layout::unit_of(interval, t);
            let part_end = e.min(ue);
            let unit = pending.entry(us).or_insert_with(|| UnitBuf {
                end: ue,
                rows: KlineBatch::default(),
                fetched: RangeSet::new(),
                empty: RangeSet::new(),
            });
            let empty_end = part_end.min(listed);
            if t < empty_end {
                unit.fetched.insert(t, empty_end);
                unit.empty.insert(t, empty_end);
            }
            t = part_end;
        }
        if s.max(listed) < e {
            listed_missing.push((s.max(listed), e));
        }
    }
    (pending, listed_missing)
}

#[cfg(test)]
mod tests {
    use super::write::route;
    use super::*;
    use crate::market::interval::MINUTE;

    #[test]
    fn the_target_stops_before_the_open_candle() {
        let t0 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
        // serverTime 00:10:30: the 00:10 candle is open, so candles open before 00:10.
        assert_eq!(
            target_range(Interval::M1, t0, t0 + 3_600_000, t0 + 10 * MINUTE + 30_000),
            (t0, t0 + 10 * MINUTE)
        );
        // serverTime exactly 00:10:00: the 00:10 candle just opened.
        assert_eq!(
            target_range(Interval::M1, t0, t0 + 3_600_000, t0 + 10 * MINUTE),
            (t0, t0 + 10 * MINUTE)
        );
        // --from mid-candle starts at the next candle; --to mid-candle includes the candle.
        assert_eq!(
            target_range(Interval::M1, t0 + 1, t0 + 5 * MINUTE + 1, t0 + 3_600_000),
            (t0 + MINUTE, t0 + 6 * MINUTE)
        );
    }

    #[test]
    fn gaps_between_rows_are_confirmed_empty() {
        let t0 = 1_704_067_200_000;
        let mut pending = BTreeMap::new();
        pending.insert(
            t0,
            UnitBuf {
                end: t0 + 86_400_000,
                rows: KlineBatch::default(),
                fetched: RangeSet::new(),
                empty: RangeSet::new(),
            },
        );
        let mut rows = KlineBatch::default();
        for m in [1, 2, 5] {
            rows.push(&crate::datasets::klines::Kline {
                open_time: t0 + m * MINUTE,
                open: 1,
                high: 1,
                low: 1,
                close: 1,
                volume: 0,
                close_time: t0 + (m + 1) * MINUTE - 1,
                quote_volume: 0,
                trades: 0,
                taker_buy_base_volume: 0,
                taker_buy_quote_volume: 0,
            });
        }
        route(
            Interval::M1,
            &mut pending,
            t0,
            t0 + 8 * MINUTE,
            &rows,
            &RangeSet::new(),
        );
        let unit = &pending[&t0];
        assert_eq!(unit.rows.len(), 3);
        assert_eq!(unit.fetched.ranges(), &[(t0, t0 + 8 * MINUTE)]);
        assert_eq!(
            unit.empty.ranges(),
            &[
                (t0, t0 + MINUTE),
                (t0 + 3 * MINUTE, t0 + 5 * MINUTE),
                (t0 + 6 * MINUTE, t0 + 8 * MINUTE)
            ]
        );
    }
}
