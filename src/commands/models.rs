//! `klines run`, `compile`, `test`, `seed`, `build` and `ls`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;

use clap::ValueEnum;

use crate::cli::{GlobalArgs, LsArgs, LsOutput, RunArgs};
use crate::error::PartialFailure;
use crate::models::artifacts::{self, NodeResult};
use crate::models::parse::{Node, ResourceType};
use crate::models::runner::{Mode, Runner};
use crate::models::{self, selector};
use crate::warehouse;

fn label(n: &Node) -> String {
    match n.resource_type {
        ResourceType::Model => format!("{} model {}", n.config.materialized.as_str(), n.name),
        other => format!("{} {}", other.as_str(), n.name),
    }
}

/// A message's first non-empty line, and the rest.
fn split_message(msg: &str) -> (&str, &str) {
    let msg = msg.trim();
    match msg.split_once('\n') {
        Some((first, rest)) => (first.trim_end(), rest.trim()),
        None => (msg, ""),
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
    run_on(&project, &target, wh, args, mode, true).await
}

/// Runs `mode` for the selected nodes on `wh` (a connection the caller may share: a stream
/// builds on the one it loads with). `per_node`: print a line per node, else the summary only.
pub(crate) async fn run_on(
    project: &crate::config::Project,
    target: &crate::config::profiles::Target,
    wh: Option<Arc<dyn warehouse::Warehouse>>,
    args: RunArgs,
    mode: Mode,
    per_node: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_at = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let (parsed, files) = models::load(project, target, args.select.vars.as_deref())?;
    let parsed = Arc::new(parsed);
    let selected = selector::select(
        &parsed,
        &args.select.all_selectors(),
        &args.select.exclude,
        args.select.indirect_selection,
    )?;
    let target_dir = project.path(&project.target_path);
    // One model run per project and target schema at a time: two would race on the same
    // relations and change records.
    let _lock = match &wh {
        Some(wh) if matches!(mode, Mode::Run | Mode::Seed | Mode::Build) => Some(
            wh.lock(
                &format!("klines.command.models.{}.{}", project.name, target.schema()),
                super::LOCK_WAIT,
            )
            .await?,
        ),
        _ => None,
    };
    if let Some(wh) = &wh
        && mode != Mode::Compile
        && selected
            .iter()
            .any(|id| models::runner::records_changes(&parsed.nodes[id]))
    {
        wh.transaction(&models::changes::ddl(wh.kind(), &parsed.target_schema))
            .await?;
    }
    let count = selected
        .iter()
        .filter(|id| mode.takes(&parsed.nodes[id.as_str()]))
        .count();
    let done = Arc::new(Mutex::new(0usize));
    let printer = {
        let done = Arc::clone(&done);
        move |r: &NodeResult, n: &Node| {
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
            // One line a node; a warehouse's multi-line detail (DuckDB's LINE/caret lines)
            // goes to the log at -v.
            let (first, rest) = split_message(&r.message);
            if per_node || !matches!(status, "OK" | "PASS") {
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
        }
    };
    let runner = Arc::new(Runner {
        wh,
        parsed: Arc::clone(&parsed),
        full_refresh: args.full_refresh,
        threads: args.threads.unwrap_or(target.threads()).max(1),
        compiled_dir: target_dir.join("compiled").join(&project.name),
        compiled: Mutex::new(BTreeMap::new()),
        on_result: Box::new(printer),
    });
    tracing::info!(command = mode.as_str(), nodes = count, output = %target.name, threads = runner.threads, "start");
    let results = Arc::clone(&runner).execute(&selected, mode).await;
    let compiled = runner
        .compiled
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let manifest = artifacts::manifest(
        &parsed,
        &compiled,
        &models::macro_definitions(&files),
        &project.target_path,
    );
    artifacts::write_manifest(&target_dir, &manifest)?;
    let elapsed = started.elapsed().as_secs_f64();
    let cli_args = json!({
        "select": args.select.all_selectors(),
        "exclude": args.select.exclude,
        "full_refresh": args.full_refresh,
        "threads": runner.threads,
        "target": target.name,
        "project_dir": project.dir.display().to_string(),
    });
    artifacts::write_run_results(
        &target_dir,
        &parsed,
        mode.as_str(),
        cli_args,
        &results,
        elapsed,
        &started_at,
    )?;
    let tally = |s: &str| results.iter().filter(|r| r.status == s).count();
    let (ok, failed) = (
        tally("success") + tally("pass") + tally("warn"),
        tally("error") + tally("fail"),
    );
    println!(
        "{}: {} nodes: {} ok ({} warn), {} failed ({} errors), {} skipped in {elapsed:.1}s",
        mode.as_str(),
        results.len(),
        ok,
        tally("warn"),
        failed,
        tally("error"),
        tally("skipped")
    );
    if failed + tally("skipped") == 0 {
        return Ok(());
    }
    let first = results
        .iter()
        .find(|r| r.status == "error" || r.status == "fail")
        .map(|r| {
            let n = &parsed.nodes[&r.unique_id];
            format!("{} ({}): {}", n.name, n.path, split_message(&r.message).0)
        });
    let msg = format!(
        "{failed} of {} nodes failed; first: {}",
        results.len(),
        first.unwrap_or_default()
    );
    if ok > 0 {
        Err(PartialFailure(msg).into())
    } else {
        anyhow::bail!(msg)
    }
}

pub async fn ls(global: &GlobalArgs, args: LsArgs) -> anyhow::Result<()> {
    let project = super::project(global)?;
    let target = super::target(global, &project)?;
    let (parsed, _) = models::load(&project, &target, args.select.vars.as_deref())?;
    let selected = selector::select(
        &parsed,
        &args.select.all_selectors(),
        &args.select.exclude,
        args.select.indirect_selection,
    )?;
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
