//! The injectable clock: epoch milliseconds that advance with tokio's clock, so tests pause
//! tokio's time (`start_paused`) and run an hour of exchange time in seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Epoch milliseconds: a starting point, then tokio's monotonic clock. In production the start
/// is this machine's clock; tests start it anywhere and pause tokio's time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin_ms: i64,
    origin: tokio::time::Instant,
}

impl Clock {
    /// This machine's clock.
    pub fn system() -> Clock {
        Clock::starting_at(system_ms())
    }

    /// A clock that reads `ms` now and advances with tokio's time.
    pub fn starting_at(ms: i64) -> Clock {
        Clock {
            origin_ms: ms,
            origin: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.origin_ms + self.origin.elapsed().as_millis() as i64
    }

    /// Sleeps until the clock reads `ms`.
    pub async fn sleep_until(&self, ms: i64) {
        let wait = (ms - self.now_ms()).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// The current epoch milliseconds on this machine's clock.
pub fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
