//! A Parquet writer for the staged schemas: the bytes `ArrowWriter` writes, at a fraction of
//! its cost.
//!
//! `ArrowWriter` is general: it builds an array per constant column, a `FixedLenByteArray` per
//! decimal, hashes each price as bytes into its dictionary, compares decimals byte by byte for
//! the statistics and creates two zstd contexts per column chunk. This writer encodes flat
//! columns of a few shapes straight from their vectors: dictionaries and statistics work on
//! `i128`s and one zstd context per thread is reused. What is not values (page headers, the
//! row group, the footer, the Arrow schema in it) goes through parquet-rs's own
//! `SerializedPageWriter` and `SerializedFileWriter` with the same properties, and
//! `tests::same_bytes_as_arrow_writer` holds the two writers to the same bytes.
//!
//! It covers one data page per column: fewer rows than the page row limit, pages and
//! dictionaries under their byte limits. For anything else (no rows, a 1s day), `write`
//! answers `None` and the caller uses `ArrowWriter`.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use arrow::datatypes::Schema;
use bytes::Bytes;
use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::{Compression, Encoding, Type};
use parquet::data_type::{ByteArray, FixedLenByteArray};
use parquet::encodings::levels::LevelEncoder;
use parquet::encodings::rle::RleEncoder;
use parquet::file::metadata::LevelHistogram;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnDescPtr;
use rustc_hash::FxHasher;

use super::chunk::{self, Chunk};
use super::codec;

