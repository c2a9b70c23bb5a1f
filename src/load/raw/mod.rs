//! The raw layer the loader owns: its tables created and migrated, its load history read, and a
//! batch loaded in one transaction, over any warehouse. The SQL is written once (`sql`); an
//! adapter only runs statements and appends rows ([`Warehouse::load_rows`]), or copies staged
//! files itself ([`Warehouse::staged_copy`], Snowflake).

pub mod sql;

use anyhow::Context;

use super::batch::{LoadBatch, LoadCounts, LoadedFile};
use crate::warehouse::ident::{self, quote, relation};
use crate::warehouse::{Copied, RowsInto, Warehouse};

/// Creates the raw schema, the raw klines table and the load history if missing (and what
/// the adapter keeps beside them).
pub async fn ensure(wh: &dyn Warehouse, raw_schema: &str) -> anyhow::Result<()> {
    let k = wh.dialect();
    // Serialized where sessions race: concurrent CREATE ... IF NOT EXISTS can still collide.
    let mut ddl: Vec<String> = k
        .transaction_lock(&format!("klines.ddl.{raw_schema}"))
        .into_iter()
        .collect();
    ddl.extend(sql::ddl(k, raw_schema));
    if let Some(staged) = wh.staged_copy() {
        ddl.extend(staged.raw_setup(raw_schema));
    }
    run_ddl(wh, &ddl).await
}

/// DDL statements: in one transaction where the warehouse can hold DDL in one, else one by one.
async fn run_ddl(wh: &dyn Warehouse, statements: &[String]) -> anyhow::Result<()> {
    if wh.dialect().transactional_ddl() {
        wh.transaction(statements).await?;
    } else {
        for st in statements {
            wh.execute(st).await?;
        }
    }
    Ok(())
}

/// True when the raw klines table was written before the exchange was part of its key.
pub async fn needs_migration(wh: &dyn Warehouse, raw_schema: &str) -> anyhow::Result<bool> {
    let klines = relation(wh.dialect(), raw_schema, sql::KLINES);
    let columns = wh
        .query(&format!("SELECT * FROM {klines} WHERE 1 = 0"))
        .await?
        .columns;
    Ok(!columns.is_empty() && !columns.iter().any(|c| c.eq_ignore_ascii_case("exchange")))
}

/// Brings raw tables written before the exchange was part of their key to today's (once; see
/// [`sql::migration`]), in one transaction. Returns the rows migrated, `None` when there was
/// nothing to do.
pub async fn migrate(wh: &dyn Warehouse, raw_schema: &str) -> anyhow::Result<Option<u64>> {
    if !needs_migration(wh, raw_schema).await? {
        return Ok(None);
    }
    let k = wh.dialect();
    let klines = relation(k, raw_schema, sql::KLINES);
    let rows = wh
        .query(&format!("SELECT count(*) FROM {klines}"))
        .await?
        .scalar()
        .and_then(|v| v.as_i64())
        .unwrap_or(0) as u64;
    tracing::warn!(
        table = %klines,
        rows,
        "the raw tables were written before the exchange was part of their key: migrating them once (their rows are Binance's)"
    );
    let mut statements = sql::migration(k, raw_schema);
    if let Some(staged) = wh.staged_copy() {
        statements.extend(staged.raw_migration(raw_schema));
    }
    wh.transaction(&statements)
        .await
        .with_context(|| format!("cannot migrate {klines} to the key with the exchange"))?;
    Ok(Some(rows))
}

/// The files in the load history.
pub async fn loaded_files(wh: &dyn Warehouse, raw_schema: &str) -> anyhow::Result<Vec<LoadedFile>> {
    let rows = wh
        .query(&sql::loaded_files_query(wh.dialect(), raw_schema))
        .await?;
    rows.rows.iter().map(|r| sql::loaded_file(r)).collect()
}

