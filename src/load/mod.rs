//! Load: staged files into the warehouse's raw table, exactly once.
//!
//! 1. The stage's manifest is listed, oldest staged first, and compared with the load history
//!    in the warehouse: entries whose (file, hash) is not there are pending.
//! 2. Pending files are taken in batches. Each file is fetched, checked against its manifest
//!    entry (size, SHA-256, rows, series) and decoded; a bad file is reported by name and left
//!    out, the others go on.
//! 3. A batch never holds two files that overlap (an older partial day and its later whole-day
//!    file go in successive batches), and rows sharing a key keep the newest file's. The adapter
//!    then loads the batch in one transaction: inserts, replacements, and the load-history
//!    rows of its files. A crash before the commit leaves nothing; after it, everything.
//!    A batch whose files overlap nothing loaded (every row new, the usual case) may go
//!    straight into the raw table; the others are merged through a temporary table.

pub mod batch;
mod fetch;
mod follower;
pub mod quarantine;
pub mod raw;
pub mod snowflake_setup;
pub mod snowpipe;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;

use crate::datasets::klines::KlineBatch;
use crate::market::Series;
use crate::progress::Task;
use crate::ranges::RangeSet;
use crate::stage::Stage;
use crate::stage::manifest::{self, ManifestEntry};
use crate::warehouse::Warehouse;
use batch::{LoadBatch, LoadFile};
pub(crate) use fetch::{assemble, fetch};
pub use follower::Follower;
use raw::sql as raw_sql;

#[derive(Debug, Clone)]
pub struct Options {
    pub dry_run: bool,
    /// Rows per transaction (files are never split).
    pub batch_rows: usize,
    /// Files fetched at once.
    pub fetch_concurrency: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            batch_rows: 500_000,
            fetch_concurrency: 8,
        }
    }
}

/// A file that could not be loaded, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub file: String,
    pub error: String,
}

/// A pending file, for `--dry-run`.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub files: u64,
    pub rows: u64,
    pub inserted: u64,
    pub replaced: u64,
    pub failed: Vec<Failure>,
    /// Rows kept out of the raw table (in `raw.klines_rejected`), by reason.
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Where they are: `<raw schema>.klines_rejected`.
    pub rejected_table: String,
    pub seconds: f64,
    /// Only for `--dry-run`: what would load.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "load: {} files, {} rows ({} inserted, {} replaced, {} unchanged), {} failed in {:.1}s",
            self.files,
            self.rows,
            self.inserted,
            self.replaced,
            self.rows
                .saturating_sub(self.inserted + self.replaced + self.rejected),
            self.failed.len(),
            self.seconds
        )?;
        if self.rejected > 0 {
            let reasons = self
                .rejected_by_reason
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            write!(
                f,
                "; {} rows rejected into {} ({reasons})",
                self.rejected, self.rejected_table
            )?;
        }
        Ok(())
    }
}

pub(crate) struct Candidate {
    pub(crate) entry: ManifestEntry,
    pub(crate) staged_at: i64,
}

/// Finds the staged files the warehouse has not loaded, oldest staged first.
/// Open-time ranges already loaded, per series.
pub(crate) type Covered = HashMap<Series, RangeSet>;

