//! PostgreSQL through tokio-postgres.
//!
//! Loads stream the batch with binary `COPY ... FROM STDIN` into a temporary table, then merge
//! it into the raw table and record the load history in the same transaction. Connections are
//! pooled, one per concurrent model (`threads`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use futures::pin_mut;
use tokio::sync::Semaphore;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use crate::warehouse::ident::{literal, quote, relation};
mod copy;
pub mod dialect;
pub mod tls;
pub mod types;

use copy::{copy_columns, copy_record_batches};

use crate::config::profiles::PostgresOutput;
use crate::warehouse::{DialectRef, Param, Rows, RowsInto, Warehouse};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
pub use dialect::DIALECT;
use types::{Numeric8, TimestampMs};

pub struct Postgres {
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    idle: Mutex<Vec<Client>>,
    slots: Semaphore,
    describe: String,
}

/// A tokio-postgres error with the server's message, code and detail.
pub fn pg_error(e: tokio_postgres::Error) -> anyhow::Error {
    match e.as_db_error() {
        Some(db) => {
            let mut msg = format!(
                "postgres {} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            );
            if let Some(d) = db.detail() {
                msg.push_str(&format!(" ({d})"));
            }
            anyhow::anyhow!(msg)
        }
        None => {
            // The causes too ("error performing TLS handshake" alone does not say why).
            let mut msg = format!("postgres: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            anyhow::anyhow!(msg)
        }
    }
}

trait PgContext<T> {
    fn pg(self) -> anyhow::Result<T>;
}

impl<T> PgContext<T> for Result<T, tokio_postgres::Error> {
    fn pg(self) -> anyhow::Result<T> {
        self.map_err(pg_error)
    }
}

impl Postgres {
    pub async fn connect(o: &PostgresOutput) -> anyhow::Result<Postgres> {
        Self::connect_mode(o, false).await
    }

    /// Every session read-only (`default_transaction_read_only`): `klines serve`.
    pub async fn connect_read_only(o: &PostgresOutput) -> anyhow::Result<Postgres> {
        Self::connect_mode(o, true).await
    }

    async fn connect_mode(o: &PostgresOutput, read_only: bool) -> anyhow::Result<Postgres> {
        let mut config = tokio_postgres::Config::new();
        if read_only {
            config.options("-c default_transaction_read_only=on");
        }
        config
            .host(&o.host)
            .port(o.port)
            .user(&o.user)
            .dbname(&o.dbname)
            .application_name("klines")
            .connect_timeout(Duration::from_secs(o.connect_timeout.max(1)));
        if let Some(p) = &o.password {
            config.password(p.expose());
        }
        use tokio_postgres::config::SslMode;
        let tls = match o.sslmode.as_str() {
            "disable" => {
                config.ssl_mode(SslMode::Disable);
                None
            }
            "allow" | "prefer" => {
                config.ssl_mode(SslMode::Prefer);
                Some(tls::connector(tls::Verify::Nothing, None)?)
            }
            "require" => {
                config.ssl_mode(SslMode::Require);
                Some(tls::connector(tls::Verify::Nothing, None)?)
            }
            "verify-ca" => {
                config.ssl_mode(SslMode::Require);
                Some(tls::connector(
                    tls::Verify::Chain,
                    o.sslrootcert.as_deref(),
                )?)
            }
            "verify-full" => {
                config.ssl_mode(SslMode::Require);
                Some(tls::connector(tls::Verify::Full, o.sslrootcert.as_deref())?)
            }
            other => bail!(
                "unknown sslmode {other:?} (disable, prefer, require, verify-ca, verify-full)"
            ),
        };
        let describe = format!("postgres {}@{}:{}/{}", o.user, o.host, o.port, o.dbname);
        let pg = Postgres {
            config,
            tls,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(o.threads.max(1) + 1),
            describe,
        };
        // Connect once now, so a wrong host or password is reported at once.
        let client = pg.new_client().await?;
        pg.put_back(client);
        Ok(pg)
    }

    async fn new_client(&self) -> anyhow::Result<Client> {
        let client = match &self.tls {
            None => {
                let (client, conn) = self
                    .config
                    .connect(NoTls)
                    .await
                    .map_err(pg_error)
                    .with_context(|| format!("cannot connect to {}", self.describe))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "postgres connection closed");
                    }
                });
                client
            }
            Some(tls) => {
                let (client, conn) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(pg_error)
                    .with_context(|| format!("cannot connect to {}", self.describe))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "postgres connection closed");
                    }
                });
                client
            }
        };
        client.batch_execute("SET TIME ZONE 'UTC'").await.pg()?;
        // PostgreSQL 14+: a backend whose client died (kill -9) stops its statement within a
        // second instead of running on with its locks and half-built tables.
        let _ = client
            .batch_execute("SET client_connection_check_interval = '1s'")
            .await;
        Ok(client)
    }

    async fn client(&self) -> anyhow::Result<(Client, tokio::sync::SemaphorePermit<'_>)> {
        let permit = self
            .slots
            .acquire()
            .await
            .context("connection pool closed")?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let client = match idle {
            Some(c) if !c.is_closed() => c,
            _ => self.new_client().await?,
        };
        Ok((client, permit))
    }

    fn put_back(&self, client: Client) {
        if !client.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(client);
        }
    }
}

