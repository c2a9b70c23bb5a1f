//! `klines stream`: the backfill, kept going. It catches up over REST from the checkpoint,
//! then follows Binance's combined kline streams; closed candles (`x: true`) are kept by
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
//! An exchange without a WebSocket klines follows (Coinbase) is polled: no socket, so every
//! candle comes from REST once the clock says it closed more than `grace` ago, one request
//! per series and closed candle under the client's pacing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::series::{self, Prefetched, RunContext};
use super::state::{SeriesLock, StateStore};
use super::{Plan, Summary};
use crate::market::Exchange;
use crate::sources::KlineSource;
use crate::sources::binance::ws;
use crate::stage::Stage;
use crate::market::Series;

/// How a stream runs.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// Symbols, intervals, `--from` (where no checkpoint exists), `--until` as `to`.
    pub plan: Plan,
    /// The WebSocket base (`wss://data-stream.binance.vision`).
    pub ws_url: String,
    /// How often closed candles are staged.
    pub flush_every: Duration,
    /// How long past its close a candle may be missing from the stream before REST is asked.
    pub grace: Duration,
    /// A socket silent this long is replaced.
    pub silence: Duration,
    /// How often the exchange's clock is read while the stream is connected.
    pub resync: Duration,
}

/// The Prometheus metrics a stream keeps (served by `--metrics ADDR`).
pub mod metric {
    pub const LAG: &str = "klines_stream_lag_seconds";
    pub const LATENCY: &str = "klines_stream_latency_seconds";
    pub const ROWS: &str = "klines_stream_rows_total";
    pub const FILES: &str = "klines_stream_files_total";
    pub const EVENTS: &str = "klines_stream_events_total";
    pub const RECONNECTS: &str = "klines_stream_reconnects_total";
    pub const ROTATIONS: &str = "klines_stream_rotations_total";
    pub const GAP_REQUESTS: &str = "klines_stream_rest_requests_total";
    pub const DEAD_LETTERS: &str = "klines_stream_dead_letters_total";
    pub const ERRORS: &str = "klines_stream_errors_total";

    /// Describes them once, for the exporter's HELP lines.
    pub fn describe() {
        metrics::describe_gauge!(LAG, "Exchange time since the newest staged candle closed, per series");
        metrics::describe_histogram!(LATENCY, "From a candle's close on the exchange to the end of the flush that staged (and loaded, and built) it");
        metrics::describe_counter!(ROWS, "Closed candles staged");
        metrics::describe_counter!(FILES, "Files staged");
        metrics::describe_counter!(EVENTS, "WebSocket messages received");
        metrics::describe_counter!(RECONNECTS, "Sockets lost and opened again");
        metrics::describe_counter!(ROTATIONS, "Sockets replaced before they closed (serverShutdown, 24 hours)");
        metrics::describe_counter!(GAP_REQUESTS, "REST requests the stream made (catch-up and gaps)");
        metrics::describe_counter!(DEAD_LETTERS, "Messages kept as dead letters");
        metrics::describe_counter!(ERRORS, "Flushes whose load or build failed");
        // Counters show from the start, at zero, so a dashboard has every series at once.
        for c in [ROWS, FILES, EVENTS, RECONNECTS, ROTATIONS, GAP_REQUESTS, DEAD_LETTERS, ERRORS] {
            metrics::counter!(c).absolute(0);
        }
    }
}

/// Called after every tick that staged files, with the run's totals so far and the manifest
/// entries this tick wrote (oldest first, with when).
#[async_trait::async_trait(?Send)]
pub trait Sink {
    async fn flushed(
        &mut self,
        totals: &Summary,
        staged: Vec<(crate::stage::manifest::ManifestEntry, i64)>,
    ) -> anyhow::Result<()>;
}

