//! A live run's loader: the files each flush staged, without listing the stage again.

use std::sync::Arc;
use std::time::Instant;

use super::{Candidate, Covered, Options, Summary, load_candidates, pending};
use crate::stage::Stage;
use crate::stage::manifest::ManifestEntry;
use crate::warehouse::Warehouse;

/// Loads new files without listing the stage: a caller that staged them (`klines stream`)
/// knows them. `covered` (the ranges loaded per series) is the caller's, kept between calls;
/// [`Follower::start`] makes it from the load history once, with everything pending then.
pub struct Follower {
    covered: Covered,
}

impl Follower {
    /// Loads what is pending now (a full [`load`]) and remembers what is loaded.
    pub async fn start(
        stage: &Stage,
        wh: Arc<dyn Warehouse>,
        raw_schema: &str,
        opts: &Options,
    ) -> anyhow::Result<(Follower, Summary)> {
        let started = Instant::now();
        let (candidates, failed, mut covered) =
            pending(stage, wh.as_ref(), raw_schema, false).await?;
        let summary = load_candidates(
            stage,
            wh,
            raw_schema,
            opts,
            candidates,
            failed,
            &mut covered,
            started,
        )
        .await?;
        Ok((Follower { covered }, summary))
    }

    /// Loads `entries` (just staged, oldest first), exactly once as [`load`] does.
    pub async fn load(
        &mut self,
        stage: &Stage,
        wh: Arc<dyn Warehouse>,
        raw_schema: &str,
        opts: &Options,
        entries: Vec<(ManifestEntry, i64)>,
    ) -> anyhow::Result<Summary> {
        let candidates = entries
            .into_iter()
            .map(|(entry, staged_at)| Candidate { entry, staged_at })
            .collect();
        load_candidates(
            stage,
            wh,
            raw_schema,
            opts,
            candidates,
            Vec::new(),
            &mut self.covered,
            Instant::now(),
        )
        .await
    }
}
