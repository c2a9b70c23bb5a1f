//! `/api/indicators`: the INDICATORS table of an interval (models/indicators), for the same
//! symbol, range and limit as `/api/candles`, so the page can overlay moving averages and
//! Bollinger bands and draw RSI and MACD in panes of their own.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::{Map, Value as JsonValue, json};

use super::api::{Api, ApiError, CandleQuery, INTERVALS};
use crate::warehouse::{Value, ident};

/// The indicator table beside each candle table.
pub const TABLES: [(&str, &str); 5] = [
    ("TRADES_OHLC_1M", "INDICATORS_1M"),
    ("TRADES_OHLC_5M", "INDICATORS_5M"),
    ("TRADES_OHLC_15M", "INDICATORS_15M"),
    ("TRADES_OHLC_1H", "INDICATORS_1H"),
    ("TRADES_OHLC_1D", "INDICATORS_1D"),
];

/// Whether a column is one the page draws (not the carried state or the keys).
fn drawn(column: &str) -> bool {
    let c = column.to_ascii_lowercase();
    if crate::models::indicators::compute::STATE.contains(&c.as_str()) {
        return false;
    }
    ["sma_", "ema_", "rsi_", "bb_"]
        .iter()
        .any(|p| c.starts_with(p))
        || ["macd", "macd_signal", "macd_hist"].contains(&c.as_str())
}

/// `GET /api/indicators?symbol=&interval=&from=&to=&limit=&digits=`: `time` (epoch ms, oldest first)
/// and, under `values`, one array per indicator column, numbers (null before an indicator's
/// first bar).
pub async fn indicators(
    State(api): State<Arc<Api>>,
    Query(mut q): Query<BTreeMap<String, String>>,
) -> Result<Json<JsonValue>, ApiError> {
    let digits = take_digits(&mut q)?;
    let mut cq = CandleQuery::parse(&q)?;
    let interval = INTERVALS
        .iter()
        .find(|(_, t)| *t == cq.table)
        .map(|(i, _)| *i)
        .unwrap_or_default();
    cq.table = TABLES
        .iter()
        .find(|(c, _)| *c == cq.table)
        .map(|(_, i)| *i)
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                "no indicators for this interval".into(),
            )
        })?;
    let kind = api.wh.dialect();
    let built = api
        .wh
        .relation(
            &ident::fold(kind, &api.schema),
            &ident::fold(kind, cq.table),
        )
        .await
        .map_err(super::api::internal)?
        .is_some();
    if !built {
        // Not an error for the page: it draws the candles alone.
        return Ok(Json(json!({
            "symbol": cq.symbol.as_str(),
            "interval": interval,
            "built": false,
            "columns": [],
            "time": [],
            "values": {},
        })));
    }
    // The columns as built (the periods are the project's vars).
    let all = api
        .wh
        .query_bound(
            &format!("SELECT * FROM {} WHERE 1 = 0", api.relation(cq.table)),
            &[],
        )
        .await
        .map_err(super::api::internal)?
        .columns;
    let columns: Vec<String> = all.iter().filter(|c| drawn(c)).cloned().collect();
    for c in &columns {
        ident::validate(c).map_err(|e| super::api::internal(e.into()))?;
    }
    let select = std::iter::once("open_time".to_string())
        .chain(columns.iter().cloned())
        .map(|c| ident::quote(kind, &c))
        .collect::<Vec<_>>()
        .join(", ");
    let (sql, params) = cq.newest(&api, &select, cq.from);
    let rows = api
        .wh
        .query_bound(&sql, &params)
        .await
        .map_err(super::api::internal)?;
    // One array per column, oldest first (`rows` is newest first).
    let rows: Vec<_> = rows
        .rows
        .iter()
        .rev()
        .filter_map(|r| match r[0] {
            Value::Timestamp(us) => Some((us.div_euclid(1000), &r[1..])),
            _ => None,
        })
        .collect();
    let mut values = Map::new();
    for (i, c) in columns.iter().enumerate() {
        let column: Vec<JsonValue> = rows
            .iter()
            .map(|(_, r)| match r[i] {
                Value::Float(x) if x.is_finite() => json!(round(x, digits)),
                _ => JsonValue::Null,
            })
            .collect();
        values.insert(c.to_ascii_lowercase(), JsonValue::Array(column));
    }
    Ok(Json(json!({
        "symbol": cq.symbol.as_str(),
        "interval": interval,
        "built": true,
        "columns": columns.iter().map(|c| c.to_ascii_lowercase()).collect::<Vec<_>>(),
        "time": rows.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        "values": values,
    })))
}

/// `?digits=N` (1 to 17): each value rounded to N significant digits, enough to draw and to
/// read in a legend at a fraction of the bytes (the page asks for 8); full precision when
/// absent.
fn take_digits(q: &mut BTreeMap<String, String>) -> Result<Option<usize>, ApiError> {
    let Some(d) = q.remove("digits") else {
        return Ok(None);
    };
    d.parse::<usize>()
        .ok()
        .filter(|n| (1..=17).contains(n))
        .map(Some)
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("digits {d:?} is not a whole number from 1 to 17"),
            )
        })
}

/// `x` to `digits` significant digits (the nearest double to the decimal rounding).
fn round(x: f64, digits: Option<usize>) -> f64 {
    match digits {
        Some(d) => format!("{x:.*e}", d - 1).parse().unwrap_or(x),
        None => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_to_significant_digits_and_bad_digits_are_named() {
        assert_eq!(round(41189.479499999994, Some(8)), 41189.479);
        assert_eq!(round(0.000123456789, Some(3)), 0.000123);
        assert_eq!(round(41189.479499999994, None), 41189.479499999994);
        let mut q: BTreeMap<String, String> = [("digits".to_string(), "8".to_string())].into();
        assert_eq!(take_digits(&mut q).unwrap(), Some(8));
        for bad in ["0", "18", "x"] {
            let mut q: BTreeMap<String, String> = [("digits".to_string(), bad.to_string())].into();
            let e = take_digits(&mut q).unwrap_err();
            assert_eq!(e.0, StatusCode::BAD_REQUEST);
            assert!(e.1.starts_with(&format!("digits {bad:?}")), "{}", e.1);
        }
    }
}
