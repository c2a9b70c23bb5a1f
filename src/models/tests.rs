//! Data tests: queries that return the failing rows. Generic tests come from yml (`not_null`,
//! `unique`, `accepted_values`, `relationships`, and dbt_utils' `unique_combination_of_columns`
//! and `expression_is_true`); singular tests are `.sql` files in `data_tests/`.

use serde_json::{Map, Value as Json};

use super::project::TestDef;
use crate::warehouse::ident;

/// dbt's name for a generic test: `not_null_<model>_<column>`, `accepted_values_<model>_<column>__a__b`, ...
pub fn generic_name(
    test: &str,
    model: &str,
    column: Option<&str>,
    args: &Map<String, Json>,
) -> String {
    let mut name = format!("{test}_{model}");
    if let Some(c) = column {
        name.push('_');
        name.push_str(c);
    }
    let extra: Vec<String> = match test {
        "accepted_values" => args
            .get("values")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(plain).collect())
            .unwrap_or_default(),
        "relationships" => vec![
            args.get("field").map(plain).unwrap_or_default(),
            parse_ref(args.get("to").and_then(|v| v.as_str()).unwrap_or_default())
                .map(|r| format!("ref_{r}_"))
                .unwrap_or_default(),
        ],
        "unique_combination_of_columns" => args
            .get("combination_of_columns")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(plain).collect())
            .unwrap_or_default(),
        "expression_is_true" => args.get("expression").map(plain).into_iter().collect(),
        _ => Vec::new(),
    };
    for e in extra {
        name.push_str("__");
        name.push_str(&e);
    }
    let mut cleaned = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        };
        // One underscore for a run of punctuation.
        if !(c == '_' && cleaned.ends_with("___")) {
            cleaned.push(c);
        }
    }
    if cleaned.len() > 80 {
        // Long names get a hash, as dbt does.
        use sha2::{Digest, Sha256};
        let h = hex::encode(Sha256::digest(cleaned.as_bytes()));
        format!("{}_{}", &cleaned[..60], &h[..16])
    } else {
        cleaned
    }
}

