//! `klines stream`

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::cli::{GlobalArgs, StreamArgs};
use super::source::{self, Opened, SourceFlags};
use crate::error::UsageError;
use crate::extract::stream::{self, Sink, StreamPlan};
use crate::extract::{self, Plan, Summary};
use crate::load::{self, Options};
use crate::stage::Stage;
use crate::time;
use crate::config::profiles::Output;
use crate::stage::Location;
use crate::warehouse::snowflake::{Snowflake, snowpipe::Snowpipe};
use crate::warehouse::{self, Warehouse};

/// `--load`: every flush is loaded into the warehouse, on the one connection of this process
/// (embedded DuckDB allows one writer); `--build`: then the selected models run on it.
struct LoadSink {
    stage: Stage,
    wh: Arc<dyn Warehouse>,
    raw_schema: String,
    opts: Options,
    build: Option<Build>,
    /// After the first flush (a full load of whatever is pending), the files each flush staged
    /// are loaded without listing the stage.
    follower: Option<load::Follower>,
    /// `--snowpipe`: each flush goes through the pipe instead.
    pipe: Option<(Arc<Snowflake>, Snowpipe)>,
    /// `--serve`: open pages hear of each flush.
    updates: Option<crate::serve::live::Updates>,
}

/// `load.batch_rows` for a stream's loads at most.
const STREAM_BATCH_ROWS: usize = 50_000;

struct Build {
    project: crate::config::Project,
    target: crate::config::profiles::Target,
    select: Vec<String>,
    /// `{exchange: ..., market: ...}`: the models build the series this stream stages.
    vars: String,
}

#[async_trait::async_trait(?Send)]
impl Sink for LoadSink {
    async fn flushed(
        &mut self,
        _: &Summary,
        staged: Vec<(crate::stage::manifest::ManifestEntry, i64)>,
    ) -> anyhow::Result<()> {
        if self.pipe.is_some() {
            self.load_through_pipe().await?;
        } else {
            self.load(staged).await?;
        }
        self.build().await?;
        if let Some(u) = &self.updates {
            u.changed();
        }
        Ok(())
    }
}

impl LoadSink {
    async fn load_through_pipe(&mut self) -> anyhow::Result<()> {
        let Some((sf, pipe)) = &self.pipe else {
            return Ok(());
        };
        let summary = load::snowpipe::load(
            &self.stage,
            sf,
            pipe,
            &self.raw_schema,
            &self.opts,
            Duration::from_secs(600),
        )
        .await
        .context("snowpipe")?;
        for f in summary.files.iter().filter(|f| f.status != "LOADED") {
            tracing::error!(file = %f.file, status = %f.status, error = f.error.as_deref().unwrap_or(""), "failed");
        }
        tracing::info!(files = summary.files.len(), inserted = summary.inserted, "loaded through Snowpipe");
        Ok(())
    }

    /// The files this flush staged (the first time: everything pending).
    async fn load(
        &mut self,
        staged: Vec<(crate::stage::manifest::ManifestEntry, i64)>,
    ) -> anyhow::Result<()> {
        let summary = match &mut self.follower {
            Some(f) => f
                .load(&self.stage, Arc::clone(&self.wh), &self.raw_schema, &self.opts, staged)
                .await
                .context("load")?,
            None => {
                let (f, summary) = load::Follower::start(
                    &self.stage,
                    Arc::clone(&self.wh),
                    &self.raw_schema,
                    &self.opts,
                )
                .await
                .context("load")?;
                self.follower = Some(f);
                summary
            }
        };
        for f in &summary.failed {
            tracing::error!(file = %f.file, error = %f.error, "failed");
        }
        tracing::info!(files = summary.files, rows = summary.rows, "loaded");
        Ok(())
    }
    async fn build(&self) -> anyhow::Result<()> {
        if let Some(b) = &self.build {
            let args = crate::cli::RunArgs {
                select: crate::cli::SelectArgs {
                    selectors: Vec::new(),
                    select: b.select.clone(),
                    exclude: Vec::new(),
                    indirect_selection: Default::default(),
                    vars: Some(b.vars.clone()),
                },
                full_refresh: false,
                threads: None,
            };
            // A model that fails is reported; the stream goes on staging and loading.
            if let Err(e) = super::models::run_on(
                &b.project,
                &b.target,
                Some(Arc::clone(&self.wh)),
                args,
                crate::models::runner::Mode::Run,
                false,
            )
            .await
            {
                tracing::error!(error = %format!("{e:#}"), "the models failed; the stream goes on");
            }
        }
        Ok(())
    }
}

