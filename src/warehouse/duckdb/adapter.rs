//! Embedded DuckDB: the default warehouse, no server needed.
//!
//! The `duckdb` crate is synchronous, so every call runs on the blocking pool behind one
//! connection. Load batches are appended as Arrow record batches to a temporary table and
//! merged in the same transaction.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use arrow::array::RecordBatch;
use async_trait::async_trait;

use super::driver::{commit, db_err};
use crate::config::profiles::SettingValue;
use crate::warehouse::{DialectRef, Param, Rows, RowsInto, Warehouse};

pub struct DuckDb {
    conn: Arc<Mutex<duckdb::Connection>>,
    /// Stops the running statement on Ctrl-C or SIGTERM.
    interrupt: Arc<duckdb::InterruptHandle>,
    path: String,
}

/// `SET name = value` for a profile setting; the name must be a plain identifier and text is
/// quoted, so a profile cannot smuggle SQL in.
fn set_statement(name: &str, value: &SettingValue) -> anyhow::Result<(String, String)> {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        anyhow::bail!("settings: {name:?} is not a DuckDB setting name");
    }
    let value = match value {
        SettingValue::Bool(b) => b.to_string(),
        SettingValue::Int(i) => i.to_string(),
        SettingValue::Float(f) if f.is_finite() => f.to_string(),
        SettingValue::Float(f) => {
            anyhow::bail!("settings: {name} = {f} is not a number DuckDB takes")
        }
        SettingValue::Text(t) => format!("'{}'", t.replace('\'', "''")),
    };
    Ok((name.to_string(), format!("SET {name} = {value}")))
}

impl DuckDb {
    /// Opens (or creates) the database file at `path`, or an in-memory one for `:memory:`,
    /// and applies the profile's `settings`.
    pub async fn open(
        path: &str,
        threads: usize,
        settings: &BTreeMap<String, SettingValue>,
    ) -> anyhow::Result<DuckDb> {
        Self::open_mode(path, threads, settings, false).await
    }

    /// Opens an existing database file read-only (`klines serve`): other read-only
    /// processes may open it too, a writer may not.
    pub async fn open_read_only(
        path: &str,
        threads: usize,
        settings: &BTreeMap<String, SettingValue>,
    ) -> anyhow::Result<DuckDb> {
        Self::open_mode(path, threads, settings, true).await
    }

    async fn open_mode(
        path: &str,
        threads: usize,
        settings: &BTreeMap<String, SettingValue>,
        read_only: bool,
    ) -> anyhow::Result<DuckDb> {
        let set = settings
            .iter()
            .map(|(name, value)| set_statement(name, value))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let p = path.to_string();
        let conn = tokio::task::spawn_blocking(move || -> anyhow::Result<duckdb::Connection> {
            let conn = if p == ":memory:" {
                duckdb::Connection::open_in_memory()?
            } else if read_only {
                if !std::path::Path::new(&p).is_file() {
                    anyhow::bail!("no such file: build the models first");
                }
                let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?;
                duckdb::Connection::open_with_flags(&p, config).map_err(db_err)?
            } else {
                if let Some(dir) = std::path::Path::new(&p).parent() {
                    std::fs::create_dir_all(dir).ok();
                }
                duckdb::Connection::open(&p)?
            };
            conn.execute_batch(&format!("SET threads = {}", threads.max(1)))?;
            for (name, sql) in &set {
                // On one line: DuckDB adds its "Did you mean" on the next.
                conn.execute_batch(sql).map_err(|e| {
                    let msg = db_err(e).to_string();
                    anyhow::anyhow!(
                        "settings: {name}: {}",
                        msg.split_whitespace().collect::<Vec<_>>().join(" ")
                    )
                })?;
            }
            Ok(conn)
        })
        .await?
        .with_context(|| format!("cannot open DuckDB database {path}"))?;
        Ok(DuckDb {
            interrupt: conn.interrupt_handle(),
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_string(),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut duckdb::Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let conn = Arc::clone(&self.conn);
        let task = tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        });
        tokio::pin!(task);
        tokio::select! {
            r = &mut task => r.context("DuckDB worker panicked")?,
            () = crate::cancel::cancelled() => {
                // Interrupt the statement and wait for DuckDB to roll its transaction back.
                tracing::warn!(database = %self.path, "interrupting the running DuckDB statement");
                self.interrupt.interrupt();
                let _ = task.await;
                Err(crate::cancel::Interrupted.into())
            }
        }
    }
}

/// Runs `statements` in `tx`, logging each; returns the rows each affected.
fn execute_all(tx: &duckdb::Transaction<'_>, statements: &[String]) -> anyhow::Result<Vec<u64>> {
    let mut counts = Vec::with_capacity(statements.len());
    for s in statements {
        let t = Instant::now();
        counts.push(
            tx.execute(s, [])
                .map_err(db_err)
                .with_context(|| format!("in: {}", first_line(s)))? as u64,
        );
        crate::warehouse::log_sql(t, s);
    }
    Ok(counts)
}

fn query_rows(conn: &duckdb::Connection, sql: &str) -> anyhow::Result<Rows> {
    query_bound_rows(conn, sql, &[])
}

