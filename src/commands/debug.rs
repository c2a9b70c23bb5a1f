//! `klines debug`: checks the configuration, the warehouse connection, the stage and the
//! exchange, and prints what it found, like `dbt debug`. Every check runs even when an earlier
//! one failed (except that nothing runs without a readable klines.yml).

use std::fmt::Display;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::source::SourceFlags;
use crate::cli::{DebugArgs, GlobalArgs};
use crate::config::Project;
use crate::config::profiles::Output;
use crate::extract::state::StateStore;
use crate::sources::KlineSource;
use crate::sources::history::HistorySource;
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

    check_profile(&mut r, global, &project).await;
    check_stage(&mut r, &project, &args).await;
    check_exchange(&mut r, &project, args).await;

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

/// The profile, the target and the warehouse behind it.
async fn check_profile(r: &mut Report, global: &GlobalArgs, project: &Project) {
    r.section("profile");
    match super::target(global, project) {
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
                    let raw = ident::fold(wh.dialect(), target.raw_schema());
                    let history =
                        ident::fold(wh.dialect(), crate::datasets::klines::KLINES.history);
                    match wh.relation(&raw, &history).await {
                        Ok(None) => {
                            r.info("raw tables", "not created yet (klines load creates them)")
                        }
                        Ok(Some(_)) => {
                            match crate::load::raw::loaded_files(wh.as_ref(), target.raw_schema())
                                .await
                            {
                                Ok(files) => {
                                    r.ok("raw tables", format!("{} files loaded", files.len()))
                                }
                                Err(e) => r.fail("raw tables", &e),
                            }
                        }
                        Err(e) => r.fail("raw tables", &e),
                    }
                }
            }
        }
    }
}

/// The stage: listed, written, read back; and where the checkpoints are.
async fn check_stage(r: &mut Report, project: &Project, args: &DebugArgs) {
    r.section("stage");
    match super::stage(project, args.stage.clone()) {
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
}

/// The exchange, opened as a run would (through the registry), asked for its clock and the
/// project's symbols, quickly: no long retries.
async fn check_exchange(r: &mut Report, project: &Project, args: DebugArgs) {
    r.section("exchange");
    let flags = SourceFlags {
        exchange: args.exchange,
        market: args.market,
        base_url: args.base_url,
        archive_url: None,
        ws_url: None,
        history: HistorySource::Rest,
        live: None,
        stage: None,
        state: None,
    };
    let mut settings = super::source::settings(project, &flags);
    let url = settings
        .base_url
        .as_deref()
        .map(crate::redact::redact_url)
        .unwrap_or_else(|| "(its own)".into());
    r.info("url", format!("{} {url}", args.exchange));
    settings.retry.max_attempts = 2;
    settings.timeout = settings.timeout.min(Duration::from_secs(10));
    let client = match crate::sources::open(args.exchange, &settings) {
        Ok(source) => source.rest,
        Err(e) => return r.fail("client", &e),
    };
    check_time(r, client.as_ref()).await;
    match client.symbols_report(&project.symbols).await {
        Ok(line) => {
            r.ok("symbols", line);
            if let Some(limits) = client.rate_limits_report() {
                r.info("rate limits", limits);
            }
        }
        Err(e) => r.fail("symbols", &e.into()),
    }
}

/// The exchange's clock and its offset from this machine's.
async fn check_time(r: &mut Report, client: &dyn KlineSource) {
    let t = Instant::now();
    match client.server_time().await {
        Ok(server) => {
            let offset = server - crate::time::now_ms();
            r.ok(
                "time",
                format!("clock offset {offset:+} ms {}", ms_since(t)),
            );
        }
        Err(e) => r.fail("time", &e.into()),
    }
}
