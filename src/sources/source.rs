//! A source of klines: what the extractor needs from an exchange, and what the exchange can
//! give (its capabilities), so a backfill, the closed-candle rule and the rollups need not
//! know which exchange they run on. A new exchange is a folder implementing [`KlineSource`]
//! (and, where it has them, `History` and `Live`) plus its registration.

use async_trait::async_trait;

use super::ExchangeError;
use crate::datasets::klines::KlineBatch;
use crate::market::{Exchange, Interval, Market, Symbol};

/// How an exchange marks a bucket in which nothing traded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyBuckets {
    /// A candle with `trades = 0` and the previous close as every price (Binance).
    Filler,
    /// No candle at all (Coinbase).
    Absent,
}

/// How an exchange limits requests, and so how its client paces them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateLimits {
    /// Request weight per window, as the exchange advertises it (Binance's exchangeInfo),
    /// with 429/418 answers past it.
    AdvertisedWeight,
    /// About this many requests a second, with 429 past it (Coinbase's public endpoints).
    PerSecond(f64),
}

/// What a source provides and how it must be asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capabilities {
    pub exchange: Exchange,
    pub market: Market,
    /// Candles per request (the most a request may ask for, or the cheapest per row).
    pub page_limit: u32,
    /// Whether candles carry trade counts, quote volume and taker volumes (NULL otherwise).
    pub flow_fields: bool,
    pub empty_buckets: EmptyBuckets,
    /// The closed-candle rule: a candle is closed when its close time is before the
    /// exchange's clock ([`KlineSource::server_time`]), never by the local clock.
    pub closed_by_server_time: bool,
    pub rate_limits: RateLimits,
}

/// Counters for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub requests: u64,
    pub retries: u64,
    /// The request weight spent (Binance's unit; 0 where the exchange counts requests).
    pub weight: u64,
    /// Answers that said "too many requests" (429/418).
    pub rate_limited: u64,
}

#[async_trait]
pub trait KlineSource: Send + Sync + std::fmt::Debug {
    fn capabilities(&self) -> Capabilities;

    /// The exchange's clock (epoch ms): the candle containing it is still open.
    async fn server_time(&self) -> Result<i64, ExchangeError>;

    /// Fails, naming them, unless every symbol exists and trades; may install the
    /// exchange's advertised rate limits.
    async fn check_symbols(&self, symbols: &[Symbol]) -> Result<(), ExchangeError>;

    /// `klines debug`'s line on the symbols: each one's status, as the exchange gives it.
    async fn symbols_report(&self, symbols: &[Symbol]) -> Result<String, ExchangeError> {
        self.check_symbols(symbols).await?;
        let names: Vec<&str> = symbols.iter().map(|s| s.as_str()).collect();
        Ok(format!("{} online", names.join(", ")))
    }

    /// `klines debug`'s line on the rate limits the exchange advertised, if it does.
    fn rate_limits_report(&self) -> Option<String> {
        None
    }

    /// The open time of the symbol's first candle, or `None` if it has none; `Some(i64::MIN)`
    /// when the exchange cannot tell (then the whole range is asked for, and empty pages are
    /// recorded as empty).
    async fn first_open_time(
        &self,
        symbol: &Symbol,
        interval: Interval,
    ) -> Result<Option<i64>, ExchangeError>;

    /// Appends the candles opening in `[start, end)` (at most `page_limit` of them: one
    /// request) to `out`, oldest first, and returns how many.
    async fn klines(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start: i64,
        end: i64,
        out: &mut KlineBatch,
    ) -> Result<usize, ExchangeError>;

    fn stats(&self) -> SourceStats;
}
