//! `indicators`: the native indicator model kind. The model's SQL selects the input; SMA,
//! EMA, RSI, MACD and Bollinger bands are computed in Rust (`models::indicators`).

use super::{Build, Built, Materialization};
use crate::models::changes::grain_millis;
use crate::models::config::NodeConfig;

pub struct Indicators;

#[async_trait::async_trait]
impl Materialization for Indicators {
    fn name(&self) -> &'static str {
        "indicators"
    }

    fn check(&self, config: &NodeConfig) -> Result<(), String> {
        for (k, v) in [
            ("event_time", &config.event_time),
            ("batch_key", &config.batch_key),
            ("time_grain", &config.time_grain),
        ] {
            match v {
                None => return Err(format!("materialized='indicators' needs config {k}")),
                Some(name) if k != "time_grain" => {
                    crate::ident::validate(name).map_err(|e| format!("config {k}: {e}"))?;
                }
                Some(_) => {}
            }
        }
        if grain_millis(config.time_grain.as_deref().unwrap_or_default()).is_none() {
            return Err("time_grain must be like 1m, 5m, 15m, 1h or 1d".into());
        }
        crate::models::indicators::params(&config.all).map_err(|e| format!("config {e}"))?;
        Ok(())
    }

    /// Every row carries the indicators' state: downstream models follow its changes.
    fn records_changes(&self, _config: &NodeConfig) -> bool {
        true
    }

    async fn build(&self, b: &Build<'_>) -> anyhow::Result<Built> {
        let sql = b.compile(false, None)?;
        let run = crate::models::indicators::Run {
            wh: b.wh,
            node: b.node,
            schema: b.schema,
            feeds: b.feeds.clone(),
            full_refresh: b.full_refresh,
            catalog: b.catalog,
        };
        let (rows, message) = run.run(&sql).await?;
        Ok(Built::new(rows, message))
    }
}
