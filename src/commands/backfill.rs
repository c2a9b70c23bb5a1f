//! `klines backfill`

use std::sync::Arc;

use anyhow::Context;

use crate::cli::{BackfillArgs, GlobalArgs};
use crate::exchange::BinanceClient;
use crate::exit::{PartialFailure, UsageError};
use crate::extract::state::StateStore;
use crate::extract::{self, Plan};
use crate::time;

pub async fn run(global: &GlobalArgs, args: BackfillArgs) -> anyhow::Result<()> {
    let project = super::project(global)?;
    let from_text = args.from.clone().unwrap_or_else(|| project.start.clone());
    // Checked first, so a typo fails before any request.
    time::parse("--from", &from_text, 0)?;
    if let Some(t) = &args.to {
        time::parse("--to", t, 0)?;
    }
    let market = args.market.unwrap_or(project.market);
    let mut exchange = project.exchange.clone();
    if let Some(url) = args.base_url {
        exchange.base_url = url;
    }
    let client = Arc::new(
        BinanceClient::new(exchange.client_config(market))
            .map_err(|e| UsageError(e.to_string()))?,
    );
    let stage = super::stage(&project, args.stage)?;
    let state_spec = args.state.unwrap_or_else(|| project.state.clone());
    let state = StateStore::open(&state_spec, &stage, &project.dir)
        .map_err(|e| UsageError(format!("{e:#}")))?
        .with_lease(project.lease);
    // `-2h` and `now` mean the exchange's time: its clock decides which candles are closed.
    let now = if time::is_relative(&from_text) || args.to.as_deref().is_some_and(time::is_relative)
    {
        client.server_time().await.context("the exchange's clock")?
    } else {
        time::now_ms()
    };
    let (from, to) = times(&from_text, args.to.as_deref(), now)?;
    let plan = Plan {
        symbols: if args.symbols.is_empty() {
            project.symbols.clone()
        } else {
            dedup(args.symbols)
        },
        intervals: if args.intervals.is_empty() {
            project.intervals.clone()
        } else {
            dedup(args.intervals)
        },
        from,
        to,
        full_refresh: args.full_refresh,
        spans_in_flight: exchange.spans_in_flight,
    };
    tracing::info!(
        symbols = %plan.symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
        intervals = %plan.intervals.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(","),
        market = %market,
        from = %time::format_ms(from),
        to = %to.map(time::format_ms).unwrap_or_else(|| "now".into()),
        stage = %stage.url(),
        state = %state.describe(),
        "backfill"
    );
    let outcome = extract::backfill(client, stage, state, &plan)
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

/// `--from` and `--to` at `now`; `--to` must be after `--from`.
fn times(from: &str, to: Option<&str>, now: i64) -> anyhow::Result<(i64, Option<i64>)> {
    let from = time::parse("--from", from, now)?;
    let to = to.map(|t| time::parse("--to", t, now)).transpose()?;
    if let Some(to) = to
        && to <= from
    {
        return Err(UsageError(format!(
            "--to {} is not after --from {}",
            time::format_ms(to),
            time::format_ms(from)
        ))
        .into());
    }
    Ok((from, to))
}

fn dedup<T: PartialEq>(v: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}
