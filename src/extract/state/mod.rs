//! Where checkpoints and locks live: a local directory (`state/`) or the object store, so
//! that workers without a shared disk can resume each other's backfills.
//!
//! Checkpoints are written atomically: to a temporary file that is fsynced and renamed over
//! the old one (a directory), or with one PUT (an object store). Locks are `flock`s on a
//! directory (released by the kernel when the process dies, even by kill -9), and leases in
//! an object store: a conditional create, renewed while the backfill runs, that another run
//! may take over once it has expired.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use object_store::{PutMode, UpdateVersion};
use serde::{Deserialize, Serialize};

mod lock;

use super::checkpoint::Checkpoint;
use crate::market::Series;
use crate::stage::{Location, Stage};
pub use lock::SeriesLock;
use lock::{claim_checkpoint, lock_file, lock_object, version_of};

/// How long an object-store lock lasts without renewal, unless klines.yml `lease_secs` says.
pub const LEASE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub enum StateStore {
    Dir(PathBuf),
    /// The object store, and how long a lease lasts without renewal.
    Object(Stage, Duration),
}

/// Raised when a series is locked by another run.
#[derive(Debug, thiserror::Error)]
#[error("{series}: another backfill is running ({detail}); wait for it to finish")]
pub struct LockConflict {
    pub series: String,
    pub detail: String,
}

