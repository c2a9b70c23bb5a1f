//! `target/manifest.json` and `target/run_results.json` with dbt's field names (manifest v12,
//! run results v6), so tools made for dbt artifacts can read them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value as Json, json};

use super::node::{Node, ResourceType};
use super::parse::Parsed;

/// The dbt artifact version these files follow, with klines as build metadata.
pub const DBT_VERSION: &str = concat!("1.10.0+klines.", env!("CARGO_PKG_VERSION"));

/// A phase of a node's execution.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub name: String,
    pub started_at: String,
    pub completed_at: String,
}

/// What happened to one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub unique_id: String,
    /// success, error, skipped (models, seeds); pass, fail, warn, error, skipped (tests).
    pub status: String,
    pub timing: Vec<Timing>,
    pub thread_id: String,
    pub execution_time: f64,
    pub rows_affected: u64,
    pub message: String,
    pub failures: Option<u64>,
    pub compiled_code: Option<String>,
    pub relation_name: Option<String>,
}

fn config_json(n: &Node) -> Json {
    let mut c = n.config.all.clone();
    c.insert("enabled".into(), json!(n.config.enabled));
    c.insert("tags".into(), json!(n.config.tags));
    c.insert("materialized".into(), json!(n.config.materialized.as_str()));
    c.insert(
        "alias".into(),
        n.config.alias.clone().map(Json::from).unwrap_or(Json::Null),
    );
    c.insert(
        "schema".into(),
        n.config
            .schema
            .clone()
            .map(Json::from)
            .unwrap_or(Json::Null),
    );
    if n.resource_type == ResourceType::Test {
        c.insert(
            "severity".into(),
            json!(n.config.severity.to_ascii_uppercase()),
        );
    }
    Json::Object(c)
}

fn columns_json(n: &Node) -> Json {
    let m: serde_json::Map<String, Json> = n
        .columns
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                json!({"name": c.name, "description": c.description, "meta": {}, "data_type": c.data_type, "constraints": [], "quote": null, "tags": []}),
            )
        })
        .collect();
    Json::Object(m)
}

/// `path` relative to the resource folder (`TRADES_OHLC_1M.sql`), as dbt records it.
fn resource_path(n: &Node) -> String {
    n.path
        .split_once('/')
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_else(|| n.path.clone())
}

fn node_json(p: &Parsed, n: &Node, compiled: Option<&str>, target_path: &str) -> Json {
    let mut j = json!({
        "database": null,
        "schema": n.schema,
        "name": n.name,
        "resource_type": n.resource_type.as_str(),
        "package_name": p.project_name,
        "path": resource_path(n),
        "original_file_path": n.path,
        "unique_id": n.unique_id,
        "fqn": n.fqn,
        "alias": if n.identifier.is_empty() { n.name.clone() } else { n.identifier.clone() },
        "checksum": {"name": "sha256", "checksum": n.checksum},
        "config": config_json(n),
        "tags": n.config.tags,
        "description": n.description,
        "columns": columns_json(n),
        "meta": {},
        "unrendered_config": {},
        "relation_name": if n.relation.is_empty() { Json::Null } else { Json::from(n.relation.clone()) },
        "raw_code": n.raw_code,
        "depends_on": {"macros": [], "nodes": n.depends_on},
    });
    let o = j.as_object_mut().expect("object");
    match n.resource_type {
        ResourceType::Seed => {
            o.insert("root_path".into(), Json::Null);
            o.insert("depends_on".into(), json!({"macros": []}));
        }
        _ => {
            o.insert("language".into(), json!("sql"));
            o.insert(
                "refs".into(),
                Json::Array(
                    n.refs
                        .iter()
                        .map(|r| json!({"name": r, "package": null, "version": null}))
                        .collect(),
                ),
            );
            o.insert(
                "sources".into(),
                Json::Array(n.sources.iter().map(|(s, t)| json!([s, t])).collect()),
            );
            o.insert("metrics".into(), json!([]));
            o.insert("compiled".into(), json!(compiled.is_some()));
            if let Some(code) = compiled {
                o.insert("compiled_code".into(), json!(code));
                o.insert(
                    "compiled_path".into(),
                    json!(format!(
                        "{target_path}/compiled/{}/{}",
                        p.project_name,
                        n.compiled_path()
                    )),
                );
                o.insert("extra_ctes_injected".into(), json!(true));
                o.insert("extra_ctes".into(), json!([]));
            }
        }
    }
    if let Some(t) = &n.test
        && let Some(attached) = &t.attached
    {
        let mut kwargs = t.def.args.clone();
        kwargs.remove("config");
        if let Some(c) = &t.column {
            kwargs.insert("column_name".into(), json!(c));
        }
        kwargs.insert(
            "model".into(),
            json!(format!(
                "{{{{ get_where_subquery(ref('{}')) }}}}",
                p.nodes[attached].name
            )),
        );
        o.insert(
            "test_metadata".into(),
            json!({"name": t.def.name, "kwargs": kwargs, "namespace": null}),
        );
        o.insert("column_name".into(), json!(t.column));
        o.insert("attached_node".into(), json!(attached));
        o.insert(
            "file_key_name".into(),
            json!(format!("models.{}", p.nodes[attached].name)),
        );
    }
    if n.resource_type == ResourceType::Model && super::materializations::inlined(&n.config) {
        o.insert("relation_name".into(), Json::Null);
    }
    j
}

