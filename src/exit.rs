//! Exit codes, stable for schedulers:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure |
//! | 2 | bad usage or configuration (flags, klines.yml, profiles.yml, unknown symbols) |
//! | 3 | partly failed: some series, files, models or tests failed, the rest succeeded |
//! | 4 | rate-limited or banned by the exchange: come back later |
//! | 130 | interrupted (Ctrl-C or SIGTERM) |

use crate::sources::ExchangeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Success = 0,
    Failure = 1,
    Usage = 2,
    Partial = 3,
    RateLimited = 4,
    Interrupted = 130,
}

pub use crate::error::{PartialFailure, UsageError};

/// Finds a `T` among an error's contexts and causes.
fn find<T>(err: &anyhow::Error) -> Option<&T>
where
    T: std::error::Error + Send + Sync + 'static,
{
    err.downcast_ref::<T>()
        .or_else(|| err.chain().find_map(|c| c.downcast_ref::<T>()))
}

/// The exit code for an error, from the most telling cause in its chain.
pub fn classify(err: &anyhow::Error) -> Code {
    if find::<crate::cancel::Interrupted>(err).is_some() {
        return Code::Interrupted;
    }
    if find::<ExchangeError>(err).is_some_and(|e| e.is_rate_limit()) {
        Code::RateLimited
    } else if find::<UsageError>(err).is_some()
        || find::<crate::time::TimeError>(err).is_some()
        || find::<ExchangeError>(err).is_some_and(|e| matches!(e, ExchangeError::Symbols(_)))
    {
        Code::Usage
    } else if find::<PartialFailure>(err).is_some() {
        Code::Partial
    } else {
        Code::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_most_telling_cause_decides() {
        let banned = anyhow::Error::new(ExchangeError::RateLimited {
            status: 418,
            retry_after: Duration::from_secs(600),
            limited_for: Duration::ZERO,
            max_wait: Duration::from_secs(300),
        })
        .context("BTCUSDT")
        .context(PartialFailure("1 of 2 series failed".into()));
        assert_eq!(classify(&banned), Code::RateLimited);
        let usage = anyhow::Error::new(UsageError("bad".into())).context("klines.yml");
        assert_eq!(classify(&usage), Code::Usage);
        assert_eq!(classify(&anyhow::anyhow!("x")), Code::Failure);
    }
}
