//! The dashboard in a real headless Chromium (Debian's, driven by npm's playwright-core through
//! `tests/browser/dashboard.mjs`): the chart holds exactly the table's candles, the legend
//! shows a bar's exact values, panning back loads older bars, the interval switch and the URL
//! state work. A screenshot is kept under `target/screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use klines::warehouse::Value;
use serde_json::Value as Json;

use crate::serve::{Served, api_candle, built_project, table_candles};
use crate::support::exchange::{Config as ExchangeConfig, TestExchange};
use crate::support::*;

/// Runs the browser script against `url`; its JSON, and where the screenshot went.
fn drive(url: &str, name: &str) -> (Json, PathBuf) {
    drive_with(url, name, &[])
}

fn drive_with(url: &str, name: &str, extra: &[&str]) -> (Json, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/install-test-deps"
    );
    let shots = root.join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join(format!("{name}.png"));
    let out = Command::new("node")
        .arg(dir.join("dashboard.mjs"))
        .arg(url)
        .arg(&png)
        .args(extra)
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "the browser script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (serde_json::from_slice(&out.stdout).unwrap(), png)
}

/// The table's values as the chart holds them (numbers) and as the legend shows them (exact
/// text without trailing zeros).
/// A candle as the page keeps it: the page asks for the fields it draws and shows
/// (`fields=`), so the quote volumes (5 and 8 of the values) are left out of the comparison.
fn drawn(
    (time, mut values, complete): (i64, Vec<Option<i128>>, bool),
) -> (i64, Vec<Option<i128>>, bool) {
    values[5] = None;
    values[8] = None;
    (time, values, complete)
}

