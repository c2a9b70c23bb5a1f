//! Extract benchmarks (`cargo bench --bench extract`; `-- --quick` for a short run).
//!
//! 1. CPU from HTTP body to staged Parquet: Binance JSON bodies of 1000 klines are parsed,
//!    gathered into UTC days, encoded as Parquet, hashed and written to a local stage, in
//!    this process. Reports klines per second and CPU seconds per million klines.
//! 2. A whole backfill of the `klines` binary against the test exchange over HTTP, for a short
//!    and a long range: wall time, the child's CPU time and its peak resident memory.
//! 3. A rate-limited backfill: the weight the exchange counted per full window against the
//!    limit it advertised, and the 429s it sent.
//! 4. Years of history from Binance's archives (`--source auto`), zips served by the test
//!    exchange over HTTP: wall, CPU per million klines, peak memory, and the REST weight the
//!    recent tail cost (`-- --archive [YEARS]` runs this part alone).
//!
//! `-- --rest [DAYS]` runs part 2 alone over DAYS of history; `-- --encode-only` compares
//! `parquet::encode` with `parquet::encode_with_arrow_writer` on a day; setting
//! `KLINES_BENCH_WRAPPER` (e.g. `strace -c -f -o FILE`) runs the child under that command.

#[path = "support/child.rs"]
mod child;
#[path = "../tests/it/support/exchange/mod.rs"]
#[allow(dead_code)]
mod exchange;

use std::collections::BTreeMap;
use std::time::Instant;

use exchange::{Config, TestExchange, data};
use klines::datasets::klines::KlineBatch;
use klines::market::Series;
use klines::market::{Interval, Market, Symbol};
use klines::stage::layout;
use klines::stage::{Stage, manifest, parquet};

