//! Binance kline intervals and the calendar arithmetic of their open times.
//!
//! Fixed-length intervals (1s to 3d) are aligned to the Unix epoch, weeks to Mondays and
//! months to the first of the month, all in UTC. Every time here is milliseconds since the
//! epoch.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, TimeZone, Utc};

pub const SECOND: i64 = 1_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;
/// 1970-01-01 was a Thursday; Binance's weeks open on Mondays.
const WEEK_OFFSET: i64 = 4 * DAY;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    S1,
    M1,
    M3,
    M5,
    M15,
    M30,
    H1,
    H2,
    H4,
    H6,
    H8,
    H12,
    D1,
    D3,
    W1,
    Mo1,
}

impl Interval {
    pub const ALL: [Interval; 16] = [
        Interval::S1,
        Interval::M1,
        Interval::M3,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H2,
        Interval::H4,
        Interval::H6,
        Interval::H8,
        Interval::H12,
        Interval::D1,
        Interval::D3,
        Interval::W1,
        Interval::Mo1,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::S1 => "1s",
            Interval::M1 => "1m",
            Interval::M3 => "3m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::H2 => "2h",
            Interval::H4 => "4h",
            Interval::H6 => "6h",
            Interval::H8 => "8h",
            Interval::H12 => "12h",
            Interval::D1 => "1d",
            Interval::D3 => "3d",
            Interval::W1 => "1w",
            Interval::Mo1 => "1M",
        }
    }

    /// The length of one candle, for every interval but the calendar month.
    pub fn fixed_millis(self) -> Option<i64> {
        Some(match self {
            Interval::S1 => SECOND,
            Interval::M1 => MINUTE,
            Interval::M3 => 3 * MINUTE,
            Interval::M5 => 5 * MINUTE,
            Interval::M15 => 15 * MINUTE,
            Interval::M30 => 30 * MINUTE,
            Interval::H1 => HOUR,
            Interval::H2 => 2 * HOUR,
            Interval::H4 => 4 * HOUR,
            Interval::H6 => 6 * HOUR,
            Interval::H8 => 8 * HOUR,
            Interval::H12 => 12 * HOUR,
            Interval::D1 => DAY,
            Interval::D3 => 3 * DAY,
            Interval::W1 => 7 * DAY,
            Interval::Mo1 => return None,
        })
    }

    /// True for intervals shorter than a day: their files hold one UTC day each.
    pub fn is_intraday(self) -> bool {
        self.fixed_millis().is_some_and(|ms| ms < DAY)
    }

    /// The open time of the candle that contains `t`.
    pub fn floor(self, t: i64) -> i64 {
        match self {
            Interval::W1 => (t - WEEK_OFFSET).div_euclid(7 * DAY) * 7 * DAY + WEEK_OFFSET,
            Interval::Mo1 => {
                let dt = Utc.timestamp_millis_opt(t).single().unwrap_or_default();
                month_start(dt.year(), dt.month())
            }
            _ => {
                let len = self.fixed_millis().unwrap_or(MINUTE);
                t.div_euclid(len) * len
            }
        }
    }

    /// The open time of the first candle that opens at or after `t`.
    pub fn ceil(self, t: i64) -> i64 {
        let floor = self.floor(t);
        if floor == t { t } else { self.next(floor) }
    }

    /// The open time of the candle after the one that opens at `open_time`.
    pub fn next(self, open_time: i64) -> i64 {
        match self.fixed_millis() {
            Some(len) => open_time + len,
            None => {
                let dt = Utc
                    .timestamp_millis_opt(open_time)
                    .single()
                    .unwrap_or_default();
                let (y, m) = if dt.month() == 12 {
                    (dt.year() + 1, 1)
                } else {
                    (dt.year(), dt.month() + 1)
                };
                month_start(y, m)
            }
        }
    }

    /// The close time Binance reports for the candle opening at `open_time`.
    pub fn close_time(self, open_time: i64) -> i64 {
        self.next(open_time) - 1
    }

    /// The open time reached after `n` candles from `open_time`.
    pub fn advance(self, open_time: i64, n: i64) -> i64 {
        match self.fixed_millis() {
            Some(len) => open_time.saturating_add(len.saturating_mul(n)),
            None => (0..n).fold(open_time, |t, _| self.next(t)),
        }
    }
}

fn month_start(year: i32, month: u32) -> i64 {
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .map(|d| d.timestamp_millis())
        .unwrap_or(i64::MAX)
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown interval {0:?} (expected one of 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M)"
)]
pub struct UnknownInterval(String);

impl FromStr for Interval {
    type Err = UnknownInterval;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| UnknownInterval(s.to_string()))
    }
}

impl serde::Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn parses_every_binance_interval_and_nothing_else() {
        for i in Interval::ALL {
            assert_eq!(i.as_str().parse::<Interval>().unwrap(), i);
        }
        assert!("1h ".parse::<Interval>().is_err());
        assert!("1H".parse::<Interval>().is_err());
        assert!("2m".parse::<Interval>().is_err());
    }

    #[test]
    fn weeks_open_on_monday_and_months_on_the_first() {
        // 2024-01-03 is a Wednesday; its week opened on Monday 2024-01-01.
        assert_eq!(
            Interval::W1.floor(ms("2024-01-03T12:00:00Z")),
            ms("2024-01-01T00:00:00Z")
        );
        assert_eq!(
            Interval::W1.next(ms("2024-01-01T00:00:00Z")),
            ms("2024-01-08T00:00:00Z")
        );
        assert_eq!(
            Interval::Mo1.floor(ms("2024-02-29T23:59:59Z")),
            ms("2024-02-01T00:00:00Z")
        );
        assert_eq!(
            Interval::Mo1.next(ms("2024-12-01T00:00:00Z")),
            ms("2025-01-01T00:00:00Z")
        );
        assert_eq!(
            Interval::Mo1.close_time(ms("2024-02-01T00:00:00Z")),
            ms("2024-03-01T00:00:00Z") - 1
        );
        assert_eq!(
            Interval::Mo1.advance(ms("2024-01-01T00:00:00Z"), 13),
            ms("2025-02-01T00:00:00Z")
        );
    }

    #[test]
    fn ceil_rounds_up_to_an_open_time() {
        assert_eq!(
            Interval::M1.ceil(ms("2024-01-01T00:00:00Z")),
            ms("2024-01-01T00:00:00Z")
        );
        assert_eq!(
            Interval::M1.ceil(ms("2024-01-01T00:00:00.001Z")),
            ms("2024-01-01T00:01:00Z")
        );
        assert_eq!(
            Interval::M15.floor(ms("2024-01-01T00:29:59Z")),
            ms("2024-01-01T00:15:00Z")
        );
    }
}
