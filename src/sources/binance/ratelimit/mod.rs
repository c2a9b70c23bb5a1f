//! Pacing requests under Binance's per-IP limits.
//!
//! Binance counts request weight (and raw requests) in fixed windows aligned to the clock,
//! reports the weight used so far in every response (`X-MBX-USED-WEIGHT-1M: 1234`), answers
//! 429 with `Retry-After` when a window's limit is broken and bans (418) clients that go on.
//!
//! The limiter keeps a local count per window and takes the larger of it and the server's
//! count whenever a response reports one. When a new window starts, the first request goes
//! alone (the *probe*): its response tells how much weight the server counted in the new window
//! already (requests that were on the wire at the boundary, other clients on the same IP)
//! before the rest of the budget is released. If the probe finds the window nearly spent just
//! after it began, this machine's clock is probably ahead of the exchange's: the limiter probes
//! again shortly instead of waiting for the next window. A 429 or 418 pauses every request
//! until `Retry-After` has passed.
//!
//! Time comes from a [`Clock`]: epoch milliseconds that advance with tokio's clock, so tests
//! pause tokio's time (`start_paused`) and run windows, probes and pauses deterministically,
//! at any speed, whatever else the machine is doing.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

mod limits;

pub use crate::clock::Clock;
pub use limits::{LimitKind, RateLimit, used_weight_headers};
use reqwest::header::HeaderMap;
use tokio::sync::Notify;

/// Counters for the run summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct LimiterStats {
    /// Requests the server rejected with 429 or 418.
    pub rejected: u64,
    /// Time spent waiting for a window or a `Retry-After`.
    pub waited: Duration,
}

#[derive(Debug)]
struct Window {
    limit: RateLimit,
    budget: u32,
    index: i64,
    used: u32,
    confirmed: bool,
    probing: bool,
    /// When the next probe may go, after a probe that looked like clock skew.
    reprobe_at: i64,
    reprobes: u32,
}

/// Probes in one window before the server's count is taken as it is.
const MAX_REPROBES: u32 = 10;
/// Wait between probes that looked like clock skew.
const REPROBE_DELAY_MS: i64 = 200;

#[derive(Debug)]
struct State {
    windows: Vec<Window>,
    pause_until_ms: i64,
    stats: LimiterStats,
}

/// Paces requests under a set of [`RateLimit`]s. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
    changed: Notify,
    clock: Clock,
}

/// A request's claim on the budget. Hand it back through [`RateLimiter::observe`] with the
/// response; dropped without a response (a transport error), it only releases the probe.
#[derive(Debug)]
pub struct Ticket {
    limiter: Arc<RateLimiter>,
    /// Window index per window at the time the request was sent.
    indices: Vec<i64>,
    /// Windows for which this request is the probe.
    probes: Vec<usize>,
    sent_at_ms: i64,
}

enum Wait {
    Until(i64),
    Probe,
}

impl RateLimiter {
    /// A limiter that lets every request through until [`RateLimiter::set_limits`] is called.
    pub fn new() -> Arc<RateLimiter> {
        RateLimiter::with_clock(Clock::system())
    }

    /// The same, on `clock`.
    pub fn with_clock(clock: Clock) -> Arc<RateLimiter> {
        Arc::new(RateLimiter {
            state: Mutex::new(State {
                windows: Vec::new(),
                pause_until_ms: 0,
                stats: LimiterStats::default(),
            }),
            changed: Notify::new(),
            clock,
        })
    }

    /// The limiter's time, epoch milliseconds: what windows and pauses are measured on.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs the limits read from exchangeInfo. `share` (0 to 1] is the part of each
    /// limit this process may use.
    pub fn set_limits(&self, limits: &[RateLimit], share: f64) {
        let share = share.clamp(0.01, 1.0);
        let mut st = self.lock();
        st.windows = limits
            .iter()
            .map(|&limit| Window {
                limit,
                budget: (((limit.limit as f64) * share).floor() as u32).max(1),
                index: i64::MIN,
                used: 0,
                confirmed: false,
                probing: false,
                reprobe_at: 0,
                reprobes: 0,
            })
            .collect();
        drop(st);
        self.changed.notify_waiters();
    }

