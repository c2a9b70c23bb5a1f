//! Locks on series: a `flock` on a directory (released by the kernel when the process dies,
//! even by kill -9), or a lease in an object store: a conditional create, renewed while the
//! run holds it, that another run may take over once it has expired. A lease's holder fences
//! its checkpoint writes with the version it last wrote.

use super::*;

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct SeriesLock {
    pub(super) inner: LockInner,
    pub(super) lost: Arc<AtomicBool>,
    pub(super) series: String,
    /// Object stores: the checkpoint's version as this holder last wrote or claimed it
    /// (`Some(None)`: there is none yet; `None`: not fenced, a directory).
    pub(super) fence: tokio::sync::Mutex<Option<Option<UpdateVersion>>>,
}

#[derive(Debug)]
pub(super) enum LockInner {
    File(std::fs::File),
    Lease {
        stage: Stage,
        key: String,
        renew: tokio::task::JoinHandle<()>,
    },
}

impl SeriesLock {
    /// Fails if the lock was lost (an object-store lease another run took over).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            bail!(
                "{}: lost the lock to another run; stopping before writing anything more",
                self.series
            );
        }
        Ok(())
    }

    /// Releases the lock now (object-store leases are deleted; files are unlocked on drop).
    pub async fn release(self) {
        if let LockInner::Lease { stage, key, renew } = &self.inner {
            renew.abort();
            if !self.lost.load(Ordering::SeqCst) {
                let _ = stage.delete(key).await;
            }
        }
    }
}

impl Drop for SeriesLock {
    fn drop(&mut self) {
        match &self.inner {
            LockInner::File(f) => {
                let _ = f.unlock();
            }
            LockInner::Lease { renew, .. } => renew.abort(),
        }
    }
}

