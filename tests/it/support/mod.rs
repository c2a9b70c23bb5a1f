//! Shared test support: the test exchange, temporary projects, the klines binary, servers.

#![allow(dead_code)]

pub mod exchange;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use klines::kline::{Kline, KlineBatch};

pub use exchange::{Clock, Config as ExchangeConfig, Fault, TestExchange};

/// Epoch ms of an RFC 3339 time or a date.
pub fn ms(s: &str) -> i64 {
    klines::time::parse("test time", s, 0).unwrap_or_else(|e| panic!("{e}"))
}

/// A server the tests need, from the environment `scripts/test` sets up. Missing means the
/// test fails: it does not skip.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test, which starts the servers they need")
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
            "symbols: [BTCUSDT]\nintervals: [1m]\nstart: 2024-01-01\nexchange:\n  base_url: {exchange_url}\n  retry_base_ms: 5\n  retry_max_ms: 50\n  max_attempts: 6\n{extra}"
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
        c.current_dir(self.path()).env_remove("KLINES_LOG").env_remove("RUST_LOG").env("NO_COLOR", "1");
        for var in ["KLINES_STAGE", "KLINES_STATE", "KLINES_BASE_URL", "KLINES_TARGET", "KLINES_PROFILES_DIR"] {
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
        let Ok(entries) = std::fs::read_dir(dir) else { return };
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
    files(dir).into_iter().filter(|(k, _)| k.ends_with(".parquet") && !k.starts_with('_')).collect()
}

/// All staged klines by (symbol, interval, open time), files read in name order with
/// complete-day files last, as the loader's "newest wins" would resolve them.
pub fn staged_klines(dir: &Path) -> BTreeMap<(String, String, i64), Kline> {
    let mut out = BTreeMap::new();
    for (name, bytes) in parquet_files(dir) {
        let d = klines::stage::parquet::decode(&name, bytes.into()).unwrap();
        let s = d.series.expect("a series");
        for k in d.klines.iter() {
            out.insert((s.symbol.to_string(), s.interval.to_string(), k.open_time), k);
        }
    }
    out
}

/// The closed klines the exchange has for `symbol` in `[from, to)` at its current time.
pub fn expected(exchange: &TestExchange, symbol: &str, interval: &str, from: i64, to: i64) -> Vec<Kline> {
    let now = exchange.now();
    let iv: klines::exchange::Interval = interval.parse().unwrap();
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
    let got: Vec<&Kline> =
        staged.iter().filter(|((s, i, _), _)| s == symbol && i == interval).map(|(_, k)| k).collect();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(*g, w, "{symbol} {interval}: row {i} differs");
    }
    assert_eq!(got.len(), want.len(), "{symbol} {interval}: staged {} rows, expected {}", got.len(), want.len());
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
    let words: Vec<&str> = summary.split(|c: char| c.is_whitespace() || c == ',' || c == ';').filter(|w| !w.is_empty()).collect();
    let i = words.iter().position(|w| *w == word).unwrap_or_else(|| panic!("no {word:?} in {summary:?}"));
    words[i - 1].parse().unwrap_or_else(|_| panic!("no number before {word:?} in {summary:?}"))
}
