//! The indicator models (`materialized='indicators'`) and the flow models, on DuckDB and
//! Postgres (Snowflake's in tests/it/snowflake.rs): every indicator value of every interval
//! equals TA-Lib's (PyPI's `ta-lib`, run by tests/it/support/talib_reference.py) on the real
//! fixtures and on synthetic candles with filler minutes and outages; incremental runs equal a
//! full refresh after new days, a late correction and a filled gap; a correction recomputes
//! only what follows it.

use std::collections::BTreeMap;
use std::path::Path;

use klines::warehouse::Value;

use crate::models::with_repo_models;
use crate::support::*;

/// The indicator columns TA-Lib is asked for (the defaults of the models' vars).
pub const COLUMNS: [&str; 11] = [
    "sma_20",
    "sma_50",
    "ema_20",
    "ema_50",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
];

pub const INTERVALS: [&str; 5] = ["1M", "5M", "15M", "1H", "1D"];

fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Float(x) => serde_json::json!(x),
        other => panic!("an indicator value is a double or NULL, not {other:?}"),
    }
}

/// Writes the closes and klines' values of every indicator table and symbol, asks TA-Lib, and
/// returns how many values were compared per (interval, column). Panics on any difference.
pub fn compare_with_talib(
    query: &dyn Fn(&str) -> Vec<Vec<Value>>,
    schema: &str,
    dir: &Path,
) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for iv in INTERVALS {
        let mut series = Vec::new();
        let symbols = query(&format!(
            "SELECT DISTINCT symbol FROM {schema}.INDICATORS_{iv} ORDER BY 1"
        ));
        assert!(!symbols.is_empty(), "INDICATORS_{iv} is empty");
        for s in &symbols {
            let sym = s[0].as_str().unwrap();
            let closes = query(&format!(
                "SELECT open_time, close FROM {schema}.TRADES_OHLC_{iv} WHERE symbol = '{sym}' AND is_complete ORDER BY open_time"
            ));
            let rows = query(&format!(
                "SELECT open_time, bar_index, {} FROM {schema}.INDICATORS_{iv} WHERE symbol = '{sym}' ORDER BY open_time",
                COLUMNS.join(", ")
            ));
            assert_eq!(
                rows.len(),
                closes.len(),
                "INDICATORS_{iv} {sym}: one row per closed candle"
            );
            for (i, (r, c)) in rows.iter().zip(&closes).enumerate() {
                assert_eq!(r[0], c[0], "INDICATORS_{iv} {sym}: bar {i}'s time");
                assert_eq!(
                    r[1].as_i64(),
                    Some(i as i64),
                    "INDICATORS_{iv} {sym}: bar_index"
                );
            }
            let values: serde_json::Map<String, serde_json::Value> = COLUMNS
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    (
                        c.to_string(),
                        rows.iter().map(|r| json_value(&r[j + 2])).collect(),
                    )
                })
                .collect();
            series.push(serde_json::json!({
                "name": format!("INDICATORS_{iv} {sym}"),
                "closes": closes.iter().map(|c| c[1].to_string()).collect::<Vec<_>>(),
                "values": values,
            }));
        }
        let path = dir.join(format!("talib-{iv}.json"));
        let doc = serde_json::json!({
            "params": {"sma": [20, 50], "ema": [20, 50], "rsi": 14, "macd": [12, 26, 9], "bbands": [20, 2]},
            "series": series,
        });
        std::fs::write(&path, doc.to_string()).unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/talib_reference.py");
        let o = std::process::Command::new("python3")
            .arg(&script)
            .arg(&path)
            .output()
            .expect("python3 runs");
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {} {}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        });
        assert!(
            o.status.success(),
            "INDICATORS_{iv} differs from TA-Lib: {}",
            serde_json::to_string_pretty(&report["failures"]).unwrap()
        );
        eprintln!(
            "INDICATORS_{iv} vs TA-Lib: compared {} max relative difference {}",
            report["compared"], report["max_rel"]
        );
        for c in COLUMNS {
            let n = report["compared"][c].as_u64().unwrap_or(0);
            out.insert((iv.to_string(), c.to_string()), n);
        }
    }
    out
}

