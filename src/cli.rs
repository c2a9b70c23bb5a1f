//! The command line (clap only: parsing, no behaviour).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;
use crate::market::{Exchange, Interval, Market, Symbol};
use crate::sources::history::HistorySource;

#[derive(Debug, Parser)]
#[command(
    name = "klines",
    version,
    about = "Exchange candles into your warehouse: extract from Binance, stage as Parquet, load, and model with SQL",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The project directory, holding klines.yml [default: the current directory]
    #[arg(long, global = true, value_name = "DIR", env = "KLINES_PROJECT_DIR")]
    pub project_dir: Option<PathBuf>,
    /// Where profiles.yml is [default: the project directory, then ~/.klines]
    #[arg(long, global = true, value_name = "DIR", env = "KLINES_PROFILES_DIR")]
    pub profiles_dir: Option<PathBuf>,
    /// The profile's output (warehouse) to use [default: the profile's `target:`]
    #[arg(long, global = true, value_name = "NAME", env = "KLINES_TARGET")]
    pub target: Option<String>,
    /// How log lines on stderr look
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "KLINES_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// More log output (-vv for all of it)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-qq for errors only); also hides progress bars
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a new project (klines.yml, models, macros, seeds, tests, a DuckDB profile) into DIR
    Init {
        /// Where [default: the current directory]
        dir: Option<PathBuf>,
    },
    /// Download closed klines from the exchange into the stage, resuming from checkpoints
    Backfill(BackfillArgs),
    /// Load staged files the warehouse has not loaded yet into its raw table, exactly once
    Load(LoadArgs),
    /// Catch up from the checkpoint, then follow the exchange's WebSocket: closed candles into
    /// the stage (and the warehouse with --load), gap-free
    Stream(StreamArgs),
    /// Build the selected models (`klines run models` runs everything under models/)
    Run(RunArgs),
    /// Write the compiled SQL of the selected models and tests to target/compiled/
    Compile(RunArgs),
    /// Run the data tests of the selected nodes
    Test(RunArgs),
    /// Load the CSV files of seeds/ as tables
    Seed(RunArgs),
    /// Seed, run and test the selected nodes in dependency order; a failing test stops its dependants
    Build(RunArgs),
    /// List the selected nodes
    Ls(LsArgs),
    /// Print the DDL that sets a warehouse up for klines (`klines setup snowflake`)
    Setup(SetupArgs),
    /// Backfill, load, then build (seed, run, test): the whole pipeline, for schedulers and cron
    Pipeline(PipelineArgs),
    /// Serve a candlestick dashboard and a JSON API over the TRADES_OHLC tables
    Serve(ServeArgs),
    /// Check the configuration, the warehouse connection, the stage and the exchange
    Debug(DebugArgs),
    /// Write the manifest entries of staged data files that have none, so that they load
    Repair(RepairArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where to listen; an address other than loopback needs a token
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub addr: std::net::SocketAddr,
    /// Required of every page and API request (open the page with ?token=...)
    #[arg(
        long,
        env = "KLINES_SERVE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// Symbols, comma-separated [default: klines.yml `symbols`]
    #[arg(long, value_delimiter = ',', value_name = "SYMBOLS")]
    pub symbols: Vec<Symbol>,
    /// Kline intervals, comma-separated [default: klines.yml `intervals`, else 1m]
    #[arg(
        long = "interval",
        visible_alias = "intervals",
        value_delimiter = ',',
        value_name = "INTERVAL"
    )]
    pub intervals: Vec<Interval>,
    /// Where to start a series that has no checkpoint: a date, date-time or -7d
    /// [default: klines.yml `start`]
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// Stop once every candle closing before this exchange time is staged (and loaded)
    /// [default: run until Ctrl-C or SIGTERM]
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// spot or usdm [default: klines.yml `market`, else spot]
    #[arg(long)]
    pub market: Option<Market>,
    /// binance (WebSocket kline streams) or coinbase (closed candles polled over REST)
    #[arg(long, default_value = "binance", env = "KLINES_EXCHANGE")]
    pub exchange: Exchange,
    /// The exchange's REST base URL [default: klines.yml `exchange.base_url`, or
    /// `exchange.coinbase_url` with --exchange coinbase]
    #[arg(long, value_name = "URL", env = "KLINES_BASE_URL")]
    pub base_url: Option<String>,
    /// The exchange's WebSocket base URL [default: klines.yml `exchange.ws_url`, else
    /// wss://data-stream.binance.vision (spot) or wss://fstream.binance.com (usdm)]
    #[arg(long, value_name = "URL", env = "KLINES_WS_URL")]
    pub ws_url: Option<String>,
    /// The stage [default: klines.yml `stage`, else ./stage]
    #[arg(long, value_name = "URL", env = "KLINES_STAGE")]
    pub stage: Option<String>,
    /// Checkpoints and locks [default: klines.yml `state`, else ./state]
    #[arg(long, value_name = "DIR|URL", env = "KLINES_STATE")]
    pub state: Option<String>,
    /// Load every flush into the profile's warehouse, in this process
    #[arg(long)]
    pub load: bool,
    /// After each load, run the selected models incrementally (implies --load)
    #[arg(long)]
    pub build: bool,
    /// Snowflake: load each flush through Snowpipe (DB.SCHEMA.PIPE, default: the profile's
    /// `pipe`) instead of COPY INTO (implies --load)
    #[arg(long, value_name = "PIPE", num_args = 0..=1, default_missing_value = "")]
    pub snowpipe: Option<String>,
    /// The models --build runs [default: tag:ohlc, the TRADES_OHLC models]
    #[arg(short = 's', long = "select", num_args = 1.., value_name = "SELECTOR")]
    pub select: Vec<String>,
    /// Seconds between flushes of closed candles to the stage
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub flush_secs: f64,
    /// Exchange seconds a closed candle may be late on the socket before REST is asked for it
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub grace_secs: u64,
    /// Serve Prometheus metrics on this address (lag, latency, rows, reconnects, errors...)
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Serve the dashboard (as `klines serve`) from this process, pushing each flush's candles
    /// to open pages (needs --load or --build)
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<std::net::SocketAddr>,
    /// The dashboard's token (required when --serve is not a loopback address)
    #[arg(
        long,
        env = "KLINES_SERVE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub serve_token: Option<String>,
    /// Seconds without any message after which a socket is replaced
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub silence_secs: f64,
}

