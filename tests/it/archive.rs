//! `klines backfill --source auto|archive|rest`: Binance's bulk archives served by the test
//! exchange over HTTP (zips, checksums, missing and corrupt files, microsecond and header-row
//! files), against REST backfills of the same range.

use crate::support::exchange::data::is_outage;
use crate::support::*;

const NOW: &str = "2024-03-05T13:37:30Z";

fn exchange_at(now: &str) -> TestExchange {
    TestExchange::start(ExchangeConfig::synthetic(ms(now)))
}

fn checkpoint(p: &Project, market: &str, symbol: &str) -> serde_json::Value {
    let path = p.path().join(format!(
        "state/checkpoints/exchange=binance/market={market}/interval=1m/symbol={symbol}.json"
    ));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
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

/// The README's two lines, as written: the archive backfill stages what the REST one does.
#[test]
fn archives_stage_the_same_files_as_rest_and_rest_only_fetches_today() {
    let lines: Vec<Vec<String>> = crate::readme::readme_commands()
        .iter()
        .filter(|c| c.starts_with("klines backfill --symbols BTCUSDT --from 2024-01-01"))
        .map(|c| crate::readme::words(c))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1].last().map(String::as_str), Some("rest"));
    let run = |ex: &TestExchange, p: &Project, line: &[String]| {
        let out = p
            .cmd()
            .args(&line[1..])
            .env("KLINES_BASE_URL", &ex.url)
            .env("KLINES_ARCHIVE_URL", &ex.url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{line:?}: {}", stderr(&out));
        stdout(&out)
    };
    let ex = exchange_at(NOW);
    let rest = Project::new("http://127.0.0.1:9", "");
    run(&ex, &rest, &lines[1]);
    let rest_requests = ex.stats().klines_requests;
    assert_eq!(
        ex.stats().archive_requests,
        0,
        "--source rest asked the archive"
    );

    let ex = exchange_at(NOW);
    let auto = Project::new("http://127.0.0.1:9", "");
    let out = run(&ex, &auto, &lines[0]);
    // January and February as monthly files, March 1 to 4 as daily files, today from REST.
    assert_eq!(ex.stats().archive_files, 2 + 4);
    assert_eq!(summary_number(&out, "files"), 31 + 29 + 4 + 1);
    // REST is asked for today, and for the minutes the files lack (the exchange's outages,
    // which only REST can confirm): never for a minute a file holds.
    let starts = rest_starts(&ex);
    assert!(!starts.is_empty());
    assert!(
        starts
            .iter()
            .all(|&t| t >= ms("2024-03-05") || is_outage(t)),
        "REST was asked for history the archive holds: {starts:?}"
    );
    let history = starts.iter().filter(|&&t| t < ms("2024-03-05")).count();
    assert!(
        history > 0 && (history as u64) < rest_requests,
        "{history} vs {rest_requests}"
    );
    assert!(out.contains("archive: 6 files"), "{out}");

    // The same files, byte for byte, and the same manifest.
    let (a, b) = (
        parquet_files(&rest.stage_dir()),
        parquet_files(&auto.stage_dir()),
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert_eq!(a.len(), 31 + 29 + 5);
    for (key, bytes) in &a {
        assert!(
            b[key] == *bytes,
            "{key} differs between the REST and archive backfills"
        );
    }
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-01-01"), ms(NOW));
    assert_staged(&auto.stage_dir(), "BTCUSDT", "1m", &want);

    // The checkpoint keeps each file's checksum; a second run asks only for checksums.
    let cp = checkpoint(&auto, "spot", "BTCUSDT");
    let archives = cp["archives"].as_object().unwrap();
    assert_eq!(archives.len(), 6, "{archives:?}");
    assert!(
        archives["BTCUSDT-1m-2024-01.zip"]["sha256"]
            .as_str()
            .unwrap()
            .len()
            == 64
    );
    let files = ex.stats().archive_files;
    let out = run(&ex, &auto, &lines[0]);
    assert_eq!(summary_number(&out, "rows"), 0);
    assert_eq!(ex.stats().archive_files, files);
}

#[test]
fn a_day_the_archive_lacks_comes_from_rest_and_a_late_month_from_its_days() {
    let ex = exchange_at(NOW);
    ex.archive(|a| {
        a.missing.insert("BTCUSDT-1m-2024-03-02.zip".into());
        // February's monthly file is not out yet: its days are.
        a.missing.insert("BTCUSDT-1m-2024-02.zip".into());
    });
    let p = Project::new(&ex.url, "");
    p.ok(&["backfill", "--from", "2024-02-01"]);
    let starts = rest_starts(&ex);
    assert!(
        starts
            .iter()
            .all(|&t| (ms("2024-03-02")..ms("2024-03-03")).contains(&t)
                || t >= ms("2024-03-05")
                || is_outage(t)),
        "{starts:?}"
    );
    assert!(starts.iter().any(|&t| t == ms("2024-03-02")), "{starts:?}");
    assert_eq!(ex.stats().archive_files, 29 + 3);
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-02-01"), ms(NOW));
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);
}

