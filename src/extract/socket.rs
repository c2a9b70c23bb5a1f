//! The WebSocket side of `klines stream`: one task per connection that reads kline events,
//! keeps closed candles for the stage, writes unusable messages as dead letters, answers
//! pings, replaces a silent socket, and on `serverShutdown` (or near Binance's 24-hour limit)
//! opens the new socket before dropping the old one, so nothing is missed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};

use super::series::Prefetched;
use super::stream::{ExchangeClock, StreamStats, Suspect, metric};
use crate::sources::binance::ws::{self, Message};
use crate::stage::Stage;
use crate::market::Series;

/// How a socket's reading ended.
enum Ended {
    /// Failed, closed or fell silent: reconnect (and catch up over REST).
    Lost,
    /// `serverShutdown`, or the socket is near Binance's 24-hour limit: the new socket was
    /// opened while the old one was still read, so nothing was missed.
    Rotated(Box<ws::Socket>),
}

/// Binance closes a connection after 24 hours; it is replaced a little before.
const MAX_AGE: Duration = Duration::from_secs(23 * 3600);

/// Once the replacement is open, the old socket is still read this long (or until it closes):
/// an event it sent before the new one was subscribed is in its buffer, not the new one's.
const OVERLAP: Duration = Duration::from_secs(3);

/// One connection's life: connect (backing off with jitter after a failure), read events until
/// the socket is lost (then again) or must be replaced (then the new one first).
pub(super) async fn follow(url: String, reader: Reader) {
    let mut socket = connect_until_open(&url).await;
    let (stats, clock) = (Arc::clone(&reader.stats), Arc::clone(&reader.clock));
    loop {
        clock.stale.store(true, Ordering::SeqCst);
        match reader.read(socket, &url).await {
            Ended::Rotated(new) => {
                stats.rotations.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(metric::ROTATIONS).increment(1);
                socket = *new;
            }
            Ended::Lost => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(metric::RECONNECTS).increment(1);
                tokio::time::sleep(backoff(1)).await;
                socket = connect_until_open(&url).await;
                tracing::info!("stream connected again; catching up over REST");
            }
        }
    }
}

async fn connect_until_open(url: &str) -> ws::Socket {
    let mut failures = 0u32;
    loop {
        match ws::connect(url).await {
            Ok(s) => return s,
            Err(e) => {
                failures += 1;
                let wait = backoff(failures);
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "stream connection failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// What one connection reads into.
pub(super) struct Reader {
    pub market: crate::market::Market,
    /// The series this connection asked for: an event of another is not trusted.
    pub subscribed: std::collections::HashSet<Series>,
    pub prefetched: Arc<Prefetched>,
    pub stats: Arc<StreamStats>,
    pub clock: Arc<ExchangeClock>,
    pub stage: Stage,
    /// A socket silent this long is replaced.
    pub silence: Duration,
}

impl Reader {
    async fn read(&self, socket: ws::Socket, url: &str) -> Ended {
        use tokio_tungstenite::tungstenite::Message as Frame;
        let opened = Instant::now();
        let (mut tx, mut rx) = socket.split();
        // The replacement being opened while this socket is still read.
        let mut next: Option<std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<ws::Socket>> + Send>>> = None;
        // The replacement, open, and until when this socket is still read.
        let mut replacement: Option<(ws::Socket, Instant)> = None;
        loop {
            if next.is_none() && replacement.is_none() && opened.elapsed() >= MAX_AGE {
                tracing::info!("the socket nears Binance's 24-hour limit; opening its replacement");
                next = Some(Box::pin(ws::connect_owned(url.to_string())));
            }
            let wait = match &replacement {
                Some((_, until)) if Instant::now() >= *until => {
                    let (new, _) = replacement.take().expect("matched");
                    return Ended::Rotated(Box::new(new));
                }
                Some((_, until)) => until.saturating_duration_since(Instant::now()),
                None => self.silence,
            };
            let frame = tokio::select! {
                opened_new = async { next.as_mut().expect("checked").await }, if next.is_some() => {
                    match opened_new {
                        Ok(s) => {
                            next = None;
                            replacement = Some((s, Instant::now() + OVERLAP));
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "could not open the replacement socket; trying again");
                            next = Some(Box::pin(ws::connect_owned(url.to_string())));
                            continue;
                        }
                    }
                }
                r = tokio::time::timeout(wait, rx.next()) => r,
            };
            // The old socket closed, failed or was read long enough: on to the new one.
            let old_ended = !matches!(frame, Ok(Some(Ok(ref f))) if !f.is_close());
            if let Some((new, _)) = replacement.take_if(|_| old_ended) {
                return Ended::Rotated(Box::new(new));
            }
            let msg = match frame {
                Err(_) => {
                    tracing::warn!(silent_secs = self.silence.as_secs(), "the stream fell silent; replacing the socket");
                    return Ended::Lost;
                }
                Ok(None) | Ok(Some(Ok(Frame::Close(_)))) => {
                    // Closed after a serverShutdown: wait for the replacement already opening.
                    if let Some(n) = next.take() {
                        return match n.await {
                            Ok(s) => Ended::Rotated(Box::new(s)),
                            Err(_) => Ended::Lost,
                        };
                    }
                    return Ended::Lost;
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "the stream failed");
                    return Ended::Lost;
                }
                Ok(Some(Ok(m))) => m,
            };
            let text = match msg {
                Frame::Text(t) => t.to_string(),
                Frame::Ping(payload) => {
                    let _ = tx.send(Frame::Pong(payload)).await;
                    continue;
                }
                _ => continue,
            };
            self.stats.events.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(metric::EVENTS).increment(1);
            match ws::parse_message(&text) {
                Ok(Message::Kline(e)) => {
                    // An event time past the clock moves nothing; the clock is read again.
                    if self.clock.believable(e.event_time) {
                        self.clock.seen.fetch_max(e.event_time, Ordering::Relaxed);
                    } else {
                        self.clock.stale.store(true, Ordering::SeqCst);
                    }
                    let series = Series {
                        exchange: crate::market::Exchange::Binance,
                        market: self.market,
                        symbol: e.symbol.clone(),
                        interval: e.interval,
                    };
                    if !self.subscribed.contains(&series) {
                        self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(metric::DEAD_LETTERS).increment(1);
                        let reason = format!("an event of {series}, which this connection did not subscribe to");
                        dead_letter(&self.stage, &text, &reason).await;
                    } else if e.closed && self.clock.believable(e.kline.close_time) {
                        self.stats.closed.fetch_add(1, Ordering::Relaxed);
                        self.prefetched.insert(series, e.kline);
                    } else if e.closed {
                        // Closing after the exchange's clock: judged once it is read again.
                        self.stats.closed.fetch_add(1, Ordering::Relaxed);
                        self.clock.suspect(Suspect {
                            series,
                            kline: e.kline,
                            raw: text,
                        });
                    }
                }
                Ok(Message::ServerShutdown) => {
                    if next.is_none() && replacement.is_none() {
                        tracing::info!("the exchange announced a restart; opening the new socket before the old one closes");
                        next = Some(Box::pin(ws::connect_owned(url.to_string())));
                    }
                }
                Ok(Message::Other) => {}
                Err(reason) => {
                    self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(metric::DEAD_LETTERS).increment(1);
                    dead_letter(&self.stage, &text, &reason).await;
                }
            }
        }
    }
}

/// 0.25 s doubling to 30 s, with full jitter.
fn backoff(failures: u32) -> Duration {
    let cap = (250u64 << failures.min(7)).min(30_000);
    Duration::from_millis(fastrand::u64(cap / 2..=cap))
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

