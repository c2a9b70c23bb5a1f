//! Crash points for tests: `KLINES_FAILPOINT=name` (or `name:N`, the Nth time it is reached)
//! makes the process abort at that point, as `kill -9` would, so that tests can stop a real
//! run right after each durable step and check that the next run ends up exactly where an
//! uninterrupted one would. Unset, a point costs one relaxed atomic load.
//!
//! Points: `backfill.after_data_put`, `backfill.after_manifest`, `backfill.after_checkpoint`,
//! `load.mid_batch` (rows written, transaction not committed), `load.after_commit`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("KLINES_FAILPOINT").ok()?;
            let (name, nth) = match spec.rsplit_once(':') {
                Some((n, k)) => (n.to_string(), k.parse().ok()?),
                None => (spec, 1),
            };
            Some(Armed {
                name,
                nth,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process if `name` is the armed point and this is its Nth hit.
pub fn hit(name: &str) {
    if let Some(a) = armed()
        && a.name == name
        && a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.nth
    {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
