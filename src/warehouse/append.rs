//! Rows computed in Rust, appended to a table: what a native model writes.
//!
//! [`Columns`] holds them by column. Each adapter appends them its fastest way (DuckDB's
//! appender, Postgres' binary `COPY`); the default here, for Snowflake, is multi-row
//! `INSERT ... VALUES` statements, since Snowflake loads bulk data from stages only.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::DialectRef;
use super::dialect::timestamp_literal;
use super::ident::{literal, quote, relation};
use crate::datasets::ColType;

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Text(Vec<String>),
    /// Epoch milliseconds, UTC.
    Timestamp(Vec<i64>),
    Int(Vec<i64>),
    /// NaN is stored as NULL.
    Double(Vec<f64>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Text(v) => v.len(),
            Column::Timestamp(v) | Column::Int(v) => v.len(),
            Column::Double(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column's SQL type on `kind`.
    pub fn sql_type(&self, kind: DialectRef) -> &'static str {
        kind.sql_type(match self {
            Column::Text(_) => ColType::Text,
            Column::Timestamp(_) => ColType::Timestamp,
            Column::Int(_) => ColType::BigInt,
            Column::Double(_) => ColType::Double,
        })
    }

    fn literal(&self, kind: DialectRef, i: usize) -> String {
        match self {
            Column::Text(v) => literal(&v[i]),
            Column::Timestamp(v) => timestamp_literal(kind, v[i]),
            Column::Int(v) => v[i].to_string(),
            // `{:?}` prints the shortest text that reads back as the same double.
            Column::Double(v) if v[i].is_finite() => format!("{:?}", v[i]),
            Column::Double(_) => "NULL".into(),
        }
    }
}

/// Named columns of equal length, in the table's column order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns {
    pub names: Vec<String>,
    pub columns: Vec<Column>,
}

impl Columns {
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// `CREATE TABLE` for these columns.
    pub fn create_table(&self, kind: DialectRef, schema: &str, table: &str) -> String {
        let cols = self
            .names
            .iter()
            .zip(&self.columns)
            .map(|(n, c)| format!("{} {}", quote(kind, n), c.sql_type(kind)))
            .collect::<Vec<_>>()
            .join(", ");
        format!("CREATE TABLE {} ({cols})", relation(kind, schema, table))
    }

