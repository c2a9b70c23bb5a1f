//! The defects found by trying bad input and faults (issue 10), each with the behaviour users
//! rely on instead: clear one-line errors with the documented exit codes, no secrets in
//! output, no panics, no injection, no silent skips, cancellation and warehouse locks.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::models::with_repo_models;
use crate::support::*;

const NOW: &str = "2024-01-03T06:30:00Z";

fn exchange() -> TestExchange {
    TestExchange::start(ExchangeConfig::synthetic(ms(NOW)))
}

fn no_panic(out: &std::process::Output) {
    assert_ne!(out.status.code(), Some(101), "panicked: {}", stderr(out));
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
}

/// Every stderr line is one JSON object.
fn all_json(err: &str) {
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object()),
            "not a JSON line: {line:?}\nin:\n{err}"
        );
    }
}

/// Defect 2: `--from -2h`, as the README's crontab line writes it.
#[test]
fn a_time_ago_with_a_leading_hyphen_is_a_value() {
    let ex = exchange();
    let p = Project::new(&ex.url, "");
    let out = p.ok(&["backfill", "--from", "-2h", "--to", "-1h"]);
    let want = expected(
        &ex,
        "BTCUSDT",
        "1m",
        ms(NOW) - 2 * 3_600_000,
        ms(NOW) - 3_600_000,
    );
    assert!(out.contains(&format!("{} rows", want.len())), "{out}");
    // The README's crontab line, as written.
    with_repo_models(&p);
    let out = p.run(&["pipeline", "--from", "-2h", "--log-format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    all_json(&stderr(&out));
}

/// Defect 3: the exchange URL's password is never printed, in text or JSON, at any level.
#[test]
fn debug_never_prints_the_exchange_password() {
    let ex = exchange();
    let url = ex.url.replace("http://", "http://user:s3cr3tpw@");
    let p = Project::new(&url, "");
    for args in [
        &["debug"][..],
        &["debug", "-vv"],
        &["debug", "--log-format", "json", "-vv"],
        &["backfill", "--from", "-1h", "-vv", "--log-format", "json"],
    ] {
        let out = p.run(args);
        let all = stdout(&out) + &stderr(&out);
        assert!(!all.contains("s3cr3tpw"), "{args:?} leaked it:\n{all}");
    }
    let out = p.run(&["debug"]);
    assert!(stdout(&out).contains("***@127.0.0.1"), "{}", stdout(&out));
}

/// Defect 4: numbers no Duration can hold, from the exchange or the configuration.
#[test]
fn absurd_numbers_are_errors_not_panics() {
    let ex = exchange();
    ex.inject([Fault::TooManyRaw("1e30")]);
    let p = Project::new(&ex.url, "");
    let out = p.run(&[
        "backfill",
        "--from",
        "2024-01-03",
        "--to",
        "2024-01-03T01:00:00Z",
    ]);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rate-limited by the exchange (HTTP 429)"),
        "{}",
        stderr(&out)
    );

    let q = Project::new(&ex.url, "");
    let yml = q.path().join("klines.yml");
    let text = std::fs::read_to_string(&yml).unwrap() + "  timeout_secs: 1e30\n";
    std::fs::write(&yml, text).unwrap();
    let out = q.run(&["backfill"]);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exchange.timeout_secs must be at most 86400"),
        "{}",
        stderr(&out)
    );
}

/// Defect 6: an all-digit password from an unquoted env_var() is a password, and a type error
/// elsewhere never shows the value.
#[test]
fn an_all_digit_secret_is_never_echoed() {
    let db = PgDb::create();
    let p = Project::new("http://127.0.0.1:9", "");
    let (host, port, user) = db.fields();
    p.profiles(
        "pg",
        &format!(
            "    pg:\n      type: postgres\n      host: {host}\n      port: {port}\n      user: {user}\n      password: {{{{ env_var('KLINES_TEST_PW') }}}}\n      dbname: {}\n      sslmode: disable\n",
            db.name
        ),
    );
    let out = p
        .cmd()
        .args(["load"])
        .env("KLINES_TEST_PW", "8472991337")
        .output()
        .unwrap();
    let all = stdout(&out) + &stderr(&out);
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("8472991337"), "{all}");

    // The same number where a string must be: an error that names the place, not the value.
    p.profiles(
        "pg",
        &format!(
            "    pg:\n      type: postgres\n      host: {host}\n      user: {user}\n      dbname: {{{{ env_var('KLINES_TEST_PW') }}}}\n"
        ),
    );
    let out = p
        .cmd()
        .args(["load"])
        .env("KLINES_TEST_PW", "8472991337")
        .output()
        .unwrap();
    let all = stdout(&out) + &stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("profiles.yml") && all.contains("output pg"),
        "{all}"
    );
    assert!(!all.contains("8472991337"), "{all}");
}

