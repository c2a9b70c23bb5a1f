//! Running nodes: compiling each just before it runs, a model by its materialization, a seed,
//! a test (`test`); in dependency order, independent ones in parallel (`schedule`).

mod schedule;
mod test;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::artifacts::NodeResult;
use super::catalog::Catalog;
use super::changes::Feed;
use super::jinja::{BatchFilter, NodeCtx};
use super::materializations::{self, Build, Compiler};
use super::node::{Node, ResourceType};
use super::parse::Parsed;
use super::seeds;
use crate::warehouse::Warehouse;

/// What a command does with the nodes it selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Test,
    Seed,
    Build,
    Compile,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Test => "test",
            Mode::Seed => "seed",
            Mode::Build => "build",
            Mode::Compile => "compile",
        }
    }

    /// Whether this command executes nodes of this type.
    pub fn takes(self, n: &Node) -> bool {
        match (self, n.resource_type) {
            (_, ResourceType::Source) => false,
            (Mode::Run, ResourceType::Model) => !materializations::inlined(&n.config),
            (Mode::Compile, ResourceType::Model) => !materializations::inlined(&n.config),
            (Mode::Compile, ResourceType::Test) => true,
            (Mode::Test, ResourceType::Test) => true,
            (Mode::Seed, ResourceType::Seed) => true,
            (Mode::Build, ResourceType::Model) => !materializations::inlined(&n.config),
            (Mode::Build, ResourceType::Seed | ResourceType::Test) => true,
            _ => false,
        }
    }
}

pub struct Runner {
    pub wh: Option<Arc<dyn Warehouse>>,
    pub parsed: Arc<Parsed>,
    pub full_refresh: bool,
    pub threads: usize,
    /// `target/compiled/<project>/`
    pub compiled_dir: PathBuf,
    /// Compiled code by node, for the manifest.
    pub compiled: Mutex<BTreeMap<String, String>>,
    /// The warehouse's relations, columns and watermarks, read once for the run.
    pub catalog: Catalog,
    /// Called with each result as it completes (to print progress).
    pub on_result: Box<dyn Fn(&NodeResult, &Node) + Send + Sync>,
}

struct Outcome {
    status: &'static str,
    rows: u64,
    message: String,
    failures: Option<u64>,
}

fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl Runner {
    fn wh(&self) -> anyhow::Result<&dyn Warehouse> {
        self.wh.as_deref().context("no warehouse connection")
    }

    /// Compiles a model or singular test: renders it and inlines the ephemeral models it uses.
    pub fn compile(
        &self,
        node: &Node,
        is_incremental: bool,
        filter: Option<BatchFilter>,
    ) -> anyhow::Result<String> {
        let p = &self.parsed;
        let template = node.template.as_deref().context("nothing to compile")?;
        let ctx = NodeCtx::compile(
            p.kind,
            Arc::clone(&p.resolver),
            is_incremental,
            filter.clone(),
        );
        let this = (!node.relation.is_empty()).then(|| node.relation_object());
        let sql = p
            .jinja
            .render(template, &ctx, this.as_ref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let sql = sql.trim().trim_end_matches(';').trim_end().to_string();
        let collected = ctx.take();
        let mut ctes: Vec<(String, String)> = collected.filtered;
        self.collect_ctes(
            &collected.ephemerals,
            &filter,
            &mut ctes,
            &mut BTreeSet::new(),
        )?;
        if ctes.is_empty() {
            return Ok(sql);
        }
        let with = ctes
            .iter()
            .map(|(name, body)| format!("{name} AS (\n{body}\n)"))
            .collect::<Vec<_>>()
            .join(",\n");
        Ok(format!(
            "WITH {with}\nSELECT * FROM (\n{sql}\n) AS __klines_model"
        ))
    }

    fn collect_ctes(
        &self,
        ids: &[String],
        filter: &Option<BatchFilter>,
        out: &mut Vec<(String, String)>,
        seen: &mut BTreeSet<String>,
    ) -> anyhow::Result<()> {
        for id in ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            let e = &self.parsed.nodes[id];
            let ctx = NodeCtx::compile(
                self.parsed.kind,
                Arc::clone(&self.parsed.resolver),
                false,
                filter.clone(),
            );
            let body = self
                .parsed
                .jinja
                .render(e.template.as_deref().unwrap_or_default(), &ctx, None)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let collected = ctx.take();
            for f in collected.filtered {
                if !out.iter().any(|(n, _)| *n == f.0) {
                    out.push(f);
                }
            }
            self.collect_ctes(&collected.ephemerals, filter, out, seen)?;
            out.push((
                format!("__klines_cte__{}", e.name),
                body.trim().trim_end_matches(';').to_string(),
            ));
        }
        Ok(())
    }

    fn write_compiled(&self, node: &Node, sql: &str) {
        let path = self.compiled_dir.join(node.compiled_path());
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(&path, sql) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write compiled SQL");
        }
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.unique_id.clone(), sql.to_string());
    }

    /// The feeds a time-range model follows: its parents that record changes.
    fn feeds(&self, node: &Node) -> Vec<(String, Feed)> {
        let p = &self.parsed;
        node.depends_on
            .iter()
            .filter_map(|d| {
                let parent = &p.nodes[d];
                match parent.resource_type {
                    ResourceType::Source => parent
                        .config
                        .all
                        .get("load_history")
                        .and_then(|v| v.as_str())
                        .map(|h| {
                            (
                                d.clone(),
                                Feed::LoadHistory {
                                    relation: crate::warehouse::ident::relation(
                                        p.kind,
                                        &parent.schema,
                                        h,
                                    ),
                                },
                            )
                        }),
                    ResourceType::Model if materializations::records_changes(&parent.config) => {
                        Some((
                            d.clone(),
                            Feed::Model {
                                unique_id: d.clone(),
                            },
                        ))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    async fn run_model(&self, node: &Node) -> anyhow::Result<Outcome> {
        let kind =
            materializations::find(node.config.materialized.as_str()).with_context(|| {
                format!(
                    "{}: no materialization {}",
                    node.path,
                    node.config.materialized.as_str()
                )
            })?;
        let build = Build {
            wh: self.wh()?,
            node,
            schema: &self.parsed.target_schema,
            full_refresh: self.full_refresh,
            feeds: self.feeds(node),
            compiler: self,
            catalog: &self.catalog,
        };
        let built = kind.build(&build).await?;
        Ok(Outcome {
            status: "success",
            rows: built.rows,
            message: built.message,
            failures: None,
        })
    }

    async fn execute_one(&self, node: &Node, mode: Mode) -> anyhow::Result<Outcome> {
        match (mode, node.resource_type) {
            (Mode::Compile, ResourceType::Test) => {
                let sql = self.test_sql(node)?;
                self.write_compiled(node, &sql);
                Ok(Outcome {
                    status: "success",
                    rows: 0,
                    message: "compiled".into(),
                    failures: None,
                })
            }
            (Mode::Compile, _) => {
                let is_inc = match (
                    self.wh.as_deref(),
                    materializations::find(node.config.materialized.as_str()),
                ) {
                    (Some(wh), Some(kind)) if !self.full_refresh => {
                        kind.compiles_incremental(wh, node).await?
                    }
                    _ => false,
                };
                let sql = self.compile(node, is_inc, None)?;
                self.write_compiled(node, &sql);
                Ok(Outcome {
                    status: "success",
                    rows: 0,
                    message: "compiled".into(),
                    failures: None,
                })
            }
            (_, ResourceType::Model) => self.run_model(node).await,
            (_, ResourceType::Seed) => {
                let rows = seeds::load(self.wh()?, node).await?;
                Ok(Outcome {
                    status: "success",
                    rows,
                    message: format!("seed {}: {rows} rows", node.relation),
                    failures: None,
                })
            }
            (_, ResourceType::Test) => self.run_test(node).await,
            (_, ResourceType::Source) => Ok(Outcome {
                status: "success",
                rows: 0,
                message: String::new(),
                failures: None,
            }),
        }
    }
}

impl Compiler for Runner {
    fn render(
        &self,
        node: &Node,
        is_incremental: bool,
        filter: Option<BatchFilter>,
    ) -> anyhow::Result<String> {
        let sql = self.compile(node, is_incremental, filter)?;
        self.write_compiled(node, &sql);
        Ok(sql)
    }
}
