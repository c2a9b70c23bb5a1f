//! The exchanges: the vocabulary (exchanges, markets, symbols, intervals), the source trait
//! every exchange implements, and Binance's REST client, archives and WebSocket streams.

pub mod archive;
pub mod client;
pub mod coinbase;
pub mod error;
pub mod http;
pub mod interval;
pub mod ratelimit;
pub mod retry;
pub mod source;
pub mod symbol;
pub mod venue;
pub mod ws;

pub use client::{BinanceClient, ClientConfig};
pub use error::ExchangeError;
pub use retry::RetryPolicy;
pub use source::{Capabilities, KlineSource};
pub use interval::Interval;
pub use symbol::{Market, Symbol};
pub use venue::Exchange;
