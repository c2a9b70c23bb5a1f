//! Where data comes from. Each exchange is a folder (`binance/`, `coinbase/`) that gives a run
//! a [`Source`]: its REST API ([`KlineSource`]), how it fills history ([`history::History`]:
//! REST pages, or archives then REST) and, if it has one, its live feed ([`live::Live`]). The
//! exchanges are found through the registry ([`open`]); every client shares the HTTP client
//! (`http`), the retry policy (`retry`) and the errors (`error`).

pub mod binance;
pub mod coinbase;
pub mod error;
pub mod history;
pub mod http;
pub mod live;
pub mod retry;
pub mod source;

use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use error::ExchangeError;
pub use retry::RetryPolicy;
pub use source::{Capabilities, KlineSource};

use crate::market::{Exchange, Market};
use history::{History, HistorySource};
use live::Live;

/// What one exchange gives a run.
pub struct Source {
    /// Its REST API: the clock, symbols, first candles, pages of candles.
    pub rest: Arc<dyn KlineSource>,
    /// How missing ranges are planned and fetched.
    pub history: Arc<dyn History>,
    /// Its live feed, if it has one (else a stream polls REST).
    pub live: Option<Arc<dyn Live>>,
}

/// A run's settings for its exchange: klines.yml, flags and the environment, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub market: Market,
    /// Whether the market was asked for (`--market`), not only a default.
    pub market_given: bool,
    /// The REST base URL; `None`: the exchange's own.
    pub base_url: Option<String>,
    /// The bulk archives' base URL, where the exchange has archives.
    pub archive_url: Option<String>,
    /// The live feed's base URL; `None`: the exchange's own for the market.
    pub ws_url: Option<String>,
    /// `--source`.
    pub history: HistorySource,
    /// Whether the run follows the live feed (`klines stream`).
    pub live: bool,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub max_in_flight: usize,
    pub spans_in_flight: usize,
    pub weight_share: f64,
    /// A live connection silent this long is replaced.
    pub silence: Duration,
}

/// An exchange klines can read: its name, and how a run opens it (a bad setting is a usage
/// error, before anything is fetched).
#[derive(Clone, Copy)]
pub struct Registration {
    pub exchange: Exchange,
    pub open: fn(&Settings) -> anyhow::Result<Source>,
}

/// Exchanges registered at run time, beside the ones built in.
static REGISTERED: RwLock<Vec<Registration>> = RwLock::new(Vec::new());

/// Adds an exchange (one registration line, where the program starts): its name becomes
/// known to flags, stage keys and checkpoints, and runs open it through `r.open`.
pub fn register(r: Registration) -> Result<(), String> {
    Exchange::register(r.exchange)?;
    let mut all = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    all.retain(|o| o.exchange != r.exchange);
    all.push(r);
    Ok(())
}

/// Every exchange klines can read: the built-in ones, then the registered ones.
pub fn registry() -> Vec<Registration> {
    let mut all = vec![binance::REGISTRATION, coinbase::REGISTRATION];
    all.extend(
        REGISTERED
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied(),
    );
    all
}

/// Opens `exchange`'s source with `settings`.
pub fn open(exchange: Exchange, settings: &Settings) -> anyhow::Result<Source> {
    let r = registry()
        .into_iter()
        .find(|r| r.exchange == exchange)
        .ok_or_else(|| {
            crate::error::UsageError(format!("no source for the exchange {exchange}"))
        })?;
    (r.open)(settings)
}
