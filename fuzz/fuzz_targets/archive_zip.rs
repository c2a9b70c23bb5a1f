//! A downloaded archive zip, as bytes: any zip (or not) gives klines or an error naming the
//! file, never a panic and never more rows than the day can hold.
#![no_main]

use klines::market::Interval;
use klines::sources::binance::archive::{Period, parse};
use libfuzzer_sys::fuzz_target;

const DAY: Period = Period::Day {
    year: 2024,
    month: 3,
    day: 2,
};

fuzz_target!(|data: &[u8]| {
    match parse("BTCUSDT-1m-2024-03-02.zip", data, Interval::M1, DAY) {
        Ok(rows) => assert!(rows.len() <= 1440 * 2, "{} rows", rows.len()),
        Err(e) => assert!(e.to_string().starts_with("BTCUSDT-1m-2024-03-02.zip")),
    }
});
