//! Quarantine: rows that break a kline's invariants go to `raw.klines_rejected` with their file,
//! row and reason, in the transaction that loads the rest of their file, instead of into the raw
//! table. The file counts as loaded (its valid rows are), so it is not retried.
//!
//! The invariants: high at or above open and close, low at or below them, no negative volume
//! or trade count, taker volumes within the volume, and the close time the interval gives
//! (open time + its length - 1 ms). Flow fields an exchange does not report are not checked.

use std::collections::BTreeMap;

use crate::datasets::ColType;
use crate::datasets::klines::{KLINES, KlineBatch};
use crate::decimal;
use crate::market::Series;
use crate::warehouse::DialectRef;
use crate::warehouse::dialect::{sql_type, timestamp_literal};
use crate::warehouse::ident::{literal, quote, relation};

/// `klines_rejected`: the dataset's rejected table.
pub const REJECTED: &str = KLINES.rejected;

/// A row kept out of the raw table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub file: String,
    /// The row's position in its file, from 1.
    pub row: u64,
    pub series: Series,
    pub open_time: i64,
    pub reason: String,
    /// The row's values as text, for inspection.
    pub kline: String,
}

/// Why row `i` breaks an invariant, if it does.
pub fn reason(series: &Series, k: &KlineBatch, i: usize) -> Option<String> {
    let iv = series.interval;
    if k.high[i] < k.open[i].max(k.close[i]) {
        return Some("high below open or close".into());
    }
    if k.low[i] > k.open[i].min(k.close[i]) {
        return Some("low above open or close".into());
    }
    if k.volume[i] < 0 {
        return Some("negative volume".into());
    }
    if series.exchange.flow_fields() {
        if k.quote_volume[i] < 0
            || k.taker_buy_base_volume[i] < 0
            || k.taker_buy_quote_volume[i] < 0
        {
            return Some("negative volume".into());
        }
        if k.trades[i] < 0 {
            return Some("negative trade count".into());
        }
        if k.taker_buy_base_volume[i] > k.volume[i] {
            return Some("taker buy volume above volume".into());
        }
        if k.taker_buy_quote_volume[i] > k.quote_volume[i] {
            return Some("taker buy quote volume above quote volume".into());
        }
    }
    if iv.floor(k.open_time[i]) != k.open_time[i] {
        return Some(format!("open time not on the {} grid", iv.as_str()));
    }
    let want = iv.close_time(k.open_time[i]);
    if k.close_time[i] != want {
        return Some(format!(
            "close time {} does not match the {} interval (expected {})",
            crate::time::format_ms(k.close_time[i]),
            iv.as_str(),
            crate::time::format_ms(want)
        ));
    }
    None
}

/// Splits a file's rows into the valid ones and the rejected ones.
pub fn split(series: &Series, file: &str, k: KlineBatch) -> (KlineBatch, Vec<Rejected>) {
    let bad: Vec<(usize, String)> = (0..k.len())
        .filter_map(|i| reason(series, &k, i).map(|r| (i, r)))
        .collect();
    if bad.is_empty() {
        return (k, Vec::new());
    }
    let mut valid = KlineBatch::with_capacity(k.len() - bad.len());
    let mut next = 0;
    let mut rejected = Vec::with_capacity(bad.len());
    for (i, why) in bad {
        valid.extend_from(&k, next..i);
        next = i + 1;
        let d = decimal::format;
        rejected.push(Rejected {
            file: file.to_string(),
            row: i as u64 + 1,
            series: series.clone(),
            open_time: k.open_time[i],
            kline: format!(
                "open={} high={} low={} close={} volume={} close_time={} quote_volume={} trades={} taker_buy_base_volume={} taker_buy_quote_volume={}",
                d(k.open[i]),
                d(k.high[i]),
                d(k.low[i]),
                d(k.close[i]),
                d(k.volume[i]),
                crate::time::format_ms(k.close_time[i]),
                d(k.quote_volume[i]),
                k.trades[i],
                d(k.taker_buy_base_volume[i]),
                d(k.taker_buy_quote_volume[i]),
            ),
            reason: why,
        });
    }
    valid.extend_from(&k, next..k.len());
    (valid, rejected)
}