    pub fn limits(&self) -> Vec<RateLimit> {
        self.lock().windows.iter().map(|w| w.limit).collect()
    }

    pub fn stats(&self) -> LimiterStats {
        self.lock().stats
    }

    /// Waits until a request of `weight` fits every window, then claims it.
    pub async fn acquire(self: &Arc<Self>, weight: u32) -> Ticket {
        loop {
            // Register interest before looking, so a release in between is not missed.
            let notified = self.changed.notified();
            let wait = {
                let mut st = self.lock();
                let now = self.clock.now_ms();
                match Self::try_claim(&mut st, weight, now) {
                    Ok((indices, probes)) => {
                        return Ticket {
                            limiter: Arc::clone(self),
                            indices,
                            probes,
                            sent_at_ms: now,
                        };
                    }
                    Err(w) => w,
                }
            };
            let started = tokio::time::Instant::now();
            match wait {
                Wait::Until(t) => {
                    tokio::select! {
                        _ = self.clock.sleep_until(t.max(self.clock.now_ms() + 1)) => {}
                        _ = notified => {}
                    }
                }
                Wait::Probe => {
                    // The probe's answer normally comes within a round trip; the timeout only
                    // guards against a lost wake-up.
                    let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
                }
            }
            self.lock().stats.waited += started.elapsed();
        }
    }

    fn try_claim(st: &mut State, weight: u32, now: i64) -> Result<(Vec<i64>, Vec<usize>), Wait> {
        if st.pause_until_ms > now {
            return Err(Wait::Until(st.pause_until_ms));
        }
        let mut until = None;
        let mut probe_in_flight = false;
        for w in st.windows.iter_mut() {
            let index = now.div_euclid(w.limit.window_ms);
            if index != w.index {
                w.index = index;
                w.used = 0;
                w.confirmed = false;
                w.probing = false;
                w.reprobe_at = 0;
                w.reprobes = 0;
            }
            if !w.confirmed && !w.probing && w.reprobe_at > now {
                until = Some(until.map_or(w.reprobe_at, |u: i64| u.max(w.reprobe_at)));
                continue;
            }
            let cost = match w.limit.kind {
                LimitKind::Weight => weight,
                LimitKind::Raw => 1,
            };
            if w.used + cost > w.budget {
                let next = (index + 1) * w.limit.window_ms;
                until = Some(until.map_or(next, |u: i64| u.max(next)));
            } else if !w.confirmed && w.probing {
                probe_in_flight = true;
            }
        }
        if let Some(t) = until {
            return Err(Wait::Until(t));
        }
        if probe_in_flight {
            return Err(Wait::Probe);
        }
        let mut indices = Vec::with_capacity(st.windows.len());
        let mut probes = Vec::new();
        for (i, w) in st.windows.iter_mut().enumerate() {
            w.used += match w.limit.kind {
                LimitKind::Weight => weight,
                LimitKind::Raw => 1,
            };
            indices.push(w.index);
            if !w.confirmed {
                w.probing = true;
                probes.push(i);
            }
        }
        Ok((indices, probes))
    }

