//! The model runner and the TRADES_OHLC models, on DuckDB and on the real Postgres server.

use std::collections::BTreeMap;
use std::path::Path;

use klines::warehouse::Value;

use crate::support::exchange::data;
use crate::support::*;

impl Wh {
    /// Every row of a model, as text, in key order.
    pub fn snapshot(&self, p: &Project, model: &str) -> Vec<String> {
        self.query(
            p,
            &format!(
                "SELECT * FROM {}.{model} ORDER BY symbol, open_time",
                self.schema()
            ),
        )
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
    }
}

/// Copies the repository's models, macros, seeds and singular tests into the project.
pub fn with_repo_models(p: &Project) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["models", "macros", "seeds", "data_tests"] {
        copy_dir(&root.join(dir), &p.path().join(dir));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

const MODELS: [&str; 5] = [
    "TRADES_OHLC_1M",
    "TRADES_OHLC_5M",
    "TRADES_OHLC_15M",
    "TRADES_OHLC_1H",
    "TRADES_OHLC_1D",
];

/// (open, high, low, close, volume) of Binance's own coarse candles, by open time.
type Candles = BTreeMap<i64, [i128; 5]>;

fn fixture_candles(symbol: &str, interval: &str) -> Candles {
    let dir = data::fixtures_dir();
    let rows = if symbol == "XRPETH" {
        data::parse_json_rows(
            symbol,
            &std::fs::read_to_string(dir.join(format!("freqtrade_xrpeth/XRP_ETH-{interval}.json")))
                .unwrap(),
        )
    } else {
        data::parse_csv_rows(
            symbol,
            &std::fs::read_to_string(
                dir.join(format!("rocketalerts_spot/{symbol}_{interval}.csv")),
            )
            .unwrap(),
        )
    };
    rows.into_iter()
        .map(|(t, k)| (t, [k.open, k.high, k.low, k.close, k.volume]))
        .collect()
}

fn model_candles(wh: &Wh, p: &Project, model: &str, symbol: &str) -> Candles {
    wh.query(p, &format!("SELECT open_time, open, high, low, close, volume FROM {}.{model} WHERE symbol = '{symbol}'", wh.schema()))
        .iter()
        .map(|r| {
            let d = |v: &Value| v.to_scaled(8).unwrap_or_else(|| panic!("{v:?}"));
            (r[0].as_millis().unwrap(), [d(&r[1]), d(&r[2]), d(&r[3]), d(&r[4]), d(&r[5])])
        })
        .collect()
}

/// Compares the model's candles with Binance's over the buckets the 1m data covers whole
/// (without the file's last minute, which may have been unclosed when saved). Returns how
/// many buckets were compared.
fn compare(
    wh: &Wh,
    p: &Project,
    model: &str,
    symbol: &str,
    interval: &str,
    bucket_ms: i64,
) -> usize {
    let minutes: Vec<i64> = fixture_candles(symbol, "1m").into_keys().collect();
    let (first, last) = (minutes[0], minutes[minutes.len() - 2]);
    let want = fixture_candles(symbol, interval);
    let got = model_candles(wh, p, model, symbol);
    let mut compared = 0;
    for (t, w) in want.range(first..) {
        if t + bucket_ms - 60_000 > last {
            break;
        }
        let g = got.get(t).unwrap_or_else(|| {
            panic!(
                "{model} {symbol}: no candle at {}",
                klines::time::format_ms(*t)
            )
        });
        assert_eq!(
            g,
            w,
            "{model} {symbol} at {}: (open, high, low, close, volume) differ",
            klines::time::format_ms(*t)
        );
        compared += 1;
    }
    compared
}

/// A project with the repository's models and the real fixtures' 1m klines loaded (XRPETH of
/// 2019-10-11 to 14; BTC, ETH and SOL of 2025-08-05 to 07).
pub fn real_fixtures_loaded(wh: &Wh) -> (TestExchange, Project) {
    let ex = TestExchange::start(ExchangeConfig::real(ms("2025-08-10T00:00:00Z")));
    let p = Project::new(&ex.url, "");
    with_repo_models(&p);
    wh.setup(&p);
    p.ok(&[
        "backfill",
        "--symbols",
        "XRPETH",
        "--from",
        "2019-10-11",
        "--to",
        "2019-10-14",
    ]);
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT,ETHUSDT,SOLUSDT",
        "--from",
        "2025-08-05",
        "--to",
        "2025-08-07",
    ]);
    p.ok(&["load"]);
    (ex, p)
}

