//! Embedded DuckDB: the adapter (with the `duckdb` feature) and its dialect.

#[cfg(feature = "duckdb")]
mod adapter;
#[cfg(feature = "duckdb")]
mod appender;
pub mod dialect;
#[cfg(feature = "duckdb")]
mod driver;

#[cfg(feature = "duckdb")]
pub use adapter::DuckDb;
pub use dialect::DIALECT;
