//! Crash windows: the real binary aborted (as by `kill -9`, through `KLINES_FAILPOINT`) right
//! after each durable step of a backfill (data put, manifest entry, checkpoint) and of a load
//! (mid-batch, after a commit), on a local stage and on S3. The next run must end exactly
//! where an uninterrupted run ends: the same files, byte for byte, and every row loaded once.

use std::collections::BTreeMap;
use std::path::Path;

use klines::stage::Stage;

use crate::stage::s3_stage_url;
use crate::support::*;

const NOW: &str = "2024-01-05T13:37:30Z";
const RANGE: [&str; 4] = ["--from", "2024-01-01", "--to", "2024-01-04T12:00:00Z"];

/// Every object of the stage but the state (checkpoints, locks), with its bytes.
fn stage_objects(url: &str, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let stage = Stage::open(url, &BTreeMap::new(), dir).unwrap();
    let rt = runtime();
    let objects = rt.block_on(stage.list("")).unwrap();
    objects
        .into_iter()
        .filter(|o| !o.key.starts_with("_state/"))
        .map(|o| {
            let bytes = rt.block_on(stage.get(&o.key)).unwrap().to_vec();
            (o.key, bytes)
        })
        .collect()
}

fn crashed(out: &std::process::Output, point: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{point} was not reached: {:?}\n{}",
        out.status,
        stderr(out)
    );
    assert!(
        stderr(out).contains(&format!("failpoint {point}")),
        "{}",
        stderr(out)
    );
}

fn backfill_crash_windows(s3: bool) {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    // The reference: one uninterrupted run.
    let reference = Project::new(&ex.url, "");
    let mut args = vec!["backfill", "--symbols", "BTCUSDT,ETHUSDT"];
    args.extend(RANGE);
    reference.ok(&args);
    let want = stage_objects("stage", reference.path());
    assert!(want.len() >= 16, "{:?}", want.keys());

    for point in [
        "backfill.after_data_put",
        "backfill.after_manifest",
        "backfill.after_checkpoint",
    ] {
        for nth in [1, 3] {
            let url = if s3 {
                s3_stage_url()
            } else {
                "stage".to_string()
            };
            // An object-store lease outlives a killed run: a short one, so the re-run may
            // take it over a second later (a directory's flock dies with the process).
            let p = Project::new(
                &ex.url,
                &format!("stage: {url}\nstate: stage\nlease_secs: 1\n"),
            );
            let out = p
                .cmd()
                .args(&args)
                .env("KLINES_FAILPOINT", format!("{point}:{nth}"))
                .output()
                .unwrap();
            if point == "backfill.after_checkpoint" && out.status.success() {
                // Checkpoints are saved once a second: a quick run saves only once.
                assert_eq!(nth, 3, "{}", stderr(&out));
            } else {
                crashed(&out, point);
            }
            if s3 {
                std::thread::sleep(std::time::Duration::from_millis(1100));
            }
            p.ok(&args);
            let got = stage_objects(&url, p.path());
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>(),
                "{point}:{nth} on {url}"
            );
            for (k, v) in &want {
                assert!(got[k] == *v, "{point}:{nth}: {k} differs");
            }
            // And the checkpoint knows it all: a third run fetches nothing.
            let before = ex.stats().klines_requests;
            p.ok(&args);
            assert_eq!(ex.stats().klines_requests, before, "{point}:{nth}");
        }
    }
}

#[test]
fn backfill_crash_windows_on_a_local_stage() {
    backfill_crash_windows(false);
}

#[test]
fn backfill_crash_windows_on_s3() {
    backfill_crash_windows(true);
}

fn load_crash_windows(wh: Wh) {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    // One day's file per batch, so a crash falls between batches or inside one.
    let p = Project::new(&ex.url, "load:\n  batch_rows: 1000\n");
    wh.setup(&p);
    let mut args = vec!["backfill"];
    args.extend(RANGE);
    p.ok(&args);
    let want = expected(&ex, "BTCUSDT", "1m", ms(RANGE[1]), ms(RANGE[3]));
    let count = |table: &str| -> i64 {
        wh.query(&p, &format!("SELECT count(*) FROM raw.{table}"))[0][0]
            .as_i64()
            .unwrap()
    };

    let out = p
        .cmd()
        .arg("load")
        .env("KLINES_FAILPOINT", "load.mid_batch:2")
        .output()
        .unwrap();
    crashed(&out, "load.mid_batch");
    // The first batch is in, whole; nothing of the second.
    assert_eq!(count("klines_load_history"), 1);
    let recorded = wh.query(&p, "SELECT sum(rows) FROM raw.klines_load_history")[0][0].to_scaled(0);
    assert_eq!(recorded, Some(count("klines") as i128));
    assert!(count("klines") >= 1400);

    let out = p
        .cmd()
        .arg("load")
        .env("KLINES_FAILPOINT", "load.after_commit:1")
        .output()
        .unwrap();
    crashed(&out, "load.after_commit");
    assert_eq!(count("klines_load_history"), 2);

    let out = p.ok(&["load"]);
    assert!(out.contains("load: 2 files"), "{out}");
    assert_eq!(count("klines"), want.len() as i64);
    assert_eq!(count("klines_load_history"), 4);
    let sum = wh.query(&p, "SELECT sum(close) FROM raw.klines")[0][0].to_scaled(8);
    let want_sum: i128 = want.iter().map(|k| k.close).sum();
    assert_eq!(sum, Some(want_sum), "every row exactly once");
}

#[test]
fn load_crash_windows_on_duckdb() {
    load_crash_windows(Wh::DuckDb);
}

#[test]
fn load_crash_windows_on_postgres() {
    load_crash_windows(Wh::postgres());
}

/// Two workers on one S3 stage: the first is paused (SIGSTOP) past its lease, the second takes
/// the lease over and finishes; when the first wakes, its writes are fenced off (its next
/// checkpoint write fails, or its renewal finds the lease gone) and it stops. The stage and
/// the checkpoint end exactly as one uninterrupted run leaves them.
#[test]
fn a_paused_worker_cannot_write_after_another_took_its_lease_over() {
    use std::process::Stdio;
    use std::time::Duration;
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let reference = Project::new(&ex.url, "");
    let args = ["backfill", "--from", "2023-11-01", "--to", "2024-01-01"];
    reference.ok(&args);
    let want = stage_objects("stage", reference.path());

    // Slow answers keep the first worker busy for many seconds.
    ex.set_latency(Duration::from_millis(150));
    let url = s3_stage_url();
    let p = Project::new(
        &ex.url,
        &format!("stage: {url}\nstate: stage\nlease_secs: 2\n"),
    );
    let a = p
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signals to our own child.
    unsafe { libc::kill(a.id() as i32, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(2500));
    let b = p.run(&args);
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(
        stderr(&b).contains("took over an expired lock"),
        "{}",
        stderr(&b)
    );
    unsafe { libc::kill(a.id() as i32, libc::SIGCONT) };
    let a = a.wait_with_output().unwrap();
    assert!(
        !a.status.success(),
        "the paused worker went on:\n{}",
        stderr(&a)
    );
    assert!(
        stderr(&a).contains("lost the lock") || stderr(&a).contains("took the lock over"),
        "{}",
        stderr(&a)
    );
    ex.set_latency(Duration::ZERO);
    assert_eq!(stage_objects(&url, p.path()), want);
    let before = ex.stats().klines_requests;
    p.ok(&args);
    assert_eq!(
        ex.stats().klines_requests,
        before,
        "the checkpoint is the whole range"
    );
}
