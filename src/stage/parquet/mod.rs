//! The staged file format: typed Parquet, zstd, with column statistics.
//!
//! | column | type |
//! |---|---|
//! | exchange, market, symbol, interval | string (dictionary-encoded) |
//! | open_time, close_time | timestamp(ms, UTC) |
//! | open, high, low, close, volume, quote_volume, taker_buy_base_volume, taker_buy_quote_volume | decimal(38, 8) |
//! | trades | int64 |
//!
//! Every column is required (no nulls) except the flow columns (`quote_volume`, `trades`,
//! `taker_buy_base_volume`, `taker_buy_quote_volume`), which are NULL for exchanges that do not
//! report them (Coinbase). The bytes depend only on the rows, so re-staging a range writes the
//! same file. Files staged before the exchange was part of the series have
//! no `exchange` column: they are read as Binance's.

use std::sync::{Arc, LazyLock};

use anyhow::{Context, bail};
use arrow::array::{
    Array, ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::datasets::klines::{KLINES, KlineBatch};
use crate::decimal::{PRECISION, SCALE};
use crate::market::Series;

mod chunk;
mod codec;
mod writer;

#[cfg(test)]
mod same_bytes;

use writer::Values;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| KLINES.arrow_schema());

/// The Arrow schema of staged klines (`datasets::klines::KLINES`).
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

fn writer_properties() -> WriterProperties {
    let mut b = WriterProperties::builder()
        // Level 1: day files are small, and higher levels spend most of their time setting up
        // tables for inputs this size; the size gained is a few percent.
        .set_compression(Compression::ZSTD(codec::level()))
        // Min/max per column chunk: a day file is one row group of one page per column, so a
        // page index would repeat the same statistics (it cost 6% of encoding and 1% of bytes).
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_dictionary_enabled(false)
        .set_created_by(concat!("klines ", env!("CARGO_PKG_VERSION")).to_string());
    // One value per file: a dictionary of one entry, nothing worth compressing.
    for c in ["exchange", "market", "symbol", "interval"] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(c), true)
            .set_column_compression(ColumnPath::from(c), Compression::UNCOMPRESSED);
    }
    // Prices repeat within a day: a dictionary makes them several times smaller before zstd.
    for c in ["open", "high", "low", "close"] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), true);
    }
    b.build()
}

fn decimals(v: Vec<i128>) -> anyhow::Result<ArrayRef> {
    Ok(Arc::new(
        Decimal128Array::from(v).with_precision_and_scale(PRECISION, SCALE)?,
    ))
}

/// A flow column: its values, or all NULL for an exchange that does not report it.
fn flow_decimals(v: Vec<i128>, present: bool) -> anyhow::Result<ArrayRef> {
    if present {
        return decimals(v);
    }
    Ok(Arc::new(
        Decimal128Array::new_null(v.len()).with_precision_and_scale(PRECISION, SCALE)?,
    ))
}

fn times(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
}

/// The klines of `series` as an Arrow record batch in the staged schema.
pub fn to_record_batch(series: &Series, k: &KlineBatch) -> anyhow::Result<RecordBatch> {
    into_record_batch(series, k.clone())
}

