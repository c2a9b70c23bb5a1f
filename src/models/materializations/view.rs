//! `view`: created or replaced in one statement or transaction.

use super::{Build, Built, Materialization};
use crate::models::materialize::schema_ddl;
use crate::warehouse::RelationType;

pub struct View;

#[async_trait::async_trait]
impl Materialization for View {
    fn name(&self) -> &'static str {
        "view"
    }

    async fn build(&self, b: &Build<'_>) -> anyhow::Result<Built> {
        let (wh, node) = (b.wh, b.node);
        let sql = b.compile(false, None)?;
        let kind = wh.dialect();
        let mut statements = vec![schema_ddl(kind, node)];
        match b.catalog.existing(wh, node).await? {
            Some(RelationType::Table) => statements.push(format!("DROP TABLE {}", node.relation)),
            Some(RelationType::View) if !kind.replaces_views() => {
                statements.push(format!("DROP VIEW {}", node.relation))
            }
            _ => {}
        }
        let create = if kind.replaces_views() {
            "CREATE OR REPLACE VIEW"
        } else {
            "CREATE VIEW"
        };
        statements.push(format!("{create} {} AS\n{sql}", node.relation));
        wh.transaction(&statements).await?;
        Ok(Built::new(0, format!("view {}", node.relation)))
    }
}
