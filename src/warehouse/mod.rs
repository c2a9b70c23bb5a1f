//! Warehouses: one trait that the loader and the model runner share, one file per adapter.
//!
//! Every adapter passes the same conformance suite (`tests/it/warehouse.rs`).

pub mod append;
#[cfg(feature = "duckdb")]
pub mod duckdb;
pub mod ident;
pub mod pg_tls;
pub mod pg_types;
pub mod postgres;
pub mod raw;
pub mod snowflake;
pub mod value;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;

use crate::config::profiles::{Output, Target};
use crate::datasets::klines::KlineBatch;
use crate::market::Series;
use crate::stage::manifest::ManifestEntry;
pub use append::{Column, Columns};
pub use value::{Rows, Value};

/// Which warehouse: it decides SQL dialect details and identifier case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    DuckDb,
    Postgres,
    Snowflake,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DuckDb => "duckdb",
            Kind::Postgres => "postgres",
            Kind::Snowflake => "snowflake",
        }
    }
}

/// What a relation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationType {
    Table,
    View,
}

/// A staged file in a load batch.
#[derive(Debug, Clone)]
pub struct LoadFile {
    pub entry: ManifestEntry,
    /// When it was staged (the manifest entry's last-modified time), epoch ms.
    pub staged_at: i64,
}

/// The klines of one series in a load batch, each with the index of the file it comes from.
/// Open times are unique: overlapping files were resolved (newest wins) before.
#[derive(Debug, Clone)]
pub struct SeriesRows {
    pub series: Series,
    pub klines: KlineBatch,
    pub file: Vec<u32>,
}

/// One transaction's worth of loading.
#[derive(Debug, Clone, Default)]
pub struct LoadBatch {
    pub files: Vec<LoadFile>,
    pub rows: Vec<SeriesRows>,
    /// The batch's files overlap neither each other nor any loaded file: every row is new.
    pub fresh: bool,
    /// Rows of the batch's files that break a kline's invariants: recorded in
    /// `raw.klines_rejected` in the same transaction, never loaded.
    pub rejected: Vec<crate::load::quarantine::Rejected>,
}

impl LoadBatch {
    pub fn row_count(&self) -> usize {
        self.rows.iter().map(|r| r.klines.len()).sum()
    }
}

/// What a load batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadCounts {
    pub inserted: u64,
    /// Rows that existed with other values and were replaced by a newer file's.
    pub replaced: u64,
}

/// A file in the load history: its key, content hash, series and open-time range.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoadedFile {
    pub path: String,
    pub sha256: String,
    pub series: Option<Series>,
    pub start: i64,
    pub end: i64,
}

/// A bound parameter of [`Warehouse::query_bound`].
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
}

#[async_trait]
pub trait Warehouse: Send + Sync {
    fn kind(&self) -> Kind;

    /// Where it is, for messages (never with credentials).
    fn describe(&self) -> String;

    /// Runs one statement; returns the rows it affected (0 for DDL).
    async fn execute(&self, sql: &str) -> anyhow::Result<u64>;

    /// Runs one query and fetches every row.
    async fn query(&self, sql: &str) -> anyhow::Result<Rows>;

    /// Runs one query whose [`Warehouse::placeholder`]s take `params`, bound by the driver:
    /// for values that come from outside (the dashboard's requests).
    async fn query_bound(&self, sql: &str, params: &[Param]) -> anyhow::Result<Rows>;

    /// The `n`th (from 1) bound parameter's placeholder in this warehouse's SQL (`$n`; a
    /// number may come back more than once).
    fn placeholder(&self, n: usize) -> String {
        format!("${n}")
    }

    /// Runs statements in one transaction: all of them or none. Returns rows affected each.
    async fn transaction(&self, statements: &[String]) -> anyhow::Result<Vec<u64>>;

    /// Runs `before`, appends `rows` to `schema.table` (its columns, in the table's order),
    /// then runs `after`, all in one transaction. Returns the rows each statement of `before`
    /// and then of `after` affected. The default sends [`Warehouse::insert_statements`] (what
    /// Snowflake needs: its bulk loads read staged files); DuckDB and Postgres append natively.
    async fn append(
        &self,
        before: &[String],
        schema: &str,
        table: &str,
        rows: &Columns,
        after: &[String],
    ) -> anyhow::Result<Vec<u64>> {
        let inserts = self.insert_statements(schema, table, rows);
        let all: Vec<String> = [before, &inserts, after].concat();
        let counts = self.transaction(&all).await?;
        // The counts of `before`, then of `after`.
        Ok(counts[..before.len()]
            .iter()
            .chain(&counts[before.len() + inserts.len()..])
            .copied()
            .collect())
    }

    /// The statements that insert `rows` for the default [`Warehouse::append`]: multi-row
    /// `INSERT ... VALUES`.
    fn insert_statements(&self, schema: &str, table: &str, rows: &Columns) -> Vec<String> {
        rows.inserts(self.kind(), schema, table, 2000)
    }

    /// Whether `schema.name` exists, and as what (both cased as the warehouse stores them).
    async fn relation(&self, schema: &str, name: &str) -> anyhow::Result<Option<RelationType>> {
        let sql = format!(
            "SELECT table_type FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
            ident::literal(schema),
            ident::literal(name)
        );
        let rows = self.query(&sql).await?;
        Ok(rows.scalar().and_then(|v| v.as_str()).map(|t| {
            if t == "VIEW" {
                RelationType::View
            } else {
                RelationType::Table
            }
        }))
    }

    /// Creates the raw schema, the raw klines table and the load history if missing.
    async fn ensure_raw(&self, raw_schema: &str) -> anyhow::Result<()> {
        self.transaction(&raw::ddl(self.kind(), raw_schema))
            .await
            .map(|_| ())
    }