pub(super) fn lock_file(series: &Series, path: &Path) -> anyhow::Result<SeriesLock> {
    let dir = path.parent().context("lock path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(path).unwrap_or_default();
            let holder = holder.trim();
            return Err(LockConflict {
                series: series.to_string(),
                detail: if holder.is_empty() {
                    format!("lock {} is held", path.display())
                } else {
                    format!("lock {} is held by {holder}", path.display())
                },
            }
            .into());
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    file.set_len(0)?;
    writeln!(file, "pid {} on {}", std::process::id(), hostname())?;
    Ok(SeriesLock {
        inner: LockInner::File(file),
        lost: Arc::new(AtomicBool::new(false)),
        series: series.to_string(),
        fence: tokio::sync::Mutex::new(None),
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    owner: String,
    expires_at_ms: i64,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}

fn now_ms() -> i64 {
    crate::clock::system_ms()
}

fn lease_body(owner: &str, lease: Duration) -> Bytes {
    let lease = Lease {
        owner: owner.to_string(),
        expires_at_ms: now_ms() + lease.as_millis() as i64,
    };
    Bytes::from(serde_json::to_vec(&lease).unwrap_or_default())
}

pub(super) fn version_of(r: &object_store::PutResult) -> UpdateVersion {
    UpdateVersion {
        e_tag: r.e_tag.clone(),
        version: r.version.clone(),
    }
}

/// After taking a lease: rewrites the checkpoint as it is (or notes that there is none), so
/// its version changes and the previous holder's next conditional write fails.
pub(super) async fn claim_checkpoint(
    stage: &Stage,
    key: &str,
    lock: &SeriesLock,
) -> anyhow::Result<()> {
    for _ in 0..10 {
        let current = stage
            .get_opt(key)
            .await
            .with_context(|| format!("cannot read checkpoint {}/{key}", stage.url()))?;
        let Some((bytes, meta)) = current else {
            *lock.fence.lock().await = Some(None);
            return Ok(());
        };
        let seen = UpdateVersion {
            e_tag: meta.e_tag.clone(),
            version: None,
        };
        match stage.put_mode(key, bytes, PutMode::Update(seen)).await {
            Ok(r) => {
                *lock.fence.lock().await = Some(Some(version_of(&r)));
                return Ok(());
            }
            // The previous holder wrote in between: read it again.
            Err(object_store::Error::Precondition { .. }) => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot claim checkpoint {}/{key}", stage.url()));
            }
        }
    }
    bail!(
        "{}: the checkpoint {key} keeps changing under a lock this run holds",
        lock.series
    )
}

pub(super) async fn lock_object(
    series: &Series,
    stage: &Stage,
    key: String,
    lease_for: Duration,
) -> anyhow::Result<SeriesLock> {
    let owner = format!(
        "pid {} on {} ({})",
        std::process::id(),
        hostname(),
        uuid::Uuid::new_v4()
    );
    let Some(put) = take_lease(series, stage, &key, &owner, lease_for).await? else {
        // Released between the two calls: one more try.
        return Box::pin(lock_object(series, stage, key, lease_for)).await;
    };
    let lost = Arc::new(AtomicBool::new(false));
    let renew = tokio::spawn(renew_lease(
        stage.clone(),
        key.clone(),
        owner,
        lease_for,
        version_of(&put),
        Arc::clone(&lost),
        series.to_string(),
    ));
    Ok(SeriesLock {
        inner: LockInner::Lease {
            stage: stage.clone(),
            key,
            renew,
        },
        lost,
        series: series.to_string(),
        fence: tokio::sync::Mutex::new(None),
    })
}

/// Creates the lease, or takes over an expired one; `None` when it vanished in between.
async fn take_lease(
    series: &Series,
    stage: &Stage,
    key: &str,
    owner: &str,
    lease_for: Duration,
) -> anyhow::Result<Option<object_store::PutResult>> {
    let err = match stage
        .put_mode(key, lease_body(owner, lease_for), PutMode::Create)
        .await
    {
        Ok(r) => return Ok(Some(r)),
        Err(e) => e,
    };
    if !matches!(err, object_store::Error::AlreadyExists { .. }) {
        return Err(err).with_context(|| format!("cannot create lock {}/{key}", stage.url()));
    }
    let Some((bytes, meta)) = stage
        .get_opt(key)
        .await
        .with_context(|| format!("cannot read lock {key}"))?
    else {
        return Ok(None);
    };
    let lease: Lease = serde_json::from_slice(&bytes).unwrap_or(Lease {
        owner: "unknown".into(),
        expires_at_ms: 0,
    });
    if lease.expires_at_ms > now_ms() {
        return Err(LockConflict {
            series: series.to_string(),
            detail: format!(
                "lock {}/{key} is held by {} for {}s more",
                stage.url(),
                lease.owner,
                (lease.expires_at_ms - now_ms()) / 1000 + 1
            ),
        }
        .into());
    }
    let version = UpdateVersion {
        e_tag: meta.e_tag.clone(),
        version: None,
    };
    match stage
        .put_mode(key, lease_body(owner, lease_for), PutMode::Update(version))
        .await
    {
        Ok(r) => {
            tracing::warn!(series = %series, previous = %lease.owner, "took over an expired lock");
            Ok(Some(r))
        }
        Err(object_store::Error::Precondition { .. }) => Err(LockConflict {
            series: series.to_string(),
            detail: format!("lock {}/{key} was just taken by another run", stage.url()),
        }
        .into()),
        Err(e) => Err(e).with_context(|| format!("cannot take over lock {key}")),
    }
}

/// Renews the lease every third of its length until the lock is dropped; marks it lost when
/// another run took it, or when it could not be renewed for most of a lease.
async fn renew_lease(
    stage: Stage,
    key: String,
    owner: String,
    lease_for: Duration,
    mut version: UpdateVersion,
    lost: Arc<AtomicBool>,
    series: String,
) {
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(lease_for / 3).await;
        match stage
            .put_mode(
                &key,
                lease_body(&owner, lease_for),
                PutMode::Update(version.clone()),
            )
            .await
        {
            Ok(r) => {
                version = version_of(&r);
                renewed = tokio::time::Instant::now();
            }
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::NotFound { .. }) => {
                tracing::error!(series = %series, "lost the lock to another run");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // Not renewed for most of a lease: another run may take it over any moment, so
            // this one stops writing before that can happen.
            Err(e) if renewed.elapsed() >= lease_for * 5 / 6 => {
                tracing::error!(series = %series, error = %e, "could not renew the lock in time; giving it up");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => {
                tracing::warn!(series = %series, error = %e, "could not renew the lock; retrying")
            }
        }
    }
}
