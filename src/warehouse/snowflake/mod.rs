//! Snowflake through its connector protocol (reqwest and Arrow IPC), as the official drivers do.
//!
//! Loads copy staged files from an external stage over the klines S3 stage into a table of
//! their own (`COPY INTO ... FILES=(...)`, at most 1000 a statement), then, in one
//! transaction, mark each row with its file, `MERGE` into the raw table and record the load
//! history: exactly once per row, whatever Snowflake's own 64-day load metadata remembers.

pub mod dialect;
pub mod jwt;
pub mod results;
pub mod session;

pub mod snowpipe;

pub use dialect::DIALECT;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use serde_json::Value as Json;
use tokio::sync::Semaphore;

use super::ident::{literal, quote, relation};
use super::{Copied, Dialect, DialectRef, Param, RelationType, Rows, StagedCopy, Warehouse};
use crate::config::profiles::SnowflakeOutput;
use crate::datasets::ColType;
use crate::datasets::klines::KLINES;
use session::{Auth, LoginSpec, Session};

pub use session::SnowflakeError;

/// Where the adapter logs in: the `host:` override, or the account's URL.
pub fn base_url(o: &SnowflakeOutput) -> anyhow::Result<String> {
    if let Some(h) = &o.host {
        let h = h.trim_end_matches('/');
        return Ok(if h.contains("://") {
            h.to_string()
        } else {
            format!("https://{h}")
        });
    }
    if o.account.is_empty()
        || !o
            .account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        bail!("invalid Snowflake account {:?}", o.account);
    }
    Ok(format!("https://{}.snowflakecomputing.com", o.account))
}

/// `DB.SCHEMA.NAME`, each part an identifier.
pub fn validate_qualified(what: &str, name: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        bail!("{what} {name:?}: expected DB.SCHEMA.NAME");
    }
    for p in parts {
        super::ident::validate(p).map_err(|e| anyhow::anyhow!("{what} {name:?}: {e}"))?;
    }
    Ok(())
}

pub struct Snowflake {
    http: reqwest::Client,
    spec: Arc<LoginSpec>,
    idle: Mutex<Vec<Session>>,
    slots: Semaphore,
    describe: String,
    /// The external stage over the klines stage (`DB.SCHEMA.STAGE`).
    pub stage: Option<String>,
    pub output: SnowflakeOutput,
}

