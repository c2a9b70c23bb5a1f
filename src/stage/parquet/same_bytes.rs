//! `encode` (the writer of our own) against `encode_with_arrow_writer` (parquet-rs's
//! `ArrowWriter`): the same bytes, for any rows either can be given.

use proptest::prelude::*;

use super::*;
use crate::datasets::klines::Kline;
use crate::market::{Exchange, Interval, Market, Symbol};

/// Decimal(38, 8) values from a small pool (so dictionaries get repeats, from one entry to
/// one per row) mixed with any value of the type's range, signs and extremes included.
fn decimal(pool: Vec<i128>) -> impl Strategy<Value = i128> {
    let max = 10i128.pow(38) - 1;
    prop_oneof![
        4 => proptest::sample::select(pool),
        1 => -max..=max,
        1 => Just(max),
        1 => Just(-max),
        1 => Just(0i128),
    ]
}

fn kline(pool: Vec<i128>) -> impl Strategy<Value = Kline> {
    let d = move || decimal(pool.clone());
    (
        (any::<i64>(), d(), d(), d(), d(), d()),
        (any::<i64>(), d(), any::<i64>(), d(), d()),
    )
        .prop_map(|((ot, o, h, l, c, v), (ct, qv, t, tb, tq))| Kline {
            open_time: ot,
            open: o,
            high: h,
            low: l,
            close: c,
            volume: v,
            close_time: ct,
            quote_volume: qv,
            trades: t,
            taker_buy_base_volume: tb,
            taker_buy_quote_volume: tq,
        })
}

fn batch(max_rows: usize) -> impl Strategy<Value = KlineBatch> {
    proptest::collection::vec(any::<i128>().prop_map(|v| v % 10i128.pow(20)), 1..6)
        .prop_flat_map(move |pool| proptest::collection::vec(kline(pool), 1..max_rows))
        .prop_map(|rows| {
            let mut b = KlineBatch::default();
            rows.iter().for_each(|k| b.push(k));
            b
        })
}

fn series() -> impl Strategy<Value = Series> {
    (
        prop_oneof![Just(Exchange::BINANCE), Just(Exchange::COINBASE)],
        prop_oneof![Just(Market::Spot), Just(Market::UsdM)],
        proptest::sample::select(vec!["BTCUSDT", "ETHUSDT", "X", "1000SHIBUSDT", "BTC-USD"]),
        proptest::sample::select(Interval::ALL.to_vec()),
    )
        .prop_map(|(exchange, market, symbol, interval)| Series {
            exchange,
            market,
            symbol: Symbol::parse(symbol).expect("a valid symbol"),
            interval,
        })
}

fn assert_same_bytes(series: &Series, k: &KlineBatch) {
    let ours = encode(series, k.clone()).expect("encode");
    let theirs = encode_with_arrow_writer(series, k.clone()).expect("ArrowWriter");
    assert!(
        ours == theirs,
        "{} rows of {series}: the bytes differ",
        k.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn same_bytes_as_arrow_writer(series in series(), k in batch(2_500)) {
        // The writer of our own covers these shapes: the comparison is not with itself.
        let direct = writer::write(&SCHEMA, writer_properties(), k.len(), &columns(&series, &k));
        prop_assert!(direct.expect("write").is_some());
        assert_same_bytes(&series, &k);
    }
}

/// Around the page row limit (20,000 rows: a 1s day has 86,400), where `encode` hands the
/// file to `ArrowWriter`.
#[test]
fn same_bytes_on_either_side_of_the_page_row_limit() {
    let series = Series {
        exchange: Exchange::BINANCE,
        market: Market::Spot,
        symbol: Symbol::parse("BTCUSDT").expect("a valid symbol"),
        interval: Interval::S1,
    };
    let limit = writer_properties().data_page_row_count_limit();
    for rows in [limit - 1, limit, limit + 1] {
        let mut k = KlineBatch::default();
        for i in 0..rows as i64 {
            let p = 6_000_000_000_000 + i128::from(i % 977) * 1_000_000;
            k.push(&Kline {
                open_time: i * 1_000,
                open: p,
                high: p + 5,
                low: p - 5,
                close: p + 1,
                volume: i128::from(i) * 3_333,
                close_time: i * 1_000 + 999,
                quote_volume: i128::from(i) * 7,
                trades: i % 13,
                taker_buy_base_volume: 1,
                taker_buy_quote_volume: i128::from(i),
            });
        }
        let direct = writer::write(&SCHEMA, writer_properties(), rows, &columns(&series, &k));
        assert_eq!(
            direct.expect("write").is_some(),
            rows < limit,
            "{rows} rows"
        );
        assert_same_bytes(&series, &k);
    }
}