/// This thread's CPU time, in seconds, with nanosecond resolution.
fn thread_cpu() -> f64 {
    // SAFETY: clock_gettime fills the timespec it is given.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

const T0: i64 = 1_640_995_200_000; // 2022-01-01

fn parse_encode(rows: usize) {
    let market = data::Market::synthetic();
    let minutes = rows as i64;
    let bodies: Vec<String> = (0..(minutes + 999) / 1000)
        .map(|i| {
            let s = T0 + i * 1000 * 60_000;
            data::to_json(&market.minutes("BTCUSDT", s, s + 1000 * 60_000, 1000))
        })
        .collect();
    let total_bytes: usize = bodies.iter().map(|b| b.len()).sum();
    let series = Series {
        exchange: klines::market::Exchange::BINANCE,
        market: Market::Spot,
        symbol: Symbol::parse("BTCUSDT").unwrap(),
        interval: Interval::M1,
    };
    let dir = tempfile::tempdir().unwrap();
    let stage = Stage::open("stage", &BTreeMap::new(), dir.path()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let mut day = KlineBatch::with_capacity(1440);
    let mut day_start = T0;
    let mut parsed = 0usize;
    let mut files = 0;
    let mut encode_cpu = 0.0;
    let mut put_cpu = 0.0;
    let mut parse_cpu = 0.0;
    let mut flush = |day: &mut KlineBatch, start: i64| {
        if day.is_empty() {
            return;
        }
        let c0 = thread_cpu();
        let bytes = parquet::encode(&series, std::mem::take(day)).unwrap();
        encode_cpu += thread_cpu() - c0;
        let c0 = thread_cpu();
        let sha = manifest::sha256_hex(&bytes);
        let key = layout::data_key(
            &series,
            (start, start + 86_400_000),
            start,
            start + 86_400_000,
        );
        rt.block_on(stage.put(&key, bytes)).unwrap();
        put_cpu += thread_cpu() - c0;
        std::hint::black_box(sha);
        files += 1;
        *day = KlineBatch::with_capacity(1440);
    };
    for body in &bodies {
        let mut page = KlineBatch::with_capacity(1000);
        let c0 = thread_cpu();
        parsed += klines::sources::binance::json::parse_body(body.as_bytes(), &mut page).unwrap();
        parse_cpu += thread_cpu() - c0;
        let mut i = 0;
        while i < page.len() {
            let (us, ue) = layout::unit_of(Interval::M1, page.open_time[i]);
            if us != day_start {
                flush(&mut day, day_start);
                day_start = us;
            }
            let r = page.range_of(us, ue);
            let r = i.max(r.start)..r.end;
            day.extend_from(&page, r.clone());
            i = r.end;
        }
    }
    flush(&mut day, day_start);
    let (cpu, wall) = (thread_cpu() - cpu0, wall0.elapsed().as_secs_f64());
    println!(
        "  of which parsing JSON: {:.3} CPU s per million, Parquet encoding: {:.3}, hashing and writing: {:.3}",
        parse_cpu / parsed as f64 * 1e6,
        encode_cpu / parsed as f64 * 1e6,
        put_cpu / parsed as f64 * 1e6
    );
    println!(
        "body -> staged Parquet: {parsed} klines ({:.0} MB of JSON, {files} files): {:.0} klines/s, {:.3} CPU s per million klines (wall {:.2}s)",
        total_bytes as f64 / 1e6,
        parsed as f64 / cpu,
        cpu / parsed as f64 * 1e6,
        wall
    );
}

fn project(url: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("klines.yml"),
        format!("symbols: [BTCUSDT]\nexchange:\n  base_url: {url}\n{extra}"),
    )
    .unwrap();
    dir
}

/// The rows a backfill summary line reports.
fn summary_rows(out: &str) -> f64 {
    out.split(' ')
        .skip_while(|w| !w.ends_with("symbols,"))
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

fn end_to_end(days: i64) {
    let now = T0 + days * 86_400_000 + 3_600_000;
    let ex = TestExchange::start(Config::synthetic(now));
    ex.set_limit(1_000_000, 60);
    let dir = project(&ex.url, "  max_in_flight: 8\n  spans_in_flight: 8\n");
    let to = klines::time::format_ms(T0 + days * 86_400_000);
    let (wall, cpu, rss, out) = child::run(
        dir.path(),
        &[
            "backfill",
            "--from",
            "2022-01-01",
            "--to",
            &to,
            "--source",
            "rest",
        ],
    );
    let rows = summary_rows(&out);
    println!(
        "backfill {days} days ({rows} klines) over HTTP: wall {wall:.1}s ({:.0} klines/s), klines CPU {cpu:.2}s ({:.3} s per million), peak RSS {:.1} MB",
        rows / wall,
        cpu / rows * 1e6,
        rss as f64 / 1e6
    );
}

fn rate_limited(limit: u32, window_secs: u32, days: i64) {
    let now = T0 + days * 86_400_000 + 3_600_000;
    let ex = TestExchange::start(Config::synthetic(now));
    ex.set_limit(limit, window_secs);
    let dir = project(&ex.url, "");
    let to = klines::time::format_ms(T0 + days * 86_400_000);
    let (wall, _, _, _) = child::run(
        dir.path(),
        &[
            "backfill",
            "--symbols",
            "BTCUSDT,ETHUSDT",
            "--from",
            "2022-01-01",
            "--to",
            &to,
            "--source",
            "rest",
        ],
    );
    let stats = ex.stats();
    let windows: Vec<u32> = stats.weight_by_window.values().copied().collect();
    // Full windows only: not the first (the run starts mid-window) nor the last.
    let full = &windows[1..windows.len().saturating_sub(1)];
    let mean = full.iter().map(|&w| w as f64).sum::<f64>() / full.len().max(1) as f64;
    println!(
        "rate-limited backfill (limit {limit} weight per {window_secs}s): {} windows, {} full; weight per full window: mean {:.0} ({:.1}% of the limit), min {}, max {}; 429s: {}, 418s: {}; wall {wall:.1}s",
        windows.len(),
        full.len(),
        mean,
        mean / limit as f64 * 100.0,
        full.iter().min().unwrap_or(&0),
        full.iter().max().unwrap_or(&0),
        stats.count(429),
        stats.count(418),
    );
}

fn from_archives(years: i64) {
    // Today is 2024-01-10 12:00 on the exchange's clock; history starts `years` earlier.
    let now = ms_of("2024-01-10T12:00:00Z");
    let from = format!("{}-01-10", 2024 - years);
    let ex = TestExchange::start(Config::synthetic(now));
    let yml = format!(
        "  archive_url: {}\n  max_in_flight: 8\n  spans_in_flight: 4\n",
        ex.url
    );
    // A first run fills the test exchange's zip cache, so the measured run times klines, not
    // the server building zips.
    let warm = project(&ex.url, &yml);
    child::run(
        warm.path(),
        &["backfill", "--from", &from, "--source", "archive"],
    );
    let before = ex.stats();
    let dir = project(&ex.url, &yml);
    let (wall, cpu, rss, out) = child::run(dir.path(), &["backfill", "--from", &from]);
    let after = ex.stats();
    let weight: u32 = after.weight_by_window.values().sum::<u32>()
        - before.weight_by_window.values().sum::<u32>();
    let rows = summary_rows(&out);
    println!(
        "backfill {years} years ({rows} klines) from archives over HTTP: wall {wall:.1}s ({:.0} klines/s), klines CPU {cpu:.2}s ({:.3} s per million), peak RSS {:.1} MB; {} zips; REST: {} klines requests, weight {weight}\n  {out}",
        rows / wall,
        cpu / rows * 1e6,
        rss as f64 / 1e6,
        after.archive_files - before.archive_files,
        after.klines_requests - before.klines_requests,
    );
}

fn ms_of(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--archive") {
        let years = args.get(i + 1).and_then(|y| y.parse().ok()).unwrap_or(5);
        from_archives(years);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--rest") {
        let days = args.get(i + 1).and_then(|d| d.parse().ok()).unwrap_or(400);
        end_to_end(days);
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--encode-only") {
        let market = data::Market::synthetic();
        let series = Series {
            exchange: klines::market::Exchange::BINANCE,
            market: Market::Spot,
            symbol: Symbol::parse("BTCUSDT").unwrap(),
            interval: Interval::M1,
        };
        let mut day = KlineBatch::default();
        market
            .minutes("BTCUSDT", T0, T0 + 86_400_000, usize::MAX)
            .iter()
            .for_each(|k| day.push(k));
        // klines' own writer, then parquet-rs's ArrowWriter it matches byte for byte.
        let encoders: [(
            &str,
            fn(&Series, KlineBatch) -> anyhow::Result<bytes::Bytes>,
        ); 2] = [
            ("encode", parquet::encode),
            ("encode (ArrowWriter)", parquet::encode_with_arrow_writer),
        ];
        for (name, encode) in encoders {
            let c0 = thread_cpu();
            for _ in 0..700 {
                std::hint::black_box(encode(&series, day.clone()).unwrap());
            }
            println!(
                "{name}: {:.3} CPU s per million",
                (thread_cpu() - c0) / (700.0 * day.len() as f64) * 1e6
            );
        }
        return;
    }
    if std::env::args().any(|a| a == "--dec-only") {
        let vals = [
            "42000.01000000",
            "0.00123400",
            "123456.78901234",
            "5185180.52431380",
        ];
        let c0 = thread_cpu();
        let mut acc = 0i128;
        for i in 0..8_000_000usize {
            acc = acc.wrapping_add(
                klines::decimal::parse_bytes(std::hint::black_box(vals[i % 4].as_bytes())).unwrap(),
            );
        }
        println!("8M decimals: {:.3} CPU s ({acc})", thread_cpu() - c0);
        return;
    }
    if std::env::args().any(|a| a == "--archive-parse") {
        // One month of 1m klines as Binance's zip: inflate + CSV parse, and the checksum.
        let market = data::Market::synthetic();
        let rows = market.minutes("BTCUSDT", T0, T0 + 31 * 86_400_000, usize::MAX);
        let mut csv = String::new();
        for k in &rows {
            exchange::archive::row(&mut csv, k, false);
        }
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file("x.csv", options).unwrap();
        use std::io::Write;
        w.write_all(csv.as_bytes()).unwrap();
        let zip = w.finish().unwrap().into_inner();
        let n = 10;
        let c0 = thread_cpu();
        for _ in 0..n {
            std::hint::black_box(
                klines::sources::binance::archive::parse(
                    "x.zip",
                    &zip,
                    Interval::M1,
                    klines::sources::binance::archive::Period::month_of(T0),
                )
                .unwrap(),
            );
        }
        let parse = thread_cpu() - c0;
        let c0 = thread_cpu();
        for _ in 0..n {
            std::hint::black_box(manifest::sha256_hex(&zip));
        }
        let sha = thread_cpu() - c0;
        let c0 = thread_cpu();
        for _ in 0..n {
            let mut a = zip::ZipArchive::new(std::io::Cursor::new(&zip)).unwrap();
            let mut s = String::new();
            use std::io::Read;
            a.by_index(0).unwrap().read_to_string(&mut s).unwrap();
            std::hint::black_box(s);
        }
        let inflate = thread_cpu() - c0;
        let m = (n * rows.len()) as f64 / 1e6;
        println!(
            "archive month ({} rows, zip {} bytes, csv {} bytes): parse (inflate included) {:.3} CPU s per million, inflate alone {:.3}, sha256 {:.3}",
            rows.len(),
            zip.len(),
            csv.len(),
            parse / m,
            inflate / m,
            sha / m
        );
        return;
    }
    if std::env::args().any(|a| a == "--json-only") {
        let market = data::Market::synthetic();
        let body = data::to_json(&market.minutes("BTCUSDT", T0, T0 + 1000 * 60_000, 1000));
        let mut page = KlineBatch::with_capacity(1000);
        let c0 = thread_cpu();
        let w0 = Instant::now();
        for _ in 0..1000 {
            page.truncate(0);
            std::hint::black_box(
                klines::sources::binance::json::parse_body(body.as_bytes(), &mut page).unwrap(),
            );
        }
        println!("wall {:?}", w0.elapsed());
        println!(
            "parse: {:.3} CPU s per million ({} bytes per row)",
            thread_cpu() - c0,
            body.len() / 1000
        );
        return;
    }
    if std::env::args().any(|a| a == "--parse-only") {
        parse_encode(1_000_000);
        return;
    }
    if quick {
        parse_encode(100_000);
        end_to_end(10);
        rate_limited(120, 5, 60);
        from_archives(1);
    } else {
        parse_encode(1_000_000);
        end_to_end(70);
        end_to_end(700);
        rate_limited(600, 10, 365);
        from_archives(5);
    }
}
