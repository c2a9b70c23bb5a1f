//! One conformance suite that every warehouse adapter runs: SQL, results with exact decimals
//! and timestamps, transactions, relations, and the loader's raw layer over it (`load::raw`)
//! with its exactly-once and newest-wins rules.

use std::sync::Arc;

use klines::datasets::ColType;
use klines::datasets::klines::Kline;
use klines::load::batch::{LoadBatch, LoadFile, SeriesRows};
use klines::load::raw;
use klines::market::Series;
use klines::market::{Interval, Market, Symbol};
use klines::stage::manifest::ManifestEntry;
use klines::warehouse::dialect::sql_type;
use klines::warehouse::{RelationType, Value, Warehouse, relation_name};

use crate::support::*;

fn kline(t: i64, close: i128) -> Kline {
    Kline {
        open_time: t,
        open: 4_200_001_000_000,
        high: 10i128.pow(38) - 1,
        low: 1,
        close,
        volume: 123_456_789_012_345_678,
        close_time: t + 59_999,
        quote_volume: 0,
        trades: 7,
        taker_buy_base_volume: 5,
        taker_buy_quote_volume: 6,
    }
}

fn series() -> Series {
    Series {
        exchange: klines::market::Exchange::BINANCE,
        market: Market::Spot,
        symbol: Symbol::parse("BTCUSDT").unwrap(),
        interval: Interval::M1,
    }
}

/// A staged file for a load batch: its rows are also written to `stage` (which the Snowflake
/// adapter reads through its external stage; the others take the rows from the batch).
struct File {
    path: &'static str,
    start: i64,
    end: i64,
    staged_at: i64,
    rows: Vec<Kline>,
}

async fn batch(stage: Option<&klines::stage::Stage>, files: Vec<File>, fresh: bool) -> LoadBatch {
    let mut b = LoadBatch {
        files: Vec::new(),
        rows: Vec::new(),
        fresh,
        rejected: Vec::new(),
    };
    let mut all: Vec<(Kline, u32)> = Vec::new();
    for (i, f) in files.into_iter().enumerate() {
        let klines = batch_of(&f.rows);
        let bytes = klines::stage::parquet::encode(&series(), klines.clone()).unwrap();
        if let Some(stage) = stage {
            stage.put(f.path, bytes.clone()).await.unwrap();
        }
        b.files.push(LoadFile {
            entry: ManifestEntry::new(
                &series(),
                f.path.into(),
                (f.start, f.end),
                false,
                f.rows.len(),
                &bytes,
            ),
            staged_at: f.staged_at,
        });
        all.extend(f.rows.into_iter().map(|k| (k, i as u32)));
    }
    all.sort_by_key(|(k, _)| k.open_time);
    b.rows.push(SeriesRows {
        series: series(),
        klines: batch_of(&all.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()),
        file: all.iter().map(|(_, f)| *f).collect(),
    });
    b
}

fn batch_of(rows: &[Kline]) -> klines::datasets::klines::KlineBatch {
    crate::support::batch(rows)
}

async fn count(wh: &dyn Warehouse, sql: &str) -> i64 {
    wh.query(sql)
        .await
        .unwrap()
        .scalar()
        .and_then(|v| v.as_i64())
        .unwrap()
}

