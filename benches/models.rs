//! Model benchmarks (`cargo bench --bench models`; `-- --quick` for a month instead of a year).
//!
//! 1. Parse and compile a generated project of 1,000 models (refs, config, a macro, vars):
//!    reading the files, rendering each model at parse time, building the graph, and compiling
//!    every model. Median of 10 runs, in this process.
//! 2. `klines run models` (the release binary) on a year of 1m klines for one symbol, into
//!    embedded DuckDB and into Postgres (`KLINES_TEST_PG`, default
//!    `host=127.0.0.1 port=5432 user=postgres`): the first run, then an incremental run after
//!    one more day is loaded.
//! 3. The indicator models (`klines run -s tag:indicators`: SMA 20/50, EMA 20/50, RSI 14,
//!    MACD 12/26/9, Bollinger 20/2 on the 1m, 5m, 15m, 1h and 1d candles) and the flow models
//!    (`-s tag:flow`) on a year of 1m klines for 10 symbols (about 5.2 million rows), on DuckDB
//!    and Postgres: the full build, then an incremental run after one more day. `-- --quick`
//!    runs a month; `-- --indicators` runs only this part.
//!
//! `-- --year` runs part 2 alone, `-- --duckdb-only` leaves Postgres out, and
//! `-- --memory-limit 300MB` gives the DuckDB runs that `memory_limit` (a profiles.yml setting).

#[path = "../tests/it/support/exchange/data.rs"]
#[allow(dead_code)]
mod data;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use klines::models::runner::{Mode, Runner};

use support::{DAY, DayStager, klines};

fn generate_project(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("models/gen")).unwrap();
    std::fs::create_dir_all(dir.join("macros")).unwrap();
    std::fs::write(
        dir.join("macros/m.sql"),
        "{% macro plus(a, b) %}({{ a }} + {{ b }}){% endmacro %}\n",
    )
    .unwrap();
    for i in 0..n {
        let mut sql = format!(
            "{{{{ config(materialized='{}', tags=['t{}']) }}}}\nselect {{{{ plus('a.x', var('k', 1)) }}}} as x, {i} as id\nfrom ",
            if i % 3 == 0 { "table" } else { "view" },
            i % 10
        );
        if i == 0 {
            sql.push_str("(select 1 as x) as a\n");
        } else {
            // Up to three earlier models, deterministically.
            let parents: BTreeSet<usize> = [i - 1, (i * 7) % i, (i * 13) % i].into_iter().collect();
            let mut it = parents.iter();
            sql.push_str(&format!(
                "{{{{ ref('m{:04}') }}}} as a\n",
                it.next().unwrap()
            ));
            for (j, p) in it.enumerate() {
                sql.push_str(&format!(
                    "join {{{{ ref('m{p:04}') }}}} as b{j} on b{j}.x = a.x\n"
                ));
            }
        }
        std::fs::write(dir.join(format!("models/gen/m{i:04}.sql")), sql).unwrap();
    }
}

fn parse_and_compile(dir: &Path) -> (f64, usize) {
    let started = Instant::now();
    let project = klines::config::Project::load(dir).unwrap();
    let target = klines::config::profiles::resolve(None, dir, &project.profile, None).unwrap();
    let (parsed, _) = klines::models::load(&project, &target, None).unwrap();
    let parsed = Arc::new(parsed);
    let runner = Runner {
        wh: None,
        parsed: Arc::clone(&parsed),
        full_refresh: false,
        threads: 1,
        compiled_dir: dir.join("target/compiled"),
        compiled: Mutex::new(BTreeMap::new()),
        catalog: Default::default(),
        on_result: Box::new(|_, _| {}),
    };
    let mut bytes = 0;
    for n in parsed.nodes.values().filter(|n| Mode::Compile.takes(n)) {
        bytes += runner.compile(n, false, None).unwrap().len();
    }
    (started.elapsed().as_secs_f64() * 1000.0, bytes)
}

const T0: i64 = 1_672_531_200_000; // 2023-01-01

/// Stages `days` synthetic days from `first_day`; returns the number of klines.
fn stage_days(dir: &Path, first_day: i64, days: i64) -> usize {
    let stager = DayStager::open(dir);
    (0..days)
        .map(|d| {
            let day = first_day + d * DAY;
            let klines = stager.minutes(day);
            stager.stage(day, &klines);
            klines.len()
        })
        .sum()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");

    let dir = tempfile::tempdir().unwrap();
    generate_project(dir.path(), 1000);
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..10 {
        let (ms, b) = parse_and_compile(dir.path());
        times.push(ms);
        bytes = b;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "parse + compile of 1,000 models: median {:.1} ms (min {:.1}, max {:.1}; {} KB of SQL)",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        bytes / 1024
    );

    let days = if quick { 31 } else { 365 };
    let args: Vec<String> = std::env::args().collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    // DuckDB's memory_limit for the DuckDB runs (else DuckDB's default, 80% of the RAM).
    let duckdb = args
        .iter()
        .position(|a| a == "--memory-limit")
        .and_then(|i| args.get(i + 1))
        .map(|limit| {
            format!(
                "klines:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: klines.duckdb\n      settings: {{memory_limit: {limit}}}\n"
            )
        });
    let postgres = !flag("--duckdb-only");
    if !flag("--indicators") {
        year_run("DuckDB", days, duckdb.clone());
        if postgres {
            let (profile, drop) = support::postgres_profile("models");
            year_run("Postgres", days, Some(profile));
            drop();
        }
    }
    if flag("--year") {
        return;
    }
    indicators_run("DuckDB", days, duckdb, true);
    if postgres {
        let (profile, drop) = support::postgres_profile("indicators");
        indicators_run("Postgres", days, Some(profile), false);
        drop();
    }
}

