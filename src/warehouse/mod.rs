//! Warehouses: one trait that the loader and the model runner share, one file per adapter.
//!
//! Every adapter passes the same conformance suite (`tests/it/warehouse.rs`).

pub mod append;
pub mod dialect;
pub mod duckdb;
pub mod ident;
pub mod postgres;
pub mod snowflake;
pub mod value;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::profiles::{Output, Target};
pub use append::{Column, Columns, TableAppender};
pub use dialect::{Dialect, DialectRef, Swap};
pub use value::{Rows, Value};

/// What a relation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationType {
    Table,
    View,
}

/// A bound parameter of [`Warehouse::query_bound`].
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
}

/// A relation's kind from `information_schema`'s `table_type`.
pub fn relation_type(table_type: &str) -> RelationType {
    if table_type == "VIEW" {
        RelationType::View
    } else {
        RelationType::Table
    }
}

/// (name, table_type) rows as relations by name.
pub fn relation_types(rows: &Rows) -> std::collections::BTreeMap<String, RelationType> {
    rows.rows
        .iter()
        .filter_map(|r| {
            Some((
                r.first()?.as_str()?.to_string(),
                relation_type(r.get(1)?.as_str()?),
            ))
        })
        .collect()
}

#[async_trait]
pub trait Warehouse: Send + Sync {
    /// The SQL this warehouse speaks.
    fn dialect(&self) -> DialectRef;

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
        self.dialect().placeholder(n)
    }

    /// Runs statements in one transaction: all of them or none. Returns rows affected each.
    async fn transaction(&self, statements: &[String]) -> anyhow::Result<Vec<u64>>;

    /// An appender to `schema.table` whose pieces become visible together on commit. The
    /// default appends each piece in its own transaction; DuckDB holds one transaction open
    /// on a connection of its own (a commit per piece cost more than the rows).
    async fn appender<'a>(
        &'a self,
        schema: &str,
        table: &str,
    ) -> anyhow::Result<Box<dyn TableAppender + 'a>> {
        Ok(Box::new(append::EachPiece {
            wh: self,
            schema: schema.to_string(),
            table: table.to_string(),
        }))
    }

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
        rows.inserts(self.dialect(), schema, table, 2000)
    }

    /// Whether `schema.name` exists, and as what (both cased as the warehouse stores them).
    async fn relation(&self, schema: &str, name: &str) -> anyhow::Result<Option<RelationType>> {
        let sql = format!(
            "SELECT table_type FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
            ident::literal(schema),
            ident::literal(name)
        );
        let rows = self.query(&sql).await?;
        Ok(rows.scalar().and_then(|v| v.as_str()).map(relation_type))
    }

    /// The relations in `schema` (cased as the warehouse stores it), by name as stored: what
    /// [`Warehouse::relation`] answers for each, in one query.
    async fn relations(
        &self,
        schema: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<String, RelationType>> {
        let sql = format!(
            "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = {}",
            ident::literal(schema)
        );
        Ok(relation_types(&self.query(&sql).await?))
    }

    /// In one transaction: runs `before`, appends `rows` (Arrow record batches with the
    /// table's columns, by name) to `into`, runs `after`, and commits; returns the rows each
    /// statement of `after` affected. The loader's bulk path (DuckDB's appender, Postgres'
    /// binary `COPY`); a warehouse that reads staged files itself instead has
    /// [`Warehouse::staged_copy`].
    async fn load_rows(
        &self,
        before: &[String],
        into: &RowsInto,
        rows: Vec<arrow::array::RecordBatch>,
        after: &[String],
    ) -> anyhow::Result<Vec<u64>> {
        let _ = (before, into, rows, after);
        anyhow::bail!("{} loads staged files, not rows", self.describe())
    }

    /// The warehouse's own loading of staged files (Snowflake's `COPY INTO` from an external
    /// stage), if it has one: then the loader hands it files instead of rows.
    fn staged_copy(&self) -> Option<&dyn StagedCopy> {
        None
    }

    /// Takes the warehouse-side lock `key` (one `klines load` or model run per project and
    /// target at a time), waiting up to `wait` for another holder; held until the guard drops.
    /// Embedded DuckDB needs none (one process holds the file); Snowflake has no session locks.
    async fn lock(&self, key: &str, wait: std::time::Duration) -> anyhow::Result<LockGuard> {
        let _ = (key, wait);
        Ok(LockGuard(None))
    }
}

/// Where [`Warehouse::load_rows`] appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowsInto {
    /// A table of a schema.
    Table { schema: String, name: String },
    /// A temporary table of this session, created by a statement of `before`.
    Session { name: String },
}

/// What `COPY INTO` reported for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub file: String,
    pub status: String,
    pub rows_loaded: Option<u64>,
    pub first_error: Option<String>,
}

/// A warehouse that loads staged files itself, from the stage by their keys.
#[async_trait]
pub trait StagedCopy: Send + Sync {
    /// Tables of its own beside the raw tables (created with them).
    fn raw_setup(&self, raw_schema: &str) -> Vec<String> {
        let _ = raw_schema;
        Vec::new()
    }

    /// Statements of its own for the raw tables' migration (in the same transaction).
    fn raw_migration(&self, raw_schema: &str) -> Vec<String> {
        let _ = raw_schema;
        Vec::new()
    }

    /// In one transaction: copies `files` (stage keys) into `table` by column name, hands
    /// what it reported to `check` (an error rolls everything back), runs `after`, and
    /// commits; returns the rows each statement of `after` answered.
    async fn copy_files(
        &self,
        table: &str,
        files: &[String],
        check: &(dyn for<'c> Fn(&'c [Copied]) -> anyhow::Result<()> + Send + Sync),
        after: &[String],
    ) -> anyhow::Result<Vec<Rows>>;

    /// A `MERGE`'s result as (inserted, updated) rows.
    fn merge_counts(&self, rows: &Rows) -> (u64, u64);
}

/// A held warehouse lock; dropping it releases the lock.
pub struct LockGuard(pub Option<Box<dyn std::any::Any + Send + Sync>>);

/// Another klines command holds the lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "another klines command holds the lock {key} on {target}{holder}; it was not released within {waited_secs}s, try again when it has finished"
)]
pub struct LockBusy {
    pub key: String,
    pub target: String,
    /// ` (Postgres backend pid 123, running since ...)`, when known.
    pub holder: String,
    pub waited_secs: u64,
}

/// `"schema"."name"` for this warehouse.
pub fn relation_name(w: &dyn Warehouse, schema: &str, name: &str) -> String {
    ident::relation(w.dialect(), schema, name)
}

/// The SQL a profile's output speaks.
pub fn dialect_of(output: &Output) -> DialectRef {
    match output {
        Output::DuckDb(_) => &duckdb::DIALECT,
        Output::Postgres(_) => &postgres::DIALECT,
        Output::Snowflake(_) => &snowflake::DIALECT,
    }
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
                        .map_err(|e| e.context(format!("DuckDB database {path}")))?,
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
