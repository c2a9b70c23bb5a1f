//! `klines debug`: checks the configuration, the warehouse connection, the stage and the
//! exchange, and prints what it found, like `dbt debug`. Every check runs even when an earlier
//! one failed (except that nothing runs without a readable klines.yml).

use std::fmt::Display;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cli::{DebugArgs, GlobalArgs};
use crate::config::profiles::Output;
use crate::sources::coinbase::CoinbaseClient;
use crate::sources::binance::BinanceClient;
use crate::market::Exchange;
use crate::sources::KlineSource;
use crate::extract::state::StateStore;
use crate::warehouse::{self, ident};

/// The printed report, and what failed.
#[derive(Default)]
struct Report {
    failed: Vec<&'static str>,
}

impl Report {
    fn section(&self, title: &str) {
        println!("{title}:");
    }

    fn info(&self, what: &str, detail: impl Display) {
        println!("  {what}: {detail}");
    }

    fn ok(&self, what: &str, detail: impl Display) {
        println!("  {what}: OK {detail}");
    }

    fn fail(&mut self, what: &'static str, err: &anyhow::Error) {
        // One line: the error chain joined, never a multi-line dump.
        println!("  {what}: ERROR {}", format!("{err:#}").replace('\n', " "));
        self.failed.push(what);
    }
}

fn ms_since(t: Instant) -> String {
    format!("({} ms)", t.elapsed().as_millis())
}

