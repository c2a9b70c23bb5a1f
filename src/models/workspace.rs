//! A project parsed for a target, kept for as many runs as it serves: `klines run` makes one
//! run of it, a stream that builds after every flush keeps it and runs it again each time
//! (no parsing again, no artifacts rewritten per flush).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::artifacts::{self, NodeResult};
use super::catalog::Catalog;
use super::node::Node;
use super::parse::Parsed;
use super::runner::{Mode, Runner};
use super::selector::{self, IndirectSelection};
use crate::config::Project;
use crate::config::profiles::Target;
use crate::error::PartialFailure;
use crate::warehouse::Warehouse;

/// How long a run waits for another run of the same project and target schema to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// What is called with each node's result as it finishes.
pub type OnResult = Box<dyn Fn(&NodeResult, &Node) + Send + Sync>;

/// A parsed project and where its artifacts go.
pub struct Workspace {
    pub parsed: Arc<Parsed>,
    macros: Vec<(String, String, String)>,
    project_name: String,
    project_dir: PathBuf,
    target_path: String,
    target_dir: PathBuf,
    target_name: String,
    target_schema: String,
    threads: usize,
}

/// What selects the nodes of a run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    pub indirect: IndirectSelection,
}

/// One run's results.
pub struct Outcome {
    pub mode: Mode,
    pub results: Vec<NodeResult>,
    pub compiled: BTreeMap<String, String>,
    pub threads: usize,
    pub seconds: f64,
    pub started_at: String,
}

impl Workspace {
    /// Reads and parses the project for `target` with `vars` (`--vars`) over klines.yml's.
    pub fn open(
        project: &Project,
        target: &Target,
        vars: Option<&str>,
    ) -> anyhow::Result<Workspace> {
        let (parsed, files) = super::load(project, target, vars)?;
        Ok(Workspace {
            parsed: Arc::new(parsed),
            macros: super::macro_definitions(&files),
            project_name: project.name.clone(),
            project_dir: project.dir.clone(),
            target_path: project.target_path.clone(),
            target_dir: project.path(&project.target_path),
            target_name: target.name.clone(),
            target_schema: target.schema().to_string(),
            threads: target.threads(),
        })
    }

    /// The nodes a selection picks (with dbt's indirect selection of tests).
    pub fn select(&self, s: &Selection) -> anyhow::Result<BTreeSet<String>> {
        selector::select(&self.parsed, &s.select, &s.exclude, s.indirect)
    }

