//! Snowpipe's REST API: `insertFiles` submits staged files to a pipe, `insertReport` tells what
//! became of them. Authenticated with the key-pair JWT.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;

use super::jwt::KeyPair;
use crate::config::profiles::SnowflakeOutput;

/// At most this many files in one insertFiles request.
pub const MAX_FILES: usize = 5000;

/// What Snowpipe says about one file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct FileReport {
    pub path: String,
    pub status: String,
    #[serde(rename = "rowsInserted", default)]
    pub rows_inserted: Option<u64>,
    #[serde(rename = "rowsParsed", default)]
    pub rows_parsed: Option<u64>,
    #[serde(rename = "firstError", default)]
    pub first_error: Option<String>,
}

impl FileReport {
    /// LOADED, LOAD_FAILED and PARTIALLY_LOADED are final; LOAD_IN_PROGRESS is not.
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "LOADED" | "LOAD_FAILED" | "PARTIALLY_LOADED"
        )
    }
}

#[derive(Debug, Deserialize)]
struct InsertResponse {
    #[serde(rename = "responseCode", default)]
    response_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Report {
    #[serde(rename = "nextBeginMark", default)]
    next_begin_mark: Option<String>,
    #[serde(default)]
    files: Vec<FileReport>,
}

pub struct Snowpipe {
    http: reqwest::Client,
    base_url: String,
    account: String,
    user: String,
    key: KeyPair,
    /// `DB.SCHEMA.PIPE`
    pub pipe: String,
    /// Time before the second insertReport call; it doubles up to `max_poll`.
    pub first_poll: Duration,
    pub max_poll: Duration,
}

impl Snowpipe {
    pub fn new(o: &SnowflakeOutput, http: reqwest::Client, pipe: &str) -> anyhow::Result<Snowpipe> {
        super::validate_qualified("pipe", pipe)?;
        let path = o
            .private_key_path
            .as_deref()
            .context("Snowpipe's REST API needs key-pair authentication: set private_key_path")?;
        Ok(Snowpipe {
            http,
            base_url: super::base_url(o)?,
            account: o.account.clone(),
            user: o.user.clone(),
            key: KeyPair::from_file(path, o.private_key_passphrase.as_ref())?,
            pipe: pipe.to_string(),
            first_poll: Duration::from_millis(500),
            max_poll: Duration::from_secs(10),
        })
    }

    fn bearer(&self) -> anyhow::Result<String> {
        Ok(format!(
            "Bearer {}",
            self.key.token(
                &self.account,
                &self.user,
                chrono::Utc::now().timestamp(),
                3540
            )?
        ))
    }

    fn url(&self, what: &str) -> String {
        format!("{}/v1/data/pipes/{}/{what}", self.base_url, self.pipe)
    }

    /// Submits files (paths relative to the pipe's stage, with their sizes).
    pub async fn insert_files(&self, files: &[(String, u64)]) -> anyhow::Result<()> {
        for chunk in files.chunks(MAX_FILES) {
            let body = json!({"files": chunk.iter().map(|(p, s)| json!({"path": p, "size": s})).collect::<Vec<_>>()});
            let request_id = uuid::Uuid::new_v4().to_string();
            let resp = self
                .http
                .post(self.url("insertFiles"))
                .query(&[("requestId", request_id.as_str())])
                .header("Authorization", self.bearer()?)
                .header("Accept", "application/json")
                .json(&body)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("Snowpipe insertFiles failed: {}", e.without_url()))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let parsed: Option<InsertResponse> = serde_json::from_str(&text).ok();
            if !status.is_success()
                || parsed.as_ref().and_then(|r| r.response_code.as_deref()) != Some("SUCCESS")
            {
                let msg = parsed
                    .and_then(|r| r.message)
                    .unwrap_or_else(|| text.chars().take(200).collect());
                bail!(
                    "Snowpipe insertFiles for {}: HTTP {status}: {msg}",
                    self.pipe
                );
            }
        }
        Ok(())
    }

    /// Follows insertReport until every path has a final status, or `timeout` passes. Paths
    /// without a final status are reported with their last status (or `NOT_REPORTED`).
    pub async fn wait(
        &self,
        paths: &BTreeSet<String>,
        timeout: Duration,
    ) -> anyhow::Result<BTreeMap<String, FileReport>> {
        let started = Instant::now();
        let mut seen: BTreeMap<String, FileReport> = BTreeMap::new();
        let mut begin_mark: Option<String> = None;
        let mut poll = self.first_poll;
        loop {
            let request_id = uuid::Uuid::new_v4().to_string();
            let mut query = vec![("requestId", request_id)];
            if let Some(m) = &begin_mark {
                query.push(("beginMark", m.clone()));
            }
            let resp = self
                .http
                .get(self.url("insertReport"))
                .query(&query)
                .header("Authorization", self.bearer()?)
                .header("Accept", "application/json")
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!("Snowpipe insertReport failed: {}", e.without_url())
                })?;
            let status = resp.status();
            if !status.is_success() {
                bail!("Snowpipe insertReport for {}: HTTP {status}", self.pipe);
            }
            let report: Report = resp
                .json()
                .await
                .map_err(|e| anyhow::anyhow!("Snowpipe insertReport: {}", e.without_url()))?;
            if report.next_begin_mark.is_some() {
                begin_mark = report.next_begin_mark;
            }
            for f in report.files {
                if paths.contains(&f.path) {
                    seen.insert(f.path.clone(), f);
                }
            }
            if paths
                .iter()
                .all(|p| seen.get(p).is_some_and(FileReport::is_final))
            {
                return Ok(seen);
            }
            if started.elapsed() >= timeout || crate::cancel::is_cancelled() {
                for p in paths {
                    seen.entry(p.clone()).or_insert_with(|| FileReport {
                        path: p.clone(),
                        status: "NOT_REPORTED".into(),
                        rows_inserted: None,
                        rows_parsed: None,
                        first_error: None,
                    });
                }
                return Ok(seen);
            }
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = crate::cancel::cancelled() => {}
            }
            poll = (poll * 2).min(self.max_poll);
        }
    }
}
