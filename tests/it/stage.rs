//! The stage: one conformance suite that every backend runs (a local directory, memory, and
//! a real S3 server), and backfills into S3 with the state kept in the stage.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use klines::stage::Stage;
use object_store::{PutMode, UpdateVersion};

use crate::support::*;

/// A fresh, empty S3 stage on the test server (SeaweedFS), under a unique prefix.
pub fn s3_stage_url() -> String {
    let bucket = required_env("KLINES_TEST_S3_BUCKET");
    required_env("AWS_ENDPOINT_URL");
    format!("s3://{bucket}/{}", uuid::Uuid::new_v4())
}

async fn conformance(stage: &Stage, conditional_update: bool) {
    // Put, get, head; keys with hive partitions.
    let key = "market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-01.parquet";
    stage.put(key, Bytes::from_static(b"one")).await.unwrap();
    assert_eq!(stage.get(key).await.unwrap(), Bytes::from_static(b"one"));
    assert_eq!(stage.head(key).await.unwrap().unwrap().size, 3);
    assert!(stage.head("nothing/here").await.unwrap().is_none());
    assert!(stage.get_opt("nothing/here").await.unwrap().is_none());
    // Overwrite is atomic and complete.
    stage.put(key, Bytes::from_static(b"second")).await.unwrap();
    assert_eq!(stage.get(key).await.unwrap(), Bytes::from_static(b"second"));
    // Listing: relative keys, sorted, prefix-bounded.
    stage
        .put("_manifest/a.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    stage
        .put(
            "market=spot/interval=1m/symbol=ETHUSDT/x.parquet",
            Bytes::from_static(b"e"),
        )
        .await
        .unwrap();
    let listed: Vec<String> = stage
        .list("market=spot")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        listed,
        [
            "market=spot/interval=1m/symbol=BTCUSDT/BTCUSDT-1m-2024-01-01.parquet",
            "market=spot/interval=1m/symbol=ETHUSDT/x.parquet"
        ]
    );
    assert_eq!(stage.list("_manifest").await.unwrap().len(), 1);
    assert!(stage.list("market=usdm").await.unwrap().is_empty());
    // A child stage sees only its part.
    let child = stage.child("_state");
    child
        .put("checkpoints/a.json", Bytes::from_static(b"1"))
        .await
        .unwrap();
    assert_eq!(child.list("").await.unwrap().len(), 1);
    assert_eq!(
        stage.get("_state/checkpoints/a.json").await.unwrap(),
        Bytes::from_static(b"1")
    );
    // Create-if-absent, the basis of locks.
    let lock = "_state/locks/x.lock";
    let created = stage
        .put_mode(lock, Bytes::from_static(b"a"), PutMode::Create)
        .await
        .unwrap();
    let again = stage
        .put_mode(lock, Bytes::from_static(b"b"), PutMode::Create)
        .await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "{again:?}"
    );
    if conditional_update {
        let v = UpdateVersion {
            e_tag: created.e_tag.clone(),
            version: created.version.clone(),
        };
        stage
            .put_mode(lock, Bytes::from_static(b"c"), PutMode::Update(v.clone()))
            .await
            .unwrap();
        let stale = stage
            .put_mode(lock, Bytes::from_static(b"d"), PutMode::Update(v))
            .await;
        assert!(
            matches!(stale, Err(object_store::Error::Precondition { .. })),
            "{stale:?}"
        );
        assert_eq!(stage.get(lock).await.unwrap(), Bytes::from_static(b"c"));
    }
    // Delete is idempotent.
    stage.delete(lock).await.unwrap();
    stage.delete(lock).await.unwrap();
    assert!(stage.head(lock).await.unwrap().is_none());
}

#[tokio::test]
async fn a_local_directory_passes_the_stage_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let stage = Stage::open("stage", &BTreeMap::new(), dir.path()).unwrap();
    conformance(&stage, false).await;
    assert!(dir.path().join("stage/_manifest/a.json").is_file());
}

#[tokio::test]
async fn memory_passes_the_stage_conformance_suite() {
    let stage = Stage::open("memory://", &BTreeMap::new(), Path::new(".")).unwrap();
    conformance(&stage, true).await;
}

#[tokio::test]
async fn s3_passes_the_stage_conformance_suite() {
    let stage = Stage::open(&s3_stage_url(), &BTreeMap::new(), Path::new(".")).unwrap();
    conformance(&stage, true).await;
}

