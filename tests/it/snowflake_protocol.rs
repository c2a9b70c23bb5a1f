//! The Snowflake connector protocol where fakesnow cannot go: expired sessions, queries that
//! outlive one request, result chunks, query timeouts. A mock server answers as Snowflake does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use klines::warehouse::Warehouse;
use klines::warehouse::snowflake::Snowflake;
use serde_json::{Value as Json_, json};

#[derive(Default)]
struct Mock {
    url: Mutex<String>,
    /// Everything that happened, in order: `login`, `query <sql> <token>`, `poll <id>`,
    /// `chunk <n>`, `abort <requestId>`.
    log: Mutex<Vec<String>>,
    logins: Mutex<u32>,
    polls: Mutex<HashMap<String, u32>>,
}

impl Mock {
    fn note(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
}

fn ok(data: Json_) -> Response {
    Json(json!({"success": true, "code": null, "message": null, "data": data})).into_response()
}

fn fail(code: &str, message: &str) -> Response {
    Json(json!({"success": false, "code": code, "message": message, "data": {"sqlState": "08001"}}))
        .into_response()
}

fn in_progress(id: &str) -> Response {
    Json(
        json!({"success": false, "code": "333334", "message": "Asynchronous execution in progress.",
                "data": {"queryId": id, "getResultUrl": format!("/queries/{id}/result")}}),
    )
    .into_response()
}

fn rowtype() -> Json_ {
    json!([
        {"name": "N", "type": "fixed", "scale": 0, "precision": 38, "nullable": false},
        {"name": "PRICE", "type": "fixed", "scale": 8, "precision": 38, "nullable": false},
        {"name": "S", "type": "text", "nullable": true}
    ])
}

async fn login(State(m): State<Arc<Mock>>, Json(body): Json<Json_>) -> Response {
    if !["pw", "hunter2-pw"].contains(&body["data"]["PASSWORD"].as_str().unwrap_or(""))
        || body["data"]["LOGIN_NAME"] != "tester"
    {
        return fail("390100", "Incorrect username or password was specified.");
    }
    let mut n = m.logins.lock().unwrap();
    *n += 1;
    m.note("login".into());
    ok(
        json!({"token": format!("tok-{n}"), "masterToken": "master-token-6b1f", "validityInSeconds": 3600}),
    )
}

async fn query(
    State(m): State<Arc<Mock>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Json_>,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let Some(token) = token
        .strip_prefix("Snowflake Token=\"")
        .and_then(|t| t.strip_suffix('"'))
    else {
        return (StatusCode::UNAUTHORIZED, "no token").into_response();
    };
    let sql = body["sqlText"].as_str().unwrap_or("").to_string();
    m.note(format!("query {sql} {token}"));
    match sql.as_str() {
        // The first session expires; the second one's query runs long and is polled.
        "SELECT chunked" if token == "tok-1" => {
            fail("390112", "Your session has expired. Please login again.")
        }
        "SELECT chunked" | "SELECT short chunk" => in_progress(if sql.contains("short") {
            "q-short"
        } else {
            "q-chunked"
        }),
        "SELECT forever" => {
            m.note(format!(
                "request {}",
                q.get("requestId").cloned().unwrap_or_default()
            ));
            in_progress("q-forever")
        }
        "INSERT expires" => fail("390112", "Your session has expired. Please login again."),
        s if s.starts_with("INSERT") => ok(
            json!({"rowtype": [{"name": "number of rows inserted", "type": "fixed", "scale": 0}], "rowset": [["1"]]}),
        ),
        _ => ok(
            json!({"rowtype": [{"name": "status", "type": "text"}], "rowset": [["Statement executed successfully."]]}),
        ),
    }
}

async fn result(State(m): State<Arc<Mock>>, Path(id): Path<String>) -> Response {
    m.note(format!("poll {id}"));
    let n = {
        let mut polls = m.polls.lock().unwrap();
        let n = polls.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    if id == "q-forever" || n < 2 {
        return in_progress(&id);
    }
    let url = m.url.lock().unwrap().clone();
    let second = if id == "q-short" { 5 } else { 1 };
    ok(json!({
        "rowtype": rowtype(),
        "rowset": [["1", "0.00000001", "a"]],
        "queryResultFormat": "json",
        "chunks": [{"url": format!("{url}/chunks/0"), "rowCount": 2}, {"url": format!("{url}/chunks/1"), "rowCount": second}],
        "chunkHeaders": {"x-amz-server-side-encryption-customer-key": "qrmk-key", "x-amz-server-side-encryption-customer-algorithm": "AES256"},
        "queryId": id
    }))
}

async fn chunk(State(m): State<Arc<Mock>>, Path(n): Path<u32>, headers: HeaderMap) -> Response {
    m.note(format!("chunk {n}"));
    if headers
        .get("x-amz-server-side-encryption-customer-key")
        .and_then(|h| h.to_str().ok())
        != Some("qrmk-key")
    {
        return (
            StatusCode::FORBIDDEN,
            "<Error><Code>AccessDenied</Code></Error>",
        )
            .into_response();
    }
    // JSON chunks are rows without the enclosing brackets.
    match n {
        0 => {
            "[\"2\",\"12345678901234567890.12345678\",null],[\"3\",\"-0.5\",\"c\"]".into_response()
        }
        _ => "[\"4\",\"4\",\"d\"]".into_response(),
    }
}

async fn abort(State(m): State<Arc<Mock>>, Json(body): Json<Json_>) -> Response {
    m.note(format!(
        "abort {}",
        body["requestId"].as_str().unwrap_or("")
    ));
    ok(Json_::Null)
}

fn start() -> (Arc<Mock>, String) {
    let mock = Arc::new(Mock::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    *mock.url.lock().unwrap() = url.clone();
    let m = Arc::clone(&mock);
    std::thread::spawn(move || {
        let rt = crate::support::runtime();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route("/session/v1/login-request", axum::routing::post(login))
                .route("/queries/v1/query-request", axum::routing::post(query))
                .route("/queries/v1/abort-request", axum::routing::post(abort))
                .route("/queries/{id}/result", axum::routing::get(result))
                .route("/chunks/{n}", axum::routing::get(chunk))
                .route(
                    "/session",
                    axum::routing::post(|| async { ok(Json_::Null) }),
                )
                .with_state(m);
            axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app)
                .await
                .unwrap();
        });
    });
    (mock, url)
}

