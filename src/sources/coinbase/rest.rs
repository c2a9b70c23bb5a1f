//! Coinbase Exchange's REST client: its public candles (`GET /products/{id}/candles`), as a
//! [`KlineSource`].
//!
//! - Granularities of 60 s to 1 day (1m, 5m, 15m, 1h, 6h, 1d); at most 300 candles a request.
//! - Rows are `[time_s, low, high, open, close, volume]`, newest first, numbers as JSON numbers:
//!   they are read from the body's text (never through f64), exponents included.
//! - No candle for a bucket without trades, and no trade count, quote volume or taker volumes:
//!   those fields are NULL from the stage on ([`crate::market::Exchange::flow_fields`]).
//! - The exchange's clock is `GET /time`; public endpoints allow about 10 requests a second per
//!   IP (shared with every other program there), so requests are paced, and a 429 is waited
//!   out (`Retry-After`, else a backoff) and asked again, every time ([`crate::sources::retry`]). The
//!   pace adapts: a 429 slows it down by a third, and each answer speeds it up a little again,
//!   up to `requests_per_second`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;

use super::candles::{epoch_ms, parse_candles};
use crate::datasets::klines::KlineBatch;
use crate::market::{Exchange, Interval, Market, Symbol};
use crate::redact::redact_url;
use crate::sources::error::Attempt;
use crate::sources::retry::{self, LimitedSince, Next, RetryPolicy, describe};
use crate::sources::source::{Capabilities, EmptyBuckets, SourceStats};
use crate::sources::{ExchangeError, KlineSource};

/// Candles per request.
pub const PAGE: u32 = 300;

/// How the client reaches Coinbase.
#[derive(Debug, Clone)]
pub struct CoinbaseConfig {
    pub base_url: String,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Requests started per second, all symbols together (Coinbase allows about 10): the
    /// most the adaptive pace goes up to.
    pub requests_per_second: f64,
}

impl CoinbaseConfig {
    pub fn new(base_url: &str) -> CoinbaseConfig {
        CoinbaseConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            requests_per_second: 8.0,
        }
    }
}

pub struct CoinbaseClient {
    http: reqwest::Client,
    config: CoinbaseConfig,
    pace: tokio::sync::Mutex<Pace>,
    limited_since: LimitedSince,
    requests: AtomicU64,
    retries: AtomicU64,
    limited: AtomicU64,
}

impl std::fmt::Debug for CoinbaseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoinbaseClient")
            .field("base_url", &redact_url(&self.config.base_url))
            .finish_non_exhaustive()
    }
}

/// Coinbase's granularity (seconds) for an interval, if it has one.
pub fn granularity(interval: Interval) -> Option<i64> {
    Some(match interval {
        Interval::M1 => 60,
        Interval::M5 => 300,
        Interval::M15 => 900,
        Interval::H1 => 3600,
        Interval::H6 => 21_600,
        Interval::D1 => 86_400,
        _ => return None,
    })
}

fn iso(ms: i64) -> String {
    crate::time::format_ms(ms)
}

impl CoinbaseClient {
    pub fn new(config: CoinbaseConfig) -> anyhow::Result<CoinbaseClient> {
        let http = crate::sources::http::client("Coinbase", &config.base_url, config.timeout)?;
        Ok(CoinbaseClient {
            http,
            pace: tokio::sync::Mutex::new(Pace {
                next: tokio::time::Instant::now(),
                rate: config.requests_per_second.max(MIN_RATE),
            }),
            limited_since: LimitedSince::default(),
            config,
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            limited: AtomicU64::new(0),
        })
    }

