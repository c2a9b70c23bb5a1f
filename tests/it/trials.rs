//! The defects found by trying klines as a new user would (issue 20), each with what users
//! rely on instead: no data lost or invented on a bogus candle, an empty or truncated archive,
//! a zip bomb or an off-grid candle; runs that wait out rate limits however long, and end
//! only when a wait passes `max_wait_secs`; the environment over klines.yml everywhere;
//! errors that name the key, the parameter, the symbol; dbt's indirect test selection.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::models::with_repo_models;
use crate::support::coinbase::TestCoinbase;
use crate::support::exchange::archive::{row, zip_of};
use crate::support::*;

const NOW: &str = "2024-03-05T13:37:30Z";
const MINUTE: i64 = 60_000;

fn exchange_at(now: &str) -> TestExchange {
    TestExchange::start(ExchangeConfig::synthetic(ms(now)))
}

fn checkpoint_covered(p: &Project, symbol: &str) -> Vec<(i64, i64)> {
    let path = p.path().join(format!(
        "state/checkpoints/exchange=binance/market=spot/interval=1m/symbol={symbol}.json"
    ));
    let cp: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    serde_json::from_value(cp["covered"].clone()).unwrap()
}

/// Open times the REST klines requests started at, other than the first-kline probe.
fn rest_starts(ex: &TestExchange) -> Vec<i64> {
    ex.stats()
        .klines_starts
        .into_iter()
        .flatten()
        .filter(|&t| t != 0)
        .collect()
}

/// Runs `cmd` to its end and returns its exit code, stdout, stderr and peak resident memory
/// in MiB (`wait4`'s own accounting of that one process).
#[allow(clippy::zombie_processes)] // reaped by wait4, for its rusage
fn run_measured(mut cmd: Command) -> (Option<i32>, String, String, u64) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start klines");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let mut stderr_text = String::new();
    err.read_to_string(&mut stderr_text).unwrap();
    let stdout_text = reader.join().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 reaps our own child, which std then no
    // longer waits for (it is dropped without a wait).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (
        code,
        stdout_text,
        stderr_text,
        usage.ru_maxrss as u64 / 1024,
    )
}

// --- 1. A closed candle from the future ------------------------------------------------

/// A kline event of BTCUSDT 1m, closed, opening at `t`, sent at `event_time`.
fn closed_frame(t: i64, event_time: i64) -> String {
    format!(
        r#"{{"stream":"btcusdt@kline_1m","data":{{"e":"kline","E":{event_time},"s":"BTCUSDT","k":{{"t":{t},"T":{},"s":"BTCUSDT","i":"1m","f":0,"L":0,"o":"1","c":"1","h":"1","l":"1","v":"1","n":1,"x":true,"q":"1","V":"0","Q":"0","B":"0"}}}}}}"#,
        t + MINUTE - 1
    )
}

#[test]
fn a_closed_candle_from_the_future_is_a_dead_letter_and_moves_nothing() {
    let start = ms("2024-01-05T13:37:30Z");
    let until = ms("2024-01-05T13:48:00Z");
    let mut config = ExchangeConfig::synthetic(start);
    config.clock = Clock::scaled(start, 120);
    let ex = TestExchange::start(config);
    let three_days = start / MINUTE * MINUTE + 3 * 86_400_000;
    ex.inject_ws([
        // Sent "now", closing three days ahead.
        WsFault::Before(closed_frame(three_days, start)),
        WsFault::Skip,
        // Sent "three days ahead" too: the event time moves no clock either.
        WsFault::Before(closed_frame(three_days + MINUTE, three_days + MINUTE)),
    ]);
    let p = Project::new(&ex.url, "");
    let out = p.ok(&[
        "stream",
        "--from",
        "2024-01-05",
        "--ws-url",
        &ex.ws_url(),
        "--flush-secs",
        "0.2",
        "--until",
        "2024-01-05T13:48:00Z",
    ]);
    assert_eq!(summary_number(&out, "dead"), 2, "{out}");
    // Exactly the exchange's closed candles: none missing, none unfinished, none invented.
    let want: Vec<_> = expected(&ex, "BTCUSDT", "1m", ms("2024-01-05"), until)
        .into_iter()
        .filter(|k| k.close_time < until)
        .collect();
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);
    let keys = parquet_files(&p.stage_dir());
    assert!(
        keys.keys().all(|k| k.contains("BTCUSDT-1m-20240105T")),
        "{:?}",
        keys.keys()
    );
    let letters: Vec<serde_json::Value> = files(&p.stage_dir().join("_dead_letters"))
        .values()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(letters.len(), 2);
    for l in &letters {
        let reason = l["reason"].as_str().unwrap();
        assert!(reason.contains("after the exchange's clock"), "{reason}");
        assert!(reason.contains("2024-01-08T13:3"), "{reason}");
    }
}

