//! `klines stream` against the test exchange's REST and WebSocket, on a clock that runs 120
//! times faster than real time (two exchange minutes a second): it stages exactly what a
//! backfill of the same range stages, fills every gap (dropped sockets, missed events,
//! restarts) over REST, keeps bad messages as dead letters, stops on SIGTERM with its
//! checkpoint saved, and loads every flush with --load.

use std::time::{Duration, Instant};

use crate::support::*;

const START: &str = "2024-01-05T13:37:30Z";
const FROM: &str = "2024-01-05";
const UNTIL: &str = "2024-01-05T13:48:00Z";

fn fast_exchange() -> TestExchange {
    let mut config = ExchangeConfig::synthetic(ms(START));
    config.clock = Clock::scaled(ms(START), 120);
    TestExchange::start(config)
}

fn stream_args<'a>(ex: &'a TestExchange, ws: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let _ = ex;
    let mut args = vec![
        "stream",
        "--from",
        FROM,
        "--ws-url",
        ws,
        "--flush-secs",
        "0.2",
    ];
    args.extend(extra);
    args
}

/// What the exchange has for [FROM, UNTIL): every candle closed by UNTIL.
fn expected_until(ex: &TestExchange, symbol: &str) -> Vec<klines::datasets::klines::Kline> {
    let iv: klines::market::Interval = "1m".parse().unwrap();
    ex.market()
        .klines(symbol, iv, ms(FROM), ms(UNTIL), ms(UNTIL), usize::MAX)
        .into_iter()
        .filter(|k| k.close_time < ms(UNTIL))
        .collect()
}

#[test]
fn stream_stages_exactly_what_a_backfill_of_the_range_stages() {
    let ex = fast_exchange();
    let ws = ex.ws_url();
    let p = Project::new(&ex.url, "");
    let before = ex.stats();
    // A grace of 120 exchange seconds (1 s real): a busy machine's late event is not a gap.
    let out = p.ok(&stream_args(
        &ex,
        &ws,
        &["--until", UNTIL, "--grace-secs", "120"],
    ));
    assert!(out.starts_with("stream: 1 series"), "{out}");
    let want = expected_until(&ex, "BTCUSDT");
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);
    // Live candles came over the socket: REST was asked only to catch up.
    let after = ex.stats();
    assert!(after.ws_connections >= 1, "{after:?}");
    let live_minutes = (ms(UNTIL) - ms(START)) / 60_000;
    assert!(
        after.klines_requests - before.klines_requests < 2 + live_minutes as u64 / 2,
        "{} klines requests for {live_minutes} live minutes",
        after.klines_requests - before.klines_requests
    );
    // The same klines as a backfill of [FROM, UNTIL), the open day in pieces.
    let q = Project::new(&ex.url, "");
    q.ok(&["backfill", "--from", FROM, "--to", UNTIL]);
    assert_same_stage(&p, &q);
}

/// The stage of a stream holds the same klines as a backfill's, and every closed day's file is
/// the backfill's byte for byte (an open day is in pieces, a backfill writes it as one file).
fn assert_same_stage(streamed: &Project, backfilled: &Project) {
    assert_eq!(
        staged_klines(&streamed.stage_dir()),
        staged_klines(&backfilled.stage_dir()),
        "the staged klines"
    );
    let days = |p: &Project| -> std::collections::BTreeMap<String, Vec<u8>> {
        parquet_files(&p.stage_dir())
            .into_iter()
            .filter(|(k, _)| !k.contains("Z-"))
            .collect()
    };
    assert_eq!(days(streamed), days(backfilled), "the closed days' files");
}

#[test]
fn stream_fills_every_gap_over_rest() {
    let ex = fast_exchange();
    let ws = ex.ws_url();
    ex.inject_ws([
        WsFault::Duplicate,
        WsFault::Skip,
        WsFault::Drop,
        WsFault::Skip,
        WsFault::Shutdown,
        WsFault::Duplicate,
    ]);
    let p = Project::new(&ex.url, "");
    let out = p.ok(&stream_args(
        &ex,
        &ws,
        &["--until", UNTIL, "--symbols", "BTCUSDT,ETHUSDT"],
    ));
    for sym in ["BTCUSDT", "ETHUSDT"] {
        assert_staged(&p.stage_dir(), sym, "1m", &expected_until(&ex, sym));
    }
    assert!(ex.stats().ws_connections >= 3, "{:?}\n{out}", ex.stats());
    assert!(
        summary_number(&out, "reconnects") >= 1,
        "the dropped socket: {out}"
    );
    assert_eq!(
        summary_number(&out, "rotations"),
        1,
        "the serverShutdown: {out}"
    );
}

