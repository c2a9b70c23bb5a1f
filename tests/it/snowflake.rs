//! Snowflake, against fakesnow on loopback (which reads S3 from SeaweedFS): the warehouse
//! conformance suite, loads with COPY INTO from an external stage, the models, key-pair JWTs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use klines::stage::Stage;
use klines::warehouse::Warehouse;
use klines::warehouse::snowflake::Snowflake;

use crate::models::with_repo_models;
use crate::stage::s3_stage_url;
use crate::support::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn snowflake_passes_the_warehouse_conformance_suite() {
    let sf = FakeSnow::create();
    let url = s3_stage_url();
    let stage_name = sf.external_stage(&url);
    rt().block_on(async {
        let wh = Arc::new(
            Snowflake::connect(&sf.output(Some(&stage_name)))
                .await
                .unwrap(),
        );
        let stage = Stage::open(&url, &BTreeMap::new(), Path::new(".")).unwrap();
        crate::warehouse::conformance(wh, Some(&stage)).await;
    });
}

#[test]
fn snowflake_results_keep_types_bindings_and_error_codes() {
    let sf = FakeSnow::create();
    rt().block_on(async {
        let w = Snowflake::connect(&sf.output(None)).await.unwrap();
        // Arrow results: scaled NUMBER to exact decimals, TIMESTAMP_NTZ structs, dates.
        let r = w
            .query("SELECT 123456789012345678901234567890.12345678::NUMBER(38,8) AS big, 7 AS small, \
                    '2024-02-29 23:59:59.123'::TIMESTAMP_NTZ AS ts, '2024-01-02'::DATE AS d, TRUE AS b, 'x' AS s")
            .await
            .unwrap();
        assert_eq!(r.columns, ["BIG", "SMALL", "TS", "D", "B", "S"]);
        let row = &r.rows[0];
        assert_eq!(row[0].to_scaled(8), Some(12_345_678_901_234_567_890_123_456_789_012_345_678));
        assert_eq!(row[1].as_i64(), Some(7));
        assert_eq!(row[2].as_millis(), Some(ms("2024-02-29T23:59:59.123Z")));
        assert_eq!(row[3], klines::warehouse::Value::Date(19_724));
        assert_eq!(row[4], klines::warehouse::Value::Bool(true));
        // Bindings.
        let r = w.run("SELECT ? AS a, ? AS b", &[serde_json::json!(42), serde_json::json!("it's")]).await.unwrap();
        assert_eq!((r.rows[0][0].as_i64(), r.rows[0][1].as_str()), (Some(42), Some("it's")));
        // DML answers in JSON; affected rows.
        w.execute("CREATE TABLE t (id NUMBER)").await.unwrap();
        assert_eq!(w.execute("INSERT INTO t VALUES (1), (2), (3)").await.unwrap(), 3);
        // Errors carry Snowflake's code and SQL state.
        let err = w.query("SELECT nope FROM t").await.unwrap_err();
        let sf_err = err.downcast_ref::<klines::warehouse::snowflake::SnowflakeError>().expect("a Snowflake error");
        assert_eq!(sf_err.code, "002043");
        assert!(format!("{err:#}").starts_with("snowflake error 002043 (02000): "), "{err:#}");
    });
}

