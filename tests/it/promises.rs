//! README promises that had no test of their own: selectors on the project's real graph,
//! `delete+insert`, `accepted_range`, where profiles.yml is found, the `KLINES_*` layer,
//! Postgres TLS, every interval end to end, USD-M paging, and "a 4xx is not retried".

use std::path::Path;

use crate::models::with_repo_models;
use crate::support::*;

const NOW: &str = "2024-01-05T13:37:30Z";

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// `klines ls --resource-type model --output name` with these selector arguments.
fn models(p: &Project, args: &[&str]) -> Vec<String> {
    let mut all = vec!["ls", "--resource-type", "model", "--output", "name"];
    all.extend(args);
    p.ok(&all).lines().map(str::to_string).collect()
}

#[test]
fn selectors_and_graph_operators_on_the_projects_own_models() {
    let p = Project::new("http://127.0.0.1:9", "");
    with_repo_models(&p);
    let ohlc = [
        "TRADES_OHLC_1M",
        "TRADES_OHLC_5M",
        "TRADES_OHLC_15M",
        "TRADES_OHLC_1D",
        "TRADES_OHLC_1H",
    ];
    // Downstream of the raw klines: the candles, and the indicators and flow metrics of each.
    let mut everything = models(&p, &["-s", "source:binance.klines+"]);
    everything.sort();
    let mut want: Vec<String> = ohlc
        .iter()
        .flat_map(|m| {
            [
                m.to_string(),
                m.replace("TRADES_OHLC", "INDICATORS"),
                m.replace("TRADES_OHLC", "FLOW"),
            ]
        })
        .collect();
    want.sort();
    assert_eq!(everything, want);
    let only_ohlc = ["--exclude", "tag:indicators", "tag:flow"];
    let with = |args: &[&str]| models(&p, &[args, &only_ohlc[..]].concat());
    assert_eq!(with(&["-s", "source:binance+"]), ohlc);
    assert_eq!(models(&p, &["-s", "path:models/ohlc"]), ohlc);
    assert_eq!(models(&p, &["-s", "tag:indicators"]).len(), 5);
    assert_eq!(
        models(&p, &["models/ohlc/TRADES_OHLC_5M.sql"]),
        ["TRADES_OHLC_5M"]
    );
    assert_eq!(models(&p, &["+TRADES_OHLC_15M"]), &ohlc[..3]);
    assert_eq!(with(&["TRADES_OHLC_5M+"]), &ohlc[1..]);
    assert_eq!(models(&p, &["2+TRADES_OHLC_1D"]), &ohlc[1..4]);
    assert_eq!(
        models(&p, &["TRADES_OHLC_1M+1"]),
        [
            "TRADES_OHLC_1M",
            "FLOW_1M",
            "INDICATORS_1M",
            "TRADES_OHLC_5M"
        ]
    );
    assert_eq!(models(&p, &["tag:ohlc,+TRADES_OHLC_5M"]), &ohlc[..2]);
    assert_eq!(
        models(
            &p,
            &["tag:ohlc", "--exclude", "TRADES_OHLC_1D", "TRADES_OHLC_1M"]
        ),
        ["TRADES_OHLC_5M", "TRADES_OHLC_15M", "TRADES_OHLC_1H"]
    );
    // Sources and tests by selector too.
    let sources = p.ok(&["ls", "-s", "source:binance", "--resource-type", "source"]);
    assert_eq!(
        sources.lines().collect::<Vec<_>>(),
        [
            "source:binance.klines",
            "source:binance.klines_load_history"
        ]
    );
    // As in dbt, a model's tests come with it (indirect selection, eager by default); with
    // `--indirect-selection empty` the model selector takes the model alone.
    let tests = p.ok(&[
        "ls",
        "-s",
        "TRADES_OHLC_5M",
        "--resource-type",
        "test",
        "-o",
        "name",
    ]);
    let names: Vec<&str> = tests.lines().collect();
    assert!(
        names.contains(&"not_null_TRADES_OHLC_5M_open")
            && names.contains(&"ohlc_buckets_hold_at_most_their_minutes")
            && names
                .iter()
                .all(|t| t.contains("TRADES_OHLC_5M")
                    || *t == "ohlc_buckets_hold_at_most_their_minutes"),
        "a model selector takes the tests on it (the singular one refs it too): {tests}"
    );
    let tests = p.ok(&[
        "ls",
        "-s",
        "TRADES_OHLC_5M",
        "--resource-type",
        "test",
        "-o",
        "name",
        "--indirect-selection",
        "empty",
    ]);
    assert!(
        tests.lines().count() == 0,
        "empty: the model alone: {tests}"
    );
    let tests = p.ok(&[
        "ls",
        "-s",
        "test_name:not_null,TRADES_OHLC_5M+",
        "-o",
        "name",
    ]);
    assert!(
        tests
            .lines()
            .any(|t| t.starts_with("not_null_TRADES_OHLC_5M_")),
        "{tests}"
    );
}

