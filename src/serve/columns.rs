//! The columnar form the page reads: one array per column instead of one object per bar, so
//! that 10,000 bars do not repeat eleven keys 10,000 times (the object form was 2.3 MB of
//! JSON for 10,000 bars, this one is under half of it). Decimals stay exact strings
//! (trailing zeros dropped), `null` where the source does not provide a field.

use super::api::Candle;

/// Candles, oldest first, as columns of equal length.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CandleColumns {
    /// Open times, epoch milliseconds.
    pub time: Vec<i64>,
    pub open: Vec<Option<String>>,
    pub high: Vec<Option<String>>,
    pub low: Vec<Option<String>>,
    pub close: Vec<Option<String>>,
    pub volume: Vec<Option<String>>,
    pub quote_volume: Vec<Option<String>>,
    pub trades: Vec<Option<i64>>,
    pub taker_buy_base_volume: Vec<Option<String>>,
    pub taker_buy_quote_volume: Vec<Option<String>>,
    /// The open times of the buckets not yet complete (the forming one, or one with
    /// minutes missing): few, so listed rather than a flag per bar.
    pub incomplete: Vec<i64>,
}

impl CandleColumns {
    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }
}

impl FromIterator<Candle> for CandleColumns {
    fn from_iter<I: IntoIterator<Item = Candle>>(candles: I) -> Self {
        let mut out = CandleColumns::default();
        for c in candles {
            out.time.push(c.time);
            out.open.push(c.open);
            out.high.push(c.high);
            out.low.push(c.low);
            out.close.push(c.close);
            out.volume.push(c.volume);
            out.quote_volume.push(c.quote_volume);
            out.trades.push(c.trades);
            out.taker_buy_base_volume.push(c.taker_buy_base_volume);
            out.taker_buy_quote_volume.push(c.taker_buy_quote_volume);
            if !c.is_complete {
                out.incomplete.push(c.time);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candle(time: i64, close: &str, complete: bool) -> Candle {
        Candle {
            time,
            open: Some("1".into()),
            high: Some("2".into()),
            low: Some("0.5".into()),
            close: Some(close.into()),
            volume: Some("10".into()),
            quote_volume: None,
            trades: None,
            taker_buy_base_volume: None,
            taker_buy_quote_volume: None,
            is_complete: complete,
        }
    }

    #[test]
    fn columns_keep_order_exact_text_and_the_incomplete_buckets() {
        let cols: CandleColumns = [
            candle(60_000, "1.5", true),
            candle(120_000, "1.25000001", false),
        ]
        .into_iter()
        .collect();
        assert_eq!(cols.len(), 2);
        let json = serde_json::to_value(&cols).unwrap();
        assert_eq!(json["time"], serde_json::json!([60_000, 120_000]));
        assert_eq!(json["close"], serde_json::json!(["1.5", "1.25000001"]));
        assert_eq!(json["trades"], serde_json::json!([null, null]));
        assert_eq!(json["incomplete"], serde_json::json!([120_000]));
    }
}
