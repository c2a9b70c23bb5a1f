//! Progress: bars on a terminal, a periodic log line elsewhere (Airflow, cron, CI).
//!
//! Log lines and bars share stderr; [`crate::logging`] writes through [`bars`] so that a log
//! line never tears a bar.

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static BARS: OnceLock<Option<MultiProgress>> = OnceLock::new();

/// The terminal's bars, or `None` when stderr is not a terminal or bars were turned off.
pub fn bars() -> Option<&'static MultiProgress> {
    BARS.get_or_init(|| None).as_ref()
}

/// Decides once, at start-up, whether to draw bars.
pub fn init(enabled: bool) {
    let _ = BARS.set(
        (enabled && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8))),
    );
}

/// Progress of one task (a series being backfilled, files being loaded).
pub struct Task {
    name: String,
    unit: &'static str,
    bar: Option<ProgressBar>,
    total: u64,
    done: Mutex<(u64, Instant)>,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

impl Task {
    pub fn new(name: impl Into<String>, total: u64, unit: &'static str) -> Task {
        let name = name.into();
        let bar = bars().map(|m| {
            let bar = m.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>22} [{bar:30}] {percent:>3}% {msg} ({elapsed})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(name.clone());
            bar
        });
        Task {
            name,
            unit,
            bar,
            total,
            done: Mutex::new((0, Instant::now())),
        }
    }

    /// A task that shows nothing (the small steps of a live run).
    pub fn hidden() -> Task {
        Task {
            name: String::new(),
            unit: "",
            bar: None,
            total: 0,
            // Never old enough to log.
            done: Mutex::new((0, Instant::now() + Duration::from_secs(86_400 * 365))),
        }
    }

    /// Adds `n` to the work done; `msg` is shown beside the bar.
    pub fn advance(&self, n: u64, msg: &str) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.0 = (done.0 + n).min(self.total);
        if let Some(bar) = &self.bar {
            bar.set_position(done.0);
            bar.set_message(msg.to_string());
        } else if done.1.elapsed() >= LOG_EVERY {
            done.1 = Instant::now();
            let percent = if self.total == 0 {
                100
            } else {
                done.0 * 100 / self.total
            };
            tracing::info!(task = %self.name, percent, at = msg, "{} in progress", self.unit);
        }
    }

    pub fn finish(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.total);
            bar.finish_with_message(msg.to_string());
        }
    }
}
