//! data.binance.vision on the test exchange: `/data/spot/{monthly,daily}/klines/SYM/IV/FILE.zip`
//! (and `/data/futures/um/...`) with a `.CHECKSUM` beside each, built from the same market
//! data as REST. As Binance writes them: spot files from 2025 on hold microsecond times,
//! futures files from 2022-05 on start with a header row. A file exists once its period has
//! closed on the exchange's clock plus `delay_ms`. Faults by file name: missing (404) and
//! corrupt (the zip no longer matches its checksum).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Datelike, NaiveDate};
use klines::datasets::klines::Kline;
use klines::market::Interval;
use sha2::Digest;

use super::Shared;

const MICROS_FROM: i64 = 1_735_689_600_000; // 2025-01-01: spot files in microseconds
const HEADER_FROM: i64 = 1_651_363_200_000; // 2022-05-01: futures files with a header

/// The archive's behaviour.
#[derive(Debug, Clone, Default)]
pub struct ArchiveConfig {
    /// Files are published this long after their period closes.
    pub delay_ms: i64,
    /// File names (`BTCUSDT-1m-2024-01-05.zip`) the archive does not have.
    pub missing: HashSet<String>,
    /// File names served with bytes that do not match their checksum.
    pub corrupt: HashSet<String>,
    /// Whether the archive is there at all (off: every file is a 404).
    pub off: bool,
    /// File names served with these bytes instead, and a `.CHECKSUM` that matches them (an
    /// empty or truncated CSV, a zip bomb: faults a checksum does not catch).
    pub replaced: HashMap<String, bytes::Bytes>,
}

/// A zip holding one CSV of `text`, deflated, as Binance packs them.
pub fn zip_of(csv_name: &str, text: &str) -> bytes::Bytes {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file(csv_name, options).unwrap();
    w.write_all(text.as_bytes()).unwrap();
    bytes::Bytes::from(w.finish().unwrap().into_inner())
}

/// Zips built so far, by file name, with their checksums; cleared when data changes.
#[derive(Debug, Default)]
pub struct ZipCache(std::sync::Mutex<HashMap<String, (bytes::Bytes, String)>>);

impl ZipCache {
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// One CSV row as Binance writes it.
pub fn row(out: &mut String, k: &Kline, micros: bool) {
    use klines::decimal::format as d;
    use std::fmt::Write;
    let (open, close) = if micros {
        (k.open_time * 1000, k.close_time * 1000 + 999)
    } else {
        (k.open_time, k.close_time)
    };
    let _ = writeln!(
        out,
        "{},{},{},{},{},{},{},{},{},{},{},0",
        open,
        d(k.open),
        d(k.high),
        d(k.low),
        d(k.close),
        d(k.volume),
        close,
        d(k.quote_volume),
        k.trades,
        d(k.taker_buy_base_volume),
        d(k.taker_buy_quote_volume)
    );
}

/// A file name's symbol, interval and open-time range: `SYM-IV-YYYY-MM[-DD].zip`.
fn parse_name(name: &str) -> Option<(String, Interval, i64, i64)> {
    let stem = name.strip_suffix(".zip")?;
    let mut parts = stem.splitn(3, '-');
    let (sym, iv, date) = (parts.next()?, parts.next()?, parts.next()?);
    let interval: Interval = iv.parse().ok()?;
    let ms = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
    };
    let (start, end) = if date.len() == 7 {
        let d = NaiveDate::parse_from_str(&format!("{date}-01"), "%Y-%m-%d").ok()?;
        let next = if d.month() == 12 {
            NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)?
        };
        (ms(d)?, ms(next)?)
    } else {
        let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        (ms(d)?, ms(d)? + 86_400_000)
    };
    Some((sym.to_string(), interval, start, end))
}

fn status(code: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

/// `GET /data/*path`.
pub(super) async fn serve(State(shared): State<Arc<Shared>>, Path(path): Path<String>) -> Response {
    let (futures, rest) = if let Some(r) = path.strip_prefix("spot/") {
        (false, r)
    } else if let Some(r) = path.strip_prefix("futures/um/") {
        (true, r)
    } else {
        return status(StatusCode::NOT_FOUND);
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let [kind, "klines", sym, iv, file] = parts[..] else {
        return status(StatusCode::NOT_FOUND);
    };
    let (zip_name, checksum) = match file.strip_suffix(".CHECKSUM") {
        Some(z) => (z, true),
        None => (file, false),
    };
    let Some((name_sym, interval, start, end)) = parse_name(zip_name) else {
        return status(StatusCode::NOT_FOUND);
    };
    let monthly = zip_name.len() == format!("{sym}-{iv}-YYYY-MM.zip").len();
    let config = shared.config.lock().unwrap().clone();
    let archive = config.archive.clone();
    {
        let mut stats = shared.stats.lock().unwrap();
        stats.archive_requests += 1;
    }
    if archive.off
        || name_sym != sym
        || iv != interval.as_str()
        || (kind == "monthly") != monthly
        || !matches!(kind, "monthly" | "daily")
        || archive.missing.contains(zip_name)
        || end + archive.delay_ms > config.clock.now()
    {
        return status(StatusCode::NOT_FOUND);
    }
    let market = config.market_for(futures);
    if !market.has_symbol(sym) {
        return status(StatusCode::NOT_FOUND);
    }
    let cache_key = format!("{}/{zip_name}", if futures { "um" } else { "spot" });
    let cached = match archive.replaced.get(zip_name) {
        Some(z) => Some((z.clone(), hex::encode(sha2::Sha256::digest(z)))),
        None => shared.zips.0.lock().unwrap().get(&cache_key).cloned(),
    };
    let (zip, sum) = match cached {
        Some(z) => z,
        None => {
            let rows = market.klines(sym, interval, start, end, config.clock.now(), usize::MAX);
            if rows.is_empty() {
                return status(StatusCode::NOT_FOUND);
            }
            let mut csv = String::with_capacity(rows.len() * 130 + 200);
            if futures && start >= HEADER_FROM {
                csv.push_str("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n");
            }
            let micros = !futures && start >= MICROS_FROM;
            for k in &rows {
                row(&mut csv, k, micros);
            }
            let zip = zip_of(&zip_name.replace(".zip", ".csv"), &csv);
            let sum = hex::encode(sha2::Sha256::digest(&zip));
            shared
                .zips
                .0
                .lock()
                .unwrap()
                .insert(cache_key, (zip.clone(), sum.clone()));
            (zip, sum)
        }
    };
    let body = if checksum {
        bytes::Bytes::from(format!("{sum}  {zip_name}\n"))
    } else {
        shared.stats.lock().unwrap().archive_files += 1;
        if archive.corrupt.contains(zip_name) {
            let mut b = zip.to_vec();
            let mid = b.len() / 2;
            b[mid] ^= 0xFF;
            bytes::Bytes::from(b)
        } else {
            zip
        }
    };
    Response::new(Body::from(body))
}