/// One column's values, all `rows` of them.
pub(crate) enum Values<'a> {
    /// The same text in every row (a series' exchange, market, symbol, interval).
    Text(&'a str),
    Int64(&'a [i64]),
    /// Decimal(38, s) as its unscaled value.
    Decimal(&'a [i128]),
    /// NULL in every row of a nullable column.
    Null,
}

/// How a column is written, from the writer properties.
struct Plan {
    descr: ColumnDescPtr,
    compression: Compression,
    dictionary: bool,
    nullable: bool,
}

/// Writes `columns` (in `schema`'s order, `rows` values each) as one row group, byte for
/// byte as `ArrowWriter` with `props` would; `None` for a shape this writer does not cover.
pub(crate) fn write(
    schema: &Schema,
    mut props: WriterProperties,
    rows: usize,
    columns: &[Values],
) -> parquet::errors::Result<Option<Bytes>> {
    let descriptors = ArrowSchemaConverter::new()
        .with_coerce_types(props.coerce_types())
        .convert(schema)?;
    let Some(plans) = plan(descriptors.columns(), &props, rows, columns) else {
        return Ok(None);
    };
    let encoded = codec::with(|zstd| {
        let mut chunks = Vec::with_capacity(columns.len());
        for (plan, values) in plans.into_iter().zip(columns) {
            let Some(chunk) = encode(&plan, &props, rows, values) else {
                return Ok(None);
            };
            chunks.push(chunk::write(plan.descr, plan.compression, zstd, chunk)?);
        }
        Ok(Some(chunks))
    })?;
    let Some(encoded) = encoded else {
        return Ok(None);
    };
    add_encoded_arrow_schema_to_metadata(schema, &mut props);
    let capacity = encoded.iter().map(|(b, _)| b.len()).sum::<usize>() + 4096;
    let mut file = SerializedFileWriter::new(
        Vec::with_capacity(capacity),
        descriptors.root_schema_ptr(),
        Arc::new(props),
    )?;
    let mut group = file.next_row_group()?;
    for (bytes, close) in encoded {
        group.append_column(&bytes, close)?;
    }
    group.close()?;
    Ok(Some(Bytes::from(file.into_inner()?)))
}

/// Each column's plan, or `None` if the file is not one this writer covers.
fn plan(
    descriptors: &[ColumnDescPtr],
    props: &WriterProperties,
    rows: usize,
    columns: &[Values],
) -> Option<Vec<Plan>> {
    let fits = rows > 0
        && rows < props.data_page_row_count_limit()
        && rows <= props.max_row_group_row_count().unwrap_or(usize::MAX)
        && rows.saturating_mul(16) < props.data_page_size_limit()
        && rows.saturating_mul(16) < props.dictionary_page_size_limit()
        && props.writer_version() == WriterVersion::PARQUET_1_0
        && descriptors.len() == columns.len();
    if !fits {
        return None;
    }
    descriptors
        .iter()
        .map(|descr| {
            let path = descr.path();
            let compression = props.compression(path);
            let supported = matches!(compression, Compression::UNCOMPRESSED)
                || compression == Compression::ZSTD(codec::level());
            let plain_stats = props.statistics_enabled(path) == EnabledStatistics::Chunk
                && props.bloom_filter_properties(path).is_none()
                && descr.max_rep_level() == 0;
            (supported && plain_stats).then(|| Plan {
                descr: Arc::clone(descr),
                compression,
                dictionary: props.dictionary_enabled(path),
                nullable: descr.max_def_level() > 0,
            })
        })
        .collect()
}

/// A column's chunk before compression, or `None` if its shape is not covered.
fn encode(plan: &Plan, props: &WriterProperties, rows: usize, values: &Values) -> Option<Chunk> {
    let physical = plan.descr.physical_type();
    let typed = match values {
        Values::Text(_) => physical == Type::BYTE_ARRAY,
        Values::Int64(v) => physical == Type::INT64 && v.len() == rows,
        Values::Decimal(v) => {
            physical == Type::FIXED_LEN_BYTE_ARRAY
                && plan.descr.type_length() == 16
                && v.len() == rows
        }
        Values::Null => matches!(physical, Type::INT64 | Type::FIXED_LEN_BYTE_ARRAY),
    };
    if !typed {
        return None;
    }
    let mut levels = plan.nullable.then(|| definition_levels(rows, values));
    let mut data = match levels.as_mut() {
        Some((encoded, _)) => std::mem::take(encoded),
        None => Vec::new(),
    };
    let histogram = levels.map(|(_, h)| h);
    let (dictionary, encoding, statistics, unencoded) = match (values, plan.dictionary) {
        (Values::Text(s), true) => {
            if s.len() > props.statistics_truncate_length().unwrap_or(usize::MAX) || plan.nullable {
                return None;
            }
            let mut dict = Vec::with_capacity(4 + s.len());
            dict.extend_from_slice(&(s.len() as u32).to_le_bytes());
            dict.extend_from_slice(s.as_bytes());
            indices(&mut data, 0, &vec![0; rows]);
            let text = ByteArray::from(s.as_bytes().to_vec());
            let stats = ValueStatistics::new(Some(text.clone()), Some(text), None, Some(0), false);
            let unencoded = Some((s.len() * rows) as i64);
            (
                Some((dict, 1)),
                Encoding::RLE_DICTIONARY,
                Statistics::from(stats),
                unencoded,
            )
        }
        (Values::Int64(v), false) => {
            data.reserve(v.len() * 8);
            v.iter()
                .for_each(|x| data.extend_from_slice(&x.to_le_bytes()));
            let stats = int_statistics(v, rows);
            (None, Encoding::PLAIN, stats, None)
        }
        (Values::Decimal(v), dictionary) => {
            let stats = decimal_statistics(v, rows);
            if dictionary {
                let (dict, entries, keys) = decimal_dictionary(v);
                indices(&mut data, bit_width(entries), &keys);
                (Some((dict, entries)), Encoding::RLE_DICTIONARY, stats, None)
            } else {
                data.reserve(v.len() * 16);
                v.iter()
                    .for_each(|x| data.extend_from_slice(&x.to_be_bytes()));
                (None, Encoding::PLAIN, stats, None)
            }
        }
        (Values::Null, false) if plan.nullable => {
            let stats = match physical {
                Type::INT64 => int_statistics(&[], rows),
                _ => decimal_statistics(&[], rows),
            };
            (None, Encoding::PLAIN, stats, None)
        }
        _ => return None,
    };
    let dictionary_fits = dictionary
        .as_ref()
        .is_none_or(|(d, _)| d.len() < props.dictionary_page_size_limit());
    dictionary_fits.then_some(Chunk {
        dictionary,
        data,
        encoding,
        rows,
        statistics,
        unencoded_bytes: unencoded,
        definition_levels: histogram,
    })
}

/// A nullable column's definition levels as a V1 page holds them (length, then RLE), and
/// their histogram: every row NULL (`Values::Null`) or none.
fn definition_levels(rows: usize, values: &Values) -> (Vec<u8>, LevelHistogram) {
    let level = i16::from(!matches!(values, Values::Null));
    let mut histogram = LevelHistogram::try_new(1).unwrap_or_default();
    let mut encoder = LevelEncoder::v1_streaming(1);
    encoder.put_n_with_observer(level, rows, |l, n| histogram.increment_by(l, n as i64));
    (encoder.consume(), histogram)
}

/// Dictionary keys as RLE_DICTIONARY writes them: the bit width, then the RLE/bit-packed runs.
fn indices(out: &mut Vec<u8>, width: u8, keys: &[u64]) {
    let mut buffer = std::mem::take(out);
    buffer.push(width);
    let mut encoder = RleEncoder::new_from_buf(width, buffer);
    encoder.put_batch(keys);
    *out = encoder.consume();
}

fn bit_width(entries: usize) -> u8 {
    (u64::BITS - (entries.saturating_sub(1) as u64).leading_zeros()) as u8
}

/// The distinct values in order of first appearance, PLAIN-encoded (16 bytes big-endian
/// each), their number, and each row's key.
fn decimal_dictionary(values: &[i128]) -> (Vec<u8>, usize, Vec<u64>) {
    let mut seen: HashMap<i128, u64, BuildHasherDefault<FxHasher>> =
        HashMap::with_capacity_and_hasher(values.len().min(4096), Default::default());
    let mut dict = Vec::new();
    let keys = values
        .iter()
        .map(|v| {
            *seen.entry(*v).or_insert_with(|| {
                dict.extend_from_slice(&v.to_be_bytes());
                (dict.len() / 16 - 1) as u64
            })
        })
        .collect();
    let entries = dict.len() / 16;
    (dict, entries, keys)
}

/// Chunk statistics of an INT64 column: min, max (signed) and the nulls.
fn int_statistics(values: &[i64], rows: usize) -> Statistics {
    let (min, max) = (values.iter().min().copied(), values.iter().max().copied());
    let nulls = (rows - values.len()) as u64;
    Statistics::from(
        ValueStatistics::new(min, max, None, Some(nulls), false)
            .with_backwards_compatible_min_max(true),
    )
}

/// Chunk statistics of a decimal column: its min and max as the 16-byte big-endian values
/// parquet-rs compares (as signed numbers), and the nulls.
fn decimal_statistics(values: &[i128], rows: usize) -> Statistics {
    let bytes = |v: i128| FixedLenByteArray::from(v.to_be_bytes().to_vec());
    let (min, max) = (values.iter().min(), values.iter().max());
    let nulls = (rows - values.len()) as u64;
    Statistics::from(
        ValueStatistics::new(
            min.map(|v| bytes(*v)),
            max.map(|v| bytes(*v)),
            None,
            Some(nulls),
            false,
        )
        .with_backwards_compatible_min_max(true),
    )
}
