//! klines: an ELT pipeline for exchange candles.
//!
//! Data flows through the modules in this order: [`exchange`] (Binance REST) → [`extract`]
//! (checkpointed backfills) → [`stage`] (Parquet in a directory or S3) → [`load`] (exactly-once
//! loads through a [`warehouse`] adapter) → [`models`] (dbt-style SQL models). See ARCHITECTURE.md.

pub mod cancel;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod datasets;
pub mod decimal;
pub mod error;
pub mod exit;
pub mod extract;
pub mod failpoint;
pub mod ident;
pub mod load;
pub mod logging;
pub mod market;
pub mod models;
pub mod pipeline;
pub mod progress;
pub mod ranges;
pub mod redact;
pub mod serve;
pub mod sources;
pub mod stage;
pub mod time;
pub mod warehouse;

use clap::Parser;

/// The `klines` binary: parse, set up logging, run, and map the outcome to an exit code.
pub fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let shown = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand;
            if shown || !logging::json_requested(&args) {
                e.exit();
            }
            // JSON logs stay JSON: the usage error as one line, without clap's help text.
            let text = e.kind().as_str().map(str::to_string).unwrap_or_default();
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| l.starts_with("error:"))
                .map(|l| l.trim_start_matches("error:").trim().to_string())
                .unwrap_or(text);
            eprintln!(
                "{}",
                logging::json_error_line(&first, exit::Code::Usage as u8)
            );
            return std::process::ExitCode::from(exit::Code::Usage as u8);
        }
    };
    let verbosity = cli.global.verbose as i8 - cli.global.quiet as i8;
    let json_logs = cli.global.log_format == logging::LogFormat::Json;
    logging::init(cli.global.log_format, verbosity);
    progress::init(cli.global.quiet == 0 && cli.global.log_format == logging::LogFormat::Text);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(exit::Code::Failure as u8);
        }
    };
    let result = runtime.block_on(async {
        let run = commands::run(cli);
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => r,
            signal = cancel::signal() => {
                // Ask running work to stop cleanly, give it a moment, then leave.
                tracing::warn!(signal, "interrupted; stopping");
                cancel::trigger();
                match tokio::time::timeout(std::time::Duration::from_secs(10), &mut run).await {
                    Ok(Err(e)) if exit::classify(&e) != exit::Code::Interrupted => {
                        tracing::warn!(error = %format!("{e:#}"), "while stopping");
                    }
                    _ => {}
                }
                Err(cancel::Interrupted.into())
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if let Some(bars) = progress::bars() {
                let _ = bars.clear();
            }
            let code = exit::classify(&e) as u8;
            if json_logs {
                // Every stderr line stays a JSON object.
                tracing::error!(exit_code = code, "{e:#}");
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::from(code)
        }
    }
}
