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

mod ipc;

use self::ipc::{append_arrow, decode_ipc};

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

    pub(super) fn rt(ty: &str, scale: i64) -> RowType {
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
}
