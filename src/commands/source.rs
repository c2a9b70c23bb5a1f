//! What `backfill`, `stream` and `pipeline` open before extracting: the exchange client with
//! the command's overrides, the stage, and the checkpoint store with its lease.

use std::sync::Arc;

use crate::config::Project;
use crate::config::project::ExchangeSettings;
use crate::sources::coinbase::CoinbaseClient;
use crate::sources::binance::BinanceClient;
use crate::market::{Exchange, Interval, Market, Symbol};
use crate::sources::KlineSource;
use crate::exit::UsageError;
use crate::extract::state::StateStore;
use crate::stage::Stage;

/// The flags `backfill` and `stream` share; `None` or empty means klines.yml's value.
pub(crate) struct SourceFlags {
    pub exchange: Exchange,
    pub market: Option<Market>,
    pub base_url: Option<String>,
    pub stage: Option<String>,
    pub state: Option<String>,
}

pub(crate) struct Source {
    pub market: Market,
    pub exchange: ExchangeSettings,
    pub client: Arc<dyn KlineSource>,
    pub stage: Stage,
    pub state: StateStore,
}

impl Source {
    /// Builds the exchange's client, opens the stage and the state; a bad flag is a usage
    /// error. `--base-url` is the chosen exchange's.
    pub fn open(project: &Project, flags: SourceFlags) -> anyhow::Result<Source> {
        let exchange = settings(project, flags.exchange, flags.base_url);
        let (market, client): (Market, Arc<dyn KlineSource>) = match flags.exchange {
            Exchange::Binance => {
                let market = flags.market.unwrap_or(project.market);
                let client = BinanceClient::new(exchange.client_config(market))
                    .map_err(|e| UsageError(e.to_string()))?;
                (market, Arc::new(client))
            }
            Exchange::Coinbase => {
                if flags.market.is_some_and(|m| m != Market::Spot) {
                    return Err(UsageError(
                        "--exchange coinbase has spot candles only (no --market usdm)".into(),
                    )
                    .into());
                }
                let client = CoinbaseClient::new(exchange.coinbase_config())
                    .map_err(|e| UsageError(e.to_string()))?;
                (Market::Spot, Arc::new(client))
            }
        };
        let stage = super::stage(project, flags.stage)?;
        let state_spec = flags.state.unwrap_or_else(|| project.state.clone());
        let state = StateStore::open(&state_spec, &stage, &project.dir)
            .map_err(|e| UsageError(format!("{e:#}")))?
            .with_lease(project.lease);
        Ok(Source {
            market,
            exchange,
            client,
            stage,
            state,
        })
    }
}

/// klines.yml's exchange settings with `--base-url` (or `KLINES_BASE_URL`) over the chosen
/// exchange's URL.
pub(crate) fn settings(project: &Project, exchange: Exchange, base_url: Option<String>) -> ExchangeSettings {
    let mut settings = project.exchange.clone();
    if let Some(url) = base_url {
        match exchange {
            Exchange::Binance => settings.base_url = url,
            Exchange::Coinbase => settings.coinbase_url = url.trim_end_matches('/').to_string(),
        }
    }
    settings
}

/// `--symbols`, else klines.yml's; a symbol named twice is fetched once.
pub(crate) fn symbols(project: &Project, flag: Vec<Symbol>) -> Vec<Symbol> {
    if flag.is_empty() {
        project.symbols.clone()
    } else {
        dedup(flag)
    }
}

/// `--interval`, else klines.yml's.
pub(crate) fn intervals(project: &Project, flag: Vec<Interval>) -> Vec<Interval> {
    if flag.is_empty() {
        project.intervals.clone()
    } else {
        dedup(flag)
    }
}

fn dedup<T: PartialEq>(v: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn dedup_keeps_the_first_of_each_in_order() {
        assert_eq!(super::dedup(vec![3, 1, 3, 2, 1]), vec![3, 1, 2]);
    }
}
