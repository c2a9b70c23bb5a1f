//! Binary `COPY ... FROM STDIN`: computed columns (a model's rows) and Arrow batches (a
//! load), written cell by cell in Postgres' binary format.

use super::*;

/// Streams computed columns with binary COPY into `table`.
pub(super) async fn copy_columns(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    rows: &crate::warehouse::Columns,
) -> anyhow::Result<()> {
    use crate::warehouse::Column;
    let types: Vec<Type> = rows
        .columns
        .iter()
        .map(|c| match c {
            Column::Text(_) => Type::TEXT,
            Column::Timestamp(_) => Type::TIMESTAMPTZ,
            Column::Int(_) => Type::INT8,
            Column::Double(_) => Type::FLOAT8,
        })
        .collect();
    let names = rows
        .names
        .iter()
        .map(|n| quote(&crate::warehouse::postgres::DIALECT, n))
        .collect::<Vec<_>>()
        .join(", ");
    let t = Instant::now();
    let sink = tx
        .copy_in(&format!(
            "COPY {table} ({names}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .pg()?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    // Typed once per column, so that a row is only references.
    enum Typed<'a> {
        Text(&'a [String]),
        Time(Vec<TimestampMs>),
        Int(&'a [i64]),
        Double(Vec<Option<f64>>),
    }
    let typed: Vec<Typed> = rows
        .columns
        .iter()
        .map(|c| match c {
            Column::Text(v) => Typed::Text(v),
            Column::Timestamp(v) => Typed::Time(v.iter().map(|&t| TimestampMs(t)).collect()),
            Column::Int(v) => Typed::Int(v),
            Column::Double(v) => {
                Typed::Double(v.iter().map(|x| x.is_finite().then_some(*x)).collect())
            }
        })
        .collect();
    let mut refs: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(typed.len());
    for i in 0..rows.rows() {
        refs.clear();
        for c in &typed {
            refs.push(match c {
                Typed::Text(v) => &v[i],
                Typed::Time(v) => &v[i],
                Typed::Int(v) => &v[i],
                Typed::Double(v) => &v[i],
            });
        }
        writer.as_mut().write(&refs).await.pg()?;
    }
    writer.finish().await.pg()?;
    crate::warehouse::log_sql(t, &format!("COPY {table} FROM STDIN (FORMAT binary)"));
    Ok(())
}

/// Streams Arrow record batches with binary COPY into `table`, by their columns' names:
/// text, timestamps (ms, UTC), decimals (38, 8), 64-bit integers and doubles, NULLs kept.
pub(super) async fn copy_record_batches(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    rows: &[RecordBatch],
) -> anyhow::Result<()> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let schema = first.schema();
    let types: Vec<Type> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => Ok(Type::TEXT),
            DataType::Timestamp(..) => Ok(Type::TIMESTAMPTZ),
            DataType::Decimal128(..) => Ok(Type::NUMERIC),
            DataType::Int64 => Ok(Type::INT8),
            DataType::Float64 => Ok(Type::FLOAT8),
            other => Err(anyhow::anyhow!(
                "{}: cannot COPY a column of {other}",
                f.name()
            )),
        })
        .collect::<anyhow::Result<_>>()?;
    let names = schema
        .fields()
        .iter()
        .map(|f| quote(&DIALECT, f.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let t = Instant::now();
    let sql = format!("COPY {table} ({names}) FROM STDIN (FORMAT binary)");
    let sink = tx.copy_in(&sql).await.pg()?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    let mut cells: Vec<Cell> = Vec::with_capacity(types.len());
    for batch in rows {
        let columns: Vec<ArrowColumn> = batch
            .columns()
            .iter()
            .map(|c| ArrowColumn::of(c.as_ref()))
            .collect::<anyhow::Result<_>>()?;
        for i in 0..batch.num_rows() {
            cells.clear();
            cells.extend(columns.iter().map(|c| c.cell(i)));
            let values: Vec<&(dyn ToSql + Sync)> =
                cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
            writer.as_mut().write(&values).await.pg()?;
        }
    }
    writer.finish().await.pg()?;
    crate::warehouse::log_sql(t, &sql);
    Ok(())
}

/// An Arrow column, typed for reading cells.
enum ArrowColumn<'a> {
    Text(&'a arrow::array::StringArray),
    Timestamp(&'a arrow::array::TimestampMillisecondArray),
    Decimal(&'a arrow::array::Decimal128Array),
    Int(&'a arrow::array::Int64Array),
    Double(&'a arrow::array::Float64Array),
}

impl<'a> ArrowColumn<'a> {
    fn of(a: &'a dyn arrow::array::Array) -> anyhow::Result<ArrowColumn<'a>> {
        use arrow::array::AsArray;
        Ok(match a.data_type() {
            DataType::Utf8 => ArrowColumn::Text(a.as_string::<i32>()),
            DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, _) => {
                ArrowColumn::Timestamp(
                    a.as_primitive::<arrow::datatypes::TimestampMillisecondType>(),
                )
            }
            DataType::Decimal128(..) => {
                ArrowColumn::Decimal(a.as_primitive::<arrow::datatypes::Decimal128Type>())
            }
            DataType::Int64 => ArrowColumn::Int(a.as_primitive::<arrow::datatypes::Int64Type>()),
            DataType::Float64 => {
                ArrowColumn::Double(a.as_primitive::<arrow::datatypes::Float64Type>())
            }
            other => anyhow::bail!("cannot COPY a column of {other}"),
        })
    }

    fn cell(&self, i: usize) -> Cell<'a> {
        use arrow::array::Array;
        match self {
            ArrowColumn::Text(a) => Cell::Text(a.is_valid(i).then(|| a.value(i))),
            ArrowColumn::Timestamp(a) => {
                Cell::Timestamp(a.is_valid(i).then(|| TimestampMs(a.value(i))))
            }
            ArrowColumn::Decimal(a) => Cell::Decimal(a.is_valid(i).then(|| Numeric8(a.value(i)))),
            ArrowColumn::Int(a) => Cell::Int(a.is_valid(i).then(|| a.value(i))),
            ArrowColumn::Double(a) => Cell::Double(a.is_valid(i).then(|| a.value(i))),
        }
    }
}

/// One value of a row, for COPY.
#[derive(Debug)]
enum Cell<'a> {
    Text(Option<&'a str>),
    Timestamp(Option<TimestampMs>),
    Decimal(Option<Numeric8>),
    Int(Option<i64>),
    Double(Option<f64>),
}

impl ToSql for Cell<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Cell::Text(v) => v.to_sql(ty, out),
            Cell::Timestamp(v) => v.to_sql(ty, out),
            Cell::Decimal(v) => v.to_sql(ty, out),
            Cell::Int(v) => v.to_sql(ty, out),
            Cell::Double(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}
