//! Extract benchmarks (`cargo bench --bench extract`; `-- --quick` for a short run).
//!
//! 1. CPU from HTTP body to staged Parquet: Binance JSON bodies of 1000 klines are parsed,
//!    gathered into UTC days, encoded as Parquet, hashed and written to a local stage, in
//!    this process. Reports klines per second and CPU seconds per million klines.
//! 2. A whole backfill of the `klines` binary against the test exchange over HTTP, for a short
//!    and a long range: wall time, the child's CPU time and its peak resident memory.
//! 3. A rate-limited backfill: the weight the exchange counted per full window against the
//!    limit it advertised, and the 429s it sent.

#[path = "../tests/it/support/exchange/mod.rs"]
#[allow(dead_code)]
mod exchange;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use exchange::{Config, TestExchange, data};
use klines::exchange::{Interval, Market, Symbol};
use klines::kline::{self, KlineBatch};
use klines::stage::layout::{self, Series};
use klines::stage::{Stage, manifest, parquet};

fn rusage(who: i32) -> (f64, u64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(u.ru_utime) + secs(u.ru_stime), u.ru_maxrss as u64 * 1024)
}

fn thread_cpu() -> f64 {
    rusage(libc::RUSAGE_THREAD).0
}

const T0: i64 = 1_640_995_200_000; // 2022-01-01

fn parse_encode(rows: usize) {
    let market = data::Market::synthetic();
    let minutes = rows as i64;
    let bodies: Vec<String> = (0..minutes.div_ceil(1000))
        .map(|i| {
            let s = T0 + i * 1000 * 60_000;
            data::to_json(&market.minutes("BTCUSDT", s, s + 1000 * 60_000, 1000))
        })
        .collect();
    let total_bytes: usize = bodies.iter().map(|b| b.len()).sum();
    let series = Series { market: Market::Spot, symbol: Symbol::parse("BTCUSDT").unwrap(), interval: Interval::M1 };
    let dir = tempfile::tempdir().unwrap();
    let stage = Stage::open("stage", &BTreeMap::new(), dir.path()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let mut day = KlineBatch::with_capacity(1440);
    let mut day_start = T0;
    let mut parsed = 0usize;
    let mut files = 0;
    let mut flush = |day: &mut KlineBatch, start: i64| {
        if day.is_empty() {
            return;
        }
        let bytes = parquet::encode(&series, day).unwrap();
        let sha = manifest::sha256_hex(&bytes);
        let key = layout::data_key(&series, (start, start + 86_400_000), start, start + 86_400_000);
        rt.block_on(stage.put(&key, bytes)).unwrap();
        std::hint::black_box(sha);
        files += 1;
        *day = KlineBatch::with_capacity(1440);
    };
    for body in &bodies {
        let mut page = KlineBatch::with_capacity(1000);
        parsed += kline::parse_body(body.as_bytes(), &mut page).unwrap();
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
        "body -> staged Parquet: {parsed} klines ({:.0} MB of JSON, {files} files): {:.0} klines/s, {:.3} CPU s per million klines (wall {:.2}s)",
        total_bytes as f64 / 1e6,
        parsed as f64 / cpu,
        cpu / parsed as f64 * 1e6,
        wall
    );
}

fn klines_bin() -> &'static str {
    env!("CARGO_BIN_EXE_klines")
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

/// Runs the klines binary and returns (wall s, CPU s, peak RSS bytes) of that child alone.
fn run_child(dir: &Path, args: &[&str]) -> (f64, f64, u64, String) {
    let started = Instant::now();
    let mut child = Command::new(klines_bin())
        .args(args)
        .current_dir(dir)
        .env("KLINES_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: wait4 on our own child, with a zeroed rusage to fill.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut u) };
    let wall = started.elapsed().as_secs_f64();
    let mut out = String::new();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "klines failed: {out}");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (wall, secs(u.ru_utime) + secs(u.ru_stime), u.ru_maxrss as u64 * 1024, out.trim().to_string())
}

fn end_to_end(days: i64) {
    let now = T0 + days * 86_400_000 + 3_600_000;
    let ex = TestExchange::start(Config::synthetic(now));
    ex.set_limit(1_000_000, 60);
    let dir = project(&ex.url, "  max_in_flight: 8\n  spans_in_flight: 8\n");
    let to = klines::time::format_ms(T0 + days * 86_400_000);
    let (wall, cpu, rss, out) = run_child(dir.path(), &["backfill", "--from", "2022-01-01", "--to", &to]);
    let rows: f64 = out.split(' ').skip_while(|w| !w.ends_with("symbols,")).nth(1).unwrap().parse().unwrap();
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
    let (wall, _, _, _) =
        run_child(dir.path(), &["backfill", "--symbols", "BTCUSDT,ETHUSDT", "--from", "2022-01-01", "--to", &to]);
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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if quick {
        parse_encode(100_000);
        end_to_end(10);
        rate_limited(60, 5, 40);
    } else {
        parse_encode(1_000_000);
        end_to_end(70);
        end_to_end(700);
        rate_limited(120, 5, 120);
    }
}
