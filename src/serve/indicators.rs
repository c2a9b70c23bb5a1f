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

/// `GET /api/indicators?symbol=&interval=&from=&to=&limit=`: oldest first, times in epoch ms,
/// values as numbers (NULL before an indicator's first bar).
pub async fn indicators(
    State(api): State<Arc<Api>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<JsonValue>, ApiError> {
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
            "points": [],
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
    let points: Vec<JsonValue> = rows
        .rows
        .iter()
        .rev()
        .filter_map(|r| {
            let Value::Timestamp(us) = r[0] else {
                return None;
            };
            let mut p = Map::new();
            p.insert("time".into(), json!(us.div_euclid(1000)));
            for (c, v) in columns.iter().zip(&r[1..]) {
                let v = match v {
                    Value::Float(x) if x.is_finite() => json!(x),
                    _ => JsonValue::Null,
                };
                p.insert(c.to_ascii_lowercase(), v);
            }
            Some(JsonValue::Object(p))
        })
        .collect();
    Ok(Json(json!({
        "symbol": cq.symbol.as_str(),
        "interval": interval,
        "built": true,
        "columns": columns.iter().map(|c| c.to_ascii_lowercase()).collect::<Vec<_>>(),
        "points": points,
    })))
}
