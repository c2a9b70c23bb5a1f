//! Coinbase's JSON numbers read exactly: candle rows (`[time_s, low, high, open, close,
//! volume]`, newest first) and the clock's epoch, from the body's text, never through f64.

use crate::datasets::klines::Kline;

/// The `epoch` of a `/time` body in milliseconds, read from its text.
pub fn epoch_ms(body: &str) -> Option<i64> {
    let at = body.find("\"epoch\"")? + "\"epoch\"".len();
    let rest = body[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')))
        .unwrap_or(rest.len());
    let seconds = json_decimal(&rest[..end]).ok()?; // units of 1e-8 seconds
    i64::try_from(seconds / 100_000).ok()
}

/// A JSON number's text as an exact decimal (units of 1e-8): digits, an optional fraction and
/// an optional exponent are shifted as text, never through a float.
pub fn json_decimal(text: &str) -> Result<i128, String> {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (
            &text[..i],
            text[i + 1..]
                .parse::<i32>()
                .map_err(|_| format!("bad exponent in {text:?}"))?,
        ),
        None => (text, 0),
    };
    let (neg, digits) = match mantissa.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, mantissa),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || exp.abs() > 40
    {
        return Err(format!("{text:?} is not a number"));
    }
    // All digits, and where the point goes after the exponent.
    let all = format!("{int}{frac}");
    let point = int.len() as i32 + exp;
    let shifted = if point <= 0 {
        format!("0.{}{all}", "0".repeat((-point) as usize))
    } else if point as usize >= all.len() {
        format!("{all}{}", "0".repeat(point as usize - all.len()))
    } else {
        format!("{}.{}", &all[..point as usize], &all[point as usize..])
    };
    let v = crate::decimal::parse(&shifted).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(if neg { -v } else { v })
}

/// `[[time_s, low, high, open, close, volume], ...]` into klines of `len_ms` each (any order),
/// every time on the granularity's grid.
pub fn parse_candles(body: &[u8], len_ms: i64) -> Result<Vec<Kline>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| {
            format!(
                "not a JSON array: {:?}",
                crate::sources::http::excerpt(text, 100)
            )
        })?
        .trim();
    let mut out = Vec::new();
    if inner.is_empty() {
        return Ok(out);
    }
    for (i, row) in inner
        .split(']')
        .filter(|r| !r.trim().is_empty())
        .enumerate()
    {
        let row = row
            .trim()
            .trim_start_matches(',')
            .trim()
            .strip_prefix('[')
            .ok_or_else(|| format!("row {i}: not an array"))?;
        let f: Vec<&str> = row.split(',').map(str::trim).collect();
        if f.len() != 6 {
            return Err(format!("row {i}: {} fields, not 6", f.len()));
        }
        let time_s: i64 = f[0]
            .parse()
            .map_err(|_| format!("row {i}: time {:?} is not whole seconds", f[0]))?;
        let dec =
            |j: usize, name: &str| json_decimal(f[j]).map_err(|e| format!("row {i}: {name}: {e}"));
        let open_time = time_s
            .checked_mul(1000)
            .ok_or_else(|| format!("row {i}: time {time_s} is out of range"))?;
        if open_time.rem_euclid(len_ms) != 0 {
            return Err(format!(
                "row {i}: time {time_s} is not on the {}s grid of the granularity",
                len_ms / 1000
            ));
        }
        let k = Kline {
            open_time,
            low: dec(1, "low")?,
            high: dec(2, "high")?,
            open: dec(3, "open")?,
            close: dec(4, "close")?,
            volume: dec(5, "volume")?,
            close_time: open_time + len_ms - 1,
            quote_volume: 0,
            trades: 0,
            taker_buy_base_volume: 0,
            taker_buy_quote_volume: 0,
        };
        if k.low > k.open.min(k.close) || k.high < k.open.max(k.close) || k.volume < 0 {
            return Err(format!("row {i}: prices out of order or negative volume"));
        }
        out.push(k);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_are_read_exactly() {
        assert_eq!(json_decimal("42000.01").unwrap(), 4_200_001_000_000);
        assert_eq!(json_decimal("0.00001234").unwrap(), 1234);
        assert_eq!(json_decimal("1.234e-5").unwrap(), 1234);
        assert_eq!(json_decimal("4.2E4").unwrap(), 4_200_000_000_000);
        assert_eq!(json_decimal("17").unwrap(), 1_700_000_000);
        assert_eq!(json_decimal("-0.5").unwrap(), -50_000_000);
        // Beyond 8 decimals is refused, not rounded.
        assert!(json_decimal("0.000000001").is_err());
        assert!(json_decimal("1e-9").is_err());
        assert!(json_decimal("NaN").is_err());
        assert!(json_decimal("1.2.3").is_err());
    }

    #[test]
    fn candles_parse_newest_first_as_coinbase_sends_them() {
        let body = b"[[1704067260,41999.5,42010,42000.01,42005.25,1.5e-3],[1704067200,41990,42001,41995.5,42000.01,12.34567891]]";
        let rows = parse_candles(body, 60_000).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].open_time, 1_704_067_260_000);
        assert_eq!(rows[0].close_time, 1_704_067_319_999);
        assert_eq!(rows[0].volume, 150_000);
        assert_eq!(rows[1].open, 4_199_550_000_000);
        assert_eq!(rows[1].volume, 1_234_567_891);
        assert!(parse_candles(b"[]", 60_000).unwrap().is_empty());
        let e = parse_candles(b"[[1704067200,2,1,1.5,1.5,1]]", 60_000).unwrap_err();
        assert!(e.contains("row 0"), "{e}");
        // A bucket off the granularity's grid is not a candle of it.
        let e = parse_candles(b"[[1704240030,1,2,1,1,1]]", 60_000).unwrap_err();
        assert_eq!(
            e,
            "row 0: time 1704240030 is not on the 60s grid of the granularity"
        );
        let e = parse_candles(b"{\"message\":\"x\"}", 60_000).unwrap_err();
        // Found by the fuzzer (coinbase_candles): a body cut inside a multi-byte character
        // for the error message panicked.
        let crash = b"\x5b\x5b\x2b\x36\x30\x2c\x34\x31\x39\x39\x28\xd9\xa6\x2c\x2c\x34\x32\x39\x28\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xd9\xa6\x2c\x2c\x34\x32\x2c\x31\x2c\x34\x32";
        assert!(parse_candles(crash, 60_000).is_err());
        assert!(e.contains("not a JSON array"), "{e}");
    }

    #[test]
    fn the_clock_is_read_from_the_epoch_text() {
        assert_eq!(
            epoch_ms("{\"iso\":\"2024-01-01T00:00:00.123Z\",\"epoch\":1704067200.123}"),
            Some(1_704_067_200_123)
        );
        assert_eq!(epoch_ms("{\"epoch\": 1704067200}"), Some(1_704_067_200_000));
        assert_eq!(epoch_ms("{}"), None);
    }
}
