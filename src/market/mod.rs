//! The vocabulary every layer shares: exchanges, markets, symbols, intervals, and the series
//! they make.

pub mod interval;
pub mod period;
pub mod series;
pub mod symbol;
pub mod venue;

pub use interval::Interval;
pub use period::Period;
pub use series::Series;
pub use symbol::{Market, Symbol};
pub use venue::Exchange;
