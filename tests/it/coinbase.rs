//! `klines backfill --exchange coinbase` against the Coinbase test server over HTTP: exact
//! candles with NULL flow fields, pages of at most 300, 429s waited out; loaded into DuckDB and
//! Postgres, the TRADES_OHLC rollups of the 1m candles equal Coinbase's own 5m, 15m and 1d.

use crate::support::coinbase::TestCoinbase;
use crate::support::*;

const NOW: &str = "2024-01-04T10:00:30Z";
const FROM: &str = "2024-01-02";

fn project(cb: &TestCoinbase) -> Project {
    // The Binance URL is unused (and unreachable): everything comes from Coinbase.
    Project::new(
        "http://127.0.0.1:9",
        &format!("  coinbase_url: {}\n", cb.url),
    )
}

#[test]
fn coinbase_candles_stage_exactly_with_null_flow_fields() {
    let cb = TestCoinbase::start(ms(NOW));
    let p = project(&cb);
    let out = p.ok(&[
        "backfill",
        "--exchange",
        "coinbase",
        "--symbols",
        "BTC-USD,ETH-USD",
        "--from",
        FROM,
    ]);
    for sym in ["BTC-USD", "ETH-USD"] {
        let want = cb.closed(sym, 60_000, ms(FROM), ms(NOW));
        assert!(want.len() > 2 * 1440 / 2, "{sym}: {}", want.len());
        assert_staged(&p.stage_dir(), sym, "1m", &want);
    }
    // Pages of at most 300 buckets (the server refuses more), and only closed candles.
    let stats = cb.stats();
    assert!(
        stats.candle_requests >= 2 * (2 * 1440 + 600) / 300,
        "{stats:?}"
    );
    let staged = staged_klines(&p.stage_dir());
    assert!(staged.keys().all(|(_, _, t)| *t + 60_000 <= ms(NOW)));
    // The layout names the exchange; the flow columns are NULL in every file.
    let files = parquet_files(&p.stage_dir());
    assert!(
        files
            .keys()
            .all(|k| k.starts_with("exchange=coinbase/market=spot/interval=1m/symbol=")),
        "{:?}",
        files.keys()
    );
    for (name, bytes) in &files {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes.clone()),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            for c in [
                "quote_volume",
                "trades",
                "taker_buy_base_volume",
                "taker_buy_quote_volume",
            ] {
                assert_eq!(
                    batch.column_by_name(c).unwrap().null_count(),
                    batch.num_rows(),
                    "{name} {c}"
                );
            }
            assert_eq!(batch.column_by_name("volume").unwrap().null_count(), 0);
        }
    }
    assert!(summary_number(&out, "rows") > 0);
    // A second run asks for nothing.
    let before = cb.stats().candle_requests;
    p.ok(&[
        "backfill",
        "--exchange",
        "coinbase",
        "--symbols",
        "BTC-USD,ETH-USD",
        "--from",
        FROM,
    ]);
    assert_eq!(cb.stats().candle_requests, before);
}

