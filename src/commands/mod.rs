//! The application layer: one module per command, turning flags and configuration into
//! calls of the library and printing results on stdout.

mod backfill;
mod debug;
pub mod init;
mod load;
mod models;
mod pipeline;
mod repair;
mod serve;
mod setup;
mod source;
mod stream;

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::Project;
use crate::config::profiles::{self, Target};
use crate::error::UsageError;
use crate::stage::Stage;

/// How long a command waits for another klines command's warehouse lock (a killed run's
/// session ends within seconds on Postgres 14+).
pub(crate) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init { dir } => init::run(dir),
        Command::Backfill(args) => backfill::run(&cli.global, args).await,
        Command::Load(args) => load::run(&cli.global, args).await,
        Command::Stream(args) => stream::run(&cli.global, args).await,
        Command::Run(args) => {
            models::run(&cli.global, args, crate::models::runner::Mode::Run).await
        }
        Command::Compile(args) => {
            models::run(&cli.global, args, crate::models::runner::Mode::Compile).await
        }
        Command::Test(args) => {
            models::run(&cli.global, args, crate::models::runner::Mode::Test).await
        }
        Command::Seed(args) => {
            models::run(&cli.global, args, crate::models::runner::Mode::Seed).await
        }
        Command::Build(args) => {
            models::run(&cli.global, args, crate::models::runner::Mode::Build).await
        }
        Command::Ls(args) => models::ls(&cli.global, args).await,
        Command::Setup(args) => setup::run(&cli.global, args).await,
        Command::Pipeline(args) => pipeline::run(&cli.global, args).await,
        Command::Serve(args) => serve::run(&cli.global, args).await,
        Command::Debug(args) => debug::run(&cli.global, args).await,
        Command::Repair(args) => repair::run(&cli.global, args).await,
    }
}

/// The project directory and its klines.yml.
pub(crate) fn project(global: &GlobalArgs) -> anyhow::Result<Project> {
    let dir = match &global.project_dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let dir = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir()?.join(dir)
    };
    if !dir.is_dir() {
        return Err(crate::error::UsageError(format!(
            "--project-dir {}: not a directory",
            dir.display()
        ))
        .into());
    }
    Project::load(&PathBuf::from(dir))
}

/// The warehouse target: the project's profile, `--profiles-dir` and `--target`.
pub(crate) fn target(global: &GlobalArgs, project: &Project) -> anyhow::Result<Target> {
    profiles::resolve(
        global.profiles_dir.as_deref(),
        &project.dir,
        &project.profile,
        global.target.as_deref(),
    )
}

/// The stage: `--stage`, else klines.yml.
pub(crate) fn stage(project: &Project, flag: Option<String>) -> anyhow::Result<Stage> {
    let url = flag.unwrap_or_else(|| project.stage.clone());
    Stage::open(&url, &project.stage_options, &project.dir)
        .map_err(|e| UsageError(format!("{e:#}")).into())
}
