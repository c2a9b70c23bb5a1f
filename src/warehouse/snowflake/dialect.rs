//! Snowflake's SQL: identifiers upper case, `NUMBER`, `TIMESTAMP_NTZ` holding UTC, `:n`
//! parameters, ordered identity columns, and DDL that commits at once, so a model's table is
//! swapped in by `ALTER TABLE ... SWAP WITH`.

use crate::datasets::ColType;
use crate::warehouse::dialect::{Dialect, Swap};
use crate::warehouse::ident::{literal, quote};

#[derive(Debug)]
pub struct SnowflakeDialect;

pub static DIALECT: SnowflakeDialect = SnowflakeDialect;

/// Snowflake's column identity clause for increasing ids (ORDER keeps them increasing, which
/// model watermarks rely on; fakesnow cannot run `DEFAULT seq.NEXTVAL`).
pub const IDENTITY: &str = "AUTOINCREMENT START 1 INCREMENT 1 ORDER";

impl Dialect for SnowflakeDialect {
    fn name(&self) -> &'static str {
        "snowflake"
    }

    fn fold(&self, ident: &str) -> String {
        ident.to_ascii_uppercase()
    }

    fn sql_type(&self, ty: ColType) -> &'static str {
        match ty {
            ColType::Text => "VARCHAR",
            // UTC by convention: the session's TIMEZONE is UTC.
            ColType::Timestamp => "TIMESTAMP_NTZ",
            ColType::Decimal => "NUMBER(38,8)",
            ColType::BigInt => "BIGINT",
            ColType::Double => "FLOAT",
        }
    }

    fn decimal(&self, scale: u32) -> String {
        format!("NUMBER(38,{scale})")
    }

    fn timestamp_literal(&self, ms: i64) -> String {
        let text = crate::time::format_ms(ms)
            .replace('T', " ")
            .replace('Z', "");
        format!("CAST({} AS TIMESTAMP_NTZ)", literal(&text))
    }

    fn placeholder(&self, n: usize) -> String {
        format!(":{n}")
    }

    fn timestamp_from_ms(&self, placeholder: &str) -> String {
        format!("TO_TIMESTAMP_NTZ(CAST({placeholder} AS BIGINT), 3)")
    }

    fn identity(&self, column: &str, _sequence: &str) -> (String, Vec<String>) {
        (
            format!("{} BIGINT NOT NULL {IDENTITY}", quote(self, column)),
            Vec::new(),
        )
    }

    /// Transient: no Time Travel or Fail-safe for a scratch table. Not TEMPORARY, as fakesnow
    /// cannot COPY INTO one.
    fn scratch_table(&self, relation: &str, columns: &str) -> String {
        format!("CREATE TRANSIENT TABLE {relation} ({columns})")
    }

    fn swap(&self) -> Swap {
        Swap::SwapWith
    }

    fn transactional_ddl(&self) -> bool {
        false
    }
}
