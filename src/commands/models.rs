//! `klines run`, `compile`, `test`, `seed`, `build` and `ls`.

use std::sync::Arc;

use clap::ValueEnum;
use serde_json::json;

use crate::cli::{GlobalArgs, LsArgs, LsOutput, RunArgs, SelectArgs};
use crate::models::artifacts::NodeResult;
use crate::models::node::{Node, ResourceType};
use crate::models::runner::Mode;
use crate::models::workspace::{OnResult, Selection, Workspace, first_line};
use crate::warehouse;

fn label(n: &Node) -> String {
    match n.resource_type {
        ResourceType::Model => format!("{} model {}", n.config.materialized.as_str(), n.name),
        other => format!("{} {}", other.as_str(), n.name),
    }
}

pub async fn run(global: &GlobalArgs, args: RunArgs, mode: Mode) -> anyhow::Result<()> {
    let project = super::project(global)?;
    let target = super::target(global, &project)?;
    // `compile` works without a warehouse when it cannot reach one.
    let wh = match warehouse::connect(&target, &project.dir).await {
        Ok(w) => Some(w),
        Err(e) if mode == Mode::Compile => {
            tracing::warn!(error = %format!("{e:#}"), "no warehouse: compiling as if every model were new");
            None
        }
        Err(e) => return Err(e),
    };
    run_on(&project, &target, wh, args, mode).await
}

/// The selection the flags give.
pub(crate) fn selection(args: &SelectArgs) -> Selection {
    Selection {
        select: args.all_selectors(),
        exclude: args.exclude.clone(),
        indirect: args.indirect_selection,
    }
}

/// Prints a line per node as it finishes: `  3 of 12 OK    table model X [0.12s] ...`. With
/// `quiet`, only the nodes that did not succeed.
pub(crate) fn printer(count: usize, quiet: bool) -> OnResult {
    let done = std::sync::Mutex::new(0usize);
    Box::new(move |r: &NodeResult, n: &Node| {
        let mut d = done.lock().unwrap_or_else(|e| e.into_inner());
        *d += 1;
        let status = match r.status.as_str() {
            "success" => "OK",
            "pass" => "PASS",
            "fail" => "FAIL",
            "warn" => "WARN",
            "skipped" => "SKIP",
            _ => "ERROR",
        };
        // One line a node; a warehouse's multi-line detail (DuckDB's LINE/caret lines) goes
        // to the log at -v.
        let (first, rest) = first_line(&r.message);
        if !quiet || !matches!(status, "OK" | "PASS") {
            println!(
                "{:>3} of {count} {status:<5} {} [{:.2}s] {first}",
                *d,
                label(n),
                r.execution_time,
            );
        }
        if !rest.is_empty() {
            tracing::debug!(node = %n.unique_id, detail = rest, "the rest of the message");
        }
    })
}

/// Runs `mode` for the selected nodes on `wh` (a connection the caller may share: the
/// pipeline builds on the one it loads with), writes the artifacts and prints the summary.
pub(crate) async fn run_on(
    project: &crate::config::Project,
    target: &crate::config::profiles::Target,
    wh: Option<Arc<dyn warehouse::Warehouse>>,
    args: RunArgs,
    mode: Mode,
) -> anyhow::Result<()> {
    let ws = Workspace::open(project, target, args.select.vars.as_deref())?;
    let sel = selection(&args.select);
    let selected = ws.select(&sel)?;
    let on_result = printer(ws.count(&selected, mode), false);
    let outcome = ws
        .run(
            wh,
            &selected,
            mode,
            args.full_refresh,
            args.threads,
            on_result,
        )
        .await?;
    ws.write_artifacts(&outcome, &sel, args.full_refresh)?;
    println!("{}", outcome.summary());
    outcome.verdict(&ws.parsed)
}

pub async fn ls(global: &GlobalArgs, args: LsArgs) -> anyhow::Result<()> {
    let project = super::project(global)?;
    let target = super::target(global, &project)?;
    let ws = Workspace::open(&project, &target, args.select.vars.as_deref())?;
    let selected = ws.select(&selection(&args.select))?;
    let parsed = &ws.parsed;
    for id in parsed.graph.topological().unwrap_or_default() {
        if !selected.contains(&id) {
            continue;
        }
        let n = &parsed.nodes[&id];
        if !args.resource_type.is_empty()
            && !args.resource_type.iter().any(|t| {
                t.to_possible_value()
                    .is_some_and(|v| v.get_name() == n.resource_type.as_str())
            })
        {
            continue;
        }
        match args.output {
            LsOutput::Name => println!("{}", n.name),
            LsOutput::Path => println!("{}", n.path),
            LsOutput::Json => println!(
                "{}",
                json!({"name": n.name, "resource_type": n.resource_type.as_str(), "unique_id": n.unique_id, "path": n.path,
                       "config": {"materialized": n.config.materialized.as_str(), "tags": n.config.tags}, "depends_on": n.depends_on})
            ),
            LsOutput::Selector => match n.resource_type {
                ResourceType::Source => println!("source:{}", n.fqn[1..].join(".")),
                _ => println!("{}", n.fqn.join(".")),
            },
        }
    }
    Ok(())
}