fn delete_insert(wh: Wh) {
    let p = Project::new("http://127.0.0.1:9", "");
    wh.setup(&p);
    let r = p.path();
    write(r, "seeds/prices.csv", "symbol,price\nA,1.50\nB,2.00\n");
    write(
        r,
        "models/latest.sql",
        "{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='symbol') }}\nselect symbol, price from {{ ref('prices') }}\n",
    );
    p.ok(&["seed"]);
    p.ok(&["run"]);
    write(r, "seeds/prices.csv", "symbol,price\nA,3.25\nC,4.00\n");
    p.ok(&["seed", "--full-refresh"]);
    p.ok(&["run"]);
    let rows = wh.query(
        &p,
        &format!(
            "SELECT symbol, price FROM {}.latest ORDER BY symbol",
            wh.schema()
        ),
    );
    let got: Vec<(String, i128)> = rows
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].to_scaled(2).unwrap(),
            )
        })
        .collect();
    // A replaced, B kept (not in the new batch), C added; nothing twice.
    assert_eq!(
        got,
        [("A".into(), 325), ("B".into(), 200), ("C".into(), 400)]
    );
}

#[test]
fn delete_insert_replaces_rows_by_unique_key_on_duckdb() {
    delete_insert(Wh::DuckDb);
}

#[test]
fn delete_insert_replaces_rows_by_unique_key_on_postgres() {
    delete_insert(Wh::postgres());
}

