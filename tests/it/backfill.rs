//! `klines backfill` over real HTTP against the test exchange, into a local stage.

use std::time::{Duration, Instant};

use crate::support::*;

const NOW: &str = "2024-01-05T13:37:30Z";

fn exchange_at(now: &str) -> TestExchange {
    TestExchange::start(ExchangeConfig::synthetic(ms(now)))
}

#[test]
fn stages_exactly_the_closed_klines_of_two_symbols_over_several_days() {
    let ex = exchange_at(NOW);
    let p = Project::new(&ex.url, "");
    let out = p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--from",
        "2024-01-01",
    ]);

    for sym in ["BTCUSDT", "ETHUSDT"] {
        let want = expected(&ex, sym, "1m", ms("2024-01-01"), ms(NOW));
        // 4 whole days and 13h37m, less the exchange's outage minutes.
        assert!(
            want.len() > 4 * 1440 && want.len() < 4 * 1440 + 13 * 60 + 37,
            "{}",
            want.len()
        );
        assert_staged(&p.stage_dir(), sym, "1m", &want);
        // The 13:37 candle is still open at 13:37:30: never staged.
        assert_eq!(want.last().unwrap().open_time, ms("2024-01-05T13:36:00Z"));
    }
    let names: Vec<String> = parquet_files(&p.stage_dir()).into_keys().collect();
    let btc: Vec<&String> = names
        .iter()
        .filter(|n| n.contains("symbol=BTCUSDT"))
        .collect();
    assert_eq!(
        btc,
        [
            "exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-01.parquet",
            "exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-02.parquet",
            "exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-03.parquet",
            "exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-04.parquet",
            "exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-20240105T000000Z-20240105T133700Z.parquet",
        ]
    );
    // One manifest entry per file, with the file's rows, size and hash.
    let manifests: Vec<(String, Vec<u8>)> = files(&p.stage_dir())
        .into_iter()
        .filter(|(k, _)| k.starts_with("_manifest/"))
        .collect();
    assert_eq!(manifests.len(), 10);
    let data = files(&p.stage_dir());
    for (key, body) in &manifests {
        let entry: serde_json::Value = serde_json::from_slice(body).unwrap();
        let path = entry["path"].as_str().unwrap();
        let bytes = &data[path];
        assert_eq!(
            entry["bytes"].as_u64().unwrap(),
            bytes.len() as u64,
            "{key}"
        );
        assert_eq!(
            entry["sha256"].as_str().unwrap(),
            klines::stage::manifest::sha256_hex(bytes),
            "{key}"
        );
        let rows = klines::stage::parquet::decode(path, bytes.clone().into())
            .unwrap()
            .klines
            .len();
        assert_eq!(entry["rows"].as_u64().unwrap(), rows as u64, "{key}");
    }
    let rows: usize = ["BTCUSDT", "ETHUSDT"]
        .iter()
        .map(|s| expected(&ex, s, "1m", ms("2024-01-01"), ms(NOW)).len())
        .sum();
    assert_eq!(summary_number(&out, "rows"), rows as u64);
    assert_eq!(summary_number(&out, "files"), 10);
}

#[test]
fn outages_are_recorded_as_empty_and_not_fetched_again() {
    let ex = exchange_at(NOW);
    let p = Project::new(&ex.url, "");
    p.ok(&["backfill", "--from", "2024-01-04", "--to", "2024-01-05"]);
    // 2024-01-04 is a day with the 02:10-02:25 exchange outage.
    let cp: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.path().join(
            "state/checkpoints/exchange=binance/market=spot/interval=1m/symbol=BTCUSDT.json",
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        cp["covered"],
        serde_json::json!([[ms("2024-01-04"), ms("2024-01-05")]])
    );
    let empty: Vec<(i64, i64)> = serde_json::from_value(cp["empty"].clone()).unwrap();
    assert!(
        empty.contains(&(ms("2024-01-04T02:10:00Z"), ms("2024-01-04T02:25:00Z"))),
        "{empty:?}"
    );
    let requests = ex.stats().klines_requests;
    let out = p.ok(&["backfill", "--from", "2024-01-04", "--to", "2024-01-05"]);
    assert_eq!(
        ex.stats().klines_requests,
        requests,
        "a covered range was fetched again"
    );
    assert_eq!(summary_number(&out, "rows"), 0);
}

