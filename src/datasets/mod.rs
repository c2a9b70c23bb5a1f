//! The datasets klines keeps: what their rows are.

pub mod klines;
