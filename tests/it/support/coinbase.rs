//! A Coinbase Exchange-compatible test server over real HTTP on loopback: `/time`,
//! `/products/{id}` and `/products/{id}/candles` (granularities 60 to 86400 s, at most 300
//! buckets a request, newest first, JSON numbers, no candle for a minute without trades), a
//! requests-per-second limit answered with 429, on a fixed clock. Coarse candles are Coinbase's
//! own: aggregated from the trades, which here are the minutes' candles.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use klines::datasets::klines::Kline;

use super::exchange::data::mix;

const MINUTE: i64 = 60_000;
const UNIT: i128 = 100_000_000;

/// A product: its name, first minute and price level (units of 1e-8).
#[derive(Debug, Clone)]
pub struct Product {
    pub id: &'static str,
    pub listed_from: i64,
    pub base: i128,
    pub status: &'static str,
}

pub fn products() -> Vec<Product> {
    vec![
        Product {
            id: "BTC-USD",
            listed_from: 1_700_000_040_000 / MINUTE * MINUTE,
            base: 42_000 * UNIT,
            status: "online",
        },
        Product {
            id: "ETH-USD",
            listed_from: 1_704_100_000_000 / MINUTE * MINUTE,
            base: 2_300 * UNIT + 25_000_000,
            status: "online",
        },
        Product {
            id: "OLD-USD",
            listed_from: 1_600_000_020_000 / MINUTE * MINUTE,
            base: UNIT / 1000,
            status: "delisted",
        },
    ]
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    })
}

/// The product's candle for the minute opening at `t`: `None` when nothing traded.
pub fn minute(p: &Product, t: i64) -> Option<Kline> {
    if t < p.listed_from || t.rem_euclid(MINUTE) != 0 {
        return None;
    }
    let h = mix(hash(p.id), t as u64);
    if h.is_multiple_of(4) {
        return None; // no trade in this minute: Coinbase publishes nothing
    }
    let tick = p.base / 100_000; // 1e-5 of the price
    let walk = (mix(hash(p.id), (t / 3_600_000) as u64) % 200) as i128 - 100;
    let open = p.base + walk * tick * 10 + (h % 50) as i128 * tick;
    let close = open + ((h >> 8) % 21) as i128 * tick - 10 * tick;
    let high = open.max(close) + ((h >> 16) % 5) as i128 * tick;
    let low = open.min(close) - ((h >> 24) % 5) as i128 * tick;
    // Some volumes are tiny, so the JSON carries exponents (1.5e-05).
    let volume = if h.is_multiple_of(7) {
        ((h >> 32) % 900 + 1) as i128 * 10
    } else {
        ((h >> 32) % 5_000_000_000) as i128 + 1
    };
    Some(Kline {
        open_time: t,
        open,
        high,
        low,
        close,
        volume,
        close_time: t + MINUTE - 1,
        quote_volume: 0,
        trades: 0,
        taker_buy_base_volume: 0,
        taker_buy_quote_volume: 0,
    })
}

/// Coinbase's candle of `g_ms` opening at `b`: the aggregate of its traded minutes, or none.
pub fn candle(p: &Product, b: i64, g_ms: i64) -> Option<Kline> {
    let minutes: Vec<Kline> = (0..g_ms / MINUTE)
        .filter_map(|i| minute(p, b + i * MINUTE))
        .collect();
    let first = minutes.first()?;
    Some(Kline {
        open_time: b,
        open: first.open,
        high: minutes.iter().map(|k| k.high).max()?,
        low: minutes.iter().map(|k| k.low).min()?,
        close: minutes.last()?.close,
        volume: minutes.iter().map(|k| k.volume).sum(),
        close_time: b + g_ms - 1,
        quote_volume: 0,
        trades: 0,
        taker_buy_base_volume: 0,
        taker_buy_quote_volume: 0,
    })
}

/// A decimal as a JSON number: trimmed, and in exponent form when small (as Python's json
/// writes floats below 1e-4).
fn number(v: i128) -> String {
    let text = klines::decimal::format_trimmed(v);
    if v != 0 && v.abs() < 10_000 {
        // 0.0000xyz -> x.yze-05
        let digits = v.abs().to_string();
        let exp = digits.len() as i32 - 9;
        let mantissa = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], digits[1..].trim_end_matches('0'))
        } else {
            digits.clone()
        };
        let mantissa = mantissa.trim_end_matches('.').to_string();
        return format!(
            "{}{mantissa}e{}{:02}",
            if v < 0 { "-" } else { "" },
            if exp < 0 { "-" } else { "+" },
            exp.abs()
        );
    }
    text
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub requests: u64,
    pub candle_requests: u64,
    pub too_many: u64,
    /// (granularity, start) of each candles request.
    pub candle_starts: Vec<(i64, i64)>,
}

struct Shared {
    /// The clock: exchange time `start` at `at`, running `speed` times faster (0: stopped).
    now: Mutex<(i64, Instant, u32)>,
    per_second: Mutex<u32>,
    recent: Mutex<VecDeque<Instant>>,
    stats: Mutex<Stats>,
    /// Bodies answered to the next candles requests instead of the candles (bad answers).
    answers: Mutex<VecDeque<String>>,
}

