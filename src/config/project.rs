//! `klines.yml`: the project file every command reads, as dbt reads `dbt_project.yml`.
//!
//! Layers, later ones winning: the embedded defaults, `klines.yml` in the project directory,
//! `KLINES_*` environment variables and command-line flags (both applied by the commands).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::template;
use crate::error::UsageError;
use crate::market::{Interval, Market, Symbol};

pub const PROJECT_FILE: &str = "klines.yml";
pub use crate::sources::binance::DEFAULT_BASE_URL;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    name: Option<String>,
    profile: Option<String>,
    market: Option<Market>,
    symbols: Option<Vec<Symbol>>,
    intervals: Option<Vec<Interval>>,
    start: Option<String>,
    exchange: Option<ExchangeFile>,
    stage: Option<String>,
    stage_options: Option<BTreeMap<String, String>>,
    state: Option<String>,
    lease_secs: Option<f64>,
    #[serde(rename = "model-paths")]
    model_paths: Option<Vec<String>>,
    #[serde(rename = "seed-paths")]
    seed_paths: Option<Vec<String>>,
    #[serde(rename = "test-paths")]
    test_paths: Option<Vec<String>>,
    #[serde(rename = "macro-paths")]
    macro_paths: Option<Vec<String>>,
    #[serde(rename = "target-path")]
    target_path: Option<String>,
    load: Option<LoadFile>,
    vars: Option<BTreeMap<String, serde_json::Value>>,
    models: Option<serde_json::Value>,
    seeds: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangeFile {
    base_url: Option<String>,
    archive_url: Option<String>,
    coinbase_url: Option<String>,
    ws_url: Option<String>,
    timeout_secs: Option<f64>,
    max_attempts: Option<u32>,
    retry_base_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    max_wait_secs: Option<u64>,
    max_in_flight: Option<usize>,
    spans_in_flight: Option<usize>,
    weight_share: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadFile {
    batch_rows: Option<usize>,
    fetch_concurrency: Option<usize>,
}

/// The exchange settings, resolved.
#[derive(Debug, Clone)]
pub struct ExchangeSettings {
    pub base_url: String,
    /// Binance's bulk archives (`backfill --source auto|archive`).
    pub archive_url: String,
    /// Coinbase Exchange's REST base (`--exchange coinbase`).
    pub coinbase_url: String,
    /// The WebSocket base for `klines stream`; `None`: the market's default.
    pub ws_url: Option<String>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub max_wait: Duration,
    pub max_in_flight: usize,
    pub spans_in_flight: usize,
    pub weight_share: f64,
}

impl ExchangeSettings {
    /// The retry policy every client of the run shares (Binance, Coinbase, the archives).
    pub fn retry_policy(&self) -> crate::sources::RetryPolicy {
        crate::sources::RetryPolicy {
            max_attempts: self.max_attempts,
            retry_base: self.retry_base,
            retry_max: self.retry_max,
            max_wait: self.max_wait,
        }
    }
}

/// A project: `klines.yml` over the embedded defaults.
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    /// The project file, when there is one.
    pub file: Option<PathBuf>,
    pub name: String,
    pub profile: String,
    pub market: Market,
    pub symbols: Vec<Symbol>,
    pub intervals: Vec<Interval>,
    pub start: String,
    pub exchange: ExchangeSettings,
    pub stage: String,
    pub stage_options: BTreeMap<String, String>,
    pub state: String,
    /// How long an object-store lock lasts without renewal.
    pub lease: Duration,
    /// Rows per load transaction, and staged files fetched at once.
    pub load_batch_rows: usize,
    pub load_fetch_concurrency: usize,
    pub model_paths: Vec<String>,
    pub seed_paths: Vec<String>,
    pub test_paths: Vec<String>,
    pub macro_paths: Vec<String>,
    pub target_path: String,
    pub vars: BTreeMap<String, serde_json::Value>,
    /// `models:` configuration by path, as in dbt_project.yml (`+materialized: view`).
    pub models: serde_json::Value,
    pub seeds: serde_json::Value,
}

