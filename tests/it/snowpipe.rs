//! `klines load --snowpipe` against a Snowpipe REST mock that checks the contract (key-pair JWT,
//! path, requestId, body, beginMark) and emulates the pipe by running the pipe's own COPY (from
//! the CREATE PIPE `klines setup snowflake` prints) for each submitted file, from the S3 stage
//! into the landing table on fakesnow. Everything else (SQL) is passed through to
//! fakesnow, so klines talks to one host, as it does with Snowflake.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use klines::config::profiles::SnowflakeOutput;
use klines::warehouse::Warehouse;
use klines::warehouse::snowflake::Snowflake;
use serde_json::{Value as Json_, json};

use crate::stage::s3_stage_url;
use crate::support::*;

#[derive(Default)]
struct Log {
    /// Contract violations (the mock answers 400 too).
    violations: Vec<String>,
    /// Paths of each insertFiles request.
    submitted: Vec<Vec<String>>,
    /// Report events: (sequence, file report).
    events: Vec<(u64, Json_)>,
    /// Begin marks the mock handed out.
    marks: BTreeSet<String>,
    /// Paths the pipe fails to load.
    fail: BTreeSet<String>,
    /// JWT claims seen.
    claims: Vec<Json_>,
}

struct Mock {
    fakesnow: String,
    public_pem: Vec<u8>,
    pipe: String,
    /// The fakesnow output the emulated pipe runs its COPYs with.
    direct: SnowflakeOutput,
    /// The pipe's own COPY, as `klines setup snowflake` prints it in its CREATE PIPE.
    pipe_copy: std::sync::OnceLock<String>,
    http: reqwest::Client,
    log: Mutex<Log>,
}

impl Mock {
    fn violation(&self, v: String) -> Response {
        self.log.lock().unwrap().violations.push(v.clone());
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": "390000", "message": v})),
        )
            .into_response()
    }

    /// Checks a key-pair JWT: RS256 with the user's key, Snowflake's claims.
    fn check_jwt(&self, token: &str) -> Result<(), String> {
        let key =
            jsonwebtoken::DecodingKey::from_rsa_pem(&self.public_pem).map_err(|e| e.to_string())?;
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data =
            jsonwebtoken::decode::<Json_>(token, &key, &v).map_err(|e| format!("bad JWT: {e}"))?;
        let c = data.claims;
        let (iss, sub) = (
            c["iss"].as_str().unwrap_or(""),
            c["sub"].as_str().unwrap_or(""),
        );
        if sub != "KLINES.TESTER" || !iss.starts_with("KLINES.TESTER.SHA256:") {
            return Err(format!("bad claims iss={iss} sub={sub}"));
        }
        let (iat, exp) = (
            c["iat"].as_i64().unwrap_or(0),
            c["exp"].as_i64().unwrap_or(0),
        );
        if exp - iat > 3600 || exp <= iat {
            return Err(format!("exp - iat = {}", exp - iat));
        }
        self.log.lock().unwrap().claims.push(c);
        Ok(())
    }

    fn check_request(
        &self,
        pipe: &str,
        q: &HashMap<String, String>,
        headers: &HeaderMap,
    ) -> Result<(), String> {
        if pipe != self.pipe {
            return Err(format!("unknown pipe {pipe}"));
        }
        let id = q.get("requestId").ok_or("no requestId")?;
        uuid::Uuid::parse_str(id).map_err(|_| format!("requestId {id} is not a UUID"))?;
        let auth = headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let token = auth.strip_prefix("Bearer ").ok_or("no Bearer token")?;
        self.check_jwt(token)
    }

    fn event(&self, report: Json_) {
        let mut log = self.log.lock().unwrap();
        let seq = log.events.len() as u64 + 1;
        log.events.push((seq, report));
    }

    /// What the pipe does with one file: the COPY of the CREATE PIPE that `klines setup
    /// snowflake` printed (with `$1:col::type` and `METADATA$FILENAME`), for that one file, as
    /// Snowpipe runs it. So the DDL users paste is what lands the files here.
    async fn land(&self, path: &str) -> anyhow::Result<u64> {
        let copy = self
            .pipe_copy
            .get()
            .expect("the pipe's COPY, from klines setup snowflake");
        let sql = copy.replacen(
            " FILE_FORMAT = ",
            &format!(" FILES = ('{path}') FILE_FORMAT = "),
            1,
        );
        let sf = Snowflake::connect(&self.direct).await?;
        let copied = sf.run(&sql, &[]).await?;
        sf.close().await;
        let col = copied
            .column("rows_loaded")
            .expect("COPY reports rows_loaded");
        let rows = copied
            .rows
            .first()
            .and_then(|r| r[col].as_i64())
            .unwrap_or(0);
        Ok(rows as u64)
    }
}