#[test]
fn accepted_range_passes_and_fails() {
    let p = Project::new("http://127.0.0.1:9", "");
    let r = p.path();
    write(r, "seeds/prices.csv", "symbol,price\nA,1.5\nB,20\n");
    write(
        r,
        "seeds/schema.yml",
        "version: 2\nseeds:\n  - name: prices\n    columns:\n      - name: price\n        data_tests:\n          - accepted_range: {min_value: 0, max_value: 100}\n",
    );
    p.ok(&["seed"]);
    let out = p.ok(&["test"]);
    assert!(
        out.contains("PASS") && out.contains("accepted_range"),
        "{out}"
    );
    write(
        r,
        "seeds/schema.yml",
        "version: 2\nseeds:\n  - name: prices\n    columns:\n      - name: price\n        data_tests:\n          - accepted_range: {min_value: 2, max_value: 10}\n",
    );
    let out = p.run(&["test"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("FAIL") && stdout(&out).contains("2"),
        "{}",
        stdout(&out)
    );
}

/// profiles.yml from `--profiles-dir`, else the project, else `~/.klines/`; `--target` and
/// `KLINES_TARGET` pick the output.
#[test]
fn profiles_are_found_where_the_readme_says() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new(&ex.url, "");
    p.ok(&["backfill", "--from", "2024-01-04", "--to", "2024-01-05"]);
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let profile = |path: &Path| {
        format!(
            "klines:\n  target: a\n  outputs:\n    a: {{type: duckdb, path: {}}}\n    b: {{type: duckdb, path: {}}}\n",
            path.join("a.duckdb").display(),
            path.join("b.duckdb").display()
        )
    };
    write(
        &home.path().join(".klines"),
        "profiles.yml",
        &profile(home.path()),
    );
    write(elsewhere.path(), "profiles.yml", &profile(elsewhere.path()));
    let load = |args: &[&str], envs: &[(&str, &str)]| {
        let mut c = p.cmd();
        c.env("HOME", home.path()).arg("load").args(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    // ~/.klines/ when the project has none.
    load(&[], &[]);
    assert!(home.path().join("a.duckdb").exists());
    // --profiles-dir wins, and --target picks an output.
    let dir = elsewhere.path().to_str().unwrap();
    load(&["--profiles-dir", dir, "--target", "b"], &[]);
    assert!(elsewhere.path().join("b.duckdb").exists());
    // The KLINES_* layer: environment variables for the same flags.
    load(&[], &[("KLINES_PROFILES_DIR", dir), ("KLINES_TARGET", "a")]);
    assert!(elsewhere.path().join("a.duckdb").exists());
    // The project's own profiles.yml comes before ~/.klines/.
    write(
        p.path(),
        "profiles.yml",
        "klines:\n  target: x\n  outputs:\n    x: {type: duckdb, path: mine.duckdb}\n",
    );
    load(&[], &[]);
    assert!(p.path().join("mine.duckdb").exists());
}

/// The `KLINES_*` environment sits between klines.yml and the flags.
#[test]
fn environment_overrides_the_file_and_flags_override_both() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new("http://127.0.0.1:9", "stage: from_file\n");
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = p.cmd();
        c.args(["backfill", "--from", "2024-01-04", "--to", "2024-01-05"])
            .args(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    run(
        &[("KLINES_BASE_URL", &ex.url), ("KLINES_STAGE", "from_env")],
        &[],
    );
    assert!(p.path().join("from_env").is_dir() && !p.path().join("from_file").exists());
    run(
        &[
            ("KLINES_BASE_URL", "http://127.0.0.1:9"),
            ("KLINES_STAGE", "from_env"),
        ],
        &[
            "--base-url",
            &ex.url,
            "--stage",
            "from_flag",
            "--state",
            "state2",
        ],
    );
    assert!(p.path().join("from_flag").is_dir());
}

/// What a connection reports about its own TLS.
fn ssl_in_use(db: &PgDb, host: &str, extra: &str) -> Result<bool, String> {
    let (_, port, user) = db.fields();
    let yaml = format!(
        "host: {host}\nport: {port}\nuser: {user}\ndbname: {}\n{extra}",
        db.name
    );
    let out: klines::config::profiles::PostgresOutput = yaml_serde::from_str(&yaml).unwrap();
    runtime().block_on(async {
        use klines::warehouse::Warehouse;
        let pg = klines::warehouse::postgres::Postgres::connect(&out)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let rows = pg
            .query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok(rows.scalar() == Some(&klines::warehouse::Value::Bool(true)))
    })
}

/// Postgres TLS against the machine's server (Debian's cluster serves its snakeoil
/// certificate for `localhost`): every sslmode does what the README says.
#[test]
fn postgres_tls_modes() {
    let cert = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
    assert!(
        Path::new(cert).is_file(),
        "{cert}: the test PostgreSQL server's certificate (Debian's ssl-cert) is missing"
    );
    let db = PgDb::create();
    assert_eq!(
        ssl_in_use(&db, "127.0.0.1", "sslmode: disable\n"),
        Ok(false)
    );
    assert_eq!(ssl_in_use(&db, "127.0.0.1", "sslmode: require\n"), Ok(true));
    assert_eq!(ssl_in_use(&db, "127.0.0.1", "sslmode: prefer\n"), Ok(true));
    assert_eq!(
        ssl_in_use(
            &db,
            "localhost",
            &format!("sslmode: verify-full\nsslrootcert: {cert}\n")
        ),
        Ok(true)
    );
    assert_eq!(
        ssl_in_use(
            &db,
            "127.0.0.1",
            &format!("sslmode: verify-ca\nsslrootcert: {cert}\n")
        ),
        Ok(true)
    );
    // The certificate names localhost, not 127.0.0.1; and no public CA signed it.
    let err = ssl_in_use(
        &db,
        "127.0.0.1",
        &format!("sslmode: verify-full\nsslrootcert: {cert}\n"),
    )
    .unwrap_err();
    assert!(err.contains("cannot connect"), "{err}");
    let err = ssl_in_use(&db, "localhost", "sslmode: verify-full\n").unwrap_err();
    assert!(err.contains("cannot connect"), "{err}");
}

/// 1s, 3m, 1w and 1M candles from the exchange into the warehouse, exactly.
#[test]
fn every_kind_of_interval_end_to_end() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    for (interval, from, to) in [
        ("1s", "2024-01-05T10:00:00Z", "2024-01-05T10:40:00Z"),
        ("3m", "2024-01-01", "2024-01-05"),
        ("1w", "2023-01-01", "2024-01-05"),
        ("1M", "2022-01-01", "2024-01-05"),
    ] {
        let p = Project::new(&ex.url, "");
        p.ok(&[
            "backfill",
            "--interval",
            interval,
            "--from",
            from,
            "--to",
            to,
        ]);
        let want = expected(&ex, "BTCUSDT", interval, ms(from), ms(to));
        assert!(!want.is_empty(), "{interval}");
        assert_staged(&p.stage_dir(), "BTCUSDT", interval, &want);
        p.ok(&["load"]);
        let conn = duckdb::Connection::open(p.path().join("klines.duckdb")).unwrap();
        let (n, sum): (i64, String) = conn
            .query_row(
                &format!("SELECT count(*), sum(volume)::varchar FROM raw.klines WHERE interval = '{interval}'"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(n as usize, want.len(), "{interval}");
        let want_sum: i128 = want.iter().map(|k| k.volume).sum();
        assert_eq!(
            klines::decimal::parse(&sum).unwrap(),
            want_sum,
            "{interval}: volumes exact"
        );
    }
}

/// USD-M futures come 499 a request, the cheapest weight per row.
#[test]
fn usdm_pages_499_rows_a_request() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new(&ex.url, "");
    let before = ex.stats().klines_requests;
    p.ok(&[
        "backfill",
        "--source",
        "rest",
        "--market",
        "usdm",
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-03",
    ]);
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-01-02"), ms("2024-01-03"));
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);
    let requests = ex.stats().klines_requests - before;
    // 1440 minutes (less outages) in pages of 499 minutes, plus the first-kline probe.
    assert_eq!(requests, 1440u64.div_ceil(499) + 1, "{requests} requests");
}

/// "Refusals (HTTP 4xx such as an invalid symbol) are not retried."
#[test]
fn a_4xx_is_not_retried() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let p = Project::new(&ex.url, "");
    // The first klines request (the first-kline probe) is refused.
    ex.inject([Fault::Status(400)]);
    let before = ex.stats().klines_requests;
    let out = p.run(&["backfill", "--from", "2024-01-04", "--to", "2024-01-05"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("400"), "{}", stderr(&out));
    assert_eq!(ex.stats().klines_requests - before, 1, "retried a 400");
}