pub async fn run(global: &GlobalArgs, args: StreamArgs) -> anyhow::Result<()> {
    let project = super::project(global)?;
    let from_text = args.from.clone().unwrap_or_else(|| project.start.clone());
    time::parse("--from", &from_text, 0)?;
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
    if let Some(addr) = args.metrics {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(crate::extract::live::metric::LATENCY.to_string()),
                &[0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0],
            )
            .map_err(|e| UsageError(format!("--metrics: {e}")))?
            .install()
            .map_err(|e| UsageError(format!("--metrics {addr}: {e}")))?;
        crate::extract::live::metric::describe();
        tracing::info!(%addr, "Prometheus metrics on /metrics");
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
            base_url: args.base_url,
            archive_url: None,
            ws_url: args.ws_url,
            history: crate::sources::history::HistorySource::Rest,
            live: Some(Duration::from_secs_f64(args.silence_secs)),
            stage: args.stage,
            state: args.state,
        },
    )?;
    let client = &source.rest;
    // A load target is resolved before anything is fetched, so a bad profile stops at once.
    let serve_token = match args.serve {
        Some(addr) if args.load || args.build || args.snowpipe.is_some() => {
            crate::serve::token_for(&addr, args.serve_token, "--serve-token")
                .map_err(|e| UsageError(format!("--serve {e}")))?
        }
        Some(_) => {
            return Err(UsageError(
                "--serve shows the warehouse the stream loads: add --load or --build".into(),
            )
            .into());
        }
        None => None,
    };
    let mut sink = if args.load || args.build || args.snowpipe.is_some() {
        let target = super::target(global, &project)?;
        let mut pipe = None;
        let wh: Arc<dyn Warehouse> = match (&args.snowpipe, &target.output) {
            (Some(name), Output::Snowflake(o)) => {
                if !matches!(stage.location(), Location::S3 { .. }) {
                    return Err(UsageError(format!(
                        "Snowpipe loads from S3: the stage is {}",
                        stage.url()
                    ))
                    .into());
                }
                let (sf, snowpipe) = super::load::connect_pipe(o, name).await?;
                let sf = Arc::new(sf);
                pipe = Some((Arc::clone(&sf), snowpipe));
                sf
            }
            (Some(_), _) => {
                return Err(UsageError(format!(
                    "--snowpipe needs a Snowflake target; {} is {}",
                    target.name,
                    target.type_name()
                ))
                .into());
            }
            _ => warehouse::connect(&target, &project.dir).await?,
        };
        Some(LoadSink {
            stage: stage.clone(),
            wh: Arc::clone(&wh),
            raw_schema: target.raw_schema().to_string(),
            opts: Options {
                dry_run: false,
                // At most a day of 1m candles for 35 series a transaction: when a UTC day
                // closes, every series' compacted day file is merged over its pieces at once,
                // and one merge of them all would hold the whole day in DuckDB's memory.
                batch_rows: project.load_batch_rows.min(STREAM_BATCH_ROWS),
                fetch_concurrency: project.load_fetch_concurrency,
            },
            build: args.build.then(|| Build {
                project: project.clone(),
                target: target.clone(),
                vars: format!("{{exchange: {}, market: {market}}}", args.exchange),
                select: if args.select.is_empty() {
                    vec!["tag:ohlc".to_string()]
                } else {
                    args.select.clone()
                },
            }),
            follower: None,
            pipe,
            updates: match args.serve {
                // The page is served from this process, on its one warehouse connection.
                Some(addr) => {
                    let updates = crate::serve::live::Updates::new();
                    let listener = crate::serve::bind(addr).await?;
                    let opts = crate::serve::Options {
                        addr,
                        token: serve_token,
                        schema: target.schema().to_string(),
                        updates: updates.clone(),
                    };
                    let wh = Arc::clone(&wh);
                    tokio::spawn(async move {
                        if let Err(e) = crate::serve::run(listener, wh, opts).await {
                            tracing::error!(error = %format!("{e:#}"), "the dashboard stopped");
                        }
                    });
                    Some(updates)
                }
                None => None,
            },
        })
    } else {
        None
    };

    let symbols = source::symbols(&project, args.symbols);
    client.check_symbols(&symbols).await?;
    let now = client.server_time().await.context("the exchange's clock")?;
    let from = time::parse("--from", &from_text, now)?;
    let until = args
        .until
        .as_deref()
        .map(|u| time::parse("--until", u, now))
        .transpose()?;
    if let Some(u) = until
        && u <= from
    {
        return Err(UsageError(format!(
            "--until {} is not after --from {}",
            time::format_ms(u),
            time::format_ms(from)
        ))
        .into());
    }
    let plan = Plan {
        symbols,
        intervals: source::intervals(&project, args.intervals),
        from,
        to: until,
        full_refresh: false,
        spans_in_flight: exchange.spans_in_flight,
    };
    let all = stream::all_series(client.as_ref(), &plan);
    let locks = extract::lock_all(&state, &stage, &all).await?;
    tracing::info!(
        series = %stream::describe(&all),
        exchange = %args.exchange,
        market = %market,
        from = %time::format_ms(from),
        until = %until.map(time::format_ms).unwrap_or_else(|| "SIGTERM".into()),
        stage = %stage.url(),
        load = args.load,
        "stream"
    );
    let sp = StreamPlan {
        plan,
        flush_every: Duration::from_secs_f64(args.flush_secs),
        grace: Duration::from_secs(args.grace_secs),
        // Polled exchanges have no events to move the clock: it is read more often.
        resync: Duration::from_secs(if source.live.is_some() { 30 } else { 5 }),
    };
    let result = stream::stream(
        &source,
        stage,
        state,
        &sp,
        all,
        locks,
        sink.as_mut().map(|s| s as &mut dyn Sink),
    )
    .await;
    let (summary, stats) = result?;
    println!(
        "stream: {} series, {} rows, {} files, {} bytes in {:.1}s; {} events ({} closed), {} reconnects, {} rotations, {} dead letters; {} requests",
        summary.series,
        summary.rows,
        summary.files,
        summary.bytes,
        summary.seconds,
        stats.events.load(std::sync::atomic::Ordering::Relaxed),
        stats.closed.load(std::sync::atomic::Ordering::Relaxed),
        stats.reconnects.load(std::sync::atomic::Ordering::Relaxed),
        stats.rotations.load(std::sync::atomic::Ordering::Relaxed),
        stats.dead_letters.load(std::sync::atomic::Ordering::Relaxed),
        summary.requests,
    );
    Ok(())
}
