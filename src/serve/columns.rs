//! The columnar form the page reads: one array per column instead of one object per bar, so
//! that 10,000 bars do not repeat eleven keys 10,000 times (the object form was 2.3 MB of
//! JSON for 10,000 bars, this one is under half of it). Decimals stay exact strings
//! (trailing zeros dropped), `null` where the source does not provide a field.

/// One candle as the page takes it: exact decimal text (trailing zeros dropped), `None` for
/// a field the source does not provide.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candle {
    pub time: i64,
    pub open: Option<String>,
    pub high: Option<String>,
    pub low: Option<String>,
    pub close: Option<String>,
    pub volume: Option<String>,
    pub quote_volume: Option<String>,
    pub trades: Option<i64>,
    pub taker_buy_base_volume: Option<String>,
    pub taker_buy_quote_volume: Option<String>,
    pub is_complete: bool,
}

/// The fields a candle has besides its time, in the order they are answered.
pub const FIELDS: [&str; 9] = [
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
];

/// Candles, oldest first, as columns of equal length.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// The fields answered (`?fields=`); all of them when `None`.
    pub only: Option<Vec<&'static str>>,
}

impl CandleColumns {
    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    fn wanted(&self, field: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(&field))
    }
}

impl serde::Serialize for CandleColumns {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("time", &self.time)?;
        let text = [
            &self.open,
            &self.high,
            &self.low,
            &self.close,
            &self.volume,
            &self.quote_volume,
        ];
        for (name, column) in FIELDS.iter().zip(text) {
            if self.wanted(name) {
                m.serialize_entry(name, column)?;
            }
        }
        if self.wanted("trades") {
            m.serialize_entry("trades", &self.trades)?;
        }
        for (name, column) in [
            ("taker_buy_base_volume", &self.taker_buy_base_volume),
            ("taker_buy_quote_volume", &self.taker_buy_quote_volume),
        ] {
            if self.wanted(name) {
                m.serialize_entry(name, column)?;
            }
        }
        m.serialize_entry("incomplete", &self.incomplete)?;
        m.end()
    }
}

/// `?fields=open,high,...`: the candle fields to answer (the page asks for what it draws; a
/// year of 10,000 bars is then well under a megabyte). Taken out of `q`; `None` when absent.
pub fn take_fields(
    q: &mut std::collections::BTreeMap<String, String>,
) -> Result<Option<Vec<&'static str>>, String> {
    let Some(list) = q.remove("fields") else {
        return Ok(None);
    };
    list.split(',')
        .map(|f| {
            FIELDS
                .iter()
                .copied()
                .find(|k| *k == f)
                .ok_or_else(|| format!("fields: {f:?} is not one of {}", FIELDS.join(", ")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
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
        let only = CandleColumns {
            only: Some(vec!["close"]),
            ..cols
        };
        let json = serde_json::to_value(&only).unwrap();
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["close", "incomplete", "time"]);
    }

    #[test]
    fn fields_are_checked_and_name_the_one_unknown() {
        let mut q: std::collections::BTreeMap<String, String> =
            [("fields".to_string(), "close,volume".to_string())].into();
        assert_eq!(take_fields(&mut q).unwrap(), Some(vec!["close", "volume"]));
        assert!(q.is_empty());
        let mut q = [("fields".to_string(), "close,price".to_string())].into();
        assert_eq!(
            take_fields(&mut q).unwrap_err(),
            "fields: \"price\" is not one of open, high, low, close, volume, quote_volume, trades, taker_buy_base_volume, taker_buy_quote_volume"
        );
    }
}
