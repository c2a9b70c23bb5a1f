//! Transform: a dbt-style runner for Jinja-templated SQL models.
//!
//! 1. [`project`] reads `models/`, `macros/`, `seeds/` and `data_tests/`.
//! 2. [`parse`] renders every model once ([`jinja`]) to record its `ref`s, `source`s and
//!    `config`, layers its configuration ([`config`]), adds seeds and tests, and builds the
//!    dependency [`graph`] (cycles and unknown refs are errors naming the file).
//! 3. [`selector`] picks nodes as dbt does; [`runner`] executes them in dependency order,
//!    independent ones in parallel, compiling each just before it runs.
//! 4. [`materializations`] turn compiled SQL into relations, a kind a file (view, table,
//!    incremental, ephemeral, indicators); they share [`materialize`]'s steps (build beside,
//!    swap in), and incremental models by time range follow the [`changes`] of their parents.
//! 5. [`artifacts`] writes `target/manifest.json` and `target/run_results.json`.

pub mod artifacts;
pub mod catalog;
pub mod changes;
pub mod config;
pub mod graph;
pub mod indicators;
pub mod jinja;
pub mod materializations;
pub mod materialize;
pub mod node;
pub mod parse;
pub mod project;
pub mod runner;
pub mod seeds;
pub mod selector;
pub mod tests;
pub mod workspace;

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::config::Project;
use crate::config::profiles::{Output, Target};
use crate::error::UsageError;
use crate::warehouse::DialectRef;

pub fn kind_of(target: &Target) -> DialectRef {
    crate::warehouse::dialect_of(&target.output)
}

/// `--vars '{key: value}'` (YAML or JSON) over klines.yml `vars`.
pub fn vars(project: &Project, cli: Option<&str>) -> anyhow::Result<BTreeMap<String, Json>> {
    let mut vars = project.vars.clone();
    if let Some(text) = cli {
        let given: BTreeMap<String, Json> = yaml_serde::from_str(text)
            .map_err(|e| UsageError(format!("--vars: expected a mapping: {e}")))?;
        vars.extend(given);
    }
    Ok(vars)
}

/// Reads and parses the project for `target`.
pub fn load(
    project: &Project,
    target: &Target,
    cli_vars: Option<&str>,
) -> anyhow::Result<(parse::Parsed, project::Files)> {
    let files = project::read_files(project)?;
    let kind = kind_of(target);
    let mut t = BTreeMap::new();
    t.insert("name".to_string(), Json::from(target.name.clone()));
    t.insert("type".to_string(), Json::from(kind.name()));
    t.insert("schema".to_string(), Json::from(target.schema()));
    t.insert("raw_schema".to_string(), Json::from(target.raw_schema()));
    t.insert(
        "profile_name".to_string(),
        Json::from(target.profile.clone()),
    );
    t.insert("threads".to_string(), Json::from(target.threads()));
    if let Output::Snowflake(o) = &target.output {
        t.insert("database".to_string(), Json::from(o.database.clone()));
    }
    let globals = jinja::Globals {
        kind,
        project_name: project.name.clone(),
        target: t,
        vars: vars(project, cli_vars)?,
        invocation_id: uuid::Uuid::new_v4().to_string(),
        run_started_at: chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string(),
    };
    let parsed = parse::parse(
        &files,
        globals,
        &project.models,
        &project.seeds,
        target.schema(),
    )?;
    Ok((parsed, files))
}

/// Every macro of the project: (name, file, definition), for the manifest.
pub fn macro_definitions(files: &project::Files) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for f in &files.macros {
        let mut rest = f.text.as_str();
        while let Some(start) = rest.find("{%") {
            let block = &rest[start..];
            let head = block[2..].trim_start_matches(['-', '+']).trim_start();
            if let Some(after) = head.strip_prefix("macro") {
                let name: String = after
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let end = block
                    .find("endmacro")
                    .and_then(|e| block[e..].find("%}").map(|c| e + c + 2))
                    .unwrap_or(block.len());
                if !name.is_empty() {
                    out.push((name, f.path.clone(), block[..end].to_string()));
                }
                rest = &block[end..];
            } else {
                rest = &block[2..];
            }
        }
    }
    out
}
