//! Reading and printing points in time, always UTC, as epoch milliseconds.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid {what} {value:?}: expected a date (2024-01-31), a UTC date-time (2024-01-31T12:00:00Z, \
     2024-01-31 12:00), `now`, or a time ago (-7d, -12h, -30m)"
)]
pub struct TimeError {
    pub what: String,
    pub value: String,
}

/// Parses `2024-01-31` (UTC midnight), `2024-01-31T12:00[:00[.000]][Z|+02:00]`,
/// `2024-01-31 12:00[:00]`, `now`, or a duration before `now_ms` like `-7d`, `-12h`, `-30m`,
/// `-45s`. `what` names the flag or setting in the error.
/// Whether `value` depends on the current time (`now`, `-7d`).
pub fn is_relative(value: &str) -> bool {
    let v = value.trim();
    v == "now" || v.starts_with('-')
}

pub fn parse(what: &str, value: &str, now_ms: i64) -> Result<i64, TimeError> {
    parse_inner(value.trim(), now_ms).ok_or_else(|| TimeError {
        what: what.to_string(),
        value: value.to_string(),
    })
}

fn parse_inner(v: &str, now_ms: i64) -> Option<i64> {
    if v == "now" {
        return Some(now_ms);
    }
    if let Some(ago) = v.strip_prefix('-') {
        let (num, unit) = ago.split_at(ago.find(|c: char| !c.is_ascii_digit())?);
        let n: i64 = num.parse().ok()?;
        let ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return None,
        };
        return now_ms.checked_sub(n.checked_mul(ms)?);
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Some(
            Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?)
                .timestamp_millis(),
        );
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(v) {
        return Some(dt.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        let s = v.strip_suffix('Z').unwrap_or(v);
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Utc.from_utc_datetime(&dt).timestamp_millis());
        }
    }
    None
}

/// `2024-01-31T12:00:00Z` (milliseconds shown only when there are some).
pub fn format_ms(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(d) if ms % 1000 == 0 => d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_704_110_400_000; // 2024-01-01T12:00:00Z

    #[test]
    fn reads_dates_datetimes_and_durations() {
        assert_eq!(
            parse("--from", "2024-01-01", NOW).unwrap(),
            1_704_067_200_000
        );
        assert_eq!(parse("--from", "2024-01-01T12:00:00Z", NOW).unwrap(), NOW);
        assert_eq!(
            parse("--from", "2024-01-01T14:00:00+02:00", NOW).unwrap(),
            NOW
        );
        assert_eq!(parse("--from", "2024-01-01T12:00", NOW).unwrap(), NOW);
        assert_eq!(parse("--from", "2024-01-01 12:00:00", NOW).unwrap(), NOW);
        assert_eq!(parse("--from", "now", NOW).unwrap(), NOW);
        assert_eq!(parse("--from", "-1d", NOW).unwrap(), NOW - 86_400_000);
        assert_eq!(parse("--from", "-90m", NOW).unwrap(), NOW - 90 * 60_000);
    }

    #[test]
    fn bad_input_names_the_flag_and_value() {
        for bad in [
            "2024-13-01",
            "2024-02-30",
            "yesterday",
            "-7x",
            "-d",
            "2024/01/01",
            "",
        ] {
            let err = parse("--to", bad, NOW).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid --to {bad:?}")), "{err}");
        }
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_ms(NOW), "2024-01-01T12:00:00Z");
        assert_eq!(format_ms(NOW + 5), "2024-01-01T12:00:00.005Z");
    }
}
