//! Loads each flush into the warehouse, exactly once: the first time everything pending (a
//! full load), then exactly the files each flush staged, with the loaded ranges kept in
//! memory, so a flush never lists the stage or reads the whole load history.

use std::sync::Arc;

use anyhow::Context;

use crate::load::{self, Options};
use crate::stage::Stage;
use crate::stage::sink::{Sink, Staged};
use crate::warehouse::Warehouse;

pub struct LoaderSink {
    pub stage: Stage,
    pub wh: Arc<dyn Warehouse>,
    pub raw_schema: String,
    pub opts: Options,
    follower: Option<load::Follower>,
}

impl LoaderSink {
    pub fn new(
        stage: Stage,
        wh: Arc<dyn Warehouse>,
        raw_schema: String,
        opts: Options,
    ) -> LoaderSink {
        LoaderSink {
            stage,
            wh,
            raw_schema,
            opts,
            follower: None,
        }
    }
}

#[async_trait::async_trait(?Send)]
impl Sink for LoaderSink {
    async fn flushed(&mut self, staged: &[Staged]) -> anyhow::Result<()> {
        let summary = match &mut self.follower {
            Some(f) => f
                .load(
                    &self.stage,
                    Arc::clone(&self.wh),
                    &self.raw_schema,
                    &self.opts,
                    staged.to_vec(),
                )
                .await
                .context("load")?,
            None => {
                let (f, summary) = load::Follower::start(
                    &self.stage,
                    Arc::clone(&self.wh),
                    &self.raw_schema,
                    &self.opts,
                )
                .await
                .context("load")?;
                self.follower = Some(f);
                summary
            }
        };
        for f in &summary.failed {
            tracing::error!(file = %f.file, error = %f.error, "failed");
        }
        tracing::info!(files = summary.files, rows = summary.rows, "loaded");
        Ok(())
    }
}
