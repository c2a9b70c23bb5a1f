//! Calendar periods of UTC time: the month or day a bulk archive's file holds.

use chrono::{Datelike, TimeZone, Utc};

/// A calendar month or UTC day: what a bulk archive's file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Month { year: i32, month: u32 },
    Day { year: i32, month: u32, day: u32 },
}

impl Period {
    /// The month holding `t` (epoch ms).
    pub fn month_of(t: i64) -> Period {
        let d = Utc.timestamp_millis_opt(t).single().unwrap_or_default();
        Period::Month {
            year: d.year(),
            month: d.month(),
        }
    }

    /// The UTC day holding `t` (epoch ms).
    pub fn day_of(t: i64) -> Period {
        let d = Utc.timestamp_millis_opt(t).single().unwrap_or_default();
        Period::Day {
            year: d.year(),
            month: d.month(),
            day: d.day(),
        }
    }

    /// The period's open times, `[start, end)` in epoch ms.
    pub fn range(self) -> (i64, i64) {
        let at = |y: i32, m: u32, d: u32| {
            Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
                .single()
                .map(|t| t.timestamp_millis())
                .unwrap_or_default()
        };
        match self {
            Period::Month { year, month } => {
                let (ny, nm) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                (at(year, month, 1), at(ny, nm, 1))
            }
            Period::Day { year, month, day } => {
                let start = at(year, month, day);
                (start, start + super::interval::DAY)
            }
        }
    }

    /// "month" or "day".
    pub fn noun(self) -> &'static str {
        match self {
            Period::Month { .. } => "month",
            Period::Day { .. } => "day",
        }
    }

    /// `2024-03` or `2024-03-05`.
    pub fn label(self) -> String {
        match self {
            Period::Month { year, month } => format!("{year:04}-{month:02}"),
            Period::Day { year, month, day } => format!("{year:04}-{month:02}-{day:02}"),
        }
    }
}
