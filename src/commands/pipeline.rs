//! `klines pipeline`: backfill, load, then build, stopping at the first stage that fails with
//! that stage's exit code.

use std::time::Instant;

use anyhow::Context;
use tracing::Instrument;

use crate::cli::{GlobalArgs, LoadArgs, PipelineArgs, RunArgs, SelectArgs};
use crate::models::runner::Mode;

pub async fn run(global: &GlobalArgs, args: PipelineArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let load = LoadArgs {
        stage: args.backfill.stage.clone(),
        dry_run: false,
        snowpipe: args.snowpipe.clone(),
        snowpipe_timeout: args.snowpipe_timeout,
    };
    let build = RunArgs {
        select: SelectArgs {
            selectors: Vec::new(),
            select: args.select,
            exclude: args.exclude,
            vars: args.vars,
        },
        full_refresh: false,
        threads: args.threads,
    };
    stage("backfill", super::backfill::run(global, args.backfill)).await?;
    stage("load", super::load::run(global, load)).await?;
    stage("build", super::models::run(global, build, Mode::Build)).await?;
    println!(
        "pipeline: backfill, load and build done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs one stage in a span of its name; its error (and so its exit code) stops the pipeline.
async fn stage(
    name: &'static str,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tracing::info!(stage = name, "pipeline stage");
    work.instrument(tracing::info_span!("pipeline", stage = name))
        .await
        .with_context(|| format!("pipeline stopped at {name}"))
}
