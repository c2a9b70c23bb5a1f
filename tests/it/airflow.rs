//! The Airflow DAG (airflow/dags/klines_dag.py) in real Apache Airflow: it imports cleanly, and
//! `airflow dags test` runs backfill, load, seed, models and tests against the test exchange
//! and DuckDB for the run's data interval.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::models::with_repo_models;
use crate::support::*;

fn dags_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("airflow/dags")
}

/// Airflow with its home in `home`: SQLite, no examples, this repository's DAGs.
fn airflow(home: &Path, program: &str) -> Command {
    let bin = PathBuf::from(required_env("KLINES_TEST_AIRFLOW"));
    let mut c = Command::new(bin.join(program));
    c.env("AIRFLOW_HOME", home)
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env("AIRFLOW__CORE__DAGS_FOLDER", dags_dir())
        .env("KLINES_BIN", env!("CARGO_BIN_EXE_klines"))
        .env("KLINES_RETRIES", "0")
        .env_remove("KLINES_PROJECT_DIR")
        .env_remove("KLINES_TARGET")
        .env_remove("KLINES_STAGE");
    c
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    stdout(&out) + &stderr(&out)
}

#[test]
fn the_dag_imports_without_errors() {
    let home = tempfile::tempdir().unwrap();
    let script = r#"
import json
from airflow.models import DagBag
bag = DagBag(str(__import__("sys").argv[1]))
dag = bag.dags.get("klines")
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    "tasks": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks} if dag else None,
    "retries": [t.retries for t in dag.tasks] if dag else None,
    "params": sorted(dag.params.keys()) if dag else None,
    "schedule": str(getattr(dag, "schedule", None)) if dag else None,
    "backfill": dag.get_task("backfill").bash_command if dag else None,
    "env": dag.get_task("backfill").env if dag else None,
}))
"#;
    let out = ok(
        airflow(home.path(), "python")
            .arg("-c")
            .arg(script)
            .arg(dags_dir())
            .output()
            .unwrap(),
        "DagBag",
    );
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("the script's JSON");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["errors"], serde_json::json!({}), "{out}");
    assert_eq!(v["dags"], serde_json::json!(["klines"]));
    assert_eq!(
        v["tasks"],
        serde_json::json!({"backfill": ["load"], "load": ["run_models"], "seed": ["run_models"], "run_models": ["test"], "test": []})
    );
    assert_eq!(
        v["retries"],
        serde_json::json!([0, 0, 0, 0, 0]),
        "KLINES_RETRIES sets the retries"
    );
    assert_eq!(v["params"], serde_json::json!(["symbols", "target"]));
    assert_eq!(v["schedule"], "@hourly");
    // Nothing templated stands in the command: values arrive as quoted environment variables.
    let backfill = v["backfill"].as_str().unwrap();
    assert!(
        backfill.contains(r#"--symbols "$KLINES_DAG_SYMBOLS""#)
            && backfill.contains(r#"--to "$KLINES_DAG_TO""#)
            && !backfill.contains("{{"),
        "{backfill}"
    );
    assert_eq!(v["env"]["KLINES_DAG_SYMBOLS"], "{{ params.symbols }}");
}

/// Two DAG runs: each stages, loads and models exactly its hour; the second one's symbols
/// come from the run's conf (the templated params).
#[test]
fn airflow_dags_test_runs_the_pipeline_for_the_runs_interval() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms("2024-01-02T08:00:00Z")));
    let p = Project::new(&ex.url, "");
    with_repo_models(&p);
    let home = tempfile::tempdir().unwrap();
    ok(
        airflow(home.path(), "airflow")
            .args(["db", "migrate"])
            .output()
            .unwrap(),
        "airflow db migrate",
    );

    let run = |logical: &str, conf: &str| {
        let mut c = airflow(home.path(), "airflow");
        c.args(["dags", "test", "klines", logical])
            .env("KLINES_PROJECT_DIR", p.path());
        if !conf.is_empty() {
            c.args(["--conf", conf]);
        }
        let out = ok(
            c.output().unwrap(),
            &format!("airflow dags test klines {logical}"),
        );
        for task in ["backfill", "load", "seed", "run_models", "test"] {
            assert!(
                out.contains(&format!("task_id={task}")),
                "{task} did not run:\n{out}"
            );
        }
        let finished = out
            .lines()
            .find(|l| l.contains("DagRun Finished"))
            .unwrap_or_else(|| panic!("no DagRun Finished in\n{out}"));
        assert!(finished.contains(" state=success,"), "{finished}\n{out}");
    };
    let count = |sql: &str| -> i64 {
        let conn = duckdb::Connection::open(p.path().join("klines.duckdb")).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    let hour = |symbol: &str, from: &str, to: &str| {
        expected(&ex, symbol, "1m", ms(from), ms(to)).len() as i64
    };

    // A manual run at 06:00 covers 05:00 to 06:00 (Airflow 3 gives manual runs an empty interval).
    run("2024-01-02T06:00:00+00:00", "");
    let btc_5 = hour("BTCUSDT", "2024-01-02T05:00:00Z", "2024-01-02T06:00:00Z");
    assert!(btc_5 > 0);
    assert_eq!(count("SELECT count(*) FROM raw.klines"), btc_5);
    assert_eq!(
        count(
            "SELECT count(*) FROM raw.klines WHERE open_time >= TIMESTAMPTZ '2024-01-02 05:00:00+00' AND open_time < TIMESTAMPTZ '2024-01-02 06:00:00+00'"
        ),
        btc_5
    );
    assert_eq!(count("SELECT count(*) FROM main.TRADES_OHLC_1M"), btc_5);

    // The next hour, for two symbols from the run's conf.
    run(
        "2024-01-02T07:00:00+00:00",
        r#"{"symbols": "BTCUSDT,ETHUSDT"}"#,
    );
    let btc_6 = hour("BTCUSDT", "2024-01-02T06:00:00Z", "2024-01-02T07:00:00Z");
    let eth_6 = hour("ETHUSDT", "2024-01-02T06:00:00Z", "2024-01-02T07:00:00Z");
    assert_eq!(
        count("SELECT count(*) FROM raw.klines"),
        btc_5 + btc_6 + eth_6
    );
    assert_eq!(
        count("SELECT count(*) FROM main.TRADES_OHLC_1M WHERE symbol = 'ETHUSDT'"),
        eth_6
    );
    assert_eq!(
        count("SELECT count(*) FROM main.TRADES_OHLC_1M"),
        btc_5 + btc_6 + eth_6
    );
    assert_eq!(
        count("SELECT count(*) FROM main.TRADES_OHLC_1D"),
        2,
        "one forming day per symbol"
    );

    // Shell in the params runs nothing: refused by the params' patterns when triggered, and
    // even then only ever an argument.
    let pwned = home.path().join("pwned");
    for conf in [
        format!(
            r#"{{"symbols": "BTCUSDT; touch {}; echo"}}"#,
            pwned.display()
        ),
        format!(r#"{{"symbols": "BTCUSDT$(touch {})"}}"#, pwned.display()),
        format!(r#"{{"target": "x; touch {}"}}"#, pwned.display()),
    ] {
        let out = airflow(home.path(), "airflow")
            .args([
                "dags",
                "test",
                "klines",
                "2024-01-02T08:00:00+00:00",
                "--conf",
                &conf,
            ])
            .env("KLINES_PROJECT_DIR", p.path())
            .output()
            .unwrap();
        let text = stdout(&out) + &stderr(&out);
        assert!(!pwned.exists(), "{conf} ran a command:\n{text}");
        assert!(
            !out.status.success() || !text.contains(" state=success,"),
            "{conf} was accepted:\n{text}"
        );
    }
    assert_eq!(
        count("SELECT count(*) FROM raw.klines"),
        btc_5 + btc_6 + eth_6,
        "nothing was loaded by the refused runs"
    );
}
