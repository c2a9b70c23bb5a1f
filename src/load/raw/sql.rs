//! The raw layer's SQL, written once over the klines declaration ([`KLINES`]) and a dialect:
//! `<raw>.klines` (the staged columns plus `_file`, `_staged_at`, `_loaded_at`; unique on the
//! declaration's key), `<raw>.klines_load_history` (one row per loaded file), the statements
//! that merge a load batch into them, and the migration of raw tables written before the
//! exchange was part of the key (their rows are Binance's).

pub use crate::datasets::ColType;
use crate::datasets::klines::KLINES as DATASET;
use crate::load::batch::{LoadBatch, LoadedFile};
use crate::market::Series;
use crate::warehouse::DialectRef;
use crate::warehouse::dialect::{sql_type, timestamp_literal};
use crate::warehouse::ident::{literal, quote, relation};

pub const KLINES: &str = DATASET.name;
pub const LOAD_HISTORY: &str = DATASET.history;
/// The session table a batch is bulk-loaded into before it is merged.
pub const INCOMING: &str = DATASET.incoming;

/// The load history's columns (besides `load_id`), in order: the file, its series (the
/// declaration's series columns) and its range.
const HISTORY: [(&str, ColType); 11] = [
    ("file", ColType::Text),
    ("sha256", ColType::Text),
    ("exchange", ColType::Text),
    ("market", ColType::Text),
    ("symbol", ColType::Text),
    ("interval", ColType::Text),
    ("range_start", ColType::Timestamp),
    ("range_end", ColType::Timestamp),
    ("rows", ColType::BigInt),
    ("staged_at", ColType::Timestamp),
    ("loaded_at", ColType::Timestamp),
];

/// The staged columns, in file order.
pub fn staged() -> Vec<(&'static str, ColType)> {
    DATASET.columns.iter().map(|c| (c.name, c.ty)).collect()
}

/// The natural key.
const KEY: &[&str] = DATASET.key;

/// Columns of the incoming table: the staged ones, then the file and when it was staged.
pub fn incoming_columns() -> Vec<(&'static str, ColType)> {
    let mut c = staged();
    c.push(("_file", ColType::Text));
    c.push(("_staged_at", ColType::Timestamp));
    c
}

/// Whether a column may be NULL: a flow field an exchange does not report.
pub fn nullable(column: &str) -> bool {
    DATASET
        .columns
        .iter()
        .any(|c| c.name == column && c.nullable)
}

