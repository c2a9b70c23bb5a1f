//! Postgres' SQL: identifiers lower case, `NUMERIC`, `TEXT`; views dropped before a new one
//! (`CREATE OR REPLACE VIEW` cannot change columns); statistics and a range index on models
//! just built; a table with the same columns refilled in place, so views bound to it stay.

use crate::datasets::ColType;
use crate::warehouse::dialect::{Dialect, Swap};

#[derive(Debug)]
pub struct PostgresDialect;

pub static DIALECT: PostgresDialect = PostgresDialect;

impl Dialect for PostgresDialect {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn fold(&self, ident: &str) -> String {
        ident.to_ascii_lowercase()
    }

    fn sql_type(&self, ty: ColType) -> &'static str {
        match ty {
            ColType::Text => "TEXT",
            ColType::Timestamp => "TIMESTAMPTZ",
            ColType::Decimal => "NUMERIC(38,8)",
            ColType::BigInt => "BIGINT",
            ColType::Double => "DOUBLE PRECISION",
        }
    }

    fn decimal(&self, scale: u32) -> String {
        format!("NUMERIC(38,{scale})")
    }

    fn add_not_null_column(&self) -> bool {
        true
    }

    fn replaces_views(&self) -> bool {
        false
    }

    /// Statistics now, not when autovacuum comes by: without them the planner takes a new table
    /// for empty and scans it whole instead of using its range index.
    fn analyze(&self, relation: &str) -> Option<String> {
        Some(format!("ANALYZE {relation}"))
    }

    fn range_index(&self, name: &str, relation: &str, columns: &str) -> Option<String> {
        Some(format!(
            "CREATE INDEX IF NOT EXISTS {name} ON {relation} ({columns})"
        ))
    }

    fn transaction_lock(&self, key: &str) -> Option<String> {
        Some(format!(
            "SELECT pg_advisory_xact_lock(hashtext({}))",
            crate::warehouse::ident::literal(key)
        ))
    }

    fn swap(&self) -> Swap {
        Swap::RefillOrRename
    }
}