/// Backfill to S3, load with COPY INTO, build the models on Snowflake: exact rows, upper-case
/// relations, and Binance's own candles.
#[test]
fn snowflake_loads_with_copy_into_and_builds_the_models() {
    let sf = FakeSnow::create();
    let url = s3_stage_url();
    let stage_name = sf.external_stage(&url);
    let ex = TestExchange::start(ExchangeConfig::real(ms("2025-08-10T00:00:00Z")));
    let p = Project::new(&ex.url, &format!("stage: {url}\n"));
    with_repo_models(&p);
    p.profiles("sf", &sf.output_yaml("sf", Some(&stage_name)));
    p.ok(&[
        "backfill",
        "--symbols",
        "XRPETH",
        "--from",
        "2019-10-11",
        "--to",
        "2019-10-14",
    ]);
    let out = p.ok(&["load"]);
    assert!(
        out.starts_with(
            "load: 3 files, 3560 rows (3560 inserted, 0 replaced, 0 unchanged), 0 failed"
        ),
        "{out}"
    );
    assert!(p.ok(&["load"]).starts_with("load: 0 files"));
    p.ok(&["seed"]);
    let out = p.ok(&["run", "models"]);
    assert!(out.contains("run: 15 nodes: 15 ok"), "{out}");
    let out = p.ok(&["test"]);
    assert!(out.contains(" 0 failed"), "{out}");

    let cfg = sf.output(Some(&stage_name));
    rt().block_on(async {
        let w = Snowflake::connect(&cfg).await.unwrap();
        // Upper-case relations.
        assert!(w.relation("ANALYTICS", "TRADES_OHLC_5M").await.unwrap().is_some());
        // Every staged kline, exactly.
        let raw = w.query("SELECT open_time, open, high, low, close, volume FROM RAW.KLINES ORDER BY open_time").await.unwrap();
        let want = expected(&ex, "XRPETH", "1m", ms("2019-10-11"), ms("2019-10-14"));
        assert_eq!(raw.rows.len(), want.len());
        for (r, k) in raw.rows.iter().zip(&want) {
            assert_eq!(r[0].as_millis(), Some(k.open_time));
            assert_eq!([r[1].to_scaled(8), r[2].to_scaled(8), r[3].to_scaled(8), r[4].to_scaled(8), r[5].to_scaled(8)], [Some(k.open), Some(k.high), Some(k.low), Some(k.close), Some(k.volume)]);
        }
        // Binance's own 5m candles, exactly, for every fully covered bucket.
        let got: BTreeMap<i64, [Option<i128>; 5]> = w
            .query("SELECT open_time, open, high, low, close, volume FROM ANALYTICS.TRADES_OHLC_5M WHERE symbol = 'XRPETH'")
            .await
            .unwrap()
            .rows
            .iter()
            .map(|r| (r[0].as_millis().unwrap(), [r[1].to_scaled(8), r[2].to_scaled(8), r[3].to_scaled(8), r[4].to_scaled(8), r[5].to_scaled(8)]))
            .collect();
        let dir = exchange::data::fixtures_dir();
        let binance = exchange::data::parse_json_rows("XRPETH", &std::fs::read_to_string(dir.join("freqtrade_xrpeth/XRP_ETH-5m.json")).unwrap());
        let last_minute = want[want.len() - 2].open_time;
        let mut compared = 0;
        for (t, k) in binance.range(ms("2019-10-11")..) {
            if t + 240_000 > last_minute {
                break;
            }
            assert_eq!(got[t], [Some(k.open), Some(k.high), Some(k.low), Some(k.close), Some(k.volume)], "5m at {t}");
            compared += 1;
        }
        assert_eq!(compared, 711);
    });

    // The native indicator models wrote through the Snowflake adapter (INSERT ... VALUES, as
    // fakesnow allows): every value equals TA-Lib's.
    let query = |sql: &str| {
        rt().block_on(async {
            Snowflake::connect(&cfg)
                .await
                .unwrap()
                .query(sql)
                .await
                .unwrap()
                .rows
        })
    };
    let compared = crate::indicators::compare_with_talib(&query, "ANALYTICS", p.path());
    for c in crate::indicators::COLUMNS {
        for iv in ["1M", "5M"] {
            assert!(
                compared[&(iv.to_string(), c.to_string())] > 100,
                "{iv} {c}: {compared:?}"
            );
        }
    }

    // klines serve over Snowflake: the API's candles are the table's (bound parameters on
    // the connector protocol).
    let want: Vec<_> = rt().block_on(async {
        let w = Snowflake::connect(&cfg).await.unwrap();
        w.query(
            "SELECT open_time, open, high, low, close, volume, quote_volume, trades, \
             taker_buy_base_volume, taker_buy_quote_volume, is_complete \
             FROM ANALYTICS.TRADES_OHLC_5M WHERE symbol = 'XRPETH' ORDER BY open_time",
        )
        .await
        .unwrap()
        .rows
    });
    let want: Vec<_> = want
        .iter()
        .map(|r| {
            let fields = r[1..10].iter().map(|v| v.to_scaled(8)).collect::<Vec<_>>();
            (
                r[0].as_millis().unwrap(),
                fields,
                r[10] == klines::warehouse::Value::Bool(true),
            )
        })
        .collect();
    let s = crate::serve::Served::start(&p, &[], &[]);
    assert_eq!(
        s.json("/api/symbols")["symbols"],
        serde_json::json!(["XRPETH"])
    );
    let body = s.json("/api/candles?symbol=XRPETH&interval=5m&limit=10000");
    let got: Vec<_> = crate::serve::api_candles(&body);
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    let body = s.json(&format!(
        "/api/candles?symbol=XRPETH&interval=5m&to={}&limit=5",
        want[50].0
    ));
    let got: Vec<_> = crate::serve::api_candles(&body);
    assert_eq!(got, want[45..50].to_vec());
}