fn column_defs(kind: DialectRef, cols: &[(&str, ColType)]) -> String {
    cols.iter()
        .map(|(n, t)| {
            let null = if nullable(n) { "" } else { " NOT NULL" };
            format!("{} {}{null}", quote(kind, n), sql_type(kind, *t))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn list(kind: DialectRef, cols: &[&str], prefix: &str) -> String {
    cols.iter()
        .map(|c| format!("{prefix}{}", quote(kind, c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// DDL for the raw schema and its two tables (idempotent).
pub fn ddl(kind: DialectRef, raw_schema: &str) -> Vec<String> {
    let klines = raw_columns();
    let seq = relation(kind, raw_schema, "klines_load_id");
    let (load_id, before) = kind.identity("load_id", &seq);
    let mut out = vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", quote(kind, raw_schema)),
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            relation(kind, raw_schema, KLINES),
            column_defs(kind, &klines),
            list(kind, KEY, "")
        ),
    ];
    out.extend(before);
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS {} ({load_id}, {}, PRIMARY KEY ({}))",
        relation(kind, raw_schema, LOAD_HISTORY),
        column_defs(kind, &HISTORY),
        list(kind, &["file", "sha256"], "")
    ));
    out
}

/// `CREATE TEMP TABLE` for the incoming rows (DuckDB and Postgres).
pub fn create_incoming(kind: DialectRef) -> String {
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS {} ({})",
        quote(kind, INCOMING),
        column_defs(kind, &incoming_columns())
    )
}

/// The statements that merge the incoming table into the raw table and record the batch's
/// files, for warehouses with `UPDATE ... FROM` (DuckDB, Postgres). The first returns the
/// replaced rows, the second the inserted ones.
pub fn merge(
    kind: DialectRef,
    raw_schema: &str,
    batch: &LoadBatch,
    loaded_at_ms: i64,
) -> Vec<String> {
    let target = relation(kind, raw_schema, KLINES);
    let table = quote(kind, KLINES);
    let incoming = quote(kind, INCOMING);
    let now = timestamp_literal(kind, loaded_at_ms);
    let values = DATASET.values();
    let set = values
        .iter()
        .chain(["_file", "_staged_at"].iter())
        .map(|c| format!("{} = s.{}", quote(kind, c), quote(kind, c)))
        .chain([format!("{} = {now}", quote(kind, "_loaded_at"))])
        .collect::<Vec<_>>()
        .join(", ");
    let key_match = |t: &str| {
        KEY.iter()
            .map(|c| format!("{t}.{q} = s.{q}", q = quote(kind, c)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let differs = values
        .iter()
        .map(|c| format!("{table}.{q} IS DISTINCT FROM s.{q}", q = quote(kind, c)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let staged_cols = DATASET.column_names();
    let mut statements = vec![
        format!(
            "UPDATE {target} SET {set} FROM {incoming} AS s WHERE {} AND {table}.{sa} <= s.{sa} AND ({differs})",
            key_match(&table),
            sa = quote(kind, "_staged_at")
        ),
        format!(
            "INSERT INTO {target} ({}, {}, {}, {}) SELECT {}, s.{}, s.{}, {now} FROM {incoming} AS s \
             WHERE NOT EXISTS (SELECT 1 FROM {target} AS r WHERE {})",
            list(kind, &staged_cols, ""),
            quote(kind, "_file"),
            quote(kind, "_staged_at"),
            quote(kind, "_loaded_at"),
            list(kind, &staged_cols, "s."),
            quote(kind, "_file"),
            quote(kind, "_staged_at"),
            key_match("r")
        ),
    ];
    statements.extend(history_insert(kind, raw_schema, batch, loaded_at_ms));
    statements
}

/// `INSERT` of the batch's files into the load history, skipping files already recorded (a
/// concurrent load of the same file).
pub fn history_insert(
    kind: DialectRef,
    raw_schema: &str,
    batch: &LoadBatch,
    loaded_at_ms: i64,
) -> Option<String> {
    if batch.files.is_empty() {
        return None;
    }
    let ts = |ms: i64| timestamp_literal(kind, ms);
    let rows = batch
        .files
        .iter()
        .map(|f| {
            let e = &f.entry;
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                literal(&e.path),
                literal(&e.sha256),
                literal(e.exchange.as_str()),
                literal(e.market.as_str()),
                literal(e.symbol.as_str()),
                literal(e.interval.as_str()),
                ts(e.start),
                ts(e.end),
                e.rows,
                ts(f.staged_at),
                ts(loaded_at_ms)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let cols: Vec<&str> = HISTORY.iter().map(|(n, _)| *n).collect();
    let history = relation(kind, raw_schema, LOAD_HISTORY);
    Some(format!(
        "INSERT INTO {history} ({}) SELECT {} FROM (VALUES {rows}) AS v ({}) \
         WHERE NOT EXISTS (SELECT 1 FROM {history} AS h WHERE h.{f} = v.{f} AND h.{sha} = v.{sha})",
        list(kind, &cols, ""),
        list(kind, &cols, "v."),
        list(kind, &cols, ""),
        f = quote(kind, "file"),
        sha = quote(kind, "sha256"),
    ))
}

/// The statements that follow a batch's rows into the warehouse (DuckDB and Postgres): the
/// load-history insert for a fresh batch, else the merge's update and insert (whose counts are
/// read by position, first); then the rejected rows' insert.
pub fn batch_statements(
    kind: DialectRef,
    raw_schema: &str,
    batch: &LoadBatch,
    loaded_at_ms: i64,
) -> Vec<String> {
    let mut out: Vec<String> = if batch.fresh {
        history_insert(kind, raw_schema, batch, loaded_at_ms)
            .into_iter()
            .collect()
    } else {
        merge(kind, raw_schema, batch, loaded_at_ms)
    };
    out.extend(crate::load::quarantine::insert(
        kind,
        raw_schema,
        &batch.rejected,
        loaded_at_ms,
    ));
    out
}

/// Snowflake's `MERGE` of `incoming` (a table with the incoming columns) into the raw table:
/// the same rules as [`merge`], in one statement that reports inserted and updated rows.
pub fn merge_statement(
    kind: DialectRef,
    raw_schema: &str,
    incoming: &str,
    loaded_at_ms: i64,
) -> String {
    let target = relation(kind, raw_schema, KLINES);
    let now = timestamp_literal(kind, loaded_at_ms);
    let q = |c: &str| quote(kind, c);
    let values = DATASET.values();
    let on = KEY
        .iter()
        .map(|c| format!("r.{} = s.{}", q(c), q(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let differs = values
        .iter()
        .map(|c| format!("r.{} IS DISTINCT FROM s.{}", q(c), q(c)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let set = values
        .iter()
        .chain(["_file", "_staged_at"].iter())
        .map(|c| format!("{} = s.{}", q(c), q(c)))
        .chain([format!("{} = {now}", q("_loaded_at"))])
        .collect::<Vec<_>>()
        .join(", ");
    let staged_cols = DATASET.column_names();
    format!(
        "MERGE INTO {target} AS r USING {incoming} AS s ON {on} \
         WHEN MATCHED AND r.{sa} <= s.{sa} AND ({differs}) THEN UPDATE SET {set} \
         WHEN NOT MATCHED THEN INSERT ({}, {}, {}, {}) VALUES ({}, s.{}, s.{}, {now})",
        list(kind, &staged_cols, ""),
        q("_file"),
        q("_staged_at"),
        q("_loaded_at"),
        list(kind, &staged_cols, "s."),
        q("_file"),
        q("_staged_at"),
        sa = q("_staged_at"),
    )
}

/// The query listing the load history's files.
pub fn loaded_files_query(kind: DialectRef, raw_schema: &str) -> String {
    // What a LoadedFile holds: file, sha256, exchange, market, symbol, interval, range_start,
    // range_end.
    let cols: Vec<&str> = HISTORY[..8].iter().map(|(n, _)| *n).collect();
    format!(
        "SELECT {} FROM {}",
        list(kind, &cols, ""),
        relation(kind, raw_schema, LOAD_HISTORY)
    )
}

/// A row of [`loaded_files_query`].
pub fn loaded_file(r: &[crate::warehouse::Value]) -> anyhow::Result<LoadedFile> {
    let text = |i: usize| {
        r.get(i)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let series = (|| {
        Some(Series {
            exchange: text(2).parse().ok()?,
            market: text(3).parse().ok()?,
            symbol: text(4).parse().ok()?,
            interval: text(5).parse().ok()?,
        })
    })();
    Ok(LoadedFile {
        path: text(0),
        sha256: text(1),
        series,
        start: r.get(6).and_then(|v| v.as_millis()).unwrap_or(0),
        end: r.get(7).and_then(|v| v.as_millis()).unwrap_or(0),
    })
}

/// The statements that bring raw tables written before the exchange was part of the key to
/// today's: the klines are copied aside, the table is created anew with the five-column key
/// and the rows come back as Binance's; the load history gains the column (Binance's too).
/// One transaction where the warehouse has them (Snowflake commits each DDL statement, so a
/// failure there leaves `klines_migrating` holding the rows).
pub fn migration(kind: DialectRef, raw_schema: &str) -> Vec<String> {
    let klines = relation(kind, raw_schema, KLINES);
    let aside = relation(kind, raw_schema, "klines_migrating");
    let old: Vec<&str> = raw_columns()
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != "exchange")
        .collect();
    let history = relation(kind, raw_schema, LOAD_HISTORY);
    let text = sql_type(kind, ColType::Text);
    let not_null = if kind.add_not_null_column() {
        " NOT NULL"
    } else {
        ""
    };
    vec![
        format!("CREATE TABLE {aside} AS SELECT * FROM {klines}"),
        format!("DROP TABLE {klines}"),
        format!(
            "CREATE TABLE {klines} ({}, PRIMARY KEY ({}))",
            column_defs(kind, &raw_columns()),
            list(kind, KEY, "")
        ),
        format!(
            "INSERT INTO {klines} ({}, {}) SELECT 'binance', {} FROM {aside}",
            quote(kind, "exchange"),
            list(kind, &old, ""),
            list(kind, &old, "")
        ),
        format!("DROP TABLE {aside}"),
        format!(
            "ALTER TABLE {history} ADD COLUMN {} {text}{not_null} DEFAULT 'binance'",
            quote(kind, "exchange")
        ),
    ]
}

/// The rows of a batch with every column of the raw table, `_loaded_at` included, for adapters
/// that write a fresh batch straight into it.
pub fn raw_columns() -> Vec<(&'static str, ColType)> {
    let mut c = incoming_columns();
    c.push(("_loaded_at", ColType::Timestamp));
    c
}

/// Statements that give every row of `table` the file (and its staging time) whose series and
/// open-time range hold it. The batch's files do not overlap, so each row has one.
pub fn attribute_files(k: DialectRef, table: &str, batch: &LoadBatch) -> String {
    let q = |c: &str| quote(k, c);
    let values = batch
        .files
        .iter()
        .map(|f| {
            let e = &f.entry;
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {})",
                literal(&e.path),
                literal(e.exchange.as_str()),
                literal(e.market.as_str()),
                literal(e.symbol.as_str()),
                literal(e.interval.as_str()),
                timestamp_literal(k, e.start),
                timestamp_literal(k, e.end),
                timestamp_literal(k, f.staged_at)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE {table} SET {file} = f.{path}, {sa} = f.{staged}, {x} = f.{x} FROM (VALUES {values}) AS f ({path}, {x}, {m}, {s}, {i}, {rs}, {re}, {staged}) \
         WHERE ({table}.{x} IS NULL OR {table}.{x} = f.{x}) AND {table}.{m} = f.{m} AND {table}.{s} = f.{s} AND {table}.{i} = f.{i} AND {table}.{ot} >= f.{rs} AND {table}.{ot} < f.{re}",
        file = q("_file"),
        sa = q("_staged_at"),
        path = q("path"),
        staged = q("staged"),
        x = q("exchange"),
        m = q("market"),
        s = q("symbol"),
        i = q("interval"),
        rs = q("range_start"),
        re = q("range_end"),
        ot = q("open_time"),
    )
}

/// The scratch table a warehouse copies staged files into (by column name) before they are
/// merged: the incoming columns, where the exchange and the file's own columns may be NULL
/// until [`attribute_files`] sets them (files staged before the exchange column have none).
pub fn scratch_ddl(k: DialectRef, table: &str) -> String {
    let cols = incoming_columns()
        .iter()
        .map(|(n, t)| {
            let null = if n.starts_with('_') || *n == "exchange" || nullable(n) {
                ""
            } else {
                " NOT NULL"
            };
            format!("{} {}{null}", quote(k, n), sql_type(k, *t))
        })
        .collect::<Vec<_>>()
        .join(", ");
    k.scratch_table(table, &cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_quotes_and_cases_for_each_warehouse() {
        let pg = ddl(&crate::warehouse::postgres::DIALECT, "Raw");
        assert_eq!(pg[0], "CREATE SCHEMA IF NOT EXISTS \"raw\"");
        assert!(
            pg[1].contains(
                "\"raw\".\"klines\" (\"exchange\" TEXT NOT NULL, \"market\" TEXT NOT NULL"
            ),
            "{}",
            pg[1]
        );
        assert!(
            pg[1].contains("\"open\" NUMERIC(38,8) NOT NULL"),
            "{}",
            pg[1]
        );
        assert!(
            pg[1].ends_with(
                "PRIMARY KEY (\"exchange\", \"market\", \"symbol\", \"interval\", \"open_time\"))"
            ),
            "{}",
            pg[1]
        );
        let sf = ddl(&crate::warehouse::snowflake::DIALECT, "raw");
        assert!(
            sf[1].contains(
                "\"RAW\".\"KLINES\" (\"EXCHANGE\" VARCHAR NOT NULL, \"MARKET\" VARCHAR NOT NULL"
            ),
            "{}",
            sf[1]
        );
        assert_eq!(
            timestamp_literal(&crate::warehouse::postgres::DIALECT, 1_704_067_200_000),
            "CAST('2024-01-01 00:00:00+00:00' AS TIMESTAMPTZ)"
        );
    }
}
