//! Snowflake query results, from JSON (`rowset`) or Arrow IPC (`rowsetBase64`), with result
//! chunks, in Snowflake's encodings: NUMBER as scaled integers or decimals, TIMESTAMP_* as
//! `{epoch, fraction[, timezone]}` structs or scaled integers.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int8Type, Int16Type, Int32Type, Int64Type};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::warehouse::value::{Rows, Value, arrow_value};

#[derive(Debug, Clone, Deserialize)]
pub struct RowType {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub scale: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Chunk {
    pub url: String,
    #[serde(rename = "rowCount", default)]
    pub row_count: u64,
}

/// The `data` of a query response.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct QueryData {
    #[serde(default)]
    pub rowtype: Vec<RowType>,
    #[serde(default)]
    pub rowset: Option<Vec<Vec<Json>>>,
    #[serde(rename = "rowsetBase64", default)]
    pub rowset_base64: Option<String>,
    #[serde(rename = "queryResultFormat", default)]
    pub format: Option<String>,
    #[serde(default)]
    pub chunks: Vec<Chunk>,
    #[serde(rename = "chunkHeaders", default)]
    pub chunk_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub qrmk: Option<String>,
    #[serde(rename = "queryId", default)]
    pub query_id: Option<String>,
}

fn scaled(text: &str, scale: i64) -> Option<i128> {
    // Exact decimal text to units of 10^-scale.
    let neg = text.starts_with('-');
    let t = text.trim_start_matches(['-', '+']);
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if frac.len() as i64 > scale || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut v: i128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        v = v.checked_mul(10)?.checked_add((c - b'0') as i128)?;
    }
    for _ in frac.len() as i64..scale {
        v = v.checked_mul(10)?;
    }
    Some(if neg { -v } else { v })
}

/// Seconds with a fraction (`1704067200.123000000`, maybe followed by a time-zone index) to
/// epoch microseconds.
fn epoch_text_micros(text: &str) -> Option<i64> {
    let t = text.split_whitespace().next()?;
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    let micros: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    let secs: i64 = secs.parse().ok()?;
    let micros: i64 = micros.parse().ok()?;
    Some(if secs < 0 {
        secs * 1_000_000 - micros
    } else {
        secs * 1_000_000 + micros
    })
}

/// One JSON cell as the column's type says.
fn json_value(rt: &RowType, v: &Json) -> anyhow::Result<Value> {
    let text = match v {
        Json::Null => return Ok(Value::Null),
        Json::String(s) => s.clone(),
        Json::Bool(b) => return Ok(Value::Bool(*b)),
        other => other.to_string(),
    };
    let bad = || anyhow::anyhow!("column {}: cannot read {text:?} as {}", rt.name, rt.ty);
    Ok(match rt.ty.as_str() {
        "fixed" => {
            let scale = rt.scale.unwrap_or(0);
            let v = scaled(&text, scale).ok_or_else(bad)?;
            match (scale, i64::try_from(v)) {
                (0, Ok(i)) => Value::Int(i),
                _ => Value::Decimal {
                    value: v,
                    scale: scale as i8,
                },
            }
        }
        "real" => Value::Float(text.parse().map_err(|_| bad())?),
        "boolean" => Value::Bool(matches!(text.as_str(), "1" | "true" | "TRUE")),
        "date" => Value::Date(text.parse().map_err(|_| bad())?),
        "timestamp_ntz" | "timestamp_ltz" | "timestamp_tz" => {
            Value::Timestamp(epoch_text_micros(&text).ok_or_else(bad)?)
        }
        _ => Value::Text(text),
    })
}