    /// Takes the server's view of the used weight from a response's headers.
    pub fn observe(&self, mut ticket: Ticket, headers: &HeaderMap) {
        let used = used_weight_headers(headers);
        let mut st = self.lock();
        for (i, w) in st.windows.iter_mut().enumerate() {
            if ticket.indices.get(i) != Some(&w.index) {
                // The window rolled over while the request was on the wire.
                continue;
            }
            let server = (w.limit.kind == LimitKind::Weight)
                .then(|| {
                    used.iter()
                        .find(|(ms, _)| *ms == w.limit.window_ms)
                        .map(|&(_, u)| u)
                })
                .flatten();
            let is_probe = ticket.probes.contains(&i);
            if is_probe {
                w.probing = false;
                let start = w.index * w.limit.window_ms;
                let early = ticket.sent_at_ms - start < (w.limit.window_ms / 10).min(2_000);
                let spent = server.is_some_and(|s| s >= w.budget / 2);
                if early && spent && w.reprobes < MAX_REPROBES {
                    // Most likely the exchange's clock is behind: it still counts the old window.
                    w.reprobes += 1;
                    w.reprobe_at = self.clock.now_ms() + REPROBE_DELAY_MS;
                    continue;
                }
                w.confirmed = true;
            }
            if let Some(server) = server {
                w.used = w.used.max(server);
            }
        }
        ticket.probes.clear();
        drop(st);
        self.changed.notify_waiters();
    }

    /// Stops every request until `until_ms` (the limiter's clock): the answer to a 429 or 418.
    /// Requests already on the wire are not recalled; their answers still count.
    pub fn pause_until(&self, until_ms: i64) {
        let mut st = self.lock();
        st.pause_until_ms = st.pause_until_ms.max(until_ms);
        st.stats.rejected += 1;
        drop(st);
        self.changed.notify_waiters();
    }

