//! Loads each flush through Snowpipe: the pending files are submitted, followed until final and
//! merged from the landing table (`load::snowpipe`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::load::Options;
use crate::stage::Stage;
use crate::stage::sink::{Sink, Staged};
use crate::warehouse::snowflake::{Snowflake, snowpipe::Snowpipe};

pub struct SnowpipeSink {
    pub stage: Stage,
    pub snowflake: Arc<Snowflake>,
    pub pipe: Snowpipe,
    pub raw_schema: String,
    pub opts: Options,
}

#[async_trait::async_trait(?Send)]
impl Sink for SnowpipeSink {
    async fn flushed(&mut self, _staged: &[Staged]) -> anyhow::Result<()> {
        let summary = crate::load::snowpipe::load(
            &self.stage,
            &self.snowflake,
            &self.pipe,
            &self.raw_schema,
            &self.opts,
            Duration::from_secs(600),
        )
        .await
        .context("snowpipe")?;
        for f in summary.files.iter().filter(|f| f.status != "LOADED") {
            tracing::error!(file = %f.file, status = %f.status, error = f.error.as_deref().unwrap_or(""), "failed");
        }
        tracing::info!(
            files = summary.files.len(),
            inserted = summary.inserted,
            "loaded through Snowpipe"
        );
        Ok(())
    }
}
