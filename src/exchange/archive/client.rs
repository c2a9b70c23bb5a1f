//! Downloads from Binance's archives: a period's `.CHECKSUM`, then its zip, checked and parsed.
//! Binance states no rate limit for data.binance.vision, so there is no weight to count; the
//! client keeps its own cap on downloads in flight and retries what a retry can fix (5xx,
//! timeouts, dropped connections). A 404 is an answer: the archive does not hold the file
//! (not published yet, or never), and the caller takes the range from REST.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::sync::Semaphore;

use super::{ArchiveError, Period};
use crate::exchange::client::{backoff, describe};
use crate::exchange::{ClientConfig, ExchangeError, Interval, Market, Symbol};
use crate::kline::KlineBatch;
use crate::redact::redact_url;

/// Binance's archive host.
pub const DEFAULT_ARCHIVE_URL: &str = "https://data.binance.vision";

/// A period's klines, with the file they came from and its checksum.
#[derive(Debug)]
pub struct Archived {
    pub file: String,
    pub sha256: String,
    pub klines: KlineBatch,
}

/// Downloads counted for the run summary.
#[derive(Debug, Default)]
pub struct ArchiveStats {
    pub requests: AtomicU64,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub missing: AtomicU64,
    pub retries: AtomicU64,
}

pub struct ArchiveClient {
    http: reqwest::Client,
    base: String,
    market: Market,
    max_attempts: u32,
    retry_base: Duration,
    retry_max: Duration,
    in_flight: Semaphore,
    stats: ArchiveStats,
    /// Set by `give_up`: every later period is "not in the archive".
    unreachable: AtomicBool,
}

impl std::fmt::Debug for ArchiveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveClient")
            .field("base", &redact_url(&self.base))
            .field("market", &self.market)
            .finish_non_exhaustive()
    }
}

enum Got {
    Body(Bytes),
    NotFound,
}

impl ArchiveClient {
    /// A client for the archive at `base`, with the REST client's timeouts and retry policy.
    pub fn new(base: &str, rest: &ClientConfig) -> anyhow::Result<ArchiveClient> {
        let http = crate::exchange::http::client(
            "archive",
            base,
            rest.timeout.max(Duration::from_secs(120)),
        )?;
        Ok(ArchiveClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            market: rest.market,
            max_attempts: rest.max_attempts,
            retry_base: rest.retry_base,
            retry_max: rest.retry_max,
            in_flight: Semaphore::new(rest.max_in_flight.max(1)),
            stats: ArchiveStats::default(),
            unreachable: AtomicBool::new(false),
        })
    }

    pub fn stats(&self) -> &ArchiveStats {
        &self.stats
    }

    /// After the archive could not be reached: the rest of the run does without it (once
    /// logged), so an unreachable host costs one round of retries, not one per period.
    pub fn give_up(&self, error: &ExchangeError) {
        if !self.unreachable.swap(true, Ordering::Relaxed) {
            tracing::warn!(archive = %redact_url(&self.base), error = %error, "the archive cannot be reached; taking history from REST");
        }
    }

    /// The archive holds files for intervals from 1s to 1d (longer ones are a few REST pages).
    pub fn serves(interval: Interval) -> bool {
        interval
            .fixed_millis()
            .is_some_and(|ms| ms <= crate::exchange::interval::DAY)
    }

    fn url(&self, symbol: &Symbol, interval: Interval, period: Period) -> String {
        super::url(&self.base, self.market, symbol, interval, period)
    }

    /// The checksum the archive publishes for a period's file; `None` when it has no file.
    pub async fn checksum(
        &self,
        symbol: &Symbol,
        interval: Interval,
        period: Period,
    ) -> Result<Option<String>, ExchangeError> {
        if self.unreachable.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let file = super::file_name(symbol, interval, period);
        let url = format!("{}.CHECKSUM", self.url(symbol, interval, period));
        match self.get(&url, &file).await? {
            Got::NotFound => Ok(None),
            Got::Body(b) => super::checksum_of(&file, &String::from_utf8_lossy(&b))
                .map(Some)
                .map_err(|e| ExchangeError::Archive(Box::new(e))),
        }
    }

    /// A period's klines, checked against the published checksum before they are parsed;
    /// `None` when the archive has no file for the period.
    pub async fn fetch(
        &self,
        symbol: &Symbol,
        interval: Interval,
        period: Period,
    ) -> Result<Option<Archived>, ExchangeError> {
        let Some(want) = self.checksum(symbol, interval, period).await? else {
            self.stats.missing.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        let file = super::file_name(symbol, interval, period);
        let zip = match self.get(&self.url(symbol, interval, period), &file).await? {
            Got::NotFound => {
                self.stats.missing.fetch_add(1, Ordering::Relaxed);
                return Ok(None);
            }
            Got::Body(b) => b,
        };
        self.stats.files.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(zip.len() as u64, Ordering::Relaxed);
        let parsed = tokio::task::spawn_blocking(move || -> Result<Archived, ArchiveError> {
            let sha256 = super::verify(&file, &zip, &format!("{want}  {file}"))?;
            let klines = super::parse(&file, &zip, interval)?;
            Ok(Archived {
                file,
                sha256,
                klines,
            })
        })
        .await
        .map_err(|e| ExchangeError::Exhausted {
            path: "archive".into(),
            attempts: 1,
            last: format!("the archive parser panicked: {e}"),
        })?;
        parsed
            .map(Some)
            .map_err(|e| ExchangeError::Archive(Box::new(e)))
    }

    /// One GET with retries; 404 (and 403, which S3 answers for a missing key) is `NotFound`.
    async fn get(&self, url: &str, file: &str) -> Result<Got, ExchangeError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = {
                let _slot =
                    self.in_flight
                        .acquire()
                        .await
                        .map_err(|_| ExchangeError::Exhausted {
                            path: file.to_string(),
                            attempts: attempt,
                            last: "client shut down".into(),
                        })?;
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                match self.http.get(url).send().await {
                    // A host that refuses connections or does not resolve gets three tries.
                    Err(e) if e.is_connect() && attempt >= self.max_attempts.min(3) => {
                        return Err(ExchangeError::Exhausted {
                            path: file.to_string(),
                            attempts: attempt,
                            last: describe(&e),
                        });
                    }
                    Err(e) => Err(describe(&e)),
                    Ok(resp) => match resp.status() {
                        StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => return Ok(Got::NotFound),
                        s if s.is_success() => {
                            resp.bytes().await.map(Got::Body).map_err(|e| describe(&e))
                        }
                        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                            Err(format!("HTTP {s}"))
                        }
                        s => {
                            return Err(ExchangeError::Refused {
                                path: file.to_string(),
                                status: s.as_u16(),
                                code: 0,
                                msg: "the archive refused the download".into(),
                            });
                        }
                    },
                }
            };
            match outcome {
                Ok(got) => return Ok(got),
                Err(reason) if attempt >= self.max_attempts => {
                    return Err(ExchangeError::Exhausted {
                        path: file.to_string(),
                        attempts: attempt,
                        last: reason,
                    });
                }
                Err(reason) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff(attempt, self.retry_base, self.retry_max);
                    tracing::warn!(file, attempt, reason = %reason, delay_ms = delay.as_millis() as u64, "retrying the archive");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
