//! `profiles.yml`: where the warehouse is, in dbt's shape.
//!
//! ```yaml
//! klines:                 # the profile, named by klines.yml `profile:`
//!   target: dev           # the output used unless --target says otherwise
//!   outputs:
//!     dev:
//!       type: duckdb      # duckdb | postgres | snowflake
//!       path: klines.duckdb
//! ```
//!
//! Found in `--profiles-dir`, else the project directory, else `~/.klines/`. Without any
//! profiles.yml the target is embedded DuckDB in `./klines.duckdb`. Values may use
//! `{{ env_var('NAME', 'default') }}`, so secrets stay out of files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use super::template;
use crate::error::UsageError;
use crate::redact::Secret;

pub const PROFILES_FILE: &str = "profiles.yml";

/// Postgres' sslmode values klines knows.
pub const SSLMODES: [&str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

/// The chosen output of a profile.
#[derive(Debug, Clone)]
pub struct Target {
    /// The profile's name and the output's name.
    pub profile: String,
    pub name: String,
    /// The file it came from (`None` for the embedded default).
    pub file: Option<PathBuf>,
    pub output: Output,
}

impl Target {
    /// The schema models are built in.
    pub fn schema(&self) -> &str {
        match &self.output {
            Output::DuckDb(o) => &o.schema,
            Output::Postgres(o) => &o.schema,
            Output::Snowflake(o) => &o.schema,
        }
    }

    /// The schema of the raw table and the load history.
    pub fn raw_schema(&self) -> &str {
        match &self.output {
            Output::DuckDb(o) => &o.raw_schema,
            Output::Postgres(o) => &o.raw_schema,
            Output::Snowflake(o) => &o.raw_schema,
        }
    }

    pub fn threads(&self) -> usize {
        match &self.output {
            Output::DuckDb(o) => o.threads,
            Output::Postgres(o) => o.threads,
            Output::Snowflake(o) => o.threads,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.output {
            Output::DuckDb(_) => "duckdb",
            Output::Postgres(_) => "postgres",
            Output::Snowflake(_) => "snowflake",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Output {
    DuckDb(DuckDbOutput),
    Postgres(PostgresOutput),
    Snowflake(SnowflakeOutput),
}

fn default_raw() -> String {
    "raw".into()
}
fn default_threads() -> usize {
    4
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuckDbOutput {
    /// The database file, relative to the project directory; `:memory:` for none.
    #[serde(default = "DuckDbOutput::default_path")]
    pub path: String,
    #[serde(default = "DuckDbOutput::default_schema")]
    pub schema: String,
    #[serde(default = "default_raw")]
    pub raw_schema: String,
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// DuckDB settings applied when the database opens (`SET name = value`), as dbt-duckdb's
    /// `settings:`; `memory_limit` bounds a long `klines stream --load`.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingValue>,
}

/// A DuckDB setting's value: text, a number or a boolean.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SettingValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl DuckDbOutput {
    fn default_path() -> String {
        "klines.duckdb".into()
    }
    fn default_schema() -> String {
        "main".into()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresOutput {
    #[serde(default = "PostgresOutput::default_host")]
    pub host: String,
    #[serde(default = "PostgresOutput::default_port")]
    pub port: u16,
    pub user: String,
    #[serde(default, alias = "pass")]
    pub password: Option<Secret>,
    #[serde(alias = "database")]
    pub dbname: String,
    #[serde(default = "PostgresOutput::default_schema")]
    pub schema: String,
    #[serde(default = "default_raw")]
    pub raw_schema: String,
    /// disable, prefer, require, verify-ca or verify-full.
    #[serde(default = "PostgresOutput::default_sslmode")]
    pub sslmode: String,
    /// A PEM file of CA certificates for verify-ca / verify-full.
    #[serde(default)]
    pub sslrootcert: Option<String>,
    #[serde(default = "PostgresOutput::default_connect_timeout")]
    pub connect_timeout: u64,
    #[serde(default = "default_threads")]
    pub threads: usize,
}

impl PostgresOutput {
    fn default_host() -> String {
        "localhost".into()
    }
    fn default_port() -> u16 {
        5432
    }
    fn default_schema() -> String {
        "public".into()
    }
    fn default_sslmode() -> String {
        "prefer".into()
    }
    fn default_connect_timeout() -> u64 {
        10
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnowflakeOutput {
    /// The account identifier (`orgname-account` or `xy12345.eu-west-1`).
    pub account: String,
    /// A full URL overriding the one derived from the account (private links, tests).
    #[serde(default)]
    pub host: Option<String>,
    pub user: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub private_key_path: Option<String>,
    #[serde(default)]
    pub private_key_passphrase: Option<Secret>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub warehouse: Option<String>,
    pub database: String,
    #[serde(default = "SnowflakeOutput::default_schema")]
    pub schema: String,
    #[serde(default = "default_raw")]
    pub raw_schema: String,
    /// The external stage over the klines stage's bucket and prefix (`DB.SCHEMA.STAGE`).
    #[serde(default)]
    pub stage: Option<String>,
    /// The Snowpipe that loads from that stage (`DB.SCHEMA.PIPE`).
    #[serde(default)]
    pub pipe: Option<String>,
    /// The storage integration the stage uses (for `klines setup snowflake`).
    #[serde(default)]
    pub storage_integration: Option<String>,
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Seconds a statement may run before klines gives up on it.
    #[serde(default = "SnowflakeOutput::default_query_timeout")]
    pub query_timeout: u64,
}

impl SnowflakeOutput {
    fn default_schema() -> String {
        "PUBLIC".into()
    }
    fn default_query_timeout() -> u64 {
        3600
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    target: Option<String>,
    outputs: BTreeMap<String, yaml_serde::Value>,
}

/// Where to look for profiles.yml, in order.
pub fn search_dirs(profiles_dir: Option<&Path>, project_dir: &Path) -> Vec<PathBuf> {
    match profiles_dir {
        Some(d) => vec![d.to_path_buf()],
        None => {
            let mut dirs = vec![project_dir.to_path_buf()];
            if let Some(home) = std::env::var_os("HOME") {
                dirs.push(PathBuf::from(home).join(".klines"));
            }
            dirs
        }
    }
}

/// Resolves the target: the profile `profile` from the first profiles.yml found, its output
/// `target` (or the profile's default). With no profiles.yml anywhere (and no
/// `--profiles-dir`), embedded DuckDB in `klines.duckdb`.
pub fn resolve(
    profiles_dir: Option<&Path>,
    project_dir: &Path,
    profile: &str,
    target: Option<&str>,
) -> anyhow::Result<Target> {
    let file = search_dirs(profiles_dir, project_dir)
        .into_iter()
        .map(|d| d.join(PROFILES_FILE))
        .find(|f| f.is_file());
    let Some(file) = file else {
        return embedded(profiles_dir, project_dir, profile, target);
    };
    let name = file.display().to_string();
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {name}"))?;
    let rendered = template::render(&name, &text)?;
    let mut profiles: BTreeMap<String, ProfileFile> =
        yaml_serde::from_str(&rendered).map_err(|e| {
            UsageError(format!(
                "{name}: {}",
                crate::redact::config_error(&e.to_string())
            ))
        })?;
    let Some(p) = profiles.remove(profile) else {
        let known: Vec<&String> = profiles.keys().collect();
        return Err(
            UsageError(format!("{name}: no profile {profile:?} (it has {known:?})")).into(),
        );
    };
    let target_name = match target.map(str::to_string).or(p.target) {
        Some(t) => t,
        None => {
            return Err(UsageError(format!(
                "{name}: profile {profile}: no `target:` and no --target"
            ))
            .into());
        }
    };
    let Some(raw) = p.outputs.get(&target_name) else {
        let known: Vec<&String> = p.outputs.keys().collect();
        return Err(UsageError(format!(
            "{name}: profile {profile}: no output {target_name:?} (it has {known:?})"
        ))
        .into());
    };
    let at = format!("{name}: profile {profile}, output {target_name}");
    let target = Target {
        profile: profile.to_string(),
        name: target_name,
        file: Some(file),
        output: output(raw, &at)?,
    };
    for (what, ident) in [
        ("schema", target.schema()),
        ("raw_schema", target.raw_schema()),
    ] {
        crate::ident::validate(ident).map_err(|e| UsageError(format!("{at}: {what}: {e}")))?;
    }
    if let Output::Postgres(pg) = &target.output
        && !SSLMODES.contains(&pg.sslmode.as_str())
    {
        return Err(UsageError(format!(
            "{at}: unknown sslmode {:?} ({})",
            pg.sslmode,
            SSLMODES.join(", ")
        ))
        .into());
    }
    Ok(target)
}

/// No profiles.yml: embedded DuckDB in `klines.duckdb`, unless a flag asked for a file.
fn embedded(
    profiles_dir: Option<&Path>,
    project_dir: &Path,
    profile: &str,
    target: Option<&str>,
) -> anyhow::Result<Target> {
    if let Some(d) = profiles_dir {
        return Err(UsageError(format!(
            "--profiles-dir {}: no {PROFILES_FILE} there",
            d.display()
        ))
        .into());
    }
    if let Some(t) = target
        && t != "default"
    {
        return Err(UsageError(format!(
            "--target {t}: no {PROFILES_FILE} found (looked in {} and ~/.klines)",
            project_dir.display()
        ))
        .into());
    }
    Ok(Target {
        profile: profile.to_string(),
        name: "default".into(),
        file: None,
        output: Output::DuckDb(DuckDbOutput {
            path: DuckDbOutput::default_path(),
            schema: DuckDbOutput::default_schema(),
            raw_schema: default_raw(),
            threads: default_threads(),
            settings: BTreeMap::new(),
        }),
    })
}

/// An output's mapping, by its `type:`. Errors name the place (`at`) and the key, never the
/// value (it may be a secret).
fn output(raw: &yaml_serde::Value, at: &str) -> anyhow::Result<Output> {
    let mut map = match raw {
        yaml_serde::Value::Mapping(m) => m.clone(),
        _ => return Err(UsageError(format!("{at}: expected a mapping")).into()),
    };
    let ty = match map.remove("type") {
        Some(yaml_serde::Value::String(t)) => t,
        _ => {
            return Err(UsageError(format!(
                "{at}: `type:` is missing (duckdb, postgres or snowflake)"
            ))
            .into());
        }
    };
    let value = yaml_serde::Value::Mapping(map);
    fn parse<T: serde::de::DeserializeOwned>(
        value: yaml_serde::Value,
        at: &str,
    ) -> Result<T, UsageError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let msg = crate::redact::config_error(&e.inner().to_string());
            UsageError(
                if key.is_empty() || key == "." || msg.starts_with("unknown field") {
                    format!("{at}: {msg}")
                } else {
                    format!("{at}: {key}: {msg}")
                },
            )
        })
    }
    Ok(match ty.as_str() {
        "duckdb" => Output::DuckDb(parse(value, at)?),
        "postgres" => Output::Postgres(parse(value, at)?),
        "snowflake" => Output::Snowflake(parse(value, at)?),
        other => {
            return Err(UsageError(format!(
                "{at}: unknown type {other:?} (duckdb, postgres or snowflake)"
            ))
            .into());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_text(text: &str, target: Option<&str>) -> anyhow::Result<Target> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PROFILES_FILE), text).unwrap();
        resolve(None, dir.path(), "klines", target)
    }

    #[test]
    fn without_profiles_the_target_is_embedded_duckdb() {
        let dir = tempfile::tempdir().unwrap();
        let t = resolve(None, dir.path(), "klines", None).unwrap();
        assert!(matches!(&t.output, Output::DuckDb(o) if o.path == "klines.duckdb"));
        assert_eq!((t.schema(), t.raw_schema()), ("main", "raw"));
    }

    #[test]
    fn picks_the_profile_target_or_the_flag() {
        let text = "klines:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: x.duckdb\n    pg:\n      type: postgres\n      host: 127.0.0.1\n      user: postgres\n      password: hunter2\n      dbname: k\n      schema: analytics\n";
        let t = resolve_text(text, None).unwrap();
        assert_eq!(t.name, "dev");
        let t = resolve_text(text, Some("pg")).unwrap();
        let Output::Postgres(pg) = &t.output else {
            panic!()
        };
        assert_eq!(
            (
                pg.port,
                pg.schema.as_str(),
                pg.raw_schema.as_str(),
                pg.sslmode.as_str()
            ),
            (5432, "analytics", "raw", "prefer")
        );
        assert!(
            !format!("{t:?}").contains("hunter2"),
            "the password leaked into Debug"
        );
    }

    #[test]
    fn mistakes_name_the_file_profile_output_and_field() {
        let err = resolve_text("klines:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      hots: x\n      user: u\n      dbname: d\n", None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("profiles.yml: profile klines, output dev: unknown field `hots`"),
            "{msg}"
        );
        assert_eq!(crate::exit::classify(&err), crate::exit::Code::Usage);
        let msg = resolve_text(
            "klines:\n  target: prod\n  outputs:\n    dev:\n      type: duckdb\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("no output \"prod\""), "{msg}");
        let msg = resolve_text("other:\n  target: dev\n  outputs: {}\n", None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no profile \"klines\""), "{msg}");
        // A value of the wrong type: the key and the file, never the value.
        for (line, key) in [
            ("      port: \"p8472991337\"\n", "port"),
            ("      password: [8472991337]\n", "password"),
            (
                "      connect_timeout: {a: 8472991337}\n",
                "connect_timeout",
            ),
        ] {
            let text = format!(
                "klines:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      user: u\n      dbname: d\n{line}"
            );
            let err = resolve_text(&text, None).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(&format!(
                    "profiles.yml: profile klines, output dev: {key}: invalid type: "
                )),
                "{msg}"
            );
            assert!(!msg.contains("8472991337"), "{msg}");
            assert_eq!(crate::exit::classify(&err), crate::exit::Code::Usage);
        }
        let msg = resolve_text("klines:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      schema: \"x; drop table y\"\n", None).unwrap_err().to_string();
        assert!(msg.contains("schema"), "{msg}");
    }
}
