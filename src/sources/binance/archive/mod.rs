//! Binance's bulk archives (data.binance.vision): where a month's or a day's klines are, and
//! how a downloaded zip becomes klines: checked against its `.CHECKSUM` first, then its one
//! CSV parsed exactly (the REST columns; spot times in microseconds from 2025 on; the header
//! row futures files gained in 2022). `client` downloads them for `backfill --source`.

pub mod client;
mod csv;

use std::io::Read;

use sha2::Digest;

use crate::datasets::klines::KlineBatch;
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
/// row. An entry that declares or inflates to more than the period can hold
/// ([`max_csv_bytes`]) is refused before or while it inflates, so memory stays bounded by the
/// period's candles ([`inflate_whole`]). A CSV without a kline (empty, or a header alone) is an
/// error naming the file.
pub fn parse(
    file: &str,
    zip: &[u8],
    interval: Interval,
    period: Period,
) -> Result<KlineBatch, ArchiveError> {
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
    let mut out = KlineBatch::with_capacity((limit / MAX_LINE).min(1 << 16) as usize);
    let read = |reader: &mut dyn Read, out: &mut KlineBatch| {
        csv::read_klines(reader, limit, interval, out).map_err(|e| match e {
            csv::LineError::Io(e) => zip_err(e.to_string()),
            csv::LineError::TooLarge => too_large(),
            csv::LineError::Row { line, reason } => ArchiveError::Row {
                file: file.to_string(),
                line,
                reason,
            },
        })
    };
    let whole = CSV.with_borrow_mut(|csv| {
        match inflate_whole(zip, &mut archive, limit, csv).map_err(|e| zip_err(e.to_string()))? {
            Inflated::Csv(size) => read(&mut &csv[..size], &mut out).map(|()| true),
            Inflated::TooLarge => Err(too_large()),
            Inflated::Stream => Ok(false),
        }
    })?;
    if !whole {
        let entry = archive.by_index(0).map_err(|e| zip_err(e.to_string()))?;
        read(&mut entry.take(limit + 1), &mut out)?;
    }
    if out.is_empty() {
        return Err(ArchiveError::Empty {
            file: file.to_string(),
        });
    }
    Ok(out)
}

enum Inflated {
    /// The whole CSV, this many bytes, its CRC checked.
    Csv(usize),
    /// The size the zip declares is past the bound.
    TooLarge,
    /// Not a plain Deflate entry of the size it declares: the streaming reader decides.
    Stream,
}

thread_local! {
    /// The inflated CSV of the last archive this thread parsed, kept for the next: a month of
    /// 1m klines is 7 MB, and a fresh buffer each time cost more in page faults than
    /// libdeflate saved.
    static CSV: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The one entry of `archive`, inflated whole by libdeflate (faster than a streaming inflate)
/// into `csv`, the size the zip declares, which is at most `limit`: a stream that would
/// inflate past it fails there, so memory stays bounded by the period as with the streaming
/// reader, which takes anything else (stored or other methods, a declared size or CRC that
/// is wrong) and explains what is wrong with it.
fn inflate_whole(
    zip: &[u8],
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    limit: u64,
    csv: &mut Vec<u8>,
) -> zip::result::ZipResult<Inflated> {
    let raw = archive.by_index_raw(0)?;
    if raw.size() > limit {
        return Ok(Inflated::TooLarge);
    }
    if raw.compression() != zip::CompressionMethod::Deflated || raw.encrypted() {
        return Ok(Inflated::Stream);
    }
    let (size, crc) = (raw.size() as usize, raw.crc32());
    let deflated = raw
        .data_start()
        .and_then(|s| zip.get(s as usize..(s + raw.compressed_size()) as usize));
    let Some(deflated) = deflated else {
        return Ok(Inflated::Stream);
    };
    if csv.len() < size {
        csv.resize(size, 0);
    }
    let out = &mut csv[..size];
    let mut d = libdeflater::Decompressor::new();
    Ok(match d.deflate_decompress(deflated, out) {
        Ok(n) if n == size && libdeflater::crc32(out) == crc => Inflated::Csv(size),
        _ => Inflated::Stream,
    })
}

#[cfg(test)]
mod tests;
