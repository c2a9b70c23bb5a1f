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
