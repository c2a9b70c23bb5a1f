//! Builds the selected models after each flush, on the loader's connection, from a project
//! parsed once when the stream starts; each build writes `target/run_results.json`. A model
//! that fails is logged; the stream goes on staging and loading.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::models::runner::Mode;
use crate::models::workspace::{OnResult, Selection, Workspace};
use crate::stage::sink::{Sink, Staged};
use crate::warehouse::Warehouse;

pub struct BuilderSink {
    pub workspace: Workspace,
    pub selection: Selection,
    pub selected: BTreeSet<String>,
    pub wh: Arc<dyn Warehouse>,
    /// A node's result, as it finishes, given how many nodes the build runs (the command
    /// prints the failures).
    pub on_result: Arc<dyn Fn(usize) -> OnResult>,
    /// Each build's summary line.
    pub on_summary: Box<dyn Fn(&str)>,
}

#[async_trait::async_trait(?Send)]
impl Sink for BuilderSink {
    async fn flushed(&mut self, _staged: &[Staged]) -> anyhow::Result<()> {
        let count = self.workspace.count(&self.selected, Mode::Run);
        let run = self
            .workspace
            .run(
                Some(Arc::clone(&self.wh)),
                &self.selected,
                Mode::Run,
                false,
                None,
                (self.on_result)(count),
            )
            .await;
        match run {
            Ok(outcome) => {
                if let Err(e) = self
                    .workspace
                    .write_artifacts(&outcome, &self.selection, false)
                {
                    tracing::error!(error = %format!("{e:#}"), "the run's artifacts could not be written");
                }
                (self.on_summary)(&outcome.summary());
                if let Err(e) = outcome.verdict(&self.workspace.parsed) {
                    tracing::error!(error = %format!("{e:#}"), "the models failed; the stream goes on");
                }
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the models failed; the stream goes on");
            }
        }
        Ok(())
    }
}
