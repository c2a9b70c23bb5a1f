//! `klines load` end to end: backfill from the test exchange, then load into a DuckDB file and
//! into a fresh database on the real PostgreSQL server.

use std::collections::BTreeMap;
use std::time::Duration;

use klines::datasets::klines::Kline;

use crate::support::*;

const NOW: &str = "2024-01-05T13:37:30Z";

/// The raw table's klines by (symbol, open time), and the number of rows.
fn raw_klines(wh: &Wh, p: &Project) -> (BTreeMap<(String, i64), Kline>, usize) {
    let w = wh.connect(p);
    let rt = runtime();
    let rows = rt
        .block_on(w.query(
            "SELECT symbol, open_time, open, high, low, close, volume, close_time, quote_volume, trades, \
             taker_buy_base_volume, taker_buy_quote_volume FROM raw.klines ORDER BY symbol, open_time",
        ))
        .unwrap();
    drop(w);
    let n = rows.rows.len();
    let d = |v: &klines::warehouse::Value| v.to_scaled(8).unwrap();
    let map = rows
        .rows
        .iter()
        .map(|r| {
            let k = Kline {
                open_time: r[1].as_millis().unwrap(),
                open: d(&r[2]),
                high: d(&r[3]),
                low: d(&r[4]),
                close: d(&r[5]),
                volume: d(&r[6]),
                close_time: r[7].as_millis().unwrap(),
                quote_volume: d(&r[8]),
                trades: r[9].as_i64().unwrap(),
                taker_buy_base_volume: d(&r[10]),
                taker_buy_quote_volume: d(&r[11]),
            };
            ((r[0].as_str().unwrap().to_string(), k.open_time), k)
        })
        .collect();
    (map, n)
}

fn assert_raw_equals(
    wh: &Wh,
    p: &Project,
    ex: &TestExchange,
    symbols: &[&str],
    from: i64,
    to: i64,
) {
    let (got, n) = raw_klines(wh, p);
    let mut want = BTreeMap::new();
    for s in symbols {
        for k in expected(ex, s, "1m", from, to) {
            want.insert((s.to_string(), k.open_time), k);
        }
    }
    assert_eq!(n, want.len(), "raw rows");
    for (key, k) in &want {
        assert_eq!(got.get(key), Some(k), "{key:?}");
    }
}

fn scalar(wh: &Wh, p: &Project, sql: &str) -> i64 {
    let w = wh.connect(p);
    let rt = runtime();
    rt.block_on(w.query(sql))
        .unwrap()
        .scalar()
        .and_then(|v| v.as_i64())
        .unwrap()
}

fn exactly_once(wh: Wh) {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new(&ex.url, "");
    wh.setup(&p);
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--from",
        "2024-01-03",
    ]);
    let out = p.ok(&["load"]);
    let expected_rows: usize = ["BTCUSDT", "ETHUSDT"]
        .iter()
        .map(|s| expected(&ex, s, "1m", ms("2024-01-03"), ms(NOW)).len())
        .sum();
    assert!(out.starts_with(&format!("load: 6 files, {expected_rows} rows ({expected_rows} inserted, 0 replaced, 0 unchanged), 0 failed")), "{out}");
    assert_raw_equals(
        &wh,
        &p,
        &ex,
        &["BTCUSDT", "ETHUSDT"],
        ms("2024-01-03"),
        ms(NOW),
    );
    let loaded_at = scalar(&wh, &p, "SELECT count(DISTINCT _loaded_at) FROM raw.klines");

    // A second load changes nothing.
    let out = p.ok(&["load"]);
    assert!(out.starts_with("load: 0 files, 0 rows"), "{out}");
    assert_eq!(
        scalar(&wh, &p, "SELECT count(DISTINCT _loaded_at) FROM raw.klines"),
        loaded_at
    );
    assert_eq!(
        scalar(&wh, &p, "SELECT count(*) FROM raw.klines_load_history"),
        6
    );

    // The day completes: its whole-day file overlaps the partial one already loaded.
    ex.set_clock(Clock::Fixed(ms("2024-01-06T00:10:30Z")));
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--from",
        "2024-01-03",
    ]);
    let out = p.ok(&["load"]);
    assert!(out.starts_with("load: 4 files,"), "{out}");
    assert_raw_equals(
        &wh,
        &p,
        &ex,
        &["BTCUSDT", "ETHUSDT"],
        ms("2024-01-03"),
        ms("2024-01-06T00:10:00Z"),
    );

    // The exchange corrects a candle; re-staging the day replaces the row, newest file wins.
    let t = ms("2024-01-04T10:00:00Z");
    let mut k = ex.market().minute("BTCUSDT", t).unwrap();
    k.close += 1;
    k.high = k.high.max(k.close);
    ex.correct("BTCUSDT", k.clone());
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT",
        "--from",
        "2024-01-04",
        "--to",
        "2024-01-05",
        "--full-refresh",
    ]);
    let out = p.ok(&["load"]);
    let n = expected(&ex, "BTCUSDT", "1m", ms("2024-01-04"), ms("2024-01-05")).len();
    assert!(
        out.starts_with(&format!(
            "load: 1 files, {n} rows (0 inserted, 1 replaced, {} unchanged)",
            n - 1
        )),
        "{out}"
    );
    assert_raw_equals(
        &wh,
        &p,
        &ex,
        &["BTCUSDT", "ETHUSDT"],
        ms("2024-01-03"),
        ms("2024-01-06T00:10:00Z"),
    );
    let (got, _) = raw_klines(&wh, &p);
    assert_eq!(got[&("BTCUSDT".to_string(), t)], k);
}