    /// Waits for this request's turn under the current pace.
    async fn pace(&self) {
        let at = {
            let mut p = self.pace.lock().await;
            let now = tokio::time::Instant::now();
            let at = p.next.max(now);
            p.next = at + Duration::from_secs_f64(1.0 / p.rate);
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// One GET with pacing and the retry policy; `Ok(None)` for a 404.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<bytes::Bytes>, ExchangeError> {
        let url = format!("{}{path}", self.config.base_url);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.pace().await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let failure = match self.attempt(&url, path, query).await {
                Ok(body) => {
                    self.limited_since.answered();
                    let mut p = self.pace.lock().await;
                    p.rate =
                        (p.rate + RATE_STEP).min(self.config.requests_per_second.max(MIN_RATE));
                    return Ok(body);
                }
                Err(f) => f,
            };
            let reason = match &failure {
                Attempt::Transient(r) => r.clone(),
                _ => String::new(),
            };
            match self
                .config
                .retry
                .next(path, attempt, failure, &self.limited_since)?
            {
                Next::Pause { wait, .. } => {
                    self.limited.fetch_add(1, Ordering::Relaxed);
                    // Every request waits, and the pace slows down: the limit is per IP and
                    // other programs may share it.
                    let rate = {
                        let mut p = self.pace.lock().await;
                        p.next = p.next.max(tokio::time::Instant::now() + wait);
                        p.rate = (p.rate * 2.0 / 3.0).max(MIN_RATE);
                        p.rate
                    };
                    tracing::warn!(
                        path,
                        wait_ms = wait.as_millis() as u64,
                        requests_per_second = (rate * 100.0).round() / 100.0,
                        "rate-limited by Coinbase (HTTP 429); waiting, and slowing down"
                    );
                    attempt -= 1;
                }
                Next::Backoff(delay) => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(path, attempt, reason = %reason, delay_ms = delay.as_millis() as u64, "retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One request and how it went.
    async fn attempt(
        &self,
        url: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<bytes::Bytes>, Attempt> {
        let resp = self
            .http
            .get(url)
            .query(query)
            .send()
            .await
            .map_err(|e| Attempt::Transient(describe(&e)))?;
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Attempt::Limited {
                status: 429,
                retry_after: retry::retry_after(resp.headers()),
            });
        }
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status.is_server_error() {
            return Err(Attempt::Transient(format!("HTTP {status}")));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| Attempt::Transient(describe(&e)))?;
        if status.is_success() {
            return Ok(Some(body));
        }
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        Err(Attempt::Fatal(ExchangeError::Refused {
            path: path.to_string(),
            status: status.as_u16(),
            code: 0,
            msg,
        }))
    }
}

/// The adaptive pace: when the next request may start, and the current rate.
#[derive(Debug)]
struct Pace {
    next: tokio::time::Instant,
    rate: f64,
}

/// The slowest pace (requests a second) a run of 429s brings the client down to.
const MIN_RATE: f64 = 0.5;

/// How much each successful answer speeds the pace up again (requests a second).
const RATE_STEP: f64 = 0.02;

#[async_trait]
impl KlineSource for CoinbaseClient {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            exchange: Exchange::COINBASE,
            market: Market::Spot,
            page_limit: PAGE,
            flow_fields: false,
            empty_buckets: EmptyBuckets::Absent,
            closed_by_server_time: true,
            rate_limits: crate::sources::source::RateLimits::PerSecond(10.0),
        }
    }

    /// `GET /time`: `{"iso": "...", "epoch": 1704067200.123}`, the epoch read exactly.
    async fn server_time(&self) -> Result<i64, ExchangeError> {
        let body = self.get("/time", &[]).await?.unwrap_or_default();
        let text = std::str::from_utf8(&body).unwrap_or_default();
        epoch_ms(text).ok_or_else(|| ExchangeError::Exhausted {
            path: "/time".into(),
            attempts: 1,
            last: format!("no epoch in {:?}", crate::sources::http::excerpt(text, 100)),
        })
    }

    /// `GET /products/{id}` for each: it must exist, be online and not disabled.
    async fn check_symbols(&self, symbols: &[Symbol]) -> Result<(), ExchangeError> {
        let mut problems = Vec::new();
        for s in symbols {
            match self.get(&format!("/products/{s}"), &[]).await? {
                None => problems.push(format!("{s} (unknown)")),
                Some(body) => {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let status = v.get("status").and_then(|x| x.as_str()).unwrap_or("");
                    let disabled = v
                        .get("trading_disabled")
                        .and_then(|x| x.as_bool())
                        .unwrap_or(false);
                    if status != "online" || disabled {
                        problems.push(format!(
                            "{s} (status {status}{})",
                            if disabled { ", trading disabled" } else { "" }
                        ));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ExchangeError::Symbols(format!(
                "products not trading on coinbase: {}",
                problems.join(", ")
            )))
        }
    }

    /// Coinbase cannot say when a product's candles start: the range is asked for whole (an
    /// empty page before the listing is recorded as empty).
    async fn first_open_time(
        &self,
        _symbol: &Symbol,
        _interval: Interval,
    ) -> Result<Option<i64>, ExchangeError> {
        Ok(Some(i64::MIN))
    }

    async fn klines(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start: i64,
        end: i64,
        out: &mut KlineBatch,
    ) -> Result<usize, ExchangeError> {
        let g = granularity(interval).ok_or_else(|| ExchangeError::InvalidData {
            symbol: symbol.to_string(),
            detail: format!("Coinbase has no {interval} candles (1m, 5m, 15m, 1h, 6h, 1d)"),
        })?;
        let path = format!("/products/{symbol}/candles");
        // `end` is inclusive of bucket starts on Coinbase: the last bucket opening before `end`.
        let query = [
            ("granularity", g.to_string()),
            ("start", iso(start)),
            ("end", iso(end - g * 1000)),
        ];
        let body = self.get(&path, &query).await?.ok_or_else(|| {
            ExchangeError::Symbols(format!("unknown product on coinbase: {symbol}"))
        })?;
        let mut rows = parse_candles(&body, g * 1000).map_err(|e| ExchangeError::InvalidData {
            symbol: symbol.to_string(),
            detail: format!("{path} from {}: {e}", iso(start)),
        })?;
        rows.sort_by_key(|k| k.open_time);
        rows.dedup_by_key(|k| k.open_time);
        let mut n = 0;
        for k in rows
            .iter()
            .filter(|k| k.open_time >= start && k.open_time < end)
        {
            out.push(k);
            n += 1;
        }
        if n < rows.len() {
            tracing::debug!(symbol = %symbol, extra = rows.len() - n, "candles outside the requested range dropped");
        }
        Ok(n)
    }

    fn stats(&self) -> SourceStats {
        SourceStats {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            weight: 0,
            rate_limited: self.limited.load(Ordering::Relaxed),
        }
    }
}