impl StateStore {
    /// `spec` is a directory (relative to `project_dir`), `stage` (the `_state` folder of the
    /// stage) or an `s3://bucket/prefix` URL.
    pub fn open(spec: &str, stage: &Stage, project_dir: &Path) -> anyhow::Result<StateStore> {
        if spec == "stage" {
            return Ok(match stage.location() {
                Location::Local(dir) => StateStore::Dir(dir.join("_state")),
                _ => StateStore::Object(stage.child("_state"), LEASE),
            });
        }
        if spec.starts_with("s3://") || spec == "memory://" {
            return Ok(StateStore::Object(
                Stage::open(spec, &Default::default(), project_dir)?,
                LEASE,
            ));
        }
        let dir = Path::new(spec.strip_prefix("file://").unwrap_or(spec));
        Ok(StateStore::Dir(if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            project_dir.join(dir)
        }))
    }

    /// The same store with leases of `lease` (object stores only).
    pub fn with_lease(self, lease: Duration) -> StateStore {
        match self {
            StateStore::Object(s, _) => StateStore::Object(s, lease),
            dir => dir,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            StateStore::Dir(d) => d.display().to_string(),
            StateStore::Object(s, _) => s.url(),
        }
    }

    fn checkpoint_key(series: &Series) -> String {
        format!("checkpoints/{}.json", series.prefix())
    }

    fn lock_key(series: &Series) -> String {
        format!("locks/{}.lock", series.prefix())
    }

    /// Where a Binance series' checkpoint was before the exchange was part of the layout.
    fn legacy_checkpoint_key(series: &Series) -> String {
        format!("checkpoints/{}.json", series.legacy_prefix())
    }

    /// Moves a checkpoint written before the exchange was part of the layout to its key now
    /// (copied, then the old one deleted; run holding the series' lock). A crash in between
    /// leaves both, equal, and the next run deletes the old one.
    async fn migrate_checkpoint(&self, series: &Series) -> anyhow::Result<()> {
        let (old, new) = (
            Self::legacy_checkpoint_key(series),
            Self::checkpoint_key(series),
        );
        match self {
            StateStore::Dir(dir) => {
                let (old_path, new_path) = (dir.join(&old), dir.join(&new));
                let body = match std::fs::read(&old_path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("cannot read checkpoint {}", old_path.display())
                        });
                    }
                };
                if !new_path.exists() {
                    write_atomically(&new_path, &body)?;
                    tracing::info!(series = %series, from = %old_path.display(), to = %new_path.display(), "moved the checkpoint to the layout with the exchange");
                }
                std::fs::remove_file(&old_path)
                    .with_context(|| format!("cannot delete {}", old_path.display()))?;
            }
            StateStore::Object(stage, _) => {
                let Some((body, _)) = stage
                    .get_opt(&old)
                    .await
                    .with_context(|| format!("cannot read checkpoint {}/{old}", stage.url()))?
                else {
                    return Ok(());
                };
                match stage.put_mode(&new, body, PutMode::Create).await {
                    Ok(_) => {
                        tracing::info!(series = %series, from = %old, to = %new, "moved the checkpoint to the layout with the exchange");
                    }
                    Err(
                        object_store::Error::AlreadyExists { .. }
                        | object_store::Error::Precondition { .. },
                    ) => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("cannot write checkpoint {}/{new}", stage.url())
                        });
                    }
                }
                stage
                    .delete(&old)
                    .await
                    .with_context(|| format!("cannot delete checkpoint {}/{old}", stage.url()))?;
            }
        }
        Ok(())
    }

    pub async fn load(&self, series: &Series) -> anyhow::Result<Option<Checkpoint>> {
        let key = Self::checkpoint_key(series);
        let bytes = match self {
            StateStore::Dir(dir) => {
                let path = dir.join(&key);
                match std::fs::read(&path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("cannot read checkpoint {}", path.display()));
                    }
                }
            }
            StateStore::Object(stage, _) => match stage.get_opt(&key).await {
                Ok(Some((b, _))) => b.to_vec(),
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read checkpoint {}/{key}", stage.url()));
                }
            },
        };
        let name = format!("{}/{key}", self.describe());
        let cp = Checkpoint::from_json(&name, &bytes)?;
        if !cp.matches(series) {
            bail!("checkpoint {name} belongs to another series");
        }
        Ok(Some(cp))
    }

    /// Saves the checkpoint of the series `lock` holds. In an object store the write is
    /// conditional on the checkpoint being as this holder last left it, so a holder whose
    /// lease another run took over (a paused process waking up) cannot overwrite the new
    /// holder's checkpoint: its write fails and its run stops.
    pub async fn save(&self, cp: &Checkpoint, lock: &SeriesLock) -> anyhow::Result<()> {
        lock.check()?;
        let series = Series {
            exchange: cp.series.exchange,
            market: cp.series.market,
            symbol: cp.series.symbol.clone(),
            interval: cp.series.interval,
        };
        let key = Self::checkpoint_key(&series);
        let body = serde_json::to_vec(cp)?;
        match self {
            StateStore::Dir(dir) => {
                let path = dir.join(&key);
                tokio::task::spawn_blocking(move || write_atomically(&path, &body))
                    .await
                    .context("checkpoint writer panicked")??;
            }
            StateStore::Object(stage, _) => {
                let mut fence = lock.fence.lock().await;
                let mode = match fence.clone() {
                    Some(Some(v)) => PutMode::Update(v),
                    Some(None) => PutMode::Create,
                    None => PutMode::Overwrite,
                };
                match stage.put_mode(&key, Bytes::from(body), mode).await {
                    Ok(r) => *fence = Some(Some(version_of(&r))),
                    Err(
                        object_store::Error::Precondition { .. }
                        | object_store::Error::AlreadyExists { .. },
                    ) => {
                        lock.lost.store(true, Ordering::SeqCst);
                        bail!(
                            "{}: another run took the lock over and wrote the checkpoint {}/{key}; stopping",
                            lock.series,
                            stage.url()
                        );
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("cannot write checkpoint {}/{key}", stage.url())
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes the checkpoint of the series `lock` holds (for `--full-refresh`).
    pub async fn reset(&self, series: &Series, lock: &SeriesLock) -> anyhow::Result<()> {
        let key = Self::checkpoint_key(series);
        lock.check()?;
        if let Some(fence) = lock.fence.lock().await.as_mut() {
            *fence = None;
        }
        match self {
            StateStore::Dir(dir) => match std::fs::remove_file(dir.join(&key)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e).with_context(|| format!("cannot delete checkpoint {key}")),
            },
            StateStore::Object(stage, _) => stage
                .delete(&key)
                .await
                .with_context(|| format!("cannot delete checkpoint {key}")),
        }
    }

    /// Takes the series' lock, or fails at once with a [`LockConflict`].
    pub async fn lock(&self, series: &Series) -> anyhow::Result<SeriesLock> {
        let key = Self::lock_key(series);
        match self {
            StateStore::Dir(dir) => {
                let lock = lock_file(series, &dir.join(key))?;
                self.migrate_checkpoint(series).await?;
                Ok(lock)
            }
            StateStore::Object(stage, lease) => {
                let lock = lock_object(series, stage, key, *lease).await?;
                self.migrate_checkpoint(series).await?;
                claim_checkpoint(stage, &Self::checkpoint_key(series), &lock).await?;
                Ok(lock)
            }
        }
    }
}

/// Writes `path` through a temporary file that is fsynced, renamed over `path`, and the
/// directory fsynced, so a crash leaves either the old or the new content.
pub fn write_atomically(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("checkpoint path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("checkpoint");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::lock::LockInner;
    use super::*;
    use crate::market::{Interval, Market, Symbol};

    fn series() -> Series {
        Series {
            exchange: crate::market::Exchange::BINANCE,
            market: Market::Spot,
            symbol: Symbol::parse("BTCUSDT").unwrap(),
            interval: Interval::M1,
        }
    }

    #[tokio::test]
    async fn a_directory_lock_refuses_a_second_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::Dir(dir.path().to_path_buf());
        let held = store.lock(&series()).await.unwrap();
        let err = store.lock(&series()).await.unwrap_err();
        assert!(err.downcast_ref::<LockConflict>().is_some(), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        store.lock(&series()).await.unwrap();
    }

    #[tokio::test]
    async fn an_object_lease_refuses_a_second_holder_until_released() {
        let stage = Stage::open("memory://", &Default::default(), Path::new(".")).unwrap();
        let store = StateStore::Object(stage, LEASE);
        let held = store.lock(&series()).await.unwrap();
        let err = store.lock(&series()).await.unwrap_err();
        assert!(err.downcast_ref::<LockConflict>().is_some(), "{err}");
        held.release().await;
        store.lock(&series()).await.unwrap();
    }

    #[tokio::test]
    async fn checkpoints_round_trip_in_both_stores() {
        let dir = tempfile::tempdir().unwrap();
        let stage = Stage::open("memory://", &Default::default(), Path::new(".")).unwrap();
        for store in [
            StateStore::Dir(dir.path().to_path_buf()),
            StateStore::Object(stage, LEASE),
        ] {
            assert!(store.load(&series()).await.unwrap().is_none());
            let lock = store.lock(&series()).await.unwrap();
            let mut cp = Checkpoint::new(&series());
            cp.covered.insert(0, 60_000);
            store.save(&cp, &lock).await.unwrap();
            assert_eq!(store.load(&series()).await.unwrap(), Some(cp.clone()));
            store.reset(&series(), &lock).await.unwrap();
            assert!(store.load(&series()).await.unwrap().is_none());
            store.save(&cp, &lock).await.unwrap();
            store.reset(&series(), &lock).await.unwrap();
        }
    }

    /// A holder whose lease was taken over cannot write the checkpoint any more.
    #[tokio::test]
    async fn a_taken_over_lease_fences_the_old_holders_checkpoint_writes() {
        let stage = Stage::open("memory://", &Default::default(), Path::new(".")).unwrap();
        let store = StateStore::Object(stage, Duration::from_millis(300));
        let old = store.lock(&series()).await.unwrap();
        let mut cp = Checkpoint::new(&series());
        cp.covered.insert(0, 60_000);
        store.save(&cp, &old).await.unwrap();
        // The old holder pauses (its renewals stop) and the lease expires.
        if let LockInner::Lease { renew, .. } = &old.inner {
            renew.abort();
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        let new = store.lock(&series()).await.unwrap();
        cp.covered.insert(60_000, 120_000);
        let err = store.save(&cp, &old).await.unwrap_err();
        assert!(
            err.to_string().contains("another run took the lock over"),
            "{err}"
        );
        assert!(old.check().is_err());
        cp.covered.insert(120_000, 180_000);
        store.save(&cp, &new).await.unwrap();
        assert_eq!(store.load(&series()).await.unwrap(), Some(cp));
    }
}
