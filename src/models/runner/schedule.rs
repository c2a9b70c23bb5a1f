//! The schedule of a run: nodes in dependency order, independent ones in parallel up to
//! `threads`; a node whose parent failed is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use super::{Mode, Runner, iso};
use crate::models::artifacts::{NodeResult, Timing};
use crate::models::node::{Node, ResourceType};
use crate::models::parse::Parsed;

impl Runner {
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
        self.create_schemas(&order, mode).await;
        let waits = waits(&p, &order, mode);
        let mut results: Vec<NodeResult> = Vec::new();
        let mut status: BTreeMap<String, String> = BTreeMap::new();
        let mut running = JoinSet::new();
        let mut free_threads: Vec<usize> = (1..=self.threads.max(1)).rev().collect();
        let mut remaining: Vec<String> = order.clone();
        loop {
            // Start every node whose waits are over, while threads are free.
            let mut i = 0;
            while i < remaining.len() && !free_threads.is_empty() {
                if waits[&remaining[i]].iter().any(|d| !status.contains_key(d)) {
                    i += 1;
                    continue;
                }
                let id = remaining.remove(i);
                let failed_parent = waits[&id]
                    .iter()
                    .find(|d| matches!(status[*d].as_str(), "error" | "fail" | "skipped"));
                if let Some(parent) = failed_parent {
                    let r = skipped(&p.nodes[&id], &p.nodes[parent]);
                    (self.on_result)(&r, &p.nodes[&id]);
                    status.insert(id.clone(), "skipped".into());
                    results.push(r);
                    i = 0;
                    continue;
                }
                let thread = free_threads.pop().unwrap_or(1);
                let me = Arc::clone(&self);
                running.spawn(async move { (thread, me.run_node(&id, mode, thread).await) });
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

    /// Each model creates its schema if it is missing, but two doing so at once on Postgres
    /// can both try to insert it (a unique violation): the run's schemas come first, one by
    /// one. A failure here is left to the nodes to report.
    async fn create_schemas(&self, order: &[String], mode: Mode) {
        let Some(wh) = &self.wh else {
            return;
        };
        if !matches!(mode, Mode::Run | Mode::Build | Mode::Seed) {
            return;
        }
        let schemas: BTreeSet<&str> = order
            .iter()
            .map(|id| &self.parsed.nodes[id])
            .filter(|n| matches!(n.resource_type, ResourceType::Model | ResourceType::Seed))
            .map(|n| n.schema.as_str())
            .collect();
        for schema in schemas {
            let sql = format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                crate::warehouse::ident::quote(wh.dialect(), schema)
            );
            if let Err(e) = wh.execute(&sql).await {
                tracing::debug!(schema, error = %format!("{e:#}"), "cannot create the schema");
            }
        }
    }

    /// Runs one node on `thread`, timed, as its result.
    async fn run_node(&self, id: &str, mode: Mode, thread: usize) -> NodeResult {
        let node = &self.parsed.nodes[id];
        let started = chrono::Utc::now();
        let clock = Instant::now();
        let outcome = self.execute_one(node, mode).await;
        let completed = chrono::Utc::now();
        let compiled = self
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        let (status, rows, message, failures) = match outcome {
            Ok(o) => (o.status.to_string(), o.rows, o.message, o.failures),
            Err(e) => ("error".to_string(), 0, format!("{e:#}"), None),
        };
        NodeResult {
            unique_id: id.to_string(),
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
        }
    }
}

/// The result of a node skipped because `parent` did not succeed.
fn skipped(node: &Node, parent: &Node) -> NodeResult {
    let now = iso(chrono::Utc::now());
    NodeResult {
        unique_id: node.unique_id.clone(),
        status: "skipped".into(),
        timing: vec![Timing {
            name: "execute".into(),
            started_at: now.clone(),
            completed_at: now,
        }],
        thread_id: "main".into(),
        execution_time: 0.0,
        rows_affected: 0,
        message: format!("skipped: upstream {} did not succeed", parent.name),
        failures: None,
        compiled_code: None,
        relation_name: (!node.relation.is_empty()).then(|| node.relation.clone()),
    }
}

/// What each node waits for among the nodes of this run: its nearest selected ancestors,
/// and in `build` their tests (so a model's failing test stops its dependants).
fn waits(p: &Parsed, order: &[String], mode: Mode) -> BTreeMap<String, BTreeSet<String>> {
    let set: BTreeSet<String> = order.iter().cloned().collect();
    let mut waits = BTreeMap::new();
    for id in order {
        let mut w = upstream_in(p, id, &set);
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
    waits
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
