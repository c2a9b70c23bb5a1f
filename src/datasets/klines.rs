//! Klines: the declaration ([`KLINES`]) and the rows in columns, the shape they have from the
//! HTTP body to the Parquet file.
//!
//! Decimals are `i128` units of 10^-8 (see [`crate::decimal`]); times are epoch milliseconds.

use super::{ColType, Column, Dataset};

const fn col(name: &'static str, ty: ColType) -> Column {
    Column {
        name,
        ty,
        nullable: false,
    }
}

/// A flow column: NULL for an exchange that does not report it.
const fn flow(name: &'static str, ty: ColType) -> Column {
    Column {
        name,
        ty,
        nullable: true,
    }
}

/// The klines dataset: candles by series and open time.
pub const KLINES: Dataset = Dataset {
    name: "klines",
    columns: &[
        col("exchange", ColType::Text),
        col("market", ColType::Text),
        col("symbol", ColType::Text),
        col("interval", ColType::Text),
        col("open_time", ColType::Timestamp),
        col("open", ColType::Decimal),
        col("high", ColType::Decimal),
        col("low", ColType::Decimal),
        col("close", ColType::Decimal),
        col("volume", ColType::Decimal),
        col("close_time", ColType::Timestamp),
        flow("quote_volume", ColType::Decimal),
        flow("trades", ColType::BigInt),
        flow("taker_buy_base_volume", ColType::Decimal),
        flow("taker_buy_quote_volume", ColType::Decimal),
    ],
    key: &["exchange", "market", "symbol", "interval", "open_time"],
    time: "open_time",
    series: &["exchange", "market", "symbol", "interval"],
    history: "klines_load_history",
    rejected: "klines_rejected",
    incoming: "klines_incoming",
};

/// One kline, for tests and small jobs; bulk paths use [`KlineBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kline {
    pub open_time: i64,
    pub open: i128,
    pub high: i128,
    pub low: i128,
    pub close: i128,
    pub volume: i128,
    pub close_time: i64,
    pub quote_volume: i128,
    pub trades: i64,
    pub taker_buy_base_volume: i128,
    pub taker_buy_quote_volume: i128,
}

/// Klines of one market, symbol and interval, in open-time order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KlineBatch {
    pub open_time: Vec<i64>,
    pub open: Vec<i128>,
    pub high: Vec<i128>,
    pub low: Vec<i128>,
    pub close: Vec<i128>,
    pub volume: Vec<i128>,
    pub close_time: Vec<i64>,
    pub quote_volume: Vec<i128>,
    pub trades: Vec<i64>,
    pub taker_buy_base_volume: Vec<i128>,
    pub taker_buy_quote_volume: Vec<i128>,
}

