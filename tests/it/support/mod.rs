//! Shared test support: the test exchange, temporary projects, the klines binary, servers.

#![allow(dead_code)]

pub mod coinbase;
pub mod exchange;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use klines::datasets::klines::{Kline, KlineBatch};
use klines::warehouse::{Value, Warehouse};

pub use exchange::{Clock, Config as ExchangeConfig, Fault, TestExchange, WsFault};

/// A current-thread Tokio runtime, for calling the async library from a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Epoch ms of an RFC 3339 time or a date.
pub fn ms(s: &str) -> i64 {
    klines::time::parse("test time", s, 0).unwrap_or_else(|e| panic!("{e}"))
}

/// A server the tests need, from the environment `scripts/test` sets up. Missing means the
/// test fails: it does not skip.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with scripts/test, which starts the servers they need"
        )
    })
}

/// A temporary klines project pointed at a test exchange.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A project whose klines.yml points at `exchange_url`, with quick retries, plus `extra`
    /// YAML lines.
    pub fn new(exchange_url: &str, extra: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let yml = format!(
            "symbols: [BTCUSDT]\nintervals: [1m]\nstart: 2024-01-01\nexchange:\n  base_url: {exchange_url}\n  archive_url: {exchange_url}\n  retry_base_ms: 5\n  retry_max_ms: 50\n  max_attempts: 6\n{extra}"
        );
        std::fs::write(dir.path().join("klines.yml"), yml).expect("write klines.yml");
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The klines binary, run in this project with no inherited log settings.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_klines"));
        c.current_dir(self.path())
            .env_remove("KLINES_LOG")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1");
        for var in [
            "KLINES_STAGE",
            "KLINES_STATE",
            "KLINES_BASE_URL",
            "KLINES_ARCHIVE_URL",
            "KLINES_EXCHANGE",
            "KLINES_TARGET",
            "KLINES_PROFILES_DIR",
        ] {
            c.env_remove(var);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run klines")
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "klines {} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stage_dir(&self) -> PathBuf {
        self.path().join("stage")
    }
}

/// Every file below `dir` with its bytes, by relative path.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// The staged Parquet files below `dir`, by relative path.
pub fn parquet_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files(dir)
        .into_iter()
        .filter(|(k, _)| k.ends_with(".parquet") && !k.starts_with('_'))
        .collect()
}

/// All staged klines by (symbol, interval, open time), files read in name order with
/// complete-day files last, as the loader's "newest wins" would resolve them.
pub fn staged_klines(dir: &Path) -> BTreeMap<(String, String, i64), Kline> {
    let mut out = BTreeMap::new();
    for (name, bytes) in parquet_files(dir) {
        let d = klines::stage::parquet::decode(&name, bytes.into()).unwrap();
        let s = d.series.expect("a series");
        for k in d.klines.iter() {
            out.insert(
                (s.symbol.to_string(), s.interval.to_string(), k.open_time),
                k,
            );
        }
    }
    out
}

/// The closed klines the exchange has for `symbol` in `[from, to)` at its current time.
pub fn expected(
    exchange: &TestExchange,
    symbol: &str,
    interval: &str,
    from: i64,
    to: i64,
) -> Vec<Kline> {
    let now = exchange.now();
    let iv: klines::market::Interval = interval.parse().unwrap();
    exchange
        .market()
        .klines(symbol, iv, from, to, now, usize::MAX)
        .into_iter()
        .filter(|k| k.close_time < now)
        .collect()
}

/// Asserts the staged klines of `symbol` equal `want`, naming the first difference.
pub fn assert_staged(dir: &Path, symbol: &str, interval: &str, want: &[Kline]) {
    let staged = staged_klines(dir);
    let got: Vec<&Kline> = staged
        .iter()
        .filter(|((s, i, _), _)| s == symbol && i == interval)
        .map(|(_, k)| k)
        .collect();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(*g, w, "{symbol} {interval}: row {i} differs");
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{symbol} {interval}: staged {} rows, expected {}",
        got.len(),
        want.len()
    );
}

