//! `klines stream`: the backfill, kept going. It catches up over REST from the checkpoint,
//! then follows the source's live feed (`sources::live`); closed candles are kept by
//! series and open time (a duplicate or late copy replaces the earlier one, the open candle is
//! never kept) and staged through the same per-series path as a backfill, which takes a span
//! from these candles when they cover it whole and asks REST otherwise. So after a reconnect,
//! a missed event, an outage minute or a silent socket, the gap is filled and checkpointed
//! exactly as a backfill would, under the same rate budget, lock and checkpoint.
//!
//! Each tick (`flush_every`) stages every candle that closed, for each series, up to:
//! - the newest close the stream delivered, and
//! - the exchange's clock less `grace` (so a candle whose close is overdue comes from REST).
//!
//! The exchange's clock is read from `/time` at the start, after every (re)connect and every
//! `resync` while connected; in between it advances with this machine's monotonic clock.
//!
//! An exchange without a live source (Coinbase) is polled: no socket, so every
//! candle comes from REST once the clock says it closed more than `grace` ago, one request
//! per series and closed candle under the client's pacing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context;

use super::live::{ExchangeClock, StreamStats, metric};
use super::series::{self, Prefetched, RunContext};
use super::state::{SeriesLock, StateStore};
use super::{Plan, Summary};
use crate::market::Series;
use crate::sources::{KlineSource, Source};
use crate::stage::Stage;
use crate::stage::sink::Sink;

/// How a stream runs.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// Symbols, intervals, `--from` (where no checkpoint exists), `--until` as `to`.
    pub plan: Plan,
    /// How often closed candles are staged.
    pub flush_every: Duration,
    /// How long past its close a candle may be missing from the stream before REST is asked.
    pub grace: Duration,
    /// How often the exchange's clock is read while the stream is connected.
    pub resync: Duration,
}