#[test]
fn coinbase_429s_are_waited_out_and_unknown_products_named() {
    let cb = TestCoinbase::start(ms(NOW));
    cb.set_limit(3);
    let p = project(&cb);
    p.ok(&[
        "backfill",
        "--exchange",
        "coinbase",
        "--symbols",
        "BTC-USD,ETH-USD",
        "--from",
        "2024-01-03T12:00:00Z",
    ]);
    assert!(cb.stats().too_many > 0, "{:?}", cb.stats());
    for sym in ["BTC-USD", "ETH-USD"] {
        let want = cb.closed(sym, 60_000, ms("2024-01-03T12:00:00Z"), ms(NOW));
        assert_staged(&p.stage_dir(), sym, "1m", &want);
    }
    let out = p.run(&[
        "backfill",
        "--exchange",
        "coinbase",
        "--symbols",
        "BTC-USD,NOPE-USD,OLD-USD",
        "--from",
        FROM,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("NOPE-USD (unknown)") && err.contains("OLD-USD (status delisted)"),
        "{err}"
    );
    let out = p.run(&[
        "backfill",
        "--exchange",
        "coinbase",
        "--market",
        "usdm",
        "--from",
        FROM,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

fn rollups_equal_coinbases_own(wh: Wh) {
    let cb = TestCoinbase::start(ms(NOW));
    let p = project(&cb);
    wh.setup(&p);
    crate::models::with_repo_models(&p);
    // The README's three lines, as written.
    let lines: Vec<Vec<String>> = crate::readme::readme_commands()
        .iter()
        .skip_while(|c| !c.starts_with("klines backfill --exchange coinbase"))
        .take(3)
        .map(|c| crate::readme::words(c))
        .collect();
    assert_eq!(
        lines.iter().map(|l| l.join(" ")).collect::<Vec<_>>(),
        [
            format!("klines backfill --exchange coinbase --symbols BTC-USD,ETH-USD --from {FROM}"),
            "klines load".to_string(),
            "klines run --vars {exchange: coinbase}".to_string(),
        ]
    );
    for line in &lines {
        let args: Vec<&str> = line[1..].iter().map(String::as_str).collect();
        p.ok(&args);
    }
    // A build of Coinbase's candles tests them too: the symbols seed lists Coinbase's
    // products, so nothing warns.
    let out = p.ok(&["build", "--vars", "{exchange: coinbase}"]);
    assert!(out.contains(" 0 failed") && !out.contains("WARN"), "{out}");
    let s = wh.schema();
    let raw = wh.query(&p, "SELECT count(*), count(trades), count(quote_volume), count(taker_buy_base_volume), min(exchange) FROM raw.klines");
    assert!(raw[0][0].as_i64().unwrap() > 2000);
    assert_eq!(raw[0][1].as_i64(), Some(0), "trades must be NULL");
    assert_eq!(raw[0][2].as_i64(), Some(0));
    assert_eq!(raw[0][3].as_i64(), Some(0));
    assert_eq!(raw[0][4].as_str(), Some("coinbase"));
    for (table, g_ms) in [
        ("TRADES_OHLC_1M", 60_000),
        ("TRADES_OHLC_5M", 300_000),
        ("TRADES_OHLC_15M", 900_000),
        ("TRADES_OHLC_1H", 3_600_000),
        ("TRADES_OHLC_1D", 86_400_000),
    ] {
        for sym in ["BTC-USD", "ETH-USD"] {
            let rows = wh.query(&p, &format!(
                "SELECT open_time, open, high, low, close, volume, trades, quote_volume FROM {s}.{table} WHERE symbol = '{sym}' AND is_complete ORDER BY open_time"
            ));
            // Complete buckets: from the first loaded minute's bucket on, closed before NOW.
            let first = rows
                .first()
                .and_then(|r| r[0].as_millis())
                .unwrap_or_else(|| panic!("{table} {sym}: no rows"));
            let want = cb.closed(sym, g_ms, first, ms(NOW).div_euclid(g_ms) * g_ms);
            assert_eq!(rows.len(), want.len(), "{table} {sym}");
            for (r, k) in rows.iter().zip(&want) {
                let at = format!("{table} {sym} {}", klines::time::format_ms(k.open_time));
                assert_eq!(r[0].as_millis(), Some(k.open_time), "{at}");
                assert_eq!(r[1].to_scaled(8), Some(k.open), "{at} open");
                assert_eq!(r[2].to_scaled(8), Some(k.high), "{at} high");
                assert_eq!(r[3].to_scaled(8), Some(k.low), "{at} low");
                assert_eq!(r[4].to_scaled(8), Some(k.close), "{at} close");
                assert_eq!(r[5].to_scaled(8), Some(k.volume), "{at} volume");
                assert!(
                    r[6] == klines::warehouse::Value::Null
                        && r[7] == klines::warehouse::Value::Null,
                    "{at}: trades and quote volume are NULL, not invented"
                );
            }
        }
    }
    for table in [
        "TRADES_OHLC_1M",
        "TRADES_OHLC_5M",
        "TRADES_OHLC_1H",
        "TRADES_OHLC_1D",
    ] {
        let ex = wh.query(&p, &format!("SELECT DISTINCT exchange FROM {s}.{table}"));
        assert_eq!(ex.len(), 1, "{table}");
        assert_eq!(ex[0][0].as_str(), Some("coinbase"), "{table}");
    }
    let days = wh.query(
        &p,
        &format!(
            "SELECT count(*) FROM {s}.TRADES_OHLC_1D WHERE symbol = 'BTC-USD' AND is_complete"
        ),
    );
    assert_eq!(days[0][0].as_i64(), Some(2));
}

#[test]
fn coinbase_rollups_equal_coinbases_own_candles_on_duckdb() {
    rollups_equal_coinbases_own(Wh::DuckDb);
}

#[test]
fn coinbase_rollups_equal_coinbases_own_candles_on_postgres() {
    rollups_equal_coinbases_own(Wh::postgres());
}

/// `klines stream --exchange coinbase` polls closed candles (no WebSocket): on a clock sixty
/// times faster than real time, it stages the minutes before `--until` as they close, exactly,
/// loads and builds them, and asks for each closed minute about once.
#[test]
fn coinbase_stream_polls_closed_candles_and_builds() {
    let start = ms("2024-01-04T10:00:30Z");
    let cb = TestCoinbase::start_scaled(start, 60);
    let p = project(&cb);
    crate::models::with_repo_models(&p);
    let out = p.ok(&[
        "stream",
        "--exchange",
        "coinbase",
        "--symbols",
        "BTC-USD",
        "--from",
        "2024-01-04T09:30:00Z",
        "--until",
        "2024-01-04T10:06:00Z",
        "--grace-secs",
        "2",
        "--build",
    ]);
    assert!(
        out.lines().any(|l| l.starts_with("stream: 1 series")),
        "{out}"
    );
    assert!(
        out.lines().filter(|l| l.starts_with("run: ")).count() >= 2,
        "built after flushes: {out}"
    );
    let want = cb.closed(
        "BTC-USD",
        60_000,
        ms("2024-01-04T09:30:00Z"),
        ms("2024-01-04T10:06:00Z"),
    );
    assert_staged(&p.stage_dir(), "BTC-USD", "1m", &want);
    // The catch-up in pages, then about one request per closed minute (not one per tick).
    let stats = cb.stats();
    assert!(stats.candle_requests <= 1 + 6 + 3, "{stats:?}");
    let built = Wh::DuckDb.query(
        &p,
        "SELECT count(*), count(trades) FROM main.TRADES_OHLC_1M WHERE symbol = 'BTC-USD'",
    );
    assert_eq!(built[0][0].as_i64(), Some(want.len() as i64));
    assert_eq!(built[0][1].as_i64(), Some(0));
}
