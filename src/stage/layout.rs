//! Object keys in the stage. Hive-style partitions, deterministic names:
//!
//! ```text
//! exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-05.parquet
//!                                                                   a closed UTC day
//! exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-20240106T000000Z-20240106T133700Z.parquet
//!                                                                   part of a day
//! exchange=binance/market=spot/interval=1d/symbol=BTCUSDT/BTCUSDT-1d-2023.parquet
//!                                                                   a closed UTC year
//! _manifest/<data key>.<sha256 prefix>.json                         one per staged file
//! ```
//! Intervals shorter than a day get one file per UTC day, the others one per UTC year.
//!
//! Stages written before the exchange was part of the layout have keys without the first
//! part (`market=spot/...`): they are Binance's, and are read as they are (a file is never
//! renamed; a unit staged again is written under the new key, and the loader's newest-wins
//! rule picks the newer file).

use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::market::{Exchange, Interval, Series, Symbol};

/// Where the manifest entries live, below the stage root.
pub const MANIFEST_DIR: &str = "_manifest";

fn utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// The file unit holding the candle that opens at `t`: `[start, end)`.
pub fn unit_of(interval: Interval, t: i64) -> (i64, i64) {
    let d = utc(t);
    if interval.is_intraday() {
        let start = Utc
            .with_ymd_and_hms(d.year(), d.month(), d.day(), 0, 0, 0)
            .single()
            .unwrap_or_default();
        let start = start.timestamp_millis();
        (start, start + crate::market::interval::DAY)
    } else {
        let start = Utc
            .with_ymd_and_hms(d.year(), 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let end = Utc
            .with_ymd_and_hms(d.year() + 1, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        (start.timestamp_millis(), end.timestamp_millis())
    }
}

fn stamp(ms: i64) -> String {
    utc(ms).format("%Y%m%dT%H%M%SZ").to_string()
}

/// The key of a data file covering `[start, end)` of the unit `[unit_start, unit_end)`.
pub fn data_key(series: &Series, unit: (i64, i64), start: i64, end: i64) -> String {
    let (sym, iv) = (&series.symbol, series.interval);
    let name = if (start, end) == unit {
        let d = utc(unit.0);
        if series.interval.is_intraday() {
            format!("{sym}-{iv}-{}.parquet", d.format("%Y-%m-%d"))
        } else {
            format!("{sym}-{iv}-{}.parquet", d.year())
        }
    } else {
        format!("{sym}-{iv}-{}-{}.parquet", stamp(start), stamp(end))
    };
    format!("{}/{name}", series.prefix())
}

/// The manifest entry of the data file `data_key` with content hash `sha256` (hex).
pub fn manifest_key(data_key: &str, sha256: &str) -> String {
    format!(
        "{MANIFEST_DIR}/{data_key}.{}.json",
        &sha256[..16.min(sha256.len())]
    )
}

/// Splits a manifest key back into the data key and the hash prefix.
pub fn parse_manifest_key(key: &str) -> Option<(&str, &str)> {
    let rest = key
        .strip_prefix(MANIFEST_DIR)?
        .strip_prefix('/')?
        .strip_suffix(".json")?;
    let (data, hash) = rest.rsplit_once('.')?;
    data.ends_with(".parquet").then_some((data, hash))
}

/// A data file's series and open-time range, read back from its key: the inverse of
/// [`data_key`] (keys of the layout without the exchange are Binance's). `None` for anything
/// that is not a data file klines names.
pub fn parse_data_key(key: &str) -> Option<(Series, (i64, i64))> {
    let (exchange, rest) = match key.strip_prefix("exchange=") {
        Some(r) => {
            let (e, rest) = r.split_once('/')?;
            (e.parse::<Exchange>().ok()?, rest)
        }
        None => (Exchange::BINANCE, key),
    };
    let legacy = rest.len() == key.len();
    let mut parts = rest.split('/');
    let market = parts.next()?.strip_prefix("market=")?.parse().ok()?;
    let interval: Interval = parts.next()?.strip_prefix("interval=")?.parse().ok()?;
    let symbol = Symbol::parse(parts.next()?.strip_prefix("symbol=")?).ok()?;
    let name = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let series = Series {
        exchange,
        market,
        symbol,
        interval,
    };
    let body = name
        .strip_prefix(&format!("{}-{}-", series.symbol, series.interval))?
        .strip_suffix(".parquet")?;
    let day = |s: &str| {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_millis())
    };
    let instant = |s: &str| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ")
            .ok()
            .map(|t| t.and_utc().timestamp_millis())
    };
    let range = if let Some((a, b)) = body.split_once('-').filter(|(a, _)| a.contains('T')) {
        (instant(a)?, instant(b)?)
    } else if interval.is_intraday() {
        unit_of(interval, day(body)?)
    } else {
        unit_of(interval, day(&format!("{body}-01-01"))?)
    };
    // Only the names klines writes: the key must come out the same.
    let unit = unit_of(interval, range.0);
    let written = data_key(&series, unit, range.0, range.1);
    let same = if legacy {
        written.strip_prefix(&format!("exchange={exchange}/")) == Some(key)
    } else {
        written == key
    };
    (range.0 < range.1 && same).then_some((series, range))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Market;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    fn series(interval: Interval) -> Series {
        Series {
            exchange: Exchange::BINANCE,
            market: Market::Spot,
            symbol: Symbol::parse("BTCUSDT").unwrap(),
            interval,
        }
    }

    #[test]
    fn names_days_years_and_parts() {
        let s = series(Interval::M1);
        let day = unit_of(Interval::M1, ms("2024-01-05T13:37:00Z"));
        assert_eq!(
            day,
            (ms("2024-01-05T00:00:00Z"), ms("2024-01-06T00:00:00Z"))
        );
        assert_eq!(
            data_key(&s, day, day.0, day.1),
            "exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-05.parquet"
        );
        assert_eq!(
            data_key(&s, day, day.0, ms("2024-01-05T13:37:00Z")),
            "exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-20240105T000000Z-20240105T133700Z.parquet"
        );
        let year = unit_of(Interval::D1, ms("2023-06-01T00:00:00Z"));
        assert_eq!(
            data_key(&series(Interval::D1), year, year.0, year.1),
            "exchange=binance/market=spot/interval=1d/symbol=BTCUSDT/BTCUSDT-1d-2023.parquet"
        );
    }

    #[test]
    fn data_keys_parse_back() {
        let s = series(Interval::M1);
        let day = unit_of(Interval::M1, ms("2024-01-05T13:37:00Z"));
        let part = (day.0, ms("2024-01-05T13:37:00Z"));
        for (series, unit, range) in [
            (s.clone(), day, day),
            (s.clone(), day, part),
            (
                series(Interval::D1),
                unit_of(Interval::D1, ms("2023-06-01T00:00:00Z")),
                unit_of(Interval::D1, ms("2023-06-01T00:00:00Z")),
            ),
        ] {
            let key = data_key(&series, unit, range.0, range.1);
            assert_eq!(parse_data_key(&key), Some((series.clone(), range)), "{key}");
            // A stage written before the exchange was in the layout: Binance's.
            let legacy = key.strip_prefix("exchange=binance/").unwrap();
            assert_eq!(parse_data_key(legacy), Some((series, range)), "{legacy}");
        }
        for bad in [
            "market=spot/interval=1m/symbol=BTCUSDT/ETHUSDT-1m-2024-01-05.parquet",
            "market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-13-05.parquet",
            "market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-05.parquet#1",
            "market=spot/interval=2m/symbol=BTCUSDT/BTCUSDT-2m-2024-01-05.parquet",
            "_manifest/x.parquet",
            "exchange=nyse/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-05.parquet",
            "exchange=binance/exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-05.parquet",
        ] {
            assert_eq!(parse_data_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn manifest_keys_round_trip() {
        let data = "market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-05.parquet";
        let key = manifest_key(data, "0123456789abcdef0123");
        assert_eq!(key, format!("_manifest/{data}.0123456789abcdef.json"));
        assert_eq!(parse_manifest_key(&key), Some((data, "0123456789abcdef")));
        assert_eq!(parse_manifest_key("_manifest/x.json"), None);
    }
}