fn real_data_rollups(wh: Wh) {
    let (_ex, p) = real_fixtures_loaded(&wh);
    p.ok(&["seed"]);
    let out = p.ok(&["run", "models"]);
    assert!(out.contains("run: 15 nodes: 15 ok"), "{out}");
    // Binance's rule for filler minutes makes all 711 fully covered XRPETH 5m candles equal.
    assert_eq!(
        compare(&wh, &p, "TRADES_OHLC_5M", "XRPETH", "5m", 300_000),
        711
    );
    for sym in ["BTCUSDT", "ETHUSDT", "SOLUSDT"] {
        assert!(
            compare(&wh, &p, "TRADES_OHLC_5M", sym, "5m", 300_000) >= 198,
            "{sym} 5m"
        );
        assert!(
            compare(&wh, &p, "TRADES_OHLC_15M", sym, "15m", 900_000) >= 64,
            "{sym} 15m"
        );
    }
    let out = p.ok(&["test"]);
    assert!(out.contains(" 0 failed"), "{out}");
}

#[test]
fn real_data_rollups_equal_binance_candles_on_duckdb() {
    real_data_rollups(Wh::DuckDb);
}

#[test]
fn real_data_rollups_equal_binance_candles_on_postgres() {
    real_data_rollups(Wh::postgres());
}

