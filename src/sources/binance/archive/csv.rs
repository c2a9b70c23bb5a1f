//! The kline CSV inside an archive, read in blocks and scanned as bytes: lines and fields are
//! found with `memchr`, numbers parsed in place, no `String` and no UTF-8 pass per line. A
//! line the scanner does not take as it is (a sign, a space, a wrong field count, text that is
//! not UTF-8) goes to [`row`], the checked parser, which explains what is wrong; both apply the
//! same checks ([`check`]), so they accept and refuse the same lines.

use std::io::Read;

use crate::datasets::klines::{Kline, KlineBatch};
use crate::market::Interval;

/// Why a line is not a kline, for the caller to name the file and line.
pub(super) enum LineError {
    Io(std::io::Error),
    /// Past `limit` bytes.
    TooLarge,
    Row {
        line: usize,
        reason: String,
    },
}

/// Appends the klines of the CSV `reader` yields (at most `limit` bytes) to `out`, in file
/// order, each after the previous one; a header row on the first line is skipped.
pub(super) fn read_klines(
    mut reader: impl Read,
    limit: u64,
    interval: Interval,
    out: &mut KlineBatch,
) -> Result<(), LineError> {
    let mut buf = vec![0u8; 256 * 1024];
    let (mut filled, mut read, mut line_no) = (0usize, 0u64, 0usize);
    loop {
        let n = loop {
            match reader.read(&mut buf[filled..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LineError::Io(e)),
            }
        };
        read += n as u64;
        if read > limit {
            return Err(LineError::TooLarge);
        }
        filled += n;
        let mut pos = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[pos..filled]) {
            line_no += 1;
            take(&buf[pos..pos + nl], line_no, interval, out)?;
            pos += nl + 1;
        }
        if n == 0 {
            if pos < filled {
                line_no += 1;
                take(&buf[pos..filled], line_no, interval, out)?;
            }
            return Ok(());
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        if filled == buf.len() {
            // A line longer than the buffer: bounded by `limit` all the same.
            buf.resize(buf.len() * 2, 0);
        }
    }
}

fn take(
    line: &[u8],
    line_no: usize,
    interval: Interval,
    out: &mut KlineBatch,
) -> Result<(), LineError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() || (line_no == 1 && line.starts_with(b"open_time")) {
        return Ok(());
    }
    let err = |reason: String| LineError::Row {
        line: line_no,
        reason,
    };
    let k = match scan(line) {
        Some(k) => {
            check(&k, interval).map_err(err)?;
            k
        }
        None => {
            let text = std::str::from_utf8(line).map_err(|_| err("not UTF-8 text".into()))?;
            row(text, interval).map_err(err)?
        }
    };
    if out.open_time.last().is_some_and(|&t| t >= k.open_time) {
        return Err(err("open time not after the previous row's".into()));
    }
    out.push(&k);
    Ok(())
}

/// The twelve fields of a line as Binance writes it (plain digits, no signs or spaces), read
/// in one pass: each number is parsed up to the comma that ends it, no search for the commas
/// first. `None` for anything else, which [`row`] then reads or explains.
#[inline]
fn scan(line: &[u8]) -> Option<Kline> {
    let mut s = Fields { b: line, i: 0 };
    let k = Kline {
        open_time: millis(s.uint()?),
        open: s.dec()?,
        high: s.dec()?,
        low: s.dec()?,
        close: s.dec()?,
        volume: s.dec()?,
        close_time: millis(s.uint()?),
        quote_volume: s.dec()?,
        trades: s.uint()?,
        taker_buy_base_volume: s.dec()?,
        taker_buy_quote_volume: s.dec()?,
    };
    // The twelfth field, unused: anything but another comma.
    (!s.b[s.i..].contains(&b',')).then_some(k)
}

/// A cursor over a line's fields.
struct Fields<'a> {
    b: &'a [u8],
    i: usize,
}

impl Fields<'_> {
    /// Up to `max` digits (at least one) as their value and count.
    #[inline]
    fn digits(&mut self, max: usize) -> Option<(u64, usize)> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(&c) = self.b.get(self.i) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            if self.i - start == max {
                return None;
            }
            v = v * 10 + d as u64;
            self.i += 1;
        }
        let n = self.i - start;
        (n > 0).then_some((v, n))
    }

    #[inline]
    fn comma(&mut self) -> Option<()> {
        (self.b.get(self.i) == Some(&b',')).then(|| self.i += 1)
    }

    /// A whole number (at most 18 digits) and its comma.
    #[inline]
    fn uint(&mut self) -> Option<i64> {
        let (v, _) = self.digits(18)?;
        self.comma()?;
        Some(v as i64)
    }

    /// A decimal in Binance's shape ([`crate::decimal::scan_until`]) and its comma.
    #[inline]
    fn dec(&mut self) -> Option<i128> {
        let (v, comma) = crate::decimal::scan_until(&self.b[self.i..], b',')?;
        self.i += comma + 1;
        Some(v)
    }
}