#[test]
fn duckdb_loads_exactly_once_with_overlaps_and_corrections() {
    exactly_once(Wh::DuckDb);
}

#[test]
fn postgres_loads_exactly_once_with_overlaps_and_corrections() {
    exactly_once(Wh::Postgres(PgDb::create()));
}

fn kill_9_during_load(wh: Wh) {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new(&ex.url, "load:\n  batch_rows: 1500\n");
    wh.setup(&p);
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--from",
        "2023-11-01",
        "--to",
        "2024-01-05",
    ]);
    let files = parquet_files(&p.stage_dir()).len();
    let mut kills = 0;
    // Each killed run keeps the batches it committed, so the next has less to do: the delays
    // start short and grow slowly, or a fast machine finishes before the second kill.
    for delay in [
        150u64, 250, 350, 500, 650, 800, 1000, 1300, 1600, 2000, 2500, 3000, 4000,
    ] {
        let mut child = p
            .cmd()
            .args(["load"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 2, "only {kills} kills landed");
    p.ok(&["load"]);
    assert_raw_equals(
        &wh,
        &p,
        &ex,
        &["BTCUSDT", "ETHUSDT"],
        ms("2023-11-01"),
        ms("2024-01-05"),
    );
    assert_eq!(
        scalar(&wh, &p, "SELECT count(*) FROM raw.klines_load_history") as usize,
        files
    );
}

#[test]
fn duckdb_survives_kill_9_during_a_load() {
    kill_9_during_load(Wh::DuckDb);
}

#[test]
fn postgres_survives_kill_9_during_a_load() {
    kill_9_during_load(Wh::Postgres(PgDb::create()));
}

fn corrupt_file(wh: Wh) {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new(&ex.url, "");
    wh.setup(&p);
    p.ok(&["backfill", "--from", "2024-01-01", "--to", "2024-01-04"]);
    let bad =
        "exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-02.parquet";
    let path = p.stage_dir().join(bad);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 64].fill(0);
    std::fs::write(&path, &bytes).unwrap();

    let dry = p.ok(&["load", "--dry-run"]);
    assert!(
        dry.contains(bad) && dry.contains("would load: 3 files"),
        "{dry}"
    );
    let out = p.run(&["load"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("load: 2 files"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("failed: {bad}: "))
            && err.contains("does not match its manifest entry"),
        "{err}"
    );
    // The other days loaded; the bad one is retried, and fails, next time.
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-01-01"), ms("2024-01-02")).len()
        + expected(&ex, "BTCUSDT", "1m", ms("2024-01-03"), ms("2024-01-04")).len();
    assert_eq!(raw_klines(&wh, &p).1, want);
    assert_eq!(p.run(&["load"]).status.code(), Some(1));

    // A file whose manifest entry matches but which is not Parquet.
    let garbage = b"PAR1 this is not a parquet file PAR1".to_vec();
    std::fs::write(&path, &garbage).unwrap();
    let entry_dir = p.stage_dir().join("_manifest").join(bad);
    let entries: Vec<_> = std::fs::read_dir(entry_dir.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("BTCUSDT-1m-2024-01-02")
        })
        .collect();
    let mut entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(entries[0].path()).unwrap()).unwrap();
    entry["bytes"] = garbage.len().into();
    entry["sha256"] = klines::stage::manifest::sha256_hex(&garbage).into();
    std::fs::remove_file(entries[0].path()).unwrap();
    let key = klines::stage::layout::manifest_key(bad, entry["sha256"].as_str().unwrap());
    std::fs::write(p.stage_dir().join(key), serde_json::to_vec(&entry).unwrap()).unwrap();
    let out = p.run(&["load"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("{bad}: not a readable Parquet file")),
        "{}",
        stderr(&out)
    );
    assert_eq!(raw_klines(&wh, &p).1, want);
}