fn query_bound_rows(
    conn: &duckdb::Connection,
    sql: &str,
    params: &[Param],
) -> anyhow::Result<Rows> {
    let mut stmt = conn.prepare(sql).map_err(db_err)?;
    let mut rows = Rows::default();
    let values: Vec<duckdb::types::Value> = params
        .iter()
        .map(|p| match p {
            Param::Text(t) => duckdb::types::Value::Text(t.clone()),
            Param::Int(i) => duckdb::types::Value::BigInt(*i),
        })
        .collect();
    let arrow = stmt
        .query_arrow(duckdb::params_from_iter(values))
        .map_err(db_err)?;
    let schema = arrow.get_schema();
    for batch in arrow {
        rows.extend_from_arrow(&batch)?;
    }
    if rows.columns.is_empty() {
        rows.columns = schema.fields().iter().map(|f| f.name().clone()).collect();
    }
    Ok(rows)
}

#[async_trait]
impl Warehouse for DuckDb {
    fn dialect(&self) -> DialectRef {
        &crate::warehouse::duckdb::DIALECT
    }

    fn describe(&self) -> String {
        format!("duckdb {}", self.path)
    }

    async fn execute(&self, sql: &str) -> anyhow::Result<u64> {
        let sql = sql.to_string();
        self.with(move |c| {
            let t = Instant::now();
            let n = c.execute(&sql, []).map_err(db_err)? as u64;
            crate::warehouse::log_sql(t, &sql);
            Ok(n)
        })
        .await
    }

    async fn query(&self, sql: &str) -> anyhow::Result<Rows> {
        let sql = sql.to_string();
        self.with(move |c| {
            let t = Instant::now();
            let rows = query_rows(c, &sql)?;
            crate::warehouse::log_sql(t, &sql);
            Ok(rows)
        })
        .await
    }

    async fn query_bound(&self, sql: &str, params: &[Param]) -> anyhow::Result<Rows> {
        let (sql, params) = (sql.to_string(), params.to_vec());
        self.with(move |c| {
            let t = Instant::now();
            let rows = query_bound_rows(c, &sql, &params)?;
            crate::warehouse::log_sql(t, &sql);
            Ok(rows)
        })
        .await
    }

    async fn transaction(&self, statements: &[String]) -> anyhow::Result<Vec<u64>> {
        let statements = statements.to_vec();
        self.with(move |c| {
            let tx = c.transaction()?;
            let counts = execute_all(&tx, &statements)?;
            commit(tx)?;
            Ok(counts)
        })
        .await
    }

    async fn append(
        &self,
        before: &[String],
        schema: &str,
        table: &str,
        rows: &crate::warehouse::Columns,
        after: &[String],
    ) -> anyhow::Result<Vec<u64>> {
        let batch = rows.record_batch()?;
        let (before, after) = (before.to_vec(), after.to_vec());
        let (schema, table) = (
            crate::warehouse::ident::fold(&crate::warehouse::duckdb::DIALECT, schema),
            crate::warehouse::ident::fold(&crate::warehouse::duckdb::DIALECT, table),
        );
        self.with(move |c| {
            let tx = c.transaction()?;
            let mut counts = execute_all(&tx, &before)?;
            if batch.num_rows() > 0 {
                let mut appender = tx.appender_to_db(&table, &schema)?;
                appender.append_record_batch(batch)?;
                appender.flush()?;
            }
            counts.extend(execute_all(&tx, &after)?);
            commit(tx)?;
            Ok(counts)
        })
        .await
    }

    async fn appender<'a>(
        &'a self,
        schema: &str,
        table: &str,
    ) -> anyhow::Result<Box<dyn crate::warehouse::TableAppender + 'a>> {
        let conn = self.with(|c| c.try_clone().map_err(db_err)).await?;
        let fold = |n: &str| crate::warehouse::ident::fold(&crate::warehouse::duckdb::DIALECT, n);
        Ok(Box::new(super::appender::Appender::start(
            conn,
            fold(schema),
            fold(table),
        )))
    }

    async fn load_rows(
        &self,
        before: &[String],
        into: &RowsInto,
        rows: Vec<RecordBatch>,
        after: &[String],
    ) -> anyhow::Result<Vec<u64>> {
        let (before, after, into) = (before.to_vec(), after.to_vec(), into.clone());
        self.with(move |c| {
            let tx = c.transaction()?;
            execute_all(&tx, &before)?;
            {
                let mut appender = match &into {
                    RowsInto::Table { schema, name } => tx.appender_to_db(name, schema)?,
                    RowsInto::Session { name } => {
                        tx.appender_to_catalog_and_db(name, "temp", "main")?
                    }
                };
                for rb in rows {
                    appender.append_record_batch(rb)?;
                }
                appender.flush()?;
            }
            let counts = execute_all(&tx, &after)?;
            crate::failpoint::hit("load.mid_batch");
            commit(tx)?;
            crate::failpoint::hit("load.after_commit");
            Ok(counts)
        })
        .await
    }
}

fn first_line(sql: &str) -> String {
    let s: String = sql.chars().take(120).collect();
    s.lines().next().unwrap_or_default().to_string()
}