    /// Runs `mode` over `selected` on `wh` (none: compile as if every model were new), under
    /// the project's warehouse lock, with `threads` (none: the profile's).
    pub async fn run(
        &self,
        wh: Option<Arc<dyn Warehouse>>,
        selected: &BTreeSet<String>,
        mode: Mode,
        full_refresh: bool,
        threads: Option<usize>,
        on_result: OnResult,
    ) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let started_at = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        // One model run per project and target schema at a time: two would race on the same
        // relations and change records.
        let _lock = match &wh {
            Some(wh) if matches!(mode, Mode::Run | Mode::Seed | Mode::Build) => Some(
                wh.lock(
                    &format!(
                        "klines.command.models.{}.{}",
                        self.project_name, self.target_schema
                    ),
                    LOCK_WAIT,
                )
                .await?,
            ),
            _ => None,
        };
        let parsed = &self.parsed;
        if let Some(wh) = &wh
            && mode != Mode::Compile
            && selected
                .iter()
                .any(|id| super::materializations::records_changes(&parsed.nodes[id].config))
        {
            wh.transaction(&super::changes::ddl(wh.dialect(), &parsed.target_schema))
                .await?;
        }
        let runner = Arc::new(Runner {
            wh,
            parsed: Arc::clone(parsed),
            full_refresh,
            threads: threads.unwrap_or(self.threads).max(1),
            compiled_dir: self.target_dir.join("compiled").join(&self.project_name),
            compiled: Mutex::new(BTreeMap::new()),
            catalog: Catalog::default(),
            on_result,
        });
        tracing::info!(
            command = mode.as_str(),
            nodes = self.count(selected, mode),
            output = %self.target_name,
            threads = runner.threads,
            "start"
        );
        let results = Arc::clone(&runner).execute(selected, mode).await;
        let compiled = runner
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(Outcome {
            mode,
            results,
            compiled,
            threads: runner.threads,
            seconds: started.elapsed().as_secs_f64(),
            started_at,
        })
    }

    /// How many of `selected` a run of `mode` takes.
    pub fn count(&self, selected: &BTreeSet<String>, mode: Mode) -> usize {
        selected
            .iter()
            .filter(|id| mode.takes(&self.parsed.nodes[id.as_str()]))
            .count()
    }

    /// `target/manifest.json`, with the compiled code of `outcome` (none: of nothing yet).
    pub fn write_manifest(&self, outcome: Option<&Outcome>) -> anyhow::Result<()> {
        let empty = BTreeMap::new();
        let compiled = outcome.map_or(&empty, |o| &o.compiled);
        let manifest = artifacts::manifest(&self.parsed, compiled, &self.macros, &self.target_path);
        artifacts::write_manifest(&self.target_dir, &manifest)
    }

    /// `target/manifest.json` and `target/run_results.json` of a run.
    pub fn write_artifacts(
        &self,
        outcome: &Outcome,
        selection: &Selection,
        full_refresh: bool,
    ) -> anyhow::Result<()> {
        self.write_manifest(Some(outcome))?;
        let cli_args: Json = serde_json::json!({
            "select": selection.select,
            "exclude": selection.exclude,
            "full_refresh": full_refresh,
            "threads": outcome.threads,
            "target": self.target_name,
            "project_dir": self.project_dir.display().to_string(),
        });
        artifacts::write_run_results(
            &self.target_dir,
            &self.parsed,
            outcome.mode.as_str(),
            cli_args,
            &outcome.results,
            outcome.seconds,
            &outcome.started_at,
        )
    }
}

impl Outcome {
    fn tally(&self, status: &str) -> usize {
        self.results.iter().filter(|r| r.status == status).count()
    }

    /// `run: 12 nodes: 11 ok (0 warn), 1 failed (1 errors), 0 skipped in 3.2s`
    pub fn summary(&self) -> String {
        format!(
            "{}: {} nodes: {} ok ({} warn), {} failed ({} errors), {} skipped in {:.1}s",
            self.mode.as_str(),
            self.results.len(),
            self.tally("success") + self.tally("pass") + self.tally("warn"),
            self.tally("warn"),
            self.tally("error") + self.tally("fail"),
            self.tally("error"),
            self.tally("skipped"),
            self.seconds
        )
    }

    /// `Ok` when nothing failed or was skipped; else the first failure, as a partial failure
    /// when some nodes succeeded.
    pub fn verdict(&self, parsed: &Parsed) -> anyhow::Result<()> {
        let ok = self.tally("success") + self.tally("pass") + self.tally("warn");
        let failed = self.tally("error") + self.tally("fail");
        if failed + self.tally("skipped") == 0 {
            return Ok(());
        }
        let first = self
            .results
            .iter()
            .find(|r| r.status == "error" || r.status == "fail")
            .map(|r| {
                let n = &parsed.nodes[&r.unique_id];
                format!("{} ({}): {}", n.name, n.path, first_line(&r.message).0)
            });
        let msg = format!(
            "{failed} of {} nodes failed; first: {}",
            self.results.len(),
            first.unwrap_or_default()
        );
        if ok > 0 {
            Err(PartialFailure(msg).into())
        } else {
            anyhow::bail!(msg)
        }
    }
}

/// A message's first non-empty line, and the rest.
pub fn first_line(msg: &str) -> (&str, &str) {
    let msg = msg.trim();
    match msg.split_once('\n') {
        Some((first, rest)) => (first.trim_end(), rest.trim()),
        None => (msg, ""),
    }
}
