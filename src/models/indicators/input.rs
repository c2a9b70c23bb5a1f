//! An indicators model's input: which columns play which role, and one series' bars read in
//! time order, prices as the nearest doubles.

use anyhow::{Context, bail};
use serde_json::Value as Json;

use crate::models::node::Node;
use crate::warehouse::dialect::timestamp_literal;
use crate::warehouse::ident::{literal, quote};
use crate::warehouse::{Value, Warehouse};

/// The input's columns, by role.
pub struct Input {
    pub sql: String,
    pub key: String,
    pub time: String,
    pub price: String,
    pub carried: Vec<String>,
}

/// One series' rows, read from the input.
#[derive(Default)]
pub struct Bars {
    pub times: Vec<i64>,
    pub closes: Vec<f64>,
    pub carried: Vec<Vec<String>>,
}

impl Input {
    /// The input's columns, from the model's config and a query that returns no rows.
    pub async fn describe(wh: &dyn Warehouse, node: &Node, sql: &str) -> anyhow::Result<Input> {
        let c = &node.config;
        let key = c.batch_key.clone().unwrap_or_else(|| "symbol".into());
        let time = c.event_time.clone().unwrap_or_else(|| "open_time".into());
        let price = c
            .all
            .get("price_column")
            .and_then(Json::as_str)
            .unwrap_or("close")
            .to_string();
        let cols = wh
            .query(&format!(
                "SELECT * FROM (\n{sql}\n) AS klines_input WHERE 1 = 0"
            ))
            .await
            .with_context(|| format!("{}: reading the input's columns", node.path))?
            .columns;
        let find = |name: &str| {
            cols.iter()
                .position(|c| c.eq_ignore_ascii_case(name))
                .with_context(|| {
                    format!(
                        "{}: the input has no column {name:?} (it has {})",
                        node.path,
                        cols.join(", ")
                    )
                })
        };
        let mut pos = vec![find(&key)?, find(&time)?, find(&price)?];
        let mut carried = Vec::new();
        for (i, c) in cols.iter().enumerate() {
            if !pos[..3].contains(&i) {
                crate::warehouse::ident::validate(c)
                    .with_context(|| format!("{}: input column {c:?}", node.path))?;
                carried.push(c.to_ascii_lowercase());
                pos.push(i);
            }
        }
        Ok(Input {
            sql: sql.to_string(),
            key,
            time,
            price,
            carried,
        })
    }

    /// Reads one series' bars from `from` (epoch ms) on, oldest first.
    pub async fn bars(
        &self,
        wh: &dyn Warehouse,
        path: &str,
        key: &str,
        from: Option<i64>,
        limit: Option<usize>,
    ) -> anyhow::Result<Bars> {
        let k = wh.dialect();
        let since = from
            .map(|t| {
                format!(
                    " AND {} >= {}",
                    quote(k, &self.time),
                    timestamp_literal(k, t)
                )
            })
            .unwrap_or_default();
        // The time, the price and the carried columns (the key is known: not read per row).
        let columns = [&self.time, &self.price]
            .into_iter()
            .chain(&self.carried)
            .map(|c| quote(k, c))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = wh
            .query(&format!(
                "SELECT {columns} FROM (\n{}\n) AS klines_input WHERE {} = {}{since} ORDER BY {}{}",
                self.sql,
                quote(k, &self.key),
                literal(key),
                quote(k, &self.time),
                limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default()
            ))
            .await
            .with_context(|| format!("{}: reading the bars of {key}", path))?;
        let mut b = Bars {
            carried: vec![Vec::with_capacity(rows.rows.len()); self.carried.len()],
            ..Bars::default()
        };
        for r in &rows.rows {
            let at = || format!("{}: {key}", path);
            let t = r[0]
                .as_millis()
                .with_context(|| format!("{}: {} is not a timestamp", at(), self.time))?;
            let x = to_f64(&r[1]).with_context(|| {
                format!(
                    "{} at {}: {} is not a number",
                    at(),
                    crate::time::format_ms(t),
                    self.price
                )
            })?;
            b.times.push(t);
            b.closes.push(x);
            for (j, v) in r[2..].iter().enumerate() {
                b.carried[j].push(match v {
                    Value::Null => String::new(),
                    Value::Text(s) => s.clone(),
                    other => bail!(
                        "{}: carried column {} must be text, not {other}",
                        at(),
                        self.carried[j]
                    ),
                });
            }
        }
        Ok(b)
    }

    /// The series (batch keys) of the self.
    pub async fn keys(&self, wh: &dyn Warehouse) -> anyhow::Result<Vec<String>> {
        let k = wh.dialect();
        let rows = wh
            .query(&format!(
                "SELECT DISTINCT {} FROM (\n{}\n) AS klines_input ORDER BY 1",
                quote(k, &self.key),
                self.sql
            ))
            .await?;
        Ok(rows
            .rows
            .iter()
            .filter_map(|r| r[0].as_str().map(str::to_string))
            .collect())
    }
}

/// A number as the nearest double: what `float("30000.12")` gives in Python.
pub fn to_f64(v: &Value) -> Option<f64> {
    match *v {
        Value::Float(x) => Some(x),
        Value::Int(i) => Some(i as f64),
        // Both exact in a double, so one correctly rounded division.
        Value::Decimal { value, scale }
            if value.unsigned_abs() < 1 << 53 && (0..=22).contains(&scale) =>
        {
            Some(value as f64 / 10f64.powi(scale as i32))
        }
        Value::Decimal { .. } => v.to_string().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_become_the_nearest_double() {
        for s in ["30000.12", "0.00000001", "65432.98765432", "-1.5"] {
            let v = Value::Decimal {
                value: crate::decimal::parse(s).unwrap(),
                scale: 8,
            };
            assert_eq!(to_f64(&v), Some(s.parse::<f64>().unwrap()), "{s}");
        }
    }
}
