//! The JSON API over the TRADES_OHLC tables: `/api/symbols` and `/api/candles`. Inputs are
//! validated, values reach SQL only as bound parameters, decimals leave as exact strings.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as JsonValue, json};

use super::columns::{Candle, CandleColumns};
use crate::datasets::klines::KLINES;
use crate::market::Symbol;
use crate::warehouse::{Param, Value, Warehouse, ident};

/// The candle intervals the page offers: one model table each.
pub const INTERVALS: [(&str, &str); 5] = [
    ("1m", "TRADES_OHLC_1M"),
    ("5m", "TRADES_OHLC_5M"),
    ("15m", "TRADES_OHLC_15M"),
    ("1h", "TRADES_OHLC_1H"),
    ("1d", "TRADES_OHLC_1D"),
];

/// Bars one request may ask for.
pub const MAX_LIMIT: i64 = 10_000;
const DEFAULT_LIMIT: i64 = 1_000;

/// What a candle is answered with: the dataset's time and value columns as the TRADES_OHLC
/// models keep them (no close time; the models' bucket is the open time's), and whether the
/// bucket is complete.
fn columns() -> Vec<&'static str> {
    KLINES
        .columns
        .iter()
        .map(|c| c.name)
        .filter(|n| !KLINES.series.contains(n) && *n != "close_time")
        .chain(["is_complete"])
        .collect()
}

pub struct Api {
    pub wh: Arc<dyn Warehouse>,
    /// The models' schema (the target's `schema`).
    pub schema: String,
}

/// An error answered as `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

pub(super) fn internal(e: anyhow::Error) -> ApiError {
    tracing::error!(error = %format!("{e:#}"), "dashboard query failed");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the warehouse query failed; the server log has the details".into(),
    )
}

impl Api {
    pub(super) fn relation(&self, table: &str) -> String {
        ident::relation(self.wh.dialect(), &self.schema, table)
    }

    /// The intervals whose table exists.
    async fn intervals(&self) -> anyhow::Result<Vec<&'static str>> {
        let kind = self.wh.dialect();
        let mut out = Vec::new();
        for (name, table) in INTERVALS {
            if self
                .wh
                .relation(&ident::fold(kind, &self.schema), &ident::fold(kind, table))
                .await?
                .is_some()
            {
                out.push(name);
            }
        }
        Ok(out)
    }
}

/// `GET /api/symbols`: the symbols of the finest interval's table, and the intervals built.
pub async fn symbols(State(api): State<Arc<Api>>) -> Result<Json<JsonValue>, ApiError> {
    let intervals = api.intervals().await.map_err(internal)?;
    let Some(first) = intervals.first() else {
        return Ok(Json(json!({ "symbols": [], "intervals": [] })));
    };
    let table = table_of(first).expect("listed");
    let sql = format!(
        "SELECT DISTINCT {} FROM {} ORDER BY 1",
        ident::quote(api.wh.dialect(), "symbol"),
        api.relation(table)
    );
    let rows = api.wh.query_bound(&sql, &[]).await.map_err(internal)?;
    let symbols: Vec<String> = rows.rows.iter().map(|r| r[0].to_string()).collect();
    Ok(Json(json!({ "symbols": symbols, "intervals": intervals })))
}

fn table_of(interval: &str) -> Option<&'static str> {
    INTERVALS
        .iter()
        .find(|(i, _)| *i == interval)
        .map(|(_, t)| *t)
}

/// The checked query of `/api/candles`.
#[derive(Debug, PartialEq)]
pub struct CandleQuery {
    pub symbol: Symbol,
    pub table: &'static str,
    pub from: i64,
    pub to: i64,
    pub limit: i64,
}

impl CandleQuery {
    /// Checks every parameter of `/api/candles`; the error names the one at fault.
    pub fn parse(q: &BTreeMap<String, String>) -> Result<CandleQuery, ApiError> {
        Self::parse_as(q, "from", &["symbol", "interval", "from", "to", "limit"])
    }