#[test]
fn duckdb_reports_a_corrupt_file_and_loads_the_others() {
    corrupt_file(Wh::DuckDb);
}

#[test]
fn postgres_reports_a_corrupt_file_and_loads_the_others() {
    corrupt_file(Wh::Postgres(PgDb::create()));
}

#[test]
fn dry_run_changes_nothing() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new(&ex.url, "");
    p.ok(&["backfill", "--from", "2024-01-04"]);
    let out = p.ok(&["load", "--dry-run"]);
    let rows = expected(&ex, "BTCUSDT", "1m", ms("2024-01-04"), ms(NOW)).len();
    assert!(
        out.ends_with(&format!("would load: 2 files, {rows} rows\n")),
        "{out}"
    );
    assert!(
        out.contains("exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-04.parquet\t"),
        "{out}"
    );
    // No tables were made.
    let w = Wh::DuckDb.connect(&p);
    let rt = runtime();
    assert!(rt.block_on(w.relation("raw", "klines")).unwrap().is_none());
}

#[test]
fn profiles_select_the_warehouse_and_bad_profiles_exit_2() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let db = PgDb::create();
    let p = Project::new(&ex.url, "");
    p.profiles(
        "dev",
        &format!(
            "{}{}",
            duckdb_output_yaml("dev", "dev.duckdb"),
            db.output_yaml("pg")
        ),
    );
    p.ok(&["backfill", "--from", "2024-01-05"]);
    p.ok(&["load"]);
    assert!(p.path().join("dev.duckdb").is_file());
    let out = p.ok(&["load", "--target", "pg"]);
    assert!(out.starts_with("load: 1 files"), "{out}");
    let out = p.run(&["load", "--target", "prod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no output \"prod\""),
        "{}",
        stderr(&out)
    );
    // env_var() keeps secrets out of the file, and errors never show them.
    p.profiles(
        "pg",
        "    pg:\n      type: postgres\n      host: 127.0.0.1\n      port: 1\n      user: postgres\n      password: \"{{ env_var('KLINES_TEST_PG_PASSWORD') }}\"\n      dbname: x\n      sslmode: disable\n",
    );
    let out = p
        .cmd()
        .args(["load"])
        .env("KLINES_TEST_PG_PASSWORD", "s3cr3t-value")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot connect to postgres postgres@127.0.0.1:1/x"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("s3cr3t-value"));
    let out = p.run(&["load"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("KLINES_TEST_PG_PASSWORD is not set"),
        "{}",
        stderr(&out)
    );
}

