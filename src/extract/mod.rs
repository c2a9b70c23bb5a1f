//! Extract: Binance klines over REST into the stage, resumable from checkpoints.

pub mod checkpoint;
pub mod live;
pub mod series;
pub mod state;
pub mod stream;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::market::Series;
use crate::market::{Interval, Symbol};
use crate::sources::KlineSource;
use crate::sources::history::History;
use crate::stage::Stage;
use crate::stage::layout;
use state::StateStore;

/// What to backfill.
#[derive(Debug, Clone)]
pub struct Plan {
    pub symbols: Vec<Symbol>,
    pub intervals: Vec<Interval>,
    /// Inclusive, epoch ms.
    pub from: i64,
    /// Exclusive, epoch ms; `None` means the exchange's current time.
    pub to: Option<i64>,
    pub full_refresh: bool,
    pub spans_in_flight: usize,
}

/// What a backfill did, printed at the end of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub symbols: usize,
    pub series: usize,
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub requests: u64,
    /// The REST request weight those requests cost.
    pub weight: u64,
    pub retries: u64,
    pub rate_limited: u64,
    /// Archive files downloaded and their bytes; periods the archive did not hold.
    pub archive_files: u64,
    pub archive_bytes: u64,
    pub archive_missing: u64,
    /// The archive could not be reached (or failed every attempt): the run did without it.
    pub archive_unreachable: bool,
    pub failed: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backfill: {} symbols, {} rows, {} files, {} bytes in {:.1}s; {} requests, {} retries, {} rate-limited",
            self.symbols,
            self.rows,
            self.files,
            self.bytes,
            self.seconds,
            self.requests,
            self.retries,
            self.rate_limited
        )?;
        if self.archive_unreachable {
            write!(
                f,
                "; archive: unreachable, history from REST ({} files, {} bytes before that); REST weight {}",
                self.archive_files, self.archive_bytes, self.weight
            )?;
        } else if self.archive_files + self.archive_missing > 0 {
            write!(
                f,
                "; archive: {} files, {} bytes, {} missing; REST weight {}",
                self.archive_files, self.archive_bytes, self.archive_missing, self.weight
            )?;
        }
        if !self.failed.is_empty() {
            write!(f, "; failed: {}", self.failed.join(", "))?;
        }
        Ok(())
    }
}

/// What a run did, with the errors of the series that failed (the others were staged).
#[derive(Debug)]
pub struct Outcome {
    pub summary: Summary,
    pub errors: Vec<anyhow::Error>,
}

/// Takes every series' lock first, so that a conflict stops the run before any download, and
/// clears what a killed run left in their folders (holding the lock, nobody else writes them).
pub async fn lock_all(
    state: &StateStore,
    stage: &Stage,
    all: &[Series],
) -> anyhow::Result<Vec<state::SeriesLock>> {
    let mut locks = Vec::with_capacity(all.len());
    for s in all {
        locks.push(state.lock(s).await?);
        // The layout before the exchange was part of it too: a run of that release may
        // have been killed mid-write.
        for prefix in [
            s.prefix(),
            format!("{}/{}", layout::MANIFEST_DIR, s.prefix()),
            s.legacy_prefix(),
            format!("{}/{}", layout::MANIFEST_DIR, s.legacy_prefix()),
        ] {
            stage
                .remove_stale_staging_files(&prefix)
                .with_context(|| format!("cannot clean {prefix} in the stage"))?;
        }
    }
    Ok(locks)
}

/// Runs a backfill: checks the symbols, takes the locks, then works on every series at once
/// under the client's shared rate budget.
pub async fn backfill(
    client: Arc<dyn KlineSource>,
    history: Arc<dyn History>,
    stage: Stage,
    state: StateStore,
    plan: &Plan,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    if let Some(to) = plan.to
        && to <= plan.from
    {
        bail!(
            "--to ({}) must be after --from ({})",
            crate::time::format_ms(to),
            crate::time::format_ms(plan.from)
        );
    }
    client.check_symbols(&plan.symbols).await?;
    let server_time = client.server_time().await?;
    let to = plan
        .to
        .unwrap_or(server_time)
        .min(server_time.max(plan.from));
    if plan.from >= server_time {
        return Err(crate::error::UsageError(format!(
            "--from ({}) is in the future of the exchange's clock ({})",
            crate::time::format_ms(plan.from),
            crate::time::format_ms(server_time)
        ))
        .into());
    }
    let all = stream::all_series(client.as_ref(), plan);
    let locks = lock_all(&state, &stage, &all).await?;
    let ctx = Arc::new(series::RunContext {
        client: Arc::clone(&client),
        history: Arc::clone(&history),
        stage,
        state,
        server_time,
        from: plan.from,
        to,
        full_refresh: plan.full_refresh,
        spans_in_flight: plan.spans_in_flight,
        totals: Default::default(),
        prefetched: None,
        live: false,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (s, lock) in all.iter().cloned().zip(locks) {
        let ctx = Arc::clone(&ctx);
        tasks.spawn(async move {
            let result = series::run(&ctx, &s, &lock).await;
            lock.release().await;
            (s, result)
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (s, result) = joined?;
        if let Err(e) = result {
            tracing::error!(series = %s, error = %format!("{e:#}"), "backfill failed; what was staged stays valid");
            failures.push((s, e));
        }
    }
    let stats = client.stats();
    let summary = Summary {
        symbols: plan.symbols.len(),
        series: all.len(),
        rows: ctx.totals.rows.load(Ordering::Relaxed),
        files: ctx.totals.files.load(Ordering::Relaxed),
        bytes: ctx.totals.bytes.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        requests: stats.requests,
        weight: stats.weight,
        retries: stats.retries,
        rate_limited: stats.rate_limited,
        archive_files: history.stats().files,
        archive_bytes: history.stats().bytes,
        archive_missing: history.stats().missing,
        archive_unreachable: history.stats().unreachable,
        failed: failures.iter().map(|(s, _)| s.to_string()).collect(),
    };
    Ok(Outcome {
        summary,
        errors: failures
            .into_iter()
            .map(|(s, e)| e.context(s.to_string()))
            .collect(),
    })
}