fn connect(url: &str) -> (tokio::runtime::Runtime, Snowflake) {
    let yaml = format!(
        "account: klines\nhost: {url}\nuser: tester\npassword: pw\ndatabase: DB\nthreads: 1\nquery_timeout: 2\n"
    );
    let out: klines::config::profiles::SnowflakeOutput = yaml_serde::from_str(&yaml).unwrap();
    let rt = crate::support::runtime();
    let sf = rt.block_on(Snowflake::connect(&out)).unwrap();
    (rt, sf)
}

/// An expired session logs in again; a long query is polled; chunks are fetched with their
/// headers and appended in order, exactly.
#[test]
fn expired_sessions_renew_long_queries_poll_and_chunks_append() {
    let (mock, url) = start();
    let (rt, sf) = connect(&url);
    let rows = rt.block_on(sf.query("SELECT chunked")).unwrap();
    assert_eq!(rows.columns, ["N", "PRICE", "S"]);
    let got: Vec<(i64, i128, Option<String>)> = rows
        .rows
        .iter()
        .map(|r| {
            (
                r[0].as_i64().unwrap(),
                r[1].to_scaled(8).unwrap(),
                r[2].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, 1, Some("a".into())),
            (2, 1_234_567_890_123_456_789_012_345_678, None),
            (3, -50_000_000, Some("c".into())),
            (4, 400_000_000, Some("d".into())),
        ]
    );
    let log = mock.log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "login",
            "query SELECT chunked tok-1",
            "login",
            "query SELECT chunked tok-2",
            "poll q-chunked",
            "poll q-chunked",
            "chunk 0",
            "chunk 1"
        ]
    );
    // A chunk short of its announced rows is an error, not a silently smaller result.
    let err = rt.block_on(sf.query("SELECT short chunk")).unwrap_err();
    assert!(
        format!("{err:#}").contains("a result chunk held 1 rows, Snowflake announced 5"),
        "{err:#}"
    );
}