    /// Checks the parameters `known`, where the range's start is called `from_name` (`since`
    /// on `/api/live`); an error names the parameter as the caller sent it.
    pub fn parse_as(
        q: &BTreeMap<String, String>,
        from_name: &str,
        known: &[&str],
    ) -> Result<CandleQuery, ApiError> {
        for k in q.keys() {
            if !known.contains(&k.as_str()) {
                let (last, rest) = known.split_last().unwrap_or((&"", &[]));
                return Err(bad(format!(
                    "unknown parameter {k:?}: {} and {last} are known",
                    rest.join(", ")
                )));
            }
        }
        let symbol = q
            .get("symbol")
            .ok_or_else(|| bad("symbol is required"))
            .and_then(|s| Symbol::parse(s).map_err(|e| bad(format!("symbol: {e}"))))?;
        let interval = q.get("interval").map(String::as_str).unwrap_or("1m");
        let table = table_of(interval).ok_or_else(|| {
            bad(format!(
                "interval {interval:?} is not one of {}",
                INTERVALS.map(|(i, _)| i).join(", ")
            ))
        })?;
        let int = |name: &str, default: i64, min: i64, max: i64| -> Result<i64, ApiError> {
            match q.get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "{name} {v:?} is not a whole number from {min} to {max}"
                        ))
                    }),
            }
        };
        // Times in epoch milliseconds, up to the year 9999.
        const MAX_MS: i64 = 253_402_300_799_999;
        let from = int(from_name, 0, 0, MAX_MS)?;
        let to = int("to", MAX_MS, 0, MAX_MS)?;
        if to <= from {
            return Err(bad(format!("to {to} is not after {from_name} {from}")));
        }
        let limit = int("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)?;
        Ok(CandleQuery {
            symbol,
            table,
            from,
            to,
            limit,
        })
    }

    /// `SELECT columns` of the newest `limit` candles of `[from, to)`, newest first; the
    /// values are bound parameters.
    pub(super) fn newest(&self, api: &Api, columns: &str, from: i64) -> (String, Vec<Param>) {
        let (kind, ph) = (api.wh.dialect(), |n: usize| api.wh.placeholder(n));
        let ts = |n: usize| kind.timestamp_from_ms(&ph(n));
        let sql = format!(
            "SELECT {columns} FROM {} WHERE {} = {} AND {ot} >= {} AND {ot} < {} ORDER BY {ot} DESC LIMIT {}",
            api.relation(self.table),
            ident::quote(kind, "symbol"),
            ph(1),
            ts(2),
            ts(3),
            ph(4),
            ot = ident::quote(kind, "open_time"),
        );
        (sql, self.params(from))
    }

    /// The open time of the oldest of those candles: a query of the time column alone, so that
    /// the query of whole rows reads only the blocks from there on (DuckDB prunes by block;
    /// Postgres walks its range index either way).
    fn start_sql(&self, api: &Api) -> (String, Vec<Param>) {
        let ot = ident::quote(api.wh.dialect(), "open_time");
        let (inner, params) = self.newest(api, &ot, self.from);
        (format!("SELECT min({ot}) FROM ({inner}) AS newest"), params)
    }

    /// The candles themselves, from `start`.
    fn rows_sql(&self, api: &Api, start: i64) -> (String, Vec<Param>) {
        let kind = api.wh.dialect();
        let columns = columns()
            .iter()
            .map(|c| ident::quote(kind, c))
            .collect::<Vec<_>>()
            .join(", ");
        self.newest(api, &columns, start)
    }

    fn params(&self, from: i64) -> Vec<Param> {
        vec![
            Param::Text(self.symbol.as_str().to_string()),
            Param::Int(from),
            Param::Int(self.to),
            Param::Int(self.limit),
        ]
    }
}

/// `GET /api/candles?symbol=&interval=&from=&to=&limit=`: oldest first, times in epoch ms,
/// prices and volumes as exact decimal strings, one array per column ([`CandleColumns`]).
pub async fn candles(
    State(api): State<Arc<Api>>,
    Query(mut q): Query<BTreeMap<String, String>>,
) -> Result<Json<Candles>, ApiError> {
    let only = super::columns::take_fields(&mut q).map_err(bad)?;
    let cq = CandleQuery::parse(&q)?;
    let candles = fetch(&api, &cq).await?;
    Ok(Json(Candles {
        symbol: cq.symbol.as_str().to_string(),
        interval: INTERVALS
            .iter()
            .find(|(_, t)| *t == cq.table)
            .map(|(i, _)| *i)
            .unwrap_or_default(),
        candles: CandleColumns {
            only,
            ..candles.into_iter().collect()
        },
    }))
}

/// The answer of `/api/candles`: `{"symbol", "interval", "time": [...], "open": [...], ...}`.
#[derive(serde::Serialize)]
pub struct Candles {
    pub symbol: String,
    pub interval: &'static str,
    #[serde(flatten)]
    pub candles: CandleColumns,
}

/// The query's candles, oldest first, as the page takes them.
pub async fn fetch(api: &Api, cq: &CandleQuery) -> Result<Vec<Candle>, ApiError> {
    let rows = match rows(api, cq).await {
        Ok(rows) => rows,
        // The interval's model has not been built.
        Err(_)
            if api
                .intervals()
                .await
                .is_ok_and(|built| !built.iter().any(|i| table_of(i) == Some(cq.table))) =>
        {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("{} is not built in {}", cq.table, api.schema),
            ));
        }
        Err(e) => return Err(internal(e)),
    };
    if rows.rows.is_empty()
        && !known_symbol(api, cq.table, &cq.symbol)
            .await
            .map_err(internal)?
    {
        return Err(unknown_symbol(api, cq));
    }
    rows.rows
        .iter()
        .rev()
        .map(|r| candle(r).map_err(internal))
        .collect()
}

