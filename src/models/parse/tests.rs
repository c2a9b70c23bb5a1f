//! Tests: generic ones from yml (on models, seeds and sources, on a column or the whole
//! relation) and singular ones (`tests/*.sql`).

use serde_json::{Map, Value as Json};

use super::{Parser, kinds, sha256, usage};
use crate::models::config::{Materialized, NodeConfig};
use crate::models::jinja::{Jinja, NodeCtx};
use crate::models::node::{Node, ResourceType, TestSpec};
use crate::models::project::{ColumnDoc, TestDef};
use crate::warehouse::ident;

/// The folders of a yml file below its top folder: `models/ohlc/schema.yml` gives `[ohlc]`.
fn yml_folders(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.len() {
        0..=2 => Vec::new(),
        n => parts[1..n - 1].iter().map(|s| s.to_string()).collect(),
    }
}

impl Parser<'_> {
    /// Every test of the project.
    pub(super) fn tests(&self) -> anyhow::Result<Vec<Node>> {
        let mut tests = Vec::new();
        let docs = self
            .files
            .model_docs
            .iter()
            .chain(self.files.seed_docs.iter());
        for (name, (path, doc)) in docs {
            let Some(id) = self.by_name.get(name) else {
                continue;
            };
            let target = &self.nodes[id];
            for c in &doc.columns {
                for t in &c.tests {
                    tests.push(self.generic(path, target, Some(c), t)?);
                }
            }
            for t in &doc.tests {
                tests.push(self.generic(path, target, None, t)?);
            }
        }
        for (path, s) in &self.files.sources {
            for t in &s.tables {
                let target = &self.nodes[&self.sources[&(s.name.clone(), t.name.clone())]];
                for c in &t.columns {
                    for def in &c.tests {
                        tests.push(self.generic(path, target, Some(c), def)?);
                    }
                }
                for def in &t.tests {
                    tests.push(self.generic(path, target, None, def)?);
                }
            }
        }
        for f in &self.files.singular_tests {
            tests.push(self.singular(f)?);
        }
        Ok(tests)
    }

    /// A generic test of `attached` (on `column`, if given) declared in the yml at `path`.
    fn generic(
        &self,
        path: &str,
        attached: &Node,
        column: Option<&ColumnDoc>,
        def: &TestDef,
    ) -> anyhow::Result<Node> {
        let project = &self.project;
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
        let name = crate::models::tests::generic_name(
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
        let def = TestDef {
            name: def.name.clone(),
            args: render_args(&self.jinja, path, &def.args)?,
        };
        let test_config: Map<String, Json> = def
            .args
            .get("config")
            .and_then(|c| c.as_object())
            .cloned()
            .unwrap_or_default();
        let config = NodeConfig::from_layers(Materialized::TEST, &kinds(), &[&test_config])
            .map_err(|e| usage(format!("{path}: {name}: {e}")))?;
        // dbt's fqn for a test: project, the yml's folders, the test's unique name; so
        // `klines ls` prints a name that selects this one test.
        let fqn = std::iter::once(project.clone())
            .chain(yml_folders(path))
            .chain(std::iter::once(name.clone()))
            .collect();
        Ok(Node {
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
                def,
                attached: Some(attached.unique_id.clone()),
                column: column_name,
            }),
            checksum: String::new(),
        })
    }

    /// A singular test: a query whose rows are the failures.
    fn singular(&self, f: &crate::models::project::SourceFile) -> anyhow::Result<Node> {
        let ctx = NodeCtx::parse(self.kind);
        self.jinja
            .render(&f.path, &ctx, None)
            .map_err(|e| usage(e.to_string()))?;
        let collected = ctx.take();
        let config = NodeConfig::from_layers(
            Materialized::TEST,
            &kinds(),
            &[&Map::new(), &collected.config],
        )
        .map_err(|e| usage(format!("{}: {e}", f.path)))?;
        Ok(Node {
            unique_id: format!("test.{}.{}", self.project, f.name),
            resource_type: ResourceType::Test,
            name: f.name.clone(),
            path: f.path.clone(),
            folders: f.folders.clone(),
            fqn: vec![self.project.clone(), f.name.clone()],
            raw_code: f.text.clone(),
            template: Some(f.path.clone()),
            description: String::new(),
            columns: Vec::new(),
            config,
            refs: collected.refs,
            sources: collected.sources,
            depends_on: Vec::new(),
            schema: self.target_schema.to_string(),
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
        })
    }
}

/// The string values of a test's arguments rendered with Jinja (lists and maps too).
fn render_args(
    jinja: &Jinja,
    path: &str,
    args: &Map<String, Json>,
) -> anyhow::Result<Map<String, Json>> {
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
