//! What can go wrong talking to the exchange, by what the caller should do about it.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The exchange refused the request itself (HTTP 4xx with Binance's `{"code","msg"}`):
    /// asking again gets the same answer.
    #[error("{path}: the exchange refused the request: HTTP {status}, code {code}: {msg}")]
    Refused {
        path: String,
        status: u16,
        code: i64,
        msg: String,
    },

    /// HTTP 403: Binance's web application firewall blocked the request.
    #[error("{path}: blocked by the exchange's firewall (HTTP 403)")]
    Firewall { path: String },

    /// HTTP 429 (rate-limited) or 418 (banned) asking to wait longer than klines is willing
    /// to (`max_wait`), or limited with no successful answer for that long.
    #[error("{}", rate_limit_message(*.status, *.retry_after, *.limited_for, *.max_wait))]
    RateLimited {
        status: u16,
        retry_after: Duration,
        /// How long the client had been limited without a successful answer before this one.
        limited_for: Duration,
        max_wait: Duration,
    },

    /// A well-formed answer carrying data klines cannot keep exactly.
    #[error("{symbol}: {detail}")]
    InvalidData { symbol: String, detail: String },

    /// Every attempt failed with an error that retrying could have fixed.
    #[error("{path}: gave up after {attempts} attempts; last error: {last}")]
    Exhausted {
        path: String,
        attempts: u32,
        last: String,
    },

    /// The archive's host could not be reached: decided once per run.
    #[error("the archive at {host} cannot be reached: {last}")]
    ArchiveUnreachable { host: String, last: String },

    /// An archive file that failed its checksum or does not hold klines (names the file).
    #[error(transparent)]
    Archive(Box<super::binance::archive::ArchiveError>),

    /// Symbols the exchange does not list or does not trade.
    #[error("{0}")]
    Symbols(String),
}

impl ExchangeError {
    /// True when the exchange limited or banned this client: the caller should stop and come
    /// back later (exit code 4).
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, ExchangeError::RateLimited { .. })
    }
}

/// Says which rule ended the run: one wait too long, or limited for too long in all.
fn rate_limit_message(
    status: u16,
    wait: Duration,
    limited_for: Duration,
    max_wait: Duration,
) -> String {
    let what = if status == 418 {
        "banned by the exchange (HTTP 418)"
    } else {
        "rate-limited by the exchange (HTTP 429)"
    };
    let secs = |d: Duration| {
        if d >= Duration::from_secs(1 << 40) {
            "an unbounded time".to_string()
        } else {
            format!("{}s", d.as_secs_f64().round() as u64)
        }
    };
    let limit = max_wait.as_secs();
    if wait > max_wait {
        format!(
            "{what} for {}; not waiting that long (exchange.max_wait_secs is {limit})",
            secs(wait)
        )
    } else {
        format!(
            "{what} with no successful answer for {}, and asked to wait {} more; not waiting past exchange.max_wait_secs ({limit})",
            secs(limited_for),
            secs(wait)
        )
    }
}

/// A failed attempt, before the retry policy has decided about it.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Worth another try after a backoff: 5xx, timeouts, dropped connections, bad JSON.
    Transient(String),
    /// 429 or 418 with the wait the server asked for (`None`: it did not say).
    Limited {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Final.
    Fatal(ExchangeError),
}