#[test]
fn malformed_messages_become_dead_letters_and_the_stream_goes_on() {
    let ex = fast_exchange();
    let ws = ex.ws_url();
    ex.inject_ws([
        WsFault::Before("{not json".into()),
        WsFault::Before(r#"{"stream":"dogeusdt@kline_1m","data":{"e":"kline","E":1,"s":"DOGEUSDT","k":{"t":1704462000000,"T":1704462059999,"s":"DOGEUSDT","i":"1m","o":"1","c":"1","h":"1","l":"1","v":"1","n":1,"x":true,"q":"1","V":"0","Q":"0"}}}"#.into()),
        WsFault::Before(r#"{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1,"s":"BTCUSDT","k":{"t":1704462000000,"T":1704462059999,"s":"BTCUSDT","i":"1m","o":"1","c":"1","h":"0.5","l":"1","v":"1","n":1,"x":true,"q":"1","V":"0","Q":"0"}}}"#.into()),
    ]);
    let p = Project::new(&ex.url, "");
    let out = p.ok(&stream_args(&ex, &ws, &["--until", UNTIL]));
    assert_eq!(summary_number(&out, "dead"), 3, "{out}");
    assert_staged(
        &p.stage_dir(),
        "BTCUSDT",
        "1m",
        &expected_until(&ex, "BTCUSDT"),
    );
    let letters: Vec<serde_json::Value> = files(&p.stage_dir().join("_dead_letters"))
        .values()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(letters.len(), 3);
    let reasons: Vec<&str> = letters
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("not a stream message")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("out of order")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("did not subscribe")),
        "{reasons:?}"
    );
    assert!(letters.iter().any(|l| l["raw"] == "{not json"));
}

