//! `klines serve`: the JSON API against the tables it reads (DuckDB and Postgres), its input
//! checks, its headers and its token.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use klines::serve::columns::FIELDS;
use klines::warehouse::Value;
use serde_json::Value as Json;

use crate::support::exchange::{Config as ExchangeConfig, TestExchange};
use crate::support::*;

/// A running `klines serve`, stopped (SIGTERM) when dropped.
pub struct Served {
    child: Child,
    pub url: String,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Served {
    /// Starts `klines serve EXTRA...` (on `--addr 127.0.0.1:0` unless EXTRA names one) and
    /// waits for the address it prints.
    pub fn start(p: &Project, extra: &[&str], envs: &[(&str, &str)]) -> Served {
        let mut args = vec!["serve"];
        if !extra.contains(&"--addr") {
            args.extend(["--addr", "127.0.0.1:0"]);
        }
        args.extend(extra);
        Served::spawn(p, &args, envs)
    }

    /// Runs `klines ARGS...` (serve, or stream --serve) until it prints where it serves.
    pub fn spawn(p: &Project, args: &[&str], envs: &[(&str, &str)]) -> Served {
        let mut cmd = p.cmd();
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start klines");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("serving ")
            .unwrap_or_else(|| panic!("klines serve printed {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Served { child, url, stdout }
    }

    /// Waits for the process to end by itself; its exit status and the rest of its stdout.
    pub fn wait(mut self) -> (std::process::ExitStatus, String) {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest).unwrap();
        let status = self.child.wait().unwrap();
        (status, rest)
    }

    pub fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        self.get_with(path, &[])
    }

    pub fn get_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        runtime().block_on(async {
            let mut req = client.get(format!("{}{path}", self.url));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let res = req.send().await.unwrap();
            let (status, headers) = (res.status().as_u16(), res.headers().clone());
            (status, headers, res.text().await.unwrap())
        })
    }

