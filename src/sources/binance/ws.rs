//! Binance's combined kline streams over WebSocket: the URL, the connection (rustls), and the
//! kline events, parsed into exact decimals. What to do with them is `extract::stream`'s.
//!
//! Spot streams live at `<ws_url>/stream?streams=btcusdt@kline_1m/...` (market data only:
//! `wss://data-stream.binance.vision`); USD-M futures at `<ws_url>/market/stream?...`
//! (`wss://fstream.binance.com`). Each message is `{"stream": "...", "data": {"e": "kline",
//! "E": event_ms, "s": "BTCUSDT", "k": {...}}}`; `k.x` is true on the candle's final message.

use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;

use crate::datasets::klines::Kline;
use crate::decimal;
use crate::market::{Interval, Market, Symbol};

/// The default WebSocket base of each market.
pub fn default_ws_url(market: Market) -> &'static str {
    match market {
        Market::Spot => "wss://data-stream.binance.vision",
        Market::UsdM => "wss://fstream.binance.com",
    }
}

/// At most this many streams on one connection (Binance's limit).
pub const MAX_STREAMS: usize = 1024;

/// `btcusdt@kline_1m`
pub fn stream_name(symbol: &Symbol, interval: Interval) -> String {
    format!(
        "{}@kline_{}",
        symbol.as_str().to_ascii_lowercase(),
        interval.as_str()
    )
}

/// The combined-stream URL for `streams` on `market` (at most [`MAX_STREAMS`]).
pub fn stream_url(ws_url: &str, market: Market, streams: &[String]) -> String {
    let path = match market {
        Market::Spot => "/stream",
        Market::UsdM => "/market/stream",
    };
    format!(
        "{}{path}?streams={}",
        ws_url.trim_end_matches('/'),
        streams.join("/")
    )
}

/// One kline update from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlineEvent {
    pub symbol: Symbol,
    pub interval: Interval,
    /// The exchange's time when it sent the event (ms).
    pub event_time: i64,
    /// Whether this is the candle's final state.
    pub closed: bool,
    pub kline: Kline,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: Option<Event<'a>>,
    /// Answers to SUBSCRIBE and the like: `{"result": null, "id": 1}`.
    id: Option<serde_json::Value>,
    /// Events sent without the combined-stream envelope.
    #[serde(borrow, rename = "e")]
    bare_kind: Option<&'a str>,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "e")]
    kind: &'a str,
    #[serde(rename = "E")]
    event_time: Option<i64>,
    #[serde(rename = "k")]
    k: Option<RawKline<'a>>,
}

#[derive(Deserialize)]
struct RawKline<'a> {
    t: i64,
    #[serde(rename = "T")]
    close_time: i64,
    s: &'a str,
    i: &'a str,
    o: &'a str,
    c: &'a str,
    h: &'a str,
    l: &'a str,
    v: &'a str,
    n: i64,
    x: bool,
    q: &'a str,
    #[serde(rename = "V")]
    taker_base: &'a str,
    #[serde(rename = "Q")]
    taker_quote: &'a str,
}

/// What a message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Kline(Box<KlineEvent>),
    /// Binance announces a restart: reconnect at once.
    ServerShutdown,
    /// Anything else that is well formed (subscription answers, other events).
    Other,
}

/// Parses one text message. An error says why the message cannot be used (bad JSON, a field
/// missing, a decimal that is not one, an impossible candle); such messages go to the
/// dead-letter file and never stop the stream.
pub fn parse_message(text: &str) -> Result<Message, String> {
    let env: Envelope<'_> =
        serde_json::from_str(text).map_err(|e| format!("not a stream message: {e}"))?;
    if env.bare_kind == Some("serverShutdown") {
        return Ok(Message::ServerShutdown);
    }
    let Some(data) = env.data else {
        return if env.id.is_some() || env.bare_kind.is_some() {
            Ok(Message::Other)
        } else {
            Err("neither an event nor an answer".into())
        };
    };
    match data.kind {
        "kline" => {}
        "serverShutdown" => return Ok(Message::ServerShutdown),
        _ => return Ok(Message::Other),
    }
    let k = data.k.ok_or("a kline event without `k`")?;
    let symbol = Symbol::parse(k.s).map_err(|e| format!("k.s: {e}"))?;
    let interval: Interval = k.i.parse().map_err(|e| format!("k.i: {e}"))?;
    let d = |name: &str, s: &str| decimal::parse(s).map_err(|e| format!("k.{name} {s:?}: {e}"));
    let kline = Kline {
        open_time: k.t,
        open: d("o", k.o)?,
        high: d("h", k.h)?,
        low: d("l", k.l)?,
        close: d("c", k.c)?,
        volume: d("v", k.v)?,
        close_time: k.close_time,
        quote_volume: d("q", k.q)?,
        trades: k.n,
        taker_buy_base_volume: d("V", k.taker_base)?,
        taker_buy_quote_volume: d("Q", k.taker_quote)?,
    };
    check(&kline, interval)?;
    Ok(Message::Kline(Box::new(KlineEvent {
        symbol,
        interval,
        event_time: data.event_time.unwrap_or(kline.close_time),
        closed: k.x,
        kline,
    })))
}

