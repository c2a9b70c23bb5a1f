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

use super::checkpoint::{ArchiveFile, Checkpoint};
use super::state::{SeriesLock, StateStore};
use crate::datasets::klines::{Kline, KlineBatch};
use crate::market::{Interval, Series};
use crate::progress::Task;
use crate::ranges::RangeSet;
use crate::sources::KlineSource;
use crate::sources::history::{Fetched, History, Span};
use crate::stage::layout;
use crate::stage::manifest::{self, ManifestEntry};
use crate::stage::{Stage, parquet};

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

/// Closed candles by series and open time, waiting to be staged.
#[derive(Debug, Default)]
pub struct Prefetched(std::sync::Mutex<std::collections::HashMap<Series, BTreeMap<i64, Kline>>>);

impl Prefetched {
    /// Keeps a closed candle (a later copy of the same candle replaces the earlier one).
    pub fn insert(&self, series: Series, k: Kline) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(series).or_default().insert(k.open_time, k);
    }

    /// The newest open time held for `series`.
    pub fn newest(&self, series: &Series) -> Option<i64> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(series)?.keys().next_back().copied()
    }

    /// Every candle of `[s, e)`, if all are here (an outage minute or a missed event means
    /// the span is asked of REST, which also confirms what the exchange never produced).
    /// Candles before `e` are dropped either way: they are staged now.
    fn take_span(&self, series: &Series, s: i64, e: i64) -> Option<KlineBatch> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let rows = map.get_mut(series)?;
        let mut out = KlineBatch::default();
        let mut t = s;
        let mut whole = true;
        while t < e {
            match rows.get(&t) {
                Some(k) => out.push(k),
                None => {
                    whole = false;
                    break;
                }
            }
            t = series.interval.next(t);
        }
        let later = rows.split_off(&e);
        *rows = later;
        whole.then_some(out)
    }
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