/// `days` days of 10 symbols: the candles, then the indicator and flow models, in full and
/// after one more day.
fn indicators_run(name: &str, days: i64, profiles: Option<String>, with_peer: bool) {
    let dir = support::project(profiles);
    let market = data::Market::synthetic_n(10);
    let symbols: Vec<String> = market.symbol_names().into_iter().map(|(s, _)| s).collect();
    assert_eq!(symbols.len(), 10, "{symbols:?}");
    let stagers: Vec<DayStager> = symbols
        .iter()
        .map(|s| DayStager::for_symbol(dir.path(), data::Market::synthetic_n(10), s))
        .collect();
    let stage = |first: i64, n: i64| -> usize {
        let mut rows = 0;
        for st in &stagers {
            for d in 0..n {
                let day = first + d * DAY;
                let k = st.minutes(day);
                st.stage(day, &k);
                rows += k.len();
            }
        }
        rows
    };
    let rows = stage(T0, days);
    klines(dir.path(), &["load"]);
    let (ohlc, _) = klines(dir.path(), &["run", "-s", "tag:ohlc"]);
    println!(
        "{name}: {rows} 1m klines of 10 symbols over {days} days; the candle models: {ohlc:.1}s"
    );
    let (ind, cpu, rss, out) =
        support::child::run(dir.path(), &["run", "-s", "tag:indicators", "-q"]);
    println!(
        "{name}: indicators, full build: {ind:.1}s (klines CPU {cpu:.1}s, peak RSS {:.0} MB)",
        rss as f64 / 1e6
    );
    println!("{out}");
    if with_peer {
        // The peer: the pandas + TA-Lib job on the same tables of the same file.
        let python = bench_venv().join("bin/python");
        let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/indicators_job.py");
        let db = dir.path().join("klines.duckdb");
        let (wall, pcpu, prss, _) = support::child::run_program(
            &python,
            dir.path(),
            &[job.to_str().unwrap(), db.to_str().unwrap(), "main"],
        );
        println!(
            "{name}: the pandas + TA-Lib job on the same tables: {wall:.1}s (CPU {pcpu:.1}s, peak RSS {:.0} MB); klines/job: wall {:.2}x, CPU {:.2}x",
            prss as f64 / 1e6,
            ind / wall,
            cpu / pcpu
        );
    }
    let (flow, _) = klines(dir.path(), &["run", "-s", "tag:flow"]);
    println!("{name}: flow metrics, full build: {flow:.1}s");
    let more = stage(T0 + days * DAY, 1);
    klines(dir.path(), &["load"]);
    klines(dir.path(), &["run", "-s", "tag:ohlc"]);
    let (ind_inc, cpu, rss, out) =
        support::child::run(dir.path(), &["run", "-s", "tag:indicators", "-q"]);
    println!(
        "{name}: indicators, incremental after one more day ({more} rows): {ind_inc:.2}s = {:.1}% of the full build (klines CPU {cpu:.2}s, peak RSS {:.0} MB)",
        ind_inc / ind * 100.0,
        rss as f64 / 1e6
    );
    println!("{out}");
    let (flow_inc, _) = klines(dir.path(), &["run", "-s", "tag:flow"]);
    println!("{name}: flow metrics, incremental after one more day: {flow_inc:.2}s");
}

/// The first run on `days` days, then an incremental run after one more day.
fn year_run(name: &str, days: i64, profiles: Option<String>) {
    let dir = support::project(profiles);
    let rows = stage_days(dir.path(), T0, days);
    klines(dir.path(), &["load"]);
    klines(dir.path(), &["seed"]);
    let (first, _) = klines(dir.path(), &["run", "models"]);
    println!(
        "{name}: klines run models, first run on {days} days of 1m klines ({rows} rows): {first:.2}s"
    );
    let more = stage_days(dir.path(), T0 + days * DAY, 1);
    klines(dir.path(), &["load"]);
    let (inc, out) = klines(dir.path(), &["run", "models"]);
    println!(
        "{name}: incremental run after one more day ({more} rows): {inc:.3}s = {:.1}% of the first run",
        inc / first * 100.0
    );
    print!("{out}");
    let (none, _) = klines(dir.path(), &["run", "models"]);
    println!("{name}: klines run models with nothing new: {none:.3}s");
}

/// The virtualenv of the peer job (`requirements-bench.txt`), made on first use.
fn bench_venv() -> std::path::PathBuf {
    let home = std::env::var("HOME").expect("HOME");
    let venv = Path::new(&home).join(".cache/klines-venvs/bench");
    let reqs = Path::new(env!("CARGO_MANIFEST_DIR")).join("requirements-bench.txt");
    if !venv.join("bin/python").exists() {
        let ok = std::process::Command::new("python3")
            .args(["-m", "venv", venv.to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot make the virtualenv {}", venv.display());
    }
    let ok = std::process::Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&reqs)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cannot install {}", reqs.display());
    venv
}
