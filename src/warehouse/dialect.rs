//! What differs between warehouses' SQL, one implementation per adapter (beside it, in its
//! file): identifier case, column types, literals, and how a table is replaced. Code outside
//! `warehouse/` asks the dialect, never which warehouse it is, so an adapter is one file plus
//! its dialect.

use crate::datasets::ColType;

/// How a model's new table takes the place of the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// Renames in one transaction: the old table aside, the new one in, the old one dropped.
    Rename,
    /// As `Rename`, but when the columns are the same the old table is kept and its rows
    /// replaced in one transaction, so the views bound to it stay (Postgres).
    RefillOrRename,
    /// One atomic `ALTER TABLE ... SWAP WITH` (Snowflake, whose DDL commits at once).
    SwapWith,
}

pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// The adapter's `type` in profiles.yml, and Jinja's `target.type` (`adapter.dispatch`
    /// calls `<name>__macro`).
    fn name(&self) -> &'static str;

    /// An identifier as the warehouse stores it unquoted (Snowflake: upper case; Postgres:
    /// lower case).
    fn fold(&self, ident: &str) -> String {
        ident.to_string()
    }

    /// The SQL type of a column type.
    fn sql_type(&self, ty: ColType) -> &'static str;

    /// A decimal of 38 digits with `scale` after the point.
    fn decimal(&self, scale: u32) -> String {
        format!("DECIMAL(38,{scale})")
    }

    /// A UTC timestamp literal (`CAST('2024-01-01 00:00:00+00:00' AS TIMESTAMPTZ)`).
    fn timestamp_literal(&self, ms: i64) -> String {
        let text = crate::time::format_ms(ms)
            .replace('T', " ")
            .replace('Z', "+00:00");
        format!(
            "CAST({} AS {})",
            super::ident::literal(&text),
            self.sql_type(ColType::Timestamp)
        )
    }

    /// The `n`th (from 1) bound parameter's placeholder.
    fn placeholder(&self, n: usize) -> String {
        format!("${n}")
    }

    /// A timestamp from a bound parameter of epoch milliseconds.
    fn timestamp_from_ms(&self, placeholder: &str) -> String {
        format!("to_timestamp(CAST({placeholder} AS BIGINT) / 1000.0)")
    }

    /// A BIGINT column that numbers rows in insert order, and the statements it needs first
    /// (a sequence named `sequence`, a relation).
    fn identity(&self, column: &str, sequence: &str) -> (String, Vec<String>) {
        (
            format!(
                "{} BIGINT NOT NULL DEFAULT nextval({})",
                super::ident::quote(self, column),
                super::ident::literal(sequence)
            ),
            vec![format!("CREATE SEQUENCE IF NOT EXISTS {sequence}")],
        )
    }

    /// `ALTER TABLE ... ADD COLUMN` of a NOT NULL column with a default, where the warehouse
    /// takes the constraint in that statement.
    fn add_not_null_column(&self) -> bool {
        false
    }

    /// Whether `CREATE OR REPLACE VIEW` may change a view's columns (else the view is dropped
    /// first).
    fn replaces_views(&self) -> bool {
        true
    }

    /// A statement that refreshes the planner's statistics of a table just built, if the
    /// warehouse needs one.
    fn analyze(&self, relation: &str) -> Option<String> {
        let _ = relation;
        None
    }

    /// An index on `columns` of `relation` (named `name`), where the warehouse needs one to find
    /// a model's ranges (DuckDB and Snowflake prune by their own block statistics).
    fn range_index(&self, name: &str, relation: &str, columns: &str) -> Option<String> {
        let _ = (name, relation, columns);
        None
    }

    fn swap(&self) -> Swap {
        Swap::Rename
    }

    /// `CREATE TABLE` of a scratch table that lives until it is dropped (no history kept).
    fn scratch_table(&self, relation: &str, columns: &str) -> String {
        format!("CREATE TABLE {relation} ({columns})")
    }

    /// A statement that holds, to the end of its transaction, a lock named `key` among the
    /// loads of this warehouse (one load at a time per raw schema), where sessions can race.
    fn transaction_lock(&self, key: &str) -> Option<String> {
        let _ = key;
        None
    }

    /// Whether one transaction can hold DDL (Snowflake commits each DDL statement at once).
    fn transactional_ddl(&self) -> bool {
        true
    }
}

/// A dialect, as adapters hand them out.
pub type DialectRef = &'static dyn Dialect;

/// The SQL type of a column type on `dialect`.
pub fn sql_type<D: Dialect + ?Sized>(dialect: &D, ty: ColType) -> &'static str {
    dialect.sql_type(ty)
}

/// A UTC timestamp literal on `dialect`.
pub fn timestamp_literal<D: Dialect + ?Sized>(dialect: &D, ms: i64) -> String {
    dialect.timestamp_literal(ms)
}
