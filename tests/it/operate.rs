//! Running klines unattended: `klines pipeline`, `klines debug`, JSON logs, exit codes.

use crate::models::with_repo_models;
use crate::support::*;

const NOW: &str = "2024-01-03T06:30:00Z";

/// A project whose klines.yml lists `symbols`.
fn project_with_symbols(ex: &TestExchange, symbols: &str) -> Project {
    let p = Project::new(&ex.url, "");
    let yml = p.path().join("klines.yml");
    let text = std::fs::read_to_string(&yml)
        .unwrap()
        .replace("symbols: [BTCUSDT]", &format!("symbols: [{symbols}]"));
    std::fs::write(yml, text).unwrap();
    p
}

fn duck_count(p: &Project, sql: &str) -> i64 {
    let conn = duckdb::Connection::open(p.path().join("klines.duckdb")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn pipeline_backfills_loads_and_builds() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new(&ex.url, "");
    with_repo_models(&p);
    let out = p.ok(&["pipeline", "--from", "2024-01-01", "--to", "2024-01-03"]);
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-01-01"), ms("2024-01-03")).len() as i64;
    let lines: Vec<&str> = out.lines().collect();
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{out}"))
    };
    // The stages ran in order, each with its summary.
    assert!(
        at("backfill: 1 symbols") < at("load: 2 files") && at("load: 2 files") < at("build: "),
        "{out}"
    );
    assert!(out.contains(&format!("{want} rows")), "{out}");
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("pipeline: backfill, load and build done in "),
        "{out}"
    );
    assert_eq!(duck_count(&p, "SELECT count(*) FROM raw.klines"), want);
    assert_eq!(
        duck_count(&p, "SELECT count(*) FROM main.TRADES_OHLC_1M"),
        want
    );
    assert_eq!(
        duck_count(
            &p,
            "SELECT count(*) FROM main.TRADES_OHLC_1D WHERE is_complete"
        ),
        2
    );

    // Again: nothing new to fetch or load, the incremental models stay as they are.
    let out = p.ok(&["pipeline", "--from", "2024-01-01", "--to", "2024-01-03"]);
    assert!(out.contains("load: 0 files"), "{out}");
    assert_eq!(
        duck_count(&p, "SELECT count(*) FROM main.TRADES_OHLC_1M"),
        want
    );
}