/// Counters of a stream, for logs, the summary and metrics.
#[derive(Debug, Default)]
pub struct StreamStats {
    pub events: AtomicU64,
    pub closed: AtomicU64,
    pub dead_letters: AtomicU64,
    pub reconnects: AtomicU64,
    /// Sockets replaced before they closed (serverShutdown, the 24-hour limit).
    pub rotations: AtomicU64,
}

/// The exchange's clock: the last reading of `/time` plus the time elapsed since here.
///
/// What the stream says is believed only up to that clock plus the grace: a closed candle
/// whose close is later, or an event time past it, may be a bogus or hostile frame. Such a
/// candle waits as a *suspect* until the clock has been read again; then it is believed, or
/// kept as a dead letter. It never moves a series' "delivered up to" mark before that.
pub(super) struct ExchangeClock {
    read: std::sync::Mutex<(i64, Instant)>,
    /// The newest believable event time the stream delivered: the exchange's clock was at
    /// least there.
    pub(super) seen: std::sync::atomic::AtomicI64,
    /// Set by the socket task after a (re)connect, or when it holds a suspect: read the clock
    /// now.
    pub(super) stale: AtomicBool,
    /// How far past the clock's reading a time the stream claims may be.
    tolerance_ms: i64,
    suspects: std::sync::Mutex<Vec<Suspect>>,
}

/// A closed candle that claimed to close after the exchange's clock, with its message.
pub(super) struct Suspect {
    pub series: Series,
    pub kline: crate::datasets::klines::Kline,
    pub raw: String,
}

