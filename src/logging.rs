//! Logs go to stderr (stdout is for results): text for people, JSON lines for Airflow and
//! log shippers. `-v`/`-q` move the level; `KLINES_LOG` takes a full filter
//! (`klines=debug,reqwest=info`).

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The filter for `-v` (positive) or `-q` (negative) steps from the default `info`.
pub fn filter_for(verbosity: i8) -> String {
    let level = match verbosity {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    if verbosity >= 2 {
        format!("{level}")
    } else {
        format!("warn,klines={level}")
    }
}

static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether log lines are JSON: then every stderr line must be one, messages printed
/// outside `tracing` too.
pub fn is_json() -> bool {
    JSON.load(std::sync::atomic::Ordering::Relaxed)
}

/// `--log-format json` or `KLINES_LOG_FORMAT=json`, read from the raw arguments: for the
/// command-line errors reported before clap has parsed anything.
pub fn json_requested(args: &[std::ffi::OsString]) -> bool {
    let mut it = args.iter().map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if a == "--log-format=json" || (a == "--log-format" && it.next().as_deref() == Some("json"))
        {
            return true;
        }
    }
    std::env::var("KLINES_LOG_FORMAT").is_ok_and(|v| v == "json")
}

/// One JSON log line for an error that ends the run, in the shape the JSON logs have.
pub fn json_error_line(message: &str, exit_code: u8) -> String {
    serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "ERROR",
        "message": message,
        "exit_code": exit_code,
        "target": "klines",
    })
    .to_string()
}

pub fn init(format: LogFormat, verbosity: i8) {
    JSON.store(
        format == LogFormat::Json,
        std::sync::atomic::Ordering::Relaxed,
    );
    let filter = std::env::var("KLINES_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(filter_for(verbosity)));
    // Colours only on a terminal, and never with NO_COLOR set.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(Stderr);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// Writes to stderr, around the progress bars when there are any.
#[derive(Clone, Copy)]
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line(Vec::with_capacity(256))
    }
}

/// One log line, written whole when dropped.
struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let write = || {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&self.0);
            let _ = err.flush();
        };
        match crate::progress::bars() {
            Some(bars) => bars.suspend(write),
            None => write(),
        }
    }
}
