//! The one retry policy every exchange client runs (Binance's REST, Coinbase, the archives).
//!
//! - A transient failure (5xx, a timeout, a dropped connection, a bad body) is retried with
//!   full-jitter exponential backoff, at most `max_attempts` times per request.
//! - A rate limit (429, 418) is not a failed attempt: it is waited out and asked again, every
//!   time. The client's pacing takes the wait (so every request waits, not only this one).
//! - A run ends on a rate limit only when waiting would pass `max_wait`: one `Retry-After`
//!   longer than it (`inf` included), or the client has been limited with no successful
//!   answer in between for longer than it. Isolated 429s over a long run never add up.

use std::sync::Mutex;
use std::time::Duration;

use super::error::{Attempt, ExchangeError};

/// How hard a client tries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per request for transient failures.
    pub max_attempts: u32,
    /// First backoff; it doubles per attempt, with full jitter, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// The longest wait for a rate limit worth waiting (one `Retry-After`, or being limited
    /// without a successful answer in between); longer ends the run (exit code 4).
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            max_wait: Duration::from_secs(300),
        }
    }
}

/// What the caller does before its next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Sleep this long (a backoff after a transient failure), then try again.
    Backoff(Duration),
    /// Every request of the client waits this long (the pacing takes it), then this one is
    /// asked again; it is not a failed attempt.
    Pause { status: u16, wait: Duration },
}

/// Since when a client has been rate-limited without a successful answer in between (on
/// tokio's clock, so tests run it paused).
#[derive(Debug, Default)]
pub struct LimitedSince(Mutex<Option<(tokio::time::Instant, u32)>>);

impl LimitedSince {
    /// A successful answer: the client is not limited.
    pub fn answered(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A limited answer: how long the client has been limited, and how many limited answers
    /// in a row this one makes.
    fn limited(&self) -> (Duration, u32) {
        let mut since = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (at, n) = since.get_or_insert((tokio::time::Instant::now(), 0));
        *n += 1;
        (at.elapsed(), *n)
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff: uniform in [base, min(max, base * 2^(attempt-1))].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let (base, max) = (self.retry_base, self.retry_max);
        let cap = base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(max);
        let lo = base.min(cap).as_millis() as u64;
        let hi = cap.as_millis() as u64;
        Duration::from_millis(if hi > lo { fastrand::u64(lo..=hi) } else { lo })
    }

    /// Decides after the failed attempt number `attempt` (1-based) of a request to `path`;
    /// `limited` is the client's, shared by all its requests.
    pub(crate) fn next(
        &self,
        path: &str,
        attempt: u32,
        failure: Attempt,
        limited: &LimitedSince,
    ) -> Result<Next, ExchangeError> {
        match failure {
            Attempt::Fatal(e) => Err(e),
            Attempt::Limited {
                status,
                retry_after,
            } => {
                let (so_far, in_a_row) = limited.limited();
                // Without a Retry-After, a backoff that grows with the limited answers in a row.
                let wait = retry_after.unwrap_or_else(|| self.backoff(in_a_row));
                if wait > self.max_wait || so_far.saturating_add(wait) > self.max_wait {
                    return Err(ExchangeError::RateLimited {
                        status,
                        retry_after: wait,
                        limited_for: so_far,
                        max_wait: self.max_wait,
                    });
                }
                Ok(Next::Pause { status, wait })
            }
            Attempt::Transient(reason) if attempt >= self.max_attempts => {
                Err(ExchangeError::Exhausted {
                    path: path.to_string(),
                    attempts: attempt,
                    last: reason,
                })
            }
            Attempt::Transient(_) => Ok(Next::Backoff(self.backoff(attempt))),
        }
    }
}

/// `Retry-After` in seconds (the exchanges send whole ones). A value too large for a
/// `Duration` (`1e30`, `1e400`, `inf`) is an unbounded wait: longer than any `max_wait`, so
/// it ends the run. Not a number (a date, `NaN`, a negative): `None`, a backoff.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs = v.trim().parse::<f64>().ok()?;
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// The `Retry-After` header of a response, if it holds a number.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(secs: Option<u64>) -> Attempt {
        Attempt::Limited {
            status: 429,
            retry_after: secs.map(Duration::from_secs),
        }
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let p = RetryPolicy {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        for attempt in 1..30 {
            let d = p.backoff(attempt);
            assert!(d >= p.retry_base && d <= p.retry_max, "{attempt}: {d:?}");
        }
        assert_eq!(p.backoff(1), p.retry_base);
    }

    #[test]
    fn retry_after_takes_any_number_without_panicking() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        for unbounded in ["1e30", "1e400", "inf", "Infinity", "+inf"] {
            assert_eq!(
                parse_retry_after(unbounded),
                Some(Duration::MAX),
                "{unbounded}"
            );
        }
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("-inf"), None);
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

    /// A 429 now and then, however many over a run, is waited out every time: a successful
    /// answer in between starts the count again.
    #[tokio::test(start_paused = true)]
    async fn isolated_rate_limits_never_end_a_run() {
        let p = RetryPolicy {
            max_wait: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let since = LimitedSince::default();
        for _ in 0..1000 {
            let next = p.next("/x", 1, limited(Some(3)), &since).unwrap();
            assert_eq!(
                next,
                Next::Pause {
                    status: 429,
                    wait: Duration::from_secs(3)
                }
            );
            tokio::time::advance(Duration::from_secs(3)).await;
            since.answered();
        }
    }

    /// Limited with no success in between: the run ends once waiting would pass max_wait,
    /// and the error says which rule and the setting's name.
    #[tokio::test(start_paused = true)]
    async fn being_limited_longer_than_max_wait_ends_the_run() {
        let p = RetryPolicy {
            max_wait: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let since = LimitedSince::default();
        let mut waited = 0;
        let err = loop {
            match p.next("/x", 1, limited(Some(3)), &since) {
                Ok(Next::Pause { wait, .. }) => {
                    tokio::time::advance(wait).await;
                    waited += 3;
                }
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(waited, 9);
        assert!(err.is_rate_limit());
        let msg = err.to_string();
        assert_eq!(
            msg,
            "rate-limited by the exchange (HTTP 429) with no successful answer for 9s, and asked to wait 3s more; not waiting past exchange.max_wait_secs (10)"
        );
        // One Retry-After past max_wait, or an unbounded one.
        let fresh = LimitedSince::default();
        let msg = p
            .next("/x", 1, limited(Some(11)), &fresh)
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "rate-limited by the exchange (HTTP 429) for 11s; not waiting that long (exchange.max_wait_secs is 10)"
        );
        let unbounded = Attempt::Limited {
            status: 418,
            retry_after: Some(Duration::MAX),
        };
        let msg = p.next("/x", 1, unbounded, &fresh).unwrap_err().to_string();
        assert_eq!(
            msg,
            "banned by the exchange (HTTP 418) for an unbounded time; not waiting that long (exchange.max_wait_secs is 10)"
        );
    }

    #[test]
    fn transient_failures_take_max_attempts() {
        let p = RetryPolicy::default();
        let since = LimitedSince::default();
        for attempt in 1..p.max_attempts {
            assert!(matches!(
                p.next("/x", attempt, Attempt::Transient("503".into()), &since),
                Ok(Next::Backoff(_))
            ));
        }
        let e = p
            .next(
                "/x",
                p.max_attempts,
                Attempt::Transient("HTTP 503".into()),
                &since,
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/x: gave up after 8 attempts; last error: HTTP 503"
        );
    }
}
