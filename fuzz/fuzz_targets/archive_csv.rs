//! The CSV inside an archive zip: the fuzzer writes the text, a real zip carries it, and the
//! parser gives klines or an error naming the file and line, never a panic.
#![no_main]

use std::io::Write;

use klines::market::Interval;
use klines::sources::binance::archive::{Period, parse};
use libfuzzer_sys::fuzz_target;

const DAY: Period = Period::Day {
    year: 2024,
    month: 3,
    day: 2,
};

fuzz_target!(|data: &[u8]| {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("BTCUSDT-1m-2024-03-02.csv", options).unwrap();
    w.write_all(data).unwrap();
    let zip = w.finish().unwrap().into_inner();
    match parse("BTCUSDT-1m-2024-03-02.zip", &zip, Interval::M1, DAY) {
        Ok(rows) => {
            assert!(!rows.is_empty());
            for i in 0..rows.len() {
                let k = rows.get(i);
                assert_eq!(k.close_time, Interval::M1.close_time(k.open_time));
                assert!(k.low <= k.open.min(k.close) && k.high >= k.open.max(k.close));
            }
        }
        Err(e) => assert!(e.to_string().starts_with("BTCUSDT-1m-2024-03-02.zip")),
    }
});