/// The file format and the pipe's COPY from the setup script `klines setup snowflake` prints:
/// the format is created on fakesnow, the COPY returned for the emulated pipe.
fn pipe_from_setup(p: &Project, direct: &SnowflakeOutput) -> String {
    let script = p.ok(&["setup", "snowflake"]);
    let line = |prefix: &str| {
        script
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{script}"))
            .trim_end_matches(';')
            .to_string()
    };
    let format = line("CREATE FILE FORMAT");
    let pipe = line("CREATE PIPE");
    let copy = pipe
        .split_once(" AS COPY INTO ")
        .map(|(_, c)| format!("COPY INTO {c}"))
        .unwrap_or_else(|| panic!("{pipe}"));
    assert!(
        copy.contains("$1:open_time::TIMESTAMP_NTZ") && copy.contains("METADATA$FILENAME"),
        "{copy}"
    );
    let out = direct.clone();
    std::thread::spawn(move || {
        runtime().block_on(async {
            let sf = Snowflake::connect(&out).await.unwrap();
            sf.run(&format, &[])
                .await
                .unwrap_or_else(|e| panic!("{format}: {e:#}"));
            sf.close().await;
        })
    })
    .join()
    .unwrap();
    copy
}

async fn insert_files(
    State(m): State<Arc<Mock>>,
    Path(pipe): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(v) = m.check_request(&pipe, &q, &headers) {
        return m.violation(format!("insertFiles: {v}"));
    }
    let Ok(body) = serde_json::from_str::<Json_>(&body) else {
        return m.violation("insertFiles: body is not JSON".into());
    };
    let Some(files) = body["files"]
        .as_array()
        .filter(|f| !f.is_empty() && f.len() <= 5000)
    else {
        return m.violation("insertFiles: `files` must hold 1 to 5000 files".into());
    };
    let mut paths = Vec::new();
    for f in files {
        match (f["path"].as_str(), f["size"].as_u64()) {
            (Some(p), Some(s)) if !p.starts_with('/') && !p.contains("://") && s > 0 => {
                paths.push(p.to_string())
            }
            _ => return m.violation(format!("insertFiles: bad file entry {f}")),
        }
    }
    m.log.lock().unwrap().submitted.push(paths.clone());
    for p in &paths {
        m.event(json!({"path": p, "status": "LOAD_IN_PROGRESS", "complete": false}));
    }
    let m2 = Arc::clone(&m);
    tokio::spawn(async move {
        for p in paths {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if m2.log.lock().unwrap().fail.contains(&p) {
                m2.event(json!({"path": p, "status": "LOAD_FAILED", "complete": true, "rowsInserted": 0, "rowsParsed": 0,
                                "firstError": "Numeric value 'x' is not recognized"}));
                continue;
            }
            match m2.land(&p).await {
                Ok(rows) => m2.event(json!({"path": p, "status": "LOADED", "complete": true, "rowsInserted": rows, "rowsParsed": rows})),
                Err(e) => m2.event(json!({"path": p, "status": "LOAD_FAILED", "complete": true, "firstError": format!("{e:#}")})),
            }
        }
    });
    Json(json!({"requestId": q["requestId"], "responseCode": "SUCCESS"})).into_response()
}

async fn insert_report(
    State(m): State<Arc<Mock>>,
    Path(pipe): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(v) = m.check_request(&pipe, &q, &headers) {
        return m.violation(format!("insertReport: {v}"));
    }
    let mut log = m.log.lock().unwrap();
    let since = match q.get("beginMark") {
        None => 0,
        Some(mark) if log.marks.contains(mark) => mark.parse::<u64>().unwrap_or(0),
        Some(mark) => {
            drop(log);
            return m.violation(format!(
                "insertReport: beginMark {mark} was never handed out"
            ));
        }
    };
    let files: Vec<Json_> = log
        .events
        .iter()
        .filter(|(s, _)| *s > since)
        .map(|(_, f)| f.clone())
        .collect();
    let next = log.events.len().to_string();
    log.marks.insert(next.clone());
    Json(json!({"pipe": pipe, "completeResult": true, "nextBeginMark": next, "files": files, "statistics": {"activeFilesCount": 0}}))
        .into_response()
}

