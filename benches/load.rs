//! Load benchmarks (`cargo bench --bench load`; `-- --quick` for 100k rows).
//!
//! Stages 1 million 1m klines (about 694 days of one symbol) as Parquet day files with their
//! manifest, then times `klines load` (the release binary) into a fresh Postgres database and
//! into a fresh DuckDB file, beside `psql \copy` of the same rows from a CSV file into a table of
//! the same shape and key on the same server: the practical ceiling.
//!
//! Postgres comes from `KLINES_TEST_PG` (default `host=127.0.0.1 port=5432 user=postgres`).

#[path = "../tests/it/support/exchange/data.rs"]
#[allow(dead_code)]
mod data;
mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use klines::datasets::klines::Kline;
use klines::decimal::format as d;

use support::{DAY, DayStager};

const T0: i64 = 1_577_836_800_000; // 2020-01-01

fn pg_conn() -> String {
    std::env::var("KLINES_TEST_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres".into())
}

fn pg_field(name: &str, default: &str) -> String {
    pg_conn()
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
        .unwrap_or_else(|| default.to_string())
}

fn psql(db: &str, sql: &str) {
    let st = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &pg_field("host", "127.0.0.1"),
            "-p",
            &pg_field("port", "5432"),
        ])
        .args(["-U", &pg_field("user", "postgres"), "-d", db, "-c", sql])
        .status()
        .expect("psql");
    assert!(st.success(), "psql failed: {sql}");
}

/// Stages `rows` klines as day files; returns them all, for the CSV.
fn stage_rows(dir: &Path, rows: usize) -> Vec<Kline> {
    let stager = DayStager::open(dir);
    let mut all = Vec::with_capacity(rows);
    let mut day = T0;
    while all.len() < rows {
        let mut klines = stager.minutes(day);
        klines.truncate(rows - all.len());
        stager.stage(day, &klines);
        all.extend(klines);
        day += DAY;
    }
    all
}

fn run_load(dir: &Path, target: &str) -> f64 {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_klines"))
        .args(["load", "--target", target, "-q"])
        .current_dir(dir)
        .output()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("  {}", String::from_utf8_lossy(&out.stdout).trim());
    secs
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rows = if quick { 100_000 } else { 1_000_000 };
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let all = stage_rows(dir.path(), rows);
    println!(
        "staged {} klines in {:.1}s",
        all.len(),
        t.elapsed().as_secs_f64()
    );

    let db = format!("klines_bench_{}", std::process::id());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
    psql("postgres", &format!("CREATE DATABASE {db}"));
    std::fs::write(
        dir.path().join("profiles.yml"),
        format!(
            "klines:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n      host: {}\n      port: {}\n      user: {}\n      dbname: {db}\n      sslmode: disable\n    duck:\n      type: duckdb\n      path: bench.duckdb\n",
            pg_field("host", "127.0.0.1"),
            pg_field("port", "5432"),
            pg_field("user", "postgres")
        ),
    )
    .unwrap();

    // The ceiling: psql \copy of the same rows from CSV into a table of the same shape and key.
    let csv = dir.path().join("klines.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    let ts = |ms: i64| klines::time::format_ms(ms);
    for k in &all {
        writeln!(
            f,
            "binance,spot,BTCUSDT,1m,{},{},{},{},{},{},{},{},{},{},{},stage/x.parquet,{},{}",
            ts(k.open_time),
            d(k.open),
            d(k.high),
            d(k.low),
            d(k.close),
            d(k.volume),
            ts(k.close_time),
            d(k.quote_volume),
            k.trades,
            d(k.taker_buy_base_volume),
            d(k.taker_buy_quote_volume),
            ts(T0),
            ts(T0)
        )
        .unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let ddl = klines::load::raw::sql::ddl(&klines::warehouse::postgres::DIALECT, "ceiling");
    psql(&db, &format!("{}; {}", ddl[0], ddl[1]));
    let started = Instant::now();
    psql(
        &db,
        &format!(
            "\\copy ceiling.klines FROM '{}' WITH (FORMAT csv)",
            csv.display()
        ),
    );
    let copy_secs = started.elapsed().as_secs_f64();
    let copy_rate = rows as f64 / copy_secs;
    println!(
        "psql \\copy (CSV) into the same table shape: {rows} rows in {copy_secs:.2}s = {copy_rate:.0} rows/s"
    );

    let pg_secs = run_load(dir.path(), "pg");
    let pg_rate = rows as f64 / pg_secs;
    println!(
        "klines load -> postgres: {rows} rows in {pg_secs:.2}s = {pg_rate:.0} rows/s ({:.2} of psql \\copy)",
        pg_rate / copy_rate
    );
    let duck_secs = run_load(dir.path(), "duck");
    println!(
        "klines load -> duckdb: {rows} rows in {duck_secs:.2}s = {:.0} rows/s",
        rows as f64 / duck_secs
    );
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
}
