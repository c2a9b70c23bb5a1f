//! The suite every kline source runs (`exchange::KlineSource`), over HTTP against its test
//! server: the exchange's clock, symbol checks, the first candle, exact pages in order, and
//! the capabilities the extractor and the models rely on. Binance spot and USD-M and Coinbase
//! run it; a new exchange adds its client and test server here.

use std::sync::Arc;

use klines::datasets::klines::KlineBatch;
use klines::market::{Interval, Market, Symbol};
use klines::sources::KlineSource;
use klines::sources::binance::{BinanceClient, ClientConfig};
use klines::sources::source::EmptyBuckets;

use crate::support::*;

const NOW: &str = "2024-01-05T13:37:30Z";

/// What the suite needs to know about the server behind a source.
struct Served {
    source: Arc<dyn KlineSource>,
    /// A listed symbol, its first 1m open time, and its 1m candles in a range.
    symbol: &'static str,
    first: i64,
    candles: Box<dyn Fn(i64, i64) -> Vec<klines::datasets::klines::Kline>>,
    now: i64,
}

fn conformance(s: Served) {
    let rt = runtime();
    let caps = s.source.capabilities();
    let sym = Symbol::parse(s.symbol).unwrap();
    assert!(caps.page_limit >= 100, "{caps:?}");
    assert!(caps.closed_by_server_time);

    // The exchange's clock, not this machine's.
    assert_eq!(rt.block_on(s.source.server_time()).unwrap(), s.now);

    rt.block_on(s.source.check_symbols(std::slice::from_ref(&sym)))
        .unwrap();
    let err = rt
        .block_on(
            s.source
                .check_symbols(&[sym.clone(), Symbol::parse("NOPE123").unwrap()]),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("NOPE123") && !err.contains(s.symbol), "{err}");

    assert_eq!(
        rt.block_on(s.source.first_open_time(&sym, Interval::M1))
            .unwrap(),
        Some(s.first)
    );

    // One page: exactly the candles opening in [start, end), oldest first, with their close
    // times, at most page_limit of them.
    let start = Interval::M1.floor(s.now) - caps.page_limit as i64 * 60_000;
    let end = Interval::M1.floor(s.now);
    let mut got = KlineBatch::default();
    let n = rt
        .block_on(s.source.klines(&sym, Interval::M1, start, end, &mut got))
        .unwrap();
    let want = (s.candles)(start, end);
    assert_eq!(n, want.len());
    assert!(
        n <= caps.page_limit as usize && n > caps.page_limit as usize / 2,
        "{n}"
    );
    assert_eq!(got, batch(&want));
    assert!(
        got.close_time
            .iter()
            .zip(&got.open_time)
            .all(|(c, o)| *c == o + 59_999)
    );
    // Appending: a second page goes after what `out` holds.
    let before = got.len();
    rt.block_on(
        s.source
            .klines(&sym, Interval::M1, end - 120_000, end, &mut got),
    )
    .unwrap();
    assert_eq!(got.len(), before + (s.candles)(end - 120_000, end).len());

    let stats = s.source.stats();
    assert!(stats.requests >= 6, "{stats:?}");
}

fn binance(market: Market) {
    let ex = TestExchange::start(ExchangeConfig::synthetic(ms(NOW)));
    let mut config = ClientConfig::new(&ex.url, market);
    config.retry.retry_base = std::time::Duration::from_millis(5);
    let source: Arc<dyn KlineSource> = Arc::new(BinanceClient::new(config).unwrap());
    let caps = source.capabilities();
    assert_eq!(caps.exchange, klines::market::Exchange::BINANCE);
    assert_eq!(caps.market, market);
    assert!(caps.flow_fields);
    assert_eq!(caps.empty_buckets, EmptyBuckets::Filler);
    assert_eq!(
        caps.rate_limits,
        klines::sources::source::RateLimits::AdvertisedWeight
    );
    let data = if market == Market::UsdM {
        ex.usdm_market()
    } else {
        ex.market()
    };
    let now = ex.now();
    let first = data.first_minute("BTCUSDT").unwrap();
    conformance(Served {
        source,
        symbol: "BTCUSDT",
        first,
        candles: Box::new(move |s, e| data.klines("BTCUSDT", Interval::M1, s, e, now, usize::MAX)),
        now,
    });
}

#[test]
fn binance_spot_is_a_kline_source() {
    binance(Market::Spot);
}

#[test]
fn binance_usdm_is_a_kline_source() {
    binance(Market::UsdM);
}

#[test]
fn coinbase_is_a_kline_source() {
    use klines::sources::coinbase::{CoinbaseClient, CoinbaseConfig};
    let cb = crate::support::coinbase::TestCoinbase::start(ms(NOW));
    let source: Arc<dyn KlineSource> =
        Arc::new(CoinbaseClient::new(CoinbaseConfig::new(&cb.url)).unwrap());
    let caps = source.capabilities();
    assert_eq!(caps.exchange, klines::market::Exchange::COINBASE);
    assert_eq!(caps.market, Market::Spot);
    assert!(!caps.flow_fields);
    assert_eq!(caps.empty_buckets, EmptyBuckets::Absent);
    assert_eq!(
        caps.rate_limits,
        klines::sources::source::RateLimits::PerSecond(10.0)
    );
    let now = cb.now();
    conformance(Served {
        source,
        symbol: "BTC-USD",
        // Coinbase cannot tell when a product's candles start: the whole range is asked for.
        first: i64::MIN,
        candles: Box::new(move |s, e| cb.closed("BTC-USD", 60_000, s, e.min(now))),
        now,
    });
}