pub fn batch(rows: &[Kline]) -> KlineBatch {
    let mut b = KlineBatch::default();
    for k in rows {
        b.push(k);
    }
    b
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Reads `n` from "... <n> <word> ..." in a summary line.
pub fn summary_number(summary: &str, word: &str) -> u64 {
    let words: Vec<&str> = summary
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    let i = words
        .iter()
        .position(|w| *w == word)
        .unwrap_or_else(|| panic!("no {word:?} in {summary:?}"));
    words[i - 1]
        .parse()
        .unwrap_or_else(|_| panic!("no number before {word:?} in {summary:?}"))
}

/// A fresh PostgreSQL database on the test server, dropped at the end.
pub struct PgDb {
    pub name: String,
}

fn pg_admin_config() -> tokio_postgres::Config {
    let conn = required_env("KLINES_TEST_PG");
    let mut c: tokio_postgres::Config = conn
        .parse()
        .unwrap_or_else(|e| panic!("KLINES_TEST_PG {conn:?}: {e}"));
    c.dbname("postgres");
    c
}

fn pg_admin(sql: &str) {
    // On a thread of its own: callers may be inside a runtime already.
    let sql = sql.to_string();
    std::thread::spawn(move || pg_admin_blocking(&sql))
        .join()
        .unwrap();
}

fn pg_admin_blocking(sql: &str) {
    pg_batch_blocking(pg_admin_config(), sql)
}

fn pg_batch_blocking(config: tokio_postgres::Config, sql: &str) {
    let rt = runtime();
    rt.block_on(async {
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot reach the test PostgreSQL server (KLINES_TEST_PG): {e}")
            });
        let task = tokio::spawn(conn);
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        drop(client);
        let _ = task.await;
    });
}

impl PgDb {
    pub fn create() -> PgDb {
        let name = format!("klines_test_{}", uuid::Uuid::new_v4().simple());
        pg_admin(&format!("CREATE DATABASE {name}"));
        PgDb { name }
    }

    /// Runs `sql` (any number of statements) in this database.
    pub fn batch(&self, sql: &str) {
        let mut config = pg_admin_config();
        config.dbname(&self.name);
        let sql = sql.to_string();
        std::thread::spawn(move || pg_batch_blocking(config, &sql))
            .join()
            .unwrap();
    }

    /// The connection fields of the test server.
    pub fn fields(&self) -> (String, u16, String) {
        let c = pg_admin_config();
        let host = match c.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        (
            host,
            c.get_ports().first().copied().unwrap_or(5432),
            c.get_user().unwrap_or("postgres").to_string(),
        )
    }

    /// A postgres output for profiles.yml, indented for `outputs:`.
    pub fn output_yaml(&self, name: &str) -> String {
        let (host, port, user) = self.fields();
        format!(
            "    {name}:\n      type: postgres\n      host: {host}\n      port: {port}\n      user: {user}\n      dbname: {}\n      schema: analytics\n      sslmode: disable\n",
            self.name
        )
    }

