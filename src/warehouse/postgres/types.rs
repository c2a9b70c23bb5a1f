//! Postgres' binary formats for the types klines moves: NUMERIC as exact `i128` units (all 38
//! digits, no float, no 96-bit limit) and TIMESTAMPTZ as epoch times.

use std::error::Error;

use anyhow::bail;
use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::PgContext;
use crate::warehouse::Value;

type BoxError = Box<dyn Error + Sync + Send>;

/// Microseconds between 1970-01-01 and Postgres' epoch, 2000-01-01.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A NUMERIC with 8 fractional digits, in units of 10^-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numeric8(pub i128);

impl ToSql for Numeric8 {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        encode_numeric(self.0, out);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

/// Writes `v / 10^8` in NUMERIC's binary format: base-10000 digits, weight, sign, scale.
pub fn encode_numeric(v: i128, out: &mut BytesMut) {
    let a = v.unsigned_abs();
    let frac = (a % 100_000_000) as u64;
    // Base-10000 digits, least significant first: two for the fraction, then the integer.
    let mut rev = [0u16; 12];
    rev[0] = (frac % 10_000) as u16;
    rev[1] = (frac / 10_000) as u16;
    let mut n = 2;
    let mut i = a / 100_000_000;
    while i > 0 {
        rev[n] = (i % 10_000) as u16;
        i /= 10_000;
        n += 1;
    }
    // The weight of the most significant digit (10000^weight), then strip zero digits at both
    // ends as Postgres does.
    let mut weight = n as i16 - 3;
    let mut hi = n;
    while hi > 0 && rev[hi - 1] == 0 {
        hi -= 1;
        weight -= 1;
    }
    let mut lo = 0;
    while lo < hi && rev[lo] == 0 {
        lo += 1;
    }
    if lo == hi {
        weight = 0;
    }
    out.reserve(8 + 2 * (hi - lo));
    out.put_i16((hi - lo) as i16);
    out.put_i16(weight);
    out.put_u16(if v < 0 && lo < hi { 0x4000 } else { 0x0000 });
    out.put_u16(8);
    for d in rev[lo..hi].iter().rev() {
        out.put_u16(*d);
    }
}

/// An exact NUMERIC read back: `value / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumericValue {
    pub value: i128,
    pub scale: i8,
}

impl<'a> FromSql<'a> for NumericValue {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        decode_numeric(raw)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

pub fn decode_numeric(raw: &[u8]) -> Result<NumericValue, BoxError> {
    if raw.len() < 8 {
        return Err("short NUMERIC".into());
    }
    let u16_at = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]);
    let ndigits = u16_at(0) as usize;
    let weight = i16::from_be_bytes([raw[2], raw[3]]) as i32;
    let sign = u16_at(4);
    let dscale = u16_at(6) as i32;
    if sign == 0xC000 {
        return Err("NUMERIC NaN".into());
    }
    if sign > 0x4000 {
        return Err("NUMERIC infinity".into());
    }
    if raw.len() < 8 + 2 * ndigits {
        return Err("short NUMERIC".into());
    }
    let overflow = || -> BoxError { "NUMERIC does not fit 38 digits".into() };
    let mut v: i128 = 0;
    for i in 0..ndigits {
        v = v
            .checked_mul(10_000)
            .and_then(|v| v.checked_add(u16_at(8 + 2 * i) as i128))
            .ok_or_else(overflow)?;
    }
    // v * 10000^(weight - ndigits + 1), expressed with `dscale` decimal digits.
    let exp10 = 4 * (weight - ndigits as i32 + 1) + dscale;
    if exp10 >= 0 {
        v = v
            .checked_mul(10i128.checked_pow(exp10 as u32).ok_or_else(overflow)?)
            .ok_or_else(overflow)?;
    } else {
        v /= 10i128.checked_pow((-exp10) as u32).ok_or_else(overflow)?;
    }
    Ok(NumericValue {
        value: if sign == 0x4000 { -v } else { v },
        scale: dscale.min(i8::MAX as i32) as i8,
    })
}

/// A TIMESTAMPTZ from epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampMs(pub i64);