impl Snowflake {
    pub async fn connect(o: &SnowflakeOutput) -> anyhow::Result<Snowflake> {
        let auth = match (&o.private_key_path, &o.password) {
            (Some(path), _) => Auth::KeyPair(jwt::KeyPair::from_file(
                path,
                o.private_key_passphrase.as_ref(),
            )?),
            (None, Some(p)) => Auth::Password(p.clone()),
            (None, None) => bail!("the Snowflake output needs private_key_path or password"),
        };
        for (what, v) in [("stage", &o.stage), ("pipe", &o.pipe)] {
            if let Some(v) = v {
                validate_qualified(what, v)?;
            }
        }
        let spec = Arc::new(LoginSpec {
            base_url: base_url(o)?,
            account: o.account.clone(),
            user: o.user.clone(),
            auth,
            role: o.role.clone(),
            warehouse: o.warehouse.clone(),
            database: Some(o.database.clone()),
            schema: Some(o.schema.clone()),
            query_timeout: Duration::from_secs(o.query_timeout.max(1)),
        });
        let http = reqwest::Client::builder()
            .user_agent(concat!("klines/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_secs(600))
            .build()?;
        let describe = format!("snowflake {}@{} {}", o.user, o.account, o.database);
        let sf = Snowflake {
            http,
            spec,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(o.threads.max(1) + 1),
            describe,
            stage: o.stage.clone(),
            output: o.clone(),
        };
        // Log in now, so a wrong account or key is reported at once.
        let s = Session::login(sf.http.clone(), Arc::clone(&sf.spec)).await?;
        sf.put_back(s);
        Ok(sf)
    }

    async fn session(&self) -> anyhow::Result<(Session, tokio::sync::SemaphorePermit<'_>)> {
        let permit = self.slots.acquire().await.context("session pool closed")?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let s = match idle {
            Some(s) => s,
            None => Session::login(self.http.clone(), Arc::clone(&self.spec)).await?,
        };
        Ok((s, permit))
    }

    fn put_back(&self, s: Session) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }

    /// Runs a statement with `?` bindings.
    pub async fn run(&self, sql: &str, bindings: &[Json]) -> anyhow::Result<Rows> {
        let (mut s, _permit) = self.session().await?;
        let r = s.query(sql, bindings).await;
        self.put_back(s);
        Ok(r?.0)
    }

    /// Runs statements in one transaction on one session.
    async fn in_transaction(
        &self,
        s: &mut Session,
        statements: &[String],
    ) -> anyhow::Result<Vec<Rows>> {
        s.begin().await?;
        let mut out = Vec::with_capacity(statements.len());
        let mut failed = None;
        for st in statements {
            match s.query(st, &[]).await {
                Ok((rows, _)) => out.push(rows),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let ended = s.end(failed.is_none()).await;
        if let Some(e) = failed {
            return Err(e);
        }
        ended?;
        Ok(out)
    }

    /// Runs statements in one transaction and returns each one's result rows.
    pub async fn transaction_rows(&self, statements: &[String]) -> anyhow::Result<Vec<Rows>> {
        let (mut s, _permit) = self.session().await?;
        let r = self.in_transaction(&mut s, statements).await;
        self.put_back(s);
        r
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Closes every idle session.
    pub async fn close(&self) {
        let sessions: Vec<Session> =
            std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for s in sessions {
            s.close().await;
        }
    }
}

/// The landing table Snowpipe copies into, before klines merges it into the raw table.
pub const LANDING: &str = "klines_landing";

/// DDL of the landing table.
pub fn landing_ddl(raw_schema: &str) -> String {
    let k = &DIALECT;
    let cols = KLINES
        .columns
        .iter()
        .map(|c| format!("{} {}", quote(k, c.name), k.sql_type(c.ty)))
        .chain([
            format!("{} {}", quote(k, "_file"), k.sql_type(ColType::Text)),
            format!(
                "{} {}",
                quote(k, "_staged_at"),
                k.sql_type(ColType::Timestamp)
            ),
        ])
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({cols})",
        relation(k, raw_schema, LANDING)
    )
}

#[async_trait]
impl Warehouse for Snowflake {
    fn dialect(&self) -> DialectRef {
        &crate::warehouse::snowflake::DIALECT
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn execute(&self, sql: &str) -> anyhow::Result<u64> {
        Ok(results::affected(&self.run(sql, &[]).await?))
    }

    async fn query(&self, sql: &str) -> anyhow::Result<Rows> {
        self.run(sql, &[]).await
    }

    fn placeholder(&self, n: usize) -> String {
        format!(":{n}")
    }

    async fn query_bound(&self, sql: &str, params: &[Param]) -> anyhow::Result<Rows> {
        let bindings: Vec<Json> = params
            .iter()
            .map(|p| match p {
                Param::Text(t) => Json::String(t.clone()),
                Param::Int(i) => Json::from(*i),
            })
            .collect();
        self.run(sql, &bindings).await
    }

    async fn transaction(&self, statements: &[String]) -> anyhow::Result<Vec<u64>> {
        let (mut s, _permit) = self.session().await?;
        let r = self.in_transaction(&mut s, statements).await;
        self.put_back(s);
        Ok(r?.iter().map(results::affected).collect())
    }

    /// Rows computed in Rust: JSON arrays flattened by Snowflake itself, one literal per 5,000
    /// rows (see [`crate::warehouse::Columns::json_inserts`]).
    fn insert_statements(
        &self,
        schema: &str,
        table: &str,
        rows: &crate::warehouse::Columns,
    ) -> Vec<String> {
        rows.json_inserts(schema, table, 5_000).unwrap_or_else(|| {
            rows.inserts(&crate::warehouse::snowflake::DIALECT, schema, table, 2_000)
        })
    }

    /// Views are looked up in `information_schema.views` too: Snowflake lists them in both
    /// views and tables, fakesnow only in views.
    async fn relation(&self, schema: &str, name: &str) -> anyhow::Result<Option<RelationType>> {
        let (schema, name) = (literal(schema), literal(name));
        let sql = format!(
            "SELECT 'VIEW' FROM information_schema.views WHERE table_schema = {schema} AND table_name = {name} \
             UNION ALL SELECT table_type FROM information_schema.tables \
             WHERE table_schema = {schema} AND table_name = {name} AND table_type <> 'VIEW'"
        );
        let rows = self.query(&sql).await?;
        let ty = rows
            .rows
            .first()
            .and_then(|r| r.first())
            .and_then(|v| v.as_str());
        Ok(ty.map(crate::warehouse::relation_type))
    }

    /// As [`Warehouse::relation`] does, for every relation of `schema` at once.
    async fn relations(
        &self,
        schema: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<String, RelationType>> {
        let schema = literal(schema);
        let sql = format!(
            "SELECT table_name, 'VIEW' FROM information_schema.views WHERE table_schema = {schema} \
             UNION ALL SELECT table_name, table_type FROM information_schema.tables \
             WHERE table_schema = {schema} AND table_type <> 'VIEW'"
        );
        Ok(crate::warehouse::relation_types(&self.query(&sql).await?))
    }

    fn staged_copy(&self) -> Option<&dyn StagedCopy> {
        Some(self)
    }
}

/// Snowflake reads the staged files itself, through the external stage over the klines S3
/// stage (`stage:` of the profile), by `COPY INTO ... FILES = (...)`, 1000 files a statement.
#[async_trait]
impl StagedCopy for Snowflake {
    /// Snowpipe's landing table, beside the raw tables.
    fn raw_setup(&self, raw_schema: &str) -> Vec<String> {
        vec![landing_ddl(raw_schema)]
    }

    /// The landing table gains the exchange column too (pipes made before leave it NULL; the
    /// merge fills it in).
    fn raw_migration(&self, raw_schema: &str) -> Vec<String> {
        let k = self.dialect();
        vec![format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
            relation(k, raw_schema, LANDING),
            quote(k, "exchange"),
            k.sql_type(ColType::Text)
        )]
    }

    async fn copy_files(
        &self,
        table: &str,
        files: &[String],
        check: &(dyn for<'c> Fn(&'c [Copied]) -> anyhow::Result<()> + Send + Sync),
        after: &[String],
    ) -> anyhow::Result<Vec<Rows>> {
        let stage = self.stage.as_deref().context(
            "the Snowflake output has no `stage:`: Snowflake loads from an external stage over the klines S3 stage (see `klines setup snowflake`)",
        )?;
        let (mut s, _permit) = self.session().await?;
        // COPY results are checked before the commit: run the COPYs, check, then the rest.
        let r = async {
            s.begin().await?;
            let mut copied = Vec::with_capacity(files.len());
            for chunk in files.chunks(1000) {
                let list = chunk.iter().map(|f| literal(f)).collect::<Vec<_>>().join(", ");
                let (rows, _) = s
                    .query(
                        &format!(
                            "COPY INTO {table} FROM @{stage} FILES = ({list}) FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE) \
                             MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE"
                        ),
                        &[],
                    )
                    .await?;
                copied.extend(copy_report(&rows)?);
            }
            check(&copied)?;
            let mut out = Vec::with_capacity(after.len());
            for st in after {
                out.push(s.query(st, &[]).await?.0);
            }
            Ok::<_, anyhow::Error>(out)
        }
        .await;
        let r = match r {
            Ok(rows) => s.end(true).await.map(|()| rows),
            Err(e) => {
                let _ = s.end(false).await;
                Err(e)
            }
        };
        self.put_back(s);
        r
    }

    /// `number of rows inserted`, `number of rows updated`.
    fn merge_counts(&self, rows: &Rows) -> (u64, u64) {
        let get = |name: &str| {
            rows.column(name)
                .and_then(|i| rows.rows.first().and_then(|r| r.get(i)))
                .and_then(|v| v.as_i64())
                .unwrap_or(0)
                .max(0) as u64
        };
        (
            get("number of rows inserted"),
            get("number of rows updated"),
        )
    }
}

/// COPY's result rows, one per file.
fn copy_report(rows: &Rows) -> anyhow::Result<Vec<Copied>> {
    let col = |n: &str| rows.column(n);
    let (Some(file), Some(status)) = (col("file"), col("status")) else {
        bail!(
            "COPY INTO loaded no file (Snowflake: {:?})",
            rows.rows.first()
        );
    };
    let (loaded, first_error) = (col("rows_loaded"), col("first_error"));
    Ok(rows
        .rows
        .iter()
        .map(|r| Copied {
            file: r[file].as_str().unwrap_or_default().to_string(),
            status: r[status].as_str().unwrap_or_default().to_string(),
            rows_loaded: loaded.and_then(|c| r[c].as_i64()).map(|n| n.max(0) as u64),
            first_error: first_error.and_then(|c| r[c].as_str()).map(str::to_string),
        })
        .collect())
}
