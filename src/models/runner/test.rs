//! Running a test: its failing-rows query, counted against the thresholds, the failing rows
//! kept where `store_failures` asks.

use anyhow::Context;

use super::{Outcome, Runner};
use crate::models::node::{Node, ResourceType};
use crate::models::tests;

impl Runner {
    /// The failing-rows query of a test.
    pub fn test_sql(&self, node: &Node) -> anyhow::Result<String> {
        let p = &self.parsed;
        let spec = node.test.as_ref().context("not a test")?;
        match &spec.attached {
            None => self.compile(node, false, None),
            Some(attached) => {
                let target = &p.nodes[attached];
                if target.relation.is_empty() {
                    anyhow::bail!(
                        "{}: {} is ephemeral and cannot be tested",
                        node.path,
                        target.name
                    );
                }
                let to = if spec.def.name == "relationships" {
                    let name = tests::parse_ref(
                        spec.def
                            .args
                            .get("to")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default(),
                    )
                    .unwrap_or_default();
                    p.nodes
                        .values()
                        .find(|n| n.name == name && n.resource_type != ResourceType::Test)
                        .map(|n| n.relation.clone())
                } else {
                    None
                };
                tests::generic_sql(
                    &spec.def,
                    &target.relation,
                    spec.column.as_deref(),
                    to.as_deref(),
                )
                .map_err(|e| anyhow::anyhow!("{}: {}: {e}", node.path, node.name))
            }
        }
    }

    pub(super) async fn run_test(&self, node: &Node) -> anyhow::Result<Outcome> {
        let sql = self.test_sql(node)?;
        self.write_compiled(node, &sql);
        let stored = self.store_failures(node, &sql).await?;
        let n = self
            .wh()?
            .query(&tests::count_sql(&sql))
            .await?
            .scalar()
            .and_then(|v| v.as_i64())
            .unwrap_or(0) as u64;
        // dbt's rule: with severity error, `error_if` fails the test and else `warn_if` warns;
        // with severity warn, only `warn_if` counts.
        let c = &node.config;
        let (status, rule) = if c.severity == "error" && c.error_if.holds(n) {
            ("fail", format!("fail if {}", c.error_if))
        } else if c.warn_if.holds(n) {
            ("warn", format!("warn if {}", c.warn_if))
        } else {
            ("pass", String::new())
        };
        let message = if status == "pass" {
            if n == 0 {
                "PASS".to_string()
            } else {
                format!(
                    "PASS ({n} result{}, within the thresholds)",
                    if n == 1 { "" } else { "s" }
                )
            }
        } else {
            format!(
                "Got {n} result{}, configured to {rule}",
                if n == 1 { "" } else { "s" }
            )
        };
        let message = match stored {
            Some(table) if status != "pass" || n > 0 => {
                format!("{message}; failing rows in {table}")
            }
            _ => message,
        };
        Ok(Outcome {
            status,
            rows: 0,
            message,
            failures: Some(n),
        })
    }

    /// dbt's `store_failures`: the test's failing rows, kept in
    /// `<schema>_dbt_test__audit.<test name>` (replaced on every run) for inspection.
    async fn store_failures(&self, node: &Node, sql: &str) -> anyhow::Result<Option<String>> {
        if !node
            .config
            .all
            .get("store_failures")
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
        {
            return Ok(None);
        }
        let wh = self.wh()?;
        let kind = wh.dialect();
        let schema = format!("{}_dbt_test__audit", node.schema);
        for id in [&schema, &node.name] {
            crate::warehouse::ident::validate(id)
                .map_err(|e| anyhow::anyhow!("{}: store_failures: {e}", node.name))?;
        }
        let table = crate::warehouse::ident::relation(kind, &schema, &node.name);
        wh.execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            crate::warehouse::ident::quote(kind, &schema)
        ))
        .await?;
        wh.execute(&format!("DROP TABLE IF EXISTS {table}")).await?;
        wh.execute(&format!(
            "CREATE TABLE {table} AS SELECT * FROM (\n{sql}\n) AS failures"
        ))
        .await
        .with_context(|| format!("{}: cannot store the failing rows in {table}", node.name))?;
        Ok(Some(table))
    }
}
