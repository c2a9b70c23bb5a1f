//! What the adapter and the appender share of the `duckdb` driver: its errors as messages,
//! and a logged COMMIT.

use std::time::Instant;

/// DuckDB's message alone: its error's source only adds "Error code 1: Unknown error code".
pub fn db_err(e: duckdb::Error) -> anyhow::Error {
    match e {
        duckdb::Error::DuckDBFailure(_, Some(msg)) => anyhow::anyhow!(msg),
        other => anyhow::Error::new(other),
    }
}

/// Commits `tx`, logged as the other statements are (`-v`).
pub fn commit(tx: duckdb::Transaction<'_>) -> anyhow::Result<()> {
    let t = Instant::now();
    tx.commit().map_err(db_err)?;
    crate::warehouse::log_sql(t, "COMMIT");
    Ok(())
}