impl Project {
    /// Reads `klines.yml` from `dir` if there is one.
    pub fn load(dir: &Path) -> anyhow::Result<Project> {
        let path = dir.join(PROJECT_FILE);
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let name = path.display().to_string();
                let rendered = template::render(&name, &text)?;
                let parsed: ProjectFile = if rendered.trim().is_empty() {
                    ProjectFile::default()
                } else {
                    yaml_serde::from_str(&rendered).map_err(|e| {
                        // Values may be secrets (stage_options): the key, never the value.
                        UsageError(format!(
                            "{name}: {}",
                            crate::redact::config_error(&e.to_string())
                        ))
                    })?
                };
                Some((path, parsed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            // A directory or an unreadable file in klines.yml's place is a configuration error.
            Err(e) => {
                return Err(UsageError(format!("cannot read {}: {e}", path.display())).into());
            }
        };
        let (file, f) = match file {
            Some((p, f)) => (Some(p), f),
            None => (None, ProjectFile::default()),
        };
        Project::resolve(dir, file, f)
    }

    fn resolve(dir: &Path, file: Option<PathBuf>, f: ProjectFile) -> anyhow::Result<Project> {
        let where_ = || {
            file.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "defaults".into())
        };
        let e = f.exchange.unwrap_or_default();
        let positive = |name: &str, v: f64| -> anyhow::Result<f64> {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(UsageError(format!(
                    "{}: exchange.{name} must be positive, got {v}",
                    where_()
                ))
                .into())
            }
        };
        let weight_share = positive("weight_share", e.weight_share.unwrap_or(1.0))?;
        if weight_share > 1.0 {
            return Err(UsageError(format!(
                "{}: exchange.weight_share must be at most 1, got {weight_share}",
                where_()
            ))
            .into());
        }
        let exchange = ExchangeSettings {
            base_url: e.base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
            archive_url: e.archive_url.unwrap_or_else(|| {
                crate::sources::binance::archive::client::DEFAULT_ARCHIVE_URL.to_string()
            }),
            coinbase_url: e
                .coinbase_url
                .unwrap_or_else(|| crate::sources::coinbase::DEFAULT_BASE_URL.to_string()),
            ws_url: e.ws_url,
            timeout: {
                let secs = positive("timeout_secs", e.timeout_secs.unwrap_or(30.0))?;
                // At most a day: a larger timeout is a mistake, and 1e30 would not fit a Duration.
                if secs > 86_400.0 {
                    return Err(UsageError(format!(
                        "{}: exchange.timeout_secs must be at most 86400, got {secs}",
                        where_()
                    ))
                    .into());
                }
                Duration::from_secs_f64(secs)
            },
            max_attempts: e.max_attempts.unwrap_or(8).max(1),
            retry_base: Duration::from_millis(e.retry_base_ms.unwrap_or(500)),
            retry_max: Duration::from_millis(e.retry_max_ms.unwrap_or(30_000)),
            max_wait: Duration::from_secs(e.max_wait_secs.unwrap_or(300)),
            max_in_flight: e.max_in_flight.unwrap_or(8).max(1),
            spans_in_flight: e.spans_in_flight.unwrap_or(4).max(1),
            weight_share,
        };
        let symbols = f
            .symbols
            .unwrap_or_else(|| vec![Symbol::parse("BTCUSDT").expect("valid default")]);
        if symbols.is_empty() {
            return Err(UsageError(format!("{}: symbols is empty", where_())).into());
        }
        let intervals = f.intervals.unwrap_or_else(|| vec![Interval::M1]);
        if intervals.is_empty() {
            return Err(UsageError(format!("{}: intervals is empty", where_())).into());
        }
        let lease_secs = f.lease_secs.unwrap_or(60.0);
        if !(1.0..=3600.0).contains(&lease_secs) {
            return Err(UsageError(format!(
                "{}: lease_secs must be from 1 to 3600, got {lease_secs}",
                where_()
            ))
            .into());
        }
        let name = f.name.unwrap_or_else(|| "klines".into());
        // The name becomes a folder under target/ and a part of unique ids: no path tricks.
        if !valid_name(&name) {
            return Err(UsageError(format!(
                "{}: name {name:?} must start with a letter or _ and hold only letters, digits and _",
                where_()
            ))
            .into());
        }
        Ok(Project {
            dir: dir.to_path_buf(),
            file,
            name,
            profile: f.profile.unwrap_or_else(|| "klines".into()),
            market: f.market.unwrap_or_default(),
            symbols,
            intervals,
            start: f.start.unwrap_or_else(|| "-7d".into()),
            exchange,
            stage: f.stage.unwrap_or_else(|| "stage".into()),
            stage_options: f.stage_options.unwrap_or_default(),
            state: f.state.unwrap_or_else(|| "state".into()),
            lease: Duration::from_secs_f64(lease_secs),
            load_batch_rows: f
                .load
                .as_ref()
                .and_then(|l| l.batch_rows)
                .unwrap_or(500_000)
                .max(1),
            load_fetch_concurrency: f
                .load
                .as_ref()
                .and_then(|l| l.fetch_concurrency)
                .unwrap_or(8)
                .max(1),
            model_paths: f.model_paths.unwrap_or_else(|| vec!["models".into()]),
            seed_paths: f.seed_paths.unwrap_or_else(|| vec!["seeds".into()]),
            test_paths: f.test_paths.unwrap_or_else(|| vec!["data_tests".into()]),
            macro_paths: f.macro_paths.unwrap_or_else(|| vec!["macros".into()]),
            target_path: f.target_path.unwrap_or_else(|| "target".into()),
            vars: f.vars.unwrap_or_default(),
            models: f.models.unwrap_or(serde_json::Value::Null),
            seeds: f.seeds.unwrap_or(serde_json::Value::Null),
        })
    }

    /// A path from the project file, relative to the project directory.
    pub fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

