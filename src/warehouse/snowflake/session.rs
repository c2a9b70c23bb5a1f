//! One Snowflake session over the connector protocol (what the official drivers speak):
//! `POST /session/v1/login-request`, then `POST /queries/v1/query-request` with the session
//! token. Handles result chunks, queries that outlive one request, session renewal, and
//! cancellation.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::jwt::KeyPair;
use super::results::{self, QueryData};
use crate::redact::Secret;
use crate::warehouse::Rows;

/// Snowflake's error, with its code and SQL state.
#[derive(Debug, thiserror::Error)]
#[error("snowflake error {code} ({sql_state}): {message}")]
pub struct SnowflakeError {
    pub code: String,
    pub sql_state: String,
    pub message: String,
    pub query_id: Option<String>,
}

/// Codes meaning "still running, ask for the result later".
const QUERY_IN_PROGRESS: [&str; 2] = ["333333", "333334"];
/// Codes meaning the session token expired.
const SESSION_EXPIRED: [&str; 2] = ["390112", "390114"];

/// How to log in.
pub enum Auth {
    Password(Secret),
    KeyPair(KeyPair),
}

/// What a session needs to log in.
pub struct LoginSpec {
    /// `https://<account>.snowflakecomputing.com`, or an override.
    pub base_url: String,
    pub account: String,
    pub user: String,
    pub auth: Auth,
    pub role: Option<String>,
    pub warehouse: Option<String>,
    pub database: Option<String>,
    pub schema: Option<String>,
    pub query_timeout: Duration,
}

impl std::fmt::Debug for LoginSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSpec")
            .field("base_url", &self.base_url)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

pub struct Session {
    http: reqwest::Client,
    spec: std::sync::Arc<LoginSpec>,
    token: Secret,
    sequence: u64,
    /// Autocommit is off: an expired session is not renewed, as the new one would not hold
    /// the transaction.
    in_transaction: bool,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    data: Option<Json>,
}

