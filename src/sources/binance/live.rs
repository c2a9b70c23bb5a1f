//! Binance's live source: its combined kline streams, one task per connection (up to 1024
//! streams each), which reads kline events and tells the stream what happened
//! ([`LiveEvent`]): closed candles, event times, unusable messages; it answers pings,
//! replaces a silent socket, and on `serverShutdown` (or near Binance's 24-hour limit) opens
//! the new socket before dropping the old one, so nothing is missed.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};

use super::ws::{self, Message};
use crate::market::{Exchange, Market, Series};
use crate::sources::live::{Live, LiveEvent, LiveSender};

/// Binance's kline streams for one market.
pub struct BinanceLive {
    /// The WebSocket base (`wss://data-stream.binance.vision`).
    pub ws_url: String,
    pub market: Market,
    /// A socket silent this long is replaced.
    pub silence: Duration,
}

#[async_trait]
impl Live for BinanceLive {
    async fn follow(&self, series: Vec<Series>, events: LiveSender) {
        let mut sockets = tokio::task::JoinSet::new();
        for chunk in series.chunks(ws::MAX_STREAMS) {
            let names: Vec<String> = chunk
                .iter()
                .map(|s| ws::stream_name(&s.symbol, s.interval))
                .collect();
            let url = ws::stream_url(&self.ws_url, self.market, &names);
            sockets.spawn(follow(
                url,
                Reader {
                    market: self.market,
                    subscribed: chunk.iter().cloned().collect(),
                    events: events.clone(),
                    silence: self.silence,
                },
            ));
        }
        while sockets.join_next().await.is_some() {}
    }
}

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
async fn follow(url: String, reader: Reader) {
    let mut socket = connect_until_open(&url).await;
    loop {
        reader.tell(LiveEvent::Opened);
        match reader.read(socket, &url).await {
            Ended::Rotated(new) => {
                reader.tell(LiveEvent::Rotated);
                socket = *new;
            }
            Ended::Lost => {
                reader.tell(LiveEvent::Lost);
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
struct Reader {
    market: Market,
    /// The series this connection asked for: an event of another is not trusted.
    subscribed: HashSet<Series>,
    events: LiveSender,
    /// A socket silent this long is replaced.
    silence: Duration,
}

impl Reader {
    /// Tells the stream (which may have stopped listening: then nothing is left to do).
    fn tell(&self, event: LiveEvent) {
        let _ = self.events.send(event);
    }

    async fn read(&self, socket: ws::Socket, url: &str) -> Ended {
        use tokio_tungstenite::tungstenite::Message as Frame;
        let opened = Instant::now();
        let (mut tx, mut rx) = socket.split();
        // The replacement being opened while this socket is still read.
        let mut next: Option<
            std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<ws::Socket>> + Send>>,
        > = None;
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
                    tracing::warn!(
                        silent_secs = self.silence.as_secs(),
                        "the stream fell silent; replacing the socket"
                    );
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
            self.tell(LiveEvent::Received);
            match ws::parse_message(&text) {
                Ok(Message::Kline(e)) => {
                    self.tell(LiveEvent::Seen(e.event_time));
                    let series = Series {
                        exchange: Exchange::BINANCE,
                        market: self.market,
                        symbol: e.symbol.clone(),
                        interval: e.interval,
                    };
                    if !self.subscribed.contains(&series) {
                        let reason = format!(
                            "an event of {series}, which this connection did not subscribe to"
                        );
                        self.tell(LiveEvent::DeadLetter { raw: text, reason });
                    } else if e.closed {
                        self.tell(LiveEvent::Closed {
                            series,
                            kline: e.kline,
                            raw: text,
                        });
                    }
                }
                Ok(Message::ServerShutdown) => {
                    if next.is_none() && replacement.is_none() {
                        tracing::info!(
                            "the exchange announced a restart; opening the new socket before the old one closes"
                        );
                        next = Some(Box::pin(ws::connect_owned(url.to_string())));
                    }
                }
                Ok(Message::Other) => {}
                Err(reason) => self.tell(LiveEvent::DeadLetter { raw: text, reason }),
            }
        }
    }
}

/// 0.25 s doubling to 30 s, with full jitter.
fn backoff(failures: u32) -> Duration {
    let cap = (250u64 << failures.min(7)).min(30_000);
    Duration::from_millis(fastrand::u64(cap / 2..=cap))
}