/// Incremental runs give what a full refresh gives, after appended days and after a late
/// correction of an old day, and a run with nothing new changes nothing.
fn incremental_equals_full_refresh(wh: Wh) {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms("2024-01-05T13:37:30Z")));
    let p = Project::new(&ex.url, "");
    with_repo_models(&p);
    wh.setup(&p);
    let symbols = "BTCUSDT,ETHUSDT";
    p.ok(&["backfill", "--symbols", symbols, "--from", "2024-01-01"]);
    p.ok(&["load"]);
    p.ok(&["build"]);
    // Two and a half more days arrive.
    ex.set_clock(Clock::Fixed(ms("2024-01-08T02:10:30Z")));
    p.ok(&["backfill", "--symbols", symbols, "--from", "2024-01-01"]);
    p.ok(&["load"]);
    let out = p.ok(&["run", "models"]);
    assert!(out.contains("run: 15 nodes: 15 ok"), "{out}");
    // A late correction of a minute on 2024-01-02.
    let t = ms("2024-01-02T07:31:00Z");
    let mut k = ex.market().minute("BTCUSDT", t).expect("a traded minute");
    k.high += 500_000_000_000;
    k.volume += 12_345;
    ex.correct("BTCUSDT", k.clone());
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT",
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-03",
        "--full-refresh",
    ]);
    let out = p.ok(&["load"]);
    assert!(out.contains(" 1 replaced"), "{out}");
    let out = p.ok(&["run", "models"]);
    // Only 2024-01-02 of BTCUSDT is recomputed downstream.
    assert!(
        out.contains("TRADES_OHLC_1D") && out.contains("1 ranges in 1 keys"),
        "{out}"
    );
    let incremental: Vec<Vec<String>> = MODELS.iter().map(|m| wh.snapshot(&p, m)).collect();
    // The correction reached every level.
    let day = wh.query(&p, &format!("SELECT high, volume FROM {}.TRADES_OHLC_1D WHERE symbol = 'BTCUSDT' AND open_time = CAST('2024-01-02 00:00:00+00:00' AS TIMESTAMPTZ)", wh.schema()));
    assert_eq!(day[0][0].to_scaled(8), Some(k.high));
    let want_day = data::rollup(
        &ex.market()
            .minutes("BTCUSDT", ms("2024-01-02"), ms("2024-01-03"), usize::MAX),
        0,
        0,
    )
    .unwrap();
    assert_eq!(day[0][1].to_scaled(8), Some(want_day.volume));

    // Nothing new: nothing changes.
    let out = p.ok(&["run", "models"]);
    assert_eq!(out.matches("nothing new").count(), 15, "{out}");
    let again: Vec<Vec<String>> = MODELS.iter().map(|m| wh.snapshot(&p, m)).collect();
    assert_eq!(again, incremental);

    let out = p.ok(&["run", "models", "--full-refresh"]);
    assert!(out.contains("run: 15 nodes: 15 ok"), "{out}");
    for (i, m) in MODELS.iter().enumerate() {
        let full = wh.snapshot(&p, m);
        assert_eq!(full.len(), incremental[i].len(), "{m}: rows");
        for (a, b) in full.iter().zip(&incremental[i]) {
            assert_eq!(a, b, "{m}: incremental and full refresh differ");
        }
    }
    // And both equal the exchange's own coarse candles.
    // Candles from the closed minutes only (the exchange also serves the open one).
    let now = ms("2024-01-08T02:10:00Z") - 1;
    for (model, interval) in [
        ("TRADES_OHLC_5M", "5m"),
        ("TRADES_OHLC_15M", "15m"),
        ("TRADES_OHLC_1D", "1d"),
    ] {
        let iv: klines::market::Interval = interval.parse().unwrap();
        let want = ex
            .market()
            .klines("ETHUSDT", iv, ms("2024-01-01"), now, now, usize::MAX);
        let got = model_candles(&wh, &p, model, "ETHUSDT");
        assert_eq!(got.len(), want.len(), "{model}");
        for k in &want {
            assert_eq!(
                got[&k.open_time],
                [k.open, k.high, k.low, k.close, k.volume],
                "{model} at {}",
                k.open_time
            );
        }
    }
    // The newest buckets are marked incomplete until the 1m data covers them.
    let open = wh.query(
        &p,
        &format!(
            "SELECT count(*) FROM {}.TRADES_OHLC_1D WHERE NOT is_complete",
            wh.schema()
        ),
    );
    assert_eq!(open[0][0].as_i64(), Some(2), "one forming day per symbol");
    // On Postgres, each time-range model has an index on (batch key, event time), kept
    // through full refreshes, so incremental runs do not scan whole tables.
    if let Wh::Postgres(_) = wh {
        let idx = wh.query(&p, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'analytics' AND indexname LIKE '%klines_range' ORDER BY 1");
        let names: Vec<&str> = idx.iter().map(|r| r[0].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "flow_15m__klines_range",
                "flow_1d__klines_range",
                "flow_1h__klines_range",
                "flow_1m__klines_range",
                "flow_5m__klines_range",
                "indicators_15m__klines_range",
                "indicators_1d__klines_range",
                "indicators_1h__klines_range",
                "indicators_1m__klines_range",
                "indicators_5m__klines_range",
                "trades_ohlc_15m__klines_range",
                "trades_ohlc_1d__klines_range",
                "trades_ohlc_1h__klines_range",
                "trades_ohlc_1m__klines_range",
                "trades_ohlc_5m__klines_range"
            ]
        );
        for r in &idx {
            assert!(
                r[1].as_str().unwrap().ends_with("(symbol, open_time)"),
                "{:?}",
                r[1]
            );
        }
    }
}

#[test]
fn incremental_runs_equal_a_full_refresh_on_duckdb() {
    incremental_equals_full_refresh(Wh::DuckDb);
}

#[test]
fn incremental_runs_equal_a_full_refresh_on_postgres() {
    incremental_equals_full_refresh(Wh::postgres());
}

/// Every field of a candle: open, high, low, close, volume, quote volume, trades, taker-buy
/// base and quote volume (exact decimals as 10^-8 units; trades as they are).
type FullCandles = BTreeMap<i64, [i128; 9]>;

fn full_fields(k: &klines::datasets::klines::Kline) -> [i128; 9] {
    [
        k.open,
        k.high,
        k.low,
        k.close,
        k.volume,
        k.quote_volume,
        k.trades as i128,
        k.taker_buy_base_volume,
        k.taker_buy_quote_volume,
    ]
}