/// A project name: an identifier (letters, digits, `_`, not starting with a digit), as dbt asks.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<Project> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PROJECT_FILE), text).unwrap();
        Project::load(dir.path())
    }

    #[test]
    fn embedded_defaults_need_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = Project::load(dir.path()).unwrap();
        assert!(p.file.is_none());
        assert_eq!(p.symbols, vec![Symbol::parse("BTCUSDT").unwrap()]);
        assert_eq!(p.intervals, vec![Interval::M1]);
        assert_eq!(p.exchange.base_url, DEFAULT_BASE_URL);
        assert_eq!(p.stage, "stage");
        assert_eq!(p.profile, "klines");
    }

    #[test]
    fn the_file_overrides_the_defaults() {
        let p = load("symbols: [ethusdt, SOLUSDT]\nintervals: [1m, 5m]\nstart: 2024-01-01\nexchange:\n  base_url: http://127.0.0.1:9\n  max_attempts: 3\n").unwrap();
        assert_eq!(
            p.symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ["ETHUSDT", "SOLUSDT"]
        );
        assert_eq!(p.intervals, vec![Interval::M1, Interval::M5]);
        assert_eq!(p.start, "2024-01-01");
        assert_eq!(p.exchange.max_attempts, 3);
    }

    #[test]
    fn mistakes_name_the_file_and_the_field() {
        let err = load("symbol: [BTCUSDT]\n").unwrap_err().to_string();
        assert!(
            err.contains("klines.yml") && err.contains("unknown field `symbol`"),
            "{err}"
        );
        let err = load("symbols: [BTC/USDT]\n").unwrap_err().to_string();
        assert!(
            err.contains("klines.yml") && err.contains("BTC/USDT"),
            "{err}"
        );
        let err = load("intervals: [2m]\n").unwrap_err().to_string();
        assert!(err.contains("unknown interval \"2m\""), "{err}");
        let err = load("exchange:\n  weight_share: 1.5\n").unwrap_err();
        assert_eq!(crate::exit::classify(&err), crate::exit::Code::Usage);
    }

    #[test]
    fn a_project_name_cannot_leave_the_target_folder() {
        for bad in ["../../../x", "a/b", "", "1x", "x y", "..", "x\\y"] {
            let err = load(&format!("name: {bad:?}\n")).unwrap_err();
            assert_eq!(
                crate::exit::classify(&err),
                crate::exit::Code::Usage,
                "{bad}"
            );
            assert!(err.to_string().contains("name"), "{err}");
        }
        assert_eq!(load("name: my_project_2\n").unwrap().name, "my_project_2");
    }

    #[test]
    fn a_directory_in_place_of_klines_yml_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(PROJECT_FILE)).unwrap();
        let err = Project::load(dir.path()).unwrap_err();
        assert_eq!(crate::exit::classify(&err), crate::exit::Code::Usage);
        assert!(err.to_string().contains("klines.yml"), "{err}");
    }

    proptest::proptest! {
        /// Any number in exchange settings is taken or refused with an error, never a panic.
        #[test]
        fn exchange_numbers_never_panic(x in proptest::num::f64::ANY, n in proptest::num::i64::ANY) {
            for key in ["timeout_secs", "weight_share"] {
                let _ = load(&format!("exchange:\n  {key}: {x:e}\n"));
            }
            for key in ["max_attempts", "retry_base_ms", "retry_max_ms", "max_wait_secs", "max_in_flight", "spans_in_flight"] {
                let _ = load(&format!("exchange:\n  {key}: {n}\n"));
            }
        }
    }

    #[test]
    fn a_huge_timeout_is_refused_not_a_panic() {
        let err = load("exchange: {timeout_secs: 1e30}\n").unwrap_err();
        assert_eq!(crate::exit::classify(&err), crate::exit::Code::Usage);
        assert!(err.to_string().contains("timeout_secs"), "{err}");
    }
}