/// The rejected table's columns: the dataset's key, then where the row came from and why.
fn columns() -> Vec<(&'static str, ColType)> {
    let mut cols: Vec<(&'static str, ColType)> = KLINES
        .key
        .iter()
        .filter_map(|k| KLINES.columns.iter().find(|c| c.name == *k))
        .map(|c| (c.name, c.ty))
        .collect();
    cols.extend([
        ("file", ColType::Text),
        ("row_number", ColType::BigInt),
        ("reason", ColType::Text),
        ("kline", ColType::Text),
        ("rejected_at", ColType::Timestamp),
    ]);
    cols
}

/// `CREATE TABLE IF NOT EXISTS raw.klines_rejected`.
pub fn ddl(kind: DialectRef, raw_schema: &str) -> String {
    let cols = columns()
        .iter()
        .map(|(n, t)| format!("{} {} NOT NULL", quote(kind, n), sql_type(kind, *t)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({cols})",
        relation(kind, raw_schema, REJECTED)
    )
}

/// The statement that records `rows` (none when there are none).
pub fn insert(kind: DialectRef, raw_schema: &str, rows: &[Rejected], at_ms: i64) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let values = rows
        .iter()
        .map(|r| {
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                literal(r.series.exchange.as_str()),
                literal(r.series.market.as_str()),
                literal(r.series.symbol.as_str()),
                literal(r.series.interval.as_str()),
                timestamp_literal(kind, r.open_time),
                literal(&r.file),
                r.row,
                literal(&r.reason),
                literal(&r.kline),
                timestamp_literal(kind, at_ms)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let names = columns()
        .iter()
        .map(|(n, _)| quote(kind, n))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "INSERT INTO {} ({names}) VALUES {values}",
        relation(kind, raw_schema, REJECTED)
    ))
}

/// Rejected rows counted by reason (for the summary).
pub fn by_reason(rows: &[Rejected]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in rows {
        // Close-time reasons name the time; count them under one heading.
        let key = if r.reason.starts_with("close time") {
            "close time does not match the interval".to_string()
        } else {
            r.reason.clone()
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::klines::Kline;

    fn series() -> Series {
        Series {
            exchange: crate::market::Exchange::BINANCE,
            market: crate::market::Market::Spot,
            symbol: "BTCUSDT".parse().unwrap(),
            interval: "1m".parse().unwrap(),
        }
    }

    fn good(t: i64) -> Kline {
        Kline {
            open_time: t,
            open: 100,
            high: 120,
            low: 90,
            close: 110,
            volume: 50,
            close_time: t + 59_999,
            quote_volume: 5_000,
            trades: 3,
            taker_buy_base_volume: 20,
            taker_buy_quote_volume: 2_000,
        }
    }

    #[test]
    fn each_invariant_names_its_reason_and_valid_rows_stay() {
        let mut rows = vec![good(0)];
        let mut bad = |f: &dyn Fn(&mut Kline), why: &str| {
            let mut k = good(rows.len() as i64 * 60_000);
            f(&mut k);
            rows.push(k);
            why.to_string()
        };
        let reasons = [
            bad(&|k| k.high = 105, "high below open or close"),
            bad(&|k| k.low = 101, "low above open or close"),
            bad(&|k| k.volume = -1, "negative volume"),
            bad(&|k| k.trades = -1, "negative trade count"),
            bad(
                &|k| k.taker_buy_base_volume = 51,
                "taker buy volume above volume",
            ),
            bad(
                &|k| k.taker_buy_quote_volume = 5_001,
                "taker buy quote volume above quote volume",
            ),
            bad(&|k| k.close_time += 1, "close time"),
            bad(
                &|k| {
                    k.open_time += 30_000;
                    k.close_time += 30_000;
                },
                "open time not on the 1m grid",
            ),
        ];
        rows.push(good(rows.len() as i64 * 60_000));
        let mut batch = KlineBatch::default();
        for k in &rows {
            batch.push(k);
        }
        let (valid, rejected) = split(&series(), "f.parquet", batch);
        assert_eq!(valid.open_time, [0, 9 * 60_000]);
        assert_eq!(rejected.len(), reasons.len());
        for (r, (want, row)) in rejected.iter().zip(reasons.iter().zip(2..)) {
            assert!(
                r.reason.starts_with(want.as_str()),
                "{} vs {want}",
                r.reason
            );
            assert_eq!(r.row, row);
            assert_eq!(r.file, "f.parquet");
        }
        assert!(
            rejected[0]
                .kline
                .starts_with("open=0.00000100 high=0.00000105"),
            "{}",
            rejected[0].kline
        );
        let s = insert(&crate::warehouse::postgres::DIALECT, "raw", &rejected, 0).unwrap();
        assert!(
            s.starts_with("INSERT INTO \"raw\".\"klines_rejected\""),
            "{s}"
        );
        assert_eq!(
            by_reason(&rejected)["close time does not match the interval"],
            1
        );
    }
}