impl KlineBatch {
    pub fn with_capacity(n: usize) -> Self {
        KlineBatch {
            open_time: Vec::with_capacity(n),
            open: Vec::with_capacity(n),
            high: Vec::with_capacity(n),
            low: Vec::with_capacity(n),
            close: Vec::with_capacity(n),
            volume: Vec::with_capacity(n),
            close_time: Vec::with_capacity(n),
            quote_volume: Vec::with_capacity(n),
            trades: Vec::with_capacity(n),
            taker_buy_base_volume: Vec::with_capacity(n),
            taker_buy_quote_volume: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.open_time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open_time.is_empty()
    }

    pub fn push(&mut self, k: &Kline) {
        self.open_time.push(k.open_time);
        self.open.push(k.open);
        self.high.push(k.high);
        self.low.push(k.low);
        self.close.push(k.close);
        self.volume.push(k.volume);
        self.close_time.push(k.close_time);
        self.quote_volume.push(k.quote_volume);
        self.trades.push(k.trades);
        self.taker_buy_base_volume.push(k.taker_buy_base_volume);
        self.taker_buy_quote_volume.push(k.taker_buy_quote_volume);
    }

    pub fn get(&self, i: usize) -> Kline {
        Kline {
            open_time: self.open_time[i],
            open: self.open[i],
            high: self.high[i],
            low: self.low[i],
            close: self.close[i],
            volume: self.volume[i],
            close_time: self.close_time[i],
            quote_volume: self.quote_volume[i],
            trades: self.trades[i],
            taker_buy_base_volume: self.taker_buy_base_volume[i],
            taker_buy_quote_volume: self.taker_buy_quote_volume[i],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Kline> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Appends rows `range` of `other`.
    pub fn extend_from(&mut self, other: &KlineBatch, range: std::ops::Range<usize>) {
        self.open_time
            .extend_from_slice(&other.open_time[range.clone()]);
        self.open.extend_from_slice(&other.open[range.clone()]);
        self.high.extend_from_slice(&other.high[range.clone()]);
        self.low.extend_from_slice(&other.low[range.clone()]);
        self.close.extend_from_slice(&other.close[range.clone()]);
        self.volume.extend_from_slice(&other.volume[range.clone()]);
        self.close_time
            .extend_from_slice(&other.close_time[range.clone()]);
        self.quote_volume
            .extend_from_slice(&other.quote_volume[range.clone()]);
        self.trades.extend_from_slice(&other.trades[range.clone()]);
        self.taker_buy_base_volume
            .extend_from_slice(&other.taker_buy_base_volume[range.clone()]);
        self.taker_buy_quote_volume
            .extend_from_slice(&other.taker_buy_quote_volume[range]);
    }

    pub fn truncate(&mut self, n: usize) {
        self.open_time.truncate(n);
        self.open.truncate(n);
        self.high.truncate(n);
        self.low.truncate(n);
        self.close.truncate(n);
        self.volume.truncate(n);
        self.close_time.truncate(n);
        self.quote_volume.truncate(n);
        self.trades.truncate(n);
        self.taker_buy_base_volume.truncate(n);
        self.taker_buy_quote_volume.truncate(n);
    }

    /// The index range of rows whose open time lies in `[start, end)` (rows are sorted).
    pub fn range_of(&self, start: i64, end: i64) -> std::ops::Range<usize> {
        let lo = self.open_time.partition_point(|&t| t < start);
        let hi = self.open_time.partition_point(|&t| t < end);
        lo..hi.max(lo)
    }

    /// Merges batches sorted by open time into one, keeping for each open time the row of
    /// the batch that comes last in `batches`.
    pub fn merge(batches: &[&KlineBatch]) -> KlineBatch {
        let mut rows: std::collections::BTreeMap<i64, (usize, usize)> = Default::default();
        for (b, batch) in batches.iter().enumerate() {
            for (i, &t) in batch.open_time.iter().enumerate() {
                rows.insert(t, (b, i));
            }
        }
        let mut out = KlineBatch::with_capacity(rows.len());
        for (b, i) in rows.into_values() {
            out.extend_from(batches[b], i..i + 1);
        }
        out
    }

    /// True when open times strictly increase.
    pub fn is_sorted_unique(&self) -> bool {
        self.open_time.windows(2).all(|w| w[0] < w[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kline(t: i64) -> Kline {
        Kline {
            open_time: t,
            open: 1,
            high: 2,
            low: 1,
            close: 2,
            volume: 3,
            close_time: t + 59_999,
            quote_volume: 4,
            trades: 5,
            taker_buy_base_volume: 1,
            taker_buy_quote_volume: 2,
        }
    }

    #[test]
    fn merge_keeps_the_last_batch_for_a_shared_open_time() {
        let mut a = KlineBatch::default();
        a.push(&kline(1499040000000));
        a.push(&kline(1499040060000));
        let mut c = KlineBatch::default();
        let mut k = a.get(1);
        k.close += 1;
        c.push(&k);
        let m = KlineBatch::merge(&[&a, &c]);
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(1), k);
        assert_eq!(m.get(0), a.get(0));
        assert_eq!(m.range_of(1499040060000, i64::MAX), 1..2);
    }
}
