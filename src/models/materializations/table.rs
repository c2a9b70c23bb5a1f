//! `table`: built beside the old one (`<name>__klines_tmp`), then swapped in by one short
//! transaction, so readers never see a missing or half-built table.

use super::{Build, Built, Materialization};
use crate::models::materialize;

pub struct Table;

#[async_trait::async_trait]
impl Materialization for Table {
    fn name(&self) -> &'static str {
        "table"
    }

    async fn build(&self, b: &Build<'_>) -> anyhow::Result<Built> {
        let sql = b.compile(false, None)?;
        let rows = materialize::table(b.wh, b.node, &sql, Vec::new()).await?;
        Ok(Built::new(
            rows,
            format!("table {}: {rows} rows", b.node.relation),
        ))
    }
}