pub async fn run(global: &GlobalArgs, args: DebugArgs) -> anyhow::Result<()> {
    let mut r = Report::default();
    println!("klines {}", env!("CARGO_PKG_VERSION"));

    r.section("project");
    let project = super::project(global)?;
    r.info("directory", project.dir.display());
    match &project.file {
        Some(f) => r.ok("klines.yml", f.display()),
        None => r.info("klines.yml", "none: the defaults apply"),
    }
    let symbols: Vec<&str> = project.symbols.iter().map(|s| s.as_str()).collect();
    let intervals: Vec<&str> = project.intervals.iter().map(|i| i.as_str()).collect();
    r.info(
        "series",
        format!(
            "{} {} {}",
            project.market,
            symbols.join(","),
            intervals.join(",")
        ),
    );

    r.section("profile");
    match super::target(global, &project) {
        Err(e) => r.fail("profiles.yml", &e),
        Ok(target) => {
            match &target.file {
                Some(f) => r.ok("profiles.yml", f.display()),
                None => r.info("profiles.yml", "none found: embedded DuckDB"),
            }
            r.info(
                "target",
                format!(
                    "{} ({}) in profile {}",
                    target.name,
                    target.type_name(),
                    target.profile
                ),
            );
            r.info(
                "schemas",
                format!(
                    "models in {}, raw data in {}",
                    target.schema(),
                    target.raw_schema()
                ),
            );
            if let Output::Snowflake(o) = &target.output {
                let stage = o.stage.as_deref().unwrap_or("none (needed to load)");
                r.info("external stage", stage);
            }
            r.section("warehouse");
            let t = Instant::now();
            match warehouse::connect(&target, &project.dir).await {
                Err(e) => r.fail("connection", &e),
                Ok(wh) => {
                    match wh.query("SELECT 1").await {
                        Ok(_) => r.ok("connection", format!("{} {}", wh.describe(), ms_since(t))),
                        Err(e) => r.fail("connection", &e),
                    }
                    let raw = ident::fold(wh.kind(), target.raw_schema());
                    let history = ident::fold(wh.kind(), "klines_load_history");
                    match wh.relation(&raw, &history).await {
                        Ok(None) => {
                            r.info("raw tables", "not created yet (klines load creates them)")
                        }
                        Ok(Some(_)) => match wh.loaded_files(target.raw_schema()).await {
                            Ok(files) => {
                                r.ok("raw tables", format!("{} files loaded", files.len()))
                            }
                            Err(e) => r.fail("raw tables", &e),
                        },
                        Err(e) => r.fail("raw tables", &e),
                    }
                }
            }
        }
    }

    r.section("stage");
    match super::stage(&project, args.stage.clone()) {
        Err(e) => r.fail("stage", &e),
        Ok(stage) => {
            r.info("location", stage.url());
            let t = Instant::now();
            match crate::stage::manifest::list(&stage).await {
                Ok(files) => r.ok(
                    "read",
                    format!("{} staged files {}", files.len(), ms_since(t)),
                ),
                Err(e) => r.fail("read", &e),
            }
            // A probe at the stage's root: written, read back, deleted.
            let probe = format!(".klines-debug-{}", uuid::Uuid::new_v4().simple());
            let t = Instant::now();
            let written = async {
                stage
                    .put(&probe, Bytes::from_static(b"klines debug"))
                    .await?;
                let back = stage.get(&probe).await?;
                stage.delete(&probe).await?;
                anyhow::ensure!(back.as_ref() == b"klines debug", "read back other bytes");
                Ok(())
            }
            .await;
            match written {
                Ok(()) => r.ok("write", ms_since(t)),
                Err(e) => r.fail("write", &e),
            }
            let state = args.state.as_deref().unwrap_or(&project.state);
            match StateStore::open(state, &stage, &project.dir) {
                Ok(state) => r.info("checkpoints", state.describe()),
                Err(e) => r.fail("checkpoints", &e),
            }
        }
    }

    r.section("exchange");
    let settings = super::source::exchange_settings(&project, args.exchange, args.base_url);
    let url = super::source::base_url(&settings, args.exchange);
    r.info("url", format!("{} {}", args.exchange, crate::redact::redact_url(url)));
    match args.exchange {
        Exchange::Binance => {
            let mut config = settings.client_config(args.market.unwrap_or(project.market));
            // A quick verdict: no long retries.
            config.retry.max_attempts = 2;
            config.timeout = config.timeout.min(Duration::from_secs(10));
            match BinanceClient::new(config) {
                Err(e) => r.fail("client", &e),
                Ok(client) => check_binance(&mut r, &client, &project.symbols).await,
            }
        }
        Exchange::Coinbase => {
            let mut config = settings.coinbase_config();
            config.retry.max_attempts = 2;
            config.timeout = config.timeout.min(Duration::from_secs(10));
            match CoinbaseClient::new(config) {
                Err(e) => r.fail("client", &e),
                Ok(client) => {
                    check_time(&mut r, &client).await;
                    match client.check_symbols(&project.symbols).await {
                        Ok(()) => {
                            let names: Vec<&str> = project.symbols.iter().map(|s| s.as_str()).collect();
                            r.ok("symbols", format!("{} online", names.join(", ")));
                        }
                        Err(e) => r.fail("symbols", &e.into()),
                    }
                }
            }
        }
    }

    match r.failed.len() {
        0 => {
            println!("All checks passed.");
            Ok(())
        }
        n => anyhow::bail!(
            "{n} check{} failed: {}",
            if n > 1 { "s" } else { "" },
            r.failed.join(", ")
        ),
    }
}

/// The exchange's clock and its offset from this machine's.
async fn check_time(r: &mut Report, client: &dyn KlineSource) {
    let t = Instant::now();
    match client.server_time().await {
        Ok(server) => {
            let offset = server - crate::time::now_ms();
            r.ok("time", format!("clock offset {offset:+} ms {}", ms_since(t)));
        }
        Err(e) => r.fail("time", &e.into()),
    }
}

/// Binance: the clock, the symbols' status and the advertised rate limits.
async fn check_binance(r: &mut Report, client: &BinanceClient, symbols: &[crate::market::Symbol]) {
    check_time(r, client).await;
    match client.check_symbols(symbols).await {
        Ok(infos) => {
            let listed: Vec<String> = infos
                .iter()
                .map(|i| format!("{} {}", i.symbol, i.status))
                .collect();
            let limits: Vec<String> = client
                .limiter()
                .limits()
                .iter()
                .map(|l| format!("{:?} {} per {} s", l.kind, l.limit, l.window_ms / 1000))
                .collect();
            r.ok("symbols", listed.join(", "));
            r.info("rate limits", limits.join(", "));
        }
        Err(e) => r.fail("symbols", &e.into()),
    }
}
