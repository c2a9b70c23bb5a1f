//! Binance's `/klines` JSON body (an array of 12-element arrays, decimals as strings) straight
//! into columns: a fast scanner for the shape Binance sends, and serde for anything else.

use crate::datasets::klines::KlineBatch;
use crate::decimal;

/// Why a klines body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Cut short or not JSON: the transfer went wrong and a retry can help.
    #[error("malformed klines JSON: {0}")]
    Malformed(String),
    /// Well-formed JSON with a value klines cannot keep: retrying gets the same.
    #[error("invalid kline {0}")]
    Invalid(String),
}

impl BodyError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, BodyError::Malformed(_))
    }
}

/// Appends the klines of a Binance `/klines` JSON body (an array of 12-element arrays) to
/// `out`. On error `out` is left as it was.
pub fn parse_body(body: &[u8], out: &mut KlineBatch) -> Result<usize, BodyError> {
    let before = out.len();
    if let Some(n) = fast::parse(body, out) {
        return Ok(n);
    }
    out.truncate(before);
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = serde::de::DeserializeSeed::deserialize(Rows { out: &mut *out }, &mut de)
        .and_then(|()| de.end());
    match result {
        Ok(()) => Ok(out.len() - before),
        Err(e) => {
            out.truncate(before);
            Err(match e.classify() {
                serde_json::error::Category::Data => BodyError::Invalid(e.to_string()),
                _ => BodyError::Malformed(e.to_string()),
            })
        }
    }
}

/// A scanner for the exact shape Binance sends, several times faster than the generic
/// deserializer. Anything unexpected (escapes, other types, bad values, disorder) makes it
/// give up, and the generic path parses the body and explains the problem.
mod fast {
    use super::KlineBatch;
    use crate::decimal;

    struct Cursor<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl<'a> Cursor<'a> {
        #[inline]
        fn ws(&mut self) {
            while let Some(c) = self.b.get(self.i) {
                if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                    break;
                }
                self.i += 1;
            }
        }

        #[inline]
        fn eat(&mut self, c: u8) -> Option<()> {
            self.ws();
            (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
        }

        #[inline]
        fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.b.get(self.i).copied()
        }

        #[inline]
        fn int(&mut self) -> Option<i64> {
            self.ws();
            let start = self.i;
            let neg = self.b.get(self.i) == Some(&b'-');
            if neg {
                self.i += 1;
            }
            let mut v: i64 = 0;
            let digits = self.i;
            while let Some(&c) = self.b.get(self.i) {
                if !c.is_ascii_digit() {
                    break;
                }
                v = v.checked_mul(10)?.checked_add((c - b'0') as i64)?;
                self.i += 1;
            }
            if self.i == digits || matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
                self.i = start;
                return None;
            }
            Some(if neg { -v } else { v })
        }

        #[inline]
        fn text(&mut self) -> Option<&'a [u8]> {
            self.eat(b'"')?;
            let start = self.i;
            // Binance's strings are short decimals: a plain loop beats a SIMD search's set-up.
            let len = self.b[start..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\')?;
            if self.b[start + len] != b'"' {
                return None;
            }
            self.i = start + len + 1;
            Some(&self.b[start..start + len])
        }

        /// A quoted decimal: scanned in one pass in Binance's shape, else found and parsed.
        #[inline]
        fn dec(&mut self) -> Option<i128> {
            self.ws();
            if self.b.get(self.i) == Some(&b'"')
                && let Some((v, quote)) = decimal::scan_until(&self.b[self.i + 1..], b'"')
            {
                self.i += quote + 2;
                return Some(v);
            }
            let t = self.text()?;
            decimal::parse_bytes(t)
        }
    }

    pub(super) fn parse(body: &[u8], out: &mut KlineBatch) -> Option<usize> {
        let mut c = Cursor { b: body, i: 0 };
        let before = out.len();
        c.eat(b'[')?;
        if c.peek() == Some(b']') {
            c.i += 1;
        } else {
            loop {
                c.eat(b'[')?;
                let open_time = c.int()?;
                c.eat(b',')?;
                let open = c.dec()?;
                c.eat(b',')?;
                let high = c.dec()?;
                c.eat(b',')?;
                let low = c.dec()?;
                c.eat(b',')?;
                let close = c.dec()?;
                c.eat(b',')?;
                let volume = c.dec()?;
                c.eat(b',')?;
                let close_time = c.int()?;
                c.eat(b',')?;
                let quote_volume = c.dec()?;
                c.eat(b',')?;
                let trades = c.int()?;
                c.eat(b',')?;
                let taker_base = c.dec()?;
                c.eat(b',')?;
                let taker_quote = c.dec()?;
                c.eat(b',')?;
                // The unused 12th field: a string or a number.
                if c.peek() == Some(b'"') {
                    c.text()?;
                } else {
                    c.int()?;
                }
                c.eat(b']')?;
                if close_time < open_time || out.open_time.last().is_some_and(|&t| t >= open_time) {
                    return None;
                }
                out.open_time.push(open_time);
                out.open.push(open);
                out.high.push(high);
                out.low.push(low);
                out.close.push(close);
                out.volume.push(volume);
                out.close_time.push(close_time);
                out.quote_volume.push(quote_volume);
                out.trades.push(trades);
                out.taker_buy_base_volume.push(taker_base);
                out.taker_buy_quote_volume.push(taker_quote);
                match c.peek()? {
                    b',' => c.i += 1,
                    b']' => {
                        c.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        c.ws();
        (c.i == body.len()).then(|| out.len() - before)
    }
}

struct Rows<'a> {
    out: &'a mut KlineBatch,
}

impl<'de> serde::de::DeserializeSeed<'de> for Rows<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Rows<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of klines")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.out.open_time.reserve(n);
        }
        let mut row = 0usize;
        while seq
            .next_element_seed(Row {
                out: &mut *self.out,
                row,
            })?
            .is_some()
        {
            row += 1;
        }
        Ok(())
    }
}