impl ExchangeClock {
    fn new(ms: i64, tolerance: Duration) -> ExchangeClock {
        ExchangeClock {
            read: std::sync::Mutex::new((ms, Instant::now())),
            seen: std::sync::atomic::AtomicI64::new(i64::MIN),
            stale: AtomicBool::new(false),
            tolerance_ms: i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX),
            suspects: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The last reading advanced by this machine's monotonic clock, events aside.
    fn reading(&self) -> i64 {
        let (ms, at) = *self.read.lock().unwrap_or_else(|e| e.into_inner());
        ms + at.elapsed().as_millis() as i64
    }

    fn now(&self) -> i64 {
        self.reading().max(self.seen.load(Ordering::Relaxed))
    }

    fn set(&self, ms: i64) {
        *self.read.lock().unwrap_or_else(|e| e.into_inner()) = (ms, Instant::now());
    }

    /// Whether a time the stream claims can have passed on the exchange: before the clock's
    /// reading plus the grace.
    pub(super) fn believable(&self, ms: i64) -> bool {
        ms < self.reading().saturating_add(self.tolerance_ms)
    }

    /// Holds a closed candle that claims to close after the clock until it is read again.
    pub(super) fn suspect(&self, s: Suspect) {
        self.suspects.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        self.stale.store(true, Ordering::SeqCst);
    }

    /// After a fresh reading: the suspects now believable, and the rest, which are not.
    fn judge(&self) -> (Vec<Suspect>, Vec<Suspect>) {
        let all = std::mem::take(&mut *self.suspects.lock().unwrap_or_else(|e| e.into_inner()));
        all.into_iter()
            .partition(|s| self.believable(s.kline.close_time))
    }
}

/// Runs until `--until` is staged, or until Ctrl-C/SIGTERM (then what is closed is staged and
/// checkpointed before it returns). `locks` are the series' locks, held throughout.
pub async fn stream(
    client: Arc<dyn KlineSource>,
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
    let clock = Arc::new(ExchangeClock::new(client.server_time().await?, sp.grace));
    let streams: Vec<String> = all
        .iter()
        .map(|s| ws::stream_name(&s.symbol, s.interval))
        .collect();
    let mut sockets = tokio::task::JoinSet::new();
    let caps = client.capabilities();
    // Binance's kline streams; other exchanges are polled (no sockets at all).
    let chunks = if caps.exchange == Exchange::Binance {
        streams.chunks(ws::MAX_STREAMS).zip(all.chunks(ws::MAX_STREAMS)).collect()
    } else {
        tracing::info!(exchange = %caps.exchange, "no kline stream for this exchange: polling closed candles over REST");
        Vec::new()
    };
    for (chunk, series) in chunks {
        let url = ws::stream_url(&sp.ws_url, caps.market, chunk);
        sockets.spawn(super::socket::follow(
            url,
            super::socket::Reader {
                market: caps.market,
                subscribed: series.iter().cloned().collect(),
                prefetched: Arc::clone(&prefetched),
                stats: Arc::clone(&stats),
                clock: Arc::clone(&clock),
                stage: stage.clone(),
                silence: sp.silence,
            },
        ));
    }

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
            match client.server_time().await {
                Ok(t) => {
                    clock.set(t);
                    let (believed, bogus) = clock.judge();
                    for s in believed {
                        prefetched.insert(s.series, s.kline);
                    }
                    for s in bogus {
                        stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(metric::DEAD_LETTERS).increment(1);
                        let reason = format!(
                            "a closed candle of {} closing at {}, after the exchange's clock ({}) plus the grace",
                            s.series,
                            crate::time::format_ms(s.kline.close_time),
                            crate::time::format_ms(clock.now())
                        );
                        super::socket::dead_letter(&stage, &s.raw, &reason).await;
                    }
                }
                // Read again next tick: the suspects wait for it.
                Err(_) => clock.stale.store(true, Ordering::SeqCst),
            }
            last_sync = Instant::now();
        }
        let exchange_now = clock.now();
        let files_before = totals.files.load(Ordering::Relaxed);
        let rows_before = totals.rows.load(Ordering::Relaxed);
        // Per series staged this tick, the end of what it has staged (its newest close).
        let mut staged_ends: Vec<i64> = Vec::new();
        let mut staged = Vec::new();
        for (i, (s, lock)) in all.iter().zip(&locks).enumerate() {
            // Up to the newest close the stream delivered, or what the clock says closed more
            // than `grace` ago (the stream missed it, or the socket is down).
            let delivered = prefetched
                .newest(s)
                .map(|t| s.interval.close_time(t) + 1)
                .unwrap_or(i64::MIN);
            let overdue = exchange_now - sp.grace.as_millis() as i64;
            let server_time = delivered.max(overdue);
            let ctx = RunContext {
                client: Arc::clone(&client),
                archive: None,
                source: super::archive::HistorySource::Rest,
                stage: stage.clone(),
                state: state.clone(),
                server_time,
                from: sp.plan.from,
                to: sp.plan.to.unwrap_or(i64::MAX).min(server_time),
                full_refresh: false,
                spans_in_flight: sp.plan.spans_in_flight,
                totals: series::Totals::default(),
                prefetched: Some(Arc::clone(&prefetched)),
                live: true,
            };
            series::run(&ctx, s, lock)
                .await
                .with_context(|| s.to_string())?;
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
        let summary = summary(client.as_ref(), &sp.plan, &all, &totals, started);
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
                && let Err(e) = sink.flushed(&summary, std::mem::take(&mut staged)).await
            {
                metrics::counter!(metric::ERRORS).increment(1);
                return Err(e);
            }
            // From each series' newest staged close to now: staged, and loaded and built. The
            // histogram takes one sample per series; the log line the slowest series.
            let now = clock.now();
            for end in &staged_ends {
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
    sockets.abort_all();
    for lock in locks {
        lock.release().await;
    }
    let summary = summary(client.as_ref(), &sp.plan, &all, &totals, started);
    if stopping {
        anyhow::bail!(crate::cancel::Interrupted);
    }
    Ok((summary, stats))
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
        by.entry(s.symbol.to_string()).or_default().push(s.interval.as_str());
    }
    let mut parts: Vec<String> = by
        .into_iter()
        .map(|(k, v)| format!("{k} {}", v.join(",")))
        .collect();
    parts.sort();
    parts.join("; ")
}