// --- 2. Archives that lack what they should hold -----------------------------------------

const HEADER: &str = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n";

#[test]
fn an_empty_archive_is_an_error_naming_it_and_its_day_is_fetched_later() {
    let ex = exchange_at(NOW);
    ex.archive(|a| {
        a.replaced.insert(
            "BTCUSDT-1m-2024-03-02.zip".into(),
            zip_of("BTCUSDT-1m-2024-03-02.csv", ""),
        );
        a.replaced.insert(
            "BTCUSDT-1m-2024-03-03.zip".into(),
            zip_of("BTCUSDT-1m-2024-03-03.csv", HEADER),
        );
    });
    let p = Project::new(&ex.url, "");
    let out = p.run(&["backfill", "--from", "2024-03-01"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("BTCUSDT-1m-2024-03-02.zip: the CSV holds no klines"),
        "{}",
        stderr(&out)
    );
    // The day is not checkpointed as done: a REST run fetches it, and the next day too.
    for (s, e) in checkpoint_covered(&p, "BTCUSDT") {
        assert!(
            e <= ms("2024-03-02") || s >= ms("2024-03-04"),
            "{s}..{e} covers a bad file's day"
        );
    }
    p.ok(&["backfill", "--from", "2024-03-01", "--source", "rest"]);
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-03-01"), ms(NOW));
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);
    // The header-only file is an error too.
    let q = Project::new(&ex.url, "");
    let out = q.run(&["backfill", "--from", "2024-03-03"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("BTCUSDT-1m-2024-03-03.zip: the CSV holds no klines"),
        "{}",
        stderr(&out)
    );
}

/// The day's file without its last six hours and one hour in the morning: what it lacks is
/// asked of REST (auto), or left for a later run (archive), never confirmed empty.
#[test]
fn minutes_an_archive_lacks_are_asked_of_rest_not_confirmed_empty() {
    let ex = exchange_at(NOW);
    let day = ms("2024-03-02");
    let lost = |t: i64| {
        t >= day + 18 * 3_600_000 || (day + 10 * 3_600_000..day + 11 * 3_600_000).contains(&t)
    };
    let mut csv = String::new();
    for k in expected(&ex, "BTCUSDT", "1m", day, day + 86_400_000) {
        if !lost(k.open_time) {
            row(&mut csv, &k, false);
        }
    }
    ex.archive(|a| {
        a.replaced.insert(
            "BTCUSDT-1m-2024-03-02.zip".into(),
            zip_of("BTCUSDT-1m-2024-03-02.csv", &csv),
        );
    });

    // --source archive: the lost hours stay out of the checkpoint, nothing asked of REST
    // but each new series' first kline.
    let p = Project::new(&ex.url, "");
    p.ok(&[
        "backfill",
        "--from",
        "2024-03-02",
        "--to",
        "2024-03-03",
        "--source",
        "archive",
    ]);
    assert!(rest_starts(&ex).is_empty(), "{:?}", rest_starts(&ex));
    assert_eq!(ex.stats().klines_requests, 1, "the first-kline probe only");
    let covered = checkpoint_covered(&p, "BTCUSDT");
    for t in [
        day + 10 * 3_600_000,
        day + 18 * 3_600_000,
        day + 86_400_000 - MINUTE,
    ] {
        assert!(
            !covered.iter().any(|&(s, e)| s <= t && t < e),
            "{t} covered: {covered:?}"
        );
    }
    // auto then asks REST for exactly what the file lacks (and for the exchange's outages,
    // which REST confirms), and stages the day whole.
    p.ok(&["backfill", "--from", "2024-03-02", "--to", "2024-03-03"]);
    let starts = rest_starts(&ex);
    assert!(starts.contains(&(day + 10 * 3_600_000)), "{starts:?}");
    assert!(starts.contains(&(day + 18 * 3_600_000)), "{starts:?}");
    assert!(starts.len() <= 6, "{starts:?}");
    let want = expected(&ex, "BTCUSDT", "1m", day, day + 86_400_000);
    assert!(want.iter().any(|k| lost(k.open_time)));
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);

    // The same in one auto run from scratch.
    let q = Project::new(&ex.url, "");
    q.ok(&["backfill", "--from", "2024-03-02", "--to", "2024-03-03"]);
    assert_staged(&q.stage_dir(), "BTCUSDT", "1m", &want);
}