#[test]
fn pipeline_stops_at_the_first_failing_stage_with_its_exit_code() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new(&ex.url, "");
    with_repo_models(&p);

    // Backfill fails (an unknown symbol: exit 2): nothing is loaded or built.
    let out = p.run(&["pipeline", "--symbols", "NOPEUSDT", "--from", "2024-01-02"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pipeline stopped at backfill") && stderr(&out).contains("NOPEUSDT"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stdout(&out).contains("load:") && !p.path().join("klines.duckdb").exists(),
        "{}",
        stdout(&out)
    );

    // Build fails (a broken model): backfill and load are done, and the code is build's own.
    std::fs::write(
        p.path().join("models/broken.sql"),
        "select nope from {{ ref('TRADES_OHLC_1M') }}",
    )
    .unwrap();
    let out = p.run(&["pipeline", "--from", "2024-01-02", "--to", "2024-01-03"]);
    let stage_code = out.status.code();
    assert!(
        stderr(&out).contains("pipeline stopped at build"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("load: 1 files"), "{}", stdout(&out));
    assert!(duck_count(&p, "SELECT count(*) FROM raw.klines") > 0);
    let alone = p.run(&["build"]);
    assert_eq!(stage_code, alone.status.code());
    assert_eq!(
        stage_code,
        Some(3),
        "some nodes built, one failed: {}",
        stderr(&out)
    );
}

#[test]
fn debug_checks_config_warehouse_stage_and_exchange() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = project_with_symbols(&ex, "BTCUSDT, ETHUSDT");
    let out = p.ok(&["debug"]);
    for line in [
        "  klines.yml: OK ",
        "  target: default (duckdb) in profile klines",
        "  connection: OK duckdb ",
        "  raw tables: not created yet",
        "  read: OK 0 staged files",
        "  write: OK",
        "  time: OK clock offset",
        "  symbols: OK BTCUSDT TRADING, ETHUSDT TRADING",
        "All checks passed.",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(
        std::fs::read_dir(p.stage_dir()).unwrap().next().is_none(),
        "the write probe was left behind"
    );

    // A warehouse that cannot be reached and an unknown symbol: both named, every other check
    // still runs, exit 1, and the password is not shown.
    let p = project_with_symbols(&ex, "NOPEUSDT");
    p.profiles(
        "pg",
        "    pg:\n      type: postgres\n      host: 127.0.0.1\n      port: 1\n      user: postgres\n      password: hunter2-secret\n      dbname: x\n      sslmode: disable\n",
    );
    let out = p.run(&["debug"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("  connection: ERROR ") && text.contains("127.0.0.1:1"),
        "{text}"
    );
    assert!(
        text.contains("  symbols: ERROR ") && text.contains("NOPEUSDT"),
        "{text}"
    );
    assert!(
        text.contains("  write: OK") && text.contains("  time: OK"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("2 checks failed: connection, symbols"),
        "{}",
        stderr(&out)
    );
    assert!(!text.contains("hunter2") && !stderr(&out).contains("hunter2"));
}

#[test]
fn json_logs_are_one_object_a_line_with_time_level_target_message_and_fields() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new(&ex.url, "");
    let out = p.run(&[
        "backfill",
        "--from",
        "2024-01-02",
        "--log-format",
        "json",
        "-v",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("backfill: 1 symbols"),
        "results stay on stdout"
    );
    let mut start = None;
    // Loads log their own events; each line's keys are unique.
    let load = p.run(&["load", "--log-format", "json", "-v"]);
    assert!(load.status.success(), "{}", stderr(&load));
    for line in stderr(&out).lines().chain(stderr(&load).lines()) {
        assert_eq!(
            line.matches("\"target\":").count(),
            1,
            "one target per line: {line}"
        );
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let ts = v["timestamp"]
            .as_str()
            .unwrap_or_else(|| panic!("no timestamp: {line}"));
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{line}");
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&v["level"].as_str().unwrap()),
            "{line}"
        );
        assert!(
            v["target"].as_str().is_some_and(|t| !t.is_empty()),
            "{line}"
        );
        assert!(v["message"].as_str().is_some(), "{line}");
        if v["message"] == "backfill" {
            start = Some(v);
        }
    }
    // The fields sit beside the message.
    let start = start.expect("the backfill's start is logged");
    assert_eq!(start["symbols"], "BTCUSDT");
    assert_eq!(start["from"], "2024-01-02T00:00:00Z");
    assert_eq!(start["target"], "klines::commands::backfill");

    // The final error is a JSON line too, with the cause and the exit code.
    let out = p.run(&["backfill", "--symbols", "NOPEUSDT", "--log-format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let last: serde_json::Value =
        serde_json::from_str(stderr(&out).lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR");
    assert_eq!(last["exit_code"], 2);
    assert!(
        last["message"].as_str().unwrap().contains("NOPEUSDT"),
        "{last}"
    );
}

/// `-v` logs every warehouse statement on one line with its duration (target klines::sql).
#[test]
fn verbose_logs_show_each_statement_and_its_time() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new(&ex.url, "");
    std::fs::create_dir_all(p.path().join("models")).unwrap();
    std::fs::write(p.path().join("models/m.sql"), "select\n  42 as answer").unwrap();
    let out = p.run(&["run", "-v", "--log-format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let statements: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["target"] == "klines::sql")
        .collect();
    let create = statements
        .iter()
        .find(|v| v["sql"].as_str().unwrap().contains("select 42 as answer"))
        .unwrap_or_else(|| panic!("no model statement in {statements:?}"));
    assert!(create["ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(create["message"], "statement");
    // Not at the default level.
    let quiet = p.run(&["run"]);
    assert!(!stderr(&quiet).contains("statement"), "{}", stderr(&quiet));
}
