//! Binance's combined kline streams (`/stream?streams=...`, USD-M at `/market/stream`), over a
//! real WebSocket: every candle that closes on the exchange's clock is sent once with `x: true`
//! (outage minutes send nothing, as on Binance), the open candle is sent with `x: false` every
//! 2 s of exchange time, and queued [`WsFault`]s replace the next closed events. The server
//! pings every second and drops a client whose pong is 3 s late, or that sends more than 5
//! messages in a second (Binance's limits, on real time).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, Query, State};
use axum::response::{IntoResponse, Response};
use klines::datasets::klines::Kline;
use klines::decimal;
use klines::market::Interval;

use super::Shared;

/// What happens instead of the next closed candle's event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsFault {
    /// The event is not sent (a missed event: only REST can fill it).
    Skip,
    /// The event is sent twice.
    Duplicate,
    /// This text is sent first, then the event.
    Before(String),
    /// The connection is dropped instead (the client reconnects and catches up).
    Drop,
    /// `serverShutdown` is sent (with the event), and the connection closes a second later,
    /// as Binance closes it some time after the announcement.
    Shutdown,
    /// The event is held back and sent after the next closed event (late, out of order).
    Late,
    /// Nothing more is sent on this connection for this long (real time); it stays open.
    Silent(Duration),
}

struct Stream {
    name: String,
    symbol: String,
    interval: Interval,
    /// The open time of the next candle whose close is to be sent.
    next: i64,
}

pub async fn combined(
    upgrade: WebSocketUpgrade,
    State(shared): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let futures = uri.path().starts_with("/market");
    let now = shared.config.lock().unwrap().clock.now();
    let mut streams = Vec::new();
    for name in q
        .get("streams")
        .map(String::as_str)
        .unwrap_or("")
        .split('/')
    {
        let Some((sym, iv)) = name.split_once("@kline_") else {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                format!("bad stream {name:?}"),
            )
                .into_response();
        };
        let Ok(interval) = iv.parse::<Interval>() else {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                format!("bad interval {iv:?}"),
            )
                .into_response();
        };
        streams.push(Stream {
            name: name.to_string(),
            symbol: sym.to_ascii_uppercase(),
            interval,
            next: interval.floor(now),
        });
    }
    upgrade.on_upgrade(move |socket| serve(socket, shared, streams, futures))
}

fn event(stream: &Stream, k: &Kline, closed: bool, now: i64) -> String {
    let d = decimal::format;
    format!(
        concat!(
            r#"{{"stream":"{}","data":{{"e":"kline","E":{},"s":"{}","k":{{"t":{},"T":{},"s":"{}","i":"{}","f":0,"L":0,"#,
            r#""o":"{}","c":"{}","h":"{}","l":"{}","v":"{}","n":{},"x":{},"q":"{}","V":"{}","Q":"{}","B":"0"}}}}}}"#
        ),
        stream.name,
        now,
        stream.symbol,
        k.open_time,
        k.close_time,
        stream.symbol,
        stream.interval.as_str(),
        d(k.open),
        d(k.close),
        d(k.high),
        d(k.low),
        d(k.volume),
        k.trades,
        closed,
        d(k.quote_volume),
        d(k.taker_buy_base_volume),
        d(k.taker_buy_quote_volume),
    )
}

async fn send(socket: &mut WebSocket, shared: &Shared, text: String) -> bool {
    shared.stats.lock().unwrap().ws_messages += 1;
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn serve(
    mut socket: WebSocket,
    shared: Arc<Shared>,
    mut streams: Vec<Stream>,
    futures: bool,
) {
    let mut last_update = shared.config.lock().unwrap().clock.now();
    {
        let mut stats = shared.stats.lock().unwrap();
        stats.ws_connections += 1;
        stats.ws_first_connected.get_or_insert(last_update);
    }
    let mut closing_at: Option<Instant> = None;
    let mut silent_until: Option<Instant> = None;
    let mut held: Vec<String> = Vec::new();
    let mut pinged: Option<Instant> = None;
    let mut last_ping = Instant::now();
    let mut incoming: Vec<Instant> = Vec::new();
    loop {
        // Whatever the client sent: pongs clear the ping; more than 5 a second is too many.
        while let Ok(Some(frame)) =
            tokio::time::timeout(Duration::from_millis(20), socket.recv()).await
        {
            let Ok(frame) = frame else { return };
            incoming.push(Instant::now());
            incoming.retain(|t| t.elapsed() < Duration::from_secs(1));
            if incoming.len() > 5 {
                shared.stats.lock().unwrap().ws_dropped += 1;
                return;
            }
            match frame {
                Message::Pong(_) => pinged = None,
                Message::Close(_) => return,
                _ => {}
            }
        }
        if pinged.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
            shared.stats.lock().unwrap().ws_dropped += 1;
            return;
        }
        if last_ping.elapsed() >= Duration::from_secs(1) {
            last_ping = Instant::now();
            if pinged.is_none() {
                pinged = Some(Instant::now());
            }
            if socket
                .send(Message::Ping(b"klines".to_vec().into()))
                .await
                .is_err()
            {
                return;
            }
        }
        if closing_at.is_some_and(|t| Instant::now() >= t) {
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        if silent_until.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        let (now, market) = {
            let c = shared.config.lock().unwrap();
            (c.clock.now(), c.market_for(futures).clone())
        };
        for i in 0..streams.len() {
            let s = &streams[i];
            let open = s.interval.floor(now);
            let mut t = s.next;
            while t < open {
                let candle = market
                    .klines(&s.symbol, s.interval, t, t + 1, now, 1)
                    .into_iter()
                    .find(|k| k.open_time == t);
                t = s.interval.next(t);
                let Some(k) = candle else { continue };
                let text = event(s, &k, true, now);
                let fault = shared.ws_faults.lock().unwrap().pop_front();
                let late = std::mem::take(&mut held);
                let ok = match fault {
                    None => send(&mut socket, &shared, text).await,
                    Some(WsFault::Late) => {
                        held.push(text);
                        true
                    }
                    Some(WsFault::Silent(d)) => {
                        silent_until = Some(Instant::now() + d);
                        held.push(text);
                        true
                    }
                    Some(WsFault::Skip) => true,
                    Some(WsFault::Duplicate) => {
                        send(&mut socket, &shared, text.clone()).await
                            && send(&mut socket, &shared, text).await
                    }
                    Some(WsFault::Before(raw)) => {
                        send(&mut socket, &shared, raw).await
                            && send(&mut socket, &shared, text).await
                    }
                    Some(WsFault::Drop) => false,
                    Some(WsFault::Shutdown) => {
                        closing_at = Some(Instant::now() + Duration::from_secs(1));
                        send(
                            &mut socket,
                            &shared,
                            format!(r#"{{"e":"serverShutdown","E":{now}}}"#),
                        )
                        .await
                            && send(&mut socket, &shared, text).await
                    }
                };
                if !ok {
                    return;
                }
                for text in late {
                    if !send(&mut socket, &shared, text).await {
                        return;
                    }
                }
                if silent_until.is_some() {
                    break;
                }
            }
            streams[i].next = t;
        }
        if now - last_update >= 2_000 {
            last_update = now;
            for s in &streams {
                let open = s.interval.floor(now);
                if let Some(k) = market
                    .klines(&s.symbol, s.interval, open, open + 1, now, 1)
                    .into_iter()
                    .find(|k| k.open_time == open)
                    && !send(&mut socket, &shared, event(s, &k, false, now)).await
                {
                    return;
                }
            }
        }
    }
}
