//! Binance: the vocabulary (markets, symbols, intervals) and the REST client.

pub mod archive;
pub mod client;
pub mod error;
pub mod interval;
pub mod ratelimit;
pub mod symbol;
pub mod venue;
pub mod ws;

pub use client::{BinanceClient, ClientConfig};
pub use error::ExchangeError;
pub use interval::Interval;
pub use symbol::{Market, Symbol};
pub use venue::Exchange;