/// Like [`to_record_batch`], moving the columns instead of copying them.
pub fn into_record_batch(series: &Series, k: KlineBatch) -> anyhow::Result<RecordBatch> {
    let n = k.len();
    let flow = series.exchange.flow_fields();
    let constant = |s: &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(s, n)))
    };
    let columns: Vec<ArrayRef> = vec![
        constant(series.exchange.as_str()),
        constant(series.market.as_str()),
        constant(series.symbol.as_str()),
        constant(series.interval.as_str()),
        times(k.open_time),
        decimals(k.open)?,
        decimals(k.high)?,
        decimals(k.low)?,
        decimals(k.close)?,
        decimals(k.volume)?,
        times(k.close_time),
        flow_decimals(k.quote_volume, flow)?,
        if flow {
            Arc::new(Int64Array::from(k.trades))
        } else {
            Arc::new(Int64Array::new_null(n))
        },
        flow_decimals(k.taker_buy_base_volume, flow)?,
        flow_decimals(k.taker_buy_quote_volume, flow)?,
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// Encodes klines as one Parquet file (one row group).
///
/// The bytes are those [`encode_with_arrow_writer`] writes; a day or less of any interval but
/// 1s is written by `writer`, which gets there several times faster.
pub fn encode(series: &Series, k: KlineBatch) -> anyhow::Result<Bytes> {
    if let Some(bytes) = writer::write(&SCHEMA, writer_properties(), k.len(), &columns(series, &k))?
    {
        return Ok(bytes);
    }
    encode_with_arrow_writer(series, k)
}

/// Encodes klines with parquet-rs's `ArrowWriter`: the reference for [`encode`]'s bytes, and
/// its way for what its own writer does not cover.
pub fn encode_with_arrow_writer(series: &Series, k: KlineBatch) -> anyhow::Result<Bytes> {
    let batch = into_record_batch(series, k)?;
    let mut writer = ArrowWriter::try_new(
        Vec::with_capacity(64 * 1024),
        schema(),
        Some(writer_properties()),
    )?;
    writer.write(&batch)?;
    Ok(Bytes::from(writer.into_inner()?))
}

/// The staged columns of `k`, in the schema's order.
fn columns<'a>(series: &'a Series, k: &'a KlineBatch) -> [Values<'a>; 15] {
    let flow = series.exchange.flow_fields();
    let flow_decimals = |v: &'a [i128]| {
        if flow {
            Values::Decimal(v)
        } else {
            Values::Null
        }
    };
    [
        Values::Text(series.exchange.as_str()),
        Values::Text(series.market.as_str()),
        Values::Text(series.symbol.as_str()),
        Values::Text(series.interval.as_str()),
        Values::Int64(&k.open_time),
        Values::Decimal(&k.open),
        Values::Decimal(&k.high),
        Values::Decimal(&k.low),
        Values::Decimal(&k.close),
        Values::Decimal(&k.volume),
        Values::Int64(&k.close_time),
        flow_decimals(&k.quote_volume),
        if flow {
            Values::Int64(&k.trades)
        } else {
            Values::Null
        },
        flow_decimals(&k.taker_buy_base_volume),
        flow_decimals(&k.taker_buy_quote_volume),
    ]
}

/// What a staged file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub series: Option<Series>,
    pub klines: KlineBatch,
}

/// Reads a staged file back, checking its schema. `name` is used in error messages.
pub fn decode(name: &str, bytes: Bytes) -> anyhow::Result<Decoded> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .with_context(|| format!("{name}: not a readable Parquet file"))?;
    check_schema(name, builder.schema())?;
    let reader = builder
        .build()
        .with_context(|| format!("{name}: cannot read"))?;
    let mut out = KlineBatch::default();
    let mut series = None;
    for batch in reader {
        let batch = batch.with_context(|| format!("{name}: cannot read"))?;
        append(name, &batch, &mut out, &mut series)?;
    }
    if !out.is_sorted_unique() {
        bail!("{name}: open_time is not strictly increasing");
    }
    Ok(Decoded {
        series,
        klines: out,
    })
}

/// Checks that `schema` is the staged schema (same names, types and order), or the one
/// before the exchange column was added.
pub fn check_schema(name: &str, schema: &Schema) -> anyhow::Result<()> {
    let current = self::schema();
    let legacy = schema
        .fields()
        .first()
        .is_some_and(|f| f.name() == "market");
    let expected: Vec<_> = current.fields().iter().skip(usize::from(legacy)).collect();
    for (i, f) in expected.iter().enumerate() {
        match schema.fields().get(i) {
            Some(g) if g.name() == f.name() && g.data_type() == f.data_type() => {}
            Some(g) => bail!(
                "{name}: column {} is {} {}, expected {} {}",
                i + 1,
                g.name(),
                g.data_type(),
                f.name(),
                f.data_type()
            ),
            None => bail!("{name}: column {} ({}) is missing", i + 1, f.name()),
        }
    }
    if schema.fields().len() != expected.len() {
        bail!(
            "{name}: {} columns, expected {}",
            schema.fields().len(),
            expected.len()
        );
    }
    Ok(())
}