/// A session that expires inside a transaction is not renewed: the transaction fails whole.
#[test]
fn a_session_expiring_inside_a_transaction_fails_it() {
    let (mock, url) = start();
    let (rt, sf) = connect(&url);
    let err = rt
        .block_on(sf.transaction(&[
            "INSERT one".into(),
            "INSERT expires".into(),
            "INSERT three".into(),
        ]))
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("expired during a transaction: none of it was committed"),
        "{err:#}"
    );
    let log = mock.log.lock().unwrap().clone();
    let after: Vec<&str> = log
        .iter()
        .skip_while(|l| !l.starts_with("query INSERT expires"))
        .map(String::as_str)
        .collect();
    assert_eq!(after[1], "query ROLLBACK tok-1", "{log:?}");
    assert!(!log.iter().any(|l| l.contains("INSERT three")), "{log:?}");
    assert_eq!(
        log.iter().filter(|l| *l == "login").count(),
        1,
        "renewed inside the transaction: {log:?}"
    );
}

/// A query that runs past `query_timeout` is cancelled on the server and reported.
#[test]
fn a_query_past_its_timeout_is_aborted() {
    let (mock, url) = start();
    let (rt, sf) = connect(&url);
    let err = rt.block_on(sf.query("SELECT forever")).unwrap_err();
    assert!(
        format!("{err:#}").contains("ran longer than query_timeout (2s); cancelled it"),
        "{err:#}"
    );
    let log = mock.log.lock().unwrap().clone();
    let request = log
        .iter()
        .find_map(|l| l.strip_prefix("request "))
        .unwrap()
        .to_string();
    assert!(log.contains(&format!("abort {request}")), "{log:?}");
    assert!(
        log.iter()
            .filter(|l| l.starts_with("poll q-forever"))
            .count()
            >= 2,
        "{log:?}"
    );
}

/// Passwords and session tokens stay out of logs (at the most verbose), errors and artifacts.
#[test]
fn secrets_stay_out_of_logs_errors_and_artifacts() {
    let (mock, url) = start();
    let p = crate::support::Project::new("http://127.0.0.1:9", "");
    std::fs::create_dir_all(p.path().join("models")).unwrap();
    std::fs::write(p.path().join("models/m.sql"), "select 1 as x").unwrap();
    p.profiles(
        "sf",
        &format!("    sf:\n      type: snowflake\n      account: klines\n      host: {url}\n      user: tester\n      password: \"{{{{ env_var('KLINES_TEST_SF_PW') }}}}\"\n      database: DB\n"),
    );
    let mut seen = String::new();
    for args in [&["run", "-vv"][..], &["run", "-vv", "--log-format", "json"]] {
        let out = p
            .cmd()
            .args(args)
            .env("KLINES_TEST_SF_PW", "hunter2-pw")
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        seen += &crate::support::stdout(&out);
        seen += &crate::support::stderr(&out);
    }
    // A wrong password fails with Snowflake's message, and without the password.
    let out = p
        .cmd()
        .args(["run"])
        .env("KLINES_TEST_SF_PW", "wrong-pw-77")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = crate::support::stderr(&out);
    assert!(
        err.contains("cannot log in to Snowflake as tester") && err.contains("390100"),
        "{err}"
    );
    assert!(!err.contains("wrong-pw-77"), "{err}");
    assert!(*mock.logins.lock().unwrap() >= 2);
    for f in ["manifest.json", "run_results.json"] {
        seen += &std::fs::read_to_string(p.path().join("target").join(f)).unwrap();
    }
    for secret in ["hunter2-pw", "tok-1", "tok-2", "master-token-6b1f"] {
        assert!(!seen.contains(secret), "{secret} leaked:\n{seen}");
    }
}
