//! Binance's klines JSON body (`GET /api/v3/klines`): any bytes give rows or an error, never a
//! panic, and the rows it gives are consistent.
#![no_main]

use klines::datasets::klines::{KlineBatch, parse_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut batch = KlineBatch::default();
    if let Ok(n) = parse_body(data, &mut batch) {
        assert_eq!(n, batch.len());
        assert_eq!(batch.close_time.len(), batch.len());
        assert!(
            batch.open_time.windows(2).all(|w| w[0] < w[1]),
            "rows out of order"
        );
    }
});
