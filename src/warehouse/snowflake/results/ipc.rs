//! Results in Arrow IPC (`rowsetBase64` and Arrow chunks), in Snowflake's encodings:
//! NUMBER as scaled integers, TIMESTAMP_* as `{epoch, fraction[, timezone]}` structs or
//! scaled integers.

use super::*;

/// One Arrow cell as the column's type says.
pub(super) fn arrow_cell(rt: &RowType, a: &dyn Array, i: usize) -> anyhow::Result<Value> {
    if a.is_null(i) {
        return Ok(Value::Null);
    }
    let scale = rt.scale.unwrap_or(0);
    match (rt.ty.as_str(), a.data_type()) {
        ("fixed", DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64)
            if scale > 0 =>
        {
            let v: i128 = match a.data_type() {
                DataType::Int8 => a.as_primitive::<Int8Type>().value(i) as i128,
                DataType::Int16 => a.as_primitive::<Int16Type>().value(i) as i128,
                DataType::Int32 => a.as_primitive::<Int32Type>().value(i) as i128,
                _ => a.as_primitive::<Int64Type>().value(i) as i128,
            };
            Ok(Value::Decimal {
                value: v,
                scale: scale as i8,
            })
        }
        ("timestamp_ntz" | "timestamp_ltz" | "timestamp_tz", DataType::Struct(_)) => {
            let s = a.as_struct();
            let epoch = s
                .column_by_name("epoch")
                .context("timestamp without epoch")?;
            let epoch = epoch.as_primitive::<Int64Type>().value(i);
            let fraction = match s.column_by_name("fraction") {
                Some(f) => f.as_primitive::<Int32Type>().value(i) as i64,
                None => 0,
            };
            if s.column_by_name("fraction").is_some() {
                Ok(Value::Timestamp(epoch * 1_000_000 + fraction / 1_000))
            } else {
                // {epoch scaled by 10^scale, timezone}
                Ok(Value::Timestamp(rescale_micros(epoch, scale)))
            }
        }
        ("timestamp_ntz" | "timestamp_ltz" | "timestamp_tz", DataType::Int64) => {
            Ok(Value::Timestamp(rescale_micros(
                a.as_primitive::<Int64Type>().value(i),
                scale,
            )))
        }
        _ => arrow_value(a, i),
    }
}

pub(super) fn rescale_micros(v: i64, scale: i64) -> i64 {
    if scale >= 6 {
        v / 10i64.pow((scale - 6) as u32)
    } else {
        v * 10i64.pow((6 - scale) as u32)
    }
}

pub(super) fn append_arrow(
    rows: &mut Rows,
    types: &[RowType],
    batch: &RecordBatch,
) -> anyhow::Result<()> {
    for i in 0..batch.num_rows() {
        let mut row = Vec::with_capacity(batch.num_columns());
        for (c, col) in batch.columns().iter().enumerate() {
            match types.get(c) {
                Some(rt) => row.push(arrow_cell(rt, col.as_ref(), i)?),
                None => row.push(arrow_value(col.as_ref(), i)?),
            }
        }
        rows.rows.push(row);
    }
    Ok(())
}

/// The same field with every nested field nullable: Snowflake declares the `epoch` and
/// `fraction` of a TIMESTAMP struct non-nullable, yet sends nulls under a null timestamp.
pub(super) fn relaxed(f: &arrow::datatypes::Field) -> arrow::datatypes::Field {
    use arrow::datatypes::{Field, Fields};
    let ty = match f.data_type() {
        DataType::Struct(children) => DataType::Struct(Fields::from(
            children.iter().map(|c| relaxed(c)).collect::<Vec<Field>>(),
        )),
        other => other.clone(),
    };
    f.clone().with_data_type(ty).with_nullable(true)
}