fn real_candles_equal_talib(wh: Wh) {
    let (_ex, p) = crate::models::real_fixtures_loaded(&wh);
    let out = p.ok(&["build"]);
    assert!(out.contains(" 0 failed"), "{out}");
    let compared = compare_with_talib(&|sql| wh.query(&p, sql), wh.schema(), p.path());
    // Every indicator is compared on the 1m, 5m and 15m candles (the fixtures span 3 days, too
    // few for daily indicators: there, the first bars are what is compared).
    for iv in ["1M", "5M", "15M"] {
        for c in COLUMNS {
            assert!(
                compared[&(iv.to_string(), c.to_string())] > 100,
                "{iv} {c}: {compared:?}"
            );
        }
    }
    assert!(
        compared[&("1M".into(), "macd".into())] > 6000,
        "{compared:?}"
    );
}

#[test]
fn indicators_equal_talib_on_real_candles_on_duckdb() {
    real_candles_equal_talib(Wh::DuckDb);
}

#[test]
fn indicators_equal_talib_on_real_candles_on_postgres() {
    real_candles_equal_talib(Wh::postgres());
}

const TABLES: [&str; 10] = [
    "INDICATORS_1M",
    "INDICATORS_5M",
    "INDICATORS_15M",
    "INDICATORS_1H",
    "INDICATORS_1D",
    "FLOW_1M",
    "FLOW_5M",
    "FLOW_15M",
    "FLOW_1H",
    "FLOW_1D",
];

fn snapshots(wh: &Wh, p: &Project) -> Vec<Vec<String>> {
    TABLES.iter().map(|t| wh.snapshot(p, t)).collect()
}