/// A running Coinbase test server; dropping it stops the server.
pub struct TestCoinbase {
    pub url: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestCoinbase {
    pub fn start(now: i64) -> TestCoinbase {
        Self::start_scaled(now, 0)
    }

    /// With a clock that runs `speed` times faster than real time from `now`.
    pub fn start_scaled(now: i64, speed: u32) -> TestCoinbase {
        let shared = Arc::new(Shared {
            now: Mutex::new((now, Instant::now(), speed)),
            per_second: Mutex::new(10),
            recent: Mutex::new(VecDeque::new()),
            stats: Mutex::new(Stats::default()),
            answers: Mutex::new(VecDeque::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/time", get(time))
            .route("/products/{id}", get(product))
            .route("/products/{id}/candles", get(candles))
            .with_state(Arc::clone(&shared));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        TestCoinbase {
            url: format!("http://{addr}"),
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Requests a second before the server answers 429.
    pub fn set_limit(&self, per_second: u32) {
        *self.shared.per_second.lock().unwrap() = per_second;
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().unwrap().clone()
    }

    /// The next candles request is answered with this body (200), whatever it asked.
    pub fn answer_next(&self, body: &str) {
        self.shared
            .answers
            .lock()
            .unwrap()
            .push_back(body.to_string());
    }

    pub fn now(&self) -> i64 {
        self.shared.now()
    }

    /// The product's candles of `g_ms` opening in `[start, end)` and closed at the clock.
    pub fn closed(&self, id: &str, g_ms: i64, start: i64, end: i64) -> Vec<Kline> {
        let p = products().into_iter().find(|p| p.id == id).unwrap();
        let now = self.now();
        let mut b = start.div_euclid(g_ms) * g_ms;
        let mut out = Vec::new();
        while b < end {
            if b >= start && b + g_ms <= now {
                out.extend(candle(&p, b, g_ms));
            }
            b += g_ms;
        }
        out
    }
}

impl Drop for TestCoinbase {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn now(&self) -> i64 {
        let (start, at, speed) = *self.now.lock().unwrap();
        start + at.elapsed().as_millis() as i64 * speed as i64
    }
}

fn json(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn message(status: StatusCode, msg: &str) -> Response {
    json(status, format!("{{\"message\":\"{msg}\"}}"))
}

/// Counts the request; `Some(429)` past the per-second limit.
fn admit(s: &Shared) -> Option<Response> {
    let limit = *s.per_second.lock().unwrap() as usize;
    let mut recent = s.recent.lock().unwrap();
    let now = Instant::now();
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t).as_secs_f64() >= 1.0)
    {
        recent.pop_front();
    }
    let mut stats = s.stats.lock().unwrap();
    stats.requests += 1;
    if recent.len() >= limit {
        stats.too_many += 1;
        return Some(message(
            StatusCode::TOO_MANY_REQUESTS,
            "Public rate limit exceeded",
        ));
    }
    recent.push_back(now);
    None
}

async fn time(State(s): State<Arc<Shared>>) -> Response {
    if let Some(r) = admit(&s) {
        return r;
    }
    let now = s.now();
    json(
        StatusCode::OK,
        format!(
            "{{\"iso\":\"{}\",\"epoch\":{}.{:03}}}",
            klines::time::format_ms(now),
            now.div_euclid(1000),
            now.rem_euclid(1000)
        ),
    )
}

async fn product(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if let Some(r) = admit(&s) {
        return r;
    }
    match products().into_iter().find(|p| p.id == id) {
        None => message(StatusCode::NOT_FOUND, "NotFound"),
        Some(p) => json(
            StatusCode::OK,
            format!(
                "{{\"id\":\"{}\",\"status\":\"{}\",\"trading_disabled\":false}}",
                p.id, p.status
            ),
        ),
    }
}

fn parse_iso(v: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|t| t.timestamp_millis())
}

async fn candles(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = admit(&s) {
        return r;
    }
    let Some(p) = products().into_iter().find(|p| p.id == id) else {
        return message(StatusCode::NOT_FOUND, "NotFound");
    };
    let g: i64 = match q.get("granularity").and_then(|g| g.parse().ok()) {
        Some(g) if [60, 300, 900, 3600, 21_600, 86_400].contains(&g) => g,
        _ => return message(StatusCode::BAD_REQUEST, "Unsupported granularity"),
    };
    let g_ms = g * 1000;
    let (Some(start), Some(end)) = (
        q.get("start").and_then(|v| parse_iso(v)),
        q.get("end").and_then(|v| parse_iso(v)),
    ) else {
        return message(StatusCode::BAD_REQUEST, "start and end are required");
    };
    if end < start || (end - start) / g_ms + 1 > 300 {
        return message(
            StatusCode::BAD_REQUEST,
            "granularity too small for the requested time range. Count of aggregations requested exceeds 300",
        );
    }
    {
        let mut st = s.stats.lock().unwrap();
        st.candle_requests += 1;
        st.candle_starts.push((g, start));
    }
    if let Some(body) = s.answers.lock().unwrap().pop_front() {
        return json(StatusCode::OK, body);
    }
    let now = s.now();
    // Bucket starts in [start, end], newest first, up to the one forming now.
    let mut rows = Vec::new();
    let mut b = (end.min(now)).div_euclid(g_ms) * g_ms;
    while b >= start.div_euclid(g_ms) * g_ms && b >= start {
        if let Some(k) = candle(
            &p,
            b,
            g_ms.min(now - b + MINUTE - 1).max(MINUTE) / MINUTE * MINUTE,
        ) {
            rows.push(format!(
                "[{},{},{},{},{},{}]",
                b / 1000,
                number(k.low),
                number(k.high),
                number(k.open),
                number(k.close),
                number(k.volume)
            ));
        }
        b -= g_ms;
    }
    json(StatusCode::OK, format!("[{}]", rows.join(",")))
}
