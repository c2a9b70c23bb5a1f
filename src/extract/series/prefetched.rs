//! Closed candles that arrived another way (a live feed), held until a backfill stages them.

use std::collections::BTreeMap;

use crate::datasets::klines::{Kline, KlineBatch};
use crate::market::Series;

/// Closed candles by series and open time, waiting to be staged.
#[derive(Debug, Default)]
pub struct Prefetched(std::sync::Mutex<std::collections::HashMap<Series, BTreeMap<i64, Kline>>>);

impl Prefetched {
    /// Keeps a closed candle (a later copy of the same candle replaces the earlier one).
    pub fn insert(&self, series: Series, k: Kline) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(series).or_default().insert(k.open_time, k);
    }

    /// The newest open time held for `series`.
    pub fn newest(&self, series: &Series) -> Option<i64> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(series)?.keys().next_back().copied()
    }

    /// Every candle of `[s, e)`, if all are here (an outage minute or a missed event means
    /// the span is asked of REST, which also confirms what the exchange never produced).
    /// Candles before `e` are dropped either way: they are staged now.
    pub(super) fn take_span(&self, series: &Series, s: i64, e: i64) -> Option<KlineBatch> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let rows = map.get_mut(series)?;
        let mut out = KlineBatch::default();
        let mut t = s;
        let mut whole = true;
        while t < e {
            match rows.get(&t) {
                Some(k) => out.push(k),
                None => {
                    whole = false;
                    break;
                }
            }
            t = series.interval.next(t);
        }
        let later = rows.split_off(&e);
        *rows = later;
        whole.then_some(out)
    }
}
