//! `klines stream`

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::source::{self, Opened, SourceFlags};
use crate::cli::{GlobalArgs, StreamArgs};
use crate::error::UsageError;
use crate::extract::Plan;
use crate::extract::stream::StreamPlan;
use crate::models::workspace::Selection;
use crate::pipeline::stream::{Outputs, Reports};
use crate::time;

pub async fn run(global: &GlobalArgs, args: StreamArgs) -> anyhow::Result<()> {
    let project = super::project(global)?;
    let from_text = args.from.clone().unwrap_or_else(|| project.start.clone());
    check_flags(&args, &from_text)?;
    if let Some(addr) = args.metrics {
        install_metrics(addr)?;
    }
    let Opened {
        market,
        exchange,
        source,
        stage,
        state,
    } = Opened::open(
        &project,
        SourceFlags {
            exchange: args.exchange,
            market: args.market,
            base_url: args.base_url.clone(),
            archive_url: None,
            ws_url: args.ws_url.clone(),
            history: crate::sources::history::HistorySource::Rest,
            live: Some(Duration::from_secs_f64(args.silence_secs)),
            stage: args.stage.clone(),
            state: args.state.clone(),
        },
    )?;
    // A load target is resolved before anything is fetched, so a bad profile stops at once.
    let mut sinks = match outputs(&args, &market.to_string())? {
        Some(outputs) => {
            let target = super::target(global, &project)?;
            let reports = Reports {
                // Each build prints the nodes that did not succeed, and its summary.
                on_result: Arc::new(|count| super::models::printer(count, true)),
                on_summary: Box::new(|line: &str| println!("{line}")),
            };
            crate::pipeline::stream::sinks(&project, &target, &stage, outputs, reports).await?
        }
        None => None,
    };
    let client = &source.rest;
    let symbols = source::symbols(&project, args.symbols);
    client.check_symbols(&symbols).await?;
    let now = client.server_time().await.context("the exchange's clock")?;
    let (from, until) = source::range(&from_text, args.until.as_deref(), "--until", now)?;
    let sp = StreamPlan {
        plan: Plan {
            symbols,
            intervals: source::intervals(&project, args.intervals),
            from,
            to: until,
            full_refresh: false,
            spans_in_flight: exchange.spans_in_flight,
        },
        flush_every: Duration::from_secs_f64(args.flush_secs),
        grace: Duration::from_secs(args.grace_secs),
        // Polled exchanges have no events to move the clock: it is read more often.
        resync: Duration::from_secs(if source.live.is_some() { 30 } else { 5 }),
    };
    let (summary, stats) =
        crate::pipeline::stream::run(&source, stage, state, &sp, sinks.as_mut()).await?;
    let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "stream: {} series, {} rows, {} files, {} bytes in {:.1}s; {} events ({} closed), {} reconnects, {} rotations, {} dead letters; {} requests",
        summary.series,
        summary.rows,
        summary.files,
        summary.bytes,
        summary.seconds,
        n(&stats.events),
        n(&stats.closed),
        n(&stats.reconnects),
        n(&stats.rotations),
        n(&stats.dead_letters),
        summary.requests,
    );
    Ok(())
}

/// Flags checked before anything is opened, so a typo fails at once.
fn check_flags(args: &StreamArgs, from_text: &str) -> anyhow::Result<()> {
    time::parse("--from", from_text, 0)?;
    if let Some(u) = &args.until {
        time::parse("--until", u, 0)?;
    }
    if !(args.flush_secs.is_finite() && (0.05..=3600.0).contains(&args.flush_secs)) {
        return Err(UsageError(format!(
            "--flush-secs must be from 0.05 to 3600, got {}",
            args.flush_secs
        ))
        .into());
    }
    if !(args.silence_secs.is_finite() && (0.1..=3600.0).contains(&args.silence_secs)) {
        return Err(UsageError(format!(
            "--silence-secs must be from 0.1 to 3600, got {}",
            args.silence_secs
        ))
        .into());
    }
    Ok(())
}

/// `--metrics ADDR`: the Prometheus exporter, with the latency histogram's buckets.
fn install_metrics(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                crate::extract::live::metric::LATENCY.to_string(),
            ),
            &[0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0],
        )
        .map_err(|e| UsageError(format!("--metrics: {e}")))?
        .install()
        .map_err(|e| UsageError(format!("--metrics {addr}: {e}")))?;
    crate::extract::live::metric::describe();
    tracing::info!(%addr, "Prometheus metrics on /metrics");
    Ok(())
}

/// Where the flushes go (`--load`, `--build`, `--snowpipe`, `--serve`); `None`: only staged.
fn outputs(args: &StreamArgs, market: &str) -> anyhow::Result<Option<Outputs>> {
    let loads = args.load || args.build || args.snowpipe.is_some();
    let serve = match args.serve {
        Some(addr) if loads => {
            let token = crate::serve::token_for(&addr, args.serve_token.clone(), "--serve-token")
                .map_err(|e| UsageError(format!("--serve {e}")))?;
            Some((addr, token))
        }
        Some(_) => {
            return Err(UsageError(
                "--serve shows the warehouse the stream loads: add --load or --build".into(),
            )
            .into());
        }
        None => None,
    };
    if !loads {
        return Ok(None);
    }
    let build = args.build.then(|| {
        let select = if args.select.is_empty() {
            vec!["tag:ohlc".to_string()]
        } else {
            args.select.clone()
        };
        let selection = Selection {
            select,
            ..Selection::default()
        };
        // The models build the series this stream stages.
        (
            selection,
            format!("{{exchange: {}, market: {market}}}", args.exchange),
        )
    });
    Ok(Some(Outputs {
        load: args.load,
        build,
        snowpipe: args.snowpipe.clone(),
        serve,
    }))
}