pub(crate) async fn pending(
    stage: &Stage,
    wh: &dyn Warehouse,
    raw_schema: &str,
    dry_run: bool,
) -> anyhow::Result<(Vec<Candidate>, Vec<Failure>, Covered)> {
    let listed = manifest::list(stage).await?;
    // Data files no manifest entry names would never load: each is reported as failed.
    let orphans =
        crate::stage::repair::orphans(stage, &listed, std::time::Duration::from_secs(60)).await?;
    let exists = wh
        .relation(
            &crate::warehouse::ident::fold(wh.dialect(), raw_schema),
            &crate::warehouse::ident::fold(wh.dialect(), raw_sql::LOAD_HISTORY),
        )
        .await?
        .is_some();
    if !dry_run && !exists {
        raw::ensure(wh, raw_schema)
            .await
            .with_context(|| format!("cannot create the raw tables in {}", wh.describe()))?;
    }
    if exists {
        if dry_run {
            if raw::needs_migration(wh, raw_schema).await.unwrap_or(false) {
                return Err(crate::error::UsageError(format!(
                    "the raw tables in {} were written before the exchange was part of their key; `klines load` (without --dry-run) migrates them once",
                    wh.describe()
                ))
                .into());
            }
        } else {
            raw::migrate(wh, raw_schema).await?;
        }
    }
    if !dry_run {
        // Added after the raw tables' first release: created here, where older raw schemas
        // get it too.
        wh.execute(&quarantine::ddl(wh.dialect(), raw_schema))
            .await
            .with_context(|| format!("cannot create {raw_schema}.{}", quarantine::REJECTED))?;
    }
    let history = if exists || !dry_run {
        raw::loaded_files(wh, raw_schema).await?
    } else {
        Vec::new()
    };
    let mut covered = Covered::new();
    for f in &history {
        if let Some(s) = &f.series {
            covered.entry(s.clone()).or_default().insert(f.start, f.end);
        }
    }
    let loaded: HashSet<(String, String)> = history
        .into_iter()
        .map(|f| (f.path, f.sha256.chars().take(16).collect()))
        .collect();
    let todo: Vec<_> = listed
        .into_iter()
        .filter(|l| !loaded.contains(&(l.data_key.clone(), l.hash_prefix.clone())))
        .collect();
    let entries: Vec<_> = futures::stream::iter(todo.iter().map(|l| manifest::read(stage, l)))
        .buffered(16)
        .collect()
        .await;
    let mut out = Vec::new();
    let mut failed: Vec<Failure> = orphans
        .into_iter()
        .map(|o| Failure {
            file: o.key,
            error: "staged without a manifest entry, so it cannot be loaded; `klines repair` writes its entry".into(),
        })
        .collect();
    for (l, e) in todo.iter().zip(entries) {
        match e {
            Ok(entry) => out.push(Candidate {
                entry,
                staged_at: l.object.last_modified.timestamp_millis(),
            }),
            Err(e) => failed.push(Failure {
                file: l.data_key.clone(),
                error: format!("{e:#}"),
            }),
        }
    }
    Ok((out, failed, covered))
}

/// True when no file overlaps another of the batch or anything loaded: every row is new.
fn is_fresh(files: &[LoadFile], covered: &Covered) -> bool {
    let mut seen = Covered::new();
    files.iter().all(|f| {
        let s = f.entry.series();
        let clear = |r: Option<&RangeSet>| {
            r.is_none_or(|r| r.within(f.entry.start, f.entry.end).is_empty())
        };
        let ok = clear(covered.get(&s)) && clear(seen.get(&s));
        seen.entry(s)
            .or_default()
            .insert(f.entry.start, f.entry.end);
        ok
    })
}

