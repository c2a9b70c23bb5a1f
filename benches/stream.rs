//! Stream benchmarks (`cargo bench --bench stream`; `-- --quick` for a short run). Postgres
//! variants need the test server (`KLINES_TEST_PG`, as `scripts/test` sets it).
//!
//! 1. Latency from a 1m candle's close on the exchange to its row in TRADES_OHLC_1M: `klines
//!    stream --build` against the test exchange (REST and WebSocket on loopback, its clock run
//!    `SPEED` times faster than real time), with 1, 50 and 200 symbols, on DuckDB and on
//!    Postgres. Every flush logs the close-to-built latency of its slowest series' newest
//!    candle in exchange time; divided by the clock's speed it is real time. p50 and p99 over
//!    the flushes that staged a live minute (60 of them, one per minute).
//! 2. A simulated day of 200 symbols (`--build` into DuckDB, its `memory_limit` 256MB as the
//!    README advises for a long stream): the child's CPU seconds
//!    per symbol-hour of exchange time, its peak memory, and its resident memory at each eighth
//!    of the run (flat is the goal). `-- --day HOURS [--stage-only|--load-only]
//!    [--speed X] [--at HOURS]` runs this part alone, for that many hours, without the warehouse or the
//!    models, at another clock speed, from HOURS after a UTC midnight.

#[path = "../tests/it/support/exchange/mod.rs"]
#[allow(dead_code)]
mod exchange;
#[allow(dead_code)]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exchange::{Clock, Config, TestExchange, data};
use support::copy_dir;

const START: i64 = 1_704_412_800_000; // 2024-01-05T00:00:00Z
const MINUTE: i64 = 60_000;
/// DuckDB's `memory_limit` in the day run.
const DAY_MEMORY_LIMIT: &str = "256MB";

fn symbols(n: usize) -> String {
    (0..n)
        .map(|i| format!("S{i:03}USDT"))
        .collect::<Vec<_>>()
        .join(",")
}

fn exchange_at(n: usize, speed: u32, start: i64) -> TestExchange {
    let mut c = Config::synthetic(START);
    c.market = data::Market::synthetic_n(n);
    c.clock = Clock::scaled(start, speed);
    TestExchange::start(c)
}

fn project(url: &str, pg: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("klines.yml"),
        format!("exchange:\n  base_url: {url}\n  max_in_flight: 8\n"),
    )
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["models", "macros", "seeds"] {
        copy_dir(&root.join(sub), &dir.path().join(sub));
    }
    if let Some(db) = pg {
        let conn = std::env::var("KLINES_TEST_PG")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres".into());
        let field = |k: &str| {
            conn.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_string))
        };
        std::fs::write(
            dir.path().join("profiles.yml"),
            format!(
                "klines:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n      host: {}\n      port: {}\n      user: {}\n      dbname: {db}\n      schema: analytics\n      sslmode: disable\n",
                field("host").unwrap_or_else(|| "127.0.0.1".into()),
                field("port").unwrap_or_else(|| "5432".into()),
                field("user").unwrap_or_else(|| "postgres".into()),
            ),
        )
        .unwrap();
    }
    dir
}

fn psql(sql: &str) {
    let status = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qc",
            sql,
        ])
        .status()
        .expect("psql");
    assert!(status.success(), "{sql}");
}

struct Run {
    wall: f64,
    cpu: f64,
    peak: u64,
    /// Resident memory sampled at 25, 50, 75 and 100% of `expected_secs`.
    rss: Vec<u64>,
    stderr: String,
}

