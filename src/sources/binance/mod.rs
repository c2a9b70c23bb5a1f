//! Binance: the REST client (spot and USD-M), its weight limiter, the JSON of its klines, the
//! bulk archives and the WebSocket kline streams.

pub mod archive;
pub mod json;
pub mod ratelimit;
pub mod rest;
pub mod ws;

pub use rest::{BinanceClient, ClientConfig};
