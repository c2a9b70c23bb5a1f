//! The steps the materializations (`materializations/`) and seeds share: a model's relation as
//! stored, its columns, and a table built beside the old one (`<name>__klines_tmp`), then
//! swapped in by one short transaction, so readers never see a missing or half-built table.

use super::node::Node;
use crate::warehouse::ident::{fold, literal, quote, relation};
use crate::warehouse::{DialectRef, RelationType, Swap, Warehouse};

pub const TMP_SUFFIX: &str = "__klines_tmp";
pub const OLD_SUFFIX: &str = "__klines_old";

/// The relation as stored: (schema, identifier) cased for the warehouse.
pub fn stored_name(kind: DialectRef, node: &Node) -> (String, String) {
    (fold(kind, &node.schema), fold(kind, &node.identifier))
}

pub async fn existing(wh: &dyn Warehouse, node: &Node) -> anyhow::Result<Option<RelationType>> {
    let (s, i) = stored_name(wh.dialect(), node);
    wh.relation(&s, &i).await
}

/// The relation's columns, in order, as stored.
pub async fn columns(
    wh: &dyn Warehouse,
    schema: &str,
    identifier: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let kind = wh.dialect();
    let rows = wh
        .query(&format!(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = {} AND table_name = {} \
             ORDER BY ordinal_position",
            literal(&fold(kind, schema)),
            literal(&fold(kind, identifier))
        ))
        .await?;
    Ok(rows
        .rows
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or_default().to_string(),
                r[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// The model's columns as stored, quoted, comma-separated: the column list of an INSERT.
pub async fn column_list(wh: &dyn Warehouse, node: &Node) -> anyhow::Result<String> {
    let cols = columns(wh, &node.schema, &node.identifier).await?;
    Ok(cols
        .iter()
        .map(|(c, _)| exact(c))
        .collect::<Vec<_>>()
        .join(", "))
}

/// A column name exactly as stored, quoted.
pub fn exact(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn schema_ddl(kind: DialectRef, node: &Node) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS {}", quote(kind, &node.schema))
}

/// Makes way for the temporary table beside the model's relation (`<name>__klines_tmp`): the
/// model's schema exists, and a table a killed run left there is dropped. Returns its
/// identifier and its relation.
pub async fn clear_tmp(wh: &dyn Warehouse, node: &Node) -> anyhow::Result<(String, String)> {
    let kind = wh.dialect();
    let name = format!("{}{TMP_SUFFIX}", node.identifier);
    let tmp = relation(kind, &node.schema, &name);
    wh.execute(&schema_ddl(kind, node)).await?;
    wh.execute(&format!("DROP TABLE IF EXISTS {tmp}")).await?;
    Ok((name, tmp))
}

/// Builds `sql` into the temporary table beside the model's relation; returns its name.
pub async fn build_tmp(wh: &dyn Warehouse, node: &Node, sql: &str) -> anyhow::Result<String> {
    let kind = wh.dialect();
    let (_, tmp) = clear_tmp(wh, node).await?;
    wh.execute(&format!("CREATE TABLE {tmp} AS\n{sql}")).await?;
    if let Some(analyze) = kind.analyze(&tmp) {
        wh.execute(&analyze).await?;
    }
    Ok(tmp)
}

/// Swaps the temporary table in for the model's relation, running `extra` in the same
/// transaction. Returns the rows of the new table.
pub async fn swap_in(
    wh: &dyn Warehouse,
    node: &Node,
    tmp: &str,
    extra: Vec<String>,
) -> anyhow::Result<u64> {
    let kind = wh.dialect();
    let rows = wh
        .query(&format!("SELECT count(*) FROM {tmp}"))
        .await?
        .scalar()
        .and_then(|v| v.as_i64())
        .unwrap_or(0) as u64;
    let ident = quote(kind, &node.identifier);
    let old = relation(
        kind,
        &node.schema,
        &format!("{}{OLD_SUFFIX}", node.identifier),
    );
    let rel = &node.relation;
    if kind.swap() == Swap::SwapWith {
        return swap_in_swapping(wh, node, tmp, extra, rows).await;
    }
    let mut statements = Vec::new();
    match existing(wh, node).await? {
        None => statements.push(format!("ALTER TABLE {tmp} RENAME TO {ident}")),
        Some(RelationType::View) => {
            statements.push(format!("DROP VIEW {rel}"));
            statements.push(format!("ALTER TABLE {tmp} RENAME TO {ident}"));
        }
        Some(RelationType::Table) => match kind.swap() {
            Swap::RefillOrRename if same_columns(wh, node, tmp).await? => {
                // Keeps the table (and the views bound to it): readers see the old rows until
                // the commit, then the new ones.
                statements.push(format!("DELETE FROM {rel}"));
                statements.push(format!("INSERT INTO {rel} SELECT * FROM {tmp}"));
                statements.push(format!("DROP TABLE {tmp}"));
            }
            _ => {
                statements.push(format!("DROP TABLE IF EXISTS {old}"));
                statements.push(format!(
                    "ALTER TABLE {rel} RENAME TO {}",
                    quote(kind, &format!("{}{OLD_SUFFIX}", node.identifier))
                ));
                statements.push(format!("ALTER TABLE {tmp} RENAME TO {ident}"));
                statements.push(format!("DROP TABLE {old}"));
            }
        },
    }
    statements.extend(extra);
    wh.transaction(&statements).await?;
    Ok(rows)
}

/// Snowflake commits every DDL statement at once, so no transaction can hold a swap: readers
/// would see the table missing or half-built between statements. `ALTER TABLE ... SWAP WITH`
/// exchanges the two tables in one atomic step instead ([`Swap::SwapWith`]). The change records (`extra`) follow
/// in a transaction of their own: a crash between the two leaves the new table with the old
/// watermarks, and the next run recomputes those ranges into the same rows. The old table,
/// left under the temporary name, is dropped last.
async fn swap_in_swapping(
    wh: &dyn Warehouse,
    node: &Node,
    tmp: &str,
    extra: Vec<String>,
    rows: u64,
) -> anyhow::Result<u64> {
    let rel = &node.relation;
    let ident = quote(wh.dialect(), &node.identifier);
    match existing(wh, node).await? {
        Some(RelationType::Table) => {
            wh.execute(&format!("ALTER TABLE {tmp} SWAP WITH {rel}"))
                .await?;
        }
        Some(RelationType::View) => {
            wh.execute(&format!("DROP VIEW {rel}")).await?;
            wh.execute(&format!("ALTER TABLE {tmp} RENAME TO {ident}"))
                .await?;
        }
        None => {
            wh.execute(&format!("ALTER TABLE {tmp} RENAME TO {ident}"))
                .await?;
        }
    }
    if !extra.is_empty() {
        wh.transaction(&extra).await?;
    }
    wh.execute(&format!("DROP TABLE IF EXISTS {tmp}")).await?;
    Ok(rows)
}

async fn same_columns(wh: &dyn Warehouse, node: &Node, _tmp: &str) -> anyhow::Result<bool> {
    let a = columns(wh, &node.schema, &node.identifier).await?;
    let b = columns(
        wh,
        &node.schema,
        &format!("{}{TMP_SUFFIX}", node.identifier),
    )
    .await?;
    Ok(!a.is_empty() && a == b)
}

/// `table`: build beside, swap in.
pub async fn table(
    wh: &dyn Warehouse,
    node: &Node,
    sql: &str,
    extra: Vec<String>,
) -> anyhow::Result<u64> {
    let tmp = build_tmp(wh, node, sql).await?;
    swap_in(wh, node, &tmp, extra).await
}

/// An index on (batch key, event time) where the warehouse needs one (Postgres), so that an
/// incremental run finds the rows of its ranges, to replace them and to read them downstream,
/// without scanning the whole table. DuckDB and Snowflake prune by their own per-block min/max
/// metadata instead.
pub async fn range_index(
    wh: &dyn Warehouse,
    node: &Node,
    batch_key: &str,
    event_time: &str,
) -> anyhow::Result<()> {
    let kind = wh.dialect();
    let name = quote(kind, &format!("{}__klines_range", node.identifier));
    if let Some(index) =
        kind.range_index(&name, &node.relation, &format!("{batch_key}, {event_time}"))
    {
        wh.execute(&index).await?;
    }
    Ok(())
}

/// The statements that replace the rows of `filter_sql` (a WHERE condition) with `sql`'s.
pub async fn replace_range(
    wh: &dyn Warehouse,
    node: &Node,
    condition: &str,
    sql: &str,
) -> anyhow::Result<Vec<String>> {
    let list = column_list(wh, node).await?;
    Ok(vec![
        format!("DELETE FROM {} WHERE {condition}", node.relation),
        format!(
            "INSERT INTO {} ({list}) SELECT {list} FROM (\n{sql}\n) AS klines_batch",
            node.relation
        ),
    ])
}