/// `work`'s outcome, or `None` when Ctrl-C or SIGTERM came first.
async fn unless_cancelled<T>(work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        r = work => Some(r),
        () = crate::cancel::cancelled() => None,
    }
}

impl Postgres {
    /// After [`unless_cancelled`]: the connection goes back to the pool with the result, or,
    /// when interrupted, the server is asked to cancel the running statement (its transaction
    /// rolls back) and the connection is closed.
    async fn settle<T>(
        &self,
        client: Client,
        token: tokio_postgres::CancelToken,
        outcome: Option<anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        if let Some(r) = outcome {
            self.put_back(client);
            return r;
        }
        tracing::warn!(server = %self.describe, "cancelling the running Postgres statement");
        let sent = match &self.tls {
            None => token.cancel_query(NoTls).await,
            Some(tls) => token.cancel_query(tls.clone()).await,
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not ask Postgres to cancel the statement");
        }
        drop(client);
        Err(crate::cancel::Interrupted.into())
    }
}

#[async_trait]
impl Warehouse for Postgres {
    fn dialect(&self) -> DialectRef {
        &crate::warehouse::postgres::DIALECT
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn execute(&self, sql: &str) -> anyhow::Result<u64> {
        let (client, _permit) = self.client().await?;
        let token = client.cancel_token();
        let outcome = unless_cancelled(async {
            let t = Instant::now();
            let result = client.execute(sql, &[]).await.pg();
            crate::warehouse::log_sql(t, sql);
            result
        })
        .await;
        self.settle(client, token, outcome).await
    }

    async fn query(&self, sql: &str) -> anyhow::Result<Rows> {
        self.query_bound(sql, &[]).await
    }

    async fn query_bound(&self, sql: &str, params: &[Param]) -> anyhow::Result<Rows> {
        let bound: Vec<Box<dyn ToSql + Sync + Send>> = params
            .iter()
            .map(|p| -> Box<dyn ToSql + Sync + Send> {
                match p {
                    Param::Text(t) => Box::new(t.clone()),
                    Param::Int(i) => Box::new(*i),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b.as_ref() as _).collect();
        let (client, _permit) = self.client().await?;
        let token = client.cancel_token();
        let outcome = unless_cancelled(async {
            let t = Instant::now();
            // Prepared first, so that the column names come with no rows too (on the same
            // session: a second one here, while this one is held, could wait forever for a
            // pool emptied by queries doing the same).
            let result = match client.prepare(sql).await {
                Ok(stmt) => client.query(&stmt, &refs).await.map(|rows| {
                    let columns: Vec<String> = stmt
                        .columns()
                        .iter()
                        .map(|c| c.name().to_string())
                        .collect();
                    (columns, rows)
                }),
                Err(e) => Err(e),
            }
            .pg();
            crate::warehouse::log_sql(t, sql);
            result
        })
        .await;
        let (columns, pg_rows) = self.settle(client, token, outcome).await?;
        let mut rows = Rows {
            columns,
            ..Rows::default()
        };
        for r in &pg_rows {
            rows.rows.push(
                (0..r.len())
                    .map(|i| types::value(r, i))
                    .collect::<anyhow::Result<Vec<_>>>()?,
            );
        }
        Ok(rows)
    }

    async fn transaction(&self, statements: &[String]) -> anyhow::Result<Vec<u64>> {
        let (mut client, _permit) = self.client().await?;
        let token = client.cancel_token();
        let outcome = unless_cancelled(async {
            let tx = client.transaction().await.pg()?;
            let mut counts = Vec::with_capacity(statements.len());
            for s in statements {
                let t = Instant::now();
                counts.push(tx.execute(s.as_str(), &[]).await.pg()?);
                crate::warehouse::log_sql(t, s);
            }
            let t = Instant::now();
            tx.commit().await.pg()?;
            crate::warehouse::log_sql(t, "COMMIT");
            Ok(counts)
        })
        .await;
        self.settle(client, token, outcome).await
    }

    async fn lock(&self, key: &str, wait: Duration) -> anyhow::Result<crate::warehouse::LockGuard> {
        // A connection of its own, outside the pool: the session-level lock lives as long as
        // it does, and the server releases it if klines dies.
        let client = self.new_client().await?;
        let id = format!("hashtext({})", literal(key));
        let started = Instant::now();
        loop {
            let got: bool = client
                .query_one(&format!("SELECT pg_try_advisory_lock({id})"), &[])
                .await
                .pg()?
                .get(0);
            if got {
                return Ok(crate::warehouse::LockGuard(Some(Box::new(client))));
            }
            if started.elapsed().is_zero() || started.elapsed() < Duration::from_millis(300) {
                tracing::info!(lock = key, "another klines command holds the lock; waiting");
            }
            if started.elapsed() >= wait || crate::cancel::is_cancelled() {
                let holder = client
                    .query_opt(
                        &format!(
                            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(to_char(a.query_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '') \
                             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.objid = ({id})::oid AND l.pid <> pg_backend_pid() LIMIT 1"
                        ),
                        &[],
                    )
                    .await
                    .ok()
                    .flatten()
                    .map(|r| {
                        let (pid, app, since): (i32, String, String) = (r.get(0), r.get(1), r.get(2));
                        format!(" (Postgres backend pid {pid}, {app}, statement since {since})")
                    })
                    .unwrap_or_default();
                return Err(crate::warehouse::LockBusy {
                    key: key.to_string(),
                    target: self.describe.clone(),
                    holder,
                    waited_secs: wait.as_secs(),
                }
                .into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn append(
        &self,
        before: &[String],
        schema: &str,
        table: &str,
        rows: &crate::warehouse::Columns,
        after: &[String],
    ) -> anyhow::Result<Vec<u64>> {
        let (mut client, _permit) = self.client().await?;
        let token = client.cancel_token();
        let outcome = unless_cancelled(async {
            let tx = client.transaction().await.pg()?;
            let mut counts = Vec::with_capacity(before.len() + after.len());
            for s in before {
                let t = Instant::now();
                counts.push(tx.execute(s.as_str(), &[]).await.pg()?);
                crate::warehouse::log_sql(t, s);
            }
            if rows.rows() > 0 {
                copy_columns(
                    &tx,
                    &relation(&crate::warehouse::postgres::DIALECT, schema, table),
                    rows,
                )
                .await?;
            }
            for s in after {
                let t = Instant::now();
                counts.push(tx.execute(s.as_str(), &[]).await.pg()?);
                crate::warehouse::log_sql(t, s);
            }
            tx.commit().await.pg()?;
            Ok(counts)
        })
        .await;
        self.settle(client, token, outcome).await
    }

    async fn load_rows(
        &self,
        before: &[String],
        into: &RowsInto,
        rows: Vec<RecordBatch>,
        after: &[String],
    ) -> anyhow::Result<Vec<u64>> {
        let k = self.dialect();
        let table = match into {
            RowsInto::Table { schema, name } => relation(k, schema, name),
            RowsInto::Session { name } => quote(k, name),
        };
        let (mut client, _permit) = self.client().await?;
        let token = client.cancel_token();
        let outcome = unless_cancelled(async {
            let tx = client.transaction().await.pg()?;
            for s in before {
                let t = Instant::now();
                tx.execute(s.as_str(), &[]).await.pg()?;
                crate::warehouse::log_sql(t, s);
            }
            copy_record_batches(&tx, &table, &rows).await?;
            let mut counts = Vec::with_capacity(after.len());
            for s in after {
                let t = Instant::now();
                counts.push(tx.execute(s.as_str(), &[]).await.pg()?);
                crate::warehouse::log_sql(t, s);
            }
            crate::failpoint::hit("load.mid_batch");
            tx.commit().await.pg()?;
            crate::failpoint::hit("load.after_commit");
            Ok(counts)
        })
        .await;
        self.settle(client, token, outcome).await
    }
}
