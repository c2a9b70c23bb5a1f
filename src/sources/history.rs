//! History: how a source fills a series' missing open-time ranges. A history plans them into
//! spans (one request's page, or the range of one archive file) and fetches each span;
//! [`RestHistory`] pages an exchange's REST API, and an exchange with bulk archives composes
//! "archives, then REST" (`binance::history`). The backfill engine (`extract::series`) sees
//! only this trait.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::KlineSource;
use crate::datasets::klines::KlineBatch;
use crate::market::{Period, Series};
use crate::ranges::RangeSet;

/// `--source`: where history comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HistorySource {
    /// Archives for closed months and days, REST for the recent tail and what they lack.
    #[default]
    Auto,
    /// Archives only: what they lack is left for a later run.
    Archive,
    /// REST only.
    Rest,
}

/// One unit of fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: i64,
    /// The archive file holding the span, or `None` for one REST page.
    pub file: Option<Period>,
}

/// An archive file whose klines are staged: its checksum and the open times taken from it
/// (kept in the checkpoint, so a re-published file is noticed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveFile {
    pub sha256: String,
    pub monthly: bool,
    pub start: i64,
    pub end: i64,
}

/// What one span brought.
#[derive(Debug, Default)]
pub struct Fetched {
    pub rows: KlineBatch,
    /// Parts of the span nobody could provide (`--source archive`): neither covered nor empty.
    pub lacking: RangeSet,
    /// Archive files the rows came from.
    pub files: Vec<(String, ArchiveFile)>,
}

/// A history's downloads beyond REST, for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Archive files downloaded and their bytes; periods the archive did not hold.
    pub files: u64,
    pub bytes: u64,
    pub missing: u64,
    /// The archive could not be reached (or failed every attempt): the run did without it.
    pub unreachable: bool,
}

#[async_trait]
pub trait History: Send + Sync {
    /// Cuts the missing `ranges` of a series (each already after its first candle) into the
    /// spans to fetch, in order; `now` is the exchange's clock.
    fn plan(&self, series: &Series, ranges: &[(i64, i64)], now: i64) -> Vec<Span>;

    /// The candles of one span (the caller keeps only the closed ones).
    async fn fetch(&self, series: &Series, span: Span) -> anyhow::Result<Fetched>;

    /// Of `files` (the archive files a checkpoint recorded), the names of those in `[start,
    /// end)` published again with other bytes since: their ranges are to be staged again.
    async fn republished(
        &self,
        series: &Series,
        files: &BTreeMap<String, ArchiveFile>,
        start: i64,
        end: i64,
    ) -> anyhow::Result<Vec<String>> {
        let _ = (series, files, start, end);
        Ok(Vec::new())
    }

    fn stats(&self) -> HistoryStats {
        HistoryStats::default()
    }
}

/// History from an exchange's REST API alone: pages of its page size.
pub struct RestHistory {
    pub rest: Arc<dyn KlineSource>,
}

impl RestHistory {
    pub fn new(rest: Arc<dyn KlineSource>) -> RestHistory {
        RestHistory { rest }
    }

    /// `[start, end)` in spans of one page each.
    pub fn pages(&self, series: &Series, start: i64, end: i64) -> Vec<Span> {
        let page = self.rest.capabilities().page_limit as i64;
        let mut out = Vec::new();
        let mut t = start;
        while t < end {
            let e = end.min(series.interval.advance(t, page));
            out.push(Span {
                start: t,
                end: e,
                file: None,
            });
            t = e;
        }
        out
    }

    /// The candles of `[start, end)`, a page a request, appended to `out`.
    pub async fn fetch_into(
        &self,
        series: &Series,
        start: i64,
        end: i64,
        out: &mut KlineBatch,
    ) -> anyhow::Result<()> {
        for span in self.pages(series, start, end) {
            self.rest
                .klines(&series.symbol, series.interval, span.start, span.end, out)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl History for RestHistory {
    fn plan(&self, series: &Series, ranges: &[(i64, i64)], _now: i64) -> Vec<Span> {
        ranges
            .iter()
            .flat_map(|&(s, e)| self.pages(series, s, e))
            .collect()
    }

    async fn fetch(&self, series: &Series, span: Span) -> anyhow::Result<Fetched> {
        let mut rows = KlineBatch::default();
        self.rest
            .klines(
                &series.symbol,
                series.interval,
                span.start,
                span.end,
                &mut rows,
            )
            .await?;
        Ok(Fetched {
            rows,
            ..Fetched::default()
        })
    }
}