#[test]
fn a_corrupt_zip_fails_naming_the_file_and_stages_nothing_of_it() {
    let ex = exchange_at(NOW);
    ex.archive(|a| {
        a.corrupt.insert("BTCUSDT-1m-2024-03-03.zip".into());
    });
    let p = Project::new(&ex.url, "");
    let out = p.run(&["backfill", "--from", "2024-03-01"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("BTCUSDT-1m-2024-03-03.zip: its checksum is"),
        "{err}"
    );
    let names: Vec<String> = parquet_files(&p.stage_dir()).into_keys().collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("2024-03-03") || n.contains("20240303")),
        "{names:?}"
    );
    // What came before it is staged and checkpointed; a run after the fix finishes.
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("BTCUSDT-1m-2024-03-01.parquet")),
        "{names:?}"
    );
    ex.archive(|a| a.corrupt.clear());
    p.ok(&["backfill", "--from", "2024-03-01"]);
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-03-01"), ms(NOW));
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);
}

#[test]
fn a_republished_file_is_noticed_and_staged_again() {
    let ex = exchange_at(NOW);
    let p = Project::new(&ex.url, "");
    p.ok(&["backfill", "--from", "2024-03-01"]);
    let downloads = ex.stats().archive_files;
    let day = ms("2024-03-03");
    let mut k = ex.market().minute("BTCUSDT", day + 600 * 60_000).unwrap();
    k.close += 1;
    k.high = k.high.max(k.close);
    ex.correct("BTCUSDT", k.clone());
    let out = p
        .cmd()
        .args(["backfill", "--from", "2024-03-01"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("re-published"), "{}", stderr(&out));
    // Only that day's zip was downloaded again.
    assert_eq!(ex.stats().archive_files, downloads + 1);
    let staged = staged_klines(&p.stage_dir());
    assert_eq!(staged[&("BTCUSDT".into(), "1m".into(), k.open_time)], k);
    // Two manifest entries for the day's file: the loader takes the newer.
    let entries = files(&p.stage_dir())
        .into_keys()
        .filter(|k| k.starts_with("_manifest/") && k.contains("BTCUSDT-1m-2024-03-03.parquet"))
        .count();
    assert_eq!(entries, 2);
}

#[test]
fn an_unreachable_archive_means_rest_with_a_warning() {
    let ex = exchange_at(NOW);
    let p = Project::new(&ex.url, "");
    let out = p
        .cmd()
        .args([
            "backfill",
            "--from",
            "2024-03-01",
            "--archive-url",
            "http://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out)
            .matches("the archive cannot be reached")
            .count(),
        1,
        "{}",
        stderr(&out)
    );
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-03-01"), ms(NOW));
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);
}

#[test]
fn source_archive_leaves_what_the_archive_lacks_for_a_later_run() {
    let ex = exchange_at(NOW);
    ex.archive(|a| {
        a.missing.insert("BTCUSDT-1m-2024-03-02.zip".into());
    });
    let p = Project::new(&ex.url, "");
    let out = p.ok(&["backfill", "--from", "2024-03-01", "--source", "archive"]);
    assert!(rest_starts(&ex).is_empty(), "{:?}", rest_starts(&ex));
    assert!(out.contains("1 missing"), "{out}");
    let cp = checkpoint(&p, "spot", "BTCUSDT");
    let covered: Vec<(i64, i64)> = serde_json::from_value(cp["covered"].clone()).unwrap();
    // The days the archive has, but not their outage minutes: the files' word is not enough
    // to call a minute empty.
    let mut want: Vec<(i64, i64)> = Vec::new();
    let mut t = ms("2024-03-01");
    while t < ms("2024-03-05") {
        if !(ms("2024-03-02")..ms("2024-03-03")).contains(&t) && !is_outage(t) {
            match want.last_mut() {
                Some(last) if last.1 == t => last.1 = t + 60_000,
                _ => want.push((t, t + 60_000)),
            }
        }
        t += 60_000;
    }
    assert_eq!(covered, want);
    // auto then fetches only the lacking day, the outage minutes and today over REST.
    p.ok(&["backfill", "--from", "2024-03-01"]);
    let starts = rest_starts(&ex);
    assert!(
        starts
            .iter()
            .all(|&t| (ms("2024-03-02")..ms("2024-03-03")).contains(&t)
                || t >= ms("2024-03-05")
                || is_outage(t)),
        "{starts:?}"
    );
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-03-01"), ms(NOW));
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);
}