/// Synthetic candles (about one minute in five a filler, outages of one minute in a thousand
/// and 02:10-02:25 on some days) over 66 days, so that daily indicators have values too.
/// Incremental runs after new days, a gap filled later and a late correction equal a full
/// refresh, value for value, and TA-Lib's.
fn incremental_indicators(wh: Wh) {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms("2024-01-03T10:00:30Z")));
    let p = Project::new(&ex.url, "");
    with_repo_models(&p);
    wh.setup(&p);
    let symbols = "BTCUSDT,ETHUSDT";
    // A gap: 2023-12-10 and 2023-12-11 are missing at first.
    p.ok(&[
        "backfill",
        "--symbols",
        symbols,
        "--from",
        "2023-10-29",
        "--to",
        "2023-12-10",
    ]);
    p.ok(&["backfill", "--symbols", symbols, "--from", "2023-12-12"]);
    p.ok(&["load"]);
    let out = p.ok(&["build"]);
    assert!(out.contains(" 0 failed") && !out.contains("ERROR"), "{out}");

    // Two and a half more days arrive.
    ex.set_clock(Clock::Fixed(ms("2024-01-05T22:00:30Z")));
    p.ok(&["backfill", "--symbols", symbols, "--from", "2023-12-12"]);
    p.ok(&["load"]);
    let out = p.ok(&["run", "--select", "tag:ohlc", "tag:indicators", "tag:flow"]);
    assert!(
        out.contains("2 series from their first changed bar (0 whole)"),
        "{out}"
    );

    // The gap is filled.
    p.ok(&[
        "backfill",
        "--symbols",
        symbols,
        "--from",
        "2023-12-10",
        "--to",
        "2023-12-12",
    ]);
    p.ok(&["load"]);
    p.ok(&["run", "--select", "tag:ohlc", "tag:indicators", "tag:flow"]);

    // A late correction of one minute on 2023-12-20.
    let mut k = (0..)
        .find_map(|i| {
            ex.market()
                .minute("BTCUSDT", ms("2023-12-20T07:31:00Z") + i * 60_000)
                .filter(|k| k.trades > 0)
        })
        .unwrap();
    let at = format!(
        "CAST('{}' AS TIMESTAMPTZ)",
        klines::time::format_ms(k.open_time)
            .replace('T', " ")
            .replace('Z', "+00:00")
    );
    k.close += 2_500_000_000;
    k.high += 2_500_000_000;
    // And a whale: twenty times the minute's volume.
    k.volume *= 20;
    k.quote_volume *= 20;
    ex.correct("BTCUSDT", k.clone());
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT",
        "--from",
        "2023-12-20",
        "--to",
        "2023-12-21",
        "--full-refresh",
    ]);
    let out = p.ok(&["load"]);
    assert!(out.contains(" 1 replaced"), "{out}");
    let before: Vec<Vec<String>> = [
        "SELECT * FROM {s}.INDICATORS_1M WHERE symbol = 'ETHUSDT' ORDER BY open_time",
        "SELECT * FROM {s}.INDICATORS_1M WHERE symbol = 'BTCUSDT' AND open_time < {at} ORDER BY open_time",
    ]
    .iter()
    .map(|q| rows_text(&wh, &p, &q.replace("{s}", wh.schema()).replace("{at}", &at)))
    .collect();
    let out = p.ok(&["run", "--select", "tag:ohlc", "tag:indicators", "tag:flow"]);
    // Only BTCUSDT is recomputed, from its first changed bar on.
    for iv in INTERVALS {
        assert!(out.contains(&format!("INDICATORS_{iv}")), "{out}");
    }
    assert!(
        out.contains("1 series from their first changed bar (0 whole)"),
        "{out}"
    );
    let after: Vec<Vec<String>> = [
        "SELECT * FROM {s}.INDICATORS_1M WHERE symbol = 'ETHUSDT' ORDER BY open_time",
        "SELECT * FROM {s}.INDICATORS_1M WHERE symbol = 'BTCUSDT' AND open_time < {at} ORDER BY open_time",
    ]
    .iter()
    .map(|q| rows_text(&wh, &p, &q.replace("{s}", wh.schema()).replace("{at}", &at)))
    .collect();
    assert_eq!(
        before, after,
        "rows before the correction and other symbols are left alone"
    );
    let changed = wh.query(
        &p,
        &format!(
            "SELECT sma_20 FROM {}.INDICATORS_1M WHERE symbol = 'BTCUSDT' AND open_time = {at}",
            wh.schema()
        ),
    );
    assert!(matches!(changed[0][0], Value::Float(_)));

    // Nothing new: nothing changes.
    let incremental = snapshots(&wh, &p);
    let out = p.ok(&["run", "--select", "tag:indicators", "tag:flow"]);
    assert_eq!(out.matches("nothing new").count(), 10, "{out}");

    let compared = compare_with_talib(&|sql| wh.query(&p, sql), wh.schema(), p.path());
    for iv in INTERVALS {
        for c in COLUMNS {
            assert!(
                compared[&(iv.to_string(), c.to_string())] > 0,
                "{iv} {c}: {compared:?}"
            );
        }
    }

    // The full refresh reads each series 997 bars at a time (across day boundaries, in many
    // pieces): the pieces continue one computation.
    let out = p.ok(&[
        "run",
        "--select",
        "tag:indicators",
        "tag:flow",
        "--full-refresh",
        "--vars",
        "{indicator_read_rows: 997}",
    ]);
    assert!(out.contains("run: 10 nodes: 10 ok"), "{out}");
    let full = snapshots(&wh, &p);
    for (i, t) in TABLES.iter().enumerate() {
        assert_eq!(full[i].len(), incremental[i].len(), "{t}: rows");
        for (a, b) in full[i].iter().zip(&incremental[i]) {
            assert_eq!(a, b, "{t}: incremental and full refresh differ");
        }
    }
    let out = p.ok(&["test", "--select", "tag:indicators", "tag:flow"]);
    assert!(out.contains(" 0 failed"), "{out}");
    // The whale: flagged, with its volume over the mean of the 60 bars before it.
    let s = wh.schema();
    let flow = wh.query(&p, &format!("SELECT is_whale, volume_ratio FROM {s}.FLOW_1M WHERE symbol = 'BTCUSDT' AND open_time = {at}"));
    assert_eq!(flow[0][0], Value::Bool(true), "{flow:?}");
    let before = wh.query(&p, &format!("SELECT volume FROM {s}.TRADES_OHLC_1M WHERE symbol = 'BTCUSDT' AND open_time < {at} ORDER BY open_time DESC LIMIT 60"));
    let mean = before
        .iter()
        .map(|r| r[0].to_scaled(8).unwrap())
        .sum::<i128>() as f64
        / 60.0;
    let Value::Float(ratio) = flow[0][1] else {
        panic!("{flow:?}")
    };
    assert!(
        (ratio - k.volume as f64 / mean).abs() < 1e-9 * ratio,
        "{ratio} vs {}",
        k.volume as f64 / mean
    );
    let whales = wh.query(
        &p,
        &format!("SELECT count(*) FROM {s}.FLOW_1M WHERE is_whale"),
    );
    assert_eq!(
        whales[0][0].as_i64(),
        Some(1),
        "synthetic volumes vary at most fivefold otherwise"
    );
}

fn rows_text(wh: &Wh, p: &Project, sql: &str) -> Vec<String> {
    wh.query(p, sql)
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

#[test]
fn incremental_indicators_equal_full_refresh_and_talib_on_duckdb() {
    incremental_indicators(Wh::DuckDb);
}

#[test]
fn incremental_indicators_equal_full_refresh_and_talib_on_postgres() {
    incremental_indicators(Wh::postgres());
}
