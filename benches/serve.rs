//! Dashboard benchmarks (`cargo bench --bench serve`; `-- --quick` for a month instead of a
//! year). Postgres needs the test server (`KLINES_TEST_PG`, as `scripts/test` sets it).
//!
//! On a year of synthetic BTCUSDT 1m klines loaded and built with the project's models (so a
//! year of 5m candles, 105,120), into DuckDB and into Postgres, with the release binary's
//! `klines serve` on loopback:
//! 1. `GET /api/candles` for 10,000 bars (5m and 1m): median and p95 over 30 requests.
//! 2. The time until the first chart is drawn in headless Chromium (`tests/browser`), the page
//!    opened on the year of 5m candles (`range=all`, its newest 10,000 bars): median of 5.

#[path = "../tests/it/support/exchange/data.rs"]
#[allow(dead_code)]
mod data;
#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use support::{DAY, DayStager, klines};

const T0: i64 = 1_672_531_200_000; // 2023-01-01

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn bench(name: &str, days: i64, profile: Option<String>) {
    let dir = support::project(profile);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stager = DayStager::open(dir.path());
    for d in 0..days {
        let day = T0 + d * DAY;
        stager.stage(day, &stager.minutes(day));
    }
    klines(dir.path(), &["load"]);
    klines(dir.path(), &["seed"]);
    klines(dir.path(), &["run", "-s", "tag:ohlc"]);

    let mut child = Command::new(env!("CARGO_BIN_EXE_klines"))
        .args(["serve", "--addr", "127.0.0.1:0", "-q"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .trim_start_matches("serving ")
        .trim_end_matches('/')
        .to_string();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    for interval in ["5m", "1m"] {
        let get = || async {
            let started = Instant::now();
            let body = http
                .get(format!(
                    "{url}/api/candles?symbol=BTCUSDT&interval={interval}&limit=10000"
                ))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            (started.elapsed().as_secs_f64() * 1000.0, body.len())
        };
        let mut times = Vec::new();
        let mut size = 0;
        rt.block_on(async {
            for i in 0..32 {
                let (ms, len) = get().await;
                if i >= 2 {
                    times.push(ms);
                }
                size = len;
            }
        });
        times.sort_by(f64::total_cmp);
        println!(
            "{name}: GET /api/candles {interval}, 10,000 bars ({} KB): median {:.1} ms, p95 {:.1} ms",
            size / 1024,
            percentile(&times, 0.5),
            percentile(&times, 0.95)
        );
    }

    let out = Command::new("node")
        .arg(root.join("tests/browser/first-chart.mjs"))
        .arg(format!("{url}/?symbol=BTCUSDT&interval=5m&range=all"))
        .arg("5")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut times: Vec<f64> = v["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "{name}: first chart drawn in headless Chromium, {days} days of 5m candles ({} bars drawn): median {:.0} ms (min {:.0}, max {:.0})",
        v["bars"],
        percentile(&times, 0.5),
        times[0],
        times[times.len() - 1]
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

fn main() {
    let days = if std::env::args().any(|a| a == "--quick") {
        31
    } else {
        365
    };
    bench("DuckDB", days, None);
    let (profile, drop) = support::postgres_profile("serve");
    bench("Postgres", days, Some(profile));
    drop();
}
