//! The sinks a live run's flushes go to, each a [`Sink`]: the warehouse loader (`loader`),
//! Snowpipe (`snowpipe`), the model builder (`builder`) and the dashboard (`dashboard`).
//! [`Sinks`] runs them in order, each flush: load, build, tell the pages.

pub mod builder;
pub mod dashboard;
pub mod loader;
pub mod snowpipe;

use crate::stage::sink::{Sink, Staged};

/// Sinks, run in order for every flush.
#[derive(Default)]
pub struct Sinks(pub Vec<Box<dyn Sink>>);

#[async_trait::async_trait(?Send)]
impl Sink for Sinks {
    async fn flushed(&mut self, staged: &[Staged]) -> anyhow::Result<()> {
        for sink in &mut self.0 {
            sink.flushed(staged).await?;
        }
        Ok(())
    }
}