/// Everything but Snowpipe goes to fakesnow; key-pair logins are checked on the way.
async fn proxy(State(m): State<Arc<Mock>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    if parts.uri.path() == "/session/v1/login-request" {
        let login: Json_ = serde_json::from_slice(&body).unwrap_or_default();
        if login["data"]["AUTHENTICATOR"] != "SNOWFLAKE_JWT" {
            return m.violation("login: not a key-pair login".into());
        }
        if let Err(v) = m.check_jwt(login["data"]["TOKEN"].as_str().unwrap_or("")) {
            return m.violation(format!("login: {v}"));
        }
    }
    let url = format!(
        "{}{}",
        m.fakesnow,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut fwd = m.http.request(parts.method.clone(), url).body(body);
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            fwd = fwd.header(k, v);
        }
    }
    match fwd.send().await {
        Ok(r) => {
            let status = r.status();
            let ct = r.headers().get("content-type").cloned();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut resp = (status, bytes).into_response();
            if let Some(ct) = ct {
                resp.headers_mut().insert("content-type", ct);
            }
            resp
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Starts the mock on a thread of its own; returns its URL.
fn start(mock: Arc<Mock>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/v1/data/pipes/{pipe}/insertFiles",
                    axum::routing::post(insert_files),
                )
                .route(
                    "/v1/data/pipes/{pipe}/insertReport",
                    axum::routing::get(insert_report),
                )
                .fallback(proxy)
                .with_state(mock);
            axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app)
                .await
                .unwrap();
        });
    });
    url
}

fn openssl(dir: &std::path::Path, script: &str) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", stderr(&out));
}

fn count(out: &SnowflakeOutput, sql: &str) -> i64 {
    let (out, sql) = (out.clone(), sql.to_string());
    std::thread::spawn(move || {
        let rt = runtime();
        rt.block_on(async {
            let sf = Snowflake::connect(&out).await.unwrap();
            let n = sf
                .query(&sql)
                .await
                .unwrap()
                .scalar()
                .and_then(|v| v.as_i64())
                .unwrap();
            sf.close().await;
            n
        })
    })
    .join()
    .unwrap()
}

/// A fakesnow database behind the Snowpipe mock, an S3 stage over SeaweedFS, a key pair, and a
/// project whose profile loads through the pipe: (mock, project, direct output, keys, db).
fn with_pipe(
    ex: &TestExchange,
    extra: &str,
) -> (
    Arc<Mock>,
    Project,
    SnowflakeOutput,
    tempfile::TempDir,
    FakeSnow,
) {
    let sf = FakeSnow::create();
    let url = s3_stage_url();
    let stage = sf.external_stage(&url);
    let keys = tempfile::tempdir().unwrap();
    openssl(
        keys.path(),
        "openssl genrsa 2048 2>/dev/null | openssl pkcs8 -topk8 -inform PEM -out key.p8 -nocrypt && openssl rsa -in key.p8 -pubout -out pub.pem 2>/dev/null",
    );
    let direct = sf.output(Some(&stage));
    let pipe = format!("{}.RAW.KLINES_PIPE", sf.database);
    let mock = Arc::new(Mock {
        fakesnow: FakeSnow::url(),
        public_pem: std::fs::read(keys.path().join("pub.pem")).unwrap(),
        pipe: pipe.clone(),
        direct: direct.clone(),
        http: reqwest::Client::new(),
        log: Mutex::new(Log::default()),
        pipe_copy: std::sync::OnceLock::new(),
    });
    let mock_url = start(Arc::clone(&mock));
    let p = Project::new(&ex.url, &format!("stage: {url}\n{extra}"));
    let profile = sf
        .output_yaml("sf", Some(&stage))
        .replace(&FakeSnow::url(), &mock_url)
        .replace(
            "      password: unused\n",
            &format!(
                "      private_key_path: {}\n      pipe: {pipe}\n",
                keys.path().join("key.p8").display()
            ),
        );
    p.profiles("sf", &profile);
    mock.pipe_copy.set(pipe_from_setup(&p, &direct)).unwrap();
    (mock, p, direct, keys, sf)
}

