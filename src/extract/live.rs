//! The stream's side of a live source: what its events mean. Closed candles are believed only
//! up to the exchange's clock plus the grace (`ExchangeClock`); the rest wait as suspects for
//! the clock's next reading. Unusable messages are kept as dead letters in the stage; the
//! connections' comings and goings are counted and make the clock be read again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;

use super::series::Prefetched;
use crate::market::Series;
use crate::sources::live::LiveEvent;
use crate::stage::Stage;

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
        metrics::describe_gauge!(
            LAG,
            "Exchange time since the newest staged candle closed, per series"
        );
        metrics::describe_histogram!(
            LATENCY,
            "From a candle's close on the exchange to the end of the flush that staged (and loaded, and built) it"
        );
        metrics::describe_counter!(ROWS, "Closed candles staged");
        metrics::describe_counter!(FILES, "Files staged");
        metrics::describe_counter!(EVENTS, "WebSocket messages received");
        metrics::describe_counter!(RECONNECTS, "Sockets lost and opened again");
        metrics::describe_counter!(
            ROTATIONS,
            "Sockets replaced before they closed (serverShutdown, 24 hours)"
        );
        metrics::describe_counter!(
            GAP_REQUESTS,
            "REST requests the stream made (catch-up and gaps)"
        );
        metrics::describe_counter!(DEAD_LETTERS, "Messages kept as dead letters");
        metrics::describe_counter!(ERRORS, "Flushes whose load or build failed");
        // Counters show from the start, at zero, so a dashboard has every series at once.
        for c in [
            ROWS,
            FILES,
            EVENTS,
            RECONNECTS,
            ROTATIONS,
            GAP_REQUESTS,
            DEAD_LETTERS,
            ERRORS,
        ] {
            metrics::counter!(c).absolute(0);
        }
    }
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
pub struct ExchangeClock {
    read: std::sync::Mutex<(i64, Instant)>,
    /// The newest believable event time the stream delivered: the exchange's clock was at
    /// least there.
    pub(super) seen: AtomicI64,
    /// Set after a (re)connect, or when a suspect waits: read the clock now.
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
    pub(super) fn new(ms: i64, tolerance: Duration) -> ExchangeClock {
        ExchangeClock {
            read: std::sync::Mutex::new((ms, Instant::now())),
            seen: AtomicI64::new(i64::MIN),
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

    pub(super) fn now(&self) -> i64 {
        self.reading().max(self.seen.load(Ordering::Relaxed))
    }

    pub(super) fn set(&self, ms: i64) {
        *self.read.lock().unwrap_or_else(|e| e.into_inner()) = (ms, Instant::now());
    }

    /// Whether a time the stream claims can have passed on the exchange: before the clock's
    /// reading plus the grace.
    pub(super) fn believable(&self, ms: i64) -> bool {
        ms < self.reading().saturating_add(self.tolerance_ms)
    }

    /// Holds a closed candle that claims to close after the clock until it is read again.
    pub(super) fn suspect(&self, s: Suspect) {
        self.suspects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
        self.stale.store(true, Ordering::SeqCst);
    }

    /// After a fresh reading: the suspects now believable, and the rest, which are not.
    pub(super) fn judge(&self) -> (Vec<Suspect>, Vec<Suspect>) {
        let all = std::mem::take(&mut *self.suspects.lock().unwrap_or_else(|e| e.into_inner()));
        all.into_iter()
            .partition(|s| self.believable(s.kline.close_time))
    }
}

/// Takes a live source's events until it stops: counts them, moves the clock, keeps closed
/// candles for the stage (or as suspects), and writes dead letters.
pub(super) async fn consume(
    mut events: tokio::sync::mpsc::UnboundedReceiver<LiveEvent>,
    prefetched: Arc<Prefetched>,
    clock: Arc<ExchangeClock>,
    stats: Arc<StreamStats>,
    stage: Stage,
) {
    while let Some(event) = events.recv().await {
        match event {
            LiveEvent::Received => {
                stats.events.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(metric::EVENTS).increment(1);
            }
            // An event time past the clock moves nothing; the clock is read again.
            LiveEvent::Seen(t) if clock.believable(t) => {
                clock.seen.fetch_max(t, Ordering::Relaxed);
            }
            LiveEvent::Seen(_) | LiveEvent::Opened => clock.stale.store(true, Ordering::SeqCst),
            LiveEvent::Closed { series, kline, raw } => {
                stats.closed.fetch_add(1, Ordering::Relaxed);
                if clock.believable(kline.close_time) {
                    prefetched.insert(series, kline);
                } else {
                    // Closing after the exchange's clock: judged once it is read again.
                    clock.suspect(Suspect { series, kline, raw });
                }
            }
            LiveEvent::DeadLetter { raw, reason } => {
                stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(metric::DEAD_LETTERS).increment(1);
                dead_letter(&stage, &raw, &reason).await;
            }
            LiveEvent::Lost => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(metric::RECONNECTS).increment(1);
            }
            LiveEvent::Rotated => {
                stats.rotations.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(metric::ROTATIONS).increment(1);
            }
        }
    }
}

/// Judges the suspects after a fresh reading of the clock: the believable ones go to the
/// stage, the others are dead letters.
pub(super) async fn judge_suspects(
    clock: &ExchangeClock,
    prefetched: &Prefetched,
    stats: &StreamStats,
    stage: &Stage,
) {
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
        dead_letter(stage, &s.raw, &reason).await;
    }
}

/// Keeps a message the stream could not use, with why, under `_dead_letters/<UTC date>/` in
/// the stage. Never fails the stream: a write that fails is logged.
pub(super) async fn dead_letter(stage: &Stage, raw: &str, reason: &str) {
    let now = chrono::Utc::now();
    let key = format!(
        "_dead_letters/{}/{}-{}.json",
        now.format("%Y-%m-%d"),
        now.format("%H%M%S%.3f"),
        uuid::Uuid::new_v4().simple()
    );
    let body = serde_json::json!({
        "received_at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "reason": reason,
        "raw": raw,
    });
    tracing::warn!(reason, file = %key, "a stream message could not be used; kept as a dead letter");
    if let Err(e) = stage.put(&key, Bytes::from(body.to_string())).await {
        tracing::error!(error = %e, file = %key, "cannot write the dead letter");
    }
}
