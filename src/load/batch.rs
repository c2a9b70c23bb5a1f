//! What a load moves in one transaction: the batch's files, their rows per series (newest file
//! wins on a shared key), the rows kept out, and the history rows. Rows go to warehouses as
//! Arrow record batches: the staged columns, then `_file` and `_staged_at` (and `_loaded_at`
//! when they go straight into the raw table).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::datasets::klines::KlineBatch;
use crate::market::Series;
use crate::stage::manifest::ManifestEntry;
use crate::stage::parquet;

/// A staged file in a load batch.
#[derive(Debug, Clone)]
pub struct LoadFile {
    pub entry: ManifestEntry,
    /// When it was staged (the manifest entry's last-modified time), epoch ms.
    pub staged_at: i64,
}

/// The klines of one series in a load batch, each with the index of the file it comes from.
/// Open times are unique: overlapping files were resolved (newest wins) before.
#[derive(Debug, Clone)]
pub struct SeriesRows {
    pub series: Series,
    pub klines: KlineBatch,
    pub file: Vec<u32>,
}

/// One transaction's worth of loading.
#[derive(Debug, Clone, Default)]
pub struct LoadBatch {
    pub files: Vec<LoadFile>,
    pub rows: Vec<SeriesRows>,
    /// The batch's files overlap neither each other nor any loaded file: every row is new.
    pub fresh: bool,
    /// Rows of the batch's files that break a kline's invariants: recorded in
    /// `raw.klines_rejected` in the same transaction, never loaded.
    pub rejected: Vec<super::quarantine::Rejected>,
}

impl LoadBatch {
    pub fn row_count(&self) -> usize {
        self.rows.iter().map(|r| r.klines.len()).sum()
    }
}

/// What a load batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadCounts {
    pub inserted: u64,
    /// Rows that existed with other values and were replaced by a newer file's.
    pub replaced: u64,
}

/// A file in the load history: its key, content hash, series and open-time range.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoadedFile {
    pub path: String,
    pub sha256: String,
    pub series: Option<Series>,
    pub start: i64,
    pub end: i64,
}

impl LoadBatch {
    /// The rows of series `i` as the incoming (or, with `loaded_at`, the raw) table takes them.
    pub fn record_batch(&self, i: usize, loaded_at: Option<i64>) -> anyhow::Result<RecordBatch> {
        let rows = &self.rows[i];
        let staged = parquet::to_record_batch(&rows.series, &rows.klines)?;
        let files: ArrayRef = Arc::new(StringArray::from_iter_values(
            rows.file
                .iter()
                .map(|&f| self.files[f as usize].entry.path.as_str()),
        ));
        let staged_at: ArrayRef = Arc::new(
            TimestampMillisecondArray::from_iter_values(
                rows.file.iter().map(|&f| self.files[f as usize].staged_at),
            )
            .with_timezone("UTC"),
        );
        let ts = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let mut fields: Vec<Field> = staged
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("_file", DataType::Utf8, false));
        fields.push(Field::new("_staged_at", ts(), false));
        let mut columns = staged.columns().to_vec();
        columns.push(files);
        columns.push(staged_at);
        if let Some(t) = loaded_at {
            fields.push(Field::new("_loaded_at", ts(), false));
            columns.push(Arc::new(
                TimestampMillisecondArray::from_value(t, rows.klines.len()).with_timezone("UTC"),
            ));
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }

    /// Every series' rows, for [`LoadBatch::record_batch`].
    pub fn record_batches(&self, loaded_at: Option<i64>) -> anyhow::Result<Vec<RecordBatch>> {
        (0..self.rows.len())
            .map(|i| self.record_batch(i, loaded_at))
            .collect()
    }
}
