//! Running nodes in dependency order, independent ones in parallel up to `threads`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;

use super::artifacts::{NodeResult, Timing};
use super::changes::{self, Feed};
use super::config::Materialized;
use super::jinja::{BatchFilter, NodeCtx};
use super::materialize;
use super::parse::{Node, Parsed, ResourceType};
use super::{seeds, tests};
use crate::warehouse::{RelationType, Warehouse};

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
            (Mode::Run, ResourceType::Model) => n.config.materialized != Materialized::Ephemeral,
            (Mode::Compile, ResourceType::Model) => {
                n.config.materialized != Materialized::Ephemeral
            }
            (Mode::Compile, ResourceType::Test) => true,
            (Mode::Test, ResourceType::Test) => true,
            (Mode::Seed, ResourceType::Seed) => true,
            (Mode::Build, ResourceType::Model) => n.config.materialized != Materialized::Ephemeral,
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
                    ResourceType::Model if records_changes(parent) => Some((
                        d.clone(),
                        Feed::Model {
                            unique_id: d.clone(),
                        },
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    async fn run_model(&self, node: &Node) -> anyhow::Result<Outcome> {
        let wh = self.wh()?;
        let ok = |rows: u64, message: String| Outcome {
            status: "success",
            rows,
            message,
            failures: None,
        };
        match node.config.materialized {
            Materialized::View => {
                let sql = self.compile(node, false, None)?;
                self.write_compiled(node, &sql);
                materialize::view(wh, node, &sql).await?;
                Ok(ok(0, format!("view {}", node.relation)))
            }
            Materialized::Table => {
                let sql = self.compile(node, false, None)?;
                self.write_compiled(node, &sql);
                let rows = materialize::table(wh, node, &sql, Vec::new()).await?;
                Ok(ok(rows, format!("table {}: {rows} rows", node.relation)))
            }
            Materialized::Incremental => self.run_incremental(wh, node).await,
            Materialized::Indicators => {
                let sql = self.compile(node, false, None)?;
                self.write_compiled(node, &sql);
                let run = super::indicators::Run {
                    wh,
                    node,
                    schema: &self.parsed.target_schema,
                    feeds: self.feeds(node),
                    full_refresh: self.full_refresh,
                };
                let (rows, message) = run.run(&sql).await?;
                Ok(ok(rows, message))
            }
            _ => Ok(ok(0, "nothing to build".into())),
        }
    }

    async fn run_incremental(&self, wh: &dyn Warehouse, node: &Node) -> anyhow::Result<Outcome> {
        let ok = |rows: u64, message: String| Outcome {
            status: "success",
            rows,
            message,
            failures: None,
        };
        let exists = materialize::existing(wh, node).await? == Some(RelationType::Table);
        let schema = &self.parsed.target_schema;
        if !is_time_range(node) {
            let sql = self.compile(node, exists && !self.full_refresh, None)?;
            self.write_compiled(node, &sql);
            if !exists || self.full_refresh {
                let rows = materialize::table(wh, node, &sql, Vec::new()).await?;
                return Ok(ok(rows, format!("built {}: {rows} rows", node.relation)));
            }
            let rows = match node.config.incremental_strategy.as_deref() {
                Some("delete+insert") | Some("merge") => {
                    materialize::delete_insert(wh, node, &sql).await?
                }
                _ => materialize::append(wh, node, &sql).await?,
            };
            return Ok(ok(
                rows,
                format!("inserted {rows} rows into {}", node.relation),
            ));
        }
        let feeds = self.feeds(node);
        if feeds.is_empty() {
            anyhow::bail!(
                "{}: incremental by time range needs a parent that records changes (a source with `load_history`, or another such model)",
                node.path
            );
        }
        let (event_time, batch_key) = (
            node.config.event_time.clone().unwrap_or_default(),
            node.config.batch_key.clone().unwrap_or_default(),
        );
        let grain = changes::grain_millis(node.config.time_grain.as_deref().unwrap_or_default())
            .context("time_grain")?;
        let kind = wh.kind();
        if !exists || self.full_refresh {
            // Everything up to the parents' current changes is in the full build.
            let mut marks = Vec::new();
            for (parent, feed) in &feeds {
                if let Some(id) = changes::latest_id(wh, schema, feed).await? {
                    marks.push((parent.clone(), id));
                }
            }
            let sql = self.compile(node, false, None)?;
            self.write_compiled(node, &sql);
            let tmp = materialize::build_tmp(wh, node, &sql).await?;
            // The whole table is new to the models downstream.
            let spans = wh
                .query(&format!("SELECT {batch_key}, min({event_time}), max({event_time}) FROM {tmp} GROUP BY {batch_key}"))
                .await?;
            let mut ranges = Vec::new();
            for r in &spans.rows {
                if let (Some(k), Some(s), Some(e)) =
                    (r[0].as_str(), r[1].as_millis(), r[2].as_millis())
                {
                    ranges.push((k.to_string(), s, e + grain));
                }
            }
            let filter = changes::widen(&ranges, grain);
            let mut extra = changes::forget(kind, schema, &node.unique_id);
            extra.extend(changes::record(
                kind,
                schema,
                &node.unique_id,
                &filter,
                &marks,
                crate::time::now_ms(),
            ));
            let rows = materialize::swap_in(wh, node, &tmp, extra).await?;
            materialize::range_index(wh, node, &batch_key, &event_time).await?;
            return Ok(ok(rows, format!("built {}: {rows} rows", node.relation)));
        }
        let mut ranges = Vec::new();
        let mut marks = Vec::new();
        for (parent, feed) in &feeds {
            let p = changes::pending(wh, schema, &node.unique_id, parent, feed).await?;
            ranges.extend(p.ranges);
            if let Some(id) = p.max_id {
                marks.push((parent.clone(), id));
            }
        }
        if ranges.is_empty() {
            return Ok(ok(0, "nothing new".into()));
        }
        // With a lookback, a change also rewrites the buckets after it that its windows
        // reach, and the rows read start that much earlier; only the rewritten ranges are
        // inserted.
        let lookback = lookback_millis(node).unwrap_or(0);
        let ranges: Vec<_> = ranges
            .into_iter()
            .map(|(k, s, e)| (k, s, e + lookback))
            .collect();
        let filter = changes::widen(&ranges, grain);
        let condition = filter.condition(kind, &batch_key, &event_time);
        let read = changes::widen(
            &ranges
                .iter()
                .map(|(k, s, e)| (k.clone(), s - lookback, *e))
                .collect::<Vec<_>>(),
            grain,
        );
        let sql = self.compile(node, true, Some(read))?;
        self.write_compiled(node, &sql);
        let sql = if lookback > 0 {
            format!("SELECT * FROM (\n{sql}\n) AS klines_lookback WHERE {condition}")
        } else {
            sql
        };
        let mut statements = materialize::replace_range(wh, node, &condition, &sql).await?;
        statements.extend(changes::record(
            kind,
            schema,
            &node.unique_id,
            &filter,
            &marks,
            crate::time::now_ms(),
        ));
        let counts = wh.transaction(&statements).await?;
        let buckets: usize = filter.ranges.values().map(|r| r.ranges().len()).sum();
        Ok(ok(
            counts[1],
            format!(
                "{} ranges in {} keys: {} rows deleted, {} inserted",
                buckets,
                filter.ranges.len(),
                counts[0],
                counts[1]
            ),
        ))
    }

    /// The failing-rows query of a test.
    pub fn test_sql(&self, node: &Node) -> anyhow::Result<String> {
        let p = &self.parsed;
        let spec = node.test.as_ref().context("not a test")?;
        match &spec.attached {
            None => self.compile(node, false, None),
            Some(attached) => {
                let target = &p.nodes[attached];
                if target.relation.is_empty() {
                    anyhow::bail!(
                        "{}: {} is ephemeral and cannot be tested",
                        node.path,
                        target.name
                    );
                }
                let to = if spec.def.name == "relationships" {
                    let name = tests::parse_ref(
                        spec.def
                            .args
                            .get("to")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default(),
                    )
                    .unwrap_or_default();
                    p.nodes
                        .values()
                        .find(|n| n.name == name && n.resource_type != ResourceType::Test)
                        .map(|n| n.relation.clone())
                } else {
                    None
                };
                tests::generic_sql(
                    &spec.def,
                    &target.relation,
                    spec.column.as_deref(),
                    to.as_deref(),
                )
                .map_err(|e| anyhow::anyhow!("{}: {}: {e}", node.path, node.name))
            }
        }
    }

    async fn run_test(&self, node: &Node) -> anyhow::Result<Outcome> {
        let sql = self.test_sql(node)?;
        self.write_compiled(node, &sql);
        let stored = self.store_failures(node, &sql).await?;
        let n = self
            .wh()?
            .query(&tests::count_sql(&sql))
            .await?
            .scalar()
            .and_then(|v| v.as_i64())
            .unwrap_or(0) as u64;
        // dbt's rule: with severity error, `error_if` fails the test and else `warn_if` warns;
        // with severity warn, only `warn_if` counts.
        let c = &node.config;
        let (status, rule) = if c.severity == "error" && c.error_if.holds(n) {
            ("fail", format!("fail if {}", c.error_if))
        } else if c.warn_if.holds(n) {
            ("warn", format!("warn if {}", c.warn_if))
        } else {
            ("pass", String::new())
        };
        let message = if status == "pass" {
            if n == 0 {
                "PASS".to_string()
            } else {
                format!("PASS ({n} result{}, within the thresholds)", if n == 1 { "" } else { "s" })
            }
        } else {
            format!(
                "Got {n} result{}, configured to {rule}",
                if n == 1 { "" } else { "s" }
            )
        };
        let message = match stored {
            Some(table) if status != "pass" || n > 0 => format!("{message}; failing rows in {table}"),
            _ => message,
        };
        Ok(Outcome {
            status,
            rows: 0,
            message,
            failures: Some(n),
        })
    }

    /// dbt's `store_failures`: the test's failing rows, kept in
    /// `<schema>_dbt_test__audit.<test name>` (replaced on every run) for inspection.
    async fn store_failures(&self, node: &Node, sql: &str) -> anyhow::Result<Option<String>> {
        if !node
            .config
            .all
            .get("store_failures")
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
        {
            return Ok(None);
        }
        let wh = self.wh()?;
        let kind = wh.kind();
        let schema = format!("{}_dbt_test__audit", node.schema);
        for id in [&schema, &node.name] {
            crate::warehouse::ident::validate(id)
                .map_err(|e| anyhow::anyhow!("{}: store_failures: {e}", node.name))?;
        }
        let table = crate::warehouse::ident::relation(kind, &schema, &node.name);
        wh.execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            crate::warehouse::ident::quote(kind, &schema)
        ))
        .await?;
        wh.execute(&format!("DROP TABLE IF EXISTS {table}")).await?;
        wh.execute(&format!("CREATE TABLE {table} AS SELECT * FROM (\n{sql}\n) AS failures"))
            .await
            .with_context(|| format!("{}: cannot store the failing rows in {table}", node.name))?;
        Ok(Some(table))
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
                let is_inc = node.config.materialized == Materialized::Incremental
                    && !self.full_refresh
                    && match self.wh.as_deref() {
                        Some(wh) => {
                            materialize::existing(wh, node).await? == Some(RelationType::Table)
                        }
                        None => false,
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

    /// Runs `selected` nodes (those `mode` takes) in dependency order. A node whose parent
    /// failed is skipped; in `build`, a model's failing test also stops its dependants.
    pub async fn execute(
        self: Arc<Self>,
        selected: &BTreeSet<String>,
        mode: Mode,
    ) -> Vec<NodeResult> {
        let p = Arc::clone(&self.parsed);
        let order: Vec<String> = p
            .graph
            .topological()
            .unwrap_or_default()
            .into_iter()
            .filter(|id| selected.contains(id) && mode.takes(&p.nodes[id]))
            .collect();
        let set: BTreeSet<String> = order.iter().cloned().collect();
        // Each model creates its schema if it is missing, but two doing so at once on Postgres
        // can both try to insert it (a unique violation): the run's schemas come first, one by
        // one. A failure here is left to the nodes to report.
        if let Some(wh) = &self.wh
            && matches!(mode, Mode::Run | Mode::Build | Mode::Seed)
        {
            let schemas: BTreeSet<&str> = order
                .iter()
                .map(|id| &p.nodes[id])
                .filter(|n| matches!(n.resource_type, ResourceType::Model | ResourceType::Seed))
                .map(|n| n.schema.as_str())
                .collect();
            for schema in schemas {
                let sql = format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    crate::warehouse::ident::quote(wh.kind(), schema)
                );
                if let Err(e) = wh.execute(&sql).await {
                    tracing::debug!(schema, error = %format!("{e:#}"), "cannot create the schema");
                }
            }
        }
        // What each node waits for among the nodes of this run.
        let mut waits: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for id in &order {
            let ancestors = upstream_in(&p, id, &set);
            let mut w: BTreeSet<String> = ancestors;
            if mode == Mode::Build {
                for parent in w.clone() {
                    for t in &set {
                        let n = &p.nodes[t];
                        if n.resource_type == ResourceType::Test
                            && n.depends_on.contains(&parent)
                            && p.nodes[id].resource_type != ResourceType::Test
                            && !p.graph.ancestors(t, None).contains(id)
                        {
                            w.insert(t.clone());
                        }
                    }
                }
            }
            waits.insert(id.clone(), w);
        }
        let mut results: Vec<NodeResult> = Vec::new();
        let mut status: BTreeMap<String, String> = BTreeMap::new();
        let mut running = tokio::task::JoinSet::new();
        let mut free_threads: Vec<usize> = (1..=self.threads.max(1)).rev().collect();
        let mut remaining: Vec<String> = order.clone();
        loop {
            // Start every node whose waits are over, while threads are free.
            let mut i = 0;
            while i < remaining.len() && !free_threads.is_empty() {
                let id = &remaining[i];
                let w = &waits[id];
                if w.iter().any(|d| !status.contains_key(d)) {
                    i += 1;
                    continue;
                }
                let id = remaining.remove(i);
                let failed_parent = waits[&id]
                    .iter()
                    .find(|d| matches!(status[*d].as_str(), "error" | "fail" | "skipped"))
                    .cloned();
                if let Some(parent) = failed_parent {
                    let now = iso(chrono::Utc::now());
                    let r = NodeResult {
                        unique_id: id.clone(),
                        status: "skipped".into(),
                        timing: vec![Timing {
                            name: "execute".into(),
                            started_at: now.clone(),
                            completed_at: now,
                        }],
                        thread_id: "main".into(),
                        execution_time: 0.0,
                        rows_affected: 0,
                        message: format!(
                            "skipped: upstream {} did not succeed",
                            p.nodes[&parent].name
                        ),
                        failures: None,
                        compiled_code: None,
                        relation_name: (!p.nodes[&id].relation.is_empty())
                            .then(|| p.nodes[&id].relation.clone()),
                    };
                    (self.on_result)(&r, &p.nodes[&id]);
                    status.insert(id.clone(), "skipped".into());
                    results.push(r);
                    i = 0;
                    continue;
                }
                let thread = free_threads.pop().unwrap_or(1);
                let me = Arc::clone(&self);
                running.spawn(async move {
                    let node = &me.parsed.nodes[&id];
                    let started = chrono::Utc::now();
                    let clock = Instant::now();
                    let outcome = me.execute_one(node, mode).await;
                    let completed = chrono::Utc::now();
                    let compiled = me
                        .compiled
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&id)
                        .cloned();
                    let (status, rows, message, failures) = match outcome {
                        Ok(o) => (o.status.to_string(), o.rows, o.message, o.failures),
                        Err(e) => ("error".to_string(), 0, format!("{e:#}"), None),
                    };
                    let r = NodeResult {
                        unique_id: id.clone(),
                        status,
                        timing: vec![Timing {
                            name: "execute".into(),
                            started_at: iso(started),
                            completed_at: iso(completed),
                        }],
                        thread_id: format!("Thread-{thread}"),
                        execution_time: clock.elapsed().as_secs_f64(),
                        rows_affected: rows,
                        message,
                        failures,
                        compiled_code: compiled,
                        relation_name: (!node.relation.is_empty()).then(|| node.relation.clone()),
                    };
                    (thread, r)
                });
            }
            if running.is_empty() {
                // Nothing runs and nothing can start: whatever is left cannot run.
                for id in remaining.drain(..) {
                    tracing::error!(node = %id, "not run: its dependencies never finished");
                }
                break;
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            match done {
                Ok((thread, r)) => {
                    free_threads.push(thread);
                    (self.on_result)(&r, &p.nodes[&r.unique_id]);
                    status.insert(r.unique_id.clone(), r.status.clone());
                    results.push(r);
                }
                Err(e) => {
                    tracing::error!(error = %e, "a node's task panicked");
                    free_threads.push(1);
                }
            }
        }
        results
    }
}

/// A time-range model's `lookback` (`1d`, `60d`, ...) in milliseconds: how far back its
/// windows read.
pub fn lookback_millis(n: &Node) -> Option<i64> {
    n.config
        .all
        .get("lookback")
        .and_then(|v| v.as_str())
        .and_then(changes::grain_millis)
}

/// Whether the model records the time ranges it rewrites (in `klines_model_changes`), so that
/// models downstream can follow it by time range.
pub fn records_changes(n: &Node) -> bool {
    is_time_range(n) || n.config.materialized == Materialized::Indicators
}

/// Whether a model is incremental by time range.
pub fn is_time_range(n: &Node) -> bool {
    n.config.materialized == Materialized::Incremental
        && n.config.event_time.is_some()
        && n.config
            .incremental_strategy
            .as_deref()
            .unwrap_or("time_range")
            == "time_range"
}

/// The nearest ancestors of `id` that are in `set` (through nodes that are not).
fn upstream_in(p: &Parsed, id: &str, set: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<String> = p
        .graph
        .parents
        .get(id)
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if set.contains(&n) {
            out.insert(n);
        } else {
            stack.extend(p.graph.parents.get(&n).into_iter().flatten().cloned());
        }
    }
    out
}
