//! Parsing a project into nodes (models, seeds, tests, sources) and their graph, one concern a
//! file: `sources` (yml sources), `resources` (models and seeds), `tests` (generic and
//! singular), `resolve` (refs and sources into dependencies, the graph, the compile resolver).

mod resolve;
mod resources;
mod sources;
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::graph::Graph;
use super::jinja::{Globals, Jinja, Resolver};
use super::node::Node;
use super::project::Files;
use crate::error::UsageError;
use crate::warehouse::DialectRef;

/// A parsed project.
pub struct Parsed {
    pub project_name: String,
    pub kind: DialectRef,
    pub target_schema: String,
    pub nodes: BTreeMap<String, Node>,
    pub graph: Graph,
    pub jinja: Jinja,
    pub resolver: Arc<Resolver>,
    pub globals: Globals,
}

/// A parse under way: the nodes so far, and the names refs and sources resolve to.
struct Parser<'a> {
    files: &'a Files,
    kind: DialectRef,
    project: String,
    target_schema: &'a str,
    jinja: Jinja,
    nodes: BTreeMap<String, Node>,
    /// Model and seed names, to their unique ids.
    by_name: BTreeMap<String, String>,
    /// (source, table) to unique id.
    sources: BTreeMap<(String, String), String>,
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn usage(msg: String) -> anyhow::Error {
    UsageError(msg).into()
}

/// dbt's default schema naming: a custom schema is appended to the target schema.
fn schema_for(target_schema: &str, custom: Option<&str>) -> String {
    match custom {
        Some(c) => format!("{target_schema}_{c}"),
        None => target_schema.to_string(),
    }
}

/// The model kinds `materialized` may name.
fn kinds() -> Vec<&'static str> {
    super::materializations::names()
}

/// Parses the project's files for a warehouse of `kind` whose models go in `target_schema`.
pub fn parse(
    files: &Files,
    globals: Globals,
    models_tree: &Json,
    seeds_tree: &Json,
    target_schema: &str,
) -> anyhow::Result<Parsed> {
    let macros: Vec<(String, String)> = files
        .macros
        .iter()
        .map(|m| (m.path.clone(), m.text.clone()))
        .collect();
    let templates: Vec<(String, String)> = files
        .models
        .iter()
        .chain(&files.singular_tests)
        .map(|f| (f.path.clone(), f.text.clone()))
        .collect();
    let jinja = Jinja::new(&globals, &macros, &templates).map_err(|e| usage(e.to_string()))?;
    let mut p = Parser {
        files,
        kind: globals.kind,
        project: globals.project_name.clone(),
        target_schema,
        jinja,
        nodes: BTreeMap::new(),
        by_name: BTreeMap::new(),
        sources: BTreeMap::new(),
    };
    p.sources()?;
    p.models(models_tree)?;
    p.seeds(seeds_tree)?;
    let tests = p.tests()?;
    for t in tests {
        p.nodes.insert(t.unique_id.clone(), t);
    }
    p.dependencies()?;
    let graph = p.graph()?;
    let resolver = p.resolver();
    Ok(Parsed {
        project_name: p.project,
        kind: p.kind,
        target_schema: target_schema.to_string(),
        nodes: p.nodes,
        graph,
        jinja: p.jinja,
        resolver: Arc::new(resolver),
        globals,
    })
}