use crate::support::exchange;

#[test]
fn snowflake_needs_an_s3_stage_and_says_so() {
    let sf = FakeSnow::create();
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms("2024-01-05T13:37:30Z")));
    let p = Project::new(&ex.url, "");
    p.profiles("sf", &sf.output_yaml("sf", Some("DB.RAW.STAGE")));
    p.ok(&["backfill", "--from", "2024-01-05"]);
    let out = p.run(&["load"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Snowflake loads from S3"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn setup_snowflake_prints_the_ddl_from_the_profile() {
    let p = Project::new("http://127.0.0.1:9", "stage: s3://market-data/klines\n");
    p.profiles(
        "sf",
        "    sf:\n      type: snowflake\n      account: xy12345.eu-west-1\n      user: loader\n      password: x\n      database: market\n      raw_schema: raw\n      stage: MARKET.RAW.KLINES_STAGE\n      pipe: MARKET.RAW.KLINES_PIPE\n      storage_integration: KLINES_S3\n",
    );
    let out = p.ok(&[
        "setup",
        "snowflake",
        "--aws-role-arn",
        "arn:aws:iam::123456789012:role/snowflake",
    ]);
    for line in [
        "CREATE STORAGE INTEGRATION IF NOT EXISTS KLINES_S3",
        "STORAGE_AWS_ROLE_ARN = 'arn:aws:iam::123456789012:role/snowflake'",
        "STORAGE_ALLOWED_LOCATIONS = ('s3://market-data/klines/');",
        "CREATE STAGE IF NOT EXISTS MARKET.RAW.KLINES_STAGE URL = 's3://market-data/klines/' STORAGE_INTEGRATION = KLINES_S3",
        "CREATE TABLE IF NOT EXISTS \"RAW\".\"KLINES\" (",
        "CREATE PIPE IF NOT EXISTS MARKET.RAW.KLINES_PIPE AS COPY INTO \"RAW\".\"KLINES_LANDING\"",
        "METADATA$FILENAME",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let out = p.run(&["setup", "snowflake", "--stage", "./stage"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Snowflake reads the stage from S3"),
        "{}",
        stderr(&out)
    );
}

/// The JWT's key fingerprint equals what openssl computes for a key made here, plain or
/// encrypted PKCS#8.
#[test]
fn jwt_fingerprints_match_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("rsa_key.p8");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(args.join(" "))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    run(&[
        "openssl genrsa 2048 2>/dev/null | openssl pkcs8 -topk8 -inform PEM -out rsa_key.p8 -nocrypt",
    ]);
    run(&[
        "openssl pkcs8 -topk8 -v2 aes-256-cbc -in rsa_key.p8 -out rsa_key_enc.p8 -passout pass:s3cret",
    ]);
    let want = run(&[
        "openssl rsa -in rsa_key.p8 -pubout -outform DER 2>/dev/null | openssl dgst -sha256 -binary | base64",
    ]);
    let want = format!("SHA256:{}", want.trim());
    let plain =
        klines::warehouse::snowflake::jwt::KeyPair::from_file(key.to_str().unwrap(), None).unwrap();
    assert_eq!(plain.fingerprint, want);
    let pass = klines::redact::Secret::new("s3cret");
    let enc = klines::warehouse::snowflake::jwt::KeyPair::from_file(
        dir.path().join("rsa_key_enc.p8").to_str().unwrap(),
        Some(&pass),
    )
    .unwrap();
    assert_eq!(enc.fingerprint, want);
    let wrong = klines::redact::Secret::new("nope");
    let err = klines::warehouse::snowflake::jwt::KeyPair::from_file(
        dir.path().join("rsa_key_enc.p8").to_str().unwrap(),
        Some(&wrong),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("wrong passphrase") && !err.to_string().contains("nope"),
        "{err}"
    );

    // The token's claims, verified with the public key.
    let token = plain
        .token("xy12345.eu-west-1", "loader", 1_700_000_000, 3600)
        .unwrap();
    run(&["openssl rsa -in rsa_key.p8 -pubout -out pub.pem 2>/dev/null"]);
    let public = std::fs::read(dir.path().join("pub.pem")).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_exp = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap(),
        &v,
    )
    .unwrap();
    assert_eq!(data.claims["iss"], format!("XY12345.LOADER.{want}"));
    assert_eq!(data.claims["sub"], "XY12345.LOADER");
    assert_eq!(
        data.claims["exp"].as_i64().unwrap() - data.claims["iat"].as_i64().unwrap(),
        3600
    );
}

/// A rebuilt `table` model is swapped in with `ALTER TABLE ... SWAP WITH`, Snowflake's one
/// atomic way: Snowflake commits DDL at once, so a swap inside a transaction would let readers
/// see the table missing or half-built. fakesnow cannot show atomicity (scripts/test gives it
/// SWAP WITH as renames), so the statement sequence klines sends is the snapshot.
#[test]
fn snowflake_swaps_a_rebuilt_table_in_with_swap_with() {
    let sf = FakeSnow::create();
    let p = Project::new("http://127.0.0.1:9", "");
    p.profiles("sf", &sf.output_yaml("sf", None));
    std::fs::create_dir_all(p.path().join("models")).unwrap();
    std::fs::write(
        p.path().join("models/m.sql"),
        "{{ config(materialized='table') }} select 1 as x union all select 2",
    )
    .unwrap();
    p.ok(&["run"]);
    std::fs::write(
        p.path().join("models/m.sql"),
        "{{ config(materialized='table') }} select 1 as x union all select 2 union all select 3",
    )
    .unwrap();
    let out = p
        .cmd()
        .args(["run", "--log-format", "json"])
        .env("KLINES_LOG", "klines::sql=debug")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let writes: Vec<String> = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["sql"].as_str().map(str::to_string))
        .filter(|s| {
            let head = s
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            !matches!(head.as_str(), "SELECT" | "SHOW" | "DESCRIBE" | "USE")
        })
        .collect();
    insta::assert_snapshot!("snowflake_table_swap", writes.join("\n"));
    let conn_rows = p.ok(&["ls"]);
    assert!(conn_rows.contains("klines.m"), "{conn_rows}");
    rt().block_on(async {
        let w = Snowflake::connect(&sf.output(None)).await.unwrap();
        let n = w.query("SELECT count(*) FROM ANALYTICS.M").await.unwrap();
        assert_eq!(n.scalar().and_then(|v| v.as_i64()), Some(3));
        let left = w
            .query(
                "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'M__KLINES%'",
            )
            .await
            .unwrap();
        assert_eq!(left.scalar().and_then(|v| v.as_i64()), Some(0));
    });
}

