//! Coinbase's candles body (`[[time, low, high, open, close, volume], ...]`, JSON numbers):
//! candles on the granularity's grid or an error, never a panic.
#![no_main]

use klines::sources::coinbase::parse_candles;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for len_ms in [60_000, 86_400_000] {
        if let Ok(rows) = parse_candles(data, len_ms) {
            for k in rows {
                assert_eq!(k.open_time.rem_euclid(len_ms), 0);
                assert_eq!(k.close_time, k.open_time + len_ms - 1);
                assert!(k.low <= k.open.min(k.close) && k.high >= k.open.max(k.close));
            }
        }
    }
});
