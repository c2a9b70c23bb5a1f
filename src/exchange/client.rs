//! The Binance REST client: klines, server time and exchangeInfo, with pacing and retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::error::{Attempt, ExchangeError};
use super::ratelimit::{RateLimit, RateLimiter};
use super::{Interval, Market, Symbol};
use crate::kline::{self, KlineBatch};

/// How the client reaches the exchange and how hard it tries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://data-api.binance.vision` or a compatible server; no trailing slash needed.
    pub base_url: String,
    pub market: Market,
    /// Per request, from connecting to the last byte of the body.
    pub timeout: Duration,
    /// Attempts per request for transient failures (5xx, timeouts, bad bodies).
    pub max_attempts: u32,
    /// First backoff; it doubles per attempt, with full jitter, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// The longest `Retry-After` (429/418) worth waiting for; longer ones end the run.
    pub max_wait: Duration,
    /// Requests on the wire at once, across all symbols.
    pub max_in_flight: usize,
    /// Part (0 to 1] of the exchange's advertised weight limit this run may use.
    pub weight_share: f64,
}

impl ClientConfig {
    pub fn new(base_url: &str, market: Market) -> ClientConfig {
        ClientConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            market,
            timeout: Duration::from_secs(30),
            max_attempts: 8,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            max_wait: Duration::from_secs(300),
            max_in_flight: 8,
            weight_share: 1.0,
        }
    }
}

/// Request counters for the run summary.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub weight: AtomicU64,
}

/// What exchangeInfo says about a symbol.
#[derive(Debug, Clone, Deserialize)]
pub struct SymbolInfo {
    pub symbol: String,
    pub status: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRateLimit {
    rate_limit_type: String,
    interval: String,
    interval_num: u32,
    limit: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExchangeInfoBody {
    #[serde(default)]
    rate_limits: Vec<RawRateLimit>,
    #[serde(default)]
    symbols: Vec<SymbolInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerTimeBody {
    server_time: i64,
}

#[derive(Debug, Deserialize)]
struct ApiErrorBody {
    code: i64,
    msg: String,
}

/// Binance's code for an unknown symbol.
const INVALID_SYMBOL: i64 = -1121;

pub struct BinanceClient {
    http: reqwest::Client,
    config: ClientConfig,
    limiter: Arc<RateLimiter>,
    in_flight: Semaphore,
    stats: ClientStats,
}

impl std::fmt::Debug for BinanceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinanceClient")
            .field("market", &self.config.market)
            .finish_non_exhaustive()
    }
}

impl BinanceClient {
    pub fn new(config: ClientConfig) -> anyhow::Result<BinanceClient> {
        let http = super::http::client("exchange base", &config.base_url, config.timeout)?;
        Ok(BinanceClient {
            http,
            limiter: RateLimiter::new(),
            in_flight: Semaphore::new(config.max_in_flight.max(1)),
            config,
            stats: ClientStats::default(),
        })
    }

    pub fn market(&self) -> Market {
        self.config.market
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }

    /// `GET /api/v3/time`: the exchange's clock, which decides which candles are closed.
    pub async fn server_time(&self) -> Result<i64, ExchangeError> {
        let path = self.config.market.time_path();
        self.request(path, &[], 1, |body| {
            serde_json::from_slice::<ServerTimeBody>(body)
                .map(|t| t.server_time)
                .map_err(|e| Attempt::Transient(format!("malformed JSON: {e}")))
        })
        .await
    }

