//! `klines load`

use std::time::Duration;

use crate::cli::{GlobalArgs, LoadArgs};
use crate::config::Project;
use crate::config::profiles::{Output, SnowflakeOutput, Target};
use crate::error::{PartialFailure, UsageError};
use crate::load::{self, Options};
use crate::stage::{Location, Stage};
use crate::warehouse;

pub async fn run(global: &GlobalArgs, args: LoadArgs) -> anyhow::Result<()> {
    let project = super::project(global)?;
    let target = super::target(global, &project)?;
    run_on(&project, &target, None, args).await
}

/// Loads into `target`, on `wh` when the caller has a connection already (`klines pipeline`
/// loads and builds on one).
pub(crate) async fn run_on(
    project: &Project,
    target: &Target,
    wh: Option<std::sync::Arc<dyn warehouse::Warehouse>>,
    args: LoadArgs,
) -> anyhow::Result<()> {
    let stage = super::stage(project, args.stage.clone())?;
    if let Output::Snowflake(o) = &target.output {
        if !matches!(stage.location(), Location::S3 { .. }) {
            return Err(UsageError(format!(
                "Snowflake loads from S3: the stage is {}; set `stage: s3://bucket/prefix` (and an external stage over it, see `klines setup snowflake`)",
                stage.url()
            ))
            .into());
        }
        if let Some(pipe) = &args.snowpipe {
            return snowpipe(project, o, target, &stage, pipe, &args).await;
        }
    } else if args.snowpipe.is_some() {
        return Err(UsageError(format!(
            "--snowpipe needs a Snowflake target; {} is {}",
            target.name,
            target.type_name()
        ))
        .into());
    }
    let wh = match wh {
        Some(wh) => wh,
        None => warehouse::connect(target, &project.dir).await?,
    };
    // One load per raw schema at a time, across processes and machines.
    let _lock = wh
        .lock(
            &format!("klines.command.load.{}", target.raw_schema()),
            super::LOCK_WAIT,
        )
        .await?;
    tracing::info!(stage = %stage.url(), warehouse = %wh.describe(), output = %target.name, dry_run = args.dry_run, "load");
    let opts = Options {
        dry_run: args.dry_run,
        batch_rows: project.load_batch_rows,
        fetch_concurrency: project.load_fetch_concurrency,
    };
    let summary = load::load(&stage, wh, target.raw_schema(), &opts).await?;
    if args.dry_run {
        for p in &summary.pending {
            println!("{}\t{} rows\t{} bytes", p.file, p.rows, p.bytes);
        }
        println!("would load: {} files, {} rows", summary.files, summary.rows);
    } else {
        println!("{summary}");
    }
    for f in &summary.failed {
        if crate::logging::is_json() {
            tracing::error!(file = %f.file, error = %f.error, "failed");
        } else {
            eprintln!("failed: {}: {}", f.file, f.error);
        }
    }
    match summary.failed.len() {
        0 if summary.rejected > 0 => Err(PartialFailure(format!(
            "{} rows break a kline's invariants and were kept in {}.{} instead of loaded; the other rows loaded",
            summary.rejected,
            target.raw_schema(),
            load::quarantine::REJECTED
        ))
        .into()),
        0 => Ok(()),
        n if summary.files == 0 => anyhow::bail!(
            "{n} staged files could not be loaded; first: {}",
            summary.failed[0].error
        ),
        n => Err(PartialFailure(format!(
            "{n} staged files could not be loaded; the other {} loaded",
            summary.files
        ))
        .into()),
    }
}

async fn snowpipe(
    project: &Project,
    o: &SnowflakeOutput,
    target: &Target,
    stage: &Stage,
    pipe: &str,
    args: &LoadArgs,
) -> anyhow::Result<()> {
    let (sf, pipe) = load::snowpipe::connect(o, pipe).await?;
    let opts = Options {
        dry_run: false,
        batch_rows: project.load_batch_rows,
        fetch_concurrency: project.load_fetch_concurrency,
    };
    let summary = load::snowpipe::load(
        stage,
        &sf,
        &pipe,
        target.raw_schema(),
        &opts,
        Duration::from_secs(args.snowpipe_timeout),
    )
    .await?;
    sf.close().await;
    for f in &summary.files {
        let rows = f.rows.map(|r| format!("\t{r} rows")).unwrap_or_default();
        let error = f
            .error
            .as_deref()
            .map(|e| format!("\t{e}"))
            .unwrap_or_default();
        println!("{}\t{}{rows}{error}", f.status, f.file);
    }
    let failed = summary.failed();
    println!(
        "snowpipe: {} files, {} loaded ({} inserted, {} replaced), {failed} failed in {:.1}s",
        summary.files.len(),
        summary.files.len() - failed,
        summary.inserted,
        summary.replaced,
        summary.seconds
    );
    match failed {
        0 => Ok(()),
        n if n == summary.files.len() => anyhow::bail!("Snowpipe loaded none of the {n} files"),
        n => Err(PartialFailure(format!(
            "Snowpipe did not load {n} of {} files",
            summary.files.len()
        ))
        .into()),
    }
}