/// A candle's own invariants: its times match its interval, prices are ordered, nothing is
/// negative, takers bought at most the volume.
fn check(k: &Kline, interval: Interval) -> Result<(), String> {
    if interval.floor(k.open_time) != k.open_time
        || interval.close_time(k.open_time) != k.close_time
    {
        return Err(format!(
            "times {}..{} are not a {interval} candle",
            k.open_time, k.close_time
        ));
    }
    if k.low > k.high || k.open > k.high || k.close > k.high || k.open < k.low || k.close < k.low {
        return Err("prices out of order (low, open, close, high)".into());
    }
    if k.low < 0 || k.volume < 0 || k.quote_volume < 0 || k.trades < 0 {
        return Err("a negative price, volume or trade count".into());
    }
    if k.taker_buy_base_volume < 0
        || k.taker_buy_base_volume > k.volume
        || k.taker_buy_quote_volume < 0
        || k.taker_buy_quote_volume > k.quote_volume
    {
        return Err("taker volumes outside the candle's volumes".into());
    }
    Ok(())
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// [`connect`] with an owned URL (a future that can be kept while another socket is read).
pub async fn connect_owned(url: String) -> anyhow::Result<Socket> {
    connect(&url).await
}

/// Opens a WebSocket (`ws://` or `wss://`, rustls with the Mozilla roots).
pub async fn connect(url: &str) -> anyhow::Result<Socket> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls))),
    )
    .await
    .with_context(|| format!("cannot open {}", crate::redact::redact_url(url)))?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOSED: &str = r#"{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1704067260001,"s":"BTCUSDT","k":{"t":1704067200000,"T":1704067259999,"s":"BTCUSDT","i":"1m","f":1,"L":2,"o":"42000.01000000","c":"42001.00000000","h":"42002.50000000","l":"41999.99000000","v":"1.23456789","n":12,"x":true,"q":"51852.12345678","V":"0.50000000","Q":"21000.00000000","B":"0"}}}"#;

    #[test]
    fn parses_a_closed_kline_exactly() {
        let Message::Kline(e) = parse_message(CLOSED).unwrap() else {
            panic!()
        };
        assert!(e.closed);
        assert_eq!(e.symbol.as_str(), "BTCUSDT");
        assert_eq!(e.interval, Interval::M1);
        assert_eq!(e.event_time, 1_704_067_260_001);
        assert_eq!(e.kline.open, 4_200_001_000_000);
        assert_eq!(e.kline.volume, 123_456_789);
        assert_eq!(e.kline.quote_volume, 5_185_212_345_678);
        assert_eq!(e.kline.trades, 12);
    }

    #[test]
    fn bad_messages_say_why() {
        for (text, why) in [
            ("not json", "not a stream message"),
            (
                r#"{"stream":"x","data":{"e":"kline","E":1}}"#,
                "without `k`",
            ),
            (
                &CLOSED.replace("\"o\":\"42000.01000000\"", "\"o\":\"4e4\""),
                "k.o",
            ),
            (
                &CLOSED.replace("\"T\":1704067259999", "\"T\":1704067299999"),
                "not a 1m candle",
            ),
            (
                &CLOSED.replace("\"l\":\"41999.99000000\"", "\"l\":\"42003\""),
                "out of order",
            ),
            (
                &CLOSED.replace("\"V\":\"0.50000000\"", "\"V\":\"9\""),
                "taker volumes",
            ),
            (&CLOSED.replace("\"i\":\"1m\"", "\"i\":\"2m\""), "k.i"),
            ("{}", "neither an event nor an answer"),
        ] {
            let err = parse_message(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert_eq!(
            parse_message(r#"{"result":null,"id":1}"#).unwrap(),
            Message::Other
        );
        assert_eq!(
            parse_message(r#"{"e":"serverShutdown","E":1}"#).unwrap(),
            Message::ServerShutdown
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_message_or_a_reason(s in "\\PC{0,200}") {
            let _ = parse_message(&s);
        }
    }

    #[test]
    fn urls_per_market() {
        let s = vec![
            stream_name(&Symbol::parse("BTCUSDT").unwrap(), Interval::M1),
            "ethusdt@kline_5m".into(),
        ];
        assert_eq!(
            stream_url("wss://data-stream.binance.vision/", Market::Spot, &s),
            "wss://data-stream.binance.vision/stream?streams=btcusdt@kline_1m/ethusdt@kline_5m"
        );
        assert_eq!(
            stream_url("wss://fstream.binance.com", Market::UsdM, &s[..1]),
            "wss://fstream.binance.com/market/stream?streams=btcusdt@kline_1m"
        );
    }
}
