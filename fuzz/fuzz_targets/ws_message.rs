//! A WebSocket message of Binance's kline streams: any text is an event, an answer or a reason
//! to keep it as a dead letter, never a panic; a kline it accepts is on its interval's grid.
#![no_main]

use klines::sources::binance::ws::{Message, parse_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Message::Kline(e)) = parse_message(text) {
        let k = e.kline;
        assert_eq!(e.interval.floor(k.open_time), k.open_time);
        assert_eq!(e.interval.close_time(k.open_time), k.close_time);
    }
});