#[tokio::test]
async fn s3_refuses_wrong_credentials() {
    let url = s3_stage_url();
    let mut options = BTreeMap::new();
    options.insert(
        "secret_access_key".to_string(),
        "not-the-secret".to_string(),
    );
    let stage = Stage::open(&url, &options, Path::new(".")).unwrap();
    let err = stage
        .put("x", Bytes::from_static(b"x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("not-the-secret"), "{err}");
}

#[test]
fn backfill_stages_to_s3_and_resumes_from_state_kept_in_the_stage() {
    let url = s3_stage_url();
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms("2024-01-05T13:37:30Z")));
    let p = Project::new(&ex.url, &format!("stage: {url}\nstate: stage\n"));
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--from",
        "2024-01-03",
    ]);
    assert!(!p.path().join("stage").exists() && !p.path().join("state").exists());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let stage = Stage::open(&url, &BTreeMap::new(), Path::new(".")).unwrap();
    let objects = rt.block_on(stage.list("")).unwrap();
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    assert!(
        keys.contains(
            &"exchange=binance/market=spot/interval=1m/symbol=ETHUSDT/ETHUSDT-1m-2024-01-04.parquet"
        ),
        "{keys:?}"
    );
    assert!(
        keys.contains(
            &"_state/checkpoints/exchange=binance/market=spot/interval=1m/symbol=BTCUSDT.json"
        ),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.starts_with("_state/locks/")),
        "locks left behind: {keys:?}"
    );
    for sym in ["BTCUSDT", "ETHUSDT"] {
        let mut got = Vec::new();
        for o in objects
            .iter()
            .filter(|o| o.key.ends_with(".parquet") && o.key.contains(sym))
        {
            let bytes = rt.block_on(stage.get(&o.key)).unwrap();
            got.extend(
                klines::stage::parquet::decode(&o.key, bytes)
                    .unwrap()
                    .klines
                    .iter(),
            );
        }
        assert_eq!(
            got,
            expected(&ex, sym, "1m", ms("2024-01-03"), ex.now()),
            "{sym}"
        );
    }

    // Resuming reads the checkpoint from S3: nothing is downloaded again.
    let before = ex.stats().klines_requests;
    p.ok(&[
        "backfill",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--from",
        "2024-01-03",
    ]);
    assert_eq!(ex.stats().klines_requests, before);

    // A lease held elsewhere stops a second run.
    let store = klines::extract::state::StateStore::Object(
        stage.child("_state"),
        klines::extract::state::LEASE,
    );
    let series = klines::market::Series {
        exchange: klines::market::Exchange::BINANCE,
        market: klines::market::Market::Spot,
        symbol: "BTCUSDT".parse().unwrap(),
        interval: klines::market::Interval::M1,
    };
    let lock = rt.block_on(store.lock(&series)).unwrap();
    let out = p.run(&["backfill", "--from", "2024-01-03"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another backfill is running") && stderr(&out).contains("s3://"),
        "{}",
        stderr(&out)
    );
    rt.block_on(lock.release());
    p.ok(&["backfill", "--from", "2024-01-03"]);
}

/// Staged bytes are a promise: a day staged by an earlier release is staged again, byte for
/// byte, by this one (the manifest's hashes, the loader's exactly-once and
/// `scripts/compare-builds` rely on it), over archives and over REST alike. The hash is the
/// one the encoder of release 0.1.0 wrote for Binance's own zip of ETHUSDT 1m on 2022-08-14;
/// an encoder change that moves it changes the staged format.
#[test]
fn a_real_days_staged_file_keeps_the_bytes_earlier_releases_wrote() {
    const ETHUSDT_2022_08_14: &str =
        "477ab07034fc071096d193ba1e98dd1f387b982e871406321b76a05e24a84629";
    let ex = TestExchange::start(ExchangeConfig::real_full12(ms("2022-09-10")));
    for source in ["archive", "rest"] {
        let p = Project::new(&ex.url, "");
        p.ok(&[
            "backfill",
            "--symbols",
            "ETHUSDT",
            "--from",
            "2022-08-14",
            "--to",
            "2022-08-15",
            "--source",
            source,
        ]);
        let staged = parquet_files(&p.stage_dir());
        assert_eq!(staged.len(), 1, "{source}: {:?}", staged.keys());
        let (key, bytes) = staged.iter().next().unwrap();
        assert!(key.contains("2022-08-14"), "{source}: {key}");
        assert_eq!(
            klines::stage::manifest::sha256_hex(bytes),
            ETHUSDT_2022_08_14,
            "{source}: {key}"
        );
    }
}