/// One Arrow cell as the column's type says.
fn arrow_cell(rt: &RowType, a: &dyn Array, i: usize) -> anyhow::Result<Value> {
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

fn rescale_micros(v: i64, scale: i64) -> i64 {
    if scale >= 6 {
        v / 10i64.pow((scale - 6) as u32)
    } else {
        v * 10i64.pow((6 - scale) as u32)
    }
}

fn append_arrow(rows: &mut Rows, types: &[RowType], batch: &RecordBatch) -> anyhow::Result<()> {
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
fn relaxed(f: &arrow::datatypes::Field) -> arrow::datatypes::Field {
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
fn decode_ipc(bytes: &[u8]) -> anyhow::Result<Vec<RecordBatch>> {
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

/// Every row of a result: the first rowset and then each chunk, in order.
pub async fn rows(http: &reqwest::Client, data: &QueryData) -> anyhow::Result<Rows> {
    let mut rows = Rows {
        columns: data.rowtype.iter().map(|r| r.name.clone()).collect(),
        rows: Vec::new(),
    };
    let arrow = data.format.as_deref() == Some("arrow") || data.rowset_base64.is_some();
    if arrow {
        if let Some(b64) = data.rowset_base64.as_deref().filter(|s| !s.is_empty()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .context("bad base64 result")?;
            for batch in decode_ipc(&bytes)? {
                append_arrow(&mut rows, &data.rowtype, &batch)?;
            }
        }
    } else if let Some(set) = &data.rowset {
        for r in set {
            rows.rows.push(
                r.iter()
                    .zip(&data.rowtype)
                    .map(|(v, rt)| json_value(rt, v))
                    .collect::<anyhow::Result<_>>()?,
            );
        }
    }
    for chunk in &data.chunks {
        let mut req = http.get(&chunk.url);
        for (k, v) in &data.chunk_headers {
            req = req.header(k, v);
        }
        if data.chunk_headers.is_empty()
            && let Some(key) = &data.qrmk
        {
            req = req
                .header("x-amz-server-side-encryption-customer-algorithm", "AES256")
                .header("x-amz-server-side-encryption-customer-key", key);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot fetch a result chunk: {}", e.without_url()))?;
        if !resp.status().is_success() {
            bail!("cannot fetch a result chunk: HTTP {}", resp.status());
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("cannot fetch a result chunk: {}", e.without_url()))?;
        let before = rows.rows.len();
        if arrow {
            for batch in decode_ipc(&body)? {
                append_arrow(&mut rows, &data.rowtype, &batch)?;
            }
        } else {
            // JSON chunks are rows without the enclosing brackets.
            let text = format!("[{}]", String::from_utf8_lossy(&body));
            let set: Vec<Vec<Json>> =
                serde_json::from_str(&text).context("bad JSON result chunk")?;
            for r in &set {
                rows.rows.push(
                    r.iter()
                        .zip(&data.rowtype)
                        .map(|(v, rt)| json_value(rt, v))
                        .collect::<anyhow::Result<_>>()?,
                );
            }
        }
        if chunk.row_count > 0 && (rows.rows.len() - before) as u64 != chunk.row_count {
            bail!(
                "a result chunk held {} rows, Snowflake announced {}",
                rows.rows.len() - before,
                chunk.row_count
            );
        }
    }
    Ok(rows)
}

/// Rows a DML statement affected, from its result (`number of rows inserted`, ...).
pub fn affected(rows: &Rows) -> u64 {
    if rows.columns.iter().any(|c| c.starts_with("number of rows")) {
        rows.rows
            .first()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_i64())
                    .map(|v| v.max(0) as u64)
                    .sum()
            })
            .unwrap_or(0)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(ty: &str, scale: i64) -> RowType {
        RowType {
            name: "c".into(),
            ty: ty.into(),
            scale: Some(scale),
        }
    }

    #[test]
    fn json_cells_keep_exact_values() {
        assert_eq!(
            json_value(&rt("fixed", 8), &Json::from("42000.01")).unwrap(),
            Value::Decimal {
                value: 4_200_001_000_000,
                scale: 8
            }
        );
        assert_eq!(
            json_value(&rt("fixed", 0), &Json::from("-7")).unwrap(),
            Value::Int(-7)
        );
        assert_eq!(
            json_value(&rt("fixed", 0), &Json::from("99999999999999999999999")).unwrap(),
            Value::Decimal {
                value: 99_999_999_999_999_999_999_999,
                scale: 0
            }
        );
        assert_eq!(
            json_value(&rt("timestamp_ntz", 9), &Json::from("1704067200.123000000")).unwrap(),
            Value::Timestamp(1_704_067_200_123_000)
        );
        assert_eq!(
            json_value(
                &rt("timestamp_tz", 9),
                &Json::from("1704067200.000000000 1440")
            )
            .unwrap(),
            Value::Timestamp(1_704_067_200_000_000)
        );
        assert_eq!(
            json_value(&rt("date", 0), &Json::from("19723")).unwrap(),
            Value::Date(19723)
        );
        assert_eq!(
            json_value(&rt("text", 0), &Json::Null).unwrap(),
            Value::Null
        );
        assert!(json_value(&rt("fixed", 2), &Json::from("1.234")).is_err());
    }

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