#[test]
fn a_later_run_continues_from_the_checkpoint_and_completes_the_open_day() {
    let ex = exchange_at(NOW);
    let p = Project::new(&ex.url, "");
    p.ok(&["backfill", "--source", "rest", "--from", "2024-01-04"]);
    let before = ex.stats().klines_requests;
    ex.set_clock(Clock::Fixed(ms("2024-01-06T00:20:10Z")));
    let out = p.ok(&["backfill", "--source", "rest", "--from", "2024-01-04"]);
    // Only 13:37 on 01-05 to 00:20 on 01-06 was asked for: 644 minutes, one request.
    assert_eq!(ex.stats().klines_requests - before, 1);
    assert!(summary_number(&out, "rows") <= 644);
    let want = expected(
        &ex,
        "BTCUSDT",
        "1m",
        ms("2024-01-04"),
        ms("2024-01-06T00:20:00Z"),
    );
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);
    // 01-05 is now a whole-day file holding the rows of the earlier partial file too.
    let whole =
        "exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-05.parquet";
    let files = parquet_files(&p.stage_dir());
    let day = klines::stage::parquet::decode(whole, files[whole].clone().into())
        .unwrap()
        .klines;
    assert_eq!(
        day.len(),
        expected(&ex, "BTCUSDT", "1m", ms("2024-01-05"), ms("2024-01-06")).len()
    );
    assert!(files.contains_key("exchange=binance/market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-20240106T000000Z-20240106T002000Z.parquet"));
}

#[test]
fn full_refresh_downloads_again_and_writes_the_same_bytes() {
    let ex = exchange_at(NOW);
    let p = Project::new(&ex.url, "");
    p.ok(&[
        "backfill",
        "--source",
        "rest",
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-04",
    ]);
    let first = files(&p.stage_dir());
    let before = ex.stats().klines_requests;
    p.ok(&[
        "backfill",
        "--source",
        "rest",
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-04",
        "--full-refresh",
    ]);
    assert!(ex.stats().klines_requests - before >= 3);
    assert_eq!(
        files(&p.stage_dir()),
        first,
        "re-staging a range must give the same names and bytes"
    );
}

