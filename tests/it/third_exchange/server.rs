//! The third exchange's test server: a few symbols whose 1m candles are made from a
//! deterministic tape of trades (open, high, low, close and volume of each minute's trades;
//! no candle for a minute without trades), served over real HTTP up to its fixed clock.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;

pub const SYMBOLS: [&str; 2] = ["AAA-USD", "BBB-USD"];
/// Candles per request, at most.
pub const PAGE: i64 = 500;
const MINUTE: i64 = 60_000;

/// One trade: price and quantity in units of 10^-8.
#[derive(Debug, Clone, Copy)]
struct Trade {
    price: i128,
    qty: i128,
}

/// The trades of `symbol` in the minute opening at `open_ms`: none in every 17th minute.
fn trades(symbol: &str, open_ms: i64) -> Vec<Trade> {
    let m = open_ms / MINUTE;
    if m % 17 == 0 {
        return Vec::new();
    }
    let seed = symbol.bytes().map(i64::from).sum::<i64>();
    let n = 1 + (m + seed) % 5;
    (0..n)
        .map(|i| {
            let step = (m * 31 + i * 7 + seed) % 400 - 200;
            Trade {
                // 25000.00 +- 2.00, to the cent; quantities to 10^-8.
                price: (2_500_000 + i128::from(step)) * 1_000_000,
                qty: i128::from(1 + (m * 13 + i * 3 + seed) % 997) * 123_457,
            }
        })
        .collect()
}

/// A candle: open time and its OHLCV in units of 10^-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candle {
    pub open_time: i64,
    pub open: i128,
    pub high: i128,
    pub low: i128,
    pub close: i128,
    pub volume: i128,
}

/// The 1m candle of `symbol` opening at `open_ms`, made from its trades.
pub fn candle(symbol: &str, open_ms: i64) -> Option<Candle> {
    let t = trades(symbol, open_ms);
    Some(Candle {
        open_time: open_ms,
        open: t.first()?.price,
        high: t.iter().map(|x| x.price).max()?,
        low: t.iter().map(|x| x.price).min()?,
        close: t.last()?.price,
        volume: t.iter().map(|x| x.qty).sum(),
    })
}

/// Every closed candle of `symbol` opening in `[from, to)` at clock `now`.
pub fn closed(symbol: &str, from: i64, to: i64, now: i64) -> Vec<Candle> {
    let end = to.min(now / MINUTE * MINUTE);
    (from..end)
        .step_by(MINUTE as usize)
        .filter_map(|t| candle(symbol, t))
        .collect()
}

fn text(v: i128) -> String {
    format!("{}.{:08}", v / 100_000_000, v % 100_000_000)
}

async fn time(State(now): State<i64>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "time": now }))
}

async fn symbols() -> Json<Vec<&'static str>> {
    Json(SYMBOLS.to_vec())
}

/// `GET /candles?symbol=&start=&end=`: closed 1m candles opening in `[start, end)`, as
/// `[open_time, "open", "high", "low", "close", "volume"]`, at most [`PAGE`] minutes a request.
async fn candles(
    State(now): State<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<serde_json::Value>>, (StatusCode, String)> {
    let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string());
    let symbol = q.get("symbol").ok_or_else(|| bad("symbol"))?;
    if !SYMBOLS.contains(&symbol.as_str()) {
        return Err((StatusCode::NOT_FOUND, format!("unknown symbol {symbol}")));
    }
    let num = |k: &str| {
        q.get(k)
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| bad(k))
    };
    let (start, end) = (num("start")?, num("end")?);
    if end <= start || end - start > PAGE * MINUTE || start % MINUTE != 0 {
        return Err(bad("start and end: whole minutes, at most 500 of them"));
    }
    let rows = closed(symbol, start, end, now)
        .into_iter()
        .map(|c| {
            serde_json::json!([
                c.open_time,
                text(c.open),
                text(c.high),
                text(c.low),
                text(c.close),
                text(c.volume)
            ])
        })
        .collect();
    Ok(Json(rows))
}

/// Serves at a fixed clock `now` on a port of its own; returns the base URL.
pub async fn start(now: i64) -> String {
    let app = axum::Router::new()
        .route("/time", get(time))
        .route("/symbols", get(symbols))
        .route("/candles", get(candles))
        .with_state(now);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}
