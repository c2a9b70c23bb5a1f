//! The third exchange's source: its REST candles as a `KlineSource`, its history REST pages,
//! no live feed (a stream polls). All klines needs of an exchange, in this folder, and found
//! through one registration line (`klines::sources::register(REGISTRATION)`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use klines::datasets::klines::{Kline, KlineBatch};
use klines::market::{Exchange, Interval, Market, Symbol};
use klines::sources::history::RestHistory;
use klines::sources::source::{Capabilities, EmptyBuckets, RateLimits, SourceStats};
use klines::sources::{ExchangeError, KlineSource, Registration, Settings, Source};

/// Its name, and that its candles carry no flow fields (trade counts, quote and taker
/// volumes): those columns are NULL.
pub const TINYEX: Exchange = Exchange::new("tinyex", false);

pub const REGISTRATION: Registration = Registration {
    exchange: TINYEX,
    open,
};

fn open(s: &Settings) -> anyhow::Result<Source> {
    let base = s
        .base_url
        .clone()
        .ok_or_else(|| klines::error::UsageError("--exchange tinyex needs --base-url".into()))?;
    if s.market != Market::Spot {
        anyhow::bail!(klines::error::UsageError(
            "tinyex has spot candles only".into()
        ));
    }
    let rest: Arc<dyn KlineSource> = Arc::new(Tinyex {
        http: reqwest::Client::builder().timeout(s.timeout).build()?,
        base,
        requests: AtomicU64::new(0),
    });
    Ok(Source {
        history: Arc::new(RestHistory::new(Arc::clone(&rest))),
        rest,
        live: None,
    })
}

#[derive(Debug)]
struct Tinyex {
    http: reqwest::Client,
    base: String,
    requests: AtomicU64,
}

impl Tinyex {
    async fn get(&self, path: &str) -> Result<serde_json::Value, ExchangeError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let failed = |e: String| ExchangeError::Exhausted {
            path: path.to_string(),
            attempts: 1,
            last: e,
        };
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !answer.status().is_success() {
            return Err(failed(format!("HTTP {}", answer.status())));
        }
        answer.json().await.map_err(|e| failed(e.to_string()))
    }
}

#[async_trait::async_trait]
impl KlineSource for Tinyex {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            exchange: TINYEX,
            market: Market::Spot,
            page_limit: super::server::PAGE as u32,
            flow_fields: false,
            empty_buckets: EmptyBuckets::Absent,
            closed_by_server_time: true,
            rate_limits: RateLimits::PerSecond(50.0),
        }
    }

    async fn server_time(&self) -> Result<i64, ExchangeError> {
        let v = self.get("/time").await?;
        v["time"]
            .as_i64()
            .ok_or_else(|| ExchangeError::Symbols("/time: no time".into()))
    }

    async fn check_symbols(&self, symbols: &[Symbol]) -> Result<(), ExchangeError> {
        let listed = self.get("/symbols").await?;
        let listed: Vec<&str> = listed
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let unknown: Vec<&str> = symbols
            .iter()
            .map(|s| s.as_str())
            .filter(|s| !listed.contains(s))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ExchangeError::Symbols(format!(
                "unknown on tinyex: {}",
                unknown.join(", ")
            )))
        }
    }

    async fn first_open_time(&self, _: &Symbol, _: Interval) -> Result<Option<i64>, ExchangeError> {
        // It cannot tell: the whole range is asked for.
        Ok(Some(i64::MIN))
    }

    async fn klines(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start: i64,
        end: i64,
        out: &mut KlineBatch,
    ) -> Result<usize, ExchangeError> {
        if interval != Interval::M1 {
            return Err(ExchangeError::Symbols(format!(
                "tinyex has 1m candles only, not {interval}"
            )));
        }
        let end = end.min(start + super::server::PAGE * 60_000);
        let rows = self
            .get(&format!("/candles?symbol={symbol}&start={start}&end={end}"))
            .await?;
        let bad = |detail: String| ExchangeError::InvalidData {
            symbol: symbol.to_string(),
            detail,
        };
        let mut n = 0;
        for row in rows.as_array().into_iter().flatten() {
            let dec = |i: usize| {
                row[i]
                    .as_str()
                    .and_then(|t| klines::decimal::parse(t).ok())
                    .ok_or_else(|| bad(format!("field {i} of {row}")))
            };
            let open_time = row[0]
                .as_i64()
                .ok_or_else(|| bad(format!("open time of {row}")))?;
            out.push(&Kline {
                open_time,
                open: dec(1)?,
                high: dec(2)?,
                low: dec(3)?,
                close: dec(4)?,
                volume: dec(5)?,
                close_time: interval.close_time(open_time),
                quote_volume: 0,
                trades: 0,
                taker_buy_base_volume: 0,
                taker_buy_quote_volume: 0,
            });
            n += 1;
        }
        Ok(n)
    }

    fn stats(&self) -> SourceStats {
        SourceStats {
            requests: self.requests.load(Ordering::Relaxed),
            ..SourceStats::default()
        }
    }
}
