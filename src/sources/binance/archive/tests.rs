use super::*;
use crate::datasets::klines::Kline;
use std::io::Write;

/// 2025-01-01, the day of the small CSVs below.
const DAY25: Period = Period::Day {
    year: 2025,
    month: 1,
    day: 1,
};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/binance-real-full12"
);

fn read(path: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{path}")).unwrap()
}

fn zipped(name: &str, csv: &str) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(csv.as_bytes()).unwrap();
    w.finish().unwrap().into_inner()
}

#[test]
fn addresses_are_binances() {
    let s = Symbol::parse("BTCUSDT").unwrap();
    assert_eq!(
        url(
            "https://data.binance.vision/",
            Market::Spot,
            &s,
            Interval::M1,
            Period::Month {
                year: 2024,
                month: 3
            }
        ),
        "https://data.binance.vision/data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03.zip"
    );
    assert_eq!(
        url(
            "http://127.0.0.1:9",
            Market::UsdM,
            &s,
            Interval::M1,
            Period::Day {
                year: 2022,
                month: 9,
                day: 5
            }
        ),
        "http://127.0.0.1:9/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-09-05.zip"
    );
}

/// The real zips: a whole day each, and the first four hours of the USD-M day roll up to
/// Binance's own 4h candle on every field.
#[test]
fn real_archives_parse_exactly() {
    let spot = parse(
        "ETHUSDT-1m-2022-08-14.zip",
        &read("spot/ETHUSDT-1m-2022-08-14.zip"),
        Interval::M1,
        Period::day_of(1_660_435_200_000),
    )
    .unwrap();
    assert_eq!(spot.open_time.len(), 1440);
    assert_eq!(spot.open_time[0], 1_660_435_200_000);
    let usdm = parse(
        "BTCUSDT-1m-2022-09-05.zip",
        &read("usdm/BTCUSDT-1m-2022-09-05.zip"),
        Interval::M1,
        Period::day_of(1_662_336_000_000),
    )
    .unwrap();
    assert_eq!(usdm.open_time.len(), 1440);
    let day = 1_662_336_000_000; // 2022-09-05
    assert_eq!(usdm.open_time[0], day);
    let four: Vec<Kline> = (0..240).map(|i| usdm.get(i)).collect();
    let csv = String::from_utf8(read("usdm/BTCUSDT_4h_2022-09.csv")).unwrap();
    let binance: Vec<&str> = csv
        .lines()
        .find(|l| l.starts_with("2022-09-05 00:00:00"))
        .unwrap()
        .split(',')
        .collect();
    let d = |s: &str| crate::decimal::parse(s).unwrap();
    assert_eq!(four[0].open, d(binance[1]));
    assert_eq!(four.iter().map(|k| k.high).max().unwrap(), d(binance[2]));
    assert_eq!(four.iter().map(|k| k.low).min().unwrap(), d(binance[3]));
    assert_eq!(four[239].close, d(binance[4]));
    assert_eq!(four.iter().map(|k| k.volume).sum::<i128>(), d(binance[5]));
    assert_eq!(
        four.iter().map(|k| k.quote_volume).sum::<i128>(),
        d(binance[7])
    );
    assert_eq!(
        four.iter().map(|k| k.trades).sum::<i64>(),
        binance[8].parse::<i64>().unwrap()
    );
    assert_eq!(
        four.iter().map(|k| k.taker_buy_base_volume).sum::<i128>(),
        d(binance[9])
    );
    assert_eq!(
        four.iter().map(|k| k.taker_buy_quote_volume).sum::<i128>(),
        d(binance[10])
    );
}

#[test]
fn microseconds_and_header_rows_are_read_as_binance_writes_them() {
    let ms = "1735689600000,1.5,2,1,1.75,10,1735689659999,15,3,4,6,0\n";
    let us = "1735689600000000,1.5,2,1,1.75,10,1735689659999999,15,3,4,6,0\n";
    let header = format!(
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n{ms}"
    );
    let a = parse("a.zip", &zipped("a.csv", ms), Interval::M1, DAY25).unwrap();
    assert_eq!(
        parse("b.zip", &zipped("b.csv", us), Interval::M1, DAY25).unwrap(),
        a
    );
    assert_eq!(
        parse("c.zip", &zipped("c.csv", &header), Interval::M1, DAY25).unwrap(),
        a
    );
    assert_eq!(a.close[0], 175_000_000);
}