#[test]
fn sigterm_stages_what_closed_saves_the_checkpoint_and_exits_130() {
    let ex = fast_exchange();
    let ws = ex.ws_url();
    let p = Project::new(&ex.url, "");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let child = p
        .cmd()
        .args(stream_args(&ex, &ws, &["--metrics", &metrics_addr]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // The Prometheus endpoint, while it runs.
    let scraped = runtime()
        .block_on(async {
            reqwest::get(format!("http://{metrics_addr}/metrics"))
                .await?
                .text()
                .await
        })
        .unwrap();
    for line in [
        "klines_stream_lag_seconds{symbol=\"BTCUSDT\",interval=\"1m\"}",
        "klines_stream_rows_total ",
        "klines_stream_events_total ",
        "klines_stream_latency_seconds_bucket{le=\"5\"}",
        "klines_stream_latency_seconds_count ",
        "# HELP klines_stream_reconnects_total",
    ] {
        assert!(scraped.contains(line), "no {line} in:\n{scraped}");
    }
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(signalled.elapsed() < Duration::from_secs(8));
    // Everything the checkpoint claims is staged, exactly; a stream resumes from it.
    let staged = staged_klines(&p.stage_dir());
    let last = *staged.keys().map(|(_, _, t)| t).max().unwrap();
    assert!(last > ms(START), "live candles were staged");
    let iv: klines::market::Interval = "1m".parse().unwrap();
    let want: Vec<_> =
        ex.market()
            .klines("BTCUSDT", iv, ms(FROM), last + 1, last + 60_000, usize::MAX);
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);
    let out = p.ok(&stream_args(&ex, &ws, &["--until", UNTIL]));
    assert!(out.contains("stream: 1 series"), "{out}");
    assert_staged(
        &p.stage_dir(),
        "BTCUSDT",
        "1m",
        &expected_until(&ex, "BTCUSDT"),
    );
}

/// `--load` on each warehouse: raw.klines ends holding every closed kline of the range once,
/// exactly (DuckDB and Postgres in the stream's own connection; Snowflake by COPY INTO from
/// the S3 stage, per flush).
fn stream_load(wh: &str) {
    let ex = fast_exchange();
    let ws = ex.ws_url();
    let (p, target, sf) = match wh {
        "snowflake" => {
            let sf = FakeSnow::create();
            let url = crate::stage::s3_stage_url();
            let stage_name = sf.external_stage(&url);
            let p = Project::new(&ex.url, &format!("stage: {url}\nstate: stage\n"));
            p.profiles("sf", &sf.output_yaml("sf", Some(&stage_name)));
            (p, None, Some(sf))
        }
        other => {
            let p = Project::new(&ex.url, "");
            let target = if other == "postgres" {
                Wh::postgres()
            } else {
                Wh::DuckDb
            };
            target.setup(&p);
            (p, Some(target), None)
        }
    };
    p.ok(&stream_args(&ex, &ws, &["--until", UNTIL, "--load"]));
    let want = expected_until(&ex, "BTCUSDT");
    // Every row, compared exactly (fakesnow would sum decimals as floats).
    let sql = "SELECT open_time, close, volume, trades FROM raw.klines ORDER BY open_time";
    let rows = match (&target, &sf) {
        (Some(t), _) => t.query(&p, sql),
        (_, Some(sf)) => {
            let out = sf.output(None);
            std::thread::spawn(move || {
                runtime().block_on(async {
                    use klines::warehouse::Warehouse;
                    let w = klines::warehouse::snowflake::Snowflake::connect(&out)
                        .await
                        .unwrap();
                    w.query(sql).await.unwrap().rows
                })
            })
            .join()
            .unwrap()
        }
        _ => unreachable!(),
    };
    let got: Vec<(i64, i128, i128, i64)> = rows
        .iter()
        .map(|r| {
            (
                r[0].as_millis().unwrap(),
                r[1].to_scaled(8).unwrap(),
                r[2].to_scaled(8).unwrap(),
                r[3].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(i64, i128, i128, i64)> = want
        .iter()
        .map(|k| (k.open_time, k.close, k.volume, k.trades))
        .collect();
    assert_eq!(got.len(), want.len(), "{wh}: rows");
    assert_eq!(got, want, "{wh}: each row once, exact");
}

#[test]
fn stream_load_puts_every_flush_into_duckdb() {
    stream_load("duckdb");
}

#[test]
fn stream_load_puts_every_flush_into_postgres() {
    stream_load("postgres");
}

#[test]
fn stream_load_puts_every_flush_into_snowflake() {
    stream_load("snowflake");
}

/// USD-M futures (`/market/stream`, 499-row REST pages) and several intervals at once.
#[test]
fn usdm_and_several_intervals_stream_too() {
    let ex = fast_exchange();
    let ws = ex.ws_url();
    let p = Project::new(&ex.url, "");
    let out = p.ok(&stream_args(
        &ex,
        &ws,
        &["--until", UNTIL, "--market", "usdm", "--interval", "1m,5m"],
    ));
    assert!(out.starts_with("stream: 2 series"), "{out}");
    for iv in ["1m", "5m"] {
        let interval: klines::market::Interval = iv.parse().unwrap();
        let want: Vec<_> = ex
            .usdm_market()
            .klines(
                "BTCUSDT",
                interval,
                ms(FROM),
                ms(UNTIL),
                ms(UNTIL),
                usize::MAX,
            )
            .into_iter()
            .filter(|k| k.close_time < ms(UNTIL))
            .collect();
        assert_staged(&p.stage_dir(), "BTCUSDT", iv, &want);
    }
    assert!(
        files(&p.stage_dir())
            .keys()
            .all(|k| !k.contains("market=spot")),
        "USD-M data lands under market=usdm"
    );
}

/// serverShutdown: the new socket opens before the old one closes, so no candle is missed and
/// REST is not asked for any.
#[test]
fn server_shutdown_is_met_by_opening_the_new_socket_first() {
    let ex = fast_exchange();
    let ws = ex.ws_url();
    let p = Project::new(&ex.url, "");
    // Catch up first, so that what follows is the live part alone.
    p.ok(&["backfill", "--from", FROM]);
    ex.inject_ws([WsFault::Shutdown]);
    let out = p.ok(&stream_args(
        &ex,
        &ws,
        &["--until", UNTIL, "--grace-secs", "600"],
    ));
    assert_staged(
        &p.stage_dir(),
        "BTCUSDT",
        "1m",
        &expected_until(&ex, "BTCUSDT"),
    );
    assert_eq!(summary_number(&out, "rotations"), 1, "{out}");
    assert_eq!(summary_number(&out, "reconnects"), 0, "{out}");
    let stats = ex.stats();
    assert!(stats.ws_connections >= 2);
    // REST may catch up what closed between the backfill and the first socket (the clock
    // runs 120 times faster than real time), never a candle of the live part.
    let connected = stats.ws_first_connected.unwrap();
    let late: Vec<_> = stats
        .klines_starts
        .iter()
        .filter(|t| t.is_none_or(|t| t + 60_000 > connected))
        .collect();
    assert!(
        late.is_empty(),
        "a live candle was asked of REST ({late:?} after {connected}): {out}"
    );
}

/// --build: after each load the TRADES_OHLC models run incrementally, and end equal to a
/// build of the same data from scratch.
#[test]
fn stream_build_keeps_the_models_equal_to_a_full_build() {
    let ex = fast_exchange();
    let ws = ex.ws_url();
    let p = Project::new(&ex.url, "");
    crate::models::with_repo_models(&p);
    p.ok(&stream_args(&ex, &ws, &["--until", UNTIL, "--build"]));
    let q = Project::new(&ex.url, "");
    crate::models::with_repo_models(&q);
    q.ok(&["backfill", "--from", FROM, "--to", UNTIL]);
    q.ok(&["load"]);
    q.ok(&["run", "-s", "tag:ohlc"]);
    for model in [
        "TRADES_OHLC_1M",
        "TRADES_OHLC_5M",
        "TRADES_OHLC_15M",
        "TRADES_OHLC_1D",
    ] {
        let table = format!("main.{model}");
        let (streamed, built) = (table_rows(&p, &table), table_rows(&q, &table));
        assert!(!built.is_empty(), "{model}");
        assert_eq!(streamed, built, "{model}");
    }
}

/// --build reads the project once, when the stream starts: a project that does not parse stops
/// the stream before anything is fetched or staged, naming the file at fault, instead of a
/// stream that stages and loads while every build fails.
#[test]
fn stream_build_refuses_a_project_that_does_not_parse_before_it_starts() {
    let ex = fast_exchange();
    let ws = ex.ws_url();
    let p = Project::new(&ex.url, "");
    crate::models::with_repo_models(&p);
    // The OHLC models' relationships tests name the symbols seed.
    std::fs::remove_file(p.path().join("seeds/symbols.csv")).unwrap();
    let out = p.run(&stream_args(&ex, &ws, &["--until", UNTIL, "--build"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("models/ohlc/schema.yml") && err.contains("ref('symbols')"),
        "{err}"
    );
    let staged: Vec<String> = files(&p.stage_dir()).into_keys().collect();
    assert!(staged.is_empty(), "staged {staged:?}");
}

/// Every row of a DuckDB table as text, by symbol and open time; for raw.klines without the
/// columns that say when and from which file a row was loaded.
fn table_rows(project: &Project, table: &str) -> Vec<String> {
    let conn = duckdb::Connection::open(project.path().join("klines.duckdb")).unwrap();
    let columns = if table == "raw.klines" {
        "COLUMNS(* EXCLUDE (_file, _staged_at, _loaded_at))"
    } else {
        "COLUMNS(*)"
    };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT CAST({columns} AS VARCHAR) FROM {table} ORDER BY symbol, open_time"
        ))
        .unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        Ok((0..n)
            .map(|i| r.get::<_, Option<String>>(i).unwrap().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("|"))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

/// Hours of exchange time for three symbols with every fault the test exchange has (missed,
/// duplicated, late and out-of-order closes, dropped and silent sockets, serverShutdown,
/// garbage) and `kill -9` of the stream at varied moments: the stage equals a backfill of the
/// range, the raw table holds each kline once, and every TRADES_OHLC table equals a build
/// from scratch.
#[test]
fn hours_of_faults_and_kill_9_leave_the_warehouse_equal_to_a_full_build() {
    // Across midnight: the closed day is compacted from its pieces into the backfill's file.
    let mut config = ExchangeConfig::synthetic(ms("2024-01-04T22:00:00Z"));
    config.clock = Clock::scaled(ms("2024-01-04T22:00:00Z"), 600);
    let ex = TestExchange::start(config);
    let ws = ex.ws_url();
    let until = "2024-01-05T01:00:00Z";
    let symbols = "BTCUSDT,ETHUSDT,SOLUSDT";
    let faults = || {
        let mut f = Vec::new();
        for i in 0..40 {
            f.push(match i % 8 {
                0 => WsFault::Skip,
                1 => WsFault::Duplicate,
                2 => WsFault::Late,
                3 => WsFault::Before("garbage".into()),
                4 => WsFault::Drop,
                5 => WsFault::Silent(Duration::from_millis(700)),
                6 => WsFault::Shutdown,
                _ => WsFault::Late,
            });
            for _ in 0..3 {
                f.push(WsFault::Duplicate);
            }
        }
        f
    };
    ex.inject_ws(faults());
    let p = Project::new(&ex.url, "");
    crate::models::with_repo_models(&p);
    let args = [
        "stream",
        "--symbols",
        symbols,
        "--from",
        "2024-01-04",
        "--until",
        until,
        "--ws-url",
        &ws,
        "--flush-secs",
        "0.1",
        "--silence-secs",
        "0.5",
        "--build",
    ];
    // Killed three times at varied moments, restarted each time.
    for wait_ms in [700, 1900, 1300] {
        let mut child = p
            .cmd()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let out = p.ok(&args);
    assert!(out.contains("stream: 3 series"), "{out}");
    assert!(ex.stats().ws_connections >= 5, "{:?}", ex.stats());

    let q = Project::new(&ex.url, "");
    crate::models::with_repo_models(&q);
    q.ok(&[
        "backfill",
        "--symbols",
        symbols,
        "--from",
        "2024-01-04",
        "--to",
        until,
    ]);
    assert_same_stage(&p, &q);
    assert!(
        parquet_files(&p.stage_dir())
            .keys()
            .any(|k| k.ends_with("BTCUSDT-1m-2024-01-04.parquet")),
        "the closed day's file"
    );
    q.ok(&["load"]);
    q.ok(&["run", "-s", "tag:ohlc"]);
    for table in [
        "raw.klines",
        "main.TRADES_OHLC_1M",
        "main.TRADES_OHLC_5M",
        "main.TRADES_OHLC_15M",
        "main.TRADES_OHLC_1D",
    ] {
        let (streamed, built) = (table_rows(&p, table), table_rows(&q, table));
        assert!(!built.is_empty(), "{table}");
        assert_eq!(streamed.len(), built.len(), "{table}: rows");
        for (a, b) in streamed.iter().zip(&built) {
            assert_eq!(a, b, "{table}");
        }
    }
}

/// The real klines (data.binance.vision's ETHUSDT archive of 2022-08-14, all 12 fields) over
/// the socket and REST: staged exactly as Binance published them.
#[test]
fn real_klines_stream_exactly() {
    let start = ms("2022-08-14T12:00:00Z");
    let mut config = ExchangeConfig::real_full12(start);
    config.clock = Clock::scaled(start, 120);
    let ex = TestExchange::start(config);
    let ws = ex.ws_url();
    let p = Project::new(&ex.url, "");
    let until = "2022-08-14T12:12:00Z";
    let out = p.ok(&[
        "stream",
        "--symbols",
        "ETHUSDT",
        "--from",
        "2022-08-14",
        "--until",
        until,
        "--ws-url",
        &ws,
        "--flush-secs",
        "0.2",
        "--grace-secs",
        "120",
    ]);
    let closed: u64 = out
        .split(" closed)")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(closed >= 8, "the live minutes came over the socket: {out}");
    let archive = crate::support::exchange::data::read_full_rows(
        &crate::support::exchange::data::full12_dir().join("spot/ETHUSDT-1m-2022-08-14.zip"),
    );
    let want: Vec<_> = archive
        .into_values()
        .filter(|k| k.open_time < ms(until) && k.close_time < ms(until))
        .collect();
    assert_eq!(want.len(), 12 * 60 + 12);
    assert_staged(&p.stage_dir(), "ETHUSDT", "1m", &want);
}
