//! Binance's REST client as a [`KlineSource`]: request weight per window as advertised, a
//! filler candle for a bucket without trades, the flow fields.

use super::BinanceClient;
use crate::datasets::klines::KlineBatch;
use crate::market::{Exchange, Interval, Symbol};
use crate::sources::source::{Capabilities, EmptyBuckets, RateLimits, SourceStats};
use crate::sources::{ExchangeError, KlineSource};

#[async_trait::async_trait]
impl KlineSource for BinanceClient {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            exchange: Exchange::BINANCE,
            market: self.market(),
            page_limit: self.market().page_limit(),
            flow_fields: true,
            empty_buckets: EmptyBuckets::Filler,
            closed_by_server_time: true,
            rate_limits: RateLimits::AdvertisedWeight,
        }
    }

    async fn server_time(&self) -> Result<i64, ExchangeError> {
        BinanceClient::server_time(self).await
    }

    async fn check_symbols(&self, symbols: &[Symbol]) -> Result<(), ExchangeError> {
        BinanceClient::check_symbols(self, symbols)
            .await
            .map(|_| ())
    }

    /// Each symbol with its status (`BTCUSDT TRADING`).
    async fn symbols_report(&self, symbols: &[Symbol]) -> Result<String, ExchangeError> {
        let infos = BinanceClient::check_symbols(self, symbols).await?;
        let listed: Vec<String> = infos
            .iter()
            .map(|i| format!("{} {}", i.symbol, i.status))
            .collect();
        Ok(listed.join(", "))
    }

    /// The windows exchangeInfo advertised (`RequestWeight 6000 per 60 s`).
    fn rate_limits_report(&self) -> Option<String> {
        let limits: Vec<String> = self
            .limiter()
            .limits()
            .iter()
            .map(|l| format!("{:?} {} per {} s", l.kind, l.limit, l.window_ms / 1000))
            .collect();
        Some(limits.join(", "))
    }

    async fn first_open_time(
        &self,
        symbol: &Symbol,
        interval: Interval,
    ) -> Result<Option<i64>, ExchangeError> {
        BinanceClient::first_open_time(self, symbol, interval).await
    }

    async fn klines(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start: i64,
        end: i64,
        out: &mut KlineBatch,
    ) -> Result<usize, ExchangeError> {
        BinanceClient::klines(self, symbol, interval, start, end, out).await
    }

    fn stats(&self) -> SourceStats {
        self.source_stats()
    }
}
