//! The live plan: the source's candles to the stage as they close (`extract::stream`), and each
//! flush to the sinks the run asked for: the loader (or Snowpipe), the model builder, the
//! dashboard. One warehouse connection serves them all (embedded DuckDB allows one writer).

use std::net::SocketAddr;
use std::sync::Arc;

use super::sinks::Sinks;
use super::sinks::builder::BuilderSink;
use super::sinks::dashboard::DashboardSink;
use super::sinks::loader::LoaderSink;
use super::sinks::snowpipe::SnowpipeSink;
use crate::config::Project;
use crate::config::profiles::{Output, Target};
use crate::error::UsageError;
use crate::extract::live::StreamStats;
use crate::extract::stream::{self, StreamPlan};
use crate::extract::{self, Summary};
use crate::load::Options;
use crate::models::workspace::{OnResult, Selection, Workspace};
use crate::stage::sink::Sink;
use crate::stage::{Location, Stage};
use crate::warehouse::{self, Warehouse};

/// `load.batch_rows` for a stream's loads at most: a day of 1m candles for 35 series a
/// transaction. When a UTC day closes, every series' compacted day file is merged over its
/// pieces at once, and one merge of them all would hold the whole day in DuckDB's memory.
const STREAM_BATCH_ROWS: usize = 50_000;

/// Where a live run's flushes go.
pub struct Outputs {
    /// `--load`.
    pub load: bool,
    /// `--build`: the models to run after each load, with the vars naming the stream's series.
    pub build: Option<(Selection, String)>,
    /// `--snowpipe [PIPE]`: through Snowpipe instead of COPY INTO.
    pub snowpipe: Option<String>,
    /// `--serve ADDR`, and its token.
    pub serve: Option<(SocketAddr, Option<crate::redact::Secret>)>,
}

/// What the command gives to report on builds.
pub struct Reports {
    /// A node's result, as it finishes.
    pub on_result: Arc<dyn Fn(usize) -> OnResult>,
    /// A build's summary line.
    pub on_summary: Box<dyn Fn(&str)>,
}

/// The sinks of `outputs`, on one connection to `target` (none when nothing is loaded).
pub async fn sinks(
    project: &Project,
    target: &Target,
    stage: &Stage,
    outputs: Outputs,
    reports: Reports,
) -> anyhow::Result<Option<Sinks>> {
    if !outputs.load && outputs.build.is_none() && outputs.snowpipe.is_none() {
        return Ok(None);
    }
    let opts = Options {
        dry_run: false,
        batch_rows: project.load_batch_rows.min(STREAM_BATCH_ROWS),
        fetch_concurrency: project.load_fetch_concurrency,
    };
    let raw_schema = target.raw_schema().to_string();
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let wh: Arc<dyn Warehouse> = match (&outputs.snowpipe, &target.output) {
        (Some(name), Output::Snowflake(o)) => {
            if !matches!(stage.location(), Location::S3 { .. }) {
                return Err(UsageError(format!(
                    "Snowpipe loads from S3: the stage is {}",
                    stage.url()
                ))
                .into());
            }
            let (sf, pipe) = crate::load::snowpipe::connect(o, name).await?;
            let sf = Arc::new(sf);
            sinks.push(Box::new(SnowpipeSink {
                stage: stage.clone(),
                snowflake: Arc::clone(&sf),
                pipe,
                raw_schema,
                opts,
            }));
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
        _ => {
            let wh = warehouse::connect(target, &project.dir).await?;
            sinks.push(Box::new(LoaderSink::new(
                stage.clone(),
                Arc::clone(&wh),
                raw_schema,
                opts,
            )));
            wh
        }
    };
    if let Some((selection, vars)) = outputs.build {
        let workspace = Workspace::open(project, target, Some(&vars))?;
        let selected = workspace.select(&selection)?;
        workspace.write_manifest(None)?;
        sinks.push(Box::new(BuilderSink {
            workspace,
            selection,
            selected,
            wh: Arc::clone(&wh),
            on_result: reports.on_result,
            on_summary: reports.on_summary,
        }));
    }
    if let Some((addr, token)) = outputs.serve {
        // The page is served from this process, on its one warehouse connection.
        let updates = crate::serve::live::Updates::new();
        let listener = crate::serve::bind(addr).await?;
        let opts = crate::serve::Options {
            addr,
            token,
            schema: target.schema().to_string(),
            updates: updates.clone(),
        };
        tokio::spawn(async move {
            if let Err(e) = crate::serve::run(listener, wh, opts).await {
                tracing::error!(error = %format!("{e:#}"), "the dashboard stopped");
            }
        });
        sinks.push(Box::new(DashboardSink(updates)));
    }
    Ok(Some(Sinks(sinks)))
}

/// Follows the plan's series: catches up, then stages every candle as it closes, and hands
/// each flush to `sinks`, until `--until` or SIGTERM. The series' locks are held throughout.
pub async fn run(
    source: &crate::sources::Source,
    stage: Stage,
    state: extract::state::StateStore,
    sp: &StreamPlan,
    sinks: Option<&mut Sinks>,
) -> anyhow::Result<(Summary, Arc<StreamStats>)> {
    let all = stream::all_series(source.rest.as_ref(), &sp.plan);
    let locks = extract::lock_all(&state, &stage, &all).await?;
    tracing::info!(
        series = %stream::describe(&all),
        exchange = %source.rest.capabilities().exchange,
        market = %source.rest.capabilities().market,
        from = %crate::time::format_ms(sp.plan.from),
        until = %sp.plan.to.map(crate::time::format_ms).unwrap_or_else(|| "SIGTERM".into()),
        stage = %stage.url(),
        "stream"
    );
    stream::stream(
        source,
        stage,
        state,
        sp,
        all,
        locks,
        sinks.map(|s| s as &mut dyn Sink),
    )
    .await
}
