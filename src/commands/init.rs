//! `klines init [DIR]`: a ready project from files embedded in the binary, so the quick start
//! works from an installed binary alone.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::error::UsageError;

/// The project files, as in this repository (a test keeps the two the same).
pub const FILES: &[(&str, &str)] = &[
    ("klines.yml", include_str!("../../klines.yml")),
    (
        "models/sources.yml",
        include_str!("../../models/sources.yml"),
    ),
    (
        "models/ohlc/schema.yml",
        include_str!("../../models/ohlc/schema.yml"),
    ),
    (
        "models/ohlc/TRADES_OHLC_1M.sql",
        include_str!("../../models/ohlc/TRADES_OHLC_1M.sql"),
    ),
    (
        "models/ohlc/TRADES_OHLC_5M.sql",
        include_str!("../../models/ohlc/TRADES_OHLC_5M.sql"),
    ),
    (
        "models/ohlc/TRADES_OHLC_15M.sql",
        include_str!("../../models/ohlc/TRADES_OHLC_15M.sql"),
    ),
    (
        "models/ohlc/TRADES_OHLC_1H.sql",
        include_str!("../../models/ohlc/TRADES_OHLC_1H.sql"),
    ),
    (
        "models/ohlc/TRADES_OHLC_1D.sql",
        include_str!("../../models/ohlc/TRADES_OHLC_1D.sql"),
    ),
    (
        "models/indicators/schema.yml",
        include_str!("../../models/indicators/schema.yml"),
    ),
    (
        "models/indicators/INDICATORS_1M.sql",
        include_str!("../../models/indicators/INDICATORS_1M.sql"),
    ),
    (
        "models/indicators/INDICATORS_5M.sql",
        include_str!("../../models/indicators/INDICATORS_5M.sql"),
    ),
    (
        "models/indicators/INDICATORS_15M.sql",
        include_str!("../../models/indicators/INDICATORS_15M.sql"),
    ),
    (
        "models/indicators/INDICATORS_1H.sql",
        include_str!("../../models/indicators/INDICATORS_1H.sql"),
    ),
    (
        "models/indicators/INDICATORS_1D.sql",
        include_str!("../../models/indicators/INDICATORS_1D.sql"),
    ),
    (
        "models/flow/schema.yml",
        include_str!("../../models/flow/schema.yml"),
    ),
    (
        "models/flow/FLOW_1M.sql",
        include_str!("../../models/flow/FLOW_1M.sql"),
    ),
    (
        "models/flow/FLOW_5M.sql",
        include_str!("../../models/flow/FLOW_5M.sql"),
    ),
    (
        "models/flow/FLOW_15M.sql",
        include_str!("../../models/flow/FLOW_15M.sql"),
    ),
    (
        "models/flow/FLOW_1H.sql",
        include_str!("../../models/flow/FLOW_1H.sql"),
    ),
    (
        "models/flow/FLOW_1D.sql",
        include_str!("../../models/flow/FLOW_1D.sql"),
    ),
    ("macros/ohlc.sql", include_str!("../../macros/ohlc.sql")),
    ("macros/flow.sql", include_str!("../../macros/flow.sql")),
    ("seeds/symbols.csv", include_str!("../../seeds/symbols.csv")),
    ("seeds/schema.yml", include_str!("../../seeds/schema.yml")),
    (
        "data_tests/ohlc_buckets_hold_at_most_their_minutes.sql",
        include_str!("../../data_tests/ohlc_buckets_hold_at_most_their_minutes.sql"),
    ),
    ("profiles.yml", PROFILES),
    (".gitignore", GITIGNORE),
];

const PROFILES: &str = "\
# Where the warehouse is (dbt's shape). Embedded DuckDB needs no server; see klines'
# profiles.example.yml for Postgres and Snowflake outputs.
klines:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: klines.duckdb
      schema: main
      raw_schema: raw
";

const GITIGNORE: &str = "/target\n/stage\n/state\n/klines.duckdb\n/klines.duckdb.wal\n";

pub fn run(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    // Nothing is overwritten, and nothing is written through a symbolic link inside the
    // project (it could point anywhere): either stops the command before it writes.
    for (name, _) in FILES {
        let mut path = dir.clone();
        for part in Path::new(name).components() {
            path.push(part);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UsageError(format!(
                        "{}: a symbolic link; klines init writes nothing through one",
                        path.display()
                    ))
                    .into());
                }
                Ok(_) if path == dir.join(name) => {
                    return Err(UsageError(format!(
                        "{}: already exists; klines init writes a new project and overwrites nothing",
                        path.display()
                    ))
                    .into());
                }
                _ => {}
            }
        }
    }
    for (name, text) in FILES {
        write(&dir.join(name), text)?;
    }
    println!(
        "init: wrote {} files to {}; next: cd {} && klines pipeline",
        FILES.len(),
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// Creates the file, never opening one that exists (a link put there meanwhile included).
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}