/// The suite. `stage` is where an adapter that loads from files (Snowflake) finds them.
pub async fn conformance(wh: Arc<dyn Warehouse>, stage: Option<&klines::stage::Stage>) {
    let kind = wh.dialect();
    let w = wh.as_ref();
    // SQL and typed results.
    w.execute("CREATE SCHEMA IF NOT EXISTS conf").await.unwrap();
    let t = relation_name(w, "conf", "t");
    w.execute(&format!(
        "CREATE TABLE {t} (id BIGINT NOT NULL, price {}, ts {}, name {})",
        sql_type(kind, ColType::Decimal),
        sql_type(kind, ColType::Timestamp),
        sql_type(kind, ColType::Text)
    ))
    .await
    .unwrap();
    let n = w
        .execute(&format!(
            "INSERT INTO {t} VALUES (1, 999999999999999999999999999999.99999999, CAST('2024-01-01 00:00:00+00:00' AS {ts}), 'a'), \
             (2, -0.00000001, CAST('2024-02-29 23:59:59.999+00:00' AS {ts}), 'b''s'), (3, NULL, NULL, NULL)",
            ts = sql_type(kind, ColType::Timestamp)
        ))
        .await
        .unwrap();
    assert_eq!(n, 3);
    let rows = w
        .query(&format!("SELECT id, price, ts, name FROM {t} ORDER BY id"))
        .await
        .unwrap();
    assert_eq!(
        rows.columns
            .iter()
            .map(|c| c.to_lowercase())
            .collect::<Vec<_>>(),
        ["id", "price", "ts", "name"]
    );
    assert_eq!(rows.rows[0][0].as_i64(), Some(1));
    // All 38 digits of NUMERIC(38,8).
    assert_eq!(rows.rows[0][1].to_scaled(8), Some(10i128.pow(38) - 1));
    assert_eq!(rows.rows[1][1].to_scaled(8), Some(-1));
    assert_eq!(rows.rows[0][2], Value::Timestamp(ms("2024-01-01") * 1000));
    assert_eq!(
        rows.rows[1][2],
        Value::Timestamp(ms("2024-02-29T23:59:59.999Z") * 1000)
    );
    assert_eq!(rows.rows[1][3], Value::Text("b's".into()));
    assert_eq!(rows.rows[2][1], Value::Null);
    let empty = w
        .query(&format!("SELECT id, name FROM {t} WHERE id < 0"))
        .await
        .unwrap();
    assert!(empty.rows.is_empty());
    assert_eq!(
        empty.columns.len(),
        2,
        "an empty result still names its columns"
    );

    // Transactions are all or nothing.
    let ok = w
        .transaction(&[
            format!("INSERT INTO {t} (id) VALUES (10)"),
            format!("UPDATE {t} SET id = 11 WHERE id = 10"),
        ])
        .await
        .unwrap();
    assert_eq!(ok, vec![1, 1]);
    let failed = w
        .transaction(&[
            format!("INSERT INTO {t} (id) VALUES (20)"),
            format!("INSERT INTO {t} (id) VALUES ('not a number')"),
        ])
        .await;
    assert!(failed.is_err());
    assert_eq!(
        count(w, &format!("SELECT count(*) FROM {t} WHERE id = 20")).await,
        0,
        "a failed transaction left a row"
    );
    assert!(w.query("SELECT * FROM conf.no_such_table").await.is_err());

    // Relations.
    let v = relation_name(w, "conf", "v");
    w.execute(&format!("CREATE VIEW {v} AS SELECT id FROM {t}"))
        .await
        .unwrap();
    let fold = |s: &str| klines::warehouse::ident::fold(kind, s);
    assert_eq!(
        w.relation(&fold("conf"), &fold("t")).await.unwrap(),
        Some(RelationType::Table)
    );
    assert_eq!(
        w.relation(&fold("conf"), &fold("v")).await.unwrap(),
        Some(RelationType::View)
    );
    assert_eq!(
        w.relation(&fold("conf"), &fold("nope")).await.unwrap(),
        None
    );

    // The raw layer. Batches never hold overlapping files (the loader's rule): newer files come
    // in later batches and win.
    raw::ensure(w, "raw").await.unwrap();
    raw::ensure(w, "raw").await.unwrap();
    assert!(raw::loaded_files(w, "raw").await.unwrap().is_empty());
    let raw = relation_name(w, "raw", "klines");
    let t0 = ms("2024-01-01");
    let m = 60_000;
    let f = |path, start, end, staged_at, rows| File {
        path,
        start,
        end,
        staged_at,
        rows,
    };
    let a = batch(
        stage,
        vec![f(
            "a.parquet",
            t0,
            t0 + 2 * m,
            1_000,
            vec![kline(t0, 10), kline(t0 + m, 20)],
        )],
        false,
    )
    .await;
    let c = raw::load(w, "raw", &a).await.unwrap();
    assert_eq!((c.inserted, c.replaced), (2, 0));
    let b = batch(
        stage,
        vec![f(
            "b.parquet",
            t0 + m,
            t0 + 3 * m,
            2_000,
            vec![kline(t0 + m, 21), kline(t0 + 2 * m, 30)],
        )],
        false,
    )
    .await;
    let c = raw::load(w, "raw", &b).await.unwrap();
    assert_eq!((c.inserted, c.replaced), (1, 1));
    assert_eq!(count(w, &format!("SELECT count(*) FROM {raw}")).await, 3);
    let close = |t: i64| {
        let sql = format!(
            "SELECT close, _file FROM {raw} WHERE open_time = {}",
            klines::warehouse::dialect::timestamp_literal(kind, t)
        );
        async move { w.query(&sql).await.unwrap().rows[0].clone() }
    };
    let row = close(t0 + m).await;
    assert_eq!(
        (row[0].to_scaled(8), row[1].as_str()),
        (Some(21), Some("b.parquet"))
    );
    let all = w
        .query(&format!(
            "SELECT high, volume, trades FROM {raw} ORDER BY open_time"
        ))
        .await
        .unwrap();
    assert_eq!(all.rows[0][0].to_scaled(8), Some(10i128.pow(38) - 1));
    assert_eq!(all.rows[0][1].to_scaled(8), Some(123_456_789_012_345_678));
    assert_eq!(all.rows[0][2].as_i64(), Some(7));
    let mut loaded: Vec<String> = raw::loaded_files(w, "raw")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    loaded.sort();
    assert_eq!(loaded, ["a.parquet", "b.parquet"]);

    // The same rows again: nothing changes, the history is not duplicated.
    let again = raw::load(w, "raw", &b).await.unwrap();
    assert_eq!((again.inserted, again.replaced), (0, 0));
    assert_eq!(raw::loaded_files(w, "raw").await.unwrap().len(), 2);

    // A newer file with a corrected value replaces it; an older one does not.
    let newer = batch(
        stage,
        vec![f("c.parquet", t0, t0 + m, 3_000, vec![kline(t0, 11)])],
        false,
    )
    .await;
    assert_eq!(raw::load(w, "raw", &newer).await.unwrap().replaced, 1);
    let older = batch(
        stage,
        vec![f("old.parquet", t0, t0 + m, 500, vec![kline(t0, 99)])],
        false,
    )
    .await;
    assert_eq!(raw::load(w, "raw", &older).await.unwrap().replaced, 0);
    let row = close(t0).await;
    assert_eq!(
        (row[0].to_scaled(8), row[1].as_str()),
        (Some(11), Some("c.parquet"))
    );

    // A fresh batch (nothing overlaps) of two files goes straight in.
    let fresh = batch(
        stage,
        vec![
            f(
                "d.parquet",
                t0 + 10 * m,
                t0 + 11 * m,
                4_000,
                vec![kline(t0 + 10 * m, 1)],
            ),
            f(
                "e.parquet",
                t0 + 11 * m,
                t0 + 12 * m,
                4_000,
                vec![kline(t0 + 11 * m, 2)],
            ),
        ],
        true,
    )
    .await;
    assert_eq!(raw::load(w, "raw", &fresh).await.unwrap().inserted, 2);
    assert_eq!(count(w, &format!("SELECT count(*) FROM {raw}")).await, 5);
    assert_eq!(close(t0 + 11 * m).await[1].as_str(), Some("e.parquet"));
    // A batch that wrongly claims to be fresh either fails whole or merges correctly; it never
    // duplicates a key.
    let clash = batch(
        stage,
        vec![f("f.parquet", t0, t0 + m, 5_000, vec![kline(t0, 12)])],
        true,
    )
    .await;
    match raw::load(w, "raw", &clash).await {
        Err(_) => {
            assert_eq!(close(t0).await[0].to_scaled(8), Some(11));
            assert_eq!(
                raw::loaded_files(w, "raw").await.unwrap().len(),
                6,
                "a failed load left history behind"
            );
        }
        Ok(c) => assert_eq!(
            (c.inserted, c.replaced, close(t0).await[0].to_scaled(8)),
            (0, 1, Some(12))
        ),
    }
    assert_eq!(count(w, &format!("SELECT count(*) FROM {raw}")).await, 5);

    // The history records what each file covered.
    let hist = relation_name(w, "raw", "klines_load_history");
    let h = w
        .query(&format!(
            "SELECT range_start, range_end, {}, load_id FROM {hist} WHERE file = 'b.parquet'",
            klines::warehouse::ident::quote(kind, "rows")
        ))
        .await
        .unwrap();
    assert_eq!(h.rows[0][0], Value::Timestamp((t0 + m) * 1000));
    assert_eq!(h.rows[0][1], Value::Timestamp((t0 + 3 * m) * 1000));
    assert_eq!(h.rows[0][2].as_i64(), Some(2));
    let ids = w
        .query(&format!("SELECT load_id FROM {hist} ORDER BY load_id"))
        .await
        .unwrap();
    let ids: Vec<i64> = ids.rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|p| p[0] < p[1]),
        "load ids must increase: {ids:?}"
    );
}

