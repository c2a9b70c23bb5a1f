//! Where data comes from: one folder per exchange (`binance/`, `coinbase/`), the trait every
//! exchange's REST API implements (`source`), and what every client shares: the HTTP client
//! (`http`), the retry policy (`retry`) and the errors (`error`).

pub mod binance;
pub mod coinbase;
pub mod error;
pub mod http;
pub mod retry;
pub mod source;

pub use error::ExchangeError;
pub use retry::RetryPolicy;
pub use source::{Capabilities, KlineSource};
