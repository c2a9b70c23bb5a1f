//! Exact decimals with 8 fractional digits, as Binance prints prices and volumes.
//!
//! A value is an `i128` count of 10^-8 units: the representation of Arrow's
//! `Decimal128(38, 8)`, Postgres' `NUMERIC(38,8)` and Snowflake's `NUMBER(38,8)`. Parsing
//! never goes through a float and refuses anything it cannot keep exactly.

use std::fmt::Write as _;

/// Fractional digits kept.
pub const SCALE: i8 = 8;
/// Total digits kept.
pub const PRECISION: u8 = 38;
const UNIT: i128 = 100_000_000;
const MAX_ABS: i128 = 10i128.pow(PRECISION as u32) - 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("{0:?} is not a decimal number")]
    Syntax(String),
    #[error("{0:?} has more than 8 significant fractional digits")]
    TooPrecise(String),
    #[error("{0:?} does not fit in 38 digits")]
    Overflow(String),
}

/// Parses `"42000.01000000"`, `"-0.5"`, `"17"` or `"1.5e-3"`-free plain decimals into units of
/// 10^-8. Trailing zero digits beyond the eighth are accepted; other digits there are not.
pub fn parse(s: &str) -> Result<i128, DecimalError> {
    parse_bytes(s.as_bytes()).ok_or_else(|| classify(s))
}

/// The fast path: `None` on any problem (use [`parse`] for the error).
#[inline]
pub fn parse_bytes(b: &[u8]) -> Option<i128> {
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    match scan(digits) {
        Some((v, end)) if end == digits.len() => Some(if neg { -v } else { v }),
        _ => parse_general(b),
    }
}

/// The decimal at the start of `b` that `end` closes (`,` in a CSV line, `"` in JSON), in
/// Binance's shape ([`scan`]): its value and where `end` is. `None` for any other shape, which
/// the caller reads with [`parse_bytes`] once it has found the end itself.
#[inline]
pub fn scan_until(b: &[u8], end: u8) -> Option<(i128, usize)> {
    scan(b).filter(|&(_, at)| b.get(at) == Some(&end))
}

/// The shape Binance prints every price and volume in, at the start of `b`: 1 to 18 integer
/// digits, a point and 1 to 8 fractional digits (`"46216.93000000"`), eight of them read as one
/// 8-byte word (SWAR: from ~180 instructions per value to well under half). Its value and the
/// index after it; `None` for any other shape (signs, more digits, exponents), which
/// [`parse_general`] reads.
#[inline]
fn scan(b: &[u8]) -> Option<(i128, usize)> {
    let mut i = 0;
    let mut int: u64 = 0;
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        if i == 18 {
            // More integer digits than a u64 holds: the general parser's case.
            return None;
        }
        int = int * 10 + d as u64;
        i += 1;
    }
    if i == 0 || b.get(i) != Some(&b'.') {
        return None;
    }
    i += 1;
    let word = b
        .get(i..i + 8)
        .and_then(|d| eight_digits(d.try_into().ok()?));
    let frac = match word {
        Some(v) => {
            i += 8;
            v
        }
        None => {
            let start = i;
            let mut v: u64 = 0;
            while let Some(&c) = b.get(i) {
                let d = c.wrapping_sub(b'0');
                if d > 9 || i - start == 8 {
                    break;
                }
                v = v * 10 + d as u64;
                i += 1;
            }
            if i == start {
                return None;
            }
            v * POW10[8 - (i - start)]
        }
    };
    if b.get(i).is_some_and(u8::is_ascii_digit) {
        // A ninth fractional digit: only zeros may follow, which the general parser checks.
        return None;
    }
    Some((int as i128 * UNIT + frac as i128, i))
}

/// Eight ASCII digits as their value, or `None` if any byte is not a digit.
#[inline]
pub fn eight_digits(b: &[u8; 8]) -> Option<u64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    let v = u64::from_le_bytes(*b);
    // Every byte 0x30..=0x39: its high nibble is 3, and adding 6 keeps it so.
    let high = 0xF0F0_F0F0_F0F0_F0F0;
    if v & high != ZEROS || v.wrapping_add(0x0606_0606_0606_0606) & high != ZEROS {
        return None;
    }
    let mut x = v - ZEROS;
    x = x.wrapping_mul(10).wrapping_add(x >> 8);
    x = ((x & 0x0000_00FF_0000_00FF)
        .wrapping_mul(100 + (1_000_000 << 32))
        .wrapping_add(((x >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32))))
        >> 32;
    Some(x)
}

