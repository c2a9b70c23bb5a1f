//! `klines serve`: a candlestick page and a JSON API over the warehouse's TRADES_OHLC tables.
//!
//! 1. [`assets`]: the page (HTML, JS, CSS and the vendored chart library), embedded.
//! 2. [`api`]: `/api/symbols` and `/api/candles`, bound parameters only, answered as
//!    [`columns`] (an array per column); [`indicators`]: `/api/indicators`, columns too;
//!    [`live`]: `/api/live`, server-sent events of new and changed candles.
//! 3. Here: the router, the token check and the security headers on every answer.

pub mod api;
pub mod assets;
pub mod columns;
pub mod indicators;
pub mod live;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::redact::Secret;
use crate::warehouse::Warehouse;

/// The cookie that carries the token once the page was opened with `?token=`.
const COOKIE: &str = "klines_token";

/// What the server needs.
pub struct Options {
    pub addr: SocketAddr,
    /// Required on every request when set (and it must be set off loopback).
    pub token: Option<Secret>,
    /// The models' schema.
    pub schema: String,
    /// When the tables may have changed.
    pub updates: live::Updates,
}

/// Whether `addr` may be served without a token.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// The router over `wh` (also used by tests and benchmarks without a socket).
pub fn router(
    wh: Arc<dyn Warehouse>,
    schema: String,
    token: Option<Secret>,
    updates: live::Updates,
) -> Router {
    let api = Arc::new(api::Api { wh, schema });
    let token = Arc::new(token);
    Router::new()
        .route("/api/live", get(live::live).with_state((Arc::clone(&api), updates)))
        .route("/", get(|| async { assets::get("index.html") }))
        .route(
            "/assets/{*path}",
            get(|axum::extract::Path(p): axum::extract::Path<String>| async move { assets::get(&p) }),
        )
        .route("/api/symbols", get(api::symbols))
        .route("/api/candles", get(api::candles))
        .route("/api/indicators", get(indicators::indicators))
        .fallback(|| async {
            api::ApiError(StatusCode::NOT_FOUND, "no such page or API".into())
        })
        .with_state(api)
        .layer(middleware::from_fn_with_state(token, authorize))
        .layer(middleware::from_fn(security_headers))
}

/// Binds and serves until Ctrl-C or SIGTERM.
pub async fn serve(wh: Arc<dyn Warehouse>, opts: Options) -> anyhow::Result<()> {
    let listener = bind(opts.addr).await?;
    run(listener, wh, opts).await
}

/// Listens on `addr` and says where (on stdout, with the port when 0 was asked for).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(url = %format!("http://{local}/"), "serving the dashboard");
    println!("serving http://{local}/");
    Ok(listener)
}

/// Serves on `listener` until Ctrl-C or SIGTERM.
pub async fn run(
    listener: tokio::net::TcpListener,
    wh: Arc<dyn Warehouse>,
    opts: Options,
) -> anyhow::Result<()> {
    let app = router(wh, opts.schema, opts.token, opts.updates);
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::cancel::cancelled())
        .await?;
    Ok(())
}

/// A token, required off loopback; empty means none.
pub fn token_for(
    addr: &SocketAddr,
    token: Option<String>,
    flag: &str,
) -> Result<Option<Secret>, String> {
    let token = token.filter(|t| !t.is_empty()).map(Secret::new);
    if token.is_none() && !is_loopback(addr) {
        return Err(format!(
            "{addr}: serving beyond loopback needs a token ({flag} or KLINES_SERVE_TOKEN)"
        ));
    }
    Ok(token)
}

/// Every answer: no framing, no sniffing, no referrer, scripts and data from this origin only.
/// The one inline style allowed (by its hash) is the one Lightweight Charts 5.2.1 injects;
/// the browser test fails if an update changes it.
async fn security_headers(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY='; \
             img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// With a token set: a request carries it as `Authorization: Bearer`, or as the cookie the
/// page got when it was opened with `?token=` (then redirected without it, so the token
/// stays out of the address bar, the history and the page's scripts).
async fn authorize(State(token): State<Arc<Option<Secret>>>, req: Request, next: Next) -> Response {
    let Some(token) = token.as_ref() else {
        return next.run(req).await;
    };
    let want = token.expose().as_bytes();
    if presented(req.headers()).is_some_and(|t| same(t.as_bytes(), want)) {
        return next.run(req).await;
    }
    let query_token = req.uri().query().and_then(|q| {
        url_pairs(q)
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    });
    if let Some(t) = query_token
        && same(t.as_bytes(), want)
    {
        // Back to the same address without the token, which now travels as a cookie.
        let rest: Vec<String> = url_pairs(req.uri().query().unwrap_or_default())
            .into_iter()
            .filter(|(k, _)| k != "token")
            .map(|(k, v)| format!("{}={}", encode(&k), encode(&v)))
            .collect();
        let location = if rest.is_empty() {
            req.uri().path().to_string()
        } else {
            format!("{}?{}", req.uri().path(), rest.join("&"))
        };
        let mut res = Redirect::to(&location).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            encode(token.expose())
        )) {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
        return res;
    }
    let msg =
        "a token is required: open the page with ?token=..., or send Authorization: Bearer ...";
    api::ApiError(StatusCode::UNAUTHORIZED, msg.into()).into_response()
}

/// The token a request carries, in its Authorization header or cookie.
fn presented(h: &HeaderMap) -> Option<String> {
    if let Some(t) = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim().to_string());
    }
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")).map(decode))
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn decode(s: &str) -> String {
    url_pairs(&format!("x={s}"))
        .pop()
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_strings_round_trip() {
        for s in ["abc", "a b+c", "ü&=%", "100%"] {
            assert_eq!(super::decode(&super::encode(s)), s);
        }
        assert_eq!(super::decode("a%2"), "a%2");
        assert!(super::same(b"secret", b"secret"));
        assert!(!super::same(b"secret", b"secreT"));
        assert!(!super::same(b"secret", b"secret2"));
    }
}