/// Epoch times from 2025 on in spot files are microseconds; anything past the year 5138 in
/// milliseconds is taken as microseconds.
#[inline]
fn millis(t: i64) -> i64 {
    if t >= 100_000_000_000_000 {
        t.div_euclid(1000)
    } else {
        t
    }
}

fn whole(field: &str, name: &str) -> Result<i64, String> {
    field
        .parse()
        .map_err(|_| format!("{name} {field:?} is not a whole number"))
}

/// The checked parser: the same result as [`scan`] where that one reads a line, and the
/// reason where a line is not a kline.
pub(super) fn row(line: &str, interval: Interval) -> Result<Kline, String> {
    // Twelve fields, without allocating per row.
    let mut f = [""; 12];
    let mut n = 0;
    for field in line.split(',') {
        if n < 12 {
            f[n] = field;
        }
        n += 1;
    }
    if n != 12 {
        return Err(format!("{n} fields, not 12"));
    }
    let dec = |i: usize, name: &str| -> Result<i128, String> {
        crate::decimal::parse(f[i]).map_err(|e| format!("{name}: {e}"))
    };
    let k = Kline {
        open_time: millis(whole(f[0], "open_time")?),
        open: dec(1, "open")?,
        high: dec(2, "high")?,
        low: dec(3, "low")?,
        close: dec(4, "close")?,
        volume: dec(5, "volume")?,
        close_time: millis(whole(f[6], "close_time")?),
        quote_volume: dec(7, "quote_volume")?,
        trades: whole(f[8], "trades")?,
        taker_buy_base_volume: dec(9, "taker_buy_base_volume")?,
        taker_buy_quote_volume: dec(10, "taker_buy_quote_volume")?,
    };
    check(&k, interval)?;
    Ok(k)
}

/// What every kline of an archive must be: on the interval's grid, closing where its candle
/// ends, its prices in order.
fn check(k: &Kline, interval: Interval) -> Result<(), String> {
    if interval.floor(k.open_time) != k.open_time {
        return Err(format!(
            "open_time {} is not on the {} grid",
            k.open_time,
            interval.as_str()
        ));
    }
    if k.close_time != interval.close_time(k.open_time) {
        return Err(format!(
            "close_time {} does not end the {} candle opening at {}",
            k.close_time,
            interval.as_str(),
            k.open_time
        ));
    }
    if k.low > k.open.min(k.close) || k.high < k.open.max(k.close) || k.low > k.high {
        return Err("prices out of order (low, open, close, high)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Lines as Binance writes them, spot (eight fractional digits) and USD-M (fewer), take
    /// the scanner, and it reads them as the checked parser does.
    #[test]
    fn binances_lines_take_the_scanner() {
        for line in [
            "1660435200000,1983.55000000,1983.90000000,1982.14000000,1982.29000000,205.13100000,1660435259999,406814.92308000,288,105.29930000,208854.93067400,0",
            "1662336000000,19992.70,20000.00,19988.10,19996.80,482.638,1662336059999,9650791.43440,4263,302.950,6057727.57980,0",
            "1735689600000000,1.5,2.0,1.0,1.75,10.0,1735689659999999,15.0,3,4.0,6.0,0",
        ] {
            let fast = scan(line.as_bytes()).unwrap_or_else(|| panic!("not scanned: {line}"));
            assert_eq!(Ok(fast), row(line, Interval::M1), "{line}");
        }
    }

    proptest! {
        /// The scanner and the checked parser agree on every line: the same kline, or the
        /// scanner passes the line on (and then the checked parser decides).
        #[test]
        fn the_scanner_reads_what_the_checked_parser_reads(
            fields in proptest::collection::vec(
                prop_oneof![
                    "[0-9]{1,20}",
                    "[0-9]{1,12}\\.[0-9]{0,10}",
                    "[-+ ]?[0-9.e]{0,6}",
                    Just("1735689600000".to_string()),
                    Just("1735689659999".to_string()),
                    Just("1735689600000000".to_string()),
                ],
                10..14,
            )
        ) {
            let line = fields.join(",");
            let fast = scan(line.as_bytes());
            // `row` also checks the grid and prices; compare the parsed fields alone.
            let mut f = line.split(',');
            let slow = (fields.len() == 12).then(|| {
                let v: Vec<&str> = f.by_ref().collect();
                let d = |i: usize| crate::decimal::parse(v[i]).ok();
                let w = |i: usize| whole(v[i], "x").ok();
                Some(Kline {
                    open_time: millis(w(0)?),
                    open: d(1)?,
                    high: d(2)?,
                    low: d(3)?,
                    close: d(4)?,
                    volume: d(5)?,
                    close_time: millis(w(6)?),
                    quote_volume: d(7)?,
                    trades: w(8)?,
                    taker_buy_base_volume: d(9)?,
                    taker_buy_quote_volume: d(10)?,
                })
            }).flatten();
            if let Some(k) = fast {
                prop_assert_eq!(Some(k), slow, "{}", line);
            }
        }
    }
}