    pub fn output(&self) -> klines::config::profiles::PostgresOutput {
        let (host, port, user) = self.fields();
        let yaml = format!(
            "host: {host}\nport: {port}\nuser: {user}\ndbname: {}\nschema: analytics\nsslmode: disable\n",
            self.name
        );
        yaml_serde::from_str(&yaml).unwrap()
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        pg_admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

impl Project {
    /// Writes profiles.yml with the profile `klines` and these outputs (YAML under
    /// `outputs:`), the first being the default target.
    pub fn profiles(&self, target: &str, outputs: &str) {
        std::fs::write(
            self.path().join("profiles.yml"),
            format!("klines:\n  target: {target}\n  outputs:\n{outputs}"),
        )
        .unwrap();
    }
}

/// A DuckDB output for profiles.yml, indented for `outputs:`.
pub fn duckdb_output_yaml(name: &str, path: &str) -> String {
    format!("    {name}:\n      type: duckdb\n      path: {path}\n")
}

/// A fresh database on the test Snowflake (fakesnow), which reads S3 from the test SeaweedFS.
pub struct FakeSnow {
    pub database: String,
}

impl FakeSnow {
    pub fn url() -> String {
        required_env("KLINES_TEST_FAKESNOW")
    }

    pub fn create() -> FakeSnow {
        let database = format!(
            "KLINES_TEST_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
        .to_uppercase();
        let db = database.clone();
        std::thread::spawn(move || {
            let rt = runtime();
            rt.block_on(async {
                use klines::warehouse::snowflake::session::{Auth, LoginSpec, Session};
                let spec = std::sync::Arc::new(LoginSpec {
                    base_url: FakeSnow::url(),
                    account: "klines".into(),
                    user: "tester".into(),
                    auth: Auth::Password(klines::redact::Secret::new("unused")),
                    role: None,
                    warehouse: None,
                    database: None,
                    schema: None,
                    query_timeout: std::time::Duration::from_secs(60),
                });
                let mut s = Session::login(reqwest::Client::new(), spec)
                    .await
                    .expect("log in to fakesnow");
                s.query(&format!("CREATE DATABASE IF NOT EXISTS {db}"), &[])
                    .await
                    .expect("create database");
            });
        })
        .join()
        .unwrap();
        FakeSnow { database }
    }

    /// A snowflake output for profiles.yml (under `outputs:`), reading `stage_url` through an
    /// external stage when given.
    pub fn output_yaml(&self, name: &str, stage: Option<&str>) -> String {
        let mut y = format!(
            "    {name}:\n      type: snowflake\n      account: klines\n      host: {}\n      user: tester\n      password: unused\n      database: {}\n      schema: ANALYTICS\n      raw_schema: RAW\n      threads: 2\n",
            FakeSnow::url(),
            self.database
        );
        if let Some(s) = stage {
            y.push_str(&format!("      stage: {s}\n"));
        }
        y
    }

    pub fn output(&self, stage: Option<&str>) -> klines::config::profiles::SnowflakeOutput {
        let yaml: String = self
            .output_yaml("x", stage)
            .lines()
            .skip(2)
            .map(|l| format!("{}\n", l.trim_start()))
            .collect();
        yaml_serde::from_str(&yaml).unwrap()
    }

    /// Creates `RAW.KLINES_STAGE` over `s3_url` and returns its name.
    pub fn external_stage(&self, s3_url: &str) -> String {
        let name = format!("{}.RAW.KLINES_STAGE", self.database);
        let out = self.output(None);
        let sql = vec![
            format!("CREATE SCHEMA IF NOT EXISTS {}.RAW", self.database),
            format!(
                "CREATE OR REPLACE STAGE {name} URL = '{}/'",
                s3_url.trim_end_matches('/')
            ),
        ];
        std::thread::spawn(move || {
            let rt = runtime();
            rt.block_on(async {
                let sf = klines::warehouse::snowflake::Snowflake::connect(&out)
                    .await
                    .unwrap();
                for s in sql {
                    sf.run(&s, &[])
                        .await
                        .unwrap_or_else(|e| panic!("{s}: {e:#}"));
                }
            });
        })
        .join()
        .unwrap();
        name
    }
}

/// The warehouse a test loads into and builds models in: the default DuckDB file
/// (`./klines.duckdb`, no profiles.yml at all), or a fresh database on the real Postgres server.
pub enum Wh {
    DuckDb,
    Postgres(PgDb),
}

impl Wh {
    pub fn postgres() -> Wh {
        Wh::Postgres(PgDb::create())
    }

    pub fn setup(&self, p: &Project) {
        match self {
            Wh::DuckDb => {}
            Wh::Postgres(db) => p.profiles("pg", &db.output_yaml("pg")),
        }
    }

    /// The schema models are built in.
    pub fn schema(&self) -> &'static str {
        match self {
            Wh::DuckDb => "main",
            Wh::Postgres(_) => "analytics",
        }
    }

    pub fn connect(&self, p: &Project) -> Arc<dyn Warehouse> {
        let rt = runtime();
        rt.block_on(async {
            match self {
                Wh::DuckDb => Arc::new(
                    klines::warehouse::duckdb::DuckDb::open(
                        p.path().join("klines.duckdb").to_str().unwrap(),
                        1,
                        &Default::default(),
                    )
                    .await
                    .unwrap(),
                ) as Arc<dyn Warehouse>,
                Wh::Postgres(db) => Arc::new(
                    klines::warehouse::postgres::Postgres::connect(&db.output())
                        .await
                        .unwrap(),
                ) as Arc<dyn Warehouse>,
            }
        })
    }

    pub fn query(&self, p: &Project, sql: &str) -> Vec<Vec<Value>> {
        let w = self.connect(p);
        let rt = runtime();
        rt.block_on(w.query(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e:#}"))
            .rows
    }
}