fn plain(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `ref('name')` (quotes of either kind) to `name`.
pub fn parse_ref(expr: &str) -> Option<String> {
    let inner = expr.trim().strip_prefix("ref(")?.strip_suffix(')')?.trim();
    let name = inner.trim_matches(|c| c == '\'' || c == '"');
    (!name.is_empty() && name.len() + 2 == inner.len()).then(|| name.to_string())
}

fn literal(v: &Json) -> String {
    match v {
        Json::String(s) => ident::literal(s),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        other => ident::literal(&other.to_string()),
    }
}

/// The failing-rows query of a generic test on `relation`. `to_relation` is the parent of a
/// relationships test.
pub fn generic_sql(
    def: &TestDef,
    relation: &str,
    column: Option<&str>,
    to_relation: Option<&str>,
) -> Result<String, String> {
    let col = || column.ok_or_else(|| format!("{} needs a column", def.name));
    let arg = |k: &str| {
        def.args
            .get(k)
            .ok_or_else(|| format!("{} needs `{k}`", def.name))
    };
    let filter = match def
        .args
        .get("config")
        .and_then(|c| c.get("where"))
        .and_then(|w| w.as_str())
    {
        Some(w) => format!("(SELECT * FROM {relation} WHERE {w})"),
        None => relation.to_string(),
    };
    let relation = filter.as_str();
    Ok(match def.name.as_str() {
        "not_null" => format!("SELECT * FROM {relation} WHERE {} IS NULL", col()?),
        "unique" => {
            let c = col()?;
            format!(
                "SELECT {c}, count(*) AS n_records FROM {relation} WHERE {c} IS NOT NULL GROUP BY {c} HAVING count(*) > 1"
            )
        }
        "accepted_values" => {
            let c = col()?;
            let values = arg("values")?
                .as_array()
                .ok_or("accepted_values: `values` must be a list")?;
            let quote = def
                .args
                .get("quote")
                .and_then(|q| q.as_bool())
                .unwrap_or(true);
            let list: Vec<String> = values
                .iter()
                .map(|v| {
                    if quote {
                        ident::literal(&plain(v))
                    } else {
                        plain(v)
                    }
                })
                .collect();
            format!(
                "SELECT * FROM {relation} WHERE {c} IS NOT NULL AND {c} NOT IN ({})",
                list.join(", ")
            )
        }
        "relationships" => {
            let c = col()?;
            let field = arg("field")?
                .as_str()
                .ok_or("relationships: `field` must be a column name")?;
            ident::validate(field).map_err(|e| format!("relationships field: {e}"))?;
            let to = to_relation.ok_or("relationships: `to` must be ref('...')")?;
            format!(
                "SELECT child.{c} FROM {relation} AS child LEFT JOIN {to} AS parent ON child.{c} = parent.{field} \
                 WHERE child.{c} IS NOT NULL AND parent.{field} IS NULL"
            )
        }
        "unique_combination_of_columns" => {
            let cols: Vec<String> = arg("combination_of_columns")?
                .as_array()
                .ok_or("unique_combination_of_columns: `combination_of_columns` must be a list")?
                .iter()
                .map(plain)
                .collect();
            for c in &cols {
                ident::validate(c).map_err(|e| format!("unique_combination_of_columns: {e}"))?;
            }
            let list = cols.join(", ");
            format!(
                "SELECT {list}, count(*) AS n_records FROM {relation} GROUP BY {list} HAVING count(*) > 1"
            )
        }
        "expression_is_true" => {
            let expr = arg("expression")?
                .as_str()
                .ok_or("expression_is_true: `expression` must be text")?;
            match column {
                Some(c) => format!("SELECT * FROM {relation} WHERE NOT ({c} {expr})"),
                None => format!("SELECT * FROM {relation} WHERE NOT ({expr})"),
            }
        }
        "accepted_range" => {
            let c = col()?;
            let mut conds = Vec::new();
            if let Some(min) = def.args.get("min_value") {
                conds.push(format!("{c} < {}", literal(min)));
            }
            if let Some(max) = def.args.get("max_value") {
                conds.push(format!("{c} > {}", literal(max)));
            }
            if conds.is_empty() {
                return Err("accepted_range needs min_value or max_value".into());
            }
            format!("SELECT * FROM {relation} WHERE {}", conds.join(" OR "))
        }
        other => return Err(format!("unknown test {other:?}")),
    })
}

/// Counts the failing rows of a test query.
pub fn count_sql(test_sql: &str) -> String {
    format!(
        "SELECT count(*) AS failures FROM (\n{}\n) AS klines_test",
        test_sql.trim().trim_end_matches(';')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(name: &str, args: Json) -> TestDef {
        TestDef {
            name: name.into(),
            args: args.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn names_and_sql_follow_dbt() {
        let d = def("accepted_values", json!({"values": ["1m", "5m"]}));
        assert_eq!(
            generic_name(&d.name, "M", Some("interval"), &d.args),
            "accepted_values_M_interval__1m__5m"
        );
        assert_eq!(
            generic_sql(&d, "r", Some("c"), None).unwrap(),
            "SELECT * FROM r WHERE c IS NOT NULL AND c NOT IN ('1m', '5m')"
        );
        assert_eq!(parse_ref("ref('symbols')").as_deref(), Some("symbols"));
        assert_eq!(parse_ref(" ref(\"a\") ").as_deref(), Some("a"));
        assert_eq!(parse_ref("source('a','b')"), None);
        let u = def(
            "unique_combination_of_columns",
            json!({"combination_of_columns": ["symbol", "open_time"]}),
        );
        assert!(
            generic_sql(&u, "r", None, None)
                .unwrap()
                .contains("GROUP BY symbol, open_time HAVING count(*) > 1")
        );
        assert!(generic_sql(&def("nope", json!({})), "r", None, None).is_err());
        assert!(generic_sql(&def("not_null", json!({})), "r", None, None).is_err());
        let bad = def(
            "unique_combination_of_columns",
            json!({"combination_of_columns": ["a; drop"]}),
        );
        assert!(generic_sql(&bad, "r", None, None).is_err());
    }
}