/// Defect 9: a stage URL cannot smuggle statements into the setup script.
#[test]
fn setup_snowflake_refuses_a_stage_url_that_is_not_plain() {
    let p = Project::new("http://127.0.0.1:9", "");
    p.profiles(
        "sf",
        "    sf:\n      type: snowflake\n      account: xy12345\n      user: loader\n      password: x\n      database: market\n",
    );
    for stage in [
        "s3://b/x\nDROP DATABASE X; --",
        "s3://bucket/x'; DROP DATABASE X; --",
        "s3://Bad_Bucket/x",
        "s3://bucket/x y",
    ] {
        let out = p.run(&["setup", "snowflake", "--stage", stage]);
        assert_eq!(out.status.code(), Some(2), "{stage:?}: {}", stderr(&out));
        assert!(!stdout(&out).contains("DROP"), "{}", stdout(&out));
        assert!(stderr(&out).contains("--stage"), "{}", stderr(&out));
        assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    }
    let out = p.run(&[
        "setup",
        "snowflake",
        "--stage",
        "s3://market-data/klines/v1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Defect 10: a project name is an identifier, so compile writes only below target/.
#[test]
fn a_project_name_cannot_write_outside_target() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a/b/c");
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::fs::write(dir.join("klines.yml"), "name: ../../../x\n").unwrap();
    std::fs::write(dir.join("models/m.sql"), "select 1 as x").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_klines"))
        .current_dir(&dir)
        .args(["compile"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("name \"../../../x\""),
        "{}",
        stderr(&out)
    );
    let outside: Vec<_> = files(root.path())
        .into_keys()
        .filter(|k| !k.starts_with("a/b/c/"))
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
}

/// Defect 11: configuration and usage errors exit 2, and `ls` refuses what it does not know.
#[test]
fn configuration_errors_exit_2() {
    let ex = exchange();
    let p = Project::new(&ex.url, "");
    std::fs::write(p.path().join("models.sql"), "").unwrap();
    let cases: Vec<(Project, Vec<&str>, &str)> = vec![
        {
            let q = Project::new(&ex.url, "");
            std::fs::remove_file(q.path().join("klines.yml")).unwrap();
            std::fs::create_dir(q.path().join("klines.yml")).unwrap();
            (q, vec!["backfill"], "klines.yml")
        },
        {
            let q = Project::new(&ex.url, "");
            q.profiles(
                "pg",
                "    pg:\n      type: postgres\n      user: u\n      dbname: d\n      sslmode: bogus\n",
            );
            (q, vec!["load"], "unknown sslmode \"bogus\"")
        },
        (
            Project::new(&ex.url, ""),
            vec!["backfill", "--from", "2030-01-01"],
            "in the future of the exchange's clock",
        ),
        (
            Project::new(&ex.url, ""),
            vec!["ls", "--output", "bogus"],
            "bogus",
        ),
        (
            Project::new(&ex.url, ""),
            vec!["ls", "--resource-type", "bogus"],
            "bogus",
        ),
    ];
    for (q, args, says) in cases {
        let out = q.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// Defect 12: one compiled file per schema test, and every name `ls` prints selects its node.
#[test]
fn every_name_ls_prints_selects_exactly_its_node() {
    let p = Project::new("http://127.0.0.1:9", "");
    with_repo_models(&p);
    let listed = p.ok(&["ls"]);
    let names: Vec<&str> = listed.lines().collect();
    assert!(names.len() > 20, "{listed}");
    let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "names repeat:\n{listed}");
    let json = p.ok(&["ls", "--output", "json"]);
    let ids: Vec<String> = json
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["unique_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // The name selects its node alone once indirect selection adds no tests (by default a
    // model's name brings its tests, as in dbt).
    for (name, id) in names.iter().zip(&ids) {
        let one = p.ok(&[
            "ls",
            "-s",
            name,
            "--output",
            "json",
            "--indirect-selection",
            "empty",
        ]);
        let got: Vec<&str> = one.lines().collect();
        assert_eq!(got.len(), 1, "{name} selects {one}");
        assert!(
            got[0].contains(&format!("\"unique_id\":\"{id}\"")),
            "{name}: {one}"
        );
    }

    // compile: one .sql per schema test, none overwriting another.
    p.ok(&["compile"]);
    let compiled = files(
        &p.path()
            .join("target/compiled/klines/models/ohlc/schema.yml"),
    );
    let tests = ids.iter().filter(|i| i.starts_with("test.")).count();
    let from_yml = compiled.keys().filter(|k| k.ends_with(".sql")).count();
    assert!(from_yml > 10 && from_yml <= tests, "{:?}", compiled.keys());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/manifest.json")).unwrap())
            .unwrap();
    let paths: Vec<&str> = manifest["nodes"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|n| n["compiled_path"].as_str())
        .collect();
    let distinct: std::collections::BTreeSet<&&str> = paths.iter().collect();
    assert_eq!(distinct.len(), paths.len(), "compiled paths repeat");
}

/// Defect 13 and the Jinja error chain: one line per node on the summary, the rest at -v; a
/// template error shows the file, line and the snippet.
#[test]
fn model_errors_are_one_line_with_the_detail_at_v() {
    let p = Project::new("http://127.0.0.1:9", "");
    std::fs::create_dir_all(p.path().join("models")).unwrap();
    std::fs::write(
        p.path().join("models/bad.sql"),
        "select nope\nfrom (select 1 as x)\n",
    )
    .unwrap();
    let out = p.run(&["run"]);
    let line = stdout(&out)
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("bad"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{}", stdout(&out)));
    assert!(line.contains("nope"), "{line}");
    assert!(
        !stdout(&out).contains("LINE 1") && !stdout(&out).contains("Error code"),
        "{}",
        stdout(&out)
    );
    let out = p.run(&["run", "-v"]);
    assert!(
        stderr(&out).contains("the rest of the message"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        p.path().join("models/bad.sql"),
        "select 1 as x\n-- two\n-- three\nfrom {{ nope('a') }}\n",
    )
    .unwrap();
    let out = p.run(&["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("models/bad.sql line 4: unknown function"),
        "{err}"
    );
    assert!(err.contains("4 > | from {{ nope('a') }}"), "{err}");
    assert!(err.contains("^^^"), "{err}");

    std::fs::write(
        p.path().join("models/bad.sql"),
        "select 1 as x {{ config(materialized='incremental', incremental_strategy='upsert') }}",
    )
    .unwrap();
    let out = p.run(&["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("models/bad.sql")
            && stderr(&out).contains("unknown incremental_strategy \"upsert\""),
        "{}",
        stderr(&out)
    );
}

/// Defect 7: with JSON logs, load's failed files and command-line errors are JSON lines too.
#[test]
fn json_logs_stay_json_for_failures_and_usage_errors() {
    let ex = exchange();
    let p = Project::new(&ex.url, "");
    p.ok(&["backfill", "--from", "2024-01-02", "--to", "2024-01-03"]);
    let data = parquet_files(&p.stage_dir());
    let (name, _) = data.iter().next().unwrap();
    std::fs::write(p.stage_dir().join(name), b"not parquet").unwrap();
    let out = p.run(&["load", "--log-format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    all_json(&stderr(&out));
    assert!(stderr(&out).contains("\"file\""), "{}", stderr(&out));

    for args in [
        &["load", "--log-format", "json", "--bogus"][..],
        &["--log-format=json", "ls", "--output", "bogus"],
    ] {
        let out = p.run(args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        all_json(&stderr(&out));
    }
    let out = p
        .cmd()
        .args(["backfill", "--frm", "x"])
        .env("KLINES_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    all_json(&stderr(&out));
}

/// Defect 8: a staged file without a manifest entry is reported, and `klines repair` makes it
/// load; a checkpoint that claims candles past the exchange's clock is not trusted.
#[test]
fn nothing_is_skipped_silently() {
    let ex = exchange();
    let p = Project::new(&ex.url, "");
    p.ok(&["backfill", "--from", "2024-01-01", "--to", "2024-01-03"]);
    let manifest = p.stage_dir().join("_manifest");
    let entry = files(&manifest).into_keys().next().unwrap();
    std::fs::remove_file(manifest.join(&entry)).unwrap();
    // Old enough not to be a backfill's file whose entry is on its way.
    let data = entry.rsplitn(3, '.').nth(2).unwrap().to_string();
    let f = std::fs::File::options()
        .write(true)
        .open(p.stage_dir().join(&data))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let out = p.run(&["load"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("failed: {data}: staged without a manifest entry")),
        "{}",
        stderr(&out)
    );
    let out = p.ok(&["repair", "--dry-run"]);
    assert!(out.contains(&format!("would write\t{data}")), "{out}");
    let out = p.ok(&["repair"]);
    assert!(
        out.contains("repair: 1 files without a manifest entry, 1 repaired"),
        "{out}"
    );
    let out = p.ok(&["load"]);
    assert!(out.contains("load: 1 files"), "{out}");
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-01-01"), ms("2024-01-03")).len() as i64;
    let conn = duckdb::Connection::open(p.path().join("klines.duckdb")).unwrap();
    let got: i64 = conn
        .query_row("SELECT count(*) FROM raw.klines", [], |r| r.get(0))
        .unwrap();
    assert_eq!(got, want);
    drop(conn);

    // A checkpoint from a clock ahead of the exchange's: its future part is dropped, loudly.
    let ex2 = TestExchange::start(ExchangeConfig::synthetic(ms("2024-01-02T12:00:00Z")));
    let q = Project::new(&ex2.url, "");
    let state = p.path().join("state");
    let out = q
        .cmd()
        .args([
            "backfill",
            "--from",
            "2024-01-01",
            "--stage",
            p.stage_dir().to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("covers candles past the exchange's clock"),
        "{}",
        stderr(&out)
    );
}

fn spawn(p: &Project, args: &[&str]) -> Child {
    p.cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sigterm(child: &Child) {
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// Runs `sql` on the test server's database `db` and returns the first column as text.
fn pg_texts(db: &PgDb, sql: &str) -> Vec<String> {
    let out = db.output();
    let rt = runtime();
    rt.block_on(async {
        let pg = klines::warehouse::postgres::Postgres::connect(&out)
            .await
            .unwrap();
        use klines::warehouse::Warehouse;
        pg.query(sql)
            .await
            .unwrap()
            .rows
            .into_iter()
            .map(|r| format!("{:?}", r[0]))
            .collect()
    })
}

/// Ctrl-C or SIGTERM cancels the running statement on Postgres: exit 130 at once, and the
/// server no longer runs it.
#[test]
fn sigterm_cancels_the_running_postgres_statement() {
    let db = PgDb::create();
    let p = Project::new("http://127.0.0.1:9", "");
    p.profiles("pg", &db.output_yaml("pg"));
    std::fs::create_dir_all(p.path().join("models")).unwrap();
    std::fs::write(
        p.path().join("models/slow.sql"),
        "{{ config(materialized='table') }} select 1 as x from pg_sleep(120)",
    )
    .unwrap();
    let child = spawn(&p, &["run"]);
    let running = "SELECT query FROM pg_stat_activity WHERE query LIKE '%pg_sleep(120)%' AND state = 'active' AND pid <> pg_backend_pid()";
    let started = Instant::now();
    while pg_texts(&db, running).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the statement never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&child);
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = signalled.elapsed();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cancelling the running Postgres statement"),
        "{}",
        stderr(&out)
    );
    // Not the 10 s klines gives work that ignores the signal.
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(
        pg_texts(&db, running).is_empty(),
        "still running on the server"
    );
    assert!(
        pg_texts(
            &db,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'analytics'"
        )
        .is_empty(),
        "nothing half-built is kept"
    );
}

/// The same on DuckDB: the statement is interrupted.
#[test]
fn sigterm_interrupts_the_running_duckdb_statement() {
    let p = Project::new("http://127.0.0.1:9", "");
    std::fs::create_dir_all(p.path().join("models")).unwrap();
    std::fs::write(
        p.path().join("models/slow.sql"),
        "{{ config(materialized='table') }} select sum(a.range * b.range) as x from range(3000000) a, range(3000000) b",
    )
    .unwrap();
    let mut child = spawn(&p, &["run", "-v"]);
    // The run has started its statement once it logged it; give it a moment past that.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "the run ended early");
    sigterm(&child);
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = signalled.elapsed();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupting the running DuckDB statement"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    let conn = duckdb::Connection::open(p.path().join("klines.duckdb")).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'slow%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0, "nothing half-built is kept");
}

/// Defect 5: a re-run right after `kill -9` of a model run works, and two loads at once
/// into one database both succeed, each file loaded once.
#[test]
fn postgres_runs_are_locked_and_a_killed_runs_leftovers_are_harmless() {
    let ex = exchange();
    let db = PgDb::create();
    let p = Project::new(&ex.url, "");
    p.profiles("pg", &db.output_yaml("pg"));
    p.ok(&["backfill", "--from", "2024-01-01", "--to", "2024-01-03"]);

    let loads: Vec<Child> = (0..3).map(|_| spawn(&p, &["load"])).collect();
    for c in loads {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-01-01"), ms("2024-01-03")).len();
    assert_eq!(
        pg_texts(&db, "SELECT count(*)::text FROM raw.klines"),
        [format!("Text({:?})", want.to_string())]
    );
    assert_eq!(
        pg_texts(&db, "SELECT count(*)::text FROM raw.klines_load_history"),
        ["Text(\"2\")"]
    );

    std::fs::create_dir_all(p.path().join("models")).unwrap();
    std::fs::write(
        p.path().join("models/slow.sql"),
        "{{ config(materialized='table') }} select 1 as x from pg_sleep(3)",
    )
    .unwrap();
    for attempt in 0..3 {
        let mut child = spawn(&p, &["run"]);
        let started = Instant::now();
        while pg_texts(&db, "SELECT query FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3)%' AND state = 'active' AND pid <> pg_backend_pid()").is_empty() {
            assert!(started.elapsed() < Duration::from_secs(60), "never started");
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let out = p.run(&["run"]);
        assert!(
            out.status.success(),
            "attempt {attempt}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
    }
}
