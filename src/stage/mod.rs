//! The stage: where immutable Parquet files wait for the warehouse.
//!
//! One [`object_store`] API over a local directory (`./stage`, `file:///abs/dir`) and S3
//! (`s3://bucket/prefix`, credentials from the `AWS_*` environment, an S3-compatible
//! endpoint from `AWS_ENDPOINT_URL` or the `stage_options` setting).

pub mod layout;
pub mod manifest;
pub mod parquet;
pub mod repair;
pub mod sink;

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, PutResult};

/// Where a stage lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
    Memory,
}

/// An object in the stage, with its key relative to the stage root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedObject {
    pub key: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    pub e_tag: Option<String>,
}

#[derive(Clone)]
pub struct Stage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    location: Location,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stage({})", self.url())
    }
}

impl Stage {
    /// Opens the stage at `url`: `s3://bucket/prefix`, `file:///dir`, `memory://` or a path
    /// (relative ones from `base_dir`). `options` are object_store's S3 settings
    /// (`endpoint`, `region`, `allow_http`, ...), layered over the `AWS_*` environment.
    pub fn open(
        url: &str,
        options: &BTreeMap<String, String>,
        base_dir: &FsPath,
    ) -> anyhow::Result<Stage> {
        let location = parse_location(url, base_dir)?;
        let store: Arc<dyn ObjectStore> = match &location {
            Location::Local(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create stage directory {}", dir.display()))?;
                Arc::new(
                    LocalFileSystem::new_with_prefix(dir)
                        .with_context(|| format!("cannot open stage directory {}", dir.display()))?
                        .with_fsync(true),
                )
            }
            Location::S3 { bucket, .. } => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                let mut endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
                for (key, value) in options {
                    let parsed: AmazonS3ConfigKey = key
                        .parse()
                        .map_err(|_| anyhow::anyhow!("unknown stage option {key:?}"))?;
                    if matches!(parsed, AmazonS3ConfigKey::Endpoint) {
                        endpoint = Some(value.clone());
                    }
                    builder = builder.with_config(parsed, value);
                }
                if endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://"))
                    && !options.contains_key("allow_http")
                {
                    builder = builder.with_allow_http(true);
                }
                if builder
                    .get_config_value(&AmazonS3ConfigKey::Region)
                    .is_none()
                {
                    builder = builder.with_region("us-east-1");
                }
                Arc::new(
                    builder
                        .build()
                        .with_context(|| format!("cannot open stage {url}"))?,
                )
            }
            Location::Memory => Arc::new(InMemory::new()),
        };
        let root = match &location {
            Location::S3 { prefix, .. } => Path::from(prefix.as_str()),
            _ => Path::default(),
        };
        Ok(Stage {
            store,
            root,
            location,
        })
    }

    /// The stage's URL, for messages (it never holds credentials).
    pub fn url(&self) -> String {
        match &self.location {
            Location::Local(dir) => dir.display().to_string(),
            Location::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
            Location::Memory => "memory://".into(),
        }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The file system path of `key`, for a local stage.
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        match &self.location {
            Location::Local(dir) => Some(dir.join(key)),
            _ => None,
        }
    }

    /// Removes what killed local writes left under `prefix`: object_store writes a file as
    /// `<file>#<n>` and renames it into place, so a `kill -9` in between leaves the staging
    /// file behind. Only call it while holding the lock of everything written under `prefix`,
    /// or another writer's file in progress goes too. Object stores (S3) keep no such files.
    pub fn remove_stale_staging_files(&self, prefix: &str) -> std::io::Result<usize> {
        let Some(dir) = self.local_path(prefix) else {
            return Ok(0);
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let staging = name
                .rsplit_once('#')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if staging && entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                tracing::debug!(file = %entry.path().display(), "removed a staging file left by an interrupted write");
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// A stage rooted at `sub` below this one (`_state` for checkpoints kept in the stage).
    pub fn child(&self, sub: &str) -> Stage {
        let location = match &self.location {
            Location::Local(dir) => Location::Local(dir.join(sub)),
            Location::S3 { bucket, prefix } => Location::S3 {
                bucket: bucket.clone(),
                prefix: if prefix.is_empty() {
                    sub.to_string()
                } else {
                    format!("{prefix}/{sub}")
                },
            },
            Location::Memory => Location::Memory,
        };
        Stage {
            store: Arc::clone(&self.store),
            root: self.path(sub),
            location,
        }
    }

    fn path(&self, key: &str) -> Path {
        key.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |p, part| p.join(part))
    }

    fn relative(&self, path: &Path) -> String {
        path.prefix_match(&self.root)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| path.to_string())
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> object_store::Result<PutResult> {
        self.store
            .put(&self.path(key), PutPayload::from_bytes(bytes))
            .await
    }

    pub async fn put_mode(
        &self,
        key: &str,
        bytes: Bytes,
        mode: PutMode,
    ) -> object_store::Result<PutResult> {
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        self.store
            .put_opts(&self.path(key), PutPayload::from_bytes(bytes), opts)
            .await
    }

    pub async fn get(&self, key: &str) -> object_store::Result<Bytes> {
        self.store.get(&self.path(key)).await?.bytes().await
    }

    /// The object's bytes and metadata, or `None` if there is no such object.
    pub async fn get_opt(&self, key: &str) -> object_store::Result<Option<(Bytes, StagedObject)>> {
        match self.store.get(&self.path(key)).await {
            Ok(r) => {
                let meta = r.meta.clone();
                let bytes = r.bytes().await?;
                Ok(Some((bytes, self.staged(meta))))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn head(&self, key: &str) -> object_store::Result<Option<StagedObject>> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(self.staged(meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn delete(&self, key: &str) -> object_store::Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every object below `prefix` (a key prefix ending at a `/` boundary), sorted by key.
    pub async fn list(&self, prefix: &str) -> object_store::Result<Vec<StagedObject>> {
        let p = self.path(prefix);
        let mut out: Vec<StagedObject> = self
            .store
            .list(Some(&p))
            .map_ok(|m| self.staged(m))
            .try_collect()
            .await?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn staged(&self, meta: object_store::ObjectMeta) -> StagedObject {
        StagedObject {
            key: self.relative(&meta.location),
            size: meta.size,
            last_modified: meta.last_modified,
            e_tag: meta.e_tag,
        }
    }

    /// The underlying store and the root path, for readers that stream (Parquet).
    pub fn store(&self) -> (&Arc<dyn ObjectStore>, Path) {
        (&self.store, self.root.clone())
    }

    pub fn object_path(&self, key: &str) -> Path {
        self.path(key)
    }
}

fn parse_location(url: &str, base_dir: &FsPath) -> anyhow::Result<Location> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        validate_bucket(bucket).with_context(|| format!("invalid stage URL {url:?}"))?;
        let prefix = prefix.trim_matches('/');
        for part in prefix.split('/').filter(|p| !p.is_empty()) {
            if part == "."
                || part == ".."
                || part
                    .chars()
                    .any(|c| c.is_control() || "\\{}^%`[]\"<>~#|*?".contains(c))
            {
                bail!("invalid stage URL {url:?}: bad prefix segment {part:?}");
            }
        }
        return Ok(Location::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        });
    }
    if url == "memory://" {
        return Ok(Location::Memory);
    }
    let path = if let Some(rest) = url.strip_prefix("file://") {
        PathBuf::from(rest)
    } else if url.contains("://") {
        bail!("unsupported stage URL {url:?}: use a directory, file:///dir or s3://bucket/prefix");
    } else {
        PathBuf::from(url)
    };
    if path.as_os_str().is_empty() {
        bail!("invalid stage URL {url:?}: empty path");
    }
    Ok(Location::Local(if path.is_absolute() {
        path
    } else {
        base_dir.join(path)
    }))
}

/// S3's bucket naming rules: 3 to 63 of `a-z 0-9 . -`, starting and ending alphanumeric.
fn validate_bucket(bucket: &str) -> anyhow::Result<()> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket
            .as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && bucket
            .as_bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !ok {
        bail!("bad bucket name {bucket:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_staging_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let stage = Stage::open("stage", &BTreeMap::new(), dir.path()).unwrap();
        let series = dir
            .path()
            .join("stage/market=spot/interval=1m/symbol=BTCUSDT");
        std::fs::create_dir_all(&series).unwrap();
        for f in ["a.parquet", "a.parquet#1", "b.parquet#12", "c#x", "d#"] {
            std::fs::write(series.join(f), b"x").unwrap();
        }
        let removed = stage
            .remove_stale_staging_files("market=spot/interval=1m/symbol=BTCUSDT")
            .unwrap();
        assert_eq!(removed, 2);
        let mut left: Vec<String> = std::fs::read_dir(&series)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["a.parquet", "c#x", "d#"]);
        // A prefix with nothing staged yet is fine.
        assert_eq!(
            stage
                .remove_stale_staging_files("market=spot/none")
                .unwrap(),
            0
        );
    }

    #[test]
    fn parses_stage_urls() {
        let base = FsPath::new("/proj");
        assert_eq!(
            parse_location("./stage", base).unwrap(),
            Location::Local("/proj/./stage".into())
        );
        assert_eq!(
            parse_location("file:///data/st", base).unwrap(),
            Location::Local("/data/st".into())
        );
        assert_eq!(
            parse_location("s3://my-bucket/raw/klines/", base).unwrap(),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: "raw/klines".into()
            }
        );
        assert!(parse_location("s3://My_Bucket/x", base).is_err());
        assert!(parse_location("s3://bucket/../x", base).is_err());
        assert!(parse_location("gs://bucket/x", base).is_err());
        assert!(parse_location("", base).is_err());
    }

    #[tokio::test]
    async fn keys_are_relative_to_the_root() {
        let stage = Stage::open("memory://", &BTreeMap::new(), FsPath::new(".")).unwrap();
        stage
            .put("a/b/c.txt", Bytes::from_static(b"x"))
            .await
            .unwrap();
        stage
            .put("a/d.txt", Bytes::from_static(b"yy"))
            .await
            .unwrap();
        let listed = stage.list("a").await.unwrap();
        let keys: Vec<_> = listed.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a/b/c.txt", "a/d.txt"]);
        assert_eq!(
            stage.get("a/d.txt").await.unwrap(),
            Bytes::from_static(b"yy")
        );
        assert!(stage.get_opt("missing").await.unwrap().is_none());
        let child = stage.child("a");
        assert_eq!(child.list("").await.unwrap().len(), 2);
        assert_eq!(
            child.get("b/c.txt").await.unwrap(),
            Bytes::from_static(b"x")
        );
    }
}