fn model_full_candles(wh: &Wh, p: &Project, model: &str, symbol: &str) -> FullCandles {
    wh.query(
        p,
        &format!(
            "SELECT open_time, open, high, low, close, volume, quote_volume, trades, taker_buy_base_volume, \
             taker_buy_quote_volume FROM {}.{model} WHERE symbol = '{symbol}'",
            wh.schema()
        ),
    )
    .iter()
    .map(|r| {
        let d = |v: &Value| v.to_scaled(8).unwrap_or_else(|| panic!("{v:?}"));
        let trades = r[7].as_i64().unwrap_or_else(|| panic!("{:?}", r[7])) as i128;
        (
            r[0].as_millis().unwrap(),
            [d(&r[1]), d(&r[2]), d(&r[3]), d(&r[4]), d(&r[5]), d(&r[6]), trades, d(&r[8]), d(&r[9])],
        )
    })
    .collect()
}

/// A 4h rollup through the same macro as TRADES_OHLC_5M/15M/1D (`ohlc_rollup`), from the real
/// 1m klines with all 12 fields, equals Binance's own 4h candles on every field, on spot and
/// USD-M; and TRADES_OHLC_1M carries every field of the 1m klines through unchanged.
fn full12_rollups(wh: fn() -> Wh) {
    let ex = TestExchange::start(ExchangeConfig::real_full12(ms("2025-01-01T00:00:00Z")));
    let dir = data::full12_dir();
    for (market, symbol, from, to, four_hours, buckets) in [
        // The REST dump's last minute is left out: it may have been open when saved.
        (
            "spot",
            "ETHUSDT",
            "2021-09-23",
            "2021-09-26T11:02:00Z",
            "spot/ETHUSDT_4h_2021-09.csv",
            20,
        ),
        (
            "usdm",
            "BTCUSDT",
            "2022-09-05",
            "2022-09-07",
            "usdm/BTCUSDT_4h_2022-09.csv",
            12,
        ),
    ] {
        let wh = wh();
        let p = Project::new(
            &ex.url,
            &format!("market: {market}\nvars:\n  market: {market}\n"),
        );
        with_repo_models(&p);
        std::fs::write(
            p.path().join("models/ohlc_4h.sql"),
            "{{ config(materialized='table') }}\n{{ ohlc_rollup(ref('TRADES_OHLC_1M'), 14400) }}\n",
        )
        .unwrap();
        wh.setup(&p);
        p.ok(&["backfill", "--symbols", symbol, "--from", from, "--to", to]);
        p.ok(&["load"]);
        p.ok(&["seed"]);
        let out = p.ok(&["run", "models"]);
        assert!(out.contains("run: 16 nodes: 16 ok"), "{out}");

        let minutes = if market == "usdm" {
            ex.usdm_market()
        } else {
            ex.market()
        }
        .minutes(symbol, ms(from), ms(to), usize::MAX);
        let got_1m = model_full_candles(&wh, &p, "TRADES_OHLC_1M", symbol);
        assert_eq!(got_1m.len(), minutes.len(), "{market} {symbol}");
        for k in &minutes {
            assert_eq!(
                got_1m[&k.open_time],
                full_fields(k),
                "{market} 1m at {}",
                klines::time::format_ms(k.open_time)
            );
        }

        let want: FullCandles = data::read_full_rows(&dir.join(four_hours))
            .into_iter()
            .filter(|(t, _)| *t >= ms(from) && t + 4 * 3_600_000 <= ms(to))
            .map(|(t, k)| (t, full_fields(&k)))
            .collect();
        assert_eq!(
            want.len(),
            buckets,
            "{market}: Binance's 4h candles the 1m data covers whole"
        );
        let got = model_full_candles(&wh, &p, "ohlc_4h", symbol);
        for (t, w) in &want {
            assert_eq!(
                got.get(t),
                Some(w),
                "{market} {symbol} 4h at {}: (open, high, low, close, volume, quote volume, trades, taker base, taker quote)",
                klines::time::format_ms(*t)
            );
        }
    }
}

#[test]
fn real_12_field_rollups_equal_binance_4h_candles_on_duckdb() {
    full12_rollups(|| Wh::DuckDb);
}

#[test]
fn real_12_field_rollups_equal_binance_4h_candles_on_postgres() {
    full12_rollups(Wh::postgres);
}