pub async fn run(ctx: &RunContext, series: &Series, lock: &SeriesLock) -> anyhow::Result<()> {
    let interval = series.interval;
    let mut cp = if ctx.full_refresh {
        ctx.state.reset(series, lock).await?;
        Checkpoint::new(series)
    } else {
        ctx.state
            .load(series)
            .await?
            .unwrap_or_else(|| Checkpoint::new(series))
    };
    // Coverage past the exchange's clock cannot be true (a checkpoint from another exchange
    // or clock, or edited): it would skip ranges silently, so it is dropped, with a warning.
    let closed_until = interval.floor(ctx.server_time);
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
    let (start, end) = target_range(interval, ctx.from, ctx.to, ctx.server_time);
    if start < end && !cp.archives.is_empty() {
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
            ctx.state.save(&cp, lock).await?;
        }
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
    let listed = listed_from.unwrap_or(end);

    let mut pending: BTreeMap<i64, UnitBuf> = BTreeMap::new();
    let mut listed_missing = Vec::new();
    for &(s, e) in &missing {
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

/// Checkpoints go to disk at most once a second (and at the end): each is an fsync, and a
/// crash only means redoing that second's files, which are written again byte for byte.
struct Saver {
    last: std::time::Instant,
    dirty: bool,
    /// Live runs: partial files (data key, manifest key) a newer file of their unit replaced,
    /// deleted once a saved checkpoint no longer names them.
    superseded: Vec<(String, String)>,
}

impl Saver {
    async fn save(&mut self, ctx: &RunContext, cp: &Checkpoint, lock: &SeriesLock) -> anyhow::Result<()> {
        ctx.state.save(cp, lock).await?;
        crate::failpoint::hit("backfill.after_checkpoint");
        self.last = std::time::Instant::now();
        self.dirty = false;
        // The manifest entry first: a loader that lists it next finds the newer file instead.
        for (data, entry) in self.superseded.drain(..) {
            for key in [&entry, &data] {
                ctx.stage
                    .delete(key)
                    .await
                    .with_context(|| format!("cannot delete superseded {key}"))?;
            }
        }
        Ok(())
    }
}

/// A live run's pieces of one open unit before they are merged into one file.
const MAX_PIECES: usize = 60;

const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[allow(clippy::too_many_arguments)]
async fn fetch_and_write(
    ctx: &RunContext,
    series: &Series,
    lock: &SeriesLock,
    cp: &mut Checkpoint,
    saver: &mut Saver,
    mut pending: BTreeMap<i64, UnitBuf>,
    spans: Vec<Span>,
    task: &Task,
) -> anyhow::Result<()> {
    let interval = series.interval;
    let span_starts: Vec<i64> = spans.iter().map(|s| s.start).collect();
    let mut fetched = futures::stream::iter(spans.into_iter().map(|span| async move {
        let (s, e) = (span.start, span.end);
        if span.file.is_none()
            && let Some(rows) = ctx.prefetched.as_ref().and_then(|p| p.take_span(series, s, e))
        {
            return Ok((s, e, Fetched { rows, ..Default::default() }));
        }
        ctx.history.fetch(series, span).await.map(|f| (s, e, f))
    }))
    .buffered(ctx.spans_in_flight.max(1));
    // Archive files whose ranges are not yet in the checkpoint.
    let mut files: Vec<(String, ArchiveFile)> = Vec::new();

    let mut index = 0;
    loop {
        // Interrupted: what is staged stays, and the checkpoint records it (see `run`).
        let next = tokio::select! {
            r = fetched.try_next() => r?,
            () = crate::cancel::cancelled() => anyhow::bail!(crate::cancel::Interrupted),
        };
        let Some((s, e, got)) = next else { break };
        index += 1;
        files.extend(got.files);
        let lacking = got.lacking;
        let (cut_at, rows) = closed_only(series, s, e, got.rows, ctx.server_time);
        let cut = cut_at < e;
        let e = cut_at;
        ctx.totals
            .rows
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        route(interval, &mut pending, s, e, &rows, &lacking);
        task.advance((e - s) as u64, &layout_time(e));
        let next = if cut {
            e
        } else {
            span_starts.get(index).copied().unwrap_or(i64::MAX)
        };
        while let Some(entry) = pending.first_entry() {
            if entry.get().end > next {
                break;
            }
            let (unit_start, unit) = entry.remove_entry();
            write_unit(ctx, series, lock, cp, saver, unit_start, unit).await?;
            record_files(cp, &mut files);
        }
        if cut {
            break;
        }
    }
    drop(fetched);
    while let Some((unit_start, unit)) = pending.pop_first() {
        write_unit(ctx, series, lock, cp, saver, unit_start, unit).await?;
    }
    record_files(cp, &mut files);
    Ok(())
}

/// Moves the archive files whose whole range the checkpoint now covers into it.
fn record_files(cp: &mut Checkpoint, files: &mut Vec<(String, ArchiveFile)>) {
    files.retain(|(name, f)| {
        if cp.covered.covers(f.start, f.end) {
            cp.archives.insert(name.clone(), f.clone());
            false
        } else {
            true
        }
    });
}

fn layout_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// Keeps the rows of a span that are closed at `server_time`. Binance has no "closed" flag:
/// a candle is closed when its close time is before the server's clock. If a row is still
/// open, the span's coverage stops at its open time.
fn closed_only(
    series: &Series,
    s: i64,
    e: i64,
    mut rows: KlineBatch,
    server_time: i64,
) -> (i64, KlineBatch) {
    match rows.close_time.iter().position(|&c| c >= server_time) {
        None => (e, rows),
        Some(i) => {
            let open = rows.open_time[i];
            tracing::warn!(series = %series, open_time = open, "the exchange returned an unclosed candle; not staging it");
            rows.truncate(i);
            (open.max(s), rows)
        }
    }
}

/// Files the rows of span `[s, e)` under their units, and notes the gaps in the span as
/// confirmed empty, except where the span's source had nothing to say (`lacking`).
fn route(
    interval: Interval,
    pending: &mut BTreeMap<i64, UnitBuf>,
    s: i64,
    e: i64,
    rows: &KlineBatch,
    lacking: &RangeSet,
) {
    let mut empty = RangeSet::new();
    let mut cursor = s;
    for &t in &rows.open_time {
        if t > cursor {
            empty.insert(cursor, t);
        }
        cursor = interval.next(t);
    }
    if cursor < e {
        empty.insert(cursor, e);
    }
    for &(ls, le) in lacking.ranges() {
        empty.remove(ls, le);
    }
    let mut t = s;
    while t < e {
        let (us, ue) = layout::unit_of(interval, t);
        let part_end = e.min(ue);
        if let Some(unit) = pending.get_mut(&us) {
            let r = rows.range_of(t, part_end);
            unit.rows.extend_from(rows, r);
            for (fs, fe) in lacking.missing(t, part_end) {
                unit.fetched.insert(fs, fe);
            }
            unit.empty.union(&empty.within(t, part_end));
        }
        t = part_end;
    }
}

async fn write_unit(
    ctx: &RunContext,
    series: &Series,
    lock: &SeriesLock,
    cp: &mut Checkpoint,
    saver: &mut Saver,
    unit_start: i64,
    unit: UnitBuf,
) -> anyhow::Result<()> {
    let unit_range = (unit_start, unit.end);
    let before = cp.covered.within(unit_start, unit.end);
    let mut covered = before.clone();
    covered.union(&unit.fetched);
    let complete = covered.covers(unit_start, unit.end);
    // A live run adds its new candles as a piece of their own (a fresh append for the loader)
    // while the unit is open and its pieces are few; the pieces are merged every MAX_PIECES
    // flushes and when the unit closes.
    let earlier_keys = cp.partial.get(&unit_start).cloned().unwrap_or_default();
    let piece = match (unit.fetched.ranges(), before.span()) {
        ([(s, _)], last) => {
            ctx.live
                && !complete
                && earlier_keys.len() < MAX_PIECES
                && last.is_none_or(|(_, e)| e == *s)
        }
        _ => false,
    };
    // Rows staged earlier for this unit, in the files of its partial coverage.
    let mut earlier = Vec::new();
    let mut earlier_files = Vec::new();
    for key in earlier_keys.iter().filter(|_| !piece) {
        let bytes = ctx
            .stage
            .get(key)
            .await
            .with_context(|| format!("cannot read back {key} from {}", ctx.stage.url()))?;
        earlier_files.push((
            key.clone(),
            layout::manifest_key(key, &manifest::sha256_hex(&bytes)),
        ));
        let decoded = parquet::decode(key, bytes)?;
        earlier.push(decoded.klines);
    }
    let mut batches: Vec<&KlineBatch> = earlier.iter().collect();
    batches.push(&unit.rows);
    let rows = if batches.len() == 1 {
        unit.rows.clone()
    } else {
        KlineBatch::merge(&batches)
    };
    let mut written = None;
    if !rows.is_empty() {
        let (start, end) = if complete {
            unit_range
        } else if piece {
            unit.fetched.span().unwrap_or(unit_range)
        } else {
            covered.span().unwrap_or(unit_range)
        };
        let key = layout::data_key(series, unit_range, start, end);
        let encoded = {
            let series = series.clone();
            tokio::task::spawn_blocking(move || {
                let n = rows.len();
                parquet::encode(&series, rows).map(|b| (b, n))
            })
            .await
            .context("Parquet encoder panicked")??
        };
        let (bytes, n) = encoded;
        let entry = ManifestEntry::new(series, key.clone(), (start, end), complete, n, &bytes);
        let size = entry.bytes;
        lock.check()?;
        ctx.stage
            .put(&key, bytes)
            .await
            .with_context(|| format!("cannot stage {key} to {}", ctx.stage.url()))?;
        crate::failpoint::hit("backfill.after_data_put");
        manifest::write(&ctx.stage, &entry).await?;
        crate::failpoint::hit("backfill.after_manifest");
        if ctx.live {
            ctx.totals
                .staged
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((entry.clone(), crate::time::now_ms()));
        }
        ctx.totals.files.fetch_add(1, Ordering::Relaxed);
        ctx.totals.bytes.fetch_add(size, Ordering::Relaxed);
        tracing::debug!(series = %series, file = %key, rows = n, bytes = size, "staged");
        written = Some(key);
    }
    lock.check()?;
    cp.covered.union(&unit.fetched);
    cp.empty.union(&unit.empty);
    if ctx.live && written.is_some() {
        // Bounded files per series and day: each flush of a live run rewrites the day's
        // partial file with all its rows, so the earlier one goes once the checkpoint moved on.
        saver.superseded.extend(
            earlier_files
                .into_iter()
                .filter(|(data, _)| Some(data) != written.as_ref()),
        );
    }
    if complete {
        cp.partial.remove(&unit_start);
    } else if let Some(key) = written {
        if piece {
            cp.partial.entry(unit_start).or_default().push(key);
        } else {
            cp.partial.insert(unit_start, vec![key]);
        }
    }
    saver.dirty = true;
    if saver.last.elapsed() >= SAVE_EVERY {
        saver.save(ctx, cp, lock).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
        route(Interval::M1, &mut pending, t0, t0 + 8 * MINUTE, &rows, &RangeSet::new());
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
