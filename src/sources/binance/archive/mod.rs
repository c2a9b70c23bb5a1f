//! Binance's bulk archives (data.binance.vision): where a month's or a day's klines are, and
//! how a downloaded zip becomes klines: checked against its `.CHECKSUM` first, then its one
//! CSV parsed exactly (the REST columns; spot times in microseconds from 2025 on; the header
//! row futures files gained in 2022). `client` downloads them for `backfill --source`.

pub mod client;

use std::io::Read;

use sha2::Digest;

use crate::datasets::klines::{Kline, KlineBatch};
pub use crate::market::Period;
use crate::market::{Interval, Market, Symbol};

/// What went wrong with an archive; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{file}: its checksum is {got}, its .CHECKSUM says {want}")]
    Checksum {
        file: String,
        got: String,
        want: String,
    },
    #[error("{file}.CHECKSUM: not `<sha256>  {file}`")]
    ChecksumFile { file: String },
    #[error("{file}: not a zip holding one CSV: {reason}")]
    Zip { file: String, reason: String },
    #[error("{file}: the CSV holds no klines")]
    Empty { file: String },
    #[error("{file}: the CSV inflates past {limit} bytes, more than a {what} can hold; refused")]
    TooLarge {
        file: String,
        limit: u64,
        what: String,
    },
    #[error("{file}, line {line}: {reason}")]
    Row {
        file: String,
        line: usize,
        reason: String,
    },
}

/// `SYMBOL-INTERVAL-PERIOD.zip`, as Binance names it.
pub fn file_name(symbol: &Symbol, interval: Interval, period: Period) -> String {
    format!("{symbol}-{}-{}.zip", interval.as_str(), period.label())
}

/// The zip's address under `base` (`https://data.binance.vision`); its checksum is at the
/// same address plus `.CHECKSUM`.
pub fn url(
    base: &str,
    market: Market,
    symbol: &Symbol,
    interval: Interval,
    period: Period,
) -> String {
    let root = match market {
        Market::Spot => "data/spot",
        Market::UsdM => "data/futures/um",
    };
    let kind = match period {
        Period::Month { .. } => "monthly",
        Period::Day { .. } => "daily",
    };
    format!(
        "{}/{root}/{kind}/klines/{symbol}/{}/{}",
        base.trim_end_matches('/'),
        interval.as_str(),
        file_name(symbol, interval, period)
    )
}

/// Checks `zip` against the text of its `.CHECKSUM` (sha256sum's `<hex>  <name>`); returns the
/// checksum, to be kept with what is staged.
pub fn verify(file: &str, zip: &[u8], checksum_text: &str) -> Result<String, ArchiveError> {
    let want = checksum_of(file, checksum_text)?;
    let got = hex::encode(sha2::Sha256::digest(zip));
    if got != want {
        return Err(ArchiveError::Checksum {
            file: file.to_string(),
            got,
            want,
        });
    }
    Ok(got)
}

/// The checksum a `.CHECKSUM` text gives for `file` (lowercase hex).
pub fn checksum_of(file: &str, checksum_text: &str) -> Result<String, ArchiveError> {
    Ok(checksum_text
        .split_whitespace()
        .next()
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .filter(|_| {
            checksum_text
                .split_whitespace()
                .nth(1)
                .is_none_or(|n| n.trim_start_matches('*') == file)
        })
        .ok_or_else(|| ArchiveError::ChecksumFile {
            file: file.to_string(),
        })?
        .to_ascii_lowercase())
}

/// The longest CSV line a kline can take: twelve fields of at most 40 characters.
const MAX_LINE: u64 = 12 * 41;

/// The most bytes the CSV of `interval` over `period` can hold: a line per candle (and a
/// header). A day of 1m klines is about 200 KB, so its bound is 1440 lines of [`MAX_LINE`].
pub fn max_csv_bytes(interval: Interval, period: Period) -> u64 {
    let (start, end) = period.range();
    let candles = interval
        .fixed_millis()
        .map_or(1, |ms| ((end - start) / ms.max(1)) as u64);
    (candles + 1) * MAX_LINE
}

