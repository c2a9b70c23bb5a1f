//! Tells the dashboard's open pages that the tables may have changed (`/api/live` then sends
//! what is new).

use crate::serve::live::Updates;
use crate::stage::sink::{Sink, Staged};

pub struct DashboardSink(pub Updates);

#[async_trait::async_trait(?Send)]
impl Sink for DashboardSink {
    async fn flushed(&mut self, _staged: &[Staged]) -> anyhow::Result<()> {
        self.0.changed();
        Ok(())
    }
}
