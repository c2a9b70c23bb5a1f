//! `klines backfill`

use anyhow::Context;

use super::source::{self, Opened, SourceFlags};
use crate::cli::{BackfillArgs, GlobalArgs};
use crate::config::Project;
use crate::error::PartialFailure;
use crate::extract::{self, Plan};
use crate::time;

pub async fn run(global: &GlobalArgs, args: BackfillArgs) -> anyhow::Result<()> {
    run_on(&super::project(global)?, args).await
}

/// The backfill of `project` (`pipeline` runs it with the project it already holds).
pub(crate) async fn run_on(project: &Project, args: BackfillArgs) -> anyhow::Result<()> {
    let from_text = args.from.clone().unwrap_or_else(|| project.start.clone());
    // Checked first, so a typo fails before any request.
    time::parse("--from", &from_text, 0)?;
    if let Some(t) = &args.to {
        time::parse("--to", t, 0)?;
    }
    let Opened {
        market,
        exchange,
        source,
        stage,
        state,
    } = Opened::open(
        project,
        SourceFlags {
            exchange: args.exchange,
            market: args.market,
            base_url: args.base_url,
            archive_url: args.archive_url,
            ws_url: None,
            history: args.source,
            live: None,
            stage: args.stage,
            state: args.state,
        },
    )?;
    let client = &source.rest;
    // `-2h` and `now` mean the exchange's time: its clock decides which candles are closed.
    let now = if time::is_relative(&from_text) || args.to.as_deref().is_some_and(time::is_relative)
    {
        client.server_time().await.context("the exchange's clock")?
    } else {
        time::now_ms()
    };
    let (from, to) = source::range(&from_text, args.to.as_deref(), "--to", now)?;
    let plan = Plan {
        symbols: source::symbols(project, args.symbols),
        intervals: source::intervals(project, args.intervals),
        from,
        to,
        full_refresh: args.full_refresh,
        spans_in_flight: exchange.spans_in_flight,
    };
    tracing::info!(
        symbols = %plan.symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
        intervals = %plan.intervals.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(","),
        exchange = %args.exchange,
        market = %market,
        source = ?args.source,
        from = %time::format_ms(from),
        to = %to.map(time::format_ms).unwrap_or_else(|| "now".into()),
        stage = %stage.url(),
        state = %state.describe(),
        "backfill"
    );
    let outcome = extract::backfill(source.rest, source.history, stage, state, &plan)
        .await
        .context("backfill")?;
    println!("{}", outcome.summary);
    let total = outcome.summary.series;
    let mut errors = outcome.errors;
    match errors.len() {
        0 => Ok(()),
        n if n == total => Err(errors.remove(0)),
        n => Err(errors
            .remove(0)
            .context(PartialFailure(format!("{n} of {total} series failed")))),
    }
}