#[test]
fn a_symbol_listed_after_from_starts_at_its_first_kline() {
    let ex = exchange_at(NOW);
    let p = Project::new(&ex.url, "");
    p.ok(&[
        "backfill",
        "--source",
        "rest",
        "--symbols",
        "NEWUSDT",
        "--from",
        "2023-06-01",
        "--to",
        "2024-01-05",
    ]);
    // One probe for the first kline and three requests of up to 1000 minutes for 2024-01-03
    // 12:00 to 2024-01-05; nothing for the seven months before the listing.
    assert_eq!(ex.stats().klines_requests, 4);
    let want = expected(&ex, "NEWUSDT", "1m", ms("2023-06-01"), ms("2024-01-05"));
    assert_eq!(want[0].open_time, ms("2024-01-03T12:00:00Z"));
    assert_staged(&p.stage_dir(), "NEWUSDT", "1m", &want);
    let names: Vec<String> = parquet_files(&p.stage_dir()).into_keys().collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn coarse_intervals_and_futures_work_too() {
    let ex = exchange_at(NOW);
    let p = Project::new(&ex.url, "");
    p.ok(&["backfill", "--interval", "1h,1d", "--from", "2023-12-20"]);
    assert_staged(
        &p.stage_dir(),
        "BTCUSDT",
        "1h",
        &expected(&ex, "BTCUSDT", "1h", ms("2023-12-20"), ms(NOW)),
    );
    assert_staged(
        &p.stage_dir(),
        "BTCUSDT",
        "1d",
        &expected(&ex, "BTCUSDT", "1d", ms("2023-12-20"), ms(NOW)),
    );
    let names: Vec<String> = parquet_files(&p.stage_dir()).into_keys().collect();
    // Daily candles go by UTC year; 2023 is covered from 12-20 only, so its file is named by range.
    assert!(names.contains(&"exchange=binance/market=spot/interval=1d/symbol=BTCUSDT/BTCUSDT-1d-20231220T000000Z-20240101T000000Z.parquet".to_string()), "{names:?}");
    assert!(
        names.contains(
            &"exchange=binance/market=spot/interval=1h/symbol=BTCUSDT/BTCUSDT-1h-2023-12-31.parquet".to_string()
        ),
        "{names:?}"
    );

    let q = Project::new(&ex.url, "");
    q.ok(&[
        "backfill",
        "--market",
        "usdm",
        "--symbols",
        "ETHUSDT",
        "--from",
        "2024-01-04",
        "--to",
        "2024-01-05",
    ]);
    let names: Vec<String> = parquet_files(&q.stage_dir()).into_keys().collect();
    assert_eq!(
        names,
        ["exchange=binance/market=usdm/interval=1m/symbol=ETHUSDT/ETHUSDT-1m-2024-01-04.parquet"]
    );
    assert_staged(
        &q.stage_dir(),
        "ETHUSDT",
        "1m",
        &expected(&ex, "ETHUSDT", "1m", ms("2024-01-04"), ms("2024-01-05")),
    );
}

#[test]
fn injected_faults_are_survived_with_exact_data() {
    let ex = exchange_at(NOW);
    ex.random_faults(
        0.35,
        42,
        vec![
            Fault::Status(500),
            Fault::Status(502),
            Fault::Status(503),
            Fault::Drop,
            Fault::Truncate,
            Fault::Malformed,
            Fault::Delay(Duration::from_millis(50)),
        ],
    );
    let p = Project::new(&ex.url, "");
    // About 30% of answers fail, and concurrent requests draw them in any order: with 6
    // attempts one request in ~1,400 exhausts them (seen once in CI); 14 make that ~5e-8.
    let yml = std::fs::read_to_string(p.path().join("klines.yml")).unwrap();
    assert!(yml.contains("max_attempts: 6"));
    std::fs::write(
        p.path().join("klines.yml"),
        yml.replace("max_attempts: 6", "max_attempts: 14"),
    )
    .unwrap();
    let out = p.ok(&[
        "backfill",
        "--source",
        "rest",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-05",
    ]);
    assert!(ex.stats().faults_served >= 5, "{:?}", ex.stats());
    assert!(summary_number(&out, "retries") >= 3, "{out}");
    for sym in ["BTCUSDT", "ETHUSDT"] {
        assert_staged(
            &p.stage_dir(),
            sym,
            "1m",
            &expected(&ex, sym, "1m", ms("2024-01-01"), ms("2024-01-05")),
        );
    }
}

#[test]
fn a_timeout_is_retried() {
    let ex = exchange_at(NOW);
    ex.inject([Fault::Pass, Fault::Delay(Duration::from_secs(3))]);
    let p = Project::new(&ex.url, "  timeout_secs: 0.5\n");
    let out = p.ok(&[
        "backfill",
        "--source",
        "rest",
        "--from",
        "2024-01-04",
        "--to",
        "2024-01-05",
    ]);
    assert!(summary_number(&out, "retries") >= 1, "{out}");
    assert_staged(
        &p.stage_dir(),
        "BTCUSDT",
        "1m",
        &expected(&ex, "BTCUSDT", "1m", ms("2024-01-04"), ms("2024-01-05")),
    );
}

#[test]
fn persistent_failure_exits_non_zero_keeps_what_was_staged_and_the_next_run_resumes() {
    let ex = exchange_at(NOW);
    // The first-kline probe and four spans of 1000 minutes pass (two whole days), then the
    // exchange fails every attempt of the fifth.
    let mut faults = vec![Fault::Pass; 5];
    faults.extend(vec![Fault::Status(503); 6]);
    ex.inject(faults);
    let p = Project::new(&ex.url, "  spans_in_flight: 1\n");
    let out = p.run(&[
        "backfill",
        "--source",
        "rest",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-05",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("error: ")
            && err.contains("gave up after 6 attempts")
            && err.contains("HTTP 503"),
        "{err}"
    );
    let staged = parquet_files(&p.stage_dir());
    assert_eq!(staged.len(), 2, "{:?}", staged.keys());
    // What was staged is complete and valid.
    for (name, bytes) in &staged {
        let day = klines::stage::parquet::decode(name, bytes.clone().into())
            .unwrap()
            .klines;
        let date = &name[name.len() - 18..name.len() - 8];
        let start = ms(date);
        assert_eq!(
            day,
            batch(&expected(&ex, "BTCUSDT", "1m", start, start + 86_400_000)),
            "{name}"
        );
    }
    // The exchange recovers; the next run completes the range without the first two days.
    let before = ex.stats().klines_requests;
    p.ok(&[
        "backfill",
        "--source",
        "rest",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-05",
    ]);
    assert_eq!(ex.stats().klines_requests - before, 3);
    assert_staged(
        &p.stage_dir(),
        "BTCUSDT",
        "1m",
        &expected(&ex, "BTCUSDT", "1m", ms("2024-01-01"), ms("2024-01-05")),
    );
}

#[test]
fn a_429_pauses_every_request_until_retry_after() {
    let ex = exchange_at(NOW);
    ex.inject([Fault::Pass, Fault::TooMany(2)]);
    // One request on the wire at a time, so no other request is in flight when the 429 comes.
    let p = Project::new(&ex.url, "  max_in_flight: 1\n");
    let started = Instant::now();
    let out = p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-04",
    ]);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "did not wait for Retry-After"
    );
    let stats = ex.stats();
    // Any request during the pause would have been answered 429 again (and led to a ban).
    assert_eq!(stats.count(429), 1, "{stats:?}");
    assert_eq!(stats.count(418), 0, "{stats:?}");
    assert_eq!(summary_number(&out, "rate-limited"), 1);
    for sym in ["BTCUSDT", "ETHUSDT"] {
        assert_staged(
            &p.stage_dir(),
            sym,
            "1m",
            &expected(&ex, sym, "1m", ms("2024-01-01"), ms("2024-01-04")),
        );
    }
}