/// Whether `symbol` has any row in `table`: a symbol it does not hold is answered 404 (as
/// Binance answers "Invalid symbol"), so a typo is not an empty chart.
pub(super) async fn known_symbol(api: &Api, table: &str, symbol: &Symbol) -> anyhow::Result<bool> {
    let sql = format!(
        "SELECT 1 FROM {} WHERE {} = {} LIMIT 1",
        api.relation(table),
        ident::quote(api.wh.dialect(), "symbol"),
        api.wh.placeholder(1)
    );
    let rows = api
        .wh
        .query_bound(&sql, &[Param::Text(symbol.as_str().to_string())])
        .await?;
    Ok(!rows.rows.is_empty())
}

pub(super) fn unknown_symbol(api: &Api, cq: &CandleQuery) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "unknown symbol {}: it is not in {}.{}",
            cq.symbol.as_str(),
            api.schema,
            cq.table
        ),
    )
}

async fn rows(api: &Api, cq: &CandleQuery) -> anyhow::Result<crate::warehouse::Rows> {
    let (sql, params) = cq.start_sql(api);
    let start = api.wh.query_bound(&sql, &params).await?;
    let start = match start.rows.first().and_then(|r| r.first()) {
        Some(Value::Timestamp(us)) => us.div_euclid(1000),
        _ => return Ok(crate::warehouse::Rows::default()),
    };
    let (sql, params) = cq.rows_sql(api, start);
    api.wh.query_bound(&sql, &params).await
}

/// One row as the page's candle.
pub fn candle(r: &[Value]) -> anyhow::Result<Candle> {
    let time = match r[0] {
        Value::Timestamp(us) => us.div_euclid(1000),
        ref other => anyhow::bail!("open_time is {other:?}, not a timestamp"),
    };
    let dec = |i: usize| -> Option<String> {
        match &r[i] {
            Value::Null => None,
            v => Some(trimmed(v.to_string())),
        }
    };
    let trades = match &r[7] {
        Value::Null => None,
        v => Some(
            v.as_i64()
                .ok_or_else(|| anyhow::anyhow!("trades is {v:?}, not a whole number"))?,
        ),
    };
    let is_complete = match &r[10] {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        other => anyhow::bail!("is_complete is {other:?}, not a boolean"),
    };
    Ok(Candle {
        time,
        open: dec(1),
        high: dec(2),
        low: dec(3),
        close: dec(4),
        volume: dec(5),
        quote_volume: dec(6),
        trades,
        taker_buy_base_volume: dec(8),
        taker_buy_quote_volume: dec(9),
        is_complete,
    })
}

/// "42000.10000000" as "42000.1": the same value, shorter.
fn trimmed(mut s: String) -> String {
    if s.contains('.') {
        let keep = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(keep);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decimals_lose_only_trailing_zeros() {
        for (s, want) in [
            ("42000.10000000", "42000.1"),
            ("0.00000000", "0"),
            ("100", "100"),
            ("-1.50", "-1.5"),
            ("10.0", "10"),
        ] {
            assert_eq!(trimmed(s.to_string()), want);
        }
    }

    #[test]
    fn candle_queries_are_checked_and_name_what_is_wrong() {
        let ok = CandleQuery::parse(&q(&[
            ("symbol", "btcusdt"),
            ("interval", "5m"),
            ("limit", "10"),
        ]))
        .unwrap();
        assert_eq!(ok.symbol.as_str(), "BTCUSDT");
        assert_eq!(ok.table, "TRADES_OHLC_5M");
        assert_eq!(ok.limit, 10);
        for (pairs, msg) in [
            (vec![], "symbol is required"),
            (vec![("symbol", "BTC'; DROP TABLE x")], "symbol"),
            (
                vec![("symbol", "BTCUSDT"), ("interval", "2m")],
                "interval \"2m\" is not one of 1m, 5m, 15m, 1h, 1d",
            ),
            (
                vec![("symbol", "BTCUSDT"), ("limit", "0")],
                "limit \"0\" is not a whole number from 1 to 10000",
            ),
            (vec![("symbol", "BTCUSDT"), ("limit", "10001")], "limit"),
            (vec![("symbol", "BTCUSDT"), ("from", "x")], "from \"x\""),
            (
                vec![("symbol", "BTCUSDT"), ("from", "10"), ("to", "5")],
                "to 5 is not after from 10",
            ),
            (
                vec![("symbol", "BTCUSDT"), ("sql", "1")],
                "unknown parameter \"sql\"",
            ),
        ] {
            let e = CandleQuery::parse(&q(&pairs)).err().unwrap();
            assert_eq!(e.0, StatusCode::BAD_REQUEST);
            assert!(e.1.contains(msg), "{pairs:?}: {}", e.1);
        }
    }
}