    /// Brings raw tables written before the exchange was part of their key to today's (once;
    /// see [`raw::migration`]). Returns the rows migrated, `None` when there was nothing to do.
    /// True when the raw klines table was written before the exchange was part of its key.
    async fn raw_needs_migration(&self, raw_schema: &str) -> anyhow::Result<bool> {
        let klines = ident::relation(self.kind(), raw_schema, raw::KLINES);
        let columns = self
            .query(&format!("SELECT * FROM {klines} WHERE 1 = 0"))
            .await?
            .columns;
        Ok(!columns.is_empty() && !columns.iter().any(|c| c.eq_ignore_ascii_case("exchange")))
    }

    async fn migrate_raw(&self, raw_schema: &str) -> anyhow::Result<Option<u64>> {
        if !self.raw_needs_migration(raw_schema).await? {
            return Ok(None);
        }
        let k = self.kind();
        let klines = ident::relation(k, raw_schema, raw::KLINES);
        let rows = self
            .query(&format!("SELECT count(*) FROM {klines}"))
            .await?
            .scalar()
            .and_then(|v| v.as_i64())
            .unwrap_or(0) as u64;
        tracing::warn!(
            table = %klines,
            rows,
            "the raw tables were written before the exchange was part of their key: migrating them once (their rows are Binance's)"
        );
        self.transaction(&raw::migration(k, raw_schema))
            .await
            .with_context(|| format!("cannot migrate {klines} to the key with the exchange"))?;
        Ok(Some(rows))
    }

    /// The files in the load history.
    async fn loaded_files(&self, raw_schema: &str) -> anyhow::Result<Vec<LoadedFile>> {
        let rows = self
            .query(&raw::loaded_files_query(self.kind(), raw_schema))
            .await?;
        rows.rows.iter().map(raw::loaded_file).collect()
    }

    /// Loads a batch in one transaction: new klines are inserted, existing ones with other
    /// values replaced when the batch's file is at least as new as theirs, and every file is
    /// recorded in the load history. All of it, or nothing. When `batch.fresh` says no row can
    /// exist yet, the rows may go straight into the raw table.
    async fn load(&self, raw_schema: &str, batch: &LoadBatch) -> anyhow::Result<LoadCounts>;

    /// Takes the warehouse-side lock `key` (one `klines load` or model run per project and
    /// target at a time), waiting up to `wait` for another holder; held until the guard drops.
    /// Embedded DuckDB needs none (one process holds the file); Snowflake has no session locks.
    async fn lock(&self, key: &str, wait: std::time::Duration) -> anyhow::Result<LockGuard> {
        let _ = (key, wait);
        Ok(LockGuard(None))
    }
}

/// A held warehouse lock; dropping it releases the lock.
pub struct LockGuard(pub Option<Box<dyn std::any::Any + Send + Sync>>);

/// Another klines command holds the lock.
#[derive(Debug, thiserror::Error)]
#[error("another klines command holds the lock {key} on {target}{holder}; it was not released within {waited_secs}s, try again when it has finished")]
pub struct LockBusy {
    pub key: String,
    pub target: String,
    /// ` (Postgres backend pid 123, running since ...)`, when known.
    pub holder: String,
    pub waited_secs: u64,
}

/// `"schema"."name"` for this warehouse.
pub fn relation_name(w: &dyn Warehouse, schema: &str, name: &str) -> String {
    ident::relation(w.kind(), schema, name)
}

/// Connects to the target's warehouse. Relative DuckDB paths are from `project_dir`.
pub async fn connect(target: &Target, project_dir: &Path) -> anyhow::Result<Arc<dyn Warehouse>> {
    open(target, project_dir, false).await
}

/// Connects for reading only: DuckDB opened read-only, Postgres sessions read-only; Snowflake
/// as the profile's role allows (the dashboard runs only its own SELECTs).
pub async fn connect_read_only(
    target: &Target,
    project_dir: &Path,
) -> anyhow::Result<Arc<dyn Warehouse>> {
    open(target, project_dir, true).await
}

async fn open(
    target: &Target,
    project_dir: &Path,
    read_only: bool,
) -> anyhow::Result<Arc<dyn Warehouse>> {
    Ok(match &target.output {
        #[cfg(not(feature = "duckdb"))]
        Output::DuckDb(_) => {
            let _ = project_dir;
            anyhow::bail!("this klines was built without DuckDB (feature `duckdb`)")
        }
        #[cfg(feature = "duckdb")]
        Output::DuckDb(o) => {
            let path = if o.path == ":memory:" || Path::new(&o.path).is_absolute() {
                o.path.clone()
            } else {
                project_dir.join(&o.path).display().to_string()
            };
            if read_only {
                Arc::new(
                    duckdb::DuckDb::open_read_only(&path, o.threads, &o.settings)
                        .await
                        .with_context(|| format!("DuckDB database {path}"))?,
                )
            } else {
                Arc::new(duckdb::DuckDb::open(&path, o.threads, &o.settings).await?)
            }
        }
        Output::Postgres(o) if read_only => {
            Arc::new(postgres::Postgres::connect_read_only(o).await?)
        }
        Output::Postgres(o) => Arc::new(postgres::Postgres::connect(o).await?),
        Output::Snowflake(o) => Arc::new(snowflake::Snowflake::connect(o).await?),
    })
}

/// Logs a statement at debug level (`-v`) on one line, with how long it took (target
/// `klines::sql`, so `KLINES_LOG=klines::sql=debug` shows just these).
pub(crate) fn log_sql(started: std::time::Instant, sql: &str) {
    if tracing::enabled!(target: "klines::sql", tracing::Level::DEBUG) {
        let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0;
        tracing::debug!(target: "klines::sql", ms, sql = %one_line, "statement");
    }
}
