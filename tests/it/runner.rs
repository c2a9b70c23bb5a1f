//! The model runner on small projects: graph order, errors, selectors, materializations,
//! parallelism, build semantics and dbt artifacts.

use std::path::Path;
use std::time::Duration;

use klines::warehouse::RelationType;

use crate::support::*;

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A project with no exchange: seeds and models only.
fn project() -> Project {
    let p = Project::new("http://127.0.0.1:9", "");
    let r = p.path();
    write(
        r,
        "seeds/prices.csv",
        "symbol,open_time,price,active\nA,2024-01-01T00:00:00Z,1.5,true\nA,2024-01-02T00:00:00Z,2.25,true\nB,2024-01-01T00:00:00Z,10,false\n",
    );
    write(
        r,
        "models/staging/stg_prices.sql",
        "{{ config(materialized='view', tags=['staging']) }}\nselect symbol, open_time, price from {{ ref('prices') }}\n",
    );
    write(
        r,
        "models/marts/doubled.sql",
        "{{ config(materialized='ephemeral') }}\nselect symbol, open_time, price * 2 as double_price from {{ ref('stg_prices') }}\n",
    );
    write(
        r,
        "models/marts/totals.sql",
        "{{ config(materialized='table') }}\nselect symbol, sum(double_price) as total, count(*) as n from {{ ref('doubled') }} group by symbol\n",
    );
    write(
        r,
        "models/marts/appended.sql",
        "{{ config(materialized='incremental', incremental_strategy='append') }}\nselect symbol, open_time, price from {{ ref('stg_prices') }}\n{% if is_incremental() %}where open_time > (select max(open_time) from {{ this }}){% endif %}\n",
    );
    write(
        r,
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: totals\n    columns:\n      - name: symbol\n        data_tests: [unique, not_null, {accepted_values: {values: [A, B]}}]\n      - name: total\n        data_tests:\n          - not_null\n  - name: stg_prices\n    columns:\n      - name: symbol\n        data_tests:\n          - relationships: {to: \"ref('totals')\", field: symbol}\n",
    );
    p
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn ls_lists_in_dependency_order_and_selects_like_dbt() {
    let p = project();
    let all = p.ok(&["ls", "--resource-type", "model", "seed", "--output", "name"]);
    assert_eq!(
        lines(&all),
        ["prices", "stg_prices", "appended", "doubled", "totals"]
    );
    assert_eq!(
        lines(&p.ok(&[
            "ls",
            "-s",
            "+totals",
            "--output",
            "name",
            "--resource-type",
            "model",
            "seed"
        ])),
        ["prices", "stg_prices", "doubled", "totals"]
    );
    assert_eq!(
        lines(&p.ok(&[
            "ls",
            "stg_prices+",
            "--output",
            "name",
            "--resource-type",
            "model"
        ])),
        ["stg_prices", "appended", "doubled", "totals"]
    );
    // A tagged model brings the tests on it, as dbt's eager indirect selection does.
    assert_eq!(
        lines(&p.ok(&["ls", "tag:staging", "--output", "name"])),
        [
            "stg_prices",
            "relationships_stg_prices_symbol__symbol__ref_totals_"
        ]
    );
    assert_eq!(
        lines(&p.ok(&[
            "ls",
            "tag:staging",
            "--output",
            "name",
            "--indirect-selection",
            "empty"
        ])),
        ["stg_prices"]
    );
    assert_eq!(
        lines(&p.ok(&[
            "ls",
            "models/marts",
            "--exclude",
            "doubled",
            "--output",
            "path",
            "--indirect-selection",
            "empty"
        ])),
        ["models/marts/appended.sql", "models/marts/totals.sql"]
    );
    // The intersection holds the models; the test on one of them comes along (eager), as in
    // dbt, where each side of the intersection selects it indirectly.
    assert_eq!(
        lines(&p.ok(&["ls", "stg_prices+1,resource_type:model", "--output", "name"])),
        [
            "stg_prices",
            "appended",
            "doubled",
            "relationships_stg_prices_symbol__symbol__ref_totals_"
        ]
    );
    // dbt's default output: the fqn.
    assert!(
        p.ok(&["ls", "totals"])
            .lines()
            .any(|l| l == "klines.marts.totals")
    );
    let out = p.run(&["ls", "nothing_like_this"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("selector \"nothing_like_this\" matches nothing"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_refs_cycles_and_jinja_errors_name_the_file_and_line() {
    let p = project();
    write(
        p.path(),
        "models/broken.sql",
        "select 1 as x\nfrom a\njoin {{ ref('nope') }} using (x)\n",
    );
    let out = p.run(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "error: models/broken.sql line 3: ref('nope') does not match any model or seed"
        ),
        "{}",
        stderr(&out)
    );

    std::fs::remove_file(p.path().join("models/broken.sql")).unwrap();
    write(
        p.path(),
        "models/cyc_a.sql",
        "select * from {{ ref('cyc_b') }}\n",
    );
    write(
        p.path(),
        "models/cyc_b.sql",
        "select * from {{ ref('cyc_a') }}\n",
    );
    let out = p.run(&["compile"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("dependency cycle: cyc_a (models/cyc_a.sql) -> cyc_b (models/cyc_b.sql) -> cyc_a (models/cyc_a.sql)")
            || err.contains("dependency cycle: cyc_b (models/cyc_b.sql) -> cyc_a (models/cyc_a.sql) -> cyc_b (models/cyc_b.sql)"),
        "{err}"
    );

    std::fs::remove_file(p.path().join("models/cyc_a.sql")).unwrap();
    std::fs::remove_file(p.path().join("models/cyc_b.sql")).unwrap();
    write(p.path(), "models/bad_jinja.sql", "select 1\n{% if %}\n");
    let out = p.run(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("models/bad_jinja.sql line 2: syntax error"),
        "{}",
        stderr(&out)
    );
    write(
        p.path(),
        "models/bad_jinja.sql",
        "select {{ var('not_set') }} as x\n",
    );
    let out = p.run(&["run"]);
    assert!(
        stderr(&out).contains(
            "models/bad_jinja.sql line 1: undefined value: var('not_set') is not defined"
        ),
        "{}",
        stderr(&out)
    );
    let out = p.ok(&["compile", "-s", "bad_jinja", "--vars", "{not_set: 42}"]);
    assert!(out.contains("1 of 1 OK"), "{out}");
    assert_eq!(
        std::fs::read_to_string(p.path().join("target/compiled/klines/models/bad_jinja.sql"))
            .unwrap(),
        "select 42 as x"
    );
}

fn materializations(wh: Wh) {
    let p = project();
    wh.setup(&p);
    let out = p.ok(&["build"]);
    assert!(out.contains("build: 9 nodes: 9 ok"), "{out}");
    let w = wh.connect(&p);
    let rt = runtime();
    let schema = wh.schema();
    assert_eq!(
        rt.block_on(w.relation(schema, "stg_prices")).unwrap(),
        Some(RelationType::View)
    );
    assert_eq!(
        rt.block_on(w.relation(schema, "totals")).unwrap(),
        Some(RelationType::Table)
    );
    assert_eq!(
        rt.block_on(w.relation(schema, "doubled")).unwrap(),
        None,
        "an ephemeral model is not built"
    );
    drop(w);
    let compiled = std::fs::read_to_string(
        p.path()
            .join("target/compiled/klines/models/marts/totals.sql"),
    )
    .unwrap();
    assert!(
        compiled.starts_with("WITH __klines_cte__doubled AS ("),
        "{compiled}"
    );
    let totals = wh.query(
        &p,
        &format!("SELECT symbol, total, n FROM {schema}.totals ORDER BY symbol"),
    );
    assert_eq!(totals[0][1].to_scaled(2), Some(750));
    assert_eq!(totals[1][1].to_scaled(2), Some(2000));
    // Seeds are typed.
    let seeded = wh.query(
        &p,
        &format!("SELECT price, active, open_time FROM {schema}.prices ORDER BY symbol, open_time"),
    );
    assert_eq!(seeded[0][0].to_scaled(2), Some(150));
    assert_eq!(seeded[0][1], klines::warehouse::Value::Bool(true));
    assert_eq!(seeded[0][2].as_millis(), Some(ms("2024-01-01")));

    // A second build with nothing new leaves every table as it was; append adds nothing.
    let before = wh.query(&p, &format!("SELECT count(*) FROM {schema}.appended"));
    p.ok(&["build"]);
    assert_eq!(
        wh.query(&p, &format!("SELECT count(*) FROM {schema}.appended")),
        before
    );
    // New seed rows: the incremental model appends only them; the table is rebuilt.
    let mut csv = std::fs::read_to_string(p.path().join("seeds/prices.csv")).unwrap();
    csv.push_str("B,2024-01-03T00:00:00Z,1,true\n");
    std::fs::write(p.path().join("seeds/prices.csv"), csv).unwrap();
    p.ok(&["seed"]);
    let out = p.ok(&["run", "-s", "appended", "totals"]);
    assert!(out.contains("inserted 1 rows"), "{out}");
    assert_eq!(
        wh.query(&p, &format!("SELECT count(*) FROM {schema}.appended"))[0][0].as_i64(),
        Some(4)
    );
    assert_eq!(
        wh.query(
            &p,
            &format!("SELECT n FROM {schema}.totals WHERE symbol = 'B'")
        )[0][0]
            .as_i64(),
        Some(2)
    );
    // A materialization change replaces the relation.
    write(
        p.path(),
        "models/marts/totals.sql",
        "{{ config(materialized='view') }}\nselect symbol, sum(double_price) as total, count(*) as n from {{ ref('doubled') }} group by symbol\n",
    );
    p.ok(&["run", "-s", "totals"]);
    let w = wh.connect(&p);
    assert_eq!(
        rt.block_on(w.relation(schema, "totals")).unwrap(),
        Some(RelationType::View)
    );
}

#[test]
fn every_materialization_works_on_duckdb() {
    materializations(Wh::DuckDb);
}

#[test]
fn every_materialization_works_on_postgres() {
    materializations(Wh::postgres());
}

#[test]
fn build_skips_the_dependants_of_a_failing_test() {
    let p = project();
    write(
        p.path(),
        "models/marts/child.sql",
        "select * from {{ ref('totals') }}\n",
    );
    // totals.symbol is never 'Z': make accepted_values fail.
    let yml = std::fs::read_to_string(p.path().join("models/schema.yml"))
        .unwrap()
        .replace("values: [A, B]", "values: [A]");
    std::fs::write(p.path().join("models/schema.yml"), yml).unwrap();
    let out = p.run(&["build"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(
        s.contains("FAIL  test accepted_values_totals_symbol__A") && s.contains("Got 1 result"),
        "{s}"
    );
    assert!(
        s.contains("SKIP  view model child")
            && s.contains("upstream accepted_values_totals_symbol__A did not succeed"),
        "{s}"
    );
    assert!(s.contains("OK    incremental model appended"), "{s}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/run_results.json")).unwrap())
            .unwrap();
    let statuses: Vec<&str> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"fail") && statuses.contains(&"skipped"),
        "{statuses:?}"
    );
}

/// dbt's `warn_if` / `error_if`: one bad row warns under `error_if: ">1"`, fails under
/// `error_if: ">0"`, passes under `warn_if: ">5"` with severity warn; `store_failures` keeps
/// the failing rows in `<schema>_dbt_test__audit.<test>`; a bad threshold is a parse error
/// naming it.
#[test]
fn test_thresholds_choose_pass_warn_or_fail() {
    let p = project();
    p.ok(&["seed"]);
    p.ok(&["run"]);
    let schema = |config: &str| {
        let yml = std::fs::read_to_string(p.path().join("models/schema.yml"))
            .unwrap()
            .replace(
                "{accepted_values: {values: [A, B]}}",
                &format!("{{accepted_values: {{values: [A], config: {config}}}}}"),
            );
        std::fs::write(p.path().join("models/schema.yml"), yml).unwrap();
    };
    // One row (B) is not accepted.
    schema("{warn_if: \">0\", error_if: \">1\"}");
    let out = p.run(&["test"]);
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s}{}", stderr(&out));
    assert!(
        s.contains("WARN") && s.contains("Got 1 result, configured to warn if > 0"),
        "{s}"
    );

    let original = std::fs::read_to_string(p.path().join("models/schema.yml")).unwrap();
    std::fs::write(
        p.path().join("models/schema.yml"),
        original.replace("error_if: \">1\"", "error_if: \">0\""),
    )
    .unwrap();
    let out = p.run(&["test"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("Got 1 result, configured to fail if > 0"),
        "{}",
        stdout(&out)
    );

    std::fs::write(
        p.path().join("models/schema.yml"),
        original.replace(
            "{warn_if: \">0\", error_if: \">1\"}",
            "{severity: warn, warn_if: \">5\"}",
        ),
    )
    .unwrap();
    let out = p.run(&["test"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("PASS (1 result, within the thresholds)"),
        "{}",
        stdout(&out)
    );

    // store_failures keeps the failing rows for inspection, replaced on each run.
    std::fs::write(
        p.path().join("models/schema.yml"),
        original.replace(
            "error_if: \">1\"}",
            "error_if: \">1\", store_failures: true}",
        ),
    )
    .unwrap();
    let out = p.run(&["test"]);
    assert!(stdout(&out).contains("failing rows in"), "{}", stdout(&out));
    p.run(&["test"]);
    let rows = Wh::DuckDb.query(
        &p,
        "SELECT * FROM main_dbt_test__audit.accepted_values_totals_symbol__A",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].iter().any(|v| v.as_str() == Some("B")), "{rows:?}");

    std::fs::write(
        p.path().join("models/schema.yml"),
        original.replace("error_if: \">1\"", "error_if: \"more than 1\""),
    )
    .unwrap();
    let out = p.run(&["test"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("error_if must be a comparison"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn independent_models_run_in_parallel_up_to_threads() {
    let db = PgDb::create();
    let p = project();
    p.profiles("pg", &db.output_yaml("pg"));
    for name in ["slow_a", "slow_b"] {
        write(
            p.path(),
            &format!("models/{name}.sql"),
            "{{ config(materialized='table') }}\nselect 1 as x from (select pg_sleep(1)) as s\n",
        );
    }
    p.ok(&["run", "-s", "slow_a", "slow_b", "--threads", "2"]);
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/run_results.json")).unwrap())
            .unwrap();
    let r = results["results"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    let t = |i: usize, k: &str| {
        chrono::DateTime::parse_from_rfc3339(r[i]["timing"][0][k].as_str().unwrap()).unwrap()
    };
    assert_ne!(r[0]["thread_id"], r[1]["thread_id"]);
    assert!(
        t(0, "started_at") < t(1, "completed_at") && t(1, "started_at") < t(0, "completed_at"),
        "the two builds did not overlap: {r:?}"
    );
    p.ok(&["run", "-s", "slow_a", "slow_b", "--threads", "1"]);
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/run_results.json")).unwrap())
            .unwrap();
    let r = results["results"].as_array().unwrap();
    let t = |i: usize, k: &str| {
        chrono::DateTime::parse_from_rfc3339(r[i]["timing"][0][k].as_str().unwrap()).unwrap()
    };
    assert!(
        t(1, "started_at") >= t(0, "completed_at"),
        "one thread ran two builds at once"
    );
}

/// Eight models at once into a schema that does not exist yet: on Postgres two concurrent
/// `CREATE SCHEMA IF NOT EXISTS` can collide (a unique violation), so the runner creates the
/// run's schemas before it starts the models.
#[test]
fn parallel_models_into_a_new_schema_all_build() {
    let db = PgDb::create();
    let p = project();
    p.profiles("pg", &db.output_yaml("pg"));
    for i in 0..8 {
        write(
            p.path(),
            &format!("models/m{i}.sql"),
            &format!("{{{{ config(materialized='table', schema='fresh') }}}}\nselect {i} as x\n"),
        );
    }
    let sel: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let mut args = vec!["run", "--threads", "8", "-s"];
    args.extend(sel.iter().map(String::as_str));
    let out = p.ok(&args);
    assert!(out.contains("8 ok"), "{out}");
}

#[test]
fn a_table_swap_never_shows_readers_a_missing_or_partial_table() {
    let db = PgDb::create();
    let p = project();
    p.profiles("pg", &db.output_yaml("pg"));
    write(
        p.path(),
        "models/big.sql",
        "{{ config(materialized='table') }}\nselect g as n from generate_series(1, {{ var('n') }}) as g cross join (select pg_sleep(0.3)) as s\n",
    );
    p.ok(&["run", "-s", "big", "--vars", "{n: 1000}"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = std::sync::Arc::clone(&stop);
        let out = db.output();
        std::thread::spawn(move || {
            let rt = runtime();
            rt.block_on(async {
                let w = klines::warehouse::postgres::Postgres::connect(&out)
                    .await
                    .unwrap();
                use klines::warehouse::Warehouse;
                let mut seen = std::collections::BTreeSet::new();
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let n = w
                        .query("SELECT count(*) FROM analytics.big")
                        .await
                        .map(|r| r.scalar().and_then(|v| v.as_i64()));
                    seen.insert(format!("{n:?}"));
                    reads += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (seen, reads)
            })
        })
    };
    for n in [2000, 1000, 3000] {
        p.ok(&["run", "-s", "big", "--vars", &format!("{{n: {n}}}")]);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (seen, reads) = reader.join().unwrap();
    assert!(reads > 20, "{reads}");
    let allowed = ["Ok(Some(1000))", "Ok(Some(2000))", "Ok(Some(3000))"];
    assert!(
        seen.iter().all(|s| allowed.contains(&s.as_str())),
        "a reader saw {seen:?}"
    );
    assert!(seen.len() >= 2, "{seen:?}");
}

#[test]
fn artifacts_parse_with_dbts_own_schemas() {
    let p = project();
    p.ok(&["build"]);
    let target = p.path().join("target");
    let script = r#"
import json, sys
from dbt_artifacts_parser.parser import parse_manifest, parse_run_results
m = parse_manifest(json.load(open(sys.argv[1] + '/manifest.json')))
r = parse_run_results(json.load(open(sys.argv[1] + '/run_results.json')))
assert type(m).__name__ == 'ManifestV12', type(m)
assert type(r).__name__ == 'RunResultsV6', type(r)
node = m.nodes['model.klines.totals']
assert node.depends_on.nodes == ['model.klines.doubled'], node.depends_on
assert m.parent_map['model.klines.totals'] == ['model.klines.doubled']
assert 'model.klines.totals' in m.child_map['model.klines.doubled']
res = {x.unique_id: x for x in r.results}
t = res['model.klines.totals']
assert t.status.value == 'success' and t.adapter_response['rows_affected'] == 2 and t.relation_name == '"main"."totals"'
assert 'WITH __klines_cte__doubled' in t.compiled_code
assert t.timing[0].name == 'execute' and t.execution_time >= 0
print(len(m.nodes), len(r.results))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&target)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).trim(), "10 9");
}

/// `store_failures` on the other warehouses: the failing rows in
/// `<schema>_dbt_test__audit.<test>` (lower case on Postgres, upper case on Snowflake), replaced
/// on every run.
fn store_failures_on(wh: &str) {
    let p = project();
    let pg = (wh == "postgres").then(Wh::postgres);
    let sf = (wh != "postgres").then(FakeSnow::create);
    let schema = match (&pg, &sf) {
        (Some(Wh::Postgres(db)), _) => {
            p.profiles("pg", &db.output_yaml("pg"));
            "analytics_dbt_test__audit"
        }
        (_, Some(sf)) => {
            p.profiles("sf", &sf.output_yaml("sf", None));
            "ANALYTICS_DBT_TEST__AUDIT"
        }
        _ => unreachable!(),
    };
    let query = |sql: &str| -> Vec<Vec<klines::warehouse::Value>> {
        if let Some(pg) = &pg {
            return pg.query(&p, sql);
        }
        let cfg = sf.as_ref().unwrap().output(None);
        runtime().block_on(async {
            let w = klines::warehouse::snowflake::Snowflake::connect(&cfg)
                .await
                .unwrap();
            klines::warehouse::Warehouse::query(&w, sql)
                .await
                .unwrap()
                .rows
        })
    };
    p.ok(&["seed"]);
    p.ok(&["run"]);
    let yml = std::fs::read_to_string(p.path().join("models/schema.yml"))
        .unwrap()
        .replace(
            "{accepted_values: {values: [A, B]}}",
            "{accepted_values: {values: [A], config: {severity: warn, store_failures: true}}}",
        );
    std::fs::write(p.path().join("models/schema.yml"), yml).unwrap();
    for _ in 0..2 {
        let out = p.run(&["test"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stdout(&out).contains("failing rows in"), "{}", stdout(&out));
    }
    let rows = query(&format!(
        "SELECT * FROM {schema}.accepted_values_totals_symbol__A"
    ));
    assert_eq!(rows.len(), 1, "replaced, not appended: {rows:?}");
    assert!(rows[0].iter().any(|v| v.as_str() == Some("B")), "{rows:?}");
}

#[test]
fn store_failures_keeps_failing_rows_on_postgres() {
    store_failures_on("postgres");
}

#[test]
fn store_failures_keeps_failing_rows_on_snowflake() {
    store_failures_on("snowflake");
}
