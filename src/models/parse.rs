//! Parsing a project into nodes (models, seeds, tests, sources) and their graph.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use super::config::{Materialized, NodeConfig, project_layer};
use super::graph::Graph;
use super::jinja::{Globals, Jinja, NodeCtx, Relation, Resolver, Target};
use super::project::{ColumnDoc, Files, TestDef};
use crate::error::UsageError;
use crate::warehouse::{Kind, ident};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    Model,
    Seed,
    Test,
    Source,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Model => "model",
            ResourceType::Seed => "seed",
            ResourceType::Test => "test",
            ResourceType::Source => "source",
        }
    }
}

/// A data test: a generic one from yml, or a singular `.sql` file.
#[derive(Debug, Clone)]
pub struct TestSpec {
    pub def: TestDef,
    /// The node it tests (for generic tests).
    pub attached: Option<String>,
    pub column: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub unique_id: String,
    pub resource_type: ResourceType,
    pub name: String,
    /// The file, relative to the project directory.
    pub path: String,
    pub folders: Vec<String>,
    pub fqn: Vec<String>,
    pub raw_code: String,
    /// The template to render (models and singular tests).
    pub template: Option<String>,
    pub description: String,
    pub columns: Vec<ColumnDoc>,
    pub config: NodeConfig,
    pub refs: Vec<String>,
    pub sources: Vec<(String, String)>,
    pub depends_on: Vec<String>,
    pub schema: String,
    pub identifier: String,
    /// The quoted relation name (empty for ephemeral models and tests).
    pub relation: String,
    pub test: Option<TestSpec>,
    pub checksum: String,
}

impl Node {
    /// Where its compiled SQL goes under `target/compiled/<project>/`: the file itself, or for
    /// a generic test `<yml path>/<test name>.sql`, one file per test, as dbt does.
    pub fn compiled_path(&self) -> String {
        if self.resource_type == ResourceType::Test && !self.path.ends_with(".sql") {
            format!("{}/{}.sql", self.path, self.name)
        } else {
            self.path.clone()
        }
    }

    pub fn relation_object(&self) -> Relation {
        Relation {
            database: None,
            schema: self.schema.clone(),
            identifier: self.identifier.clone(),
            rendered: self.relation.clone(),
        }
    }
}

/// The folders of a yml file below its top folder: `models/ohlc/schema.yml` gives `[ohlc]`.
fn yml_folders(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.len() {
        0..=2 => Vec::new(),
        n => parts[1..n - 1].iter().map(|s| s.to_string()).collect(),
    }
}

