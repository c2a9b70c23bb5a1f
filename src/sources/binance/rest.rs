//! The Binance REST client: klines, server time and exchangeInfo, with pacing and retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::ratelimit::{RateLimit, RateLimiter};
use crate::datasets::klines::KlineBatch;
use crate::market::{Interval, Market, Symbol};
use crate::sources::error::{Attempt, ExchangeError};
use crate::sources::retry::{self, LimitedSince, Next, RetryPolicy, describe};

/// How the client reaches the exchange and how hard it tries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://data-api.binance.vision` or a compatible server; no trailing slash needed.
    pub base_url: String,
    pub market: Market,
    /// Per request, from connecting to the last byte of the body.
    pub timeout: Duration,
    /// Attempts, backoff, and the longest rate-limit wait worth waiting.
    pub retry: RetryPolicy,
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
            retry: RetryPolicy::default(),
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
    limited: LimitedSince,
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
        let http = crate::sources::http::client("exchange base", &config.base_url, config.timeout)?;
        Ok(BinanceClient {
            http,
            limiter: RateLimiter::new(),
            in_flight: Semaphore::new(config.max_in_flight.max(1)),
            config,
            stats: ClientStats::default(),
            limited: LimitedSince::default(),
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

    /// Requests, retries, weight spent and rate-limited answers so far.
    pub fn source_stats(&self) -> crate::sources::source::SourceStats {
        crate::sources::source::SourceStats {
            requests: self.stats.requests.load(Ordering::Relaxed),
            retries: self.stats.retries.load(Ordering::Relaxed),
            weight: self.stats.weight.load(Ordering::Relaxed),
            rate_limited: self.limiter.stats().rejected,
        }
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
        let first = out.len() - n;
        // A kline is keyed by its open time: one off the interval's grid is not a candle of
        // it, never staged. (A close time that does not match is a bad row for the loader's
        // quarantine, which keeps it with its reason.)
        let bad = out.open_time[first..].iter().find_map(|&t| {
            if t < start || t >= end {
                Some(format!(
                    "kline opening at {t} is outside the requested range [{start}, {end})"
                ))
            } else if interval.floor(t) != t {
                Some(format!(
                    "kline opening at {t} is not on the {interval} grid"
                ))
            } else {
                None
            }
        });
        if let Some(detail) = bad {
            out.truncate(first);
            return Err(ExchangeError::InvalidData {
                symbol: symbol.to_string(),
                detail,
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
                    match crate::sources::binance::json::parse_body(body, &mut batch) {
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
            let failure = match outcome {
                Ok(v) => {
                    self.limited.answered();
                    return Ok(v);
                }
                Err(e) => e,
            };
            let reason = match &failure {
                Attempt::Transient(r) => r.clone(),
                _ => String::new(),
            };
            match self
                .config
                .retry
                .next(path, attempt, failure, &self.limited)?
            {
                Next::Pause { status, wait } => {
                    tracing::warn!(
                        path,
                        status,
                        retry_after_secs = wait.as_secs_f64(),
                        "rate-limited by the exchange; every request waits"
                    );
                    self.limiter.pause_until(
                        self.limiter
                            .now_ms()
                            .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
                    );
                    // Waiting out a limit is not a failed attempt.
                    attempt -= 1;
                }
                Next::Backoff(delay) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
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
            return Err(Attempt::Limited {
                status: status.as_u16(),
                retry_after: retry::retry_after(resp.headers()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_base_url_is_refused_without_echoing_credentials() {
        let err =
            BinanceClient::new(ClientConfig::new("ftp://u:secret@host", Market::Spot)).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(BinanceClient::new(ClientConfig::new("not a url", Market::Spot)).is_err());
    }
}