/// Loads a batch in one transaction: new klines are inserted, existing ones with other values
/// replaced when the batch's file is at least as new as theirs, the rejected rows recorded and
/// every file entered in the load history. All of it, or nothing. When `batch.fresh` says no
/// row can exist yet, the rows go straight into the raw table.
pub async fn load(
    wh: &dyn Warehouse,
    raw_schema: &str,
    batch: &LoadBatch,
) -> anyhow::Result<LoadCounts> {
    if wh.staged_copy().is_some() {
        return load_staged(wh, raw_schema, batch).await;
    }
    let k = wh.dialect();
    let loaded_at = crate::time::now_ms();
    let lock = k.transaction_lock(&format!("klines.load.{raw_schema}"));
    let (before, into) = if batch.fresh {
        let into = RowsInto::Table {
            schema: ident::fold(k, raw_schema),
            name: ident::fold(k, sql::KLINES),
        };
        (lock.into_iter().collect::<Vec<_>>(), into)
    } else {
        let incoming = quote(k, sql::INCOMING);
        let before: Vec<String> = lock
            .into_iter()
            .chain([sql::create_incoming(k), format!("DELETE FROM {incoming}")])
            .collect();
        (
            before,
            RowsInto::Session {
                name: ident::fold(k, sql::INCOMING),
            },
        )
    };
    let mut after: Vec<String> = Vec::new();
    if !batch.fresh {
        after.extend(k.analyze(&quote(k, sql::INCOMING)));
    }
    let first = after.len();
    after.extend(sql::batch_statements(k, raw_schema, batch, loaded_at));
    let rows = batch.record_batches(batch.fresh.then_some(loaded_at))?;
    let counts = wh.load_rows(&before, &into, rows, &after).await?;
    Ok(if batch.fresh {
        LoadCounts {
            inserted: batch.row_count() as u64,
            replaced: 0,
        }
    } else {
        // The merge's update, then its insert.
        LoadCounts {
            replaced: counts[first],
            inserted: counts[first + 1],
        }
    })
}

/// Snowflake's way: the batch's files are copied from the stage into a scratch table, checked
/// against their manifest entries, given their file and exchange, the rejected rows taken out
/// and recorded, then merged and entered in the history, in one transaction.
async fn load_staged(
    wh: &dyn Warehouse,
    raw_schema: &str,
    batch: &LoadBatch,
) -> anyhow::Result<LoadCounts> {
    let staged = wh.staged_copy().context("no staged copy")?;
    let k = wh.dialect();
    let scratch = relation(
        k,
        raw_schema,
        &format!(
            "klines_incoming_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ),
    );
    wh.execute(&sql::scratch_ddl(k, &scratch)).await?;
    let loaded_at = crate::time::now_ms();
    let mut after = vec![sql::attribute_files(k, &scratch, batch)];
    // Rows that break a kline's invariants (found when klines checked the files) stay out of
    // the merge and are recorded instead.
    for chunk in batch.rejected.chunks(500) {
        let cond = chunk
            .iter()
            .map(|r| {
                format!(
                    "({} = {} AND {} = {})",
                    quote(k, "_file"),
                    ident::literal(&r.file),
                    quote(k, "open_time"),
                    k.timestamp_literal(r.open_time)
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        after.push(format!("DELETE FROM {scratch} WHERE {cond}"));
    }
    after.extend(super::quarantine::insert(
        k,
        raw_schema,
        &batch.rejected,
        loaded_at,
    ));
    let merge = after.len();
    after.push(sql::merge_statement(k, raw_schema, &scratch, loaded_at));
    after.extend(sql::history_insert(k, raw_schema, batch, loaded_at));
    let files: Vec<String> = batch.files.iter().map(|f| f.entry.path.clone()).collect();
    let check = |copied: &[Copied]| check_copied(batch, copied);
    let result = staged.copy_files(&scratch, &files, &check, &after).await;
    if let Err(e) = wh.execute(&format!("DROP TABLE IF EXISTS {scratch}")).await {
        tracing::warn!(table = %scratch, error = %format!("{e:#}"), "could not drop the load's table");
    }
    let rows = result?;
    let (inserted, replaced) = staged.merge_counts(&rows[merge]);
    Ok(LoadCounts { inserted, replaced })
}

/// Every file of the batch LOADED, with the rows its manifest entry announced.
fn check_copied(batch: &LoadBatch, copied: &[Copied]) -> anyhow::Result<()> {
    for f in &batch.files {
        let e = &f.entry;
        let Some(c) = copied
            .iter()
            .find(|c| c.file == e.path || c.file.ends_with(&format!("/{}", e.path)))
        else {
            anyhow::bail!("{}: COPY INTO did not report this file", e.path);
        };
        if !c.status.eq_ignore_ascii_case("LOADED") {
            let why = c.first_error.as_deref().unwrap_or("no error given");
            anyhow::bail!("{}: COPY INTO says {}: {why}", e.path, c.status);
        }
        if let Some(n) = c.rows_loaded
            && n != e.rows
        {
            anyhow::bail!(
                "{}: COPY INTO loaded {n} rows, the manifest says {}",
                e.path,
                e.rows
            );
        }
    }
    Ok(())
}