    fn release_probes(&self, probes: &[usize], indices: &[i64]) {
        let mut st = self.lock();
        for &i in probes {
            if let Some(w) = st.windows.get_mut(i)
                && indices.get(i) == Some(&w.index)
            {
                w.probing = false;
            }
        }
        drop(st);
        self.changed.notify_waiters();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.probes.is_empty() {
            let probes = std::mem::take(&mut self.probes);
            self.limiter.release_probes(&probes, &self.indices);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn weight(limit: u32, window_ms: i64) -> RateLimit {
        RateLimit {
            kind: LimitKind::Weight,
            window_ms,
            limit,
        }
    }

    /// A limiter whose clock starts `offset_ms` into a window of `window_ms`, on tokio's
    /// paused time: the tests below never read this machine's clock.
    fn limiter_at(offset_ms: i64, window_ms: i64) -> Arc<RateLimiter> {
        RateLimiter::with_clock(Clock::starting_at(
            1_700_000_000_000 / window_ms * window_ms + window_ms + offset_ms,
        ))
    }

    /// Whether `fut` completes within `ms` of the limiter's (paused) time.
    async fn within<T>(ms: u64, fut: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::time::timeout(Duration::from_millis(ms), fut)
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn never_claims_more_than_the_budget_in_one_window() {
        let window = 60_000;
        let limiter = limiter_at(0, window);
        limiter.set_limits(&[weight(10, window)], 1.0);
        for _ in 0..5 {
            let t = limiter.acquire(2).await;
            limiter.observe(t, &HeaderMap::new());
        }
        // 10 of 10 used: the next claim waits for the next window, exactly.
        let start = limiter.now_ms();
        assert!(
            within(59_000, limiter.acquire(2)).await.is_none(),
            "a sixth request fit"
        );
        let t = limiter.acquire(2).await;
        assert_eq!(
            limiter.now_ms() - start,
            window,
            "released when the next window began"
        );
        assert_eq!(limiter.now_ms() % window, 0);
        drop(t);
    }

    #[tokio::test(start_paused = true)]
    async fn server_count_raises_the_local_one() {
        // Ten minutes into the window: a high count is believed (not taken for clock skew).
        let limiter = limiter_at(600_000, 3_600_000);
        limiter.set_limits(&[weight(100, 3_600_000)], 1.0);
        let t = limiter.acquire(2).await;
        let mut h = HeaderMap::new();
        h.insert("x-mbx-used-weight-60m", HeaderValue::from_static("99"));
        limiter.observe(t, &h);
        assert!(
            within(2_900_000, limiter.acquire(2)).await.is_none(),
            "the server said 99 of 100 were used"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_probe_goes_until_its_answer_arrives() {
        let limiter = limiter_at(0, 3_600_000);
        limiter.set_limits(&[weight(100, 3_600_000)], 1.0);
        let probe = limiter.acquire(1).await;
        assert!(
            within(4_000, limiter.acquire(1)).await.is_none(),
            "a second request went before the probe's answer"
        );
        limiter.observe(probe, &HeaderMap::new());
        assert!(within(1, limiter.acquire(1)).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_lets_the_next_request_probe() {
        let limiter = limiter_at(0, 3_600_000);
        limiter.set_limits(&[weight(100, 3_600_000)], 1.0);
        drop(limiter.acquire(1).await);
        let next = within(1, limiter.acquire(1)).await.expect("not held back");
        assert!(next.probes.contains(&0));
    }

    fn nearly_spent() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-mbx-used-weight-1s", HeaderValue::from_static("99"));
        h
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_that_looks_spent_at_its_start_is_probed_again() {
        // Just after the window began, the server says 99 of 100 are used: its clock is
        // behind. Another probe goes after REPROBE_DELAY_MS, not after the whole window.
        let limiter = limiter_at(10, 1_000);
        limiter.set_limits(&[weight(100, 1_000)], 1.0);
        let probe = limiter.acquire(2).await;
        limiter.observe(probe, &nearly_spent());
        let at = limiter.now_ms();
        let next = limiter.acquire(2).await;
        assert!(next.probes.contains(&0));
        assert_eq!(
            limiter.now_ms() - at,
            REPROBE_DELAY_MS,
            "re-probed after the delay"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_window_is_believed_late_in_the_window() {
        let limiter = limiter_at(500, 1_000);
        limiter.set_limits(&[weight(100, 1_000)], 1.0);
        let probe = limiter.acquire(2).await;
        limiter.observe(probe, &nearly_spent());
        let at = limiter.now_ms();
        let next = limiter.acquire(2).await;
        assert_eq!(
            limiter.now_ms() - at,
            500,
            "99 of 100 used: it waited for the next window"
        );
        drop(next);
    }

    #[tokio::test(start_paused = true)]
    async fn pause_holds_every_request() {
        let limiter = limiter_at(0, 60_000);
        limiter.pause_until(limiter.now_ms() + 300);
        let at = limiter.now_ms();
        let t = limiter.acquire(1).await;
        assert_eq!(limiter.now_ms() - at, 300);
        limiter.observe(t, &HeaderMap::new());
        assert_eq!(limiter.stats().rejected, 1);
    }

    /// A 429 arrives while other requests are on the wire: they are not recalled, their
    /// answers (with the server's count) still count, and nothing new goes until Retry-After.
    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_when_a_429_arrives_still_count() {
        let limiter = limiter_at(0, 60_000);
        limiter.set_limits(&[weight(100, 60_000)], 1.0);
        let probe = limiter.acquire(1).await;
        limiter.observe(probe, &HeaderMap::new());
        let on_the_wire: Vec<Ticket> =
            futures::future::join_all((0..3).map(|_| limiter.acquire(1))).await;
        // The first answer is a 429 with Retry-After: 2.
        limiter.pause_until(limiter.now_ms() + 2_000);
        let at = limiter.now_ms();
        // The others answer after it, the last one reporting the server's count.
        let mut h = HeaderMap::new();
        h.insert("x-mbx-used-weight-1m", HeaderValue::from_static("98"));
        let none = HeaderMap::new();
        for (i, t) in on_the_wire.into_iter().enumerate() {
            limiter.observe(t, if i == 2 { &h } else { &none });
        }
        let t = limiter.acquire(1).await;
        assert_eq!(
            limiter.now_ms() - at,
            2_000,
            "nothing went before Retry-After"
        );
        limiter.observe(t, &HeaderMap::new());
        // 98 + 1 + 1 of 100: a request of 2 waits for the next window.
        assert!(within(50_000, limiter.acquire(2)).await.is_none());
        assert_eq!(limiter.stats().rejected, 1);
    }
}
