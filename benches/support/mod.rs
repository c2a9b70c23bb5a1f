//! What the benchmarks share: synthetic klines staged as a backfill stages them.

pub mod child;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use klines::datasets::klines::{Kline, KlineBatch};
use klines::market::Series;
use klines::market::{Interval, Market, Symbol};
use klines::stage::layout;
use klines::stage::manifest::{self, ManifestEntry};
use klines::stage::{Stage, parquet};

use crate::data;

pub const DAY: i64 = 86_400_000;

/// The test exchange's synthetic BTCUSDT 1m klines, staged as day files with their manifest
/// entries in a local stage.
pub struct DayStager {
    market: data::Market,
    series: Series,
    stage: Stage,
    rt: tokio::runtime::Runtime,
}

impl DayStager {
    /// A stager for the stage `stage/` under `dir`.
    pub fn open(dir: &Path) -> DayStager {
        Self::for_symbol(dir, data::Market::synthetic(), "BTCUSDT")
    }

    /// A stager of `symbol` of `market` (the test exchange's synthetic markets).
    pub fn for_symbol(dir: &Path, market: data::Market, symbol: &str) -> DayStager {
        DayStager {
            market,
            series: Series {
                exchange: klines::market::Exchange::BINANCE,
                market: Market::Spot,
                symbol: Symbol::parse(symbol).unwrap(),
                interval: Interval::M1,
            },
            stage: Stage::open("stage", &BTreeMap::new(), dir).unwrap(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// The klines of the UTC day that starts at `day`.
    pub fn minutes(&self, day: i64) -> Vec<Kline> {
        self.market
            .minutes(self.series.symbol.as_str(), day, day + DAY, usize::MAX)
    }

    /// Stages `klines` as the complete day file of `day`, with its manifest entry.
    pub fn stage(&self, day: i64, klines: &[Kline]) {
        let mut batch = KlineBatch::default();
        klines.iter().for_each(|k| batch.push(k));
        let bytes = parquet::encode(&self.series, batch).unwrap();
        let path = layout::data_key(&self.series, (day, day + DAY), day, day + DAY);
        let entry = ManifestEntry::new(
            &self.series,
            path.clone(),
            (day, day + DAY),
            true,
            klines.len(),
            &bytes,
        );
        self.rt.block_on(async {
            self.stage.put(&path, bytes).await.unwrap();
            manifest::write(&self.stage, &entry).await.unwrap();
        });
    }
}

/// A temporary project with the repository's models, macros and seeds, and `profiles` as its
/// profiles.yml (none: embedded DuckDB).
#[allow(dead_code)]
pub fn project(profiles: Option<String>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["models", "macros", "seeds"] {
        copy_dir(&root.join(sub), &dir.path().join(sub));
    }
    if let Some(p) = profiles {
        std::fs::write(dir.path().join("profiles.yml"), p).unwrap();
    }
    dir
}

/// Copies a folder tree (the project's models and macros into a benchmark's project).
#[allow(dead_code)]
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A fresh Postgres database for the benchmark, as a profiles.yml, and what drops it.
#[allow(dead_code)]
pub fn postgres_profile(bench: &str) -> (String, impl FnOnce()) {
    let conn = std::env::var("KLINES_TEST_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres".into());
    let field = |name: &str, default: &str| {
        conn.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
            .unwrap_or_else(|| default.to_string())
    };
    let (host, port, user) = (
        field("host", "127.0.0.1"),
        field("port", "5432"),
        field("user", "postgres"),
    );
    let db = format!("klines_{bench}_bench_{}", std::process::id());
    let profile = format!(
        "klines:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n      host: {host}\n      port: {port}\n      user: {user}\n      dbname: {db}\n      sslmode: disable\n"
    );
    let psql = move |sql: &str| {
        let st = Command::new("psql")
            .args([
                "-X", "-q", "-h", &host, "-p", &port, "-U", &user, "-d", "postgres", "-c", sql,
            ])
            .status()
            .expect("psql");
        assert!(st.success(), "psql failed: {sql}");
    };
    psql(&format!("DROP DATABASE IF EXISTS {db}"));
    psql(&format!("CREATE DATABASE {db}"));
    (profile, move || {
        psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
    })
}

/// Runs the klines binary quietly in `dir`; asserts success; wall seconds and stdout.
#[allow(dead_code)]
pub fn klines(dir: &Path, args: &[&str]) -> (f64, String) {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_klines"))
        .args(args)
        .arg("-q")
        .current_dir(dir)
        .output()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "klines {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (secs, String::from_utf8_lossy(&out.stdout).into_owned())
}