fn error_of(env: &Envelope) -> SnowflakeError {
    let data = env.data.as_ref();
    let get = |k: &str| {
        data.and_then(|d| d.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    SnowflakeError {
        code: env
            .code
            .clone()
            .or_else(|| get("errorCode"))
            .unwrap_or_else(|| "unknown".into()),
        sql_state: get("sqlState").unwrap_or_else(|| "-".into()),
        message: env.message.clone().unwrap_or_else(|| "no message".into()),
        query_id: get("queryId"),
    }
}

impl Session {
    pub async fn login(
        http: reqwest::Client,
        spec: std::sync::Arc<LoginSpec>,
    ) -> anyhow::Result<Session> {
        let mut data = json!({
            "CLIENT_APP_ID": "klines",
            "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "ACCOUNT_NAME": spec.account.split('.').next().unwrap_or(&spec.account).to_ascii_uppercase(),
            "LOGIN_NAME": spec.user,
            "SESSION_PARAMETERS": {"TIMEZONE": "UTC", "QUERY_TAG": "klines"},
            "CLIENT_ENVIRONMENT": {"APPLICATION": "klines", "OS": std::env::consts::OS},
        });
        match &spec.auth {
            Auth::Password(p) => data["PASSWORD"] = json!(p.expose()),
            Auth::KeyPair(k) => {
                let now = chrono::Utc::now().timestamp();
                data["AUTHENTICATOR"] = json!("SNOWFLAKE_JWT");
                data["TOKEN"] = json!(k.token(&spec.account, &spec.user, now, 3540)?);
            }
        }
        let mut query: Vec<(&str, String)> = vec![("requestId", uuid::Uuid::new_v4().to_string())];
        for (k, v) in [
            ("databaseName", &spec.database),
            ("schemaName", &spec.schema),
            ("warehouse", &spec.warehouse),
            ("roleName", &spec.role),
        ] {
            if let Some(v) = v {
                query.push((k, v.clone()));
            }
        }
        let resp = http
            .post(format!("{}/session/v1/login-request", spec.base_url))
            .query(&query)
            .header("Accept", "application/json")
            .json(&json!({ "data": data }))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach Snowflake at {}: {}",
                    spec.base_url,
                    e.without_url()
                )
            })?;
        let status = resp.status();
        let env: Envelope = resp.json().await.map_err(|e| {
            anyhow::anyhow!(
                "Snowflake login at {}: HTTP {status}, unreadable answer: {}",
                spec.base_url,
                e.without_url()
            )
        })?;
        if !env.success {
            return Err(anyhow::Error::new(error_of(&env))
                .context(format!("cannot log in to Snowflake as {}", spec.user)));
        }
        let token = env
            .data
            .as_ref()
            .and_then(|d| d.get("token"))
            .and_then(|t| t.as_str())
            .context("Snowflake login: no token in the answer")?;
        Ok(Session {
            http,
            spec,
            token: Secret::new(token),
            sequence: 0,
            in_transaction: false,
        })
    }

    /// Runs one statement and fetches all of its rows. `bindings` are `?` parameters.
    pub async fn query(
        &mut self,
        sql: &str,
        bindings: &[Json],
    ) -> anyhow::Result<(Rows, QueryData)> {
        let started = Instant::now();
        let result = self.query_renewing(sql, bindings).await;
        crate::warehouse::log_sql(started, sql);
        result
    }

    async fn query_renewing(
        &mut self,
        sql: &str,
        bindings: &[Json],
    ) -> anyhow::Result<(Rows, QueryData)> {
        match self.query_once(sql, bindings).await {
            Err(e)
                if e.downcast_ref::<SnowflakeError>()
                    .is_some_and(|s| SESSION_EXPIRED.contains(&s.code.as_str())) =>
            {
                if self.in_transaction {
                    return Err(e.context("the Snowflake session expired during a transaction: none of it was committed"));
                }
                tracing::debug!("Snowflake session expired; logging in again");
                *self =
                    Session::login(self.http.clone(), std::sync::Arc::clone(&self.spec)).await?;
                self.query_once(sql, bindings).await
            }
            other => other,
        }
    }

    /// Turns autocommit off: the statements until [`Session::end`] form one transaction.
    pub async fn begin(&mut self) -> anyhow::Result<()> {
        self.query("ALTER SESSION SET AUTOCOMMIT = FALSE", &[])
            .await?;
        self.in_transaction = true;
        Ok(())
    }

    /// Commits (or rolls back) the transaction and turns autocommit back on.
    pub async fn end(&mut self, commit: bool) -> anyhow::Result<()> {
        let ended = self
            .query(if commit { "COMMIT" } else { "ROLLBACK" }, &[])
            .await;
        self.in_transaction = false;
        let restored = self.query("ALTER SESSION SET AUTOCOMMIT = TRUE", &[]).await;
        ended?;
        restored.map(|_| ())
    }

    fn auth(&self) -> String {
        format!("Snowflake Token=\"{}\"", self.token.expose())
    }

    async fn query_once(
        &mut self,
        sql: &str,
        bindings: &[Json],
    ) -> anyhow::Result<(Rows, QueryData)> {
        self.sequence += 1;
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut body = json!({ "sqlText": sql, "sequenceId": self.sequence, "asyncExec": false });
        if !bindings.is_empty() {
            let b: serde_json::Map<String, Json> = bindings
                .iter()
                .enumerate()
                .map(|(i, v)| ((i + 1).to_string(), binding(v)))
                .collect();
            body["bindings"] = Json::Object(b);
        }
        let started = Instant::now();
        let send = self
            .http
            .post(format!("{}/queries/v1/query-request", self.spec.base_url))
            .query(&[("requestId", request_id.as_str())])
            .header("Authorization", self.auth())
            .header("Accept", "application/snowflake")
            .json(&body)
            .send();
        let resp = tokio::select! {
            r = send => r.map_err(|e| anyhow::anyhow!("Snowflake query request failed: {}", e.without_url()))?,
            () = crate::cancel::cancelled() => {
                self.abort(sql, &request_id).await;
                anyhow::bail!(crate::cancel::Interrupted);
            }
        };
        let mut env: Envelope = resp.json().await.map_err(|e| {
            anyhow::anyhow!("Snowflake query: unreadable answer: {}", e.without_url())
        })?;
        // Queries that outlive one request: poll their result.
        while !env.success
            && env
                .code
                .as_deref()
                .is_some_and(|c| QUERY_IN_PROGRESS.contains(&c))
        {
            if started.elapsed() > self.spec.query_timeout {
                self.abort(sql, &request_id).await;
                anyhow::bail!(
                    "Snowflake query ran longer than query_timeout ({}s); cancelled it",
                    self.spec.query_timeout.as_secs()
                );
            }
            let url = env
                .data
                .as_ref()
                .and_then(|d| d.get("getResultUrl"))
                .and_then(|u| u.as_str())
                .context("query in progress without a result URL")?
                .to_string();
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = crate::cancel::cancelled() => {
                    self.abort(sql, &request_id).await;
                    anyhow::bail!(crate::cancel::Interrupted);
                }
            }
            env = self
                .http
                .get(format!("{}{url}", self.spec.base_url))
                .header("Authorization", self.auth())
                .header("Accept", "application/snowflake")
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("Snowflake result poll failed: {}", e.without_url()))?
                .json()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "Snowflake result poll: unreadable answer: {}",
                        e.without_url()
                    )
                })?;
        }
        if !env.success {
            return Err(error_of(&env).into());
        }
        let data: QueryData = serde_json::from_value(env.data.unwrap_or(Json::Null))
            .context("Snowflake query: unexpected answer")?;
        let rows = results::rows(&self.http, &data).await?;
        Ok((rows, data))
    }

    /// Asks Snowflake to stop a running query (after Ctrl-C or a timeout).
    async fn abort(&self, sql: &str, request_id: &str) {
        let r = self
            .http
            .post(format!("{}/queries/v1/abort-request", self.spec.base_url))
            .query(&[("requestId", uuid::Uuid::new_v4().to_string())])
            .header("Authorization", self.auth())
            .json(&json!({ "sqlText": sql, "requestId": request_id }))
            .send()
            .await;
        match r {
            Ok(_) => tracing::warn!(request_id, "asked Snowflake to cancel the running query"),
            Err(e) => {
                tracing::warn!(request_id, error = %e.without_url(), "could not ask Snowflake to cancel the query")
            }
        }
    }

    /// Ends the session.
    pub async fn close(&self) {
        let _ = self
            .http
            .post(format!("{}/session", self.spec.base_url))
            .query(&[("delete", "true")])
            .header("Authorization", self.auth())
            .send()
            .await;
    }
}

/// A binding as the protocol wants it: a type and a text value.
fn binding(v: &Json) -> Json {
    match v {
        Json::Null => json!({"type": "ANY", "value": null}),
        Json::Bool(b) => json!({"type": "BOOLEAN", "value": b.to_string()}),
        Json::Number(n) if n.is_i64() || n.is_u64() => {
            json!({"type": "FIXED", "value": n.to_string()})
        }
        Json::Number(n) => json!({"type": "REAL", "value": n.to_string()}),
        Json::String(s) => json!({"type": "TEXT", "value": s}),
        other => json!({"type": "TEXT", "value": other.to_string()}),
    }
}