    pub fn json(&self, path: &str) -> Json {
        let (status, _, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Real klines of `symbols` over `[from, to)`, loaded and built with the repository's models.
pub fn built_project(wh: &Wh, ex: &TestExchange, symbols: &str, from: &str, to: &str) -> Project {
    let p = Project::new(&ex.url, "");
    crate::models::with_repo_models(&p);
    wh.setup(&p);
    p.ok(&["backfill", "--symbols", symbols, "--from", from, "--to", to]);
    p.ok(&["load"]);
    p.ok(&["run", "-s", "tag:ohlc"]);
    p
}

/// A model's rows for one symbol, oldest first, as (open time in ms, the fields the API sends,
/// decimals scaled by 10^8).
pub fn table_candles(
    wh: &Wh,
    p: &Project,
    model: &str,
    symbol: &str,
) -> Vec<(i64, Vec<Option<i128>>, bool)> {
    wh.query(
        p,
        &format!(
            "SELECT open_time, open, high, low, close, volume, quote_volume, trades, \
             taker_buy_base_volume, taker_buy_quote_volume, is_complete \
             FROM {}.{model} WHERE symbol = '{symbol}' ORDER BY open_time",
            wh.schema()
        ),
    )
    .iter()
    .map(|r| {
        let fields = r[1..10]
            .iter()
            .map(|v| match v {
                Value::Null => None,
                v => Some(v.to_scaled(8).unwrap_or_else(|| panic!("{v:?}"))),
            })
            .collect();
        (
            r[0].as_millis().unwrap(),
            fields,
            r[10] == Value::Bool(true),
        )
    })
    .collect()
}

/// An API candle in the same shape; decimals parsed from their text, exactly.
pub fn api_candle(c: &Json) -> (i64, Vec<Option<i128>>, bool) {
    let scaled = |v: &Json| -> Option<i128> {
        match v {
            Json::Null => None,
            Json::Number(n) => Some(n.as_i64().unwrap() as i128 * 100_000_000),
            Json::String(s) => {
                let (int, frac) = s.split_once('.').unwrap_or((s, ""));
                assert!(frac.len() <= 8, "{s}");
                let digits = format!("{int}{frac:0<8}");
                Some(digits.parse().unwrap_or_else(|_| panic!("{s}")))
            }
            other => panic!("{other}"),
        }
    };
    let fields = FIELDS.iter().map(|f| scaled(&c[f])).collect();
    (
        c["time"].as_i64().unwrap(),
        fields,
        c["is_complete"].as_bool().unwrap(),
    )
}

/// The candles of an `/api/candles` answer (an array per column), each as [`api_candle`]
/// reads a candle the page holds; the columns must be of one length.
pub fn api_candles(body: &Json) -> Vec<(i64, Vec<Option<i128>>, bool)> {
    let time = body["time"].as_array().expect("a time column");
    let incomplete = body["incomplete"].as_array().expect("an incomplete list");
    (0..time.len())
        .map(|i| {
            let mut c = serde_json::Map::new();
            for f in std::iter::once("time").chain(FIELDS) {
                let column = body[f]
                    .as_array()
                    .unwrap_or_else(|| panic!("no column {f}"));
                assert_eq!(column.len(), time.len(), "{f}");
                c.insert(f.into(), column[i].clone());
            }
            c.insert(
                "is_complete".into(),
                (!incomplete.contains(&time[i])).into(),
            );
            api_candle(&Json::Object(c))
        })
        .collect()
}

fn api_matches_the_tables(wh: Wh) {
    let ex = TestExchange::start(ExchangeConfig::real(ms("2025-08-10T00:00:00Z")));
    let p = built_project(&wh, &ex, "BTCUSDT,ETHUSDT", "2025-08-05", "2025-08-07");
    let want: Vec<_> = [
        "TRADES_OHLC_1M",
        "TRADES_OHLC_5M",
        "TRADES_OHLC_15M",
        "TRADES_OHLC_1H",
        "TRADES_OHLC_1D",
    ]
    .iter()
    .map(|m| table_candles(&wh, &p, m, "ETHUSDT"))
    .collect();
    let s = Served::start(&p, &[], &[]);

    assert_eq!(
        s.json("/api/symbols"),
        serde_json::json!({"symbols": ["BTCUSDT", "ETHUSDT"], "intervals": ["1m", "5m", "15m", "1h", "1d"]})
    );
    for (interval, want) in ["1m", "5m", "15m", "1h", "1d"].iter().zip(&want) {
        let body = s.json(&format!(
            "/api/candles?symbol=ethusdt&interval={interval}&limit=10000"
        ));
        assert_eq!(body["symbol"], "ETHUSDT");
        let got: Vec<_> = api_candles(&body);
        assert!(want.len() >= 2, "{interval}: {}", want.len());
        assert_eq!(&got, want, "{interval}");
    }
    // A page of older bars: the `limit` newest before `to`, oldest first.
    let five = &want[1];
    let to = five[100].0;
    let body = s.json(&format!(
        "/api/candles?symbol=ETHUSDT&interval=5m&to={to}&limit=7"
    ));
    let got: Vec<_> = api_candles(&body);
    assert_eq!(got, five[93..100].to_vec());
    let from = five[10].0;
    let body = s.json(&format!(
        "/api/candles?symbol=ETHUSDT&interval=5m&from={from}&to={to}&limit=10000"
    ));
    assert_eq!(api_candles(&body).len(), 90);
    // `fields`: only those columns (and the times and the incomplete list), the same values.
    let only = s.json(&format!(
        "/api/candles?symbol=ETHUSDT&interval=5m&from={from}&to={to}&limit=10000&fields=close,trades"
    ));
    let keys: Vec<_> = only.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "close",
            "incomplete",
            "interval",
            "symbol",
            "time",
            "trades"
        ]
    );
    assert_eq!(only["close"], body["close"]);
    assert_eq!(only["trades"], body["trades"]);
    assert_eq!(only["time"], body["time"]);
    // A known symbol with nothing in the range: an empty list.
    assert_eq!(
        s.json("/api/candles?symbol=ETHUSDT&from=1&to=2")["time"],
        serde_json::json!([])
    );
    // A well-formed symbol the table does not hold: 404 naming it and the table, as Binance
    // answers "Invalid symbol", so a typo is not an empty chart. /api/live the same.
    for path in [
        "/api/candles?symbol=ZZZUSDT",
        "/api/live?symbol=ZZZUSDT&interval=5m",
    ] {
        let (status, _, body) = s.get(path);
        assert_eq!(status, 404, "{path}: {body}");
        let err: Json = serde_json::from_str(&body).unwrap();
        let msg = err["error"].as_str().unwrap();
        assert!(
            msg.contains("unknown symbol ZZZUSDT") && msg.contains("TRADES_OHLC_"),
            "{path}: {msg}"
        );
    }

    // Bad input: 400 and a message naming the parameter.
    for (path, msg) in [
        ("/api/candles", "symbol is required"),
        ("/api/candles?symbol=BTC%27%3B%20DROP%20TABLE%20x", "symbol"),
        (
            "/api/candles?symbol=BTCUSDT&interval=3m",
            "interval \"3m\" is not one of 1m, 5m, 15m, 1h, 1d",
        ),
        (
            "/api/candles?symbol=BTCUSDT&limit=100000",
            "limit \"100000\"",
        ),
        ("/api/candles?symbol=BTCUSDT&from=-5", "from \"-5\""),
        (
            "/api/candles?symbol=BTCUSDT&select=1",
            "unknown parameter \"select\"",
        ),
        (
            "/api/candles?symbol=BTCUSDT&fields=close,price",
            "fields: \"price\" is not one of open, high, low, close",
        ),
        (
            "/api/indicators?symbol=BTCUSDT&digits=20",
            "digits \"20\" is not a whole number from 1 to 17",
        ),
        // /api/live names its own parameter, `since`.
        (
            "/api/live?symbol=BTCUSDT&since=yesterday",
            "since \"yesterday\" is not a whole number",
        ),
        (
            "/api/live?symbol=BTCUSDT&from=1",
            "unknown parameter \"from\": symbol, interval and since are known",
        ),
    ] {
        let (status, headers, body) = s.get(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(headers["content-type"], "application/json", "{path}");
        let err: Json = serde_json::from_str(&body).unwrap();
        assert!(
            err["error"].as_str().unwrap().contains(msg),
            "{path}: {body}"
        );
    }
    let (status, _, body) = s.get("/api/nothing");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");

    // The page, its script and the vendored chart library, with the security headers.
    for (path, kind) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        (
            "/assets/vendor/lightweight-charts/lightweight-charts.standalone.production.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/assets/vendor/lightweight-charts/LICENSE",
            "text/plain; charset=utf-8",
        ),
    ] {
        let (status, headers, body) = s.get(path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["content-type"], kind, "{path}");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(!body.is_empty());
    }
    let (_, _, page) = s.get("/");
    assert!(
        page.contains("TradingView") && page.contains("Apache License 2.0"),
        "attribution"
    );
}

#[test]
fn api_answers_exactly_what_the_duckdb_tables_hold() {
    api_matches_the_tables(Wh::DuckDb);
}

#[test]
fn api_answers_exactly_what_the_postgres_tables_hold() {
    api_matches_the_tables(Wh::postgres());
}

/// Off loopback a token is required; it is checked on the page and the API, travels as an
/// HttpOnly cookie after `?token=`, and is never in a page or an error.
#[test]
fn a_token_guards_every_request_off_loopback() {
    let ex = TestExchange::start(ExchangeConfig::real(ms("2025-08-10T00:00:00Z")));
    let p = built_project(
        &Wh::DuckDb,
        &ex,
        "BTCUSDT,ETHUSDT",
        "2025-08-05",
        "2025-08-07",
    );
    let out = p.run(&["serve", "--addr", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--addr 0.0.0.0:0: serving beyond loopback needs a token (--token or KLINES_SERVE_TOKEN)"), "{err}");

    let secret = "s3cr3t-t0ken";
    let s = Served::start(
        &p,
        &["--addr", "0.0.0.0:0"],
        &[("KLINES_SERVE_TOKEN", secret)],
    );
    assert!(s.url.starts_with("http://0.0.0.0:"), "{}", s.url);
    for path in [
        "/",
        "/api/symbols",
        "/api/candles?symbol=BTCUSDT",
        "/assets/app.js",
    ] {
        let (status, _, body) = s.get(path);
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("a token is required"), "{body}");
        assert!(!body.contains(secret));
        let (status, _, _) = s.get_with(path, &[("authorization", "Bearer wrong")]);
        assert_eq!(status, 401, "{path}");
        let (status, _, _) = s.get_with(path, &[("authorization", &format!("Bearer {secret}"))]);
        assert_eq!(status, 200, "{path}");
    }
    // Opening the page with ?token= sets the cookie and sends the browser on without it.
    let (status, headers, _) = s.get(&format!("/?symbol=ETHUSDT&token={secret}&interval=5m"));
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/?symbol=ETHUSDT&interval=5m");
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let (status, _, page) = s.get_with("/", &[("cookie", pair)]);
    assert_eq!(status, 200);
    assert!(!page.contains(secret), "the token reached the page");
    let (status, _, _) = s.get_with("/api/symbols", &[("cookie", "klines_token=nope")]);
    assert_eq!(status, 401);
}

/// The README's `klines serve` lines, as written (port 8080: no other test uses it).
#[test]
fn the_readmes_serve_lines_run_as_written() {
    let ex = TestExchange::start(ExchangeConfig::real(ms("2025-08-10T00:00:00Z")));
    let p = built_project(&Wh::DuckDb, &ex, "ETHUSDT", "2025-08-05", "2025-08-07");
    let s = Served::spawn(&p, &["serve"], &[]);
    assert_eq!(s.url, "http://127.0.0.1:8080");
    assert_eq!(
        s.json("/api/symbols")["symbols"],
        serde_json::json!(["ETHUSDT"])
    );
    drop(s);

    let pg = Wh::postgres();
    let q = built_project(&pg, &ex, "ETHUSDT", "2025-08-05", "2025-08-07");
    let line = "klines serve --addr 0.0.0.0:8080 --target pg";
    let args: Vec<&str> = line.split_whitespace().skip(1).collect();
    let out = q.run(&args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let s = Served::spawn(&q, &args, &[("KLINES_SERVE_TOKEN", "t0k3n")]);
    assert_eq!(s.url, "http://0.0.0.0:8080");
    assert_eq!(s.get("/api/symbols").0, 401);
    let (status, _, body) = s.get_with("/api/symbols", &[("authorization", "Bearer t0k3n")]);
    assert_eq!(status, 200);
    assert!(body.contains("ETHUSDT"), "{body}");
}
