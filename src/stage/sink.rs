//! Where staged files go next: a sink hears of every flush of a live run (`klines stream`),
//! with the manifest entries it staged, and takes them further (the warehouse loader, Snowpipe,
//! the model builder, the dashboard; `pipeline::sinks`).

use super::manifest::ManifestEntry;

/// A file a flush staged, with when (epoch ms).
pub type Staged = (ManifestEntry, i64);

#[async_trait::async_trait(?Send)]
pub trait Sink {
    /// Takes the files a flush staged (oldest first). An error stops the stream; a sink whose
    /// failures should not (a model that fails) logs them instead.
    async fn flushed(&mut self, staged: &[Staged]) -> anyhow::Result<()>;
}
