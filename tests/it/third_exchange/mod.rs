//! A third exchange that exists only in the tests: its server, its source and its
//! registration are this folder, and klines runs it as it runs Binance and Coinbase. It
//! proves that adding an exchange is one folder plus one registration line: nothing in
//! src/ names it. klines runs in this process (where the exchange is registered): backfill
//! stages its candles exactly, with NULL flow fields; load puts them in DuckDB; a stream
//! without a live feed polls it.

mod server;
mod source;

use std::path::Path;

use clap::Parser;
use klines::datasets::klines::Kline;
use klines::warehouse::{Value, Warehouse};

use crate::support::*;

const NOW: &str = "2024-01-03T06:00:30Z";
const FROM: &str = "2024-01-02T20:00:00Z";

/// Runs klines in this process, in the project at `dir`.
async fn klines(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec![
        "klines",
        "--project-dir",
        dir.to_str().expect("utf-8 path"),
        "-q",
    ];
    all.extend(args);
    let cli = klines::cli::Cli::try_parse_from(all)?;
    klines::commands::run(cli).await
}

/// The server's candles as klines stages them (no flow fields: read back as zeros).
fn want(symbol: &str, now: i64) -> Vec<Kline> {
    server::closed(symbol, ms(FROM), i64::MAX, now)
        .into_iter()
        .map(|c| Kline {
            open_time: c.open_time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            close_time: c.open_time + 59_999,
            quote_volume: 0,
            trades: 0,
            taker_buy_base_volume: 0,
            taker_buy_quote_volume: 0,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_exchange_is_one_folder_and_one_registration_line() {
    // The registration line.
    klines::sources::register(source::REGISTRATION).expect("register tinyex");

    let url = server::start(ms(NOW)).await;
    let p = Project::new("http://127.0.0.1:9", "");
    let series = [
        "--exchange",
        "tinyex",
        "--base-url",
        &url,
        "--symbols",
        "AAA-USD,BBB-USD",
    ];
    let mut backfill = vec!["backfill", "--from", FROM];
    backfill.extend(series);
    klines(p.path(), &backfill).await.expect("backfill");
    for symbol in server::SYMBOLS {
        let want = want(symbol, ms(NOW));
        // 10 hours of minutes, less the ones without trades.
        assert!(
            want.len() > 500 && want.len() < 600,
            "{symbol}: {}",
            want.len()
        );
        assert_staged(&p.stage_dir(), symbol, "1m", &want);
    }
    let files = parquet_files(&p.stage_dir());
    assert!(
        files
            .keys()
            .all(|k| k.starts_with("exchange=tinyex/market=spot/interval=1m/symbol=")),
        "{:?}",
        files.keys()
    );

    klines(p.path(), &["load"]).await.expect("load");
    let db = p.path().join("klines.duckdb");
    let wh = klines::warehouse::duckdb::DuckDb::open(
        db.to_str().expect("utf-8"),
        1,
        &Default::default(),
    )
    .await
    .expect("open DuckDB");
    let rows = wh
        .query(
            "SELECT symbol, count(*), sum(volume), count(trades), count(quote_volume), min(exchange) \
             FROM raw.klines GROUP BY symbol ORDER BY symbol",
        )
        .await
        .expect("query")
        .rows;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, symbol) in rows.iter().zip(server::SYMBOLS) {
        let want = want(symbol, ms(NOW));
        let volume: i128 = want.iter().map(|k| k.volume).sum();
        assert_eq!(row[0], Value::Text(symbol.into()));
        assert_eq!(row[1].as_i64(), Some(want.len() as i64), "{symbol}");
        assert_eq!(
            row[2],
            Value::Decimal {
                value: volume,
                scale: 8
            },
            "{symbol}: exact volume"
        );
        // No flow fields: NULL from the stage to the raw table.
        assert_eq!(row[3].as_i64(), Some(0), "{symbol}: trades");
        assert_eq!(row[4].as_i64(), Some(0), "{symbol}: quote volume");
        assert_eq!(row[5], Value::Text("tinyex".into()));
    }
    drop(wh);

    // A stream of an exchange without a live feed polls it: caught up to the clock, it
    // stops at --until and stages nothing twice.
    let mut stream = vec!["stream", "--from", FROM, "--until", "2024-01-03T06:00:00Z"];
    stream.extend(series);
    klines(p.path(), &stream).await.expect("stream");
    for symbol in server::SYMBOLS {
        assert_staged(&p.stage_dir(), symbol, "1m", &want(symbol, ms(NOW)));
    }
}

#[test]
fn an_unknown_exchange_is_refused_by_name() {
    let err = klines::cli::Cli::try_parse_from(["klines", "backfill", "--exchange", "kraken"])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown exchange \"kraken\" (known: binance, coinbase"),
        "{err}"
    );
}
