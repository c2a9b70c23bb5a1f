//! `klines load --snowpipe`: Snowpipe copies the new files into a landing table; klines then
//! merges the files Snowpipe reports LOADED into the raw table, with their load history, in
//! one transaction per batch, and empties them from the landing table.
//!
//! Files already in the landing table (a run stopped after Snowpipe loaded them) are merged
//! without submitting them again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use super::batch::{LoadBatch, LoadFile};
use super::raw::sql as raw;
use super::{Candidate, Options, batches, fetch, pending};
use crate::stage::Stage;
use crate::warehouse::dialect::timestamp_literal;
use crate::warehouse::ident::{literal, quote, relation};
use crate::warehouse::snowflake::{LANDING, Snowflake, snowpipe::Snowpipe};
use crate::warehouse::{StagedCopy, Warehouse};

/// What became of one file.
#[derive(Debug, Clone, Serialize)]
pub struct PipeFile {
    pub file: String,
    /// LOADED (and merged), LOAD_FAILED, PARTIALLY_LOADED, NOT_REPORTED, or INVALID (it did
    /// not match its manifest entry and was not submitted).
    pub status: String,
    pub rows: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PipeSummary {
    pub files: Vec<PipeFile>,
    pub inserted: u64,
    pub replaced: u64,
    pub seconds: f64,
}

impl PipeSummary {
    pub fn failed(&self) -> usize {
        self.files.iter().filter(|f| f.status != "LOADED").count()
    }
}

fn in_list(files: &[String]) -> String {
    files
        .iter()
        .map(|f| literal(f))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statements that merge `files` (all in the landing table) into the raw table.
fn merge_from_landing(raw_schema: &str, batch: &LoadBatch, loaded_at: i64) -> Vec<String> {
    let k = &crate::warehouse::snowflake::DIALECT;
    let q = |c: &str| quote(k, c);
    let landing = relation(k, raw_schema, LANDING);
    let paths: Vec<String> = batch.files.iter().map(|f| f.entry.path.clone()).collect();
    let values = batch
        .files
        .iter()
        .map(|f| {
            format!(
                "({}, {}, {})",
                literal(&f.entry.path),
                timestamp_literal(k, f.staged_at),
                literal(f.entry.exchange.as_str())
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let keys = crate::datasets::klines::KLINES
        .key
        .iter()
        .map(|c| q(c))
        .collect::<Vec<_>>()
        .join(", ");
    // Snowpipe may load a file twice after its 14-day memory: keep one row per key.
    let source = format!(
        "(SELECT * FROM {landing} WHERE {file} IN ({}) QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {sa} DESC) = 1)",
        in_list(&paths),
        file = q("_file"),
        sa = q("_staged_at"),
    );
    // Files staged before the exchange column (and pipes created before it) leave it NULL:
    // the file's manifest entry says whose rows they are.
    let mut out = vec![format!(
        "UPDATE {landing} SET {sa} = f.{staged}, {x} = COALESCE({landing}.{x}, f.{x}) FROM (VALUES {values}) AS f ({path}, {staged}, {x}) WHERE {landing}.{file} = f.{path}",
        x = q("exchange"),
        sa = q("_staged_at"),
        staged = q("staged"),
        path = q("path"),
        file = q("_file"),
    )];
    out.push(raw::merge_statement(k, raw_schema, &source, loaded_at));
    out.extend(raw::history_insert(k, raw_schema, batch, loaded_at));
    out.push(format!(
        "DELETE FROM {landing} WHERE {} IN ({})",
        q("_file"),
        in_list(&paths)
    ));
    out
}

/// Files in the landing table, with their rows.
async fn in_landing(sf: &Snowflake, raw_schema: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let k = &crate::warehouse::snowflake::DIALECT;
    let rows = sf
        .query(&format!(
            "SELECT {f}, count(*) FROM {} GROUP BY {f}",
            relation(k, raw_schema, LANDING),
            f = quote(k, "_file")
        ))
        .await?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| Some((r[0].as_str()?.to_string(), r[1].as_i64()? as u64)))
        .collect())
}

pub async fn load(
    stage: &Stage,
    sf: &Snowflake,
    pipe: &Snowpipe,
    raw_schema: &str,
    opts: &Options,
    timeout: Duration,
) -> anyhow::Result<PipeSummary> {
    let started = Instant::now();
    super::raw::ensure(sf, raw_schema).await?;
    let (candidates, failed, _) = pending(stage, sf, raw_schema, false).await?;
    let mut summary = PipeSummary::default();
    for f in failed {
        summary.files.push(PipeFile {
            file: f.file,
            status: "INVALID".into(),
            rows: None,
            error: Some(f.error),
        });
    }
    let good = checked(stage, candidates, opts, &mut summary).await;
    let landed = in_landing(sf, raw_schema).await?;
    let to_submit: Vec<(String, u64)> = good
        .iter()
        .filter(|c| !landed.contains_key(&c.entry.path))
        .map(|c| (c.entry.path.clone(), c.entry.bytes))
        .collect();
    let mut reports = BTreeMap::new();
    if !to_submit.is_empty() {
        tracing::info!(files = to_submit.len(), pipe = %pipe.pipe, "submitting to Snowpipe");
        pipe.insert_files(&to_submit).await?;
        let paths: BTreeSet<String> = to_submit.iter().map(|(p, _)| p.clone()).collect();
        reports = pipe.wait(&paths, timeout).await?;
    }
    let landed = in_landing(sf, raw_schema).await?;
    let mut ready = Vec::new();
    let k = &crate::warehouse::snowflake::DIALECT;
    for c in good {
        let report = reports.get(&c.entry.path);
        let status = report
            .map(|r| r.status.clone())
            .unwrap_or_else(|| "LOADED".into());
        let rows_in_landing = landed.get(&c.entry.path).copied().unwrap_or(0);
        if status == "LOADED" && rows_in_landing == c.entry.rows {
            ready.push(c);
            continue;
        }
        let error = report.and_then(|r| r.first_error.clone()).or_else(|| {
            (status == "LOADED").then(|| {
                format!(
                    "{rows_in_landing} rows landed, the manifest says {}",
                    c.entry.rows
                )
            })
        });
        if rows_in_landing > 0 && status != "LOAD_IN_PROGRESS" && status != "NOT_REPORTED" {
            // No partial file stays in the landing table to be merged later.
            sf.execute(&format!(
                "DELETE FROM {} WHERE {} = {}",
                relation(k, raw_schema, LANDING),
                quote(k, "_file"),
                literal(&c.entry.path)
            ))
            .await?;
        }
        summary.files.push(PipeFile {
            file: c.entry.path.clone(),
            status,
            rows: report.and_then(|r| r.rows_inserted),
            error,
        });
    }
    merge_ready(sf, raw_schema, ready, opts, &mut summary).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The files that match their manifest entries (only they go to Snowpipe); the others are
/// reported INVALID.
async fn checked(
    stage: &Stage,
    candidates: Vec<Candidate>,
    opts: &Options,
    summary: &mut PipeSummary,
) -> Vec<Candidate> {
    let checked: Vec<anyhow::Result<crate::datasets::klines::KlineBatch>> =
        futures::stream::iter(candidates.iter().map(|c| fetch(stage, &c.entry)))
            .buffered(opts.fetch_concurrency.max(1))
            .collect()
            .await;
    let mut good: Vec<Candidate> = Vec::new();
    for (c, r) in candidates.into_iter().zip(checked) {
        match r {
            Ok(_) => good.push(c),
            Err(e) => summary.files.push(PipeFile {
                file: c.entry.path.clone(),
                status: "INVALID".into(),
                rows: None,
                error: Some(format!("{e:#}")),
            }),
        }
    }
    good
}

/// Merges the landed files into the raw table and records them, a transaction per batch.
async fn merge_ready(
    sf: &Snowflake,
    raw_schema: &str,
    ready: Vec<Candidate>,
    opts: &Options,
    summary: &mut PipeSummary,
) -> anyhow::Result<()> {
    for batch in batches(ready, opts.batch_rows) {
        let files: Vec<LoadFile> = batch
            .iter()
            .map(|c| LoadFile {
                entry: c.entry.clone(),
                staged_at: c.staged_at,
            })
            .collect();
        let load = LoadBatch {
            files,
            rows: Vec::new(),
            fresh: false,
            rejected: Vec::new(),
        };
        let statements = merge_from_landing(raw_schema, &load, crate::time::now_ms());
        let results = sf.transaction_rows(&statements).await?;
        let counts = {
            let (inserted, replaced) = sf.merge_counts(&results[1]);
            super::batch::LoadCounts { inserted, replaced }
        };
        summary.inserted += counts.inserted;
        summary.replaced += counts.replaced;
        for f in &load.files {
            summary.files.push(PipeFile {
                file: f.entry.path.clone(),
                status: "LOADED".into(),
                rows: Some(f.entry.rows),
                error: None,
            });
        }
    }
    Ok(())
}

/// A Snowflake connection and the pipe `--snowpipe [PIPE]` names (empty: the profile's `pipe`).
pub async fn connect(
    o: &crate::config::profiles::SnowflakeOutput,
    pipe: &str,
) -> anyhow::Result<(Snowflake, Snowpipe)> {
    let pipe = if pipe.is_empty() {
        o.pipe.clone().ok_or_else(|| {
            crate::error::UsageError(
                "--snowpipe: no pipe given and the profile has no `pipe:`".into(),
            )
        })?
    } else {
        pipe.to_string()
    };
    let sf = Snowflake::connect(o).await?;
    let pipe = Snowpipe::new(o, sf.http().clone(), &pipe)
        .map_err(|e| crate::error::UsageError(format!("{e:#}")))?;
    Ok((sf, pipe))
}