/// Rows that break a kline's invariants go to `raw.klines_rejected` with their file, row and
/// reason; the rest of their file loads, the summary counts them by reason, the exit code is 3,
/// and a good row loaded before is not replaced by a bad one.
fn bad_rows_are_quarantined(wh: Wh) {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms("2024-01-03T00:00:30Z")));
    let p = Project::new(&ex.url, "");
    wh.setup(&p);
    let day1 = ms("2024-01-01");
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
    ]);
    p.ok(&["load"]);
    let traded = |t: i64| {
        (0..)
            .map(|i| t + i * 60_000)
            .find_map(|m| ex.market().minute("BTCUSDT", m).filter(|k| k.trades > 0))
            .unwrap()
    };
    // Day 2: four bad minutes among the good ones.
    let day2 = ms("2024-01-02");
    let mut bad = Vec::new();
    for (n, why) in [
        (10, "high below open or close"),
        (20, "low above open or close"),
        (30, "taker buy volume above volume"),
        (40, "close time"),
    ] {
        let mut k = traded(day2 + n * 60_000);
        match n {
            10 => k.high = k.open.max(k.close) - 1,
            20 => k.low = k.open.min(k.close) + 1,
            30 => k.taker_buy_base_volume = k.volume + 1,
            _ => k.close_time += 1,
        }
        ex.correct("BTCUSDT", k.clone());
        bad.push((k.open_time, why));
    }
    // And one on day 1, which was loaded good before.
    let mut old = traded(day1 + 300 * 60_000);
    let good_high = old.high;
    old.high = old.open.max(old.close) - 1;
    ex.correct("BTCUSDT", old.clone());
    // From REST: the archive's reader refuses such rows outright (naming the zip and line).
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
        "--full-refresh",
        "--source",
        "rest",
    ]);
    let out = p.run(&["load"]);
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{s}{}", stderr(&out));
    assert!(
        s.contains("; 5 rows rejected into raw.klines_rejected (close time does not match the interval: 1, high below open or close: 2, low above open or close: 1, taker buy volume above volume: 1)"),
        "{s}"
    );
    assert!(
        stderr(&out).contains("kept in raw.klines_rejected"),
        "{}",
        stderr(&out)
    );
    let rejected = wh.query(&p, "SELECT open_time, file, row_number, reason, kline FROM raw.klines_rejected ORDER BY open_time");
    assert_eq!(rejected.len(), 5);
    let mut want: Vec<(i64, &str)> = bad.clone();
    want.insert(0, (old.open_time, "high below open or close"));
    for (r, (t, why)) in rejected.iter().zip(&want) {
        assert_eq!(r[0].as_millis(), Some(*t));
        assert!(r[1].as_str().unwrap().contains("symbol=BTCUSDT"), "{r:?}");
        // Rows count from 1 in the day's file, which holds the day's served minutes in order.
        let day = t.div_euclid(86_400_000) * 86_400_000;
        let minutes = ex
            .market()
            .minutes("BTCUSDT", day, day + 86_400_000, usize::MAX);
        let row = minutes.iter().position(|k| k.open_time == *t).unwrap() as i64 + 1;
        assert_eq!(r[2].as_i64(), Some(row), "{r:?}");
        assert!(r[3].as_str().unwrap().starts_with(why), "{r:?}");
        assert!(r[4].as_str().unwrap().starts_with("open="), "{r:?}");
    }
    // Everything valid loaded: the day's other minutes, and day 1's good row stays.
    let day2_rows = wh.query(&p, "SELECT count(*) FROM raw.klines WHERE open_time >= CAST('2024-01-02 00:00:00+00:00' AS TIMESTAMPTZ)");
    let served = ex
        .market()
        .minutes("BTCUSDT", day2, day2 + 86_400_000, usize::MAX)
        .len() as i64;
    assert_eq!(day2_rows[0][0].as_i64(), Some(served - 4));
    let kept = wh.query(
        &p,
        &format!(
            "SELECT high FROM raw.klines WHERE open_time = CAST('{}' AS TIMESTAMPTZ)",
            klines::time::format_ms(old.open_time)
                .replace('T', " ")
                .replace('Z', "+00:00")
        ),
    );
    assert_eq!(
        kept[0][0].to_scaled(8),
        Some(good_high),
        "the good row loaded before stays"
    );
    // The files count as loaded.
    let out = p.ok(&["load"]);
    assert!(out.starts_with("load: 0 files"), "{out}");
}

#[test]
fn bad_rows_are_quarantined_on_duckdb() {
    bad_rows_are_quarantined(Wh::DuckDb);
}

#[test]
fn bad_rows_are_quarantined_on_postgres() {
    bad_rows_are_quarantined(Wh::postgres());
}
