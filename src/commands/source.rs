//! What `backfill`, `stream` and `pipeline` open before extracting: the exchange's source
//! (through the registry, with the command's overrides), the stage, and the checkpoint store
//! with its lease.

use std::time::Duration;

use crate::config::Project;
use crate::config::project::ExchangeSettings;
use crate::error::UsageError;
use crate::extract::state::StateStore;
use crate::market::{Exchange, Interval, Market, Symbol};
use crate::sources::history::HistorySource;
use crate::sources::{self, Source};
use crate::stage::Stage;
use crate::time;

/// The flags `backfill` and `stream` share; `None` or empty means klines.yml's value.
pub(crate) struct SourceFlags {
    pub exchange: Exchange,
    pub market: Option<Market>,
    pub base_url: Option<String>,
    pub archive_url: Option<String>,
    pub ws_url: Option<String>,
    pub history: HistorySource,
    /// A stream's live feed, and how long a silent connection is kept; `None`: no live feed.
    pub live: Option<Duration>,
    pub stage: Option<String>,
    pub state: Option<String>,
}

pub(crate) struct Opened {
    pub market: Market,
    pub exchange: ExchangeSettings,
    pub source: Source,
    pub stage: Stage,
    pub state: StateStore,
}

impl Opened {
    /// Opens the exchange's source, the stage and the state; a bad flag is a usage error.
    pub fn open(project: &Project, flags: SourceFlags) -> anyhow::Result<Opened> {
        let settings = settings(project, &flags);
        let source = sources::open(flags.exchange, &settings)?;
        let market = source.rest.capabilities().market;
        let stage = super::stage(project, flags.stage)?;
        let state_spec = flags.state.unwrap_or_else(|| project.state.clone());
        let state = StateStore::open(&state_spec, &stage, &project.dir)
            .map_err(|e| UsageError(format!("{e:#}")))?
            .with_lease(project.lease);
        Ok(Opened {
            market,
            exchange: project.exchange.clone(),
            source,
            stage,
            state,
        })
    }
}

/// The source's settings: klines.yml's `exchange:` with the flags over it.
pub(crate) fn settings(project: &Project, flags: &SourceFlags) -> sources::Settings {
    let exchange = &project.exchange;
    sources::Settings {
        market: flags.market.unwrap_or(project.market),
        market_given: flags.market.is_some(),
        base_url: base_url(exchange, flags.exchange, flags.base_url.clone()),
        archive_url: Some(
            flags
                .archive_url
                .clone()
                .unwrap_or(exchange.archive_url.clone()),
        ),
        ws_url: flags.ws_url.clone().or(exchange.ws_url.clone()),
        history: flags.history,
        live: flags.live.is_some(),
        timeout: exchange.timeout,
        retry: exchange.retry_policy(),
        max_in_flight: exchange.max_in_flight,
        spans_in_flight: exchange.spans_in_flight,
        weight_share: exchange.weight_share,
        silence: flags.live.unwrap_or_default(),
    }
}

/// The REST base URL: `--base-url` (or `KLINES_BASE_URL`), else klines.yml's for the
/// exchange (`exchange.base_url` is Binance's, `exchange.coinbase_url` Coinbase's); `None`
/// for another exchange: its source's own.
pub(crate) fn base_url(
    settings: &ExchangeSettings,
    exchange: Exchange,
    flag: Option<String>,
) -> Option<String> {
    if let Some(url) = flag {
        return Some(url.trim_end_matches('/').to_string());
    }
    if exchange == Exchange::BINANCE {
        Some(settings.base_url.clone())
    } else if exchange == Exchange::COINBASE {
        Some(settings.coinbase_url.clone())
    } else {
        None
    }
}

/// `--from` and the end flag (`--to`, `--until`) read at `now`; the end must be after `--from`.
pub(crate) fn range(
    from: &str,
    to: Option<&str>,
    to_flag: &str,
    now: i64,
) -> anyhow::Result<(i64, Option<i64>)> {
    let from = time::parse("--from", from, now)?;
    let to = to.map(|t| time::parse(to_flag, t, now)).transpose()?;
    if let Some(to) = to
        && to <= from
    {
        return Err(UsageError(format!(
            "{to_flag} {} is not after --from {}",
            time::format_ms(to),
            time::format_ms(from)
        ))
        .into());
    }
    Ok((from, to))
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
