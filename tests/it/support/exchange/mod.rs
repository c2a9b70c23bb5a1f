//! A Binance-compatible test exchange over real HTTP on loopback.
//!
//! It serves `/api/v3/{time,exchangeInfo,klines}` (spot) and `/fapi/v1/...` (USD-M) from
//! [`data::Market`], counts request weight in fixed windows as Binance does (headers
//! `X-MBX-USED-WEIGHT-<n><unit>`, 429 with `Retry-After` past the limit, 418 bans for clients
//! that go on), runs on a controllable clock (the candle containing "now" is served unclosed),
//! and injects faults on klines requests: 5xx, dropped connections, truncated or malformed
//! JSON, latency, forced 429/418.
//!
//! It runs on its own thread and runtime, so tests can block on child processes.

pub mod archive;
pub mod data;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use klines::market::Interval;

pub use archive::ArchiveConfig;
pub use data::Market;
pub use ws::WsFault;

mod ws;

/// The exchange's clock.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Always this time.
    Fixed(i64),
    /// Starts at `start` and runs with real time.
    Running { start: i64, at: Instant },
    /// Starts at `start` and runs `speed` times faster than real time: an hour of exchange
    /// time in seconds.
    Scaled { start: i64, at: Instant, speed: u32 },
}

impl Clock {
    pub fn running_from(start: i64) -> Clock {
        Clock::Running {
            start,
            at: Instant::now(),
        }
    }

    pub fn scaled(start: i64, speed: u32) -> Clock {
        Clock::Scaled {
            start,
            at: Instant::now(),
            speed,
        }
    }

    pub fn now(&self) -> i64 {
        match *self {
            Clock::Fixed(t) => t,
            Clock::Running { start, at } => start + at.elapsed().as_millis() as i64,
            Clock::Scaled { start, at, speed } => {
                start + at.elapsed().as_millis() as i64 * speed as i64
            }
        }
    }
}

/// A fault for one klines request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// No fault: answer normally (to place faults later in a sequence).
    Pass,
    /// Answer with this HTTP status.
    Status(u16),
    /// Send part of the body, then drop the connection.
    Drop,
    /// A 200 whose JSON body is cut in half.
    Truncate,
    /// A 200 whose body is not JSON.
    Malformed,
    /// Answer normally after a delay.
    Delay(Duration),
    /// A 429 with this Retry-After (seconds).
    TooMany(u64),
    /// A 418 with this Retry-After (seconds).
    Ban(u64),
    /// A 429 whose Retry-After header is this text, as it is.
    TooManyRaw(&'static str),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub market: Market,
    /// What `/fapi` (USD-M futures) serves, when it differs from `market`.
    pub usdm: Option<Market>,
    pub clock: Clock,
    /// REQUEST_WEIGHT limit per window.
    pub weight_limit: u32,
    /// The window, in seconds (60 is Binance's 1 MINUTE).
    pub window_secs: u32,
    /// Requests a limited client may still send before it is banned (418).
    pub ban_after: u32,
    pub ban_secs: u64,
    /// Added to every request.
    pub latency: Duration,
    /// The bulk archives (`/data/...`).
    pub archive: ArchiveConfig,
}

impl Config {
    pub fn synthetic(now: i64) -> Config {
        Config {
            market: Market::synthetic(),
            usdm: None,
            clock: Clock::Fixed(now),
            weight_limit: 6000,
            window_secs: 60,
            ban_after: 5,
            ban_secs: 120,
            latency: Duration::ZERO,
            archive: ArchiveConfig::default(),
        }
    }

    pub fn real(now: i64) -> Config {
        Config {
            market: Market::real(&data::fixtures_dir()),
            ..Config::synthetic(now)
        }
    }

    /// The 12-field real fixtures: spot ETHUSDT, and USD-M BTCUSDT on `/fapi`.
    pub fn real_full12(now: i64) -> Config {
        let dir = data::full12_dir();
        Config {
            market: Market::real_full12_spot(&dir),
            usdm: Some(Market::real_full12_usdm(&dir)),
            ..Config::synthetic(now)
        }
    }