/// A parsed project.
pub struct Parsed {
    pub project_name: String,
    pub kind: Kind,
    pub target_schema: String,
    pub nodes: BTreeMap<String, Node>,
    pub graph: Graph,
    pub jinja: Jinja,
    pub resolver: Arc<Resolver>,
    pub globals: Globals,
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

/// The 1-based line of the first `needle` in `text` (for errors about a ref or source).
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// Parses the project's files for a warehouse of `kind` whose models go in `target_schema`.
pub fn parse(
    files: &Files,
    globals: Globals,
    models_tree: &Json,
    seeds_tree: &Json,
    target_schema: &str,
) -> anyhow::Result<Parsed> {
    let kind = globals.kind;
    let project = globals.project_name.clone();
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
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    let empty = Map::new();

    // Sources.
    let mut sources: BTreeMap<(String, String), String> = BTreeMap::new();
    for (path, s) in &files.sources {
        let schema = match &s.schema {
            Some(text) => jinja
                .render_str(path, text)
                .map_err(|e| usage(e.to_string()))?,
            None => s.name.clone(),
        };
        ident::validate(&schema)
            .map_err(|e| usage(format!("{path}: source {}: schema: {e}", s.name)))?;
        for t in &s.tables {
            let identifier = t.identifier.clone().unwrap_or_else(|| t.name.clone());
            ident::validate(&identifier)
                .map_err(|e| usage(format!("{path}: source {}.{}: {e}", s.name, t.name)))?;
            let unique_id = format!("source.{project}.{}.{}", s.name, t.name);
            let config = NodeConfig::from_layers(Materialized::Table, &[&s.config, &t.config])
                .map_err(|e| usage(format!("{path}: source {}.{}: {e}", s.name, t.name)))?;
            nodes.insert(
                unique_id.clone(),
                Node {
                    unique_id: unique_id.clone(),
                    resource_type: ResourceType::Source,
                    name: t.name.clone(),
                    path: path.clone(),
                    folders: Vec::new(),
                    fqn: vec![project.clone(), s.name.clone(), t.name.clone()],
                    raw_code: String::new(),
                    template: None,
                    description: t.description.clone(),
                    columns: t.columns.clone(),
                    config,
                    refs: Vec::new(),
                    sources: Vec::new(),
                    depends_on: Vec::new(),
                    relation: ident::relation(kind, &schema, &identifier),
                    schema: schema.clone(),
                    identifier,
                    test: None,
                    checksum: String::new(),
                },
            );
            sources.insert((s.name.clone(), t.name.clone()), unique_id);
        }
    }

    // Models.
    for f in &files.models {
        if let Some(other) = by_name.get(&f.name) {
            let other_path = &nodes[other].path;
            return Err(usage(format!(
                "{}: a model named {} is already defined in {other_path}",
                f.path, f.name
            )));
        }
        ident::validate(&f.name).map_err(|e| usage(format!("{}: model name: {e}", f.path)))?;
        let ctx = NodeCtx::parse(kind);
        jinja
            .render(&f.path, &ctx, None)
            .map_err(|e| usage(e.to_string()))?;
        let collected = ctx.take();
        let (doc_file, doc) = files.model_docs.get(&f.name).cloned().unwrap_or_default();
        let folders: Vec<&str> = f.folders.iter().map(String::as_str).collect();
        let layer = project_layer(models_tree, &project, &folders);
        let config = NodeConfig::from_layers(
            Materialized::View,
            &[&layer, &doc.config, &collected.config],
        )
        .map_err(|e| usage(format!("{}: {e}", f.path)))?;
        if !config.enabled {
            continue;
        }
        if config.materialized == Materialized::Incremental
            && config
                .incremental_strategy
                .as_deref()
                .unwrap_or("time_range")
                == "time_range"
            && config.event_time.is_some()
        {
            for (k, v) in [
                ("batch_key", &config.batch_key),
                ("time_grain", &config.time_grain),
            ] {
                if v.is_none() {
                    return Err(usage(format!(
                        "{}: incremental by time range needs config {k}",
                        f.path
                    )));
                }
            }
            if super::changes::grain_millis(config.time_grain.as_deref().unwrap_or_default())
                .is_none()
            {
                return Err(usage(format!(
                    "{}: time_grain must be like 1m, 5m, 15m, 1h or 1d",
                    f.path
                )));
            }
            if let Some(v) = config.all.get("lookback")
                && v.as_str().and_then(super::changes::grain_millis).is_none()
            {
                return Err(usage(format!(
                    "{}: lookback {v} must be like 1h, 1d or 60d",
                    f.path
                )));
            }
        }
        if config.materialized == Materialized::Indicators {
            for (k, v) in [
                ("event_time", &config.event_time),
                ("batch_key", &config.batch_key),
                ("time_grain", &config.time_grain),
            ] {
                match v {
                    None => {
                        return Err(usage(format!(
                            "{}: materialized='indicators' needs config {k}",
                            f.path
                        )));
                    }
                    Some(name) if k != "time_grain" => {
                        crate::warehouse::ident::validate(name)
                            .map_err(|e| usage(format!("{}: config {k}: {e}", f.path)))?;
                    }
                    Some(_) => {}
                }
            }
            if super::changes::grain_millis(config.time_grain.as_deref().unwrap_or_default())
                .is_none()
            {
                return Err(usage(format!(
                    "{}: time_grain must be like 1m, 5m, 15m, 1h or 1d",
                    f.path
                )));
            }
            super::indicators::params(&config.all)
                .map_err(|e| usage(format!("{}: config {e}", f.path)))?;
        }
        let schema = schema_for(target_schema, config.schema.as_deref());
        let identifier = config.alias.clone().unwrap_or_else(|| f.name.clone());
        for (what, id) in [("schema", &schema), ("alias", &identifier)] {
            ident::validate(id).map_err(|e| usage(format!("{}: {what}: {e}", f.path)))?;
        }
        let unique_id = format!("model.{project}.{}", f.name);
        let relation = if config.materialized == Materialized::Ephemeral {
            String::new()
        } else {
            ident::relation(kind, &schema, &identifier)
        };
        let _ = doc_file;
        let mut fqn = vec![project.clone()];
        fqn.extend(f.folders.iter().cloned());
        fqn.push(f.name.clone());
        nodes.insert(
            unique_id.clone(),
            Node {
                unique_id: unique_id.clone(),
                resource_type: ResourceType::Model,
                name: f.name.clone(),
                path: f.path.clone(),
                folders: f.folders.clone(),
                fqn,
                raw_code: f.text.clone(),
                template: Some(f.path.clone()),
                description: doc.description.clone(),
                columns: doc.columns.clone(),
                config,
                refs: collected.refs,
                sources: collected.sources,
                depends_on: Vec::new(),
                schema,
                identifier,
                relation,
                test: None,
                checksum: sha256(&f.text),
            },
        );
        by_name.insert(f.name.clone(), unique_id);
    }

    // Seeds.
    for f in &files.seeds {
        if let Some(other) = by_name.get(&f.name) {
            return Err(usage(format!(
                "{}: the name {} is already used by {}",
                f.path, f.name, nodes[other].path
            )));
        }
        ident::validate(&f.name).map_err(|e| usage(format!("{}: seed name: {e}", f.path)))?;
        let (_, doc) = files.seed_docs.get(&f.name).cloned().unwrap_or_default();
        let folders: Vec<&str> = f.folders.iter().map(String::as_str).collect();
        let layer = project_layer(seeds_tree, &project, &folders);
        let config = NodeConfig::from_layers(Materialized::Seed, &[&layer, &doc.config])
            .map_err(|e| usage(format!("{}: {e}", f.path)))?;
        let schema = schema_for(target_schema, config.schema.as_deref());
        let identifier = config.alias.clone().unwrap_or_else(|| f.name.clone());
        let unique_id = format!("seed.{project}.{}", f.name);
        nodes.insert(
            unique_id.clone(),
            Node {
                unique_id: unique_id.clone(),
                resource_type: ResourceType::Seed,
                name: f.name.clone(),
                path: f.path.clone(),
                folders: f.folders.clone(),
                fqn: vec![project.clone(), f.name.clone()],
                raw_code: f.text.clone(),
                template: None,
                description: doc.description.clone(),
                columns: doc.columns.clone(),
                config,
                refs: Vec::new(),
                sources: Vec::new(),
                depends_on: Vec::new(),
                relation: ident::relation(kind, &schema, &identifier),
                schema,
                identifier,
                test: None,
                checksum: sha256(&f.text),
            },
        );
        by_name.insert(f.name.clone(), unique_id);
    }

    // Generic tests from yml, on models, seeds and sources.
    let mut tests: Vec<Node> = Vec::new();
    let attach = |path: &str,
                  attached: &Node,
                  column: Option<&ColumnDoc>,
                  def: &TestDef,
                  tests: &mut Vec<Node>|
     -> anyhow::Result<()> {
        let column_name = column.map(|c| c.name.clone()).or_else(|| {
            def.args
                .get("column_name")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        });
        if let Some(c) = &column_name {
            ident::validate(c)
                .map_err(|e| usage(format!("{path}: {}: column {c}: {e}", attached.name)))?;
        }
        let name = super::tests::generic_name(
            &def.name,
            &attached.name,
            column_name.as_deref(),
            &def.args,
        );
        let canonical = serde_json::json!({"test": def.name, "args": def.args, "on": attached.unique_id, "column": column_name});
        let unique_id = format!(
            "test.{project}.{name}.{}",
            &sha256(&canonical.to_string())[..10]
        );
        // Arguments are Jinja, as in dbt: `{{ var('whale_ratio', 5) }}` reads the run's vars,
        // so a test checks what its model built. The name and id come from the text as written.
        let def = &TestDef {
            name: def.name.clone(),
            args: render_args(&jinja, path, &def.args)?,
        };
        let test_config: Map<String, Json> = def
            .args
            .get("config")
            .and_then(|c| c.as_object())
            .cloned()
            .unwrap_or_default();
        let config = NodeConfig::from_layers(Materialized::Test, &[&test_config])
            .map_err(|e| usage(format!("{path}: {name}: {e}")))?;
        // dbt's fqn for a test: project, the yml's folders, the test's unique name; so
        // `klines ls` prints a name that selects this one test.
        let fqn = std::iter::once(project.clone())
            .chain(yml_folders(path))
            .chain(std::iter::once(name.clone()))
            .collect();
        tests.push(Node {
            unique_id,
            resource_type: ResourceType::Test,
            name,
            path: path.to_string(),
            folders: Vec::new(),
            fqn,
            raw_code: String::new(),
            template: None,
            description: String::new(),
            columns: Vec::new(),
            config,
            refs: Vec::new(),
            sources: Vec::new(),
            depends_on: vec![attached.unique_id.clone()],
            schema: attached.schema.clone(),
            identifier: String::new(),
            relation: String::new(),
            test: Some(TestSpec {
                def: def.clone(),
                attached: Some(attached.unique_id.clone()),
                column: column_name,
            }),
            checksum: String::new(),
        });
        Ok(())
    };
    let docs = files.model_docs.iter().chain(files.seed_docs.iter());
    for (name, (path, doc)) in docs {
        let Some(id) = by_name.get(name) else {
            continue;
        };
        let target = nodes[id].clone();
        for c in &doc.columns {
            for t in &c.tests {
                attach(path, &target, Some(c), t, &mut tests)?;
            }
        }
        for t in &doc.tests {
            attach(path, &target, None, t, &mut tests)?;
        }
    }
    for (path, s) in &files.sources {
        for t in &s.tables {
            let target = nodes[&sources[&(s.name.clone(), t.name.clone())]].clone();
            for c in &t.columns {
                for def in &c.tests {
                    attach(path, &target, Some(c), def, &mut tests)?;
                }
            }
            for def in &t.tests {
                attach(path, &target, None, def, &mut tests)?;
            }
        }
    }
    // Singular tests.
    for f in &files.singular_tests {
        let ctx = NodeCtx::parse(kind);
        jinja
            .render(&f.path, &ctx, None)
            .map_err(|e| usage(e.to_string()))?;
        let collected = ctx.take();
        let config = NodeConfig::from_layers(Materialized::Test, &[&empty, &collected.config])
            .map_err(|e| usage(format!("{}: {e}", f.path)))?;
        tests.push(Node {
            unique_id: format!("test.{project}.{}", f.name),
            resource_type: ResourceType::Test,
            name: f.name.clone(),
            path: f.path.clone(),
            folders: f.folders.clone(),
            fqn: vec![project.clone(), f.name.clone()],
            raw_code: f.text.clone(),
            template: Some(f.path.clone()),
            description: String::new(),
            columns: Vec::new(),
            config,
            refs: collected.refs,
            sources: collected.sources,
            depends_on: Vec::new(),
            schema: target_schema.to_string(),
            identifier: String::new(),
            relation: String::new(),
            test: Some(TestSpec {
                def: TestDef {
                    name: "singular".into(),
                    args: Map::new(),
                },
                attached: None,
                column: None,
            }),
            checksum: sha256(&f.text),
        });
    }
    for t in tests {
        nodes.insert(t.unique_id.clone(), t);
    }

    // Resolve refs and sources into dependencies.
    let ids: Vec<String> = nodes.keys().cloned().collect();
    for id in &ids {
        let node = &nodes[id];
        let mut deps: BTreeSet<String> = node.depends_on.iter().cloned().collect();
        for r in &node.refs {
            match by_name.get(r) {
                Some(d) => {
                    deps.insert(d.clone());
                }
                None => {
                    let line = line_of(&node.raw_code, &format!("'{r}'"))
                        .or_else(|| line_of(&node.raw_code, &format!("\"{r}\"")));
                    return Err(usage(format!(
                        "{}{}: ref('{r}') does not match any model or seed",
                        node.path,
                        line.map(|l| format!(" line {l}")).unwrap_or_default()
                    )));
                }
            }
        }
        for (s, t) in &node.sources {
            match sources.get(&(s.clone(), t.clone())) {
                Some(d) => {
                    deps.insert(d.clone());
                }
                None => {
                    let line = line_of(&node.raw_code, &format!("'{t}'"));
                    return Err(usage(format!(
                        "{}{}: source('{s}', '{t}') is not defined in any yml file",
                        node.path,
                        line.map(|l| format!(" line {l}")).unwrap_or_default()
                    )));
                }
            }
        }
        if let Some(TestSpec { def, .. }) = &node.test
            && def.name == "relationships"
        {
            let to = def
                .args
                .get("to")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let parent = super::tests::parse_ref(to)
                .and_then(|n| by_name.get(&n).cloned())
                .ok_or_else(|| {
                    usage(format!(
                        "{}: {}: relationships `to: {to}` must be ref('a model or seed')",
                        node.path, node.name
                    ))
                })?;
            deps.insert(parent);
        }
        nodes.get_mut(id).expect("node").depends_on = deps.into_iter().collect();
    }
    let mut graph = Graph::default();
    for (id, n) in &nodes {
        graph.add_node(id);
        for d in &n.depends_on {
            graph.add_edge(d, id);
        }
    }
    if let Err(cycle) = graph.topological() {
        let path: Vec<String> = cycle
            .iter()
            .map(|id| format!("{} ({})", nodes[id].name, nodes[id].path))
            .collect();
        return Err(usage(format!("dependency cycle: {}", path.join(" -> "))));
    }

    // What refs and sources resolve to when compiling.
    let mut resolver = Resolver::default();
    for n in nodes.values() {
        let target = |n: &Node| Target::Relation {
            relation: n.relation_object(),
            event_time: n.config.event_time.clone(),
            batch_key: n.config.batch_key.clone(),
        };
        match n.resource_type {
            ResourceType::Model if n.config.materialized == Materialized::Ephemeral => {
                resolver.refs.insert(
                    n.name.clone(),
                    Target::Ephemeral {
                        cte: format!("__klines_cte__{}", n.name),
                        unique_id: n.unique_id.clone(),
                    },
                );
            }
            ResourceType::Model | ResourceType::Seed => {
                resolver.refs.insert(n.name.clone(), target(n));
            }
            ResourceType::Source => {
                let src = n.fqn[1].clone();
                resolver.sources.insert((src, n.name.clone()), target(n));
            }
            ResourceType::Test => {}
        }
    }
    Ok(Parsed {
        project_name: project,
        kind,
        target_schema: target_schema.to_string(),
        nodes,
        graph,
        jinja,
        resolver: Arc::new(resolver),
        globals,
    })
}

/// The string values of a test's arguments rendered with Jinja (lists and maps too).
fn render_args(jinja: &Jinja, path: &str, args: &Map<String, Json>) -> anyhow::Result<Map<String, Json>> {
    fn render(jinja: &Jinja, path: &str, v: &Json) -> anyhow::Result<Json> {
        Ok(match v {
            Json::String(text) => Json::String(
                jinja
                    .render_str(path, text)
                    .map_err(|e| usage(e.to_string()))?,
            ),
            Json::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|i| render(jinja, path, i))
                    .collect::<anyhow::Result<_>>()?,
            ),
            Json::Object(map) => Json::Object(render_args(jinja, path, map)?),
            other => other.clone(),
        })
    }
    args.iter()
        .map(|(k, v)| Ok((k.clone(), render(jinja, path, v)?)))
        .collect()
}
