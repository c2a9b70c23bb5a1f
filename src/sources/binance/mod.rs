//! Binance: the REST client (spot and USD-M), its weight limiter, the JSON of its klines, the
//! bulk archives with the history they give ("archives, then REST"), and the WebSocket kline
//! streams with the live source they give.

pub mod archive;
pub mod history;
pub mod json;
pub mod live;
pub mod ratelimit;
pub mod rest;
mod source;
pub mod ws;

use std::sync::Arc;

pub use rest::{BinanceClient, ClientConfig};

use crate::error::UsageError;
use crate::market::Exchange;
use crate::sources::history::{HistorySource, RestHistory};
use crate::sources::{Registration, Settings, Source};

/// Binance's REST base (the market-data-only host).
pub const DEFAULT_BASE_URL: &str = "https://data-api.binance.vision";

pub const REGISTRATION: Registration = Registration {
    exchange: Exchange::BINANCE,
    open,
};

/// The REST client for the market, the archives unless `--source rest`, and the kline
/// streams for a live run.
fn open(s: &Settings) -> anyhow::Result<Source> {
    let config = ClientConfig {
        base_url: s
            .base_url
            .as_deref()
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/')
            .to_string(),
        market: s.market,
        timeout: s.timeout,
        retry: s.retry,
        max_in_flight: s.max_in_flight,
        weight_share: s.weight_share,
    };
    let rest: Arc<dyn crate::sources::KlineSource> =
        Arc::new(BinanceClient::new(config.clone()).map_err(|e| UsageError(e.to_string()))?);
    let history: Arc<dyn crate::sources::history::History> = match s.history {
        HistorySource::Rest => Arc::new(RestHistory::new(Arc::clone(&rest))),
        source => {
            let url = s
                .archive_url
                .as_deref()
                .unwrap_or(archive::client::DEFAULT_ARCHIVE_URL);
            Arc::new(history::ArchiveHistory {
                rest: RestHistory::new(Arc::clone(&rest)),
                archive: Arc::new(
                    archive::client::ArchiveClient::new(url, &config)
                        .map_err(|e| UsageError(e.to_string()))?,
                ),
                source,
                in_flight: s.spans_in_flight,
            })
        }
    };
    let live: Option<Arc<dyn crate::sources::live::Live>> = if s.live {
        let ws_url = s
            .ws_url
            .clone()
            .unwrap_or_else(|| ws::default_ws_url(s.market).to_string());
        if !(ws_url.starts_with("ws://") || ws_url.starts_with("wss://")) {
            return Err(UsageError(format!(
                "--ws-url {:?} is not a ws:// or wss:// URL",
                crate::redact::redact_url(&ws_url)
            ))
            .into());
        }
        Some(Arc::new(live::BinanceLive {
            ws_url,
            market: s.market,
            silence: s.silence,
        }))
    } else {
        None
    };
    Ok(Source {
        rest,
        history,
        live,
    })
}