    /// The market `/fapi` (futures) or `/api` (spot) serves.
    pub fn market_for(&self, futures: bool) -> &Market {
        match (&self.usdm, futures) {
            (Some(m), true) => m,
            _ => &self.market,
        }
    }
}

/// What the exchange saw.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub requests: u64,
    pub klines_requests: u64,
    /// The `startTime` of each klines request.
    pub klines_starts: Vec<Option<i64>>,
    /// Responses by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Weight counted per window index (epoch ms / window ms).
    pub weight_by_window: BTreeMap<i64, u32>,
    pub faults_served: u64,
    /// WebSocket connections accepted, and messages sent on them.
    pub ws_connections: u64,
    /// The exchange's time when the first WebSocket connection was accepted.
    pub ws_first_connected: Option<i64>,
    pub ws_messages: u64,
    /// Clients dropped for a late pong or too many messages.
    pub ws_dropped: u64,
    /// Archive requests (checksums and zips), and zips sent.
    pub archive_requests: u64,
    pub archive_files: u64,
}

impl Stats {
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
struct Limits {
    window: i64,
    used: u32,
    limited_until: i64,
    ban_until: i64,
    while_limited: u32,
}

struct Shared {
    config: Mutex<Config>,
    /// Faults for the WebSocket streams, in order.
    ws_faults: Mutex<VecDeque<WsFault>>,
    faults: Mutex<VecDeque<Fault>>,
    /// (probability, rng state, faults to draw from)
    random: Mutex<Option<(f64, u64, Vec<Fault>)>>,
    stats: Mutex<Stats>,
    limits: Mutex<Limits>,
    zips: archive::ZipCache,
}

/// A running test exchange; dropping it stops the server.
pub struct TestExchange {
    pub addr: SocketAddr,
    pub url: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl TestExchange {
    /// Starts on an ephemeral loopback port.
    pub fn start(config: Config) -> TestExchange {
        Self::start_on("127.0.0.1:0", config)
    }

    pub fn start_on(bind: &str, config: Config) -> TestExchange {
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            ws_faults: Mutex::new(VecDeque::new()),
            faults: Mutex::new(VecDeque::new()),
            random: Mutex::new(None),
            stats: Mutex::new(Stats::default()),
            limits: Mutex::new(Limits::default()),
            zips: archive::ZipCache::default(),
        });
        let listener = std::net::TcpListener::bind(bind).expect("bind the test exchange");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("test-exchange".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("exchange runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = rx.await;
                        })
                        .await
                        .expect("serve");
                });
            })
            .expect("spawn the exchange thread");
        TestExchange {
            addr,
            url: format!("http://{addr}"),
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn set_clock(&self, clock: Clock) {
        self.shared.config.lock().unwrap().clock = clock;
    }

    pub fn now(&self) -> i64 {
        self.shared.config.lock().unwrap().clock.now()
    }

    pub fn set_latency(&self, latency: Duration) {
        self.shared.config.lock().unwrap().latency = latency;
    }

    pub fn set_limit(&self, weight_limit: u32, window_secs: u32) {
        let mut c = self.shared.config.lock().unwrap();
        c.weight_limit = weight_limit;
        c.window_secs = window_secs;
    }

    /// Queues faults for the WebSocket streams, in order.
    pub fn inject_ws(&self, faults: impl IntoIterator<Item = WsFault>) {
        self.shared.ws_faults.lock().unwrap().extend(faults);
    }

    /// The WebSocket base URL (`ws://127.0.0.1:port`).
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Queues faults for the next klines requests, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.faults.lock().unwrap().extend(faults);
    }

    /// Gives each klines request probability `p` of one of `faults`, drawn with `seed`.
    pub fn random_faults(&self, p: f64, seed: u64, faults: Vec<Fault>) {
        *self.shared.random.lock().unwrap() = Some((p, seed, faults));
    }

    /// Changes how the archive behaves (missing or corrupt files, publication delay).
    pub fn archive(&self, change: impl FnOnce(&mut ArchiveConfig)) {
        change(&mut self.shared.config.lock().unwrap().archive);
    }

    /// Publishes a corrected 1m kline (the archive re-publishes its files with it).
    pub fn correct(&self, symbol: &str, kline: klines::datasets::klines::Kline) {
        self.shared.zips.clear();
        self.shared
            .config
            .lock()
            .unwrap()
            .market
            .overrides
            .insert((symbol.to_string(), kline.open_time), kline);
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().unwrap().clone()
    }

    /// The market data, for computing what a test expects.
    pub fn market(&self) -> Market {
        self.shared.config.lock().unwrap().market.clone()
    }

    /// What the USD-M futures endpoints serve.
    pub fn usdm_market(&self) -> Market {
        self.shared.config.lock().unwrap().market_for(true).clone()
    }
}

