//! What the warehouse held when a run first asked, read once per run: the relations and
//! columns of each schema the run builds into, and the models' watermarks.
//!
//! A run with nothing new asks every model whether its relation exists, what its columns are
//! and how far it has read each parent: three queries per model, most of them on
//! `information_schema`, which DuckDB answers by building views over its catalog. Read once
//! for the run, they are three queries in all.
//!
//! A snapshot is right for a run because each model asks about its own relation and its own
//! watermarks only, before it changes them, and one run at a time builds a project's schema
//! (the lock in `workspace.rs`). A new run takes a new snapshot.

use std::collections::BTreeMap;

use tokio::sync::Mutex;

use super::changes::{self, Feed, Pending};
use super::materialize::stored_name;
use super::node::Node;
use crate::warehouse::ident::literal;
use crate::warehouse::{RelationType, Warehouse};

/// One schema as the run found it, by name as stored; each part read on first use.
#[derive(Default)]
struct Schema {
    relations: Option<BTreeMap<String, RelationType>>,
    /// Only some kinds of model ask.
    columns: Option<BTreeMap<String, Vec<(String, String)>>>,
}

#[derive(Default)]
pub struct Catalog {
    schemas: Mutex<BTreeMap<String, Schema>>,
    /// (model, parent) -> last change id processed, by target schema.
    watermarks: Mutex<BTreeMap<String, BTreeMap<(String, String), i64>>>,
}

impl Catalog {
    /// `node`'s relation, as stored when the run first looked at its schema.
    pub async fn existing(
        &self,
        wh: &dyn Warehouse,
        node: &Node,
    ) -> anyhow::Result<Option<RelationType>> {
        let (schema, name) = stored_name(wh.dialect(), node);
        let mut schemas = self.schemas.lock().await;
        let entry = schemas.entry(schema.clone()).or_default();
        if entry.relations.is_none() {
            entry.relations = Some(wh.relations(&schema).await?);
        }
        Ok(entry.relations.as_ref().and_then(|r| r.get(&name).copied()))
    }

    /// `node`'s columns as stored (name, type), in order, as when the run first asked.
    pub async fn columns(
        &self,
        wh: &dyn Warehouse,
        node: &Node,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let (schema, name) = stored_name(wh.dialect(), node);
        let mut schemas = self.schemas.lock().await;
        let entry = schemas.entry(schema.clone()).or_default();
        if entry.columns.is_none() {
            entry.columns = Some(columns_of(wh, &schema).await?);
        }
        Ok(entry
            .columns
            .as_ref()
            .and_then(|c| c.get(&name))
            .cloned()
            .unwrap_or_default())
    }

    /// The last change id of `parent` that `model` processed (`changes::WATERMARKS` in
    /// `schema`).
    pub async fn watermark(
        &self,
        wh: &dyn Warehouse,
        schema: &str,
        model: &str,
        parent: &str,
    ) -> anyhow::Result<Option<i64>> {
        let mut all = self.watermarks.lock().await;
        if !all.contains_key(schema) {
            all.insert(schema.to_string(), changes::watermarks(wh, schema).await?);
        }
        Ok(all
            .get(schema)
            .and_then(|m| m.get(&(model.to_string(), parent.to_string())))
            .copied())
    }

    /// The changes of `parent` that `model` has not processed: those after its watermark.
    pub async fn pending(
        &self,
        wh: &dyn Warehouse,
        schema: &str,
        model: &str,
        parent: &str,
        feed: &Feed,
    ) -> anyhow::Result<Pending> {
        let wm = self.watermark(wh, schema, model, parent).await?;
        changes::pending(wh, schema, wm, parent, feed).await
    }
}

/// Every column of every relation in `schema` (as stored), by relation, in order.
async fn columns_of(
    wh: &dyn Warehouse,
    schema: &str,
) -> anyhow::Result<BTreeMap<String, Vec<(String, String)>>> {
    let rows = wh
        .query(&format!(
            "SELECT table_name, column_name, data_type FROM information_schema.columns \
             WHERE table_schema = {} ORDER BY table_name, ordinal_position",
            literal(schema)
        ))
        .await?;
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for r in &rows.rows {
        let text = |i: usize| {
            r.get(i)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        out.entry(text(0)).or_default().push((text(1), text(2)));
    }
    Ok(out)
}