#[tokio::test]
async fn duckdb_passes_the_warehouse_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let wh = Arc::new(
        klines::warehouse::duckdb::DuckDb::open(path.to_str().unwrap(), 2, &Default::default())
            .await
            .unwrap(),
    );
    conformance(wh, None).await;
}

/// profiles.yml's `settings:` (as dbt-duckdb's) reach DuckDB; a name that is not a plain
/// identifier is refused before any SQL, and DuckDB's own refusal names the setting.
#[test]
fn duckdb_settings_from_the_profile_are_applied() {
    let p = Project::new("http://127.0.0.1:9", "");
    let settings = |lines: &str| {
        p.profiles(
            "dev",
            &format!(
                "{}      settings:\n{lines}",
                duckdb_output_yaml("dev", "w.duckdb")
            ),
        )
    };
    settings("        memory_limit: 300MB\n        preserve_insertion_order: false\n");
    p.ok(&["load"]);
    let target = klines::config::profiles::resolve(None, p.path(), "klines", None).unwrap();
    let rows = runtime()
        .block_on(async {
            let wh = klines::warehouse::connect(&target, p.path()).await?;
            wh.query(
                "SELECT current_setting('memory_limit'), current_setting('preserve_insertion_order')::VARCHAR",
            )
            .await
        })
        .unwrap();
    assert_eq!(
        format!("{:?}", rows.rows[0]),
        r#"[Text("286.1 MiB"), Text("false")]"#
    );

    for (line, expected) in [
        (
            "        \"x; DROP TABLE t\": 1\n",
            "is not a DuckDB setting name",
        ),
        ("        memory_limt: 1GB\n", "memory_limt"),
    ] {
        settings(line);
        let out = p.run(&["load"]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(expected), "{line}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[tokio::test]
async fn postgres_passes_the_warehouse_conformance_suite() {
    let db = PgDb::create();
    let wh = Arc::new(
        klines::warehouse::postgres::Postgres::connect(&db.output())
            .await
            .unwrap(),
    );
    assert_eq!(wh.dialect().name(), "postgres");
    conformance(wh, None).await;
}

#[tokio::test]
async fn postgres_connection_errors_name_the_server_and_hide_the_password() {
    let db = PgDb::create();
    let mut out = db.output();
    out.port = 1;
    out.password = Some(klines::redact::Secret::new("hunter2"));
    let err = klines::warehouse::postgres::Postgres::connect(&out)
        .await
        .err()
        .unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!(
            "cannot connect to postgres postgres@{}:1/{}",
            db.fields().0,
            db.name
        )),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
}