    /// `GET exchangeInfo` for `symbols`: installs the advertised rate limits and checks that
    /// every symbol exists and trades.
    pub async fn check_symbols(
        &self,
        symbols: &[Symbol],
    ) -> Result<Vec<SymbolInfo>, ExchangeError> {
        let info = match self.exchange_info(symbols).await {
            Err(ExchangeError::Refused {
                code: INVALID_SYMBOL,
                ..
            }) if symbols.len() > 1 => {
                // The exchange does not say which one: ask one by one.
                let mut unknown = Vec::new();
                for s in symbols {
                    match self.exchange_info(std::slice::from_ref(s)).await {
                        Ok(_) => {}
                        Err(ExchangeError::Refused {
                            code: INVALID_SYMBOL,
                            ..
                        }) => unknown.push(s.to_string()),
                        Err(e) => return Err(e),
                    }
                }
                return Err(ExchangeError::Symbols(format!(
                    "unknown symbol{} on {}: {}",
                    if unknown.len() > 1 { "s" } else { "" },
                    self.config.market,
                    unknown.join(", ")
                )));
            }
            Err(ExchangeError::Refused {
                code: INVALID_SYMBOL,
                ..
            }) => {
                return Err(ExchangeError::Symbols(format!(
                    "unknown symbol on {}: {}",
                    self.config.market,
                    symbols.first().map(|s| s.as_str()).unwrap_or_default()
                )));
            }
            other => other?,
        };
        let limits: Vec<RateLimit> = info
            .rate_limits
            .iter()
            .filter_map(|l| {
                RateLimit::from_exchange(&l.rate_limit_type, &l.interval, l.interval_num, l.limit)
            })
            .collect();
        self.limiter.set_limits(&limits, self.config.weight_share);
        let mut found = Vec::new();
        let mut problems = Vec::new();
        for s in symbols {
            match info.symbols.iter().find(|i| i.symbol == s.as_str()) {
                None => problems.push(format!("{s} (unknown)")),
                Some(i) if i.status != "TRADING" => {
                    problems.push(format!("{s} (status {})", i.status))
                }
                Some(i) => found.push(i.clone()),
            }
        }
        if !problems.is_empty() {
            return Err(ExchangeError::Symbols(format!(
                "symbols not trading on {}: {}",
                self.config.market,
                problems.join(", ")
            )));
        }
        Ok(found)
    }

    async fn exchange_info(&self, symbols: &[Symbol]) -> Result<ExchangeInfoBody, ExchangeError> {
        let market = self.config.market;
        let list = serde_json::to_string(&symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>())
            .unwrap_or_default();
        let query: Vec<(&str, String)> = match market {
            // USD-M exchangeInfo takes no symbol filter.
            Market::UsdM => vec![],
            Market::Spot => vec![("symbols", list)],
        };
        self.request(
            market.exchange_info_path(),
            &query,
            market.exchange_info_weight(),
            |body| {
                serde_json::from_slice::<ExchangeInfoBody>(body)
                    .map_err(|e| Attempt::Transient(format!("malformed JSON: {e}")))
            },
        )
        .await
    }

    /// The open time of the symbol's first kline, or `None` if it has none.
    pub async fn first_open_time(
        &self,
        symbol: &Symbol,
        interval: Interval,
    ) -> Result<Option<i64>, ExchangeError> {
        let mut batch = KlineBatch::default();
        self.klines_page(symbol, interval, 0, None, 1, &mut batch)
            .await?;
        Ok(batch.open_time.first().copied())
    }

    /// Appends the klines opening in `[start, end)` to `out`. The range must hold at most
    /// [`Market::page_limit`] candles: one request.
    pub async fn klines(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start: i64,
        end: i64,
        out: &mut KlineBatch,
    ) -> Result<usize, ExchangeError> {
        let limit = self.config.market.page_limit();
        let n = self
            .klines_page(symbol, interval, start, Some(end - 1), limit, out)
            .await?;
        let rows = &out.open_time[out.len() - n..];
        if let Some(&t) = rows.iter().find(|&&t| t < start || t >= end) {
            out.truncate(out.len() - n);
            return Err(ExchangeError::InvalidData {
                symbol: symbol.to_string(),
                detail: format!(
                    "kline opening at {t} is outside the requested range [{start}, {end})"
                ),
            });
        }
        Ok(n)
    }

