//! What the release before the exchange was part of a series wrote (stage, checkpoints, a
//! DuckDB file and a Postgres raw schema: tests/fixtures/legacy-release) keeps working with
//! this one: the backfill resumes from the old checkpoints and completes the old partial
//! files, the load migrates the raw tables once and loads every row exactly once, and the
//! models build.

use std::io::Read;

use crate::support::*;

const NOW: &str = "2024-01-05T06:00:00Z";

/// Unpacks the fixture into the project: stage/, state/, klines.duckdb, raw-postgres.sql.
fn unpack(p: &Project) {
    let zip = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/legacy-release/written-by-ec430ed.zip"),
    )
    .unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        if f.is_dir() {
            continue;
        }
        let path = p.path().join(f.enclosed_name().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut body = Vec::new();
        f.read_to_end(&mut body).unwrap();
        std::fs::write(path, body).unwrap();
    }
}

fn carried_forward(wh: Wh) {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new(&ex.url, "");
    unpack(&p);
    let legacy_cp = p
        .path()
        .join("state/checkpoints/market=spot/interval=1m/symbol=BTCUSDT.json");
    assert!(legacy_cp.is_file());
    if let Wh::Postgres(db) = &wh {
        db.batch(&std::fs::read_to_string(p.path().join("raw-postgres.sql")).unwrap());
    }
    wh.setup(&p);

    // The backfill resumes from the old checkpoints: only what is after them is asked for.
    let out = p
        .cmd()
        .args([
            "backfill",
            "--symbols",
            "BTCUSDT,ETHUSDT",
            "--from",
            "2024-01-04T20:00:00Z",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("moved the checkpoint"),
        "{}",
        stderr(&out)
    );
    let starts: Vec<i64> = ex.stats().klines_starts.into_iter().flatten().collect();
    assert!(!starts.is_empty());
    assert!(
        starts.iter().all(|&t| t >= ms("2024-01-05T02:00:00Z")),
        "covered ranges were fetched again: {starts:?}"
    );
    assert!(!legacy_cp.exists());
    assert!(
        p.path()
            .join("state/checkpoints/exchange=binance/market=spot/interval=1m/symbol=BTCUSDT.json")
            .is_file()
    );
    // The open day was completed from the old partial file plus the new rows.
    let names: Vec<String> = parquet_files(&p.stage_dir()).into_keys().collect();
    assert!(
        names.contains(&"exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-20240105T000000Z-20240105T060000Z.parquet".to_string()),
        "{names:?}"
    );

    // A dry run says a migration is due and changes nothing.
    let out = p.cmd().args(["load", "--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("migrates them once"),
        "{}",
        stderr(&out)
    );
    let has_exchange = |p: &Project| {
        wh.query(p, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'raw' AND table_name = 'klines' AND column_name = 'exchange'")[0][0].as_i64()
    };
    assert_eq!(has_exchange(&p), Some(0));

    // The load migrates the raw tables once and loads each kline exactly once.
    let out = p.cmd().args(["load"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("migrating them once"),
        "{}",
        stderr(&out)
    );
    let raw = |sql: &str| wh.query(&p, sql);
    for sym in ["BTCUSDT", "ETHUSDT"] {
        let want = expected(&ex, sym, "1m", ms("2024-01-04T20:00:00Z"), ms(NOW));
        let rows = raw(&format!(
            "SELECT exchange, open_time, close FROM raw.klines WHERE symbol = '{sym}' ORDER BY open_time"
        ));
        assert_eq!(rows.len(), want.len(), "{sym}");
        for (r, k) in rows.iter().zip(&want) {
            assert_eq!(r[0].as_str(), Some("binance"));
            assert_eq!(r[1].as_millis(), Some(k.open_time));
            assert_eq!(r[2].to_scaled(8), Some(k.close), "{sym} {}", k.open_time);
        }
    }
    let history = raw("SELECT count(*), min(exchange), max(exchange) FROM raw.klines_load_history");
    assert_eq!(history[0][0].as_i64(), Some(4 + 2));
    assert_eq!(history[0][1].as_str(), Some("binance"));
    assert_eq!(history[0][2].as_str(), Some("binance"));
    // A second load finds nothing, and migrates nothing.
    let out = p.cmd().args(["load"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("migrating"), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("load: 0 files"),
        "{}",
        stdout(&out)
    );

    // The models build over the migrated table.
    crate::models::with_repo_models(&p);
    p.ok(&["run"]);
    let built = raw(&format!(
        "SELECT count(*) FROM {}.TRADES_OHLC_1M",
        wh.schema()
    ));
    let want: usize = ["BTCUSDT", "ETHUSDT"]
        .iter()
        .map(|s| expected(&ex, s, "1m", ms("2024-01-04T20:00:00Z"), ms(NOW)).len())
        .sum();
    assert_eq!(built[0][0].as_i64(), Some(want as i64));

    // A model table built before the `exchange` column existed keeps its columns on
    // incremental runs, and gets the column from a full refresh.
    let s = wh.schema();
    let table = if matches!(wh, Wh::Postgres(_)) {
        "trades_ohlc_5m"
    } else {
        "TRADES_OHLC_5M"
    };
    let has = |p: &Project| {
        wh.query(p, &format!("SELECT count(*) FROM information_schema.columns WHERE table_schema = '{s}' AND table_name = '{table}' AND column_name = 'exchange'"))[0][0]
            .as_i64()
    };
    crate::support::runtime()
        .block_on(
            wh.connect(&p)
                .execute(&format!("ALTER TABLE {s}.{table} DROP COLUMN exchange")),
        )
        .unwrap();
    assert_eq!(has(&p), Some(0));
    p.ok(&["run"]);
    assert_eq!(has(&p), Some(0));
    p.ok(&["run", "--full-refresh"]);
    assert_eq!(has(&p), Some(1));
}

#[test]
fn a_stage_state_and_duckdb_of_the_release_before_are_carried_forward() {
    carried_forward(Wh::DuckDb);
}

#[test]
fn a_postgres_raw_schema_of_the_release_before_is_carried_forward() {
    carried_forward(Wh::postgres());
}

/// Snowflake (fakesnow): raw tables in the shape the release before created (its DDL: today's
/// without the exchange), holding a row loaded then, and an S3 stage it wrote (the fixture's
/// files, Parquet without an exchange column). `klines load` migrates the tables once, loads
/// the old files by COPY INTO (the exchange comes from their manifest entries), and the row
/// loaded before is replaced by the newer staged one, not duplicated.
#[test]
fn a_snowflake_raw_schema_and_s3_stage_of_the_release_before_are_carried_forward() {
    use klines::warehouse::Warehouse;
    use klines::warehouse::snowflake::{Snowflake, landing_ddl};
    let sf = FakeSnow::create();
    let url = crate::stage::s3_stage_url();
    let stage_name = sf.external_stage(&url);
    let p = Project::new("http://127.0.0.1:9", &format!("stage: {url}\n"));
    unpack(&p);
    p.profiles("sf", &sf.output_yaml("sf", Some(&stage_name)));
    let rt = crate::support::runtime();
    let stage = klines::stage::Stage::open(&url, &Default::default(), p.path()).unwrap();
    let local = files(&p.stage_dir());
    rt.block_on(async {
        for (key, body) in &local {
            stage
                .put(key, bytes::Bytes::from(body.clone()))
                .await
                .unwrap();
        }
    });
    // One kline of the first BTCUSDT file, as the old release loaded it (another close).
    let (first_key, first_body) = local
        .iter()
        .find(|(k, _)| k.starts_with("market=spot/interval=1m/symbol=BTCUSDT/"))
        .unwrap();
    let decoded = klines::stage::parquet::decode(first_key, first_body.clone().into()).unwrap();
    let k = decoded.klines.get(0);
    let old_ddl: Vec<String> =
        klines::load::raw::sql::ddl(&klines::warehouse::snowflake::DIALECT, "raw")
            .into_iter()
            .chain([landing_ddl("raw")])
            .map(|s| {
                s.replace("\"EXCHANGE\" VARCHAR NOT NULL, ", "")
                    .replace("\"EXCHANGE\" VARCHAR, ", "")
                    .replace("\"EXCHANGE\", ", "")
            })
            .collect();
    assert!(
        old_ddl.iter().all(|s| !s.contains("EXCHANGE")),
        "{old_ddl:?}"
    );
    rt.block_on(async {
        let w = Snowflake::connect(&sf.output(Some(&stage_name))).await.unwrap();
        for s in &old_ddl {
            w.execute(s).await.unwrap();
        }
        let d = klines::decimal::format;
        let ts = |ms: i64| klines::warehouse::dialect::timestamp_literal(&klines::warehouse::snowflake::DIALECT, ms);
        w.execute(&format!(
            "INSERT INTO RAW.KLINES VALUES ('spot', 'BTCUSDT', '1m', {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 'old.parquet', {}, {})",
            ts(k.open_time), d(k.open), d(k.high), d(k.low), d(k.close + 1), d(k.volume), ts(k.close_time),
            d(k.quote_volume), k.trades, d(k.taker_buy_base_volume), d(k.taker_buy_quote_volume), ts(0), ts(0)
        ))
        .await
        .unwrap();
    });
    let out = p.cmd().args(["load"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("migrating them once"),
        "{}",
        stderr(&out)
    );
    let rows = rt.block_on(async {
        let w = Snowflake::connect(&sf.output(Some(&stage_name)))
            .await
            .unwrap();
        w.query(
            "SELECT count(*), min(EXCHANGE), max(EXCHANGE), count(DISTINCT _FILE) FROM RAW.KLINES",
        )
        .await
        .unwrap()
        .rows
    });
    let staged: usize = local
        .iter()
        .filter(|(key, _)| key.ends_with(".parquet"))
        .map(|(key, body)| {
            klines::stage::parquet::decode(key, body.clone().into())
                .unwrap()
                .klines
                .len()
        })
        .sum();
    assert_eq!(rows[0][0].as_i64(), Some(staged as i64));
    assert_eq!(rows[0][1].as_str(), Some("binance"));
    assert_eq!(rows[0][2].as_str(), Some("binance"));
    assert_eq!(
        rows[0][3].as_i64(),
        Some(4),
        "every row from one of the four staged files"
    );
    let close = rt.block_on(async {
        let w = Snowflake::connect(&sf.output(Some(&stage_name)))
            .await
            .unwrap();
        w.query(&format!(
            "SELECT CLOSE FROM RAW.KLINES WHERE SYMBOL = 'BTCUSDT' AND OPEN_TIME = {}",
            klines::warehouse::dialect::timestamp_literal(
                &klines::warehouse::snowflake::DIALECT,
                k.open_time
            )
        ))
        .await
        .unwrap()
        .rows
    });
    assert_eq!(close[0][0].to_scaled(8), Some(k.close));
}