#[test]
fn a_short_418_ban_is_waited_out_and_a_long_one_exits_4() {
    let ex = exchange_at(NOW);
    ex.inject([Fault::Ban(2)]);
    let p = Project::new(&ex.url, "");
    let started = Instant::now();
    p.ok(&["backfill", "--from", "2024-01-03", "--to", "2024-01-04"]);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(ex.stats().count(418), 1);

    ex.inject([Fault::Ban(7200)]);
    let q = Project::new(&ex.url, "");
    let out = q.run(&["backfill", "--from", "2024-01-03", "--to", "2024-01-04"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("banned by the exchange (HTTP 418) for 7200s"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pacing_keeps_under_the_advertised_weight_limit() {
    let ex = exchange_at(NOW);
    // 60 weight per 2-second window: 30 klines requests; the run needs about 60.
    ex.set_limit(60, 2);
    let p = Project::new(&ex.url, "");
    p.ok(&[
        "backfill",
        "--source",
        "rest",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--from",
        "2023-12-10",
        "--to",
        "2024-01-01",
    ]);
    let stats = ex.stats();
    assert_eq!(stats.count(429), 0, "{stats:?}");
    assert!(
        stats.weight_by_window.values().all(|&w| w <= 60),
        "{stats:?}"
    );
    assert!(stats.klines_requests >= 44, "{stats:?}");
}

#[test]
fn a_second_backfill_of_a_locked_series_fails_clearly() {
    let ex = exchange_at(NOW);
    let p = Project::new(&ex.url, "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = klines::extract::state::StateStore::Dir(p.path().join("state"));
    let series = klines::market::Series {
        exchange: klines::market::Exchange::BINANCE,
        market: klines::market::Market::Spot,
        symbol: "ETHUSDT".parse().unwrap(),
        interval: klines::market::Interval::M1,
    };
    let lock = rt.block_on(store.lock(&series)).unwrap();
    let out = p.run(&[
        "backfill",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--from",
        "2024-01-03",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("spot ETHUSDT 1m: another backfill is running"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert_eq!(
        ex.stats().klines_requests,
        0,
        "downloaded before taking every lock"
    );
    drop(lock);
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--from",
        "2024-01-03",
    ]);
}

#[test]
fn bad_flags_dates_and_symbols_give_clear_errors_and_exit_2() {
    let ex = exchange_at(NOW);
    let p = Project::new(&ex.url, "");
    let cases: &[(&[&str], &str)] = &[
        (
            &["backfill", "--from", "2024-13-01"],
            "invalid --from \"2024-13-01\"",
        ),
        (
            &["backfill", "--from", "2024-01-02", "--to", "2024-01-01"],
            "--to 2024-01-01T00:00:00Z is not after --from 2024-01-02T00:00:00Z",
        ),
        (
            &["backfill", "--to", "tomorrow"],
            "invalid --to \"tomorrow\"",
        ),
        (&["backfill", "--interval", "2m"], "unknown interval \"2m\""),
        (
            &["backfill", "--symbols", "BTC/USDT"],
            "invalid symbol \"BTC/USDT\"",
        ),
        (
            &["backfill", "--market", "coinm"],
            "unknown market \"coinm\"",
        ),
        (
            &["backfill", "--symbols", "NOPEUSDT,BTCUSDT"],
            "unknown symbol on spot: NOPEUSDT",
        ),
        (
            &["backfill", "--symbols", "HALTUSDT"],
            "HALTUSDT (status HALT)",
        ),
        (
            &["backfill", "--stage", "gs://bucket/x"],
            "unsupported stage URL",
        ),
        (
            &["backfill", "--base-url", "ftp://x"],
            "invalid exchange base URL",
        ),
        (
            &["backfill", "--frm", "2024-01-01"],
            "unexpected argument '--frm'",
        ),
    ];
    for (args, msg) in cases {
        let out = p.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: expected {msg:?} in {err}");
        assert!(
            err.lines().filter(|l| l.starts_with("error")).count() == 1,
            "{args:?}: {err}"
        );
    }
    assert_eq!(ex.stats().klines_requests, 0);
    let q = Project::new(&ex.url, "bogus: 1\n");
    let out = q.run(&["backfill"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("klines.yml") && stderr(&out).contains("bogus"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn kill_9_at_any_moment_and_resume_gives_identical_output() {
    let ex = exchange_at(NOW);
    ex.set_latency(Duration::from_millis(40));
    let args = [
        "backfill",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--from",
        "2023-12-01",
        "--to",
        "2024-01-05T06:00:00Z",
    ];
    let reference = Project::new(&ex.url, "");
    reference.ok(&args);
    let want = files(&reference.stage_dir());
    assert!(want.len() > 60);

    let p = Project::new(&ex.url, "  spans_in_flight: 2\n");
    let mut kills = 0;
    // Kill at increasing moments until a run completes on its own.
    for delay_ms in [150u64, 400, 700, 1000, 1300, 1600, 2000, 2500, 3000] {
        let mut child = p
            .cmd()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 3, "only {kills} kills landed");
    p.ok(&args);
    let got = files(&p.stage_dir());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, v) in &want {
        assert!(got[k] == *v, "{k} differs after kill -9 and resume");
    }
}

/// SIGTERM (what Airflow sends a task it stops) ends a backfill cleanly: exit 130, the
/// checkpoint records what was staged, and the next run only fetches the rest.
#[test]
fn sigterm_stops_cleanly_and_the_next_run_resumes() {
    let ex = exchange_at(NOW);
    ex.set_latency(Duration::from_millis(40));
    let args = [
        "backfill",
        "--symbols",
        "BTCUSDT",
        "--from",
        "2023-12-01",
        "--to",
        "2024-01-05",
    ];
    let reference = Project::new(&ex.url, "");
    let full = reference.ok(&args);
    let want = files(&reference.stage_dir());

    let p = Project::new(&ex.url, "  spans_in_flight: 1\n");
    let child = p
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for some files, then stop it.
    for _ in 0..200 {
        if files(&p.stage_dir()).len() >= 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    let staged = files(&p.stage_dir()).len();
    assert!(
        staged >= 6 && staged < want.len(),
        "{staged} of {} files staged before SIGTERM",
        want.len()
    );

    let resumed = p.ok(&args);
    assert!(
        summary_number(&resumed, "requests") < summary_number(&full, "requests"),
        "{resumed}\nvs\n{full}"
    );
    assert_eq!(files(&p.stage_dir()), want);
}