#[test]
fn bad_archives_name_the_file_and_line() {
    let zip = read("spot/ETHUSDT-1m-2022-08-14.zip");
    let sum = hex::encode(sha2::Sha256::digest(&zip));
    let name = "ETHUSDT-1m-2022-08-14.zip";
    assert_eq!(
        verify(name, &zip, &format!("{sum}  {name}\n")).unwrap(),
        sum
    );
    let e = verify(name, &zip[1..], &format!("{sum}  {name}\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("ETHUSDT-1m-2022-08-14.zip: its checksum is"),
        "{e}"
    );
    let e = verify(name, &zip, "not a checksum")
        .unwrap_err()
        .to_string();
    assert!(e.contains(".CHECKSUM"), "{e}");
    let e = verify(name, &zip, &format!("{sum}  OTHER.zip"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(".CHECKSUM"), "{e}");

    let e = parse(
        name,
        &zip[..zip.len() / 2],
        Interval::M1,
        Period::day_of(1_660_435_200_000),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("ETHUSDT-1m-2022-08-14.zip: not a zip"), "{e}");
    for (csv, want) in [
        ("1,2,3\n", "x.zip, line 1: 3 fields, not 12"),
        (
            "1735689600000,1.5,2,1,1.75,10,1735689659998,15,3,4,6,0\n",
            "line 1: close_time 1735689659998 does not end",
        ),
        (
            "1735689600000,1.5,1,2,1.75,10,1735689659999,15,3,4,6,0\n",
            "line 1: prices out of order",
        ),
        (
            "1735689600000,1.5,2,1,1.75,1e3,1735689659999,15,3,4,6,0\n",
            "line 1: volume",
        ),
        (
            "1735689660000,1.5,2,1,1.75,10,1735689719999,15,3,4,6,0\n1735689600000,1.5,2,1,1.75,10,1735689659999,15,3,4,6,0\n",
            "line 2: open time not after",
        ),
    ] {
        let e = parse("x.zip", &zipped("x.csv", csv), Interval::M1, DAY25)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{csv}: {e}");
    }
}

/// An empty CSV, or a header alone, is an error naming the file: never a day of nothing.
#[test]
fn an_archive_without_klines_is_an_error() {
    let header = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n";
    for csv in ["", "\n", header] {
        let e = parse(
            "BTCUSDT-1m-2025-01-01.zip",
            &zipped("x.csv", csv),
            Interval::M1,
            DAY25,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "BTCUSDT-1m-2025-01-01.zip: the CSV holds no klines",
            "{csv:?}"
        );
    }
}

/// A zip that inflates far past what its period can hold is refused, naming the zip, and
/// is never inflated whole: the reading stops at the bound.
#[test]
fn a_zip_bomb_is_refused_at_the_bound() {
    let day = "1735689600000,1.5,2,1,1.75,10,1735689659999,15,3,4,6,0\n";
    // 64 MiB of one repeated line: a few hundred KB zipped.
    let big = day.repeat(64 * 1024 * 1024 / day.len());
    let zip = zipped("x.csv", &big);
    assert!(zip.len() < 1 << 20, "{}", zip.len());
    let e = parse("BOMB-1m-2025-01-01.zip", &zip, Interval::M1, DAY25)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("BOMB-1m-2025-01-01.zip: the CSV inflates past 708972 bytes, more than a day of 1m candles can hold"), "{e}");
    // A zip whose header understates the size is stopped by the bytes read.
    assert_eq!(max_csv_bytes(Interval::M1, DAY25), 1441 * 492);
    assert_eq!(
        max_csv_bytes(
            Interval::H1,
            Period::Month {
                year: 2024,
                month: 2
            }
        ),
        (29 * 24 + 1) * 492
    );
}

/// A zip whose headers understate the CSV's size: libdeflate, given a buffer of the declared
/// size, stops there, and the streaming reader that takes over stops at the declared size or
/// the bound; the archive is refused, naming the file, and memory stays bounded.
#[test]
fn a_zip_understating_its_size_is_refused() {
    let day = "1735689600000,1.5,2,1,1.75,10,1735689659999,15,3,4,6,0\n";
    let big = day.repeat(64 * 1024 * 1024 / day.len());
    let mut zip = zipped("x.csv", &big);
    let declared = 1000u32.to_le_bytes();
    let local = zip
        .windows(4)
        .position(|w| w == [0x50, 0x4b, 0x03, 0x04])
        .unwrap();
    zip[local + 22..local + 26].copy_from_slice(&declared);
    let central = zip
        .windows(4)
        .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .unwrap();
    zip[central + 24..central + 28].copy_from_slice(&declared);
    let e = parse("LIAR-1m-2025-01-01.zip", &zip, Interval::M1, DAY25)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("LIAR-1m-2025-01-01.zip: "), "{e}");
}
