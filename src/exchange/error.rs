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

    /// HTTP 418: the IP is banned for longer than klines is willing to wait.
    #[error("banned by the exchange (HTTP 418) for {}s; not waiting that long (exchange.max_wait_secs)", .retry_after.as_secs())]
    Banned { retry_after: Duration },

    /// HTTP 429 asking to wait longer than klines is willing to.
    #[error("rate-limited by the exchange (HTTP 429) for {}s; not waiting that long (exchange.max_wait_secs)", .retry_after.as_secs())]
    RateLimited { retry_after: Duration },

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

    /// An archive file that failed its checksum or does not hold klines (names the file).
    #[error(transparent)]
    Archive(Box<super::archive::ArchiveError>),

    /// Symbols the exchange does not list or does not trade.
    #[error("{0}")]
    Symbols(String),
}

impl ExchangeError {
    /// True when the exchange limited or banned this client: the caller should stop and come
    /// back later (exit code 4).
    pub fn is_rate_limit(&self) -> bool {
        matches!(
            self,
            ExchangeError::Banned { .. } | ExchangeError::RateLimited { .. }
        )
    }
}

/// A failed attempt, before the retry policy has decided about it.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Worth another try after a backoff: 5xx, timeouts, dropped connections, bad JSON.
    Transient(String),
    /// 429 or 418 with the wait the server asked for.
    Limited { status: u16, retry_after: Duration },
    /// Final.
    Fatal(ExchangeError),
}