/// A 1 GiB CSV in a zip of a few MB with a valid checksum: refused at the bound, naming the
/// zip, with bounded memory.
#[test]
fn a_zip_bomb_is_refused_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.zip");
    let script = r#"
import sys, zipfile
line = b"1709337600000,1.5,2,1,1.75,10,1709337659999,15,3,4,6,0\n"
chunk = line * ((1 << 20) // len(line))
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
    with z.open("BTCUSDT-1m-2024-03-02.csv", "w", force_zip64=True) as f:
        for _ in range(1024):
            f.write(chunk)
"#;
    let made = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&bomb)
        .status()
        .unwrap();
    assert!(made.success());
    let zip = std::fs::read(&bomb).unwrap();
    assert!(zip.len() < 8 << 20, "{} bytes", zip.len());
    let ex = exchange_at(NOW);
    ex.archive(|a| {
        a.replaced
            .insert("BTCUSDT-1m-2024-03-02.zip".into(), bytes::Bytes::from(zip));
    });
    let p = Project::new(&ex.url, "");
    let mut cmd = p.cmd();
    cmd.args(["backfill", "--from", "2024-03-02", "--to", "2024-03-03"]);
    let (code, _, err, peak_mib) = run_measured(cmd);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("BTCUSDT-1m-2024-03-02.zip: the CSV inflates past")
            && err.contains("more than a day of 1m candles can hold"),
        "{err}"
    );
    eprintln!("zip bomb: peak RSS {peak_mib} MiB");
    assert!(peak_mib < 200, "peak RSS {peak_mib} MiB");
    assert!(parquet_files(&p.stage_dir()).is_empty());
}

// --- 4. Coinbase candles off the grid -----------------------------------------------------

#[test]
fn a_coinbase_candle_off_its_granularity_is_an_error_never_staged() {
    let cb = TestCoinbase::start(ms("2024-01-04T10:00:30Z"));
    cb.answer_next("[[1704240030,1,2,1,1,1]]");
    let p = Project::new(
        "http://127.0.0.1:9",
        &format!("  coinbase_url: {}\n", cb.url),
    );
    let out = p.run(&[
        "backfill",
        "--exchange",
        "coinbase",
        "--symbols",
        "BTC-USD",
        "--from",
        "2024-01-03",
        "--to",
        "2024-01-03T01:00:00Z",
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("time 1704240030 is not on the 60s grid"),
        "{}",
        stderr(&out)
    );
    assert!(
        staged_klines(&p.stage_dir())
            .keys()
            .all(|(_, _, t)| t % MINUTE == 0)
    );
}

// --- 5, 6. Rate limits ---------------------------------------------------------------------

/// 25 isolated 429s, more than the 20 a run used to die on: each waited out.
#[test]
fn isolated_rate_limits_are_waited_out_however_many() {
    let ex = exchange_at("2024-01-03T06:30:00Z");
    ex.inject((0..25).flat_map(|_| [Fault::TooMany(0), Fault::Pass]));
    let p = Project::new(&ex.url, "");
    let out = p.ok(&["backfill", "--from", "2023-12-01", "--source", "rest"]);
    assert_eq!(summary_number(&out, "rate-limited"), 25, "{out}");
    let want = expected(
        &ex,
        "BTCUSDT",
        "1m",
        ms("2023-12-01"),
        ms("2024-01-03T06:30:00Z"),
    );
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);
}