struct Row<'a> {
    out: &'a mut KlineBatch,
    row: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for Row<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

const FIELDS: [&str; 12] = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
    "ignore",
];

/// A JSON string borrowed from the body when it has no escapes.
struct Text<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a decimal string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::de::Visitor<'de> for Row<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a kline array of 12 fields")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let row = self.row;
        let missing =
            |i: usize| A::Error::custom(format_args!("row {row}: missing field {}", FIELDS[i]));
        let dec = |i: usize, t: Text<'_>| -> Result<i128, A::Error> {
            decimal::parse_bytes(t.0.as_bytes()).ok_or_else(|| {
                let e = decimal::parse(&t.0)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                A::Error::custom(format_args!("row {row} field {}: {e}", FIELDS[i]))
            })
        };
        let open_time: i64 = seq.next_element()?.ok_or_else(|| missing(0))?;
        let open = dec(1, seq.next_element()?.ok_or_else(|| missing(1))?)?;
        let high = dec(2, seq.next_element()?.ok_or_else(|| missing(2))?)?;
        let low = dec(3, seq.next_element()?.ok_or_else(|| missing(3))?)?;
        let close = dec(4, seq.next_element()?.ok_or_else(|| missing(4))?)?;
        let volume = dec(5, seq.next_element()?.ok_or_else(|| missing(5))?)?;
        let close_time: i64 = seq.next_element()?.ok_or_else(|| missing(6))?;
        let quote_volume = dec(7, seq.next_element()?.ok_or_else(|| missing(7))?)?;
        let trades: i64 = seq.next_element()?.ok_or_else(|| missing(8))?;
        let taker_buy_base_volume = dec(9, seq.next_element()?.ok_or_else(|| missing(9))?)?;
        let taker_buy_quote_volume = dec(10, seq.next_element()?.ok_or_else(|| missing(10))?)?;
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        if close_time < open_time {
            return Err(A::Error::custom(format_args!(
                "row {row}: close_time before open_time"
            )));
        }
        let out = self.out;
        if out.open_time.last().is_some_and(|&last| last >= open_time) {
            return Err(A::Error::custom(format_args!(
                "row {row}: open_time {open_time} out of order"
            )));
        }
        out.open_time.push(open_time);
        out.open.push(open);
        out.high.push(high);
        out.low.push(low);
        out.close.push(close);
        out.volume.push(volume);
        out.close_time.push(close_time);
        out.quote_volume.push(quote_volume);
        out.trades.push(trades);
        out.taker_buy_base_volume.push(taker_buy_base_volume);
        out.taker_buy_quote_volume.push(taker_buy_quote_volume);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"[[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",1499644799999,"2434.19055334",308,"1756.87402397","28.46694368","0"],
        [1499040060000,"0.01577100","0.01577100","0.01577100","0.01577100","0.00000000",1499040119999,"0.00000000",0,"0.00000000","0.00000000","0"]]"#;

    #[test]
    fn parses_binance_rows_exactly() {
        let mut b = KlineBatch::default();
        assert_eq!(parse_body(BODY.as_bytes(), &mut b).unwrap(), 2);
        let k = b.get(0);
        assert_eq!(k.open_time, 1499040000000);
        assert_eq!(decimal::format(k.open), "0.01634790");
        assert_eq!(decimal::format(k.volume), "148976.11427815");
        assert_eq!(k.trades, 308);
        assert_eq!(decimal::format(k.taker_buy_quote_volume), "28.46694368");
        assert_eq!(b.get(1).trades, 0);
    }

    #[test]
    fn truncated_or_malformed_bodies_are_retryable_and_leave_nothing() {
        let mut b = KlineBatch::default();
        let err = parse_body(&BODY.as_bytes()[..BODY.len() - 40], &mut b).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(b.is_empty());
        assert!(
            parse_body(b"<html>502</html>", &mut b)
                .unwrap_err()
                .is_retryable()
        );
        assert!(parse_body(b"", &mut b).unwrap_err().is_retryable());
    }

    #[test]
    fn invalid_values_name_the_row_and_field() {
        let mut b = KlineBatch::default();
        let body = BODY.replace("\"0.80000000\"", "\"0.800000001\"");
        let err = parse_body(body.as_bytes(), &mut b).unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("row 0 field high"), "{err}");
        let body = BODY.replace("308", "\"308\"");
        assert!(
            !parse_body(body.as_bytes(), &mut b)
                .unwrap_err()
                .is_retryable()
        );
        assert!(b.is_empty());
    }

    #[test]
    fn the_fast_path_and_the_generic_path_agree() {
        let mut fast = KlineBatch::default();
        assert_eq!(fast::parse(BODY.as_bytes(), &mut fast), Some(2));
        let mut generic = KlineBatch::default();
        let mut de = serde_json::Deserializer::from_slice(BODY.as_bytes());
        serde::de::DeserializeSeed::deserialize(Rows { out: &mut generic }, &mut de).unwrap();
        assert_eq!(fast, generic);
        // Shapes the fast path leaves to the generic one.
        for odd in [r#"[[1,"1\u0030",...]]"#, "[[1.5]]", "[] x", "[[1,2]]"] {
            assert_eq!(
                fast::parse(odd.as_bytes(), &mut KlineBatch::default()),
                None,
                "{odd}"
            );
        }
        assert_eq!(fast::parse(b" [ ] ", &mut KlineBatch::default()), Some(0));
    }
}