/// Every plain decimal [`parse`] accepts.
fn parse_general(b: &[u8]) -> Option<i128> {
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let (int_part, frac_part) = match memchr::memchr(b'.', digits) {
        Some(p) => (&digits[..p], &digits[p + 1..]),
        None => (digits, &digits[digits.len()..]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    // Up to 30 integer digits keep the total within 38; up to 18, the usual case, fit a u64.
    let int: i128 = if int_part.len() <= 18 {
        let mut v: u64 = 0;
        for &c in int_part {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + d as u64;
        }
        v as i128
    } else if int_part.len() <= 30 {
        let mut v: i128 = 0;
        for &c in int_part {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + d as i128;
        }
        v
    } else {
        return None;
    };
    let kept = frac_part.len().min(SCALE as usize);
    let mut frac: u64 = 0;
    for &c in &frac_part[..kept] {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        frac = frac * 10 + d as u64;
    }
    // Digits past the eighth may only be zeros.
    if frac_part[kept..].iter().any(|&c| c != b'0') {
        return None;
    }
    let v = int * UNIT + (frac * POW10[SCALE as usize - kept]) as i128;
    if v > MAX_ABS {
        return None;
    }
    Some(if neg { -v } else { v })
}

const POW10: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

fn classify(s: &str) -> DecimalError {
    let body = s.trim_start_matches(['-', '+']);
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    let well_formed = !(int_part.is_empty() && frac_part.is_empty())
        && int_part.bytes().all(|c| c.is_ascii_digit())
        && frac_part.bytes().all(|c| c.is_ascii_digit())
        && !body.is_empty();
    if !well_formed {
        DecimalError::Syntax(s.to_string())
    } else if frac_part.bytes().skip(SCALE as usize).any(|c| c != b'0') {
        DecimalError::TooPrecise(s.to_string())
    } else {
        DecimalError::Overflow(s.to_string())
    }
}

/// Formats units of 10^-8 with all 8 fractional digits, as Binance does: `4200001000000`
/// becomes `"42000.01000000"`.
pub fn format(v: i128) -> String {
    let mut out = String::with_capacity(24);
    write_to(&mut out, v);
    out
}

pub fn write_to(out: &mut String, v: i128) {
    if v < 0 {
        out.push('-');
    }
    let a = v.unsigned_abs();
    let _ = write!(out, "{}.{:08}", a / UNIT as u128, a % UNIT as u128);
}

/// Formats without trailing fractional zeros (`"42000.01"`, `"17"`).
pub fn format_trimmed(v: i128) -> String {
    let s = format(v);
    let t = s.trim_end_matches('0');
    t.strip_suffix('.').unwrap_or(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The SWAR path reads Binance's shape exactly as the digit loop does.
        #[test]
        fn the_binance_shape_is_read_as_the_general_parser_reads_it(
            neg in any::<bool>(),
            int in "[0-9]{1,18}",
            frac in "[0-9]{1,8}",
        ) {
            let s = format!("{}{int}.{frac}", if neg { "-" } else { "" });
            let digits = &s.as_bytes()[usize::from(neg)..];
            prop_assert_eq!(scan(digits).map(|(_, at)| at), Some(digits.len()), "{}", s);
            prop_assert_eq!(parse_bytes(s.as_bytes()), parse_general(s.as_bytes()), "{}", s);
        }

        /// Whatever the text, the fast path and the general parser agree.
        #[test]
        fn parse_bytes_is_the_general_parser(text in "[-+]?[0-9]{0,20}(\\.[0-9]{0,12})?") {
            prop_assert_eq!(parse_bytes(text.as_bytes()), parse_general(text.as_bytes()), "{}", text);
        }

        /// Scanning up to a terminator reads what parsing the text before it reads.
        #[test]
        fn scanning_to_a_terminator_reads_what_parsing_reads(
            text in "[0-9]{0,20}(\\.[0-9]{0,10})?[,\"x]?[0-9,]{0,3}",
        ) {
            let b = text.as_bytes();
            if let Some((v, at)) = scan_until(b, b',') {
                prop_assert_eq!(b[at], b',');
                prop_assert_eq!(Some(v), parse_general(&b[..at]), "{}", text);
            }
        }

        #[test]
        fn eight_digits_refuses_any_byte_that_is_not_a_digit(
            b in proptest::array::uniform8(prop_oneof![0x2Fu8..=0x3A, any::<u8>()]),
        ) {
            let want = b
                .iter()
                .all(u8::is_ascii_digit)
                .then(|| b.iter().fold(0u64, |v, c| v * 10 + (c - b'0') as u64));
            prop_assert_eq!(eight_digits(&b), want);
        }
    }

    #[test]
    fn parses_binance_strings_exactly() {
        assert_eq!(parse("42000.01000000").unwrap(), 4_200_001_000_000);
        assert_eq!(parse("0.00000001").unwrap(), 1);
        assert_eq!(parse("17").unwrap(), 1_700_000_000);
        assert_eq!(parse(".5").unwrap(), 50_000_000);
        assert_eq!(parse("-1.25").unwrap(), -125_000_000);
        assert_eq!(parse("1.1234567800").unwrap(), 112_345_678);
    }

    #[test]
    fn refuses_what_it_cannot_keep() {
        assert_eq!(
            parse("1.123456789"),
            Err(DecimalError::TooPrecise("1.123456789".into()))
        );
        assert_eq!(parse("1e5"), Err(DecimalError::Syntax("1e5".into())));
        assert_eq!(parse(""), Err(DecimalError::Syntax("".into())));
        assert_eq!(parse("."), Err(DecimalError::Syntax(".".into())));
        assert_eq!(parse("1.2.3"), Err(DecimalError::Syntax("1.2.3".into())));
        assert_eq!(parse("NaN"), Err(DecimalError::Syntax("NaN".into())));
        let big = "9".repeat(31);
        assert_eq!(parse(&big), Err(DecimalError::Overflow(big.clone())));
    }

    #[test]
    fn formats_with_eight_digits() {
        assert_eq!(format(4_200_001_000_000), "42000.01000000");
        assert_eq!(format(-1), "-0.00000001");
        assert_eq!(format_trimmed(4_200_001_000_000), "42000.01");
        assert_eq!(format_trimmed(1_700_000_000), "17");
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(v in -(10i128.pow(37))..10i128.pow(37)) {
            prop_assert_eq!(parse(&format(v)).unwrap(), v);
            prop_assert_eq!(parse(&format_trimmed(v)).unwrap(), v);
        }
    }
}