fn column<'a, T: 'static>(name: &str, batch: &'a RecordBatch, col: &str) -> anyhow::Result<&'a T> {
    let array = batch
        .column_by_name(col)
        .with_context(|| format!("{name}: no column {col}"))?;
    // A flow column is all NULL (an exchange without it: read as zeros, written back as
    // NULL) or has no NULL at all.
    if array.null_count() > 0
        && !(KLINES.nullable().contains(&col) && array.null_count() == array.len())
    {
        bail!("{name}: column {col} has nulls");
    }
    array
        .as_any()
        .downcast_ref::<T>()
        .with_context(|| format!("{name}: column {col} has the wrong type"))
}

fn append(
    name: &str,
    b: &RecordBatch,
    out: &mut KlineBatch,
    series: &mut Option<Series>,
) -> anyhow::Result<()> {
    let text = |col: &str| -> anyhow::Result<Option<String>> {
        let a = column::<StringArray>(name, b, col)?;
        if a.is_empty() {
            return Ok(None);
        }
        let first = a.value(0);
        if a.iter().any(|v| v != Some(first)) {
            bail!("{name}: column {col} holds more than one value");
        }
        Ok(Some(first.to_string()))
    };
    if let (Some(m), Some(s), Some(i)) = (text("market")?, text("symbol")?, text("interval")?) {
        let exchange = match b.column_by_name("exchange") {
            None => crate::market::Exchange::BINANCE,
            Some(_) => text("exchange")?
                .unwrap_or_default()
                .parse()
                .map_err(|e: String| anyhow::anyhow!("{name}: {e}"))?,
        };
        let found = Series {
            exchange,
            market: m.parse().with_context(|| format!("{name}: market"))?,
            symbol: s.parse().with_context(|| format!("{name}: symbol"))?,
            interval: i.parse().with_context(|| format!("{name}: interval"))?,
        };
        if series.as_ref().is_some_and(|s| s != &found) {
            bail!("{name}: more than one series in one file");
        }
        *series = Some(found);
    }
    let ts =
        |col: &str| column::<TimestampMillisecondArray>(name, b, col).map(|a| a.values().to_vec());
    // All-NULL flow columns are zeros in memory (the series' exchange says they are absent).
    let dec = |col: &str| {
        column::<Decimal128Array>(name, b, col).map(|a| {
            if a.null_count() > 0 {
                vec![0; a.len()]
            } else {
                a.values().to_vec()
            }
        })
    };
    out.open_time.extend(ts("open_time")?);
    out.open.extend(dec("open")?);
    out.high.extend(dec("high")?);
    out.low.extend(dec("low")?);
    out.close.extend(dec("close")?);
    out.volume.extend(dec("volume")?);
    out.close_time.extend(ts("close_time")?);
    out.quote_volume.extend(dec("quote_volume")?);
    let trades = column::<Int64Array>(name, b, "trades")?;
    if trades.null_count() > 0 {
        out.trades.extend(std::iter::repeat_n(0, trades.len()));
    } else {
        out.trades.extend(trades.values().iter().copied());
    }
    out.taker_buy_base_volume
        .extend(dec("taker_buy_base_volume")?);
    out.taker_buy_quote_volume
        .extend(dec("taker_buy_quote_volume")?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::klines::Kline;
    use crate::market::{Interval, Market, Symbol};

    fn sample(n: i64) -> KlineBatch {
        let mut b = KlineBatch::default();
        for i in 0..n {
            b.push(&Kline {
                open_time: 1_700_000_000_000 + i * 60_000,
                open: 4_200_001_000_000 + i as i128,
                high: 4_300_000_000_000,
                low: 4_100_000_000_000,
                close: 4_200_000_000_001,
                volume: 123_456_789_012_345_678_901_234,
                close_time: 1_700_000_000_000 + i * 60_000 + 59_999,
                quote_volume: 1,
                trades: i,
                taker_buy_base_volume: 0,
                taker_buy_quote_volume: 99_999_999,
            });
        }
        b
    }

    fn series() -> Series {
        Series {
            exchange: crate::market::Exchange::BINANCE,
            market: Market::Spot,
            symbol: Symbol::parse("ETHUSDT").unwrap(),
            interval: Interval::M1,
        }
    }

    #[test]
    fn round_trips_exactly_and_deterministically() {
        let k = sample(1440);
        let a = encode(&series(), k.clone()).unwrap();
        let b = encode(&series(), k.clone()).unwrap();
        assert_eq!(a, b, "same rows must give the same bytes");
        let d = decode("x.parquet", a).unwrap();
        assert_eq!(d.klines, k);
        assert_eq!(d.series, Some(series()));
    }

    #[test]
    fn writes_zstd_with_statistics() {
        let bytes = encode(&series(), sample(100)).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(bytes).unwrap();
        use parquet::file::reader::FileReader;
        let rg = reader.metadata().row_group(0);
        for c in rg.columns() {
            let constant = ["exchange", "market", "symbol", "interval"]
                .contains(&c.column_path().string().as_str());
            assert_eq!(
                matches!(c.compression(), Compression::ZSTD(_)),
                !constant,
                "{:?}",
                c.column_path()
            );
            assert!(
                c.statistics().is_some(),
                "{:?} has no statistics",
                c.column_path()
            );
        }
        // Readers prune files by the time range in the chunk statistics.
        let open_time = rg.column(4).statistics();
        match open_time {
            Some(parquet::file::statistics::Statistics::Int64(s)) => {
                assert_eq!(s.min_opt(), Some(&1_700_000_000_000));
                assert_eq!(s.max_opt(), Some(&(1_700_000_000_000 + 99 * 60_000)));
            }
            other => panic!("open_time statistics: {other:?}"),
        }
    }

    /// An exchange without flow fields stages them as NULL, and reads them back.
    #[test]
    fn flow_columns_are_null_for_an_exchange_without_them() {
        let mut k = sample(5);
        k.quote_volume.iter_mut().for_each(|v| *v = 0);
        k.trades.iter_mut().for_each(|v| *v = 0);
        k.taker_buy_base_volume.iter_mut().for_each(|v| *v = 0);
        k.taker_buy_quote_volume.iter_mut().for_each(|v| *v = 0);
        let s = Series {
            exchange: crate::market::Exchange::COINBASE,
            symbol: Symbol::parse("BTC-USD").unwrap(),
            ..series()
        };
        let bytes = encode(&s, k.clone()).unwrap();
        let d = decode("cb.parquet", bytes.clone()).unwrap();
        assert_eq!(d.series, Some(s));
        assert_eq!(d.klines, k);
        let batch = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        for c in KLINES.nullable() {
            assert_eq!(batch.column_by_name(c).unwrap().null_count(), 5, "{c}");
        }
        assert_eq!(batch.column_by_name("volume").unwrap().null_count(), 0);
    }

    /// Files staged before the exchange column existed are read, as Binance's.
    #[test]
    fn files_without_the_exchange_column_are_binances() {
        let k = sample(10);
        let full = to_record_batch(&series(), &k).unwrap();
        let legacy = full
            .project(&(1..full.num_columns()).collect::<Vec<_>>())
            .unwrap();
        let mut w = ArrowWriter::try_new(Vec::new(), legacy.schema(), None).unwrap();
        w.write(&legacy).unwrap();
        let bytes = Bytes::from(w.into_inner().unwrap());
        let d = decode("old.parquet", bytes).unwrap();
        assert_eq!(d.klines, k);
        assert_eq!(d.series, Some(series()));
    }

    #[test]
    fn rejects_what_is_not_a_staged_file() {
        let err = decode("bad.parquet", Bytes::from_static(b"PAR1 not really")).unwrap_err();
        assert!(err.to_string().starts_with("bad.parquet: "), "{err}");
    }
}