    /// `INSERT ... VALUES` statements of at most `chunk` rows each.
    pub fn inserts(
        &self,
        kind: DialectRef,
        schema: &str,
        table: &str,
        chunk: usize,
    ) -> Vec<String> {
        let names = self
            .names
            .iter()
            .map(|n| quote(kind, n))
            .collect::<Vec<_>>()
            .join(", ");
        let rel = relation(kind, schema, table);
        let n = self.rows();
        (0..n)
            .step_by(chunk.max(1))
            .map(|start| {
                let values = (start..(start + chunk).min(n))
                    .map(|i| {
                        let row = self
                            .columns
                            .iter()
                            .map(|c| c.literal(kind, i))
                            .collect::<Vec<_>>()
                            .join(", ");
                        format!("({row})")
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("INSERT INTO {rel} ({names}) VALUES {values}")
            })
            .collect()
    }

    /// Snowflake's fast path: `INSERT ... SELECT ... FROM TABLE(FLATTEN(PARSE_JSON('...')))`
    /// statements of at most `chunk` rows, each row a JSON array (times in epoch ms, doubles as
    /// their shortest exact text). One string literal per statement instead of thousands of
    /// literals: Snowflake (and fakesnow) parse it in a fraction of the time. `None` when a
    /// text value holds a backslash, which Snowflake's string literals would read as an escape.
    pub fn json_inserts(&self, schema: &str, table: &str, chunk: usize) -> Option<Vec<String>> {
        let kind = &crate::warehouse::snowflake::DIALECT;
        let texts_plain = self.columns.iter().all(|c| match c {
            Column::Text(v) => v.iter().all(|t| !t.contains('\\')),
            _ => true,
        });
        if !texts_plain {
            return None;
        }
        let names = self
            .names
            .iter()
            .map(|n| quote(kind, n))
            .collect::<Vec<_>>()
            .join(", ");
        let select = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                Column::Text(_) => format!("value[{i}]::VARCHAR"),
                Column::Timestamp(_) => format!("TO_TIMESTAMP_NTZ(value[{i}]::NUMBER, 3)"),
                Column::Int(_) => format!("value[{i}]::BIGINT"),
                Column::Double(_) => format!("value[{i}]::FLOAT"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let rel = relation(kind, schema, table);
        let n = self.rows();
        Some(
            (0..n)
                .step_by(chunk.max(1))
                .map(|start| {
                    let rows: Vec<serde_json::Value> = (start..(start + chunk).min(n))
                        .map(|i| {
                            self.columns
                                .iter()
                                .map(|c| match c {
                                    Column::Text(v) => serde_json::json!(v[i]),
                                    Column::Timestamp(v) | Column::Int(v) => serde_json::json!(v[i]),
                                    Column::Double(v) if v[i].is_finite() => serde_json::json!(v[i]),
                                    Column::Double(_) => serde_json::Value::Null,
                                })
                                .collect()
                        })
                        .collect();
                    let json = serde_json::Value::Array(rows).to_string();
                    format!(
                        "INSERT INTO {rel} ({names}) SELECT {select} FROM TABLE(FLATTEN(INPUT => PARSE_JSON({})))",
                        literal(&json)
                    )
                })
                .collect(),
        )
    }

    /// The columns as one Arrow batch (for DuckDB's appender).
    pub fn record_batch(&self) -> anyhow::Result<RecordBatch> {
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (name, c) in self.names.iter().zip(&self.columns) {
            let (ty, array): (DataType, ArrayRef) = match c {
                Column::Text(v) => (DataType::Utf8, Arc::new(StringArray::from_iter_values(v))),
                Column::Timestamp(v) => (
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    Arc::new(
                        TimestampMillisecondArray::from_iter_values(v.iter().copied())
                            .with_timezone("UTC"),
                    ),
                ),
                Column::Int(v) => (
                    DataType::Int64,
                    Arc::new(Int64Array::from_iter_values(v.iter().copied())),
                ),
                Column::Double(v) => (
                    DataType::Float64,
                    Arc::new(Float64Array::from_iter(
                        v.iter().map(|x| x.is_finite().then_some(*x)),
                    )),
                ),
            };
            fields.push(Field::new(name, ty, true));
            arrays.push(array);
        }
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_chunk_rows_and_write_nan_as_null() {
        let c = Columns {
            names: vec!["symbol".into(), "open_time".into(), "v".into()],
            columns: vec![
                Column::Text(vec!["A'B".into(), "C".into(), "D".into()]),
                Column::Timestamp(vec![0, 60_000, 120_000]),
                Column::Double(vec![0.1, f64::NAN, 1e-7]),
            ],
        };
        let s = c.inserts(&crate::warehouse::postgres::DIALECT, "s", "t", 2);
        assert_eq!(s.len(), 2);
        assert!(
            s[0].contains("('A''B', CAST('1970-01-01 00:00:00+00:00' AS TIMESTAMPTZ), 0.1)"),
            "{}",
            s[0]
        );
        assert!(s[0].ends_with("NULL)"), "{}", s[0]);
        assert!(s[1].ends_with("1e-7)"), "{}", s[1]);
        assert_eq!(
            c.create_table(&crate::warehouse::postgres::DIALECT, "s", "t"),
            "CREATE TABLE \"s\".\"t\" (\"symbol\" TEXT, \"open_time\" TIMESTAMPTZ, \"v\" DOUBLE PRECISION)"
        );
        assert_eq!(c.record_batch().unwrap().num_rows(), 3);
        let j = c.json_inserts("s", "t", 2).unwrap();
        assert_eq!(j.len(), 2);
        assert!(
            j[0].contains("PARSE_JSON('[[\"A''B\",0,0.1],[\"C\",60000,null]]')"),
            "{}",
            j[0]
        );
        assert!(j[1].contains("[[\"D\",120000,1e-7]]"), "{}", j[1]);
    }
}

/// A table filled piece by piece, all pieces or none: a native model's full build, whose
/// rows are computed a bounded chunk at a time. [`super::Warehouse::appender`] opens one.
#[async_trait::async_trait]
pub trait TableAppender: Send {
    /// Appends one piece (the table's columns, in its order).
    async fn push(&mut self, rows: &Columns) -> anyhow::Result<()>;
    /// Makes every piece pushed visible. Dropped without it, an appender that keeps its
    /// pieces in one transaction rolls them back.
    async fn commit(self: Box<Self>) -> anyhow::Result<()>;
}

/// The default appender: each piece appended in a transaction of its own
/// ([`super::Warehouse::append`]), for warehouses without a cheaper way.
pub struct EachPiece<'a, W: ?Sized> {
    pub wh: &'a W,
    pub schema: String,
    pub table: String,
}

#[async_trait::async_trait]
impl<W: super::Warehouse + ?Sized> TableAppender for EachPiece<'_, W> {
    async fn push(&mut self, rows: &Columns) -> anyhow::Result<()> {
        self.wh
            .append(&[], &self.schema, &self.table, rows, &[])
            .await
            .map(drop)
    }

    async fn commit(self: Box<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}
