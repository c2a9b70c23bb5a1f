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
            indirect_selection: Default::default(),
            vars: args.vars,
        },
        full_refresh: false,
        threads: args.threads,
    };
    // One project, one target and one warehouse connection for the whole run.
    let project = super::project(global)?;
    let target = super::target(global, &project)?;
    stage("backfill", super::backfill::run_on(&project, args.backfill)).await?;
    let wh = stage("load", async {
        let wh = crate::warehouse::connect(&target, &project.dir).await?;
        super::load::run_on(&project, &target, Some(wh.clone()), load).await?;
        Ok(wh)
    })
    .await?;
    stage(
        "build",
        super::models::run_on(&project, &target, Some(wh), build, Mode::Build),
    )
    .await?;
    println!(
        "pipeline: backfill, load and build done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs one stage in a span of its name; its error (and so its exit code) stops the pipeline.
async fn stage<T>(
    name: &'static str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tracing::info!(stage = name, "pipeline stage");
    work.instrument(tracing::info_span!("pipeline", stage = name))
        .await
        .with_context(|| format!("pipeline stopped at {name}"))
}
