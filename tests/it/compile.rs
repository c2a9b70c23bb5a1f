//! The repository's models compiled for each warehouse: one SQL, per-adapter macros.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use klines::config::profiles::{Output, Target};
use klines::models::jinja::BatchFilter;
use klines::models::runner::Runner;

fn target(yaml_type: &str, fields: &str) -> Target {
    let output = match yaml_type {
        "duckdb" => Output::DuckDb(yaml_serde::from_str(fields).unwrap()),
        "postgres" => Output::Postgres(yaml_serde::from_str(fields).unwrap()),
        _ => Output::Snowflake(yaml_serde::from_str(fields).unwrap()),
    };
    Target {
        profile: "klines".into(),
        name: yaml_type.into(),
        file: None,
        output,
    }
}

fn compile(t: &Target, model: &str, filter: Option<BatchFilter>) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = klines::config::Project::load(root).unwrap();
    let (parsed, _) = klines::models::load(&project, t, None).unwrap();
    let parsed = Arc::new(parsed);
    let runner = Runner {
        wh: None,
        parsed: Arc::clone(&parsed),
        full_refresh: false,
        threads: 1,
        compiled_dir: std::env::temp_dir(),
        compiled: Mutex::new(BTreeMap::new()),
        catalog: Default::default(),
        on_result: Box::new(|_, _| {}),
    };
    let node = parsed.nodes.values().find(|n| n.name == model).unwrap();
    runner.compile(node, filter.is_some(), filter).unwrap()
}

fn targets() -> Vec<Target> {
    vec![
        target("duckdb", "path: x.duckdb"),
        target("postgres", "user: u\ndbname: d\nschema: analytics"),
        target(
            "snowflake",
            "account: a\nuser: u\ndatabase: MARKET\nschema: ANALYTICS\nraw_schema: RAW",
        ),
    ]
}

#[test]
fn the_5m_rollup_compiles_for_every_warehouse() {
    for t in targets() {
        insta::assert_snapshot!(
            format!("TRADES_OHLC_5M_{}", t.name),
            compile(&t, "TRADES_OHLC_5M", None)
        );
    }
}

#[test]
fn an_incremental_batch_reads_only_its_time_ranges() {
    let mut filter = BatchFilter::default();
    let day = 1_704_153_600_000; // 2024-01-02
    filter
        .ranges
        .entry("BTCUSDT".into())
        .or_default()
        .insert(day, day + 86_400_000);
    for t in targets() {
        insta::assert_snapshot!(
            format!("TRADES_OHLC_1M_batch_{}", t.name),
            compile(&t, "TRADES_OHLC_1M", Some(filter.clone()))
        );
    }
}
