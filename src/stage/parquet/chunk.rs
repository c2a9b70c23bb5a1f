//! One column chunk of one page (and its dictionary page), laid out as parquet-rs's column
//! writer lays it out, with the metadata that writer reports when it closes.
//!
//! The page headers are written by parquet-rs's own `SerializedPageWriter`, so their
//! encoding is the library's; what this file owns is the order of the pages and the
//! metadata built from them (`GenericColumnWriter::close` in parquet-rs).

use std::collections::BTreeSet;

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, EncodingMask, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{
    ColumnChunkMetaData, LevelHistogram, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use super::codec::Zstd;

/// A column chunk's content before compression.
pub(super) struct Chunk {
    /// The PLAIN-encoded dictionary and its number of entries, for a dictionary column.
    pub dictionary: Option<(Vec<u8>, usize)>,
    /// The data page: definition levels (if the column is nullable), then the values.
    pub data: Vec<u8>,
    /// How the data page's values are encoded (PLAIN or RLE_DICTIONARY).
    pub encoding: Encoding,
    /// Values counted with nulls (the number of rows: the schema is flat).
    pub rows: usize,
    pub statistics: Statistics,
    /// The total length of the values of a BYTE_ARRAY column.
    pub unencoded_bytes: Option<i64>,
    /// Nulls and values, for a nullable column.
    pub definition_levels: Option<LevelHistogram>,
}

/// The chunk's bytes (offsets from 0: `append_column` moves them to where they land) and
/// what the column writer would have reported on closing it.
pub(super) fn write(
    descr: ColumnDescPtr,
    compression: Compression,
    zstd: &mut Zstd,
    chunk: Chunk,
) -> parquet::errors::Result<(Bytes, ColumnCloseResult)> {
    let compressed = compression != Compression::UNCOMPRESSED;
    let mut sink = TrackedWrite::new(Vec::with_capacity(chunk.data.len() / 2 + 256));
    let mut pages = SerializedPageWriter::new(&mut sink);
    let mut encodings = BTreeSet::from([Encoding::RLE]);
    let mut encoding_stats = Vec::with_capacity(2);
    let (mut compressed_size, mut uncompressed_size, mut bytes_written) = (0u64, 0u64, 0u64);
    let mut dictionary_offset = None;

    if let Some((dictionary, entries)) = chunk.dictionary {
        let page = Page::DictionaryPage {
            buf: body(zstd, compressed, dictionary.as_slice())?,
            num_values: entries as u32,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        let spec = pages.write_page(CompressedPage::new(page, dictionary.len()))?;
        encodings.insert(Encoding::PLAIN);
        encoding_stats.push(PageEncodingStats {
            page_type: PageType::DICTIONARY_PAGE,
            encoding: Encoding::PLAIN,
            count: 1,
        });
        dictionary_offset = Some(spec.offset as i64);
        compressed_size += spec.compressed_size as u64;
        uncompressed_size += spec.uncompressed_size as u64;
        bytes_written += spec.bytes_written;
    }

    let page = Page::DataPage {
        buf: body(zstd, compressed, chunk.data.as_slice())?,
        num_values: chunk.rows as u32,
        encoding: chunk.encoding,
        def_level_encoding: Encoding::RLE,
        rep_level_encoding: Encoding::RLE,
        statistics: None,
    };
    let spec = pages.write_page(CompressedPage::new(page, chunk.data.len()))?;
    pages.close()?;
    encodings.insert(chunk.encoding);
    encoding_stats.push(PageEncodingStats {
        page_type: PageType::DATA_PAGE,
        encoding: chunk.encoding,
        count: 1,
    });
    compressed_size += spec.compressed_size as u64;
    uncompressed_size += spec.uncompressed_size as u64;
    bytes_written += spec.bytes_written;

    let mut offsets = OffsetIndexBuilder::new();
    offsets.append_row_count(chunk.rows as i64);
    offsets.append_unencoded_byte_array_data_bytes(chunk.unencoded_bytes);
    offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);

    let metadata = ColumnChunkMetaData::builder(descr)
        .set_compression(compression)
        .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
        .set_page_encoding_stats(encoding_stats)
        .set_total_compressed_size(compressed_size as i64)
        .set_total_uncompressed_size(uncompressed_size as i64)
        .set_num_values(chunk.rows as i64)
        .set_data_page_offset(spec.offset as i64)
        .set_dictionary_page_offset(dictionary_offset)
        .set_statistics(chunk.statistics)
        .set_unencoded_byte_array_data_bytes(chunk.unencoded_bytes)
        .set_definition_level_histogram(chunk.definition_levels)
        .build()?;
    let bytes = Bytes::from(sink.into_inner()?);
    Ok((
        bytes,
        ColumnCloseResult {
            bytes_written,
            rows_written: chunk.rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(offsets.build()),
        },
    ))
}

/// A page's body: compressed with the thread's zstd context, or as it is.
fn body(zstd: &mut Zstd, compressed: bool, raw: &[u8]) -> parquet::errors::Result<Bytes> {
    if !compressed {
        return Ok(Bytes::copy_from_slice(raw));
    }
    Ok(Bytes::from(zstd.compress(raw)?))
}