/// Snowflake copies the staged files itself: the rows klines found breaking an invariant are
/// deleted from the scratch table before the MERGE and recorded in RAW.KLINES_REJECTED.
#[test]
fn snowflake_quarantines_bad_rows() {
    let sf = FakeSnow::create();
    let url = s3_stage_url();
    let stage_name = sf.external_stage(&url);
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms("2024-01-02T00:00:30Z")));
    let p = Project::new(&ex.url, &format!("stage: {url}\n"));
    p.profiles("sf", &sf.output_yaml("sf", Some(&stage_name)));
    let mut k = (0..)
        .find_map(|i| {
            ex.market()
                .minute("BTCUSDT", ms("2024-01-01T10:00:00Z") + i * 60_000)
                .filter(|k| k.trades > 0)
        })
        .unwrap();
    k.low = k.open.min(k.close) + 1;
    ex.correct("BTCUSDT", k.clone());
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
        "--source",
        "rest",
    ]);
    let out = p.run(&["load"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out)
            .contains("; 1 rows rejected into RAW.KLINES_REJECTED (low above open or close: 1)"),
        "{}",
        stdout(&out)
    );
    let served = ex
        .market()
        .minutes("BTCUSDT", ms("2024-01-01"), ms("2024-01-02"), usize::MAX)
        .len() as i64;
    rt().block_on(async {
        let w = Snowflake::connect(&sf.output(Some(&stage_name)))
            .await
            .unwrap();
        let n = w.query("SELECT count(*) FROM RAW.KLINES").await.unwrap();
        assert_eq!(n.rows[0][0].as_i64(), Some(served - 1));
        let r = w
            .query("SELECT open_time, reason, row_number FROM RAW.KLINES_REJECTED")
            .await
            .unwrap();
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.rows[0][0].as_millis(), Some(k.open_time));
        assert_eq!(r.rows[0][1].as_str(), Some("low above open or close"));
        let missing = w
            .query(&format!(
                "SELECT count(*) FROM RAW.KLINES WHERE open_time = '{}'::TIMESTAMP_NTZ",
                klines::time::format_ms(k.open_time)
                    .replace('T', " ")
                    .replace('Z', "")
            ))
            .await
            .unwrap();
        assert_eq!(missing.rows[0][0].as_i64(), Some(0));
    });
}
