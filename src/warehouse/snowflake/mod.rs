//! Snowflake through its connector protocol (reqwest and Arrow IPC), as the official drivers do.
//!
//! Loads copy staged files from an external stage over the klines S3 stage into a table of
//! their own (`COPY INTO ... FILES=(...)`, at most 1000 a statement), then, in one
//! transaction, mark each row with its file, `MERGE` into the raw table and record the load
//! history: exactly once per row, whatever Snowflake's own 64-day load metadata remembers.

pub mod jwt;
pub mod results;
pub mod session;
pub mod setup;
pub mod snowpipe;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use serde_json::Value as Json;
use tokio::sync::Semaphore;

use super::ident::{literal, quote, relation};
use super::raw::{self, ColType, sql_type, timestamp_literal};
use super::{Kind, LoadBatch, LoadCounts, Param, RelationType, Rows, Warehouse};
use crate::config::profiles::SnowflakeOutput;
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
    let k = Kind::Snowflake;
    let cols = raw::STAGED
        .iter()
        .map(|(n, t)| format!("{} {}", quote(k, n), sql_type(k, *t)))
        .chain([
            format!("{} {}", quote(k, "_file"), sql_type(k, ColType::Text)),
            format!(
                "{} {}",
                quote(k, "_staged_at"),
                sql_type(k, ColType::Timestamp)
            ),
        ])
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({cols})",
        relation(k, raw_schema, LANDING)
    )
}

/// Statements that give every row of `table` the file (and its staging time) whose series and
/// open-time range hold it. The batch's files do not overlap, so each row has one.
pub fn attribute_files(table: &str, batch: &LoadBatch) -> String {
    let k = Kind::Snowflake;
    let q = |c: &str| quote(k, c);
    let values = batch
        .files
        .iter()
        .map(|f| {
            let e = &f.entry;
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {})",
                literal(&e.path),
                literal(e.exchange.as_str()),
                literal(e.market.as_str()),
                literal(e.symbol.as_str()),
                literal(e.interval.as_str()),
                timestamp_literal(k, e.start),
                timestamp_literal(k, e.end),
                timestamp_literal(k, f.staged_at)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE {table} SET {file} = f.{path}, {sa} = f.{staged}, {x} = f.{x} FROM (VALUES {values}) AS f ({path}, {x}, {m}, {s}, {i}, {rs}, {re}, {staged}) \
         WHERE ({table}.{x} IS NULL OR {table}.{x} = f.{x}) AND {table}.{m} = f.{m} AND {table}.{s} = f.{s} AND {table}.{i} = f.{i} AND {table}.{ot} >= f.{rs} AND {table}.{ot} < f.{re}",
        file = q("_file"),
        sa = q("_staged_at"),
        path = q("path"),
        staged = q("staged"),
        x = q("exchange"),
        m = q("market"),
        s = q("symbol"),
        i = q("interval"),
        rs = q("range_start"),
        re = q("range_end"),
        ot = q("open_time"),
    )
}

/// Reads a MERGE result: (inserted, updated).
pub fn merge_counts(rows: &Rows) -> LoadCounts {
    let get = |name: &str| {
        rows.column(name)
            .and_then(|i| rows.rows.first().and_then(|r| r.get(i)))
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
            .max(0) as u64
    };
    LoadCounts {
        inserted: get("number of rows inserted"),
        replaced: get("number of rows updated"),
    }
}

/// Checks COPY's result rows: every file LOADED with the rows its manifest entry announced.
fn check_copy(rows: &Rows, batch: &LoadBatch, chunk: &[usize]) -> anyhow::Result<()> {
    let col = |n: &str| rows.column(n);
    let (Some(file), Some(status)) = (col("file"), col("status")) else {
        bail!(
            "COPY INTO loaded no file (Snowflake: {:?})",
            rows.rows.first()
        );
    };
    let loaded = col("rows_loaded");
    let first_error = col("first_error");
    for &i in chunk {
        let e = &batch.files[i].entry;
        let row = rows.rows.iter().find(|r| {
            r[file]
                .as_str()
                .is_some_and(|f| f == e.path || f.ends_with(&format!("/{}", e.path)))
        });
        let Some(row) = row else {
            bail!("{}: COPY INTO did not report this file", e.path);
        };
        let st = row[status].as_str().unwrap_or_default();
        if !st.eq_ignore_ascii_case("LOADED") {
            let why = first_error
                .and_then(|c| row[c].as_str())
                .unwrap_or("no error given");
            bail!("{}: COPY INTO says {st}: {why}", e.path);
        }
        if let Some(c) = loaded
            && row[c].as_i64().is_some_and(|n| n as u64 != e.rows)
        {
            bail!(
                "{}: COPY INTO loaded {} rows, the manifest says {}",
                e.path,
                row[c],
                e.rows
            );
        }
    }
    Ok(())
}

