//! One zstd compression context per thread, reused for every page the thread compresses.
//!
//! parquet-rs creates a compressor (and a decompressor) for every column chunk it writes;
//! for a day file of 15 small columns, setting up those contexts and clearing their tables
//! cost about a tenth of the encoding. Output is the same: zstd's bytes depend on the level
//! and the input, not on the context's history (`ZSTD_compress2` starts a new frame).

use std::cell::RefCell;

use parquet::basic::ZstdLevel;
use parquet::errors::{ParquetError, Result};

/// The level of the staged files' zstd pages (see `writer_properties`).
const LEVEL: i32 = 1;

/// [`LEVEL`] as the writer properties name it.
pub(super) fn level() -> ZstdLevel {
    ZstdLevel::try_new(LEVEL).unwrap_or_default()
}

pub(super) struct Zstd(zstd::bulk::Compressor<'static>);

impl Zstd {
    /// Compresses `input` as one zstd frame, as parquet-rs's codec does.
    pub fn compress(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(input.len()));
        self.0
            .compress_to_buffer(input, &mut out)
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(out)
    }
}

thread_local! {
    static CONTEXT: RefCell<Option<Zstd>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's context, creating it on first use.
pub(super) fn with<T>(f: impl FnOnce(&mut Zstd) -> Result<T>) -> Result<T> {
    CONTEXT.with(|cell| {
        let mut slot = cell.borrow_mut();
        let zstd = match slot.as_mut() {
            Some(z) => z,
            None => slot.insert(Zstd(
                zstd::bulk::Compressor::new(LEVEL)
                    .map_err(|e| ParquetError::External(Box::new(e)))?,
            )),
        };
        f(zstd)
    })
}
