//! Coinbase Exchange: its public REST candles (`rest`), their JSON numbers read exactly
//! (`candles`). No archives and no live candles: its history is REST's, and a stream polls.

pub mod candles;
pub mod rest;

use std::sync::Arc;

pub use candles::{json_decimal, parse_candles};
pub use rest::{CoinbaseClient, CoinbaseConfig, PAGE, granularity};

use crate::error::UsageError;
use crate::market::{Exchange, Market};
use crate::sources::history::{HistorySource, RestHistory};
use crate::sources::{Registration, Settings, Source};

pub const DEFAULT_BASE_URL: &str = "https://api.exchange.coinbase.com";

pub const REGISTRATION: Registration = Registration {
    exchange: Exchange::COINBASE,
    open,
};

/// Spot candles over REST, under Coinbase's pacing.
fn open(s: &Settings) -> anyhow::Result<Source> {
    if s.market_given && s.market != Market::Spot {
        return Err(UsageError(
            "--exchange coinbase has spot candles only (no --market usdm)".into(),
        )
        .into());
    }
    if s.history == HistorySource::Archive {
        return Err(UsageError(
            "--source archive: Coinbase has no archives (use auto or rest)".into(),
        )
        .into());
    }
    let config = CoinbaseConfig {
        timeout: s.timeout,
        retry: s.retry,
        ..CoinbaseConfig::new(s.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL))
    };
    let rest: Arc<dyn crate::sources::KlineSource> =
        Arc::new(CoinbaseClient::new(config).map_err(|e| UsageError(e.to_string()))?);
    Ok(Source {
        history: Arc::new(RestHistory::new(Arc::clone(&rest))),
        rest,
        live: None,
    })
}