fn text(v: &Value) -> String {
    let s = v.to_string();
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[test]
fn the_chart_shows_exactly_the_tables_candles_in_chromium() {
    let ex = TestExchange::start(ExchangeConfig::real(ms("2025-08-10T00:00:00Z")));
    let wh = Wh::DuckDb;
    // XRPETH's real minutes of 2019-10-11 to 14: 3,560 candles, prices with 8 decimals.
    let p = built_project(&wh, &ex, "XRPETH", "2019-10-11", "2019-10-14");
    p.ok(&["run", "-s", "tag:indicators"]);
    let minutes = table_candles(&wh, &p, "TRADES_OHLC_1M", "XRPETH");
    let quarters = table_candles(&wh, &p, "TRADES_OHLC_15M", "XRPETH");
    let raw_1m = wh.query(
        &p,
        "SELECT open_time, open, high, low, close, volume, trades FROM main.TRADES_OHLC_1M \
         WHERE symbol = 'XRPETH' ORDER BY open_time",
    );
    let n = minutes.len();
    assert!(n > 3000, "{n}");
    let table = wh.query(
        &p,
        "SELECT open_time, sma_20, rsi_14, macd_hist FROM main.INDICATORS_1M WHERE symbol = 'XRPETH' ORDER BY open_time",
    );
    let s = Served::start(&p, &[], &[]);
    let (got, png) = drive(&s.url, "dashboard");

    assert_eq!(got["errors"], serde_json::json!([]), "errors in the page");
    let origin = format!("{}/", s.url);
    for r in got["requests"].as_array().unwrap() {
        assert!(
            r.as_str().unwrap().starts_with(&origin),
            "a request left the server: {r}"
        );
    }
    let candles = |step: &str| -> Vec<_> {
        got[step]["candles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| drawn(api_candle(c)))
            .collect()
    };

    // Opened on 1D of 1m candles: 1.5 days of bars (the newest), exactly the table's.
    let drawn_minutes: Vec<_> = minutes.iter().cloned().map(drawn).collect();
    assert_eq!(candles("opened"), drawn_minutes[n - 2160..].to_vec());
    // The chart's own bars: the same times and prices.
    let bars = got["opened"]["bars"].as_array().unwrap();
    assert_eq!(bars.len(), 2160);
    for (bar, row) in bars.iter().zip(&raw_1m[n - 2160..]) {
        assert_eq!(
            bar["time"].as_i64().unwrap() * 1000,
            row[0].as_millis().unwrap()
        );
        for (i, f) in ["open", "high", "low", "close"].iter().enumerate() {
            let want: f64 = row[i + 1].to_string().parse().unwrap();
            assert_eq!(bar[f].as_f64().unwrap(), want, "{f} at {}", row[0]);
        }
    }
    assert!(
        got["opened"]["search"]
            .as_str()
            .unwrap()
            .contains("interval=1m")
    );

    // The indicators: every column of INDICATORS_1M drawn, moving averages and bands over the
    // candles, RSI and MACD in two panes of their own, with the table's values.
    assert_eq!(
        got["opened"]["indicators"],
        serde_json::json!(crate::indicators::COLUMNS),
        "the indicator columns drawn"
    );
    assert_eq!(got["opened"]["panes"], 3, "candles, RSI and MACD panes");
    let shown = &table[n - 2160..];
    for (j, name) in ["sma_20", "rsi_14", "macd_hist"].iter().enumerate() {
        let drawn = got["opened"][name].as_array().unwrap();
        let want: Vec<_> = shown.iter().filter(|r| r[j + 1] != Value::Null).collect();
        assert_eq!(drawn.len(), want.len(), "{name}");
        for (d, r) in drawn.iter().zip(&want) {
            assert_eq!(
                d["time"].as_i64().unwrap() * 1000,
                r[0].as_millis().unwrap(),
                "{name}"
            );
            let Value::Float(x) = r[j + 1] else {
                panic!("{name} is a double")
            };
            // The page asks for 8 significant digits (`digits=8`): within half a unit of
            // the eighth digit of the table's value.
            let v = d["value"].as_f64().unwrap();
            assert!(
                (v - x).abs() <= 5e-8 * x.abs().max(1e-300),
                "{name} at {}: {v} vs {x}",
                r[0]
            );
        }
    }

    // The crosshair legend: the hovered bar's exact values.
    let t = got["hovered"]["time"].as_i64().unwrap();
    let row = raw_1m.iter().find(|r| r[0].as_millis() == Some(t)).unwrap();
    let legend = got["hovered"]["legend"].as_str().unwrap();
    assert!(
        legend.contains(&klines::time::format_ms(t)[..10]),
        "{legend}"
    );
    for (label, v) in [
        ("O", &row[1]),
        ("H", &row[2]),
        ("L", &row[3]),
        ("C", &row[4]),
        ("V", &row[5]),
        ("Trades", &row[6]),
    ] {
        assert!(
            legend.contains(&format!("{label} {}", text(v))),
            "{label} {}: {legend}",
            text(v)
        );
    }
    assert!(
        legend.contains("UTC") && legend.contains("Taker buy"),
        "{legend}"
    );
    assert!(
        legend.contains("SMA20 ") && legend.contains("RSI14 ") && legend.contains("MACD "),
        "{legend}"
    );

    // Panning back loaded the older bars: now the whole table.
    assert_eq!(candles("panned"), drawn_minutes);
    assert_eq!(got["panned"]["bars"].as_array().unwrap().len(), n);

    // A click on 15m: the 15m table, in the URL, and still there after a reload.
    let quarters: Vec<_> = quarters.into_iter().map(drawn).collect();
    assert_eq!(candles("switched"), quarters);
    assert!(
        got["switched"]["search"]
            .as_str()
            .unwrap()
            .contains("interval=15m")
    );
    assert_eq!(got["reloaded"]["state"]["interval"], "15m");
    assert_eq!(got["reloaded"]["state"]["symbol"], "XRPETH");
    assert_eq!(candles("reloaded"), quarters);

    let shot = std::fs::read(&png).unwrap();
    assert!(
        shot.starts_with(b"\x89PNG") && shot.len() > 10_000,
        "{}",
        png.display()
    );
}

/// `klines stream --build --serve`: a page open on the stream's 1m candles gets each new one
/// (and its indicators) without a reload, the forming 5m bucket is grey and fills until whole, and what the page
/// shows equals the tables the stream built.
#[test]
fn a_streams_new_candles_and_forming_buckets_update_without_a_reload() {
    use crate::support::exchange::Clock;
    let mut config = ExchangeConfig::synthetic(ms("2024-01-05T13:37:30Z"));
    // 30 exchange minutes a minute: a build per flush takes seconds in a debug build beside
    // other tests, and the page must see a 5m bucket form and fill while the stream runs.
    config.clock = Clock::scaled(ms("2024-01-05T13:37:30Z"), 30);
    let ex = TestExchange::start(config);
    let p = Project::new(&ex.url, "");
    crate::models::with_repo_models(&p);
    let ws = ex.ws_url();
    let s = Served::spawn(
        &p,
        &[
            "stream",
            "--symbols",
            "BTCUSDT",
            "--from",
            "2024-01-05T12:00:00Z",
            "--until",
            "2024-01-05T14:10:00Z",
            "--ws-url",
            &ws,
            "--build",
            "--select",
            "tag:ohlc",
            "tag:indicators",
            "--flush-secs",
            "0.2",
            "--serve",
            "127.0.0.1:0",
        ],
        &[],
    );
    // The page opens once the first flush is built.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.json("/api/symbols")["symbols"] != serde_json::json!(["BTCUSDT"]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream built nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (got, png) = drive_with(&s.url, "dashboard-live", &["live", "BTCUSDT"]);
    assert_eq!(got["errors"], serde_json::json!([]), "errors in the page");
    assert_eq!(got["same_document"], true, "the page was reloaded");
    assert!(got["updates"].as_i64().unwrap() >= 1);
    let (status, out) = s.wait();
    assert!(status.success(), "{out}");
    // Every candle the page ended with is the table's.
    let table = table_candles(&Wh::DuckDb, &p, "TRADES_OHLC_1M", "BTCUSDT");
    let shown: Vec<_> = got["updated"]["candles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| drawn(api_candle(c)))
        .collect();
    let opened = got["opened"]["candles"].as_array().unwrap().len();
    assert!(shown.len() >= opened + 3, "{} after {opened}", shown.len());
    let first = table.iter().position(|c| c.0 == shown[0].0).unwrap();
    let want: Vec<_> = table[first..first + shown.len()]
        .iter()
        .cloned()
        .map(drawn)
        .collect();
    assert_eq!(shown, want);
    // The SMA line grew with the candles, and holds the table's values.
    let sma = got["updated"]["sma_20"].as_array().unwrap();
    assert!(sma.len() > got["opened"]["sma_20"].as_array().unwrap().len());
    let values: std::collections::BTreeMap<i64, f64> = Wh::DuckDb
        .query(&p, "SELECT open_time, sma_20 FROM main.INDICATORS_1M WHERE symbol = 'BTCUSDT' AND sma_20 IS NOT NULL")
        .iter()
        .map(|r| (r[0].as_millis().unwrap(), match r[1] { Value::Float(x) => x, _ => panic!() }))
        .collect();
    for d in sma {
        let want = values[&(d["time"].as_i64().unwrap() * 1000)];
        let v = d["value"].as_f64().unwrap();
        // To the 8 significant digits the page asks for.
        assert!((v - want).abs() <= 5e-8 * want.abs(), "{v} vs {want}");
    }
    // The forming 5m bucket: grey while it fills, then whole and equal to the table's.
    let forming = &got["forming"];
    assert_eq!(forming["candle"]["is_complete"], false, "{forming}");
    assert_eq!(forming["bar"]["color"], "#8b949e", "{forming}");
    let completed = &got["completed"];
    assert_eq!(completed["candle"]["time"], forming["candle"]["time"]);
    assert!(completed["bar"].get("color").is_none(), "{completed}");
    let fives = table_candles(&Wh::DuckDb, &p, "TRADES_OHLC_5M", "BTCUSDT");
    let t = completed["candle"]["time"].as_i64().unwrap();
    assert_eq!(
        Some(&api_candle(&completed["candle"])),
        fives.iter().find(|c| c.0 == t)
    );
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
}