impl Drop for TestExchange {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/api/v3/time",
            get(|s, q| endpoint(s, q, Endpoint::Time(false))),
        )
        .route(
            "/fapi/v1/time",
            get(|s, q| endpoint(s, q, Endpoint::Time(true))),
        )
        .route(
            "/api/v3/exchangeInfo",
            get(|s, q| endpoint(s, q, Endpoint::Info(false))),
        )
        .route(
            "/fapi/v1/exchangeInfo",
            get(|s, q| endpoint(s, q, Endpoint::Info(true))),
        )
        .route(
            "/api/v3/klines",
            get(|s, q| endpoint(s, q, Endpoint::Klines(false))),
        )
        .route(
            "/fapi/v1/klines",
            get(|s, q| endpoint(s, q, Endpoint::Klines(true))),
        )
        .route("/data/{*path}", get(archive::serve))
        .route("/stream", get(ws::combined))
        .route("/market/stream", get(ws::combined))
        .route("/__admin/stats", get(admin_stats))
        .route("/__admin/clock", post(admin_clock))
        .with_state(shared)
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Time(bool),
    Info(bool),
    Klines(bool),
}

type Params = Query<BTreeMap<String, String>>;

fn json(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

fn api_error(code: i64, msg: &str) -> Response {
    json(
        StatusCode::BAD_REQUEST,
        format!("{{\"code\":{code},\"msg\":\"{msg}\"}}"),
    )
}

fn weight_of(e: Endpoint, q: &BTreeMap<String, String>) -> u32 {
    match e {
        Endpoint::Time(_) => 1,
        Endpoint::Info(false) => 20,
        Endpoint::Info(true) => 1,
        Endpoint::Klines(false) => 2,
        Endpoint::Klines(true) => match q
            .get("limit")
            .and_then(|l| l.parse::<u32>().ok())
            .unwrap_or(500)
        {
            0..100 => 1,
            100..500 => 2,
            500..=1000 => 5,
            _ => 10,
        },
    }
}

async fn endpoint(State(shared): State<Arc<Shared>>, Query(q): Params, e: Endpoint) -> Response {
    let (config, now_real) = (shared.config.lock().unwrap().clone(), wall_ms());
    let window_ms = config.window_secs as i64 * 1000;
    let header_name = if config.window_secs % 60 == 0 {
        format!("x-mbx-used-weight-{}m", config.window_secs / 60)
    } else {
        format!("x-mbx-used-weight-{}s", config.window_secs)
    };
    let weight = weight_of(e, &q);
    let is_klines = matches!(e, Endpoint::Klines(_));
    // Count the request and decide on limits.
    let (limited, used) = {
        let mut l = shared.limits.lock().unwrap();
        let mut stats = shared.stats.lock().unwrap();
        stats.requests += 1;
        if is_klines {
            stats.klines_requests += 1;
            stats
                .klines_starts
                .push(q.get("startTime").and_then(|t| t.parse().ok()));
        }
        let window = now_real.div_euclid(window_ms);
        if window != l.window {
            l.window = window;
            l.used = 0;
        }
        let limited = if l.ban_until > now_real {
            Some((418, l.ban_until))
        } else if l.limited_until > now_real {
            l.while_limited += 1;
            if l.while_limited > config.ban_after {
                l.ban_until = now_real + config.ban_secs as i64 * 1000;
                Some((418, l.ban_until))
            } else {
                Some((429, l.limited_until))
            }
        } else {
            l.used += weight;
            *stats.weight_by_window.entry(window).or_default() += weight;
            if l.used > config.weight_limit {
                l.limited_until = (window + 1) * window_ms;
                l.while_limited = 0;
                Some((429, l.limited_until))
            } else {
                None
            }
        };
        (limited, l.used)
    };
    let finish = |mut r: Response| {
        r.headers_mut().insert(
            axum::http::HeaderName::from_bytes(header_name.as_bytes()).unwrap(),
            HeaderValue::from_str(&used.to_string()).unwrap(),
        );
        shared
            .stats
            .lock()
            .unwrap()
            .statuses
            .entry(r.status().as_u16())
            .and_modify(|n| *n += 1)
            .or_insert(1);
        r
    };
    if let Some((status, until)) = limited {
        let secs = ((until - now_real) as f64 / 1000.0).ceil().max(1.0) as u64;
        return finish(retry_after(status, secs));
    }
    let fault = if is_klines { next_fault(&shared) } else { None };
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    if let Some(f) = &fault {
        shared.stats.lock().unwrap().faults_served += 1;
        match f {
            Fault::Status(s) => {
                let status = StatusCode::from_u16(*s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return finish(json(
                    status,
                    "{\"code\":-1000,\"msg\":\"An unknown error occurred.\"}".into(),
                ));
            }
            Fault::TooMany(secs) => {
                // As if the limit was broken: requests before Retry-After count towards a ban.
                let mut l = shared.limits.lock().unwrap();
                l.limited_until = now_real + *secs as i64 * 1000;
                l.while_limited = 0;
                drop(l);
                return finish(retry_after(429, *secs));
            }
            Fault::Ban(secs) => {
                shared.limits.lock().unwrap().ban_until = now_real + *secs as i64 * 1000;
                return finish(retry_after(418, *secs));
            }
            Fault::TooManyRaw(text) => {
                let mut r = retry_after(429, 0);
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_static(text));
                return finish(r);
            }
            Fault::Delay(d) => tokio::time::sleep(*d).await,
            _ => {}
        }
    }
    let response = match e {
        Endpoint::Time(_) => json(
            StatusCode::OK,
            format!("{{\"serverTime\":{}}}", config.clock.now()),
        ),
        Endpoint::Info(futures) => exchange_info(&config, &q, futures, now_real),
        Endpoint::Klines(futures) => klines(&config, &q, futures),
    };
    let response = match fault {
        Some(Fault::Truncate) | Some(Fault::Drop) | Some(Fault::Malformed)
            if response.status() == StatusCode::OK =>
        {
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            match fault {
                Some(Fault::Truncate) => json(
                    StatusCode::OK,
                    String::from_utf8_lossy(&body[..body.len() / 2]).into_owned(),
                ),
                Some(Fault::Malformed) => json(
                    StatusCode::OK,
                    "<html><body>502 Bad Gateway</body></html>".into(),
                ),
                _ => {
                    // Part of the body, then the connection goes away.
                    let half = body.slice(..body.len() / 2);
                    let stream = futures::stream::iter(vec![
                        Ok::<_, std::io::Error>(half),
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "dropped",
                        )),
                    ]);
                    let mut r = Response::new(Body::from_stream(stream));
                    r.headers_mut()
                        .insert("content-length", HeaderValue::from(body.len()));
                    r
                }
            }
        }
        _ => response,
    };
    finish(response)
}

