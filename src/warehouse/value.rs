//! Query results in one shape for every warehouse, with exact decimals and UTC timestamps.

use std::fmt;

use anyhow::bail;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// `value / 10^scale`, exactly.
    Decimal {
        value: i128,
        scale: i8,
    },
    Text(String),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
    /// Days since the epoch.
    Date(i32),
}

impl Value {
    /// The value as an exact decimal with `scale` digits, for comparisons across warehouses
    /// (integers and decimals of any scale convert; a value that would lose digits does not).
    pub fn to_scaled(&self, scale: i8) -> Option<i128> {
        match *self {
            Value::Int(i) => (i as i128).checked_mul(10i128.pow(scale as u32)),
            Value::Decimal { value, scale: s } if s <= scale => {
                value.checked_mul(10i128.pow((scale - s) as u32))
            }
            Value::Decimal { value, scale: s } => {
                let div = 10i128.pow((s - scale) as u32);
                (value % div == 0).then_some(value / div)
            }
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::Decimal { value, scale } => {
                let div = 10i128.pow(scale.max(0) as u32);
                (value % div == 0).then(|| (value / div) as i64)
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Epoch milliseconds of a timestamp.
    pub fn as_millis(&self) -> Option<i64> {
        match *self {
            Value::Timestamp(us) => Some(us.div_euclid(1000)),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Decimal { value, scale } => {
                if *scale <= 0 {
                    return write!(f, "{value}");
                }
                let div = 10u128.pow(*scale as u32);
                let a = value.unsigned_abs();
                write!(
                    f,
                    "{}{}.{:0width$}",
                    if *value < 0 { "-" } else { "" },
                    a / div,
                    a % div,
                    width = *scale as usize
                )
            }
            Value::Text(s) => f.write_str(s),
            Value::Timestamp(us) => match chrono::DateTime::from_timestamp_micros(*us) {
                Some(d) => write!(f, "{}", d.format("%Y-%m-%dT%H:%M:%S%.fZ")),
                None => write!(f, "{us}us"),
            },
            Value::Date(d) => match chrono::DateTime::from_timestamp(*d as i64 * 86_400, 0) {
                Some(t) => write!(f, "{}", t.format("%Y-%m-%d")),
                None => write!(f, "{d}d"),
            },
        }
    }
}

/// A query's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// The single value of a one-row, one-column result.
    pub fn scalar(&self) -> Option<&Value> {
        self.rows.first().and_then(|r| r.first())
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
    }

    /// Appends the rows of an Arrow record batch.
    pub fn extend_from_arrow(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        if self.columns.is_empty() {
            self.columns = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
        }
        let n = batch.num_rows();
        let mut rows: Vec<Vec<Value>> = (0..n)
            .map(|_| Vec::with_capacity(batch.num_columns()))
            .collect();
        for col in batch.columns() {
            for (i, row) in rows.iter_mut().enumerate() {
                row.push(arrow_value(col.as_ref(), i)?);
            }
        }
        self.rows.extend(rows);
        Ok(())
    }
}

/// One Arrow cell as a [`Value`].
pub fn arrow_value(a: &dyn Array, i: usize) -> anyhow::Result<Value> {
    if a.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match a.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(a.as_boolean().value(i)),
        DataType::Int8 => Value::Int(a.as_primitive::<Int8Type>().value(i) as i64),
        DataType::Int16 => Value::Int(a.as_primitive::<Int16Type>().value(i) as i64),
        DataType::Int32 => Value::Int(a.as_primitive::<Int32Type>().value(i) as i64),
        DataType::Int64 => Value::Int(a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => Value::Int(a.as_primitive::<UInt8Type>().value(i) as i64),
        DataType::UInt16 => Value::Int(a.as_primitive::<UInt16Type>().value(i) as i64),
        DataType::UInt32 => Value::Int(a.as_primitive::<UInt32Type>().value(i) as i64),
        DataType::UInt64 => Value::Int(a.as_primitive::<UInt64Type>().value(i) as i64),
        DataType::Float32 => {
            Value::Float(a.as_primitive::<arrow::datatypes::Float32Type>().value(i) as f64)
        }
        DataType::Float64 => {
            Value::Float(a.as_primitive::<arrow::datatypes::Float64Type>().value(i))
        }
        DataType::Decimal128(_, s) => Value::Decimal {
            value: a
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(i),
            scale: *s,
        },
        DataType::Decimal64(_, s) => Value::Decimal {
            value: a.as_primitive::<arrow::datatypes::Decimal64Type>().value(i) as i128,
            scale: *s,
        },
        DataType::Decimal32(_, s) => Value::Decimal {
            value: a.as_primitive::<arrow::datatypes::Decimal32Type>().value(i) as i128,
            scale: *s,
        },
        DataType::Utf8 => Value::Text(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::Text(a.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::Text(a.as_string_view().value(i).to_string()),
        DataType::Timestamp(unit, _) => Value::Timestamp(match unit {
            TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i) * 1_000_000,
            TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(i) * 1_000,
            TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i),
            TimeUnit::Nanosecond => a
                .as_primitive::<TimestampNanosecondType>()
                .value(i)
                .div_euclid(1_000),
        }),
        DataType::Date32 => Value::Date(a.as_primitive::<arrow::datatypes::Date32Type>().value(i)),
        DataType::Date64 => Value::Date(
            (a.as_primitive::<arrow::datatypes::Date64Type>().value(i) / 86_400_000) as i32,
        ),
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            let key = d.normalized_keys()[i];
            arrow_value(d.values().as_ref(), key)?
        }
        other => bail!("unsupported result type {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_and_compare_exactly() {
        let v = Value::Decimal {
            value: 4_200_001_000_000,
            scale: 8,
        };
        assert_eq!(v.to_string(), "42000.01000000");
        assert_eq!(
            Value::Decimal {
                value: -5,
                scale: 2
            }
            .to_string(),
            "-0.05"
        );
        assert_eq!(v.to_scaled(8), Some(4_200_001_000_000));
        assert_eq!(
            Value::Decimal {
                value: 420_000_100,
                scale: 4
            }
            .to_scaled(8),
            Some(4_200_001_000_000)
        );
        assert_eq!(Value::Decimal { value: 1, scale: 9 }.to_scaled(8), None);
        assert_eq!(Value::Int(3).to_scaled(8), Some(300_000_000));
        assert_eq!(
            Value::Timestamp(1_704_067_200_000_000).to_string(),
            "2024-01-01T00:00:00Z"
        );
    }
}