fn status_kb(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// Runs the klines binary to completion: wall and CPU time, peak and sampled memory, stderr.
fn run(dir: &Path, args: &[String], expected_secs: f64) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_klines"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        use std::io::Read;
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let sampler = std::thread::spawn(move || {
        let (mut peak, mut rss, mut next) = (0u64, Vec::new(), 0.125);
        loop {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            peak = peak.max(status_kb(pid, "VmHWM:") * 1024);
            let frac = started.elapsed().as_secs_f64() / expected_secs;
            if frac >= next && next <= 1.0 {
                rss.push(status_kb(pid, "VmRSS:") * 1024);
                next += 0.125;
            }
            std::thread::sleep(Duration::from_millis(20));
            if status_kb(pid, "State:") == 0
                && std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .is_ok_and(|s| s.contains("State:\tZ"))
            {
                break;
            }
        }
        (peak, rss)
    });
    let mut status = 0;
    // SAFETY: wait4 on our own child, with a zeroed rusage to fill.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut u) };
    let wall = started.elapsed().as_secs_f64();
    let (peak, rss) = sampler.join().unwrap();
    let stderr = reader.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "klines failed:\n{}",
        stderr.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Run {
        wall,
        cpu: secs(u.ru_utime) + secs(u.ru_stime),
        peak,
        rss,
        stderr,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn latency(n: usize, pg: bool, live_minutes: i64, speed: u32) {
    let ex = exchange_at(n, speed, START);
    let db = format!("klines_bench_stream_{}", uuid::Uuid::new_v4().simple());
    if pg {
        psql(&format!("CREATE DATABASE {db}"));
    }
    let dir = project(&ex.url, pg.then_some(db.as_str()));
    // Caught up to START first (a backfill), so the stream measures live minutes only.
    let until = START + live_minutes * MINUTE;
    let args: Vec<String> = [
        "stream",
        "--symbols",
        &symbols(n),
        "--from",
        &klines::time::format_ms(START - 30 * MINUTE),
        "--until",
        &klines::time::format_ms(until),
        "--ws-url",
        &ex.ws_url(),
        "--build",
        "--log-format",
        "json",
        "--flush-secs",
        "0.25",
        "--grace-secs",
        "120",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = run(
        dir.path(),
        &args,
        (until - START) as f64 / speed as f64 / 1000.0,
    );
    let mut samples: Vec<f64> = r
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "flushed")
        .filter(|v| {
            v["exchange_time"]
                .as_str()
                .is_some_and(|t| klines::time::parse("t", t, 0).unwrap_or(0) > START + MINUTE)
        })
        .filter_map(|v| v["latency_ms"].as_f64())
        .map(|ms| ms / speed as f64 / 1000.0)
        .collect();
    samples.sort_by(f64::total_cmp);
    println!(
        "stream latency, {} symbols, {}: close -> TRADES_OHLC_1M p50 {:.2}s, p99 {:.2}s, max {:.2}s over {} flushes ({} live minutes, clock x{speed}; wall {:.1}s, CPU {:.1}s)",
        n,
        if pg { "postgres" } else { "duckdb" },
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN),
        samples.len(),
        live_minutes,
        r.wall,
        r.cpu,
    );
    if pg {
        psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    }
}

/// What the day run does after staging.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    Stage,
    Load,
    Build,
}

/// `n` symbols streamed for `hours` from `at` hours after START (0: a UTC midnight).
fn day(n: usize, hours: i64, speed: u32, then: Then, at: i64) {
    let start = START + at * 60 * MINUTE;
    let ex = exchange_at(n, speed, start);
    let dir = project(&ex.url, None);
    // DuckDB's buffer pool capped as README advises for a long stream (its default is 80% of
    // the machine's memory, which a day of data only starts to fill).
    std::fs::write(
        dir.path().join("profiles.yml"),
        format!("klines:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: klines.duckdb\n      settings: {{memory_limit: {DAY_MEMORY_LIMIT}}}\n"),
    )
    .unwrap();
    let until = start + hours * 60 * MINUTE;
    let args: Vec<String> = [
        "stream",
        "--symbols",
        &symbols(n),
        "--from",
        &klines::time::format_ms(start),
        "--until",
        &klines::time::format_ms(until),
        "--ws-url",
        &ex.ws_url(),
        "--log-format",
        "json",
        "--flush-secs",
        "1",
        "--grace-secs",
        "600",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(match then {
        Then::Stage => None,
        Then::Load => Some("--load".to_string()),
        Then::Build => Some("--build".to_string()),
    })
    .collect();
    let expected = (until - start) as f64 / speed as f64 / 1000.0;
    let r = run(dir.path(), &args, expected);
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "stream, {n} symbols for {hours} h of exchange time from {} (clock x{speed}, {}): {:.3} CPU s per symbol-hour, peak RSS {:.1} MB, RSS at each eighth of the run: {} MB (wall {:.1}s, CPU {:.1}s)",
        klines::time::format_ms(start),
        match then {
            Then::Stage => "staged only".to_string(),
            Then::Load => format!("--load into DuckDB, memory_limit {DAY_MEMORY_LIMIT}"),
            Then::Build => format!("--build into DuckDB, memory_limit {DAY_MEMORY_LIMIT}"),
        },
        r.cpu / (n as f64 * hours as f64),
        mb(r.peak),
        r.rss
            .iter()
            .map(|b| format!("{:.0}", mb(*b)))
            .collect::<Vec<_>>()
            .join("/"),
        r.wall,
        r.cpu,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `-- --day HOURS [--load-only]`: the day run alone (for looking into memory).
    if let Some(i) = args.iter().position(|a| a == "--day") {
        let hours = args.get(i + 1).and_then(|h| h.parse().ok()).unwrap_or(24);
        let then = if args.iter().any(|a| a == "--stage-only") {
            Then::Stage
        } else if args.iter().any(|a| a == "--load-only") {
            Then::Load
        } else {
            Then::Build
        };
        let speed = args
            .iter()
            .position(|a| a == "--speed")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(480);
        let at = args
            .iter()
            .position(|a| a == "--at")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(0);
        day(200, hours, speed, then, at);
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let live = if quick { 3 } else { 60 };
    for n in [1, 50, 200] {
        latency(n, false, live, 20);
        latency(n, true, live, 20);
    }
    if quick {
        day(200, 2, 240, Then::Build, 0);
    } else {
        day(200, 24, 480, Then::Build, 0);
    }
}
