//! The datasets klines keeps, each a declaration ([`Dataset`]): its columns and their types,
//! its key, its time column and the columns naming a series, from which the stage, the load
//! history, the raw tables, the quarantine and the API take their shape; and its rows in
//! columns (`klines`: [`klines::KlineBatch`]).

pub mod klines;

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// A staged column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColType,
    /// NULL where a source does not report it (Coinbase's flow fields).
    pub nullable: bool,
}

/// What a dataset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dataset {
    /// Its name, and its raw table's (`klines`).
    pub name: &'static str,
    /// The staged columns, in file order.
    pub columns: &'static [Column],
    /// The natural key: unique in the raw table.
    pub key: &'static [&'static str],
    /// The time column: what a file's range, a series' coverage and incremental models'
    /// ranges are about.
    pub time: &'static str,
    /// The columns that name a series (its files, checkpoints and history rows).
    pub series: &'static [&'static str],
    /// Its load history table (`<name>_load_history`): one row per loaded file.
    pub history: &'static str,
    /// Its rejected table (`<name>_rejected`): rows kept out of the raw table, with why.
    pub rejected: &'static str,
    /// Where a batch waits to be merged (`<name>_incoming`).
    pub incoming: &'static str,
}

impl Dataset {
    /// The names of the staged columns, in file order.
    pub fn column_names(&self) -> Vec<&'static str> {
        self.columns.iter().map(|c| c.name).collect()
    }

    /// The staged columns that may be NULL.
    pub fn nullable(&self) -> Vec<&'static str> {
        self.columns
            .iter()
            .filter(|c| c.nullable)
            .map(|c| c.name)
            .collect()
    }

    /// The Arrow schema of its staged files: the columns in order, typed, NULL only where a
    /// column is nullable.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.ty.arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// The staged columns that are not the key.
    pub fn values(&self) -> Vec<&'static str> {
        self.columns
            .iter()
            .map(|c| c.name)
            .filter(|n| !self.key.contains(n))
            .collect()
    }
}

/// A column's type, as the stage and every warehouse know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    /// UTC, to the millisecond.
    Timestamp,
    /// Exact, 38 digits with 8 after the point.
    Decimal,
    BigInt,
    Double,
}

impl ColType {
    /// The Arrow type of a staged column.
    pub fn arrow(self) -> DataType {
        match self {
            ColType::Text => DataType::Utf8,
            ColType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            ColType::Decimal => {
                DataType::Decimal128(crate::decimal::PRECISION, crate::decimal::SCALE)
            }
            ColType::BigInt => DataType::Int64,
            ColType::Double => DataType::Float64,
        }
    }
}
