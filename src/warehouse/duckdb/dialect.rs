//! DuckDB's SQL: identifiers as written, `DECIMAL`, `TIMESTAMPTZ`, `CREATE OR REPLACE VIEW`.

use crate::datasets::ColType;
use crate::warehouse::dialect::Dialect;

#[derive(Debug)]
pub struct DuckDbDialect;

pub static DIALECT: DuckDbDialect = DuckDbDialect;

impl Dialect for DuckDbDialect {
    fn name(&self) -> &'static str {
        "duckdb"
    }

    fn sql_type(&self, ty: ColType) -> &'static str {
        match ty {
            ColType::Text => "VARCHAR",
            ColType::Timestamp => "TIMESTAMPTZ",
            ColType::Decimal => "DECIMAL(38,8)",
            ColType::BigInt => "BIGINT",
            ColType::Double => "DOUBLE",
        }
    }
}