fn retry_after(status: u16, secs: u64) -> Response {
    let body = if status == 418 {
        "{\"code\":-1003,\"msg\":\"Way too many requests; IP banned.\"}"
    } else {
        "{\"code\":-1003,\"msg\":\"Too many requests; current limit exceeded.\"}"
    };
    let mut r = json(StatusCode::from_u16(status).unwrap(), body.into());
    r.headers_mut()
        .insert("retry-after", HeaderValue::from(secs));
    r
}

fn next_fault(shared: &Shared) -> Option<Fault> {
    if let Some(f) = shared.faults.lock().unwrap().pop_front() {
        return Some(f);
    }
    let mut random = shared.random.lock().unwrap();
    let (p, state, faults) = random.as_mut()?;
    *state = data::mix(*state, 0x5EED);
    let draw = (*state >> 11) as f64 / (1u64 << 53) as f64;
    (draw < *p && !faults.is_empty())
        .then(|| faults[(*state % faults.len() as u64) as usize].clone())
}

fn requested_symbols(q: &BTreeMap<String, String>) -> Result<Option<Vec<String>>, Response> {
    if let Some(s) = q.get("symbol") {
        return Ok(Some(vec![s.clone()]));
    }
    if let Some(list) = q.get("symbols") {
        return serde_json::from_str::<Vec<String>>(list)
            .map(Some)
            .map_err(|_| api_error(-1100, "Illegal characters found in parameter 'symbols'."));
    }
    Ok(None)
}