/// `klines stream --snowpipe`: every flush is submitted to the pipe and merged once Snowpipe
/// reports it LOADED; raw.klines ends with every closed kline of the range once.
#[test]
fn stream_submits_every_flush_to_snowpipe() {
    let start = ms("2024-01-05T13:37:30Z");
    let mut config = ExchangeConfig::synthetic(start);
    config.clock = Clock::scaled(start, 120);
    let ex = TestExchange::start(config);
    let (mock, p, direct, _keys, _sf) = with_pipe(&ex, "state: stage\n");
    let ws = ex.ws_url();
    let until = "2024-01-05T13:48:00Z";
    p.ok(&[
        "stream",
        "--from",
        "2024-01-05",
        "--until",
        until,
        "--ws-url",
        &ws,
        "--snowpipe",
        "--flush-secs",
        "1",
    ]);
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-01-05"), ms(until));
    let want: Vec<_> = want
        .into_iter()
        .filter(|k| k.close_time < ms(until))
        .collect();
    assert_eq!(
        count(&direct, "SELECT count(*) FROM RAW.KLINES"),
        want.len() as i64
    );
    assert_eq!(
        count(&direct, "SELECT count(DISTINCT open_time) FROM RAW.KLINES"),
        want.len() as i64,
        "each kline once"
    );
    assert!(
        mock.log.lock().unwrap().submitted.len() >= 2,
        "one submission a flush"
    );
    assert_eq!(count(&direct, "SELECT count(*) FROM RAW.KLINES_LANDING"), 0);
}

/// Snowpipe loads what it reports LOADED; a failed file is named, exits 3 and is submitted
/// again by the next run; files already landed are merged without a new submission.
#[test]
fn snowpipe_loads_reported_files_and_resubmits_failed_ones() {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms("2024-01-04T12:00:00Z")));
    let (mock, p, direct, _keys, _sf) = with_pipe(&ex, "");
    p.ok(&["backfill", "--from", "2024-01-01", "--to", "2024-01-03"]);
    let day = |d: &str| {
        format!("exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-{d}.parquet")
    };
    let rows = |from: &str, to: &str| expected(&ex, "BTCUSDT", "1m", ms(from), ms(to)).len() as i64;
    let (d1, d2, d3) = (
        rows("2024-01-01", "2024-01-02"),
        rows("2024-01-02", "2024-01-03"),
        rows("2024-01-03", "2024-01-04"),
    );
    mock.log.lock().unwrap().fail.insert(day("2024-01-02"));

    // One file fails: the other loads, the failure is named, exit 3.
    let out = p.run(&["load", "--snowpipe"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}\n{}", stderr(&out));
    assert!(
        text.contains(&format!("LOADED\t{}\t{d1} rows", day("2024-01-01"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("LOAD_FAILED\t{}\t", day("2024-01-02")))
            && text.contains("Numeric value 'x'"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "snowpipe: 2 files, 1 loaded ({d1} inserted, 0 replaced), 1 failed"
        )),
        "{text}"
    );
    assert_eq!(count(&direct, "SELECT count(*) FROM RAW.KLINES"), d1);
    assert_eq!(
        count(&direct, "SELECT count(*) FROM RAW.KLINES_LANDING"),
        0,
        "merged files leave the landing table"
    );
    assert_eq!(
        count(&direct, "SELECT count(*) FROM RAW.KLINES_LOAD_HISTORY"),
        1
    );

    // A file the pipe landed before klines stopped is merged without a new submission; the
    // failed file goes to Snowpipe again.
    mock.log.lock().unwrap().fail.clear();
    p.ok(&["backfill", "--from", "2024-01-03", "--to", "2024-01-04"]);
    let landed = std::thread::spawn({
        let (m, path) = (Arc::clone(&mock), day("2024-01-03"));
        move || runtime().block_on(m.land(&path)).unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(landed as i64, d3);
    let text = p.ok(&["load", "--snowpipe"]);
    assert!(
        text.contains(&format!(
            "snowpipe: 2 files, 2 loaded ({} inserted, 0 replaced), 0 failed",
            d2 + d3
        )),
        "{text}"
    );
    assert_eq!(
        count(&direct, "SELECT count(*) FROM RAW.KLINES"),
        d1 + d2 + d3
    );
    assert_eq!(count(&direct, "SELECT count(*) FROM RAW.KLINES_LANDING"), 0);
    assert!(p.ok(&["load", "--snowpipe"]).contains("snowpipe: 0 files"));

    // Exact values, through Snowpipe.
    let want = expected(
        &ex,
        "BTCUSDT",
        "1m",
        ms("2024-01-02"),
        ms("2024-01-02T00:05:00Z"),
    );
    let got = count(
        &direct,
        &format!(
            "SELECT count(*) FROM RAW.KLINES WHERE open_time = '2024-01-02 00:03:00' AND close = {}",
            klines::decimal::format(want[3].close)
        ),
    );
    assert_eq!(got, 1);

    let log = mock.log.lock().unwrap();
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    assert_eq!(
        log.submitted,
        vec![
            vec![day("2024-01-01"), day("2024-01-02")],
            vec![day("2024-01-02")]
        ]
    );
    assert!(!log.marks.is_empty() && !log.claims.is_empty());
}