fn source_json(p: &Parsed, n: &Node) -> Json {
    json!({
        "database": null,
        "schema": n.schema,
        "name": n.name,
        "resource_type": "source",
        "package_name": p.project_name,
        "path": n.path,
        "original_file_path": n.path,
        "unique_id": n.unique_id,
        "fqn": n.fqn,
        "source_name": n.fqn[1],
        "source_description": "",
        "loader": "klines",
        "identifier": n.identifier,
        "description": n.description,
        "columns": columns_json(n),
        "meta": {},
        "source_meta": {},
        "tags": n.config.tags,
        "config": {"enabled": true, "event_time": n.config.event_time, "tags": n.config.tags, "meta": {}},
        "unrendered_config": {},
        "relation_name": n.relation,
    })
}

fn now_iso() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Writes `file` in `dir` through a temporary file and a rename.
fn write_json(dir: &Path, file: &str, value: &Json) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(file);
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// The manifest: every node, with the compiled code of those compiled in this invocation.
pub fn manifest(
    p: &Parsed,
    compiled: &BTreeMap<String, String>,
    macros: &[(String, String, String)],
    target_path: &str,
) -> Json {
    let mut nodes = serde_json::Map::new();
    let mut sources = serde_json::Map::new();
    for (id, n) in &p.nodes {
        if n.resource_type == ResourceType::Source {
            sources.insert(id.clone(), source_json(p, n));
        } else {
            nodes.insert(
                id.clone(),
                node_json(p, n, compiled.get(id).map(String::as_str), target_path),
            );
        }
    }
    let macro_nodes: serde_json::Map<String, Json> = macros
        .iter()
        .map(|(name, path, sql)| {
            let id = format!("macro.{}.{name}", p.project_name);
            (
                id.clone(),
                json!({
                    "name": name, "resource_type": "macro", "package_name": p.project_name, "path": path,
                    "original_file_path": path, "unique_id": id, "macro_sql": sql, "depends_on": {"macros": []},
                    "description": "", "meta": {}, "arguments": [], "supported_languages": ["sql"]
                }),
            )
        })
        .collect();
    let map = |m: &BTreeMap<String, std::collections::BTreeSet<String>>| -> Json {
        Json::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), json!(v.iter().collect::<Vec<_>>())))
                .collect(),
        )
    };
    json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
            "dbt_version": DBT_VERSION,
            "generated_at": now_iso(),
            "invocation_id": p.globals.invocation_id,
            "env": {},
            "project_name": p.project_name,
            "adapter_type": p.kind.name(),
            "send_anonymous_usage_stats": false,
        },
        "nodes": nodes,
        "sources": sources,
        "macros": macro_nodes,
        "docs": {},
        "exposures": {},
        "metrics": {},
        "groups": {},
        "selectors": {},
        "disabled": {},
        "parent_map": map(&p.graph.parents),
        "child_map": map(&p.graph.children),
        "group_map": {},
        "saved_queries": {},
        "semantic_models": {},
        "unit_tests": {},
    })
}

pub fn write_manifest(dir: &Path, manifest: &Json) -> anyhow::Result<()> {
    write_json(dir, "manifest.json", manifest)
}

/// Writes run_results.json for `command` (`run`, `test`, `seed`, `build`, `compile`).
pub fn write_run_results(
    dir: &Path,
    p: &Parsed,
    command: &str,
    args: Json,
    results: &[NodeResult],
    elapsed: f64,
    started_at: &str,
) -> anyhow::Result<()> {
    let results: Vec<Json> = results
        .iter()
        .map(|r| {
            json!({
                "status": r.status,
                "timing": r.timing,
                "thread_id": r.thread_id,
                "execution_time": r.execution_time,
                "adapter_response": {"_message": r.message, "code": r.status.to_ascii_uppercase(), "rows_affected": r.rows_affected},
                "message": r.message,
                "failures": r.failures,
                "unique_id": r.unique_id,
                "compiled": r.compiled_code.is_some(),
                "compiled_code": r.compiled_code,
                "relation_name": r.relation_name,
                "batch_results": null,
            })
        })
        .collect();
    let mut args = args;
    if let Some(o) = args.as_object_mut() {
        o.insert("which".into(), json!(command));
    }
    let doc = json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "dbt_version": DBT_VERSION,
            "generated_at": now_iso(),
            "invocation_id": p.globals.invocation_id,
            "invocation_started_at": started_at,
            "env": {},
        },
        "results": results,
        "elapsed_time": elapsed,
        "args": args,
    });
    write_json(dir, "run_results.json", &doc)
}