#[derive(Debug, Clone, Args)]
pub struct RepairArgs {
    /// The stage [default: klines.yml `stage`, else ./stage]
    #[arg(long, value_name = "URL", env = "KLINES_STAGE")]
    pub stage: Option<String>,
    /// List the files that have no entry, and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    pub backfill: BackfillArgs,
    /// Build only these nodes (as `klines build --select`) [default: everything]
    #[arg(short = 's', long = "select", num_args = 1.., value_name = "SELECTOR")]
    pub select: Vec<String>,
    /// Selectors of nodes to leave out of the build
    #[arg(long, num_args = 1.., value_name = "SELECTOR")]
    pub exclude: Vec<String>,
    /// Variables for models, as YAML: '{market: spot}'
    #[arg(long, value_name = "YAML")]
    pub vars: Option<String>,
    /// Nodes built at once [default: the profile's threads]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Snowflake: load through Snowpipe (DB.SCHEMA.PIPE, default: the profile's `pipe`)
    #[arg(long, value_name = "PIPE", num_args = 0..=1, default_missing_value = "")]
    pub snowpipe: Option<String>,
    /// How long to follow Snowpipe's insertReport before giving up on unreported files
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub snowpipe_timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct SetupArgs {
    /// The warehouse type: snowflake
    pub warehouse: String,
    /// The stage klines writes to [default: klines.yml `stage`]
    #[arg(long, value_name = "URL", env = "KLINES_STAGE")]
    pub stage: Option<String>,
    /// The IAM role Snowflake assumes to read the stage
    #[arg(long, value_name = "ARN")]
    pub aws_role_arn: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SelectArgs {
    /// Nodes to select: names, paths (models/marts), tag:x, source:x.y, with + for ancestors or
    /// descendants (+name, name+)
    #[arg(value_name = "SELECTOR")]
    pub selectors: Vec<String>,
    /// More selectors (dbt's --select)
    #[arg(short = 's', long = "select", num_args = 1.., value_name = "SELECTOR")]
    pub select: Vec<String>,
    /// Selectors of nodes to leave out (and the tests on them)
    #[arg(long, num_args = 1.., value_name = "SELECTOR")]
    pub exclude: Vec<String>,
    /// Which tests a selected node brings along, as dbt: eager (every test on it), cautious
    /// (tests whose parents are all selected), buildable (parents selected or their
    /// ancestors), empty (none)
    #[arg(long, value_enum, default_value_t, value_name = "MODE")]
    pub indirect_selection: crate::models::selector::IndirectSelection,
    /// Variables for models, as YAML: '{market: spot}'
    #[arg(long, value_name = "YAML")]
    pub vars: Option<String>,
}

impl SelectArgs {
    pub fn all_selectors(&self) -> Vec<String> {
        self.selectors.iter().chain(&self.select).cloned().collect()
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Rebuild incremental models (and seeds) from scratch
    #[arg(long)]
    pub full_refresh: bool,
    /// Nodes built at once [default: the profile's threads]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Only nodes of these types
    #[arg(long, num_args = 1.., value_name = "TYPE", value_enum)]
    pub resource_type: Vec<LsResourceType>,
    /// What to print of each node: a selector that picks it, its name, its path, or JSON
    #[arg(long, short = 'o', value_enum, default_value_t = LsOutput::Selector)]
    pub output: LsOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LsResourceType {
    Model,
    Seed,
    Test,
    Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LsOutput {
    Selector,
    Name,
    Path,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The stage to load from [default: klines.yml `stage`, else ./stage]
    #[arg(long, value_name = "URL", env = "KLINES_STAGE")]
    pub stage: Option<String>,
    /// List the files and rows that would load, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Snowflake: submit the files to Snowpipe (DB.SCHEMA.PIPE, default: the profile's `pipe`)
    /// instead of running COPY INTO
    #[arg(long, value_name = "PIPE", num_args = 0..=1, default_missing_value = "")]
    pub snowpipe: Option<String>,
    /// How long to follow Snowpipe's insertReport before giving up on unreported files
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub snowpipe_timeout: u64,
}

/// What `debug` checks: the exchange, stage and state a backfill would use, with the same
/// flags and KLINES_* environment variables over klines.yml.
#[derive(Debug, Clone, Args)]
pub struct DebugArgs {
    /// binance or coinbase
    #[arg(long, default_value = "binance", env = "KLINES_EXCHANGE")]
    pub exchange: Exchange,
    /// spot or usdm (USD-M futures) [default: klines.yml `market`, else spot]
    #[arg(long)]
    pub market: Option<Market>,
    /// The exchange's REST base URL [default: klines.yml `exchange.base_url`, or
    /// `exchange.coinbase_url` with --exchange coinbase]
    #[arg(long, value_name = "URL", env = "KLINES_BASE_URL")]
    pub base_url: Option<String>,
    /// The stage: a directory or s3://bucket/prefix [default: klines.yml `stage`, else ./stage]
    #[arg(long, value_name = "URL", env = "KLINES_STAGE")]
    pub stage: Option<String>,
    /// Where checkpoints and locks live [default: klines.yml `state`, else ./state]
    #[arg(long, value_name = "DIR|URL", env = "KLINES_STATE")]
    pub state: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// Symbols, comma-separated [default: klines.yml `symbols`]
    #[arg(long, value_delimiter = ',', value_name = "SYMBOLS")]
    pub symbols: Vec<Symbol>,
    /// Kline intervals, comma-separated: 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M
    /// [default: klines.yml `intervals`, else 1m]
    #[arg(
        long = "interval",
        visible_alias = "intervals",
        value_delimiter = ',',
        value_name = "INTERVAL"
    )]
    pub intervals: Vec<Interval>,
    /// First candle, inclusive: a UTC date (2024-01-01), date-time, or -7d [default: klines.yml `start`]
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// End, exclusive: a UTC date or date-time [default: now]
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// spot or usdm (USD-M futures) [default: klines.yml `market`, else spot]
    #[arg(long)]
    pub market: Option<Market>,
    /// binance or coinbase (Coinbase Exchange's public candles, spot only)
    #[arg(long, default_value = "binance", env = "KLINES_EXCHANGE")]
    pub exchange: Exchange,
    /// The exchange's REST base URL [default: klines.yml `exchange.base_url`, or
    /// `exchange.coinbase_url` with --exchange coinbase]
    #[arg(long, value_name = "URL", env = "KLINES_BASE_URL")]
    pub base_url: Option<String>,
    /// The stage: a directory or s3://bucket/prefix [default: klines.yml `stage`, else ./stage]
    #[arg(long, value_name = "URL", env = "KLINES_STAGE")]
    pub stage: Option<String>,
    /// Where checkpoints and locks live: a directory, `stage` or s3://bucket/prefix
    /// [default: klines.yml `state`, else ./state]
    #[arg(long, value_name = "DIR|URL", env = "KLINES_STATE")]
    pub state: Option<String>,
    /// Forget the checkpoints and download the whole range again
    #[arg(long)]
    pub full_refresh: bool,
    /// Where history comes from: auto (Binance's archives for closed months and days, REST
    /// for the rest), archive (archives only) or rest
    #[arg(long, value_enum, default_value_t = HistorySource::Auto)]
    pub source: HistorySource,
    /// The archive's base URL [default: klines.yml `exchange.archive_url`, else
    /// https://data.binance.vision]
    #[arg(long, value_name = "URL", env = "KLINES_ARCHIVE_URL")]
    pub archive_url: Option<String>,
}