#[test]
fn microsecond_spot_files_and_futures_header_rows_stage_exactly() {
    // Spot from 2025 on: microsecond times in the files.
    let ex = exchange_at("2025-01-04T06:00:00Z");
    let p = Project::new(&ex.url, "");
    p.ok(&[
        "backfill",
        "--from",
        "2024-12-30",
        "--to",
        "2025-01-04",
        "--source",
        "archive",
    ]);
    assert_eq!(ex.stats().archive_files, 5);
    let want = expected(&ex, "BTCUSDT", "1m", ms("2024-12-30"), ms("2025-01-04"));
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);

    // USD-M futures files from 2022-05 on start with a header row.
    let ex = exchange_at("2022-06-03T00:00:00Z");
    let p = Project::new(&ex.url, "");
    p.ok(&[
        "backfill",
        "--market",
        "usdm",
        "--from",
        "2022-05-30",
        "--to",
        "2022-06-02",
        "--source",
        "archive",
    ]);
    assert_eq!(ex.stats().archive_files, 3);
    let want = expected(&ex, "BTCUSDT", "1m", ms("2022-05-30"), ms("2022-06-02"));
    assert_staged(&p.stage_dir(), "BTCUSDT", "1m", &want);
}

/// The real klines: the archive days the test exchange serves from Binance's own zips stage
/// the rows those zips hold, spot and USD-M.
#[test]
fn real_archive_days_stage_what_binances_zips_hold() {
    let ex = TestExchange::start(ExchangeConfig::real_full12(ms("2022-09-10")));
    let p = Project::new(&ex.url, "");
    p.ok(&[
        "backfill",
        "--symbols",
        "ETHUSDT",
        "--from",
        "2022-08-14",
        "--to",
        "2022-08-16",
        "--source",
        "archive",
    ]);
    let q = Project::new(&ex.url, "");
    q.ok(&[
        "backfill",
        "--market",
        "usdm",
        "--from",
        "2022-09-05",
        "--to",
        "2022-09-07",
        "--source",
        "archive",
    ]);
    assert_eq!(ex.stats().archive_files, 4);
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/binance-real-full12");
    for (project, symbol, zips) in [
        (
            &p,
            "ETHUSDT",
            [
                "spot/ETHUSDT-1m-2022-08-14.zip",
                "spot/ETHUSDT-1m-2022-08-15.zip",
            ],
        ),
        (
            &q,
            "BTCUSDT",
            [
                "usdm/BTCUSDT-1m-2022-09-05.zip",
                "usdm/BTCUSDT-1m-2022-09-06.zip",
            ],
        ),
    ] {
        let mut want = Vec::new();
        for z in zips {
            let name = z.rsplit('/').next().unwrap();
            let b = klines::sources::binance::archive::parse(
                name,
                &std::fs::read(dir.join(z)).unwrap(),
                klines::market::Interval::M1,
                klines::sources::binance::archive::Period::day_of(ms(
                    &name[name.len() - 14..name.len() - 4]
                )),
            )
            .unwrap();
            want.extend(b.iter());
        }
        assert_eq!(want.len(), 2 * 1440);
        assert_staged(&project.stage_dir(), symbol, "1m", &want);
    }
}