/// Cuts the pending files, in staged order, into batches of whole files, never putting two
/// files that overlap (same series, overlapping ranges) in one batch: the older one goes first.
pub(crate) fn batches(candidates: Vec<Candidate>, batch_rows: usize) -> Vec<Vec<Candidate>> {
    let mut out: Vec<Vec<Candidate>> = Vec::new();
    let mut current: Vec<Candidate> = Vec::new();
    let mut ranges: Covered = Covered::new();
    let mut rows = 0usize;
    for c in candidates {
        let s = c.entry.series();
        let overlaps = ranges
            .get(&s)
            .is_some_and(|r| !r.within(c.entry.start, c.entry.end).is_empty());
        if !current.is_empty() && (overlaps || rows + c.entry.rows as usize > batch_rows) {
            out.push(std::mem::take(&mut current));
            ranges.clear();
            rows = 0;
        }
        rows += c.entry.rows as usize;
        ranges
            .entry(s)
            .or_default()
            .insert(c.entry.start, c.entry.end);
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Loads every pending staged file into `raw_schema`.
pub async fn load(
    stage: &Stage,
    wh: Arc<dyn Warehouse>,
    raw_schema: &str,
    opts: &Options,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let (candidates, failed, mut covered) =
        pending(stage, wh.as_ref(), raw_schema, opts.dry_run).await?;
    let mut summary = Summary::default();
    if opts.dry_run {
        summary.pending = candidates
            .iter()
            .map(|c| Pending {
                file: c.entry.path.clone(),
                rows: c.entry.rows,
                bytes: c.entry.bytes,
            })
            .collect();
        summary.files = candidates.len() as u64;
        summary.rows = candidates.iter().map(|c| c.entry.rows).sum();
        summary.failed = failed;
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    load_candidates(
        stage,
        wh,
        raw_schema,
        opts,
        candidates,
        failed,
        &mut covered,
        started,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn load_candidates(
    stage: &Stage,
    wh: Arc<dyn Warehouse>,
    raw_schema: &str,
    opts: &Options,
    candidates: Vec<Candidate>,
    mut failed: Vec<Failure>,
    covered: &mut Covered,
    started: Instant,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    let fold = |n: &str| crate::warehouse::ident::fold(wh.dialect(), n);
    summary.rejected_table = format!("{}.{}", fold(raw_schema), fold(quarantine::REJECTED));
    let total_rows: u64 = candidates.iter().map(|c| c.entry.rows).sum();
    let task = Task::new("load", total_rows, "load");
    tracing::info!(files = candidates.len(), rows = total_rows, warehouse = %wh.describe(), "loading");

    let batches = batches(candidates, opts.batch_rows);

    for batch in batches {
        // Interrupted: the batches loaded so far are committed; stop before the next.
        if crate::cancel::is_cancelled() {
            anyhow::bail!(crate::cancel::Interrupted);
        }
        let (files, decoded, rejected) = read(stage, batch, opts, &mut failed).await;
        if files.is_empty() {
            continue;
        }
        let rows = assemble(&files, &decoded);
        drop(decoded);
        let fresh = is_fresh(&files, covered);
        if !rejected.is_empty() {
            tracing::warn!(
                rows = rejected.len(),
                first = %format!("{} row {}: {}", rejected[0].file, rejected[0].row, rejected[0].reason),
                "rows break a kline's invariants: kept in {raw_schema}.{}, not loaded",
                quarantine::REJECTED
            );
        }
        let batch = LoadBatch {
            files,
            rows,
            fresh,
            rejected,
        };
        let n_rows: u64 = batch.files.iter().map(|f| f.entry.rows).sum();
        let counts = raw::load(wh.as_ref(), raw_schema, &batch)
            .await
            .with_context(|| format!("loading into {}", wh.describe()))?;
        for f in &batch.files {
            covered
                .entry(f.entry.series())
                .or_default()
                .insert(f.entry.start, f.entry.end);
        }
        summary.files += batch.files.len() as u64;
        for (reason, n) in quarantine::by_reason(&batch.rejected) {
            summary.rejected += n;
            *summary.rejected_by_reason.entry(reason).or_insert(0) += n;
        }
        summary.rows += n_rows;
        summary.inserted += counts.inserted;
        summary.replaced += counts.replaced;
        task.advance(
            n_rows,
            batch
                .files
                .last()
                .map(|f| f.entry.path.rsplit('/').next().unwrap_or_default())
                .unwrap_or_default(),
        );
        tracing::debug!(
            files = batch.files.len(),
            rows = n_rows,
            inserted = counts.inserted,
            replaced = counts.replaced,
            "batch loaded"
        );
    }
    task.finish("done");
    summary.failed = failed;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Fetches and decodes a batch's files, their rows that break an invariant split off; a
/// file that cannot be read is reported and left out, the others go on.
async fn read(
    stage: &Stage,
    batch: Vec<Candidate>,
    opts: &Options,
    failed: &mut Vec<Failure>,
) -> (Vec<LoadFile>, Vec<KlineBatch>, Vec<quarantine::Rejected>) {
    let fetched: Vec<anyhow::Result<KlineBatch>> =
        futures::stream::iter(batch.iter().map(|c| fetch(stage, &c.entry)))
            .buffered(opts.fetch_concurrency.max(1))
            .collect()
            .await;
    let mut files = Vec::new();
    let mut decoded = Vec::new();
    let mut rejected = Vec::new();
    for (c, r) in batch.into_iter().zip(fetched) {
        match r {
            Ok(k) => {
                let (k, bad) = quarantine::split(&c.entry.series(), &c.entry.path, k);
                rejected.extend(bad);
                files.push(LoadFile {
                    entry: c.entry,
                    staged_at: c.staged_at,
                });
                decoded.push(k);
            }
            Err(e) => {
                tracing::error!(file = %c.entry.path, error = %format!("{e:#}"), "cannot load this file; the others go on");
                failed.push(Failure {
                    file: c.entry.path.clone(),
                    error: format!("{e:#}"),
                });
            }
        }
    }
    (files, decoded, rejected)
}
