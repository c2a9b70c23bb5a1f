//! Downloads from Binance's archives: a period's `.CHECKSUM`, then its zip, checked and parsed.
//! Binance states no rate limit for data.binance.vision, so there is no weight to count; the
//! client keeps its own cap on downloads in flight and retries what a retry can fix (5xx,
//! timeouts, dropped connections) under the shared policy ([`crate::sources::retry`]). A 404
//! is an answer: the archive does not hold the file (not published yet, or never), and the
//! caller takes the range from REST.
//!
//! Whether the host can be reached at all is decided once per run: the first download that
//! cannot connect probes the host (a few tries with backoff) while the others wait for the
//! verdict; an unreachable host is one warning and [`ExchangeError::ArchiveUnreachable`] for
//! every later download, never a retry per file.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::sync::Semaphore;

use super::{ArchiveError, Period};
use crate::datasets::klines::KlineBatch;
use crate::market::{Interval, Market, Symbol};
use crate::redact::redact_url;
use crate::sources::ExchangeError;
use crate::sources::binance::ClientConfig;
use crate::sources::error::Attempt;
use crate::sources::retry::{self, LimitedSince, Next, RetryPolicy, describe};

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
    retry: RetryPolicy,
    limited: LimitedSince,
    in_flight: Semaphore,
    stats: ArchiveStats,
    /// Set once the host could not be reached, or by `give_up`: the run does without it.
    unreachable: AtomicBool,
    /// Held while the host is probed; the probes completed so far.
    probe: tokio::sync::Mutex<()>,
    probes: AtomicU64,
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
        let http = crate::sources::http::client(
            "archive",
            base,
            rest.timeout.max(Duration::from_secs(120)),
        )?;
        Ok(ArchiveClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            market: rest.market,
            retry: rest.retry,
            limited: LimitedSince::default(),
            in_flight: Semaphore::new(rest.max_in_flight.max(1)),
            stats: ArchiveStats::default(),
            unreachable: AtomicBool::new(false),
            probe: tokio::sync::Mutex::new(()),
            probes: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> &ArchiveStats {
        &self.stats
    }

    /// After a download failed every attempt: the rest of the run does without the archive
    /// (once logged), so a failing host costs one round of retries, not one per period.
    pub fn give_up(&self, error: &ExchangeError) {
        if !self.unreachable.swap(true, Ordering::Relaxed) {
            tracing::warn!(archive = %redact_url(&self.base), error = %error, "the archive failed; taking history from REST");
        }
    }

    /// Whether this run decided the archive cannot be used (unreachable, or given up on).
    pub fn is_unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Relaxed)
    }

    fn unreachable_error(&self, last: &str) -> ExchangeError {
        ExchangeError::ArchiveUnreachable {
            host: redact_url(&self.base),
            last: last.to_string(),
        }
    }

    /// The archive holds files for intervals from 1s to 1d (longer ones are a few REST pages).
    pub fn serves(interval: Interval) -> bool {
        interval
            .fixed_millis()
            .is_some_and(|ms| ms <= crate::market::interval::DAY)
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
            let klines = super::parse(&file, &zip, interval, period)?;
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

    /// One GET under the retry policy; 404 (and 403, which S3 answers for a missing key) is
    /// `NotFound`. A connection that cannot be made asks whether the host is reachable.
    async fn get(&self, url: &str, file: &str) -> Result<Got, ExchangeError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if self.is_unreachable() {
                return Err(self.unreachable_error("decided earlier in this run"));
            }
            let probes_before = self.probes.load(Ordering::Acquire);
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
                self.attempt(url, file).await
            };
            let failure = match outcome {
                Ok(got) => {
                    self.limited.answered();
                    return Ok(got);
                }
                Err(Failed::Connect(reason)) => {
                    self.check_reachable(probes_before, &reason).await?;
                    // Reachable after all: this download is asked again, as an attempt.
                    Attempt::Transient(reason)
                }
                Err(Failed::Other(f)) => f,
            };
            let reason = match &failure {
                Attempt::Transient(r) => r.clone(),
                _ => String::new(),
            };
            let wait = match self.retry.next(file, attempt, failure, &self.limited)? {
                Next::Pause { wait, .. } => {
                    attempt -= 1;
                    wait
                }
                Next::Backoff(delay) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    delay
                }
            };
            tracing::warn!(file, attempt, reason = %reason, delay_ms = wait.as_millis() as u64, "retrying the archive");
            tokio::time::sleep(wait).await;
        }
    }

    /// One request and how it went.
    async fn attempt(&self, url: &str, file: &str) -> Result<Got, Failed> {
        let resp = match self.http.get(url).send().await {
            Err(e) if e.is_connect() => return Err(Failed::Connect(describe(&e))),
            Err(e) => return Err(Failed::Other(Attempt::Transient(describe(&e)))),
            Ok(resp) => resp,
        };
        match resp.status() {
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => Ok(Got::NotFound),
            s if s.is_success() => resp
                .bytes()
                .await
                .map(Got::Body)
                .map_err(|e| Failed::Other(Attempt::Transient(describe(&e)))),
            s if s == StatusCode::TOO_MANY_REQUESTS || s.as_u16() == 418 => {
                Err(Failed::Other(Attempt::Limited {
                    status: s.as_u16(),
                    retry_after: retry::retry_after(resp.headers()),
                }))
            }
            s if s.is_server_error() => Err(Failed::Other(Attempt::Transient(format!("HTTP {s}")))),
            s => Err(Failed::Other(Attempt::Fatal(ExchangeError::Refused {
                path: file.to_string(),
                status: s.as_u16(),
                code: 0,
                msg: "the archive refused the download".into(),
            }))),
        }
    }

    /// After a download could not connect: decides, once for every download that failed
    /// alike, whether the host can be reached (a few connection tries with backoff). `Ok`
    /// when it can (ask again), the unreachable error when not (logged once).
    async fn check_reachable(&self, probes_before: u64, reason: &str) -> Result<(), ExchangeError> {
        let _probing = self.probe.lock().await;
        if self.is_unreachable() {
            return Err(self.unreachable_error(reason));
        }
        if self.probes.load(Ordering::Acquire) != probes_before {
            // A probe finished after this download started: it found the host.
            return Ok(());
        }
        let tries = self.retry.max_attempts.clamp(1, 3);
        let mut last = reason.to_string();
        for attempt in 1..=tries {
            tracing::debug!(archive = %redact_url(&self.base), attempt, reason = %last, "the archive did not answer; probing it");
            tokio::time::sleep(self.retry.backoff(attempt)).await;
            match self.http.head(&self.base).send().await {
                Err(e) if e.is_connect() || e.is_timeout() => last = describe(&e),
                _ => {
                    self.probes.fetch_add(1, Ordering::Release);
                    return Ok(());
                }
            }
        }
        self.unreachable.store(true, Ordering::Relaxed);
        self.probes.fetch_add(1, Ordering::Release);
        tracing::warn!(archive = %redact_url(&self.base), error = %last, tries = tries + 1, "the archive cannot be reached; the run does without it");
        Err(self.unreachable_error(&last))
    }
}

/// How an attempt failed: no connection (is the host there at all?) or anything else.
enum Failed {
    Connect(String),
    Other(Attempt),
}