impl ToSql for TimestampMs {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_i64(self.0 * 1_000 - PG_EPOCH_US);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP
    }

    to_sql_checked!();
}

/// A TIMESTAMP(TZ) read back as epoch microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampUs(pub i64);

impl<'a> FromSql<'a> for TimestampUs {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let b: [u8; 8] = raw.try_into().map_err(|_| "bad timestamp")?;
        Ok(TimestampUs(i64::from_be_bytes(b) + PG_EPOCH_US))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP
    }
}

/// A DATE read back as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateDays(pub i32);

impl<'a> FromSql<'a> for DateDays {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let b: [u8; 4] = raw.try_into().map_err(|_| "bad date")?;
        Ok(DateDays(i32::from_be_bytes(b) + 10_957))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::DATE
    }
}

/// Cell `i` of a row as a [`Value`]; a type klines does not read is an error naming the column.
pub(super) fn value(row: &tokio_postgres::Row, i: usize) -> anyhow::Result<Value> {
    let ty = row.columns()[i].type_();
    let get =
        |r: Result<Option<Value>, tokio_postgres::Error>| r.pg().map(|v| v.unwrap_or(Value::Null));
    match *ty {
        Type::BOOL => get(row
            .try_get::<_, Option<bool>>(i)
            .map(|v| v.map(Value::Bool))),
        Type::INT2 => get(row
            .try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|x| Value::Int(x as i64)))),
        Type::INT4 => get(row
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|x| Value::Int(x as i64)))),
        Type::INT8 => get(row.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int))),
        Type::OID => get(row
            .try_get::<_, Option<u32>>(i)
            .map(|v| v.map(|x| Value::Int(x as i64)))),
        Type::FLOAT4 => get(row
            .try_get::<_, Option<f32>>(i)
            .map(|v| v.map(|x| Value::Float(x as f64)))),
        Type::FLOAT8 => get(row
            .try_get::<_, Option<f64>>(i)
            .map(|v| v.map(Value::Float))),
        Type::NUMERIC => get(row.try_get::<_, Option<NumericValue>>(i).map(|v| {
            v.map(|n| Value::Decimal {
                value: n.value,
                scale: n.scale,
            })
        })),
        Type::TIMESTAMPTZ | Type::TIMESTAMP => get(row
            .try_get::<_, Option<TimestampUs>>(i)
            .map(|v| v.map(|t| Value::Timestamp(t.0)))),
        Type::DATE => get(row
            .try_get::<_, Option<DateDays>>(i)
            .map(|v| v.map(|d| Value::Date(d.0)))),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => get(row
            .try_get::<_, Option<String>>(i)
            .map(|v| v.map(Value::Text))),
        ref other => bail!(
            "column {} has type {other}, which klines does not read; cast it",
            row.columns()[i].name()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(v: i128) -> i128 {
        let mut buf = BytesMut::new();
        encode_numeric(v, &mut buf);
        let n = decode_numeric(&buf).unwrap();
        assert_eq!(n.scale, 8);
        n.value
    }

    #[test]
    fn numeric_layout_matches_postgres() {
        // 42000.01: digits [4, 2000, 0100] weight 1, dscale 8.
        let mut buf = BytesMut::new();
        encode_numeric(4_200_001_000_000, &mut buf);
        assert_eq!(
            &buf[..],
            &[0, 3, 0, 1, 0, 0, 0, 8, 0, 4, 0x07, 0xD0, 0, 100]
        );
        // 0.00000001: one digit, 1, at weight -2 (10^-8 = 10000^-2).
        let mut buf = BytesMut::new();
        encode_numeric(1, &mut buf);
        assert_eq!(&buf[..], &[0, 1, 0xFF, 0xFE, 0, 0, 0, 8, 0, 1]);
        let mut buf = BytesMut::new();
        encode_numeric(0, &mut buf);
        assert_eq!(&buf[..], &[0, 0, 0, 0, 0, 0, 0, 8]);
    }

    proptest! {
        #[test]
        fn numerics_round_trip(v in -(10i128.pow(37))..10i128.pow(37)) {
            prop_assert_eq!(round_trip(v), v);
        }
    }
}