/// The klines of an archive zip of `interval` over `period`, in file order, checked row by
/// row. The CSV is read as a stream, never whole: an entry that inflates past what the period
/// can hold ([`max_csv_bytes`]) is refused, so memory stays bounded by the period's candles. A
/// CSV without a kline (empty, or a header alone) is an error naming the file.
pub fn parse(
    file: &str,
    zip: &[u8],
    interval: Interval,
    period: Period,
) -> Result<KlineBatch, ArchiveError> {
    use std::io::BufRead;
    let zip_err = |reason: String| ArchiveError::Zip {
        file: file.to_string(),
        reason,
    };
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip)).map_err(|e| zip_err(e.to_string()))?;
    if archive.len() != 1 {
        return Err(zip_err(format!("{} entries", archive.len())));
    }
    let limit = max_csv_bytes(interval, period);
    let too_large = || ArchiveError::TooLarge {
        file: file.to_string(),
        limit,
        what: format!("{} of {} candles", period.noun(), interval.as_str()),
    };
    let entry = archive.by_index(0).map_err(|e| zip_err(e.to_string()))?;
    // The size the zip declares is checked first; the bytes read are bounded either way.
    if entry.size() > limit {
        return Err(too_large());
    }
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, entry.take(limit + 1));
    let mut out = KlineBatch::with_capacity((limit / MAX_LINE).min(1 << 16) as usize);
    let mut line = Vec::with_capacity(256);
    let mut read = 0u64;
    let mut line_no = 0usize;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| zip_err(e.to_string()))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > limit {
            return Err(too_large());
        }
        line_no += 1;
        let row_err = |reason: String| ArchiveError::Row {
            file: file.to_string(),
            line: line_no,
            reason,
        };
        let text = std::str::from_utf8(&line)
            .map_err(|_| row_err("not UTF-8 text".into()))?
            .trim_end_matches(['\n', '\r']);
        if text.is_empty() || (line_no == 1 && text.starts_with("open_time")) {
            continue;
        }
        let k = row(text, interval).map_err(row_err)?;
        if out.open_time.last().is_some_and(|&t| t >= k.open_time) {
            return Err(row_err("open time not after the previous row's".into()));
        }
        out.push(&k);
    }
    if out.is_empty() {
        return Err(ArchiveError::Empty {
            file: file.to_string(),
        });
    }
    Ok(out)
}

/// Epoch times from 2025 on in spot files are microseconds; anything past the year 5138 in
/// milliseconds is taken as microseconds.
fn millis(field: &str, name: &str) -> Result<i64, String> {
    let t: i64 = field
        .parse()
        .map_err(|_| format!("{name} {field:?} is not a whole number"))?;
    Ok(if t >= 100_000_000_000_000 {
        t.div_euclid(1000)
    } else {
        t
    })
}

fn row(line: &str, interval: Interval) -> Result<Kline, String> {
    // Twelve fields, without allocating per row.
    let mut f = [""; 12];
    let mut n = 0;
    for field in line.split(',') {
        if n < 12 {
            f[n] = field;
        }
        n += 1;
    }
    if n != 12 {
        return Err(format!("{n} fields, not 12"));
    }
    let dec = |i: usize, name: &str| -> Result<i128, String> {
        crate::decimal::parse(f[i]).map_err(|e| format!("{name}: {e}"))
    };
    let k = Kline {
        open_time: millis(f[0], "open_time")?,
        open: dec(1, "open")?,
        high: dec(2, "high")?,
        low: dec(3, "low")?,
        close: dec(4, "close")?,
        volume: dec(5, "volume")?,
        close_time: millis(f[6], "close_time")?,
        quote_volume: dec(7, "quote_volume")?,
        trades: f[8]
            .parse()
            .map_err(|_| format!("trades {:?} is not a whole number", f[8]))?,
        taker_buy_base_volume: dec(9, "taker_buy_base_volume")?,
        taker_buy_quote_volume: dec(10, "taker_buy_quote_volume")?,
    };
    if interval.floor(k.open_time) != k.open_time {
        return Err(format!(
            "open_time {} is not on the {} grid",
            k.open_time,
            interval.as_str()
        ));
    }
    if k.close_time != interval.close_time(k.open_time) {
        return Err(format!(
            "close_time {} does not end the {} candle opening at {}",
            k.close_time,
            interval.as_str(),
            k.open_time
        ));
    }
    if k.low > k.open.min(k.close) || k.high < k.open.max(k.close) || k.low > k.high {
        return Err("prices out of order (low, open, close, high)".into());
    }
    Ok(k)
}

#[cfg(test)]
mod tests;