/// Runs until `--until` is staged, or until Ctrl-C/SIGTERM (then what is closed is staged and
/// checkpointed before it returns). `locks` are the series' locks, held throughout.
pub async fn stream(
    source: &Source,
    stage: Stage,
    state: StateStore,
    sp: &StreamPlan,
    all: Vec<Series>,
    locks: Vec<SeriesLock>,
    mut sink: Option<&mut dyn Sink>,
) -> anyhow::Result<(Summary, Arc<StreamStats>)> {
    let started = Instant::now();
    let prefetched = Arc::new(Prefetched::default());
    let stats = Arc::new(StreamStats::default());
    let client = &source.rest;
    let clock = Arc::new(ExchangeClock::new(client.server_time().await?, sp.grace));
    let mut tasks = spawn_live(source, &all, &prefetched, &clock, &stats, &stage);

    let totals = Arc::new(series::Totals::default());
    let status = Status::new(&all);
    let mut requests_before = client.stats().requests;
    let mut last_sync = Instant::now();
    let mut ticker = tokio::time::interval(sp.flush_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        if !stopping {
            tokio::select! {
                _ = ticker.tick() => {}
                () = crate::cancel::cancelled() => stopping = true,
            }
        }
        // Read the exchange's clock again after a reconnect (catch up at once) or now and then.
        if clock.stale.swap(false, Ordering::SeqCst) || last_sync.elapsed() >= sp.resync {
            resync(client.as_ref(), &clock, &prefetched, &stats, &stage).await;
            last_sync = Instant::now();
        }
        let exchange_now = clock.now();
        let files_before = totals.files.load(Ordering::Relaxed);
        let rows_before = totals.rows.load(Ordering::Relaxed);
        // Per series staged this tick, the end of what it has staged (its newest close).
        let mut staged_ends: Vec<i64> = Vec::new();
        let mut staged = Vec::new();
        for (i, (s, lock)) in all.iter().zip(&locks).enumerate() {
            let ctx = tick_series(
                source,
                &stage,
                &state,
                sp,
                &prefetched,
                s,
                lock,
                exchange_now,
            )
            .await?;
            staged.append(&mut ctx.totals.staged.lock().unwrap_or_else(|e| e.into_inner()));
            if ctx.totals.files.load(Ordering::Relaxed) > 0
                && let Some(cp) = state.load(s).await?
                && let Some((_, end)) = cp.covered.span()
            {
                staged_ends.push(end);
                status.staged(i, end);
            }
            status.show(i, exchange_now);
            for (sum, part) in [
                (&totals.rows, &ctx.totals.rows),
                (&totals.files, &ctx.totals.files),
                (&totals.bytes, &ctx.totals.bytes),
            ] {
                sum.fetch_add(part.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        let requests = client.stats().requests;
        metrics::counter!(metric::GAP_REQUESTS).increment(requests - requests_before);
        requests_before = requests;
        if totals.files.load(Ordering::Relaxed) > files_before {
            let (rows, files) = (
                totals.rows.load(Ordering::Relaxed) - rows_before,
                totals.files.load(Ordering::Relaxed) - files_before,
            );
            metrics::counter!(metric::ROWS).increment(rows);
            metrics::counter!(metric::FILES).increment(files);
            if let Some(sink) = sink.as_deref_mut()
                && let Err(e) = sink.flushed(&std::mem::take(&mut staged)).await
            {
                metrics::counter!(metric::ERRORS).increment(1);
                return Err(e);
            }
            report_flush(clock.now(), exchange_now, rows, files, &staged_ends);
        }
        if stopping {
            break;
        }
        if let Some(until) = sp.plan.to
            && exchange_now >= until
            && until_staged(&state, &all, &sp.plan, until).await?
        {
            break;
        }
    }
    tasks.abort_all();
    for lock in locks {
        lock.release().await;
    }
    let summary = summary(client.as_ref(), &sp.plan, &all, &totals, started);
    if stopping {
        anyhow::bail!(crate::cancel::Interrupted);
    }
    Ok((summary, stats))
}

/// Reads the exchange's clock again and judges the suspects by it; on a failure the clock
/// stays stale, to be read next tick (the suspects wait for it).
/// The live source's connections, and the task that takes their events; an exchange without
/// a live source is polled.
fn spawn_live(
    source: &Source,
    all: &[Series],
    prefetched: &Arc<Prefetched>,
    clock: &Arc<ExchangeClock>,
    stats: &Arc<StreamStats>,
    stage: &Stage,
) -> tokio::task::JoinSet<()> {
    let (events, received) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(super::live::consume(
        received,
        Arc::clone(prefetched),
        Arc::clone(clock),
        Arc::clone(stats),
        stage.clone(),
    ));
    match &source.live {
        Some(live) => {
            let (live, all) = (Arc::clone(live), all.to_vec());
            tasks.spawn(async move { live.follow(all, events).await });
        }
        None => {
            tracing::info!(exchange = %source.rest.capabilities().exchange, "no live source for this exchange: polling closed candles over REST");
            drop(events);
        }
    }
    tasks
}

async fn resync(
    client: &dyn KlineSource,
    clock: &ExchangeClock,
    prefetched: &Prefetched,
    stats: &StreamStats,
    stage: &Stage,
) {
    match client.server_time().await {
        Ok(t) => {
            clock.set(t);
            super::live::judge_suspects(clock, prefetched, stats, stage).await;
        }
        Err(_) => clock.stale.store(true, Ordering::SeqCst),
    }
}

/// One tick of one series: everything closed up to the newest close the stream delivered,
/// or what the clock says closed more than `grace` ago (the stream missed it, or the socket
/// is down), staged as a backfill stages it. Returns the run's context, with its totals.
#[allow(clippy::too_many_arguments)]
async fn tick_series(
    source: &Source,
    stage: &Stage,
    state: &StateStore,
    sp: &StreamPlan,
    prefetched: &Arc<Prefetched>,
    s: &Series,
    lock: &SeriesLock,
    exchange_now: i64,
) -> anyhow::Result<RunContext> {
    let delivered = prefetched
        .newest(s)
        .map(|t| s.interval.close_time(t) + 1)
        .unwrap_or(i64::MIN);
    let overdue = exchange_now - sp.grace.as_millis() as i64;
    let server_time = delivered.max(overdue);
    let ctx = RunContext {
        client: Arc::clone(&source.rest),
        history: Arc::clone(&source.history),
        stage: stage.clone(),
        state: state.clone(),
        server_time,
        from: sp.plan.from,
        to: sp.plan.to.unwrap_or(i64::MAX).min(server_time),
        full_refresh: false,
        spans_in_flight: sp.plan.spans_in_flight,
        totals: series::Totals::default(),
        prefetched: Some(Arc::clone(prefetched)),
        live: true,
    };
    series::run(&ctx, s, lock)
        .await
        .with_context(|| s.to_string())?;
    Ok(ctx)
}

/// A flush's metrics and log line: from each series' newest staged close to now (staged,
/// and loaded and built), one histogram sample per series; the log line the slowest series.
fn report_flush(now: i64, exchange_now: i64, rows: u64, files: u64, staged_ends: &[i64]) {
    for end in staged_ends {
        metrics::histogram!(metric::LATENCY).record((now - end).max(0) as f64 / 1000.0);
    }
    let latency_ms = staged_ends.iter().min().map(|end| (now - end).max(0));
    tracing::info!(
        rows,
        files,
        series = staged_ends.len(),
        latency_ms = latency_ms.unwrap_or(0),
        exchange_time = %crate::time::format_ms(exchange_now),
        "flushed"
    );
}

/// Per series: the lag gauge, and on a terminal a status line (last close, lag).
struct Status {
    labels: Vec<(String, String)>,
    staged_until: std::sync::Mutex<Vec<Option<i64>>>,
    bars: Vec<Option<indicatif::ProgressBar>>,
}

impl Status {
    fn new(all: &[Series]) -> Status {
        let bars = all
            .iter()
            .map(|s| {
                crate::progress::bars().map(|m| {
                    let bar = m.add(indicatif::ProgressBar::new_spinner());
                    bar.set_prefix(s.to_string());
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{prefix:>22} {msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    bar
                })
            })
            .collect();
        Status {
            labels: all
                .iter()
                .map(|s| (s.symbol.to_string(), s.interval.to_string()))
                .collect(),
            staged_until: std::sync::Mutex::new(vec![None; all.len()]),
            bars,
        }
    }

    fn staged(&self, i: usize, end: i64) {
        self.staged_until.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(end);
    }

    fn show(&self, i: usize, exchange_now: i64) {
        let Some(end) = self.staged_until.lock().unwrap_or_else(|e| e.into_inner())[i] else {
            return;
        };
        let lag = (exchange_now - end).max(0);
        let (symbol, interval) = &self.labels[i];
        metrics::gauge!(metric::LAG, "symbol" => symbol.clone(), "interval" => interval.clone())
            .set(lag as f64 / 1000.0);
        if let Some(bar) = &self.bars[i] {
            bar.set_message(format!(
                "last close {}, lag {:.1}s",
                crate::time::format_ms(end - 1),
                lag as f64 / 1000.0
            ));
        }
    }
}

/// Whether every series' checkpoint covers `[from, until)` (as far as candles are closed).
async fn until_staged(
    state: &StateStore,
    all: &[Series],
    plan: &Plan,
    until: i64,
) -> anyhow::Result<bool> {
    for s in all {
        let (start, end) = series::target_range(s.interval, plan.from, until, until);
        let Some(cp) = state.load(s).await? else {
            return Ok(false);
        };
        if start < end && !cp.covered.covers(start, end) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn summary(
    client: &dyn KlineSource,
    plan: &Plan,
    all: &[Series],
    totals: &series::Totals,
    started: Instant,
) -> Summary {
    let stats = client.stats();
    Summary {
        symbols: plan.symbols.len(),
        series: all.len(),
        rows: totals.rows.load(Ordering::Relaxed),
        files: totals.files.load(Ordering::Relaxed),
        bytes: totals.bytes.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        requests: stats.requests,
        retries: stats.retries,
        weight: stats.weight,
        rate_limited: stats.rate_limited,
        ..Summary::default()
    }
}

/// The series of a plan, in order.
pub fn all_series(client: &dyn crate::sources::KlineSource, plan: &Plan) -> Vec<Series> {
    let caps = client.capabilities();
    plan.symbols
        .iter()
        .flat_map(|s| {
            plan.intervals.iter().map(move |&i| Series {
                exchange: caps.exchange,
                market: caps.market,
                symbol: s.clone(),
                interval: i,
            })
        })
        .collect()
}

/// Marks a series map for logs.
pub fn describe(all: &[Series]) -> String {
    let mut by: HashMap<String, Vec<&str>> = HashMap::new();
    for s in all {
        by.entry(s.symbol.to_string())
            .or_default()
            .push(s.interval.as_str());
    }
    let mut parts: Vec<String> = by
        .into_iter()
        .map(|(k, v)| format!("{k} {}", v.join(",")))
        .collect();
    parts.sort();
    parts.join("; ")
}