/// Reads an Arrow IPC stream message by message, with the schema relaxed by [`relaxed`].
pub(super) fn decode_ipc(bytes: &[u8]) -> anyhow::Result<Vec<RecordBatch>> {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow::buffer::Buffer;
    use arrow::datatypes::Schema;
    use arrow::ipc::{MessageHeader, convert, reader, root_as_message};

    let buf = Buffer::from(bytes.to_vec());
    let mut pos = 0usize;
    let mut schema: Option<Arc<Schema>> = None;
    let mut dictionaries: HashMap<i64, arrow::array::ArrayRef> = HashMap::new();
    let mut out = Vec::new();
    let word = |at: usize| -> anyhow::Result<i32> {
        let b: [u8; 4] = bytes
            .get(at..at + 4)
            .context("truncated Arrow result")?
            .try_into()?;
        Ok(i32::from_le_bytes(b))
    };
    while pos + 4 <= bytes.len() {
        let mut len = word(pos)?;
        pos += 4;
        if len == -1 {
            len = word(pos)?;
            pos += 4;
        }
        if len <= 0 {
            break;
        }
        let len = len as usize;
        let meta = bytes
            .get(pos..pos + len)
            .context("truncated Arrow result")?;
        let message =
            root_as_message(meta).map_err(|e| anyhow::anyhow!("bad Arrow result: {e}"))?;
        pos += len;
        let body_len = message.bodyLength() as usize;
        if pos + body_len > bytes.len() {
            bail!("truncated Arrow result");
        }
        let body = buf.slice_with_length(pos, body_len);
        pos += body_len;
        match message.header_type() {
            MessageHeader::Schema => {
                let fb = message.header_as_schema().context("bad Arrow schema")?;
                let s = convert::try_fb_to_schema(fb)?;
                let fields: Vec<_> = s.fields().iter().map(|f| relaxed(f)).collect();
                schema = Some(Arc::new(Schema::new_with_metadata(
                    fields,
                    s.metadata().clone(),
                )));
            }
            MessageHeader::DictionaryBatch => {
                let s = schema
                    .as_ref()
                    .context("Arrow dictionary before the schema")?;
                let d = message
                    .header_as_dictionary_batch()
                    .context("bad Arrow dictionary")?;
                reader::read_dictionary(&body, d, s, &mut dictionaries, &message.version())?;
            }
            MessageHeader::RecordBatch => {
                let s = schema.clone().context("Arrow batch before the schema")?;
                let b = message
                    .header_as_record_batch()
                    .context("bad Arrow batch")?;
                out.push(reader::read_record_batch(
                    &body,
                    b,
                    s,
                    &dictionaries,
                    None,
                    &message.version(),
                )?);
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::rt;
    use super::*;

    #[test]
    fn arrow_cells_decode_snowflake_timestamps_as_utc() {
        use arrow::array::{ArrayRef, Int32Array, Int64Array, StructArray};
        use arrow::datatypes::Field;
        use std::sync::Arc;
        let field = |n: &str, t: DataType| Arc::new(Field::new(n, t, false));
        let i64s = |v: i64| Arc::new(Int64Array::from(vec![v])) as ArrayRef;
        let i32s = |v: i32| Arc::new(Int32Array::from(vec![v])) as ArrayRef;
        // TIMESTAMP_TZ(3): {epoch in ms, timezone}; the zone does not move the instant.
        let tz3 = StructArray::from(vec![
            (field("epoch", DataType::Int64), i64s(1_704_067_200_123)),
            (field("timezone", DataType::Int32), i32s(1440 + 60)),
        ]);
        assert_eq!(
            arrow_cell(&rt("timestamp_tz", 3), &tz3, 0).unwrap(),
            Value::Timestamp(1_704_067_200_123_000)
        );
        // TIMESTAMP_TZ(9): {epoch seconds, fraction ns, timezone}.
        let tz9 = StructArray::from(vec![
            (field("epoch", DataType::Int64), i64s(1_704_067_199)),
            (field("fraction", DataType::Int32), i32s(999_999_000)),
            (field("timezone", DataType::Int32), i32s(1440)),
        ]);
        assert_eq!(
            arrow_cell(&rt("timestamp_tz", 9), &tz9, 0).unwrap(),
            Value::Timestamp(1_704_067_199_999_999)
        );
        // TIMESTAMP_NTZ(9) before 1970: the fraction counts forward from the epoch second.
        let ntz9 = StructArray::from(vec![
            (field("epoch", DataType::Int64), i64s(-1)),
            (field("fraction", DataType::Int32), i32s(500_000_000)),
        ]);
        assert_eq!(
            arrow_cell(&rt("timestamp_ntz", 9), &ntz9, 0).unwrap(),
            Value::Timestamp(-500_000)
        );
        // TIMESTAMP_LTZ(6) and NTZ(0): scaled integers.
        assert_eq!(
            arrow_cell(
                &rt("timestamp_ltz", 6),
                &Int64Array::from(vec![1_704_067_200_000_001]),
                0
            )
            .unwrap(),
            Value::Timestamp(1_704_067_200_000_001)
        );
        assert_eq!(
            arrow_cell(
                &rt("timestamp_ntz", 0),
                &Int64Array::from(vec![1_704_067_200]),
                0
            )
            .unwrap(),
            Value::Timestamp(1_704_067_200_000_000)
        );
        // NUMBER(38, 8) as a scaled Int64 stays exact.
        assert_eq!(
            arrow_cell(
                &rt("fixed", 8),
                &Int64Array::from(vec![-4_200_001_000_000]),
                0
            )
            .unwrap(),
            Value::Decimal {
                value: -4_200_001_000_000,
                scale: 8
            }
        );
    }
}