/// Limited with no successful answer for longer than max_wait_secs: exit 4, saying so.
#[test]
fn being_limited_longer_than_max_wait_ends_the_run_saying_why() {
    let ex = exchange_at("2024-01-03T06:30:00Z");
    ex.inject((0..20).map(|_| Fault::TooMany(1)));
    let p = Project::new(&ex.url, "  max_wait_secs: 2\n");
    let started = std::time::Instant::now();
    let out = p.run(&["backfill", "--from", "2024-01-02", "--source", "rest"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("rate-limited by the exchange (HTTP 429) with no successful answer for ")
            && err.contains("s more; not waiting past exchange.max_wait_secs (2)"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn an_infinite_retry_after_is_longer_than_max_wait() {
    for value in ["inf", "1e400"] {
        let ex = exchange_at("2024-01-03T06:30:00Z");
        ex.inject([Fault::TooManyRaw(value)]);
        let p = Project::new(&ex.url, "");
        let out = p.run(&["backfill", "--from", "2024-01-03", "--source", "rest"]);
        assert_eq!(out.status.code(), Some(4), "{value}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("rate-limited by the exchange (HTTP 429) for an unbounded time; not waiting that long (exchange.max_wait_secs is 300)"),
            "{value}: {}",
            stderr(&out)
        );
    }
}

/// Coinbase's limit (2 a second here, shared with other programs) under klines' pace of 8: the
/// 429s are waited out and the pace slows down; the run finishes with every candle.
#[test]
fn coinbase_rate_limits_slow_the_pace_and_never_end_the_run() {
    let now = ms("2024-01-04T10:00:30Z");
    let cb = TestCoinbase::start(now);
    cb.set_limit(2);
    let p = Project::new(
        "http://127.0.0.1:9",
        &format!("  coinbase_url: {}\n", cb.url),
    );
    let out = p.ok(&[
        "backfill",
        "--exchange",
        "coinbase",
        "--symbols",
        "BTC-USD,ETH-USD",
        "--from",
        "2024-01-02",
    ]);
    assert!(cb.stats().too_many > 0, "{:?}", cb.stats());
    assert_eq!(
        summary_number(&out, "rate-limited"),
        cb.stats().too_many,
        "{out}"
    );
    for sym in ["BTC-USD", "ETH-USD"] {
        let want = cb.closed(sym, MINUTE, ms("2024-01-02"), now);
        assert_staged(&p.stage_dir(), sym, "1m", &want);
    }
}

// --- 8. An archive host that cannot be reached ------------------------------------------

#[test]
fn an_unreachable_archive_is_decided_once_and_said_in_the_summary() {
    let ex = exchange_at(NOW);
    let p = Project::new(&ex.url, "");
    let out = p
        .cmd()
        .args([
            "backfill",
            "--symbols",
            "BTCUSDT,ETHUSDT",
            "--from",
            "2024-02-27",
            "--archive-url",
            "http://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.matches("the archive cannot be reached").count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("retrying the archive").count(), 0, "{err}");
    assert!(
        stdout(&out).contains("archive: unreachable"),
        "{}",
        stdout(&out)
    );
    for sym in ["BTCUSDT", "ETHUSDT"] {
        let want = expected(&ex, sym, "1m", ms("2024-02-27"), ms(NOW));
        assert_staged(&p.stage_dir(), sym, "1m", &want);
    }
}

// --- 9, 10. Configuration: the environment, and values never echoed -----------------------

#[test]
fn debug_takes_the_environment_over_klines_yml() {
    let ex = exchange_at(NOW);
    let p = Project::new("http://127.0.0.1:9", "");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = p
        .cmd()
        .arg("debug")
        .env("KLINES_BASE_URL", &ex.url)
        .env("KLINES_STAGE", elsewhere.path())
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains(&format!("  url: binance {}", ex.url)),
        "{text}"
    );
    assert!(text.contains("  symbols: OK BTCUSDT TRADING"), "{text}");
    assert!(
        text.contains(&format!("  location: {}", elsewhere.path().display())),
        "{text}"
    );
    assert!(ex.stats().requests >= 2, "the exchange was asked");
}

#[test]
fn a_profile_value_of_the_wrong_type_names_the_key_never_the_value() {
    let p = Project::new("http://127.0.0.1:9", "");
    for (line, key) in [
        ("      port: \"p8472991337\"\n", "port"),
        ("      password: [8472991337]\n", "password"),
    ] {
        p.profiles(
            "pg",
            &format!("    pg:\n      type: postgres\n      host: 127.0.0.1\n      user: postgres\n      dbname: x\n{line}"),
        );
        let out = p.run(&["load"]);
        let all = stdout(&out) + &stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(
            all.contains("profiles.yml: profile klines, output pg: ")
                && all.contains(&format!(": {key}: invalid type")),
            "{all}"
        );
        assert!(!all.contains("8472991337"), "{all}");
    }
}

// --- 12. init through a symbolic link -----------------------------------------------------

#[test]
fn init_writes_nothing_through_a_symbolic_link() {
    let root = tempfile::tempdir().unwrap();
    let (proj, other) = (root.path().join("p"), root.path().join("o"));
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::os::unix::fs::symlink("../o", proj.join("models")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_klines"))
        .args(["init", proj.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("models: a symbolic link"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_dir(&other).unwrap().count(),
        0,
        "wrote outside the project"
    );
    assert!(!proj.join("klines.yml").exists(), "wrote before refusing");

    // A dangling link in a file's place is refused too (writing would create its target).
    std::fs::remove_file(proj.join("models")).unwrap();
    std::os::unix::fs::symlink("../o/klines.yml", proj.join("klines.yml")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_klines"))
        .args(["init", proj.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!other.join("klines.yml").exists());
}

// --- 13, 14. dbt habits: tests come with their models, and read the run's vars ------------

fn ls(p: &Project, args: &[&str]) -> Vec<String> {
    let mut all = vec!["ls", "--resource-type", "test", "-o", "name"];
    all.extend(args);
    let mut names: Vec<String> = p.ok(&all).lines().map(str::to_string).collect();
    names.sort();
    names
}

#[test]
fn a_selected_model_brings_its_tests_as_in_dbt() {
    let p = Project::new("http://127.0.0.1:9", "");
    with_repo_models(&p);
    let flow = ls(&p, &["-s", "FLOW_1M"]);
    assert!(flow.len() >= 5, "{flow:?}");
    assert!(flow.iter().all(|t| t.contains("FLOW_1M")), "{flow:?}");
    assert_eq!(
        ls(&p, &["-s", "FLOW_1M+"]),
        flow,
        "the + form selects the same tests"
    );
    let tagged = ls(&p, &["-s", "tag:flow"]);
    assert!(tagged.len() >= 5 * flow.len(), "{tagged:?}");
    // dbt's other modes: empty brings none; cautious leaves out a test with a parent not
    // selected (the relationships test on the symbols seed); buildable takes it back when
    // that parent is an ancestor.
    assert!(ls(&p, &["-s", "FLOW_1M", "--indirect-selection", "empty"]).is_empty());
    let ohlc = ls(&p, &["-s", "TRADES_OHLC_1M"]);
    assert!(
        ohlc.iter().any(|t| t.starts_with("relationships_")),
        "{ohlc:?}"
    );
    let cautious = ls(
        &p,
        &["-s", "TRADES_OHLC_1M", "--indirect-selection", "cautious"],
    );
    assert!(
        !cautious.iter().any(|t| t.starts_with("relationships_")),
        "{cautious:?}"
    );
    assert_eq!(cautious.len() + 1, ohlc.len(), "{cautious:?} vs {ohlc:?}");
    let with_seed = ls(
        &p,
        &[
            "-s",
            "symbols",
            "TRADES_OHLC_1M",
            "--indirect-selection",
            "cautious",
        ],
    );
    assert!(
        with_seed.iter().any(|t| t.starts_with("relationships_")),
        "{with_seed:?}"
    );
    // A test on an excluded model is excluded.
    let rest = ls(&p, &["-s", "tag:flow", "--exclude", "FLOW_1M"]);
    assert_eq!(rest.len(), tagged.len() - flow.len(), "{rest:?}");
    assert!(!rest.iter().any(|t| t.contains("FLOW_1M_")), "{rest:?}");
}

#[test]
fn test_and_build_run_a_models_tests_with_the_runs_vars() {
    let ex = exchange_at("2024-01-03T06:30:00Z");
    let p = Project::new(&ex.url, "");
    with_repo_models(&p);
    p.ok(&["backfill", "--from", "2024-01-01"]);
    p.ok(&["load"]);
    let vars = "{whale_ratio: 2}";
    let out = p.ok(&[
        "build", "-s", "tag:ohlc", "tag:flow", "symbols", "--vars", vars,
    ]);
    assert!(out.contains(" 0 failed") && !out.contains("ERROR"), "{out}");
    let tests = out
        .lines()
        .filter(|l| l.contains(" PASS ") && l.contains("FLOW_1M"))
        .count();
    assert!(tests >= 5, "build ran the model's tests: {out}");
    // `test -s MODEL` and `-s tag:` find them too, reading the same vars as the build.
    for select in ["FLOW_1M", "tag:flow"] {
        let out = p.ok(&["test", "-s", select, "--vars", vars]);
        assert!(out.contains(" 0 failed"), "{select}: {out}");
        let passed = out.lines().filter(|l| l.contains(" PASS ")).count();
        assert!(passed >= 5, "{select}: {out}");
    }
    // With the default ratio the built table does not hold: the whale test says so.
    let out = p.run(&["test", "-s", "FLOW_1M"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "some failed, others passed: {}",
        stdout(&out)
    );
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.contains("FAIL") && l.contains("expression_is_true_FLOW_1M")),
        "{}",
        stdout(&out)
    );
}

// --- 15. VWAP exactly rounded everywhere ----------------------------------------------------

/// `num / den` in units of 1e-8, rounded half up at 8 decimals, from exact integers.
fn rounded_ratio(num: i128, den: i128) -> Option<i128> {
    (den != 0).then(|| (2 * num * 100_000_000 + den) / (2 * den))
}

/// Every VWAP and day VWAP of the FLOW tables on the real fixtures equals the exact ratio of
/// its candles' decimals rounded at 8 places (schema.yml's promise), on each warehouse.
fn vwaps_are_exact(wh: Wh) {
    let (ex, p) = crate::models::real_fixtures_loaded(&wh);
    // Five minutes whose quote volume / volume is a tie at the ninth decimal, which a double
    // division gets wrong about one time in twelve (these five it does, on DuckDB): the
    // exchange corrects them, and the correction is staged and loaded.
    let ties = [
        ("86733.64798010", "4"),
        ("143642.07811806", "4"),
        ("529144.07421812", "8"),
        ("648214.98910860", "8"),
        ("36300.42747821", "2"),
    ];
    for (i, (q, v)) in ties.iter().enumerate() {
        let t = ms("2025-08-06T01:00:00Z") + i as i64 * 7 * MINUTE;
        let mut k = ex.market().minute("BTCUSDT", t).unwrap();
        k.quote_volume = klines::decimal::parse(q).unwrap();
        k.volume = klines::decimal::parse(v).unwrap();
        k.taker_buy_base_volume = k.volume / 2;
        k.taker_buy_quote_volume = k.quote_volume / 2;
        ex.correct("BTCUSDT", k);
    }
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT",
        "--from",
        "2025-08-06",
        "--to",
        "2025-08-07",
        "--full-refresh",
        "--source",
        "rest",
    ]);
    p.ok(&["load"]);
    p.ok(&["run", "-s", "tag:ohlc", "tag:flow"]);
    let s = wh.schema();
    let mut compared = 0;
    for iv in ["1M", "5M", "15M", "1H", "1D"] {
        let rows = wh.query(&p, &format!(
            "SELECT o.symbol, o.open_time, o.quote_volume, o.volume, f.vwap, f.vwap_day \
             FROM {s}.TRADES_OHLC_{iv} o JOIN {s}.FLOW_{iv} f ON f.symbol = o.symbol AND f.open_time = o.open_time \
             WHERE o.is_complete ORDER BY o.symbol, o.open_time"
        ));
        let (mut day, mut dq, mut dv) = ((String::new(), i64::MIN), 0i128, 0i128);
        for r in &rows {
            let (sym, t) = (
                r[0].as_str().unwrap().to_string(),
                r[1].as_millis().unwrap(),
            );
            let (q, v) = (r[2].to_scaled(8).unwrap(), r[3].to_scaled(8).unwrap());
            if (sym.clone(), t.div_euclid(86_400_000)) != day {
                day = (sym.clone(), t.div_euclid(86_400_000));
                (dq, dv) = (0, 0);
            }
            (dq, dv) = (dq + q, dv + v);
            let at = format!("FLOW_{iv} {sym} {}", klines::time::format_ms(t));
            assert_eq!(
                r[4].to_scaled(8),
                rounded_ratio(q, v),
                "{at}: vwap of {q} / {v}"
            );
            assert_eq!(
                r[5].to_scaled(8),
                rounded_ratio(dq, dv),
                "{at}: vwap_day of {dq} / {dv}"
            );
            compared += 2;
        }
    }
    assert!(compared > 15_000, "{compared}");
}

#[test]
fn vwaps_are_exactly_rounded_on_duckdb() {
    vwaps_are_exact(Wh::DuckDb);
}

#[test]
fn vwaps_are_exactly_rounded_on_postgres() {
    vwaps_are_exact(Wh::postgres());
}