fn exchange_info(
    config: &Config,
    q: &BTreeMap<String, String>,
    futures: bool,
    now_real: i64,
) -> Response {
    let all = config.market_for(futures).symbol_names();
    let wanted = match requested_symbols(q) {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Some(w) = &wanted
        && w.iter().any(|s| !all.iter().any(|(n, _)| n == s))
    {
        return api_error(-1121, "Invalid symbol.");
    }
    let (num, unit) = if config.window_secs % 60 == 0 {
        (config.window_secs / 60, "MINUTE")
    } else {
        (config.window_secs, "SECOND")
    };
    let symbols: Vec<serde_json::Value> = all
        .iter()
        .filter(|(n, _)| wanted.as_ref().is_none_or(|w| w.contains(n)))
        .map(|(n, status)| serde_json::json!({"symbol": n, "status": status, "contractType": if futures { "PERPETUAL" } else { "" }}))
        .collect();
    let body = serde_json::json!({
        "timezone": "UTC",
        "serverTime": config.clock.now(),
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": unit, "intervalNum": num, "limit": config.weight_limit},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        ],
        "exchangeFilters": [],
        "symbols": symbols,
        "_wall": now_real,
    });
    json(StatusCode::OK, body.to_string())
}

fn klines(config: &Config, q: &BTreeMap<String, String>, futures: bool) -> Response {
    let Some(symbol) = q.get("symbol") else {
        return api_error(
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        );
    };
    let market = config.market_for(futures);
    if !market.has_symbol(symbol) {
        return api_error(-1121, "Invalid symbol.");
    }
    let Some(interval) = q.get("interval").and_then(|i| i.parse::<Interval>().ok()) else {
        return api_error(-1120, "Invalid interval.");
    };
    let max = if futures { 1500 } else { 1000 };
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 500,
        Some(Ok(l)) if (1..=max).contains(&l) => l,
        Some(_) => return api_error(-1130, "Data sent for parameter 'limit' is not valid."),
    };
    let time = |k: &str| q.get(k).map(|v| v.parse::<i64>());
    let (start, end) = match (time("startTime"), time("endTime")) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            return api_error(-1100, "Illegal characters found in a parameter.");
        }
        (s, e) => (s.map(|r| r.unwrap_or(0)), e.map(|r| r.unwrap_or(0))),
    };
    let now = config.clock.now();
    let rows = match start {
        Some(s) => market.klines(
            symbol,
            interval,
            s,
            end.map_or(i64::MAX, |e| e + 1),
            now,
            limit,
        ),
        None => {
            // The latest `limit` candles up to endTime (or now).
            let last = interval.floor(end.unwrap_or(now).min(now));
            let from = interval.advance(last, -(limit as i64 - 1)).max(0);
            let from = if interval.fixed_millis().is_none() {
                (0..limit - 1).fold(last, |t, _| Interval::Mo1.floor(t - 1))
            } else {
                from
            };
            market.klines(symbol, interval, from, last + 1, now, limit)
        }
    };
    json(StatusCode::OK, data::to_json(&rows))
}

async fn admin_stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.stats.lock().unwrap().clone();
    json(StatusCode::OK, serde_json::to_string(&stats).unwrap())
}

async fn admin_clock(State(shared): State<Arc<Shared>>, Query(q): Params) -> Response {
    let mut c = shared.config.lock().unwrap();
    match q.get("now").and_then(|n| n.parse::<i64>().ok()) {
        Some(t) if q.get("running").is_some() => c.clock = Clock::running_from(t),
        Some(t) => c.clock = Clock::Fixed(t),
        None => return api_error(-1100, "now is required"),
    }
    json(StatusCode::OK, format!("{{\"now\":{}}}", c.clock.now()))
}