#[async_trait]
impl Warehouse for Snowflake {
    fn kind(&self) -> Kind {
        Kind::Snowflake
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
        rows.json_inserts(schema, table, 5_000)
            .unwrap_or_else(|| rows.inserts(Kind::Snowflake, schema, table, 2_000))
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
        Ok(ty.map(|t| {
            if t == "VIEW" {
                RelationType::View
            } else {
                RelationType::Table
            }
        }))
    }

    async fn ensure_raw(&self, raw_schema: &str) -> anyhow::Result<()> {
        let mut ddl = raw::ddl(Kind::Snowflake, raw_schema);
        ddl.push(landing_ddl(raw_schema));
        for st in &ddl {
            self.run(st, &[]).await?;
        }
        Ok(())
    }

    async fn load(&self, raw_schema: &str, batch: &LoadBatch) -> anyhow::Result<LoadCounts> {
        let stage = self.stage.as_deref().context(
            "the Snowflake output has no `stage:`: Snowflake loads from an external stage over the klines S3 stage (see `klines setup snowflake`)",
        )?;
        let k = Kind::Snowflake;
        let incoming_name = format!(
            "klines_incoming_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let incoming = relation(k, raw_schema, &incoming_name);
        let cols = raw::incoming_columns()
            .iter()
            .map(|(n, t)| {
                // Files staged before the exchange column have none: attribute_files sets it.
                let null = if n.starts_with('_') || *n == "exchange" || raw::NULLABLE.contains(n) {
                    ""
                } else {
                    " NOT NULL"
                };
                format!("{} {}{null}", quote(k, n), sql_type(k, *t))
            })
            .collect::<Vec<_>>()
            .join(", ");
        // Transient: no Time Travel or Fail-safe for a scratch table. Not TEMPORARY, as fakesnow
        // cannot COPY INTO one.
        self.run(&format!("CREATE TRANSIENT TABLE {incoming} ({cols})"), &[])
            .await?;
        let loaded_at = crate::time::now_ms();
        let result = async {
            let (mut s, _permit) = self.session().await?;
            let files: Vec<usize> = (0..batch.files.len()).collect();
            let mut statements = Vec::new();
            for chunk in files.chunks(1000) {
                let list = chunk.iter().map(|&i| literal(&batch.files[i].entry.path)).collect::<Vec<_>>().join(", ");
                statements.push(format!(
                    "COPY INTO {incoming} FROM @{stage} FILES = ({list}) FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE) \
                     MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE"
                ));
            }
            let copies = statements.len();
            statements.push(attribute_files(&incoming, batch));
            // Rows that break a kline's invariants (found when klines checked the files) stay
            // out of the merge and are recorded instead.
            for chunk in batch.rejected.chunks(500) {
                let cond = chunk
                    .iter()
                    .map(|r| format!("({} = {} AND {} = {})", quote(k, "_file"), literal(&r.file), quote(k, "open_time"), timestamp_literal(k, r.open_time)))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                statements.push(format!("DELETE FROM {incoming} WHERE {cond}"));
            }
            statements.extend(crate::load::quarantine::insert(k, raw_schema, &batch.rejected, loaded_at));
            statements.push(raw::merge_statement(k, raw_schema, &incoming, loaded_at));
            statements.extend(raw::history_insert(k, raw_schema, batch, loaded_at));
            // COPY results are checked before the commit: run the COPYs, check, then the rest.
            let r = async {
                s.begin().await?;
                for (n, chunk) in files.chunks(1000).enumerate() {
                    let (rows, _) = s.query(&statements[n], &[]).await?;
                    check_copy(&rows, batch, chunk)?;
                }
                let mut counts = LoadCounts::default();
                for st in &statements[copies..] {
                    let (rows, _) = s.query(st, &[]).await?;
                    if st.starts_with("MERGE") {
                        counts = merge_counts(&rows);
                    }
                }
                Ok::<_, anyhow::Error>(counts)
            }
            .await;
            let r = match r {
                Ok(counts) => s.end(true).await.map(|()| counts),
                Err(e) => {
                    let _ = s.end(false).await;
                    Err(e)
                }
            };
            self.put_back(s);
            r
        }
        .await;
        if let Err(e) = self
            .run(&format!("DROP TABLE IF EXISTS {incoming}"), &[])
            .await
        {
            tracing::warn!(table = %incoming, error = %format!("{e:#}"), "could not drop the load's table");
        }
        result
    }
}
