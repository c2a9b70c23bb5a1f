//! Ctrl-C or SIGTERM (what Airflow and Kubernetes send): running work is asked to stop cleanly
//! (a backfill saves its checkpoint, a load stops between transactions, a Snowflake query is
//! cancelled on the server); the binary then exits with code 130.

use std::sync::LazyLock;

use tokio::sync::watch;

static CANCEL: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(false).0);

/// The run was interrupted (Ctrl-C or SIGTERM).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Asks everything that listens to stop.
pub fn trigger() {
    CANCEL.send_replace(true);
}

pub fn is_cancelled() -> bool {
    *CANCEL.borrow()
}

/// Completes once [`trigger`] was called.
pub async fn cancelled() {
    let mut rx = CANCEL.subscribe();
    let _ = rx.wait_for(|&c| c).await;
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM; returns the signal's name.
pub async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return "SIGINT",
                _ = term.recv() => return "SIGTERM",
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}
