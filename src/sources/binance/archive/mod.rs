//! Binance's bulk archives (data.binance.vision): where a month's or a day's klines are, and
//! how a downloaded zip becomes klines: checked against its `.CHECKSUM` first, then its one
//! CSV parsed exactly (the REST columns; spot times in microseconds from 2025 on; the header
//! row futures files gained in 2022). `client` downloads them for `backfill --source`.

pub mod client;

use std::io::Read;


use sha2::Digest;

use crate::market::{Interval, Market, Symbol};
pub use crate::market::Period;
use crate::datasets::klines::{Kline, KlineBatch};

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
pub fn url(base: &str, market: Market, symbol: &Symbol, interval: Interval, period: Period) -> String {
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
        .filter(|_| checksum_text.split_whitespace().nth(1).is_none_or(|n| n.trim_start_matches('*') == file))
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
pub fn parse(file: &str, zip: &[u8], interval: Interval, period: Period) -> Result<KlineBatch, ArchiveError> {
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
    Ok(if t >= 100_000_000_000_000 { t.div_euclid(1000) } else { t })
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
mod tests {
    use super::*;
    use std::io::Write;

    /// 2025-01-01, the day of the small CSVs below.
    const DAY25: Period = Period::Day {
        year: 2025,
        month: 1,
        day: 1,
    };

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/binance-real-full12");

    fn read(path: &str) -> Vec<u8> {
        std::fs::read(format!("{DIR}/{path}")).unwrap()
    }

    fn zipped(name: &str, csv: &str) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
        w.write_all(csv.as_bytes()).unwrap();
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn addresses_are_binances() {
        let s = Symbol::parse("BTCUSDT").unwrap();
        assert_eq!(
            url("https://data.binance.vision/", Market::Spot, &s, Interval::M1, Period::Month { year: 2024, month: 3 }),
            "https://data.binance.vision/data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03.zip"
        );
        assert_eq!(
            url("http://127.0.0.1:9", Market::UsdM, &s, Interval::M1, Period::Day { year: 2022, month: 9, day: 5 }),
            "http://127.0.0.1:9/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-09-05.zip"
        );
    }

    /// The real zips: a whole day each, and the first four hours of the USD-M day roll up to
    /// Binance's own 4h candle on every field.
    #[test]
    fn real_archives_parse_exactly() {
        let spot = parse("ETHUSDT-1m-2022-08-14.zip", &read("spot/ETHUSDT-1m-2022-08-14.zip"), Interval::M1, Period::day_of(1_660_435_200_000)).unwrap();
        assert_eq!(spot.open_time.len(), 1440);
        assert_eq!(spot.open_time[0], 1_660_435_200_000);
        let usdm = parse("BTCUSDT-1m-2022-09-05.zip", &read("usdm/BTCUSDT-1m-2022-09-05.zip"), Interval::M1, Period::day_of(1_662_336_000_000)).unwrap();
        assert_eq!(usdm.open_time.len(), 1440);
        let day = 1_662_336_000_000; // 2022-09-05
        assert_eq!(usdm.open_time[0], day);
        let four: Vec<Kline> = (0..240).map(|i| usdm.get(i)).collect();
        let csv = String::from_utf8(read("usdm/BTCUSDT_4h_2022-09.csv")).unwrap();
        let binance: Vec<&str> = csv
            .lines()
            .find(|l| l.starts_with("2022-09-05 00:00:00"))
            .unwrap()
            .split(',')
            .collect();
        let d = |s: &str| crate::decimal::parse(s).unwrap();
        assert_eq!(four[0].open, d(binance[1]));
        assert_eq!(four.iter().map(|k| k.high).max().unwrap(), d(binance[2]));
        assert_eq!(four.iter().map(|k| k.low).min().unwrap(), d(binance[3]));
        assert_eq!(four[239].close, d(binance[4]));
        assert_eq!(four.iter().map(|k| k.volume).sum::<i128>(), d(binance[5]));
        assert_eq!(four.iter().map(|k| k.quote_volume).sum::<i128>(), d(binance[7]));
        assert_eq!(four.iter().map(|k| k.trades).sum::<i64>(), binance[8].parse::<i64>().unwrap());
        assert_eq!(four.iter().map(|k| k.taker_buy_base_volume).sum::<i128>(), d(binance[9]));
        assert_eq!(four.iter().map(|k| k.taker_buy_quote_volume).sum::<i128>(), d(binance[10]));
    }

    #[test]
    fn microseconds_and_header_rows_are_read_as_binance_writes_them() {
        let ms = "1735689600000,1.5,2,1,1.75,10,1735689659999,15,3,4,6,0\n";
        let us = "1735689600000000,1.5,2,1,1.75,10,1735689659999999,15,3,4,6,0\n";
        let header = format!("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n{ms}");
        let a = parse("a.zip", &zipped("a.csv", ms), Interval::M1, DAY25).unwrap();
        assert_eq!(parse("b.zip", &zipped("b.csv", us), Interval::M1, DAY25).unwrap(), a);
        assert_eq!(parse("c.zip", &zipped("c.csv", &header), Interval::M1, DAY25).unwrap(), a);
        assert_eq!(a.close[0], 175_000_000);
    }

    #[test]
    fn bad_archives_name_the_file_and_line() {
        let zip = read("spot/ETHUSDT-1m-2022-08-14.zip");
        let sum = hex::encode(sha2::Sha256::digest(&zip));
        let name = "ETHUSDT-1m-2022-08-14.zip";
        assert_eq!(verify(name, &zip, &format!("{sum}  {name}\n")).unwrap(), sum);
        let e = verify(name, &zip[1..], &format!("{sum}  {name}\n")).unwrap_err().to_string();
        assert!(e.starts_with("ETHUSDT-1m-2022-08-14.zip: its checksum is"), "{e}");
        let e = verify(name, &zip, "not a checksum").unwrap_err().to_string();
        assert!(e.contains(".CHECKSUM"), "{e}");
        let e = verify(name, &zip, &format!("{sum}  OTHER.zip")).unwrap_err().to_string();
        assert!(e.contains(".CHECKSUM"), "{e}");

        let e = parse(name, &zip[..zip.len() / 2], Interval::M1, Period::day_of(1_660_435_200_000)).unwrap_err().to_string();
        assert!(e.starts_with("ETHUSDT-1m-2022-08-14.zip: not a zip"), "{e}");
        for (csv, want) in [
            ("1,2,3\n", "x.zip, line 1: 3 fields, not 12"),
            ("1735689600000,1.5,2,1,1.75,10,1735689659998,15,3,4,6,0\n", "line 1: close_time 1735689659998 does not end"),
            ("1735689600000,1.5,1,2,1.75,10,1735689659999,15,3,4,6,0\n", "line 1: prices out of order"),
            ("1735689600000,1.5,2,1,1.75,1e3,1735689659999,15,3,4,6,0\n", "line 1: volume"),
            ("1735689660000,1.5,2,1,1.75,10,1735689719999,15,3,4,6,0\n1735689600000,1.5,2,1,1.75,10,1735689659999,15,3,4,6,0\n", "line 2: open time not after"),
        ] {
            let e = parse("x.zip", &zipped("x.csv", csv), Interval::M1, DAY25).unwrap_err().to_string();
            assert!(e.contains(want), "{csv}: {e}");
        }
    }

    /// An empty CSV, or a header alone, is an error naming the file: never a day of nothing.
    #[test]
    fn an_archive_without_klines_is_an_error() {
        let header = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n";
        for csv in ["", "\n", header] {
            let e = parse("BTCUSDT-1m-2025-01-01.zip", &zipped("x.csv", csv), Interval::M1, DAY25).unwrap_err();
            assert_eq!(e.to_string(), "BTCUSDT-1m-2025-01-01.zip: the CSV holds no klines", "{csv:?}");
        }
    }

    /// A zip that inflates far past what its period can hold is refused, naming the zip, and
    /// is never inflated whole: the reading stops at the bound.
    #[test]
    fn a_zip_bomb_is_refused_at_the_bound() {
        let day = "1735689600000,1.5,2,1,1.75,10,1735689659999,15,3,4,6,0\n";
        // 64 MiB of one repeated line: a few hundred KB zipped.
        let big = day.repeat(64 * 1024 * 1024 / day.len());
        let zip = zipped("x.csv", &big);
        assert!(zip.len() < 1 << 20, "{}", zip.len());
        let e = parse("BOMB-1m-2025-01-01.zip", &zip, Interval::M1, DAY25).unwrap_err().to_string();
        assert!(e.starts_with("BOMB-1m-2025-01-01.zip: the CSV inflates past 708972 bytes, more than a day of 1m candles can hold"), "{e}");
        // A zip whose header understates the size is stopped by the bytes read.
        assert_eq!(max_csv_bytes(Interval::M1, DAY25), 1441 * 492);
        assert_eq!(max_csv_bytes(Interval::H1, Period::Month { year: 2024, month: 2 }), (29 * 24 + 1) * 492);
    }
}
