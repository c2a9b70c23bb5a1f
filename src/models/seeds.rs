//! Seeds: CSV files in `seeds/` loaded as tables, with column types inferred (integer,
//! decimal, boolean, date, timestamp, text) unless `column_types` says otherwise.

use anyhow::Context;

use super::materialize;
use super::node::Node;
use crate::datasets::ColType;
use crate::warehouse::dialect::{sql_type, timestamp_literal};
use crate::warehouse::{DialectRef, Warehouse, ident};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ty {
    Int,
    Decimal(u32),
    Bool,
    Date,
    Timestamp,
    Text,
}

fn infer(values: &[&str]) -> Ty {
    let present: Vec<&str> = values.iter().copied().filter(|v| !v.is_empty()).collect();
    if present.is_empty() {
        return Ty::Text;
    }
    if present.iter().all(|v| v.parse::<i64>().is_ok()) {
        return Ty::Int;
    }
    if present
        .iter()
        .all(|v| crate::decimal::parse(v).is_ok() && !v.contains(['e', 'E']))
    {
        let scale = present
            .iter()
            .map(|v| v.split_once('.').map_or(0, |(_, f)| f.len() as u32))
            .max()
            .unwrap_or(0);
        return Ty::Decimal(scale.min(18));
    }
    if present
        .iter()
        .all(|v| v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"))
    {
        return Ty::Bool;
    }
    if present
        .iter()
        .all(|v| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok())
    {
        return Ty::Date;
    }
    if present
        .iter()
        .all(|v| v.len() > 10 && crate::time::parse("seed", v, 0).is_ok())
    {
        return Ty::Timestamp;
    }
    Ty::Text
}

fn type_sql(kind: DialectRef, ty: &Ty) -> String {
    match ty {
        Ty::Int => "BIGINT".into(),
        Ty::Decimal(s) => kind.decimal(*s as u32),
        Ty::Bool => "BOOLEAN".into(),
        Ty::Date => "DATE".into(),
        Ty::Timestamp => sql_type(kind, ColType::Timestamp).into(),
        Ty::Text => sql_type(kind, ColType::Text).into(),
    }
}

fn value_sql(kind: DialectRef, ty: &Ty, v: &str) -> String {
    if v.is_empty() {
        return "NULL".into();
    }
    match ty {
        Ty::Int | Ty::Decimal(_) => v.to_string(),
        Ty::Bool => v.to_ascii_uppercase(),
        Ty::Date => format!("CAST({} AS DATE)", ident::literal(v)),
        Ty::Timestamp => crate::time::parse("seed", v, 0)
            .map(|ms| timestamp_literal(kind, ms))
            .unwrap_or_else(|_| ident::literal(v)),
        Ty::Text => ident::literal(v),
    }
}

/// Loads the seed `node` (its CSV is `node.raw_code`) into its table, atomically.
pub async fn load(wh: &dyn Warehouse, node: &Node) -> anyhow::Result<u64> {
    let kind = wh.dialect();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(node.raw_code.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: no header row", node.path))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    for h in &headers {
        ident::validate(h).map_err(|e| anyhow::anyhow!("{}: column {h:?}: {e}", node.path))?;
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (i, r) in reader.records().enumerate() {
        let r = r.with_context(|| format!("{}: line {}", node.path, i + 2))?;
        if r.len() != headers.len() {
            anyhow::bail!(
                "{}: line {}: {} fields, the header has {}",
                node.path,
                i + 2,
                r.len(),
                headers.len()
            );
        }
        rows.push(r.iter().map(|v| v.trim().to_string()).collect());
    }
    let types: Vec<(Ty, String)> = headers
        .iter()
        .enumerate()
        .map(|(c, h)| {
            let ty = infer(&rows.iter().map(|r| r[c].as_str()).collect::<Vec<_>>());
            let sql = node
                .config
                .column_types
                .get(h)
                .cloned()
                .unwrap_or_else(|| type_sql(kind, &ty));
            (ty, sql)
        })
        .collect();
    let tmp = ident::relation(
        kind,
        &node.schema,
        &format!("{}{}", node.identifier, materialize::TMP_SUFFIX),
    );
    let cols = headers
        .iter()
        .map(|h| ident::quote(kind, h))
        .collect::<Vec<_>>()
        .join(", ");
    let defs = headers
        .iter()
        .zip(&types)
        .map(|(h, (_, sql))| format!("{} {sql}", ident::quote(kind, h)))
        .collect::<Vec<_>>()
        .join(", ");
    wh.execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        ident::quote(kind, &node.schema)
    ))
    .await?;
    wh.execute(&format!("DROP TABLE IF EXISTS {tmp}")).await?;
    wh.execute(&format!("CREATE TABLE {tmp} ({defs})")).await?;
    for chunk in rows.chunks(500) {
        let values = chunk
            .iter()
            .map(|r| {
                format!(
                    "({})",
                    r.iter()
                        .zip(&types)
                        .map(|(v, (ty, _))| value_sql(kind, ty, v))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        wh.execute(&format!("INSERT INTO {tmp} ({cols}) VALUES {values}"))
            .await
            .with_context(|| format!("loading seed {}", node.path))?;
    }
    materialize::swap_in(wh, node, &tmp, Vec::new()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_types_from_values() {
        assert_eq!(infer(&["1", "2", ""]), Ty::Int);
        assert_eq!(infer(&["1.5", "2.25"]), Ty::Decimal(2));
        assert_eq!(infer(&["true", "False"]), Ty::Bool);
        assert_eq!(infer(&["2024-01-01"]), Ty::Date);
        assert_eq!(infer(&["2024-01-01T00:00:00Z"]), Ty::Timestamp);
        assert_eq!(infer(&["BTCUSDT", "1"]), Ty::Text);
        assert_eq!(infer(&["1e5"]), Ty::Text);
    }
}