    async fn klines_page(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start: i64,
        end_inclusive: Option<i64>,
        limit: u32,
        out: &mut KlineBatch,
    ) -> Result<usize, ExchangeError> {
        let market = self.config.market;
        let mut query = vec![
            ("symbol", symbol.to_string()),
            ("interval", interval.as_str().to_string()),
            ("startTime", start.to_string()),
            ("limit", limit.to_string()),
        ];
        if let Some(end) = end_inclusive {
            query.push(("endTime", end.to_string()));
        }
        let batch = self
            .request(
                market.klines_path(),
                &query,
                market.klines_weight(limit),
                |body| {
                    let mut batch = KlineBatch::with_capacity(limit as usize);
                    match kline::parse_body(body, &mut batch) {
                        Ok(_) => Ok(batch),
                        Err(e) if e.is_retryable() => Err(Attempt::Transient(e.to_string())),
                        Err(e) => Err(Attempt::Fatal(ExchangeError::InvalidData {
                            symbol: symbol.to_string(),
                            detail: format!(
                                "{} {interval} from {start}: {e}",
                                market.klines_path()
                            ),
                        })),
                    }
                },
            )
            .await?;
        let n = batch.len();
        out.extend_from(&batch, 0..n);
        Ok(n)
    }

    /// One GET with pacing and the retry policy; `parse` turns a 200 body into a value.
    async fn request<T>(
        &self,
        path: &str,
        query: &[(&str, String)],
        weight: u32,
        parse: impl Fn(&Bytes) -> Result<T, Attempt>,
    ) -> Result<T, ExchangeError> {
        let url = format!("{}{}", self.config.base_url, path);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = {
                let _slot =
                    self.in_flight
                        .acquire()
                        .await
                        .map_err(|_| ExchangeError::Exhausted {
                            path: path.to_string(),
                            attempts: attempt,
                            last: "client shut down".into(),
                        })?;
                let ticket = self.limiter.acquire(weight).await;
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .weight
                    .fetch_add(weight as u64, Ordering::Relaxed);
                match self.http.get(&url).query(query).send().await {
                    Err(e) => Err(Attempt::Transient(describe(&e))),
                    Ok(resp) => {
                        self.limiter.observe(ticket, resp.headers());
                        self.answer(path, resp).await.and_then(|body| parse(&body))
                    }
                }
            };
            let err = match outcome {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            match err {
                Attempt::Fatal(e) => return Err(e),
                Attempt::Limited {
                    status,
                    retry_after,
                } => {
                    if retry_after > self.config.max_wait {
                        return Err(if status == 418 {
                            ExchangeError::Banned { retry_after }
                        } else {
                            ExchangeError::RateLimited { retry_after }
                        });
                    }
                    tracing::warn!(
                        path,
                        status,
                        retry_after_secs = retry_after.as_secs_f64(),
                        "rate-limited by the exchange; every request waits"
                    );
                    self.limiter
                        .pause_until(self.limiter.now_ms().saturating_add(
                            i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX),
                        ));
                    // Waiting out a limit is not a failed attempt, but a server that keeps
                    // answering 429 must not keep the run forever.
                    attempt -= 1;
                    if self.limiter.stats().rejected > 20 {
                        return Err(ExchangeError::RateLimited { retry_after });
                    }
                }
                Attempt::Transient(reason) => {
                    if attempt >= self.config.max_attempts {
                        return Err(ExchangeError::Exhausted {
                            path: path.to_string(),
                            attempts: attempt,
                            last: reason,
                        });
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff(attempt, self.config.retry_base, self.config.retry_max);
                    tracing::warn!(path, attempt, reason = %reason, delay_ms = delay.as_millis() as u64, "retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Sorts a response into a body to parse or a failed attempt.
    async fn answer(&self, path: &str, resp: reqwest::Response) -> Result<Bytes, Attempt> {
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status.as_u16() == 418 {
            let retry_after = retry_after(resp.headers()).unwrap_or(Duration::from_secs(60));
            return Err(Attempt::Limited {
                status: status.as_u16(),
                retry_after,
            });
        }
        if status.is_server_error() {
            return Err(Attempt::Transient(format!("HTTP {status}")));
        }
        if status == StatusCode::FORBIDDEN {
            return Err(Attempt::Fatal(ExchangeError::Firewall {
                path: path.to_string(),
            }));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| Attempt::Transient(describe(&e)))?;
        if status.is_success() {
            return Ok(body);
        }
        let (code, msg) = match serde_json::from_slice::<ApiErrorBody>(&body) {
            Ok(e) => (e.code, e.msg),
            Err(_) => (
                0,
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            ),
        };
        Err(Attempt::Fatal(ExchangeError::Refused {
            path: path.to_string(),
            status: status.as_u16(),
            code,
            msg,
        }))
    }
}

/// Full-jitter exponential backoff: uniform in [base, min(max, base * 2^(attempt-1))].
pub(crate) fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let cap = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max);
    let lo = base.min(cap).as_millis() as u64;
    let hi = cap.as_millis() as u64;
    Duration::from_millis(if hi > lo { fastrand::u64(lo..=hi) } else { lo })
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?)
}

/// `Retry-After` in seconds (Binance sends whole ones). A value too large for a `Duration`
/// (`1e30`) is a very long wait, not a panic: it exceeds any `max_wait` and ends the run.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs = v.trim().parse::<f64>().ok()?;
    if !(secs.is_finite() && secs >= 0.0) {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// An error's chain without the URL (which could carry credentials).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading the body"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[async_trait::async_trait]
impl super::KlineSource for BinanceClient {
    fn capabilities(&self) -> super::Capabilities {
        super::Capabilities {
            exchange: super::Exchange::Binance,
            market: self.config.market,
            page_limit: self.config.market.page_limit(),
            flow_fields: true,
            empty_buckets: super::source::EmptyBuckets::Filler,
            closed_by_server_time: true,
            rate_limits: super::source::RateLimits::AdvertisedWeight,
        }
    }

    async fn server_time(&self) -> Result<i64, ExchangeError> {
        BinanceClient::server_time(self).await
    }

    async fn check_symbols(&self, symbols: &[Symbol]) -> Result<(), ExchangeError> {
        BinanceClient::check_symbols(self, symbols).await.map(|_| ())
    }

    async fn first_open_time(
        &self,
        symbol: &Symbol,
        interval: Interval,
    ) -> Result<Option<i64>, ExchangeError> {
        BinanceClient::first_open_time(self, symbol, interval).await
    }

    async fn klines(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start: i64,
        end: i64,
        out: &mut KlineBatch,
    ) -> Result<usize, ExchangeError> {
        BinanceClient::klines(self, symbol, interval, start, end, out).await
    }

    fn stats(&self) -> super::source::SourceStats {
        super::source::SourceStats {
            requests: self.stats.requests.load(Ordering::Relaxed),
            retries: self.stats.retries.load(Ordering::Relaxed),
            weight: self.stats.weight.load(Ordering::Relaxed),
            rate_limited: self.limiter.stats().rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 1..30 {
            let d = backoff(attempt, base, max);
            assert!(d >= base && d <= max, "{attempt}: {d:?}");
        }
        assert_eq!(backoff(1, base, max), base);
    }

    #[test]
    fn retry_after_takes_any_number_without_panicking() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("1e30"), Some(Duration::MAX));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    proptest::proptest! {
        #[test]
        fn retry_after_never_panics(s in "\\PC{0,40}", x in proptest::num::f64::ANY) {
            let _ = parse_retry_after(&s);
            let _ = parse_retry_after(&x.to_string());
            let _ = parse_retry_after(&format!("{x:e}"));
        }
    }

    #[test]
    fn a_bad_base_url_is_refused_without_echoing_credentials() {
        let err =
            BinanceClient::new(ClientConfig::new("ftp://u:secret@host", Market::Spot)).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(BinanceClient::new(ClientConfig::new("not a url", Market::Spot)).is_err());
    }
}

