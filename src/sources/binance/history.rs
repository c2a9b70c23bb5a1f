//! Binance's history: its bulk archives (data.binance.vision) for whole closed months and
//! days, REST for the rest (`--source auto`, the default), the archives only (`archive`).
//!
//! 1. `plan` cuts a series' missing ranges into spans: a month's file where most of a closed
//!    month is missing, else a day's file for a closed day, else REST pages up to the next
//!    day boundary. Days that have not ended on the exchange's clock always come from REST.
//! 2. `fetch` downloads an archive span (checksum first, then the zip, verified before it is
//!    parsed); a month the archive lacks is tried day by day, and a day it lacks comes from
//!    REST (`auto`) or is left missing for a later run (`archive`). Minutes a file lacks are
//!    not confirmed empty on the archive's word alone: `auto` asks REST for them (one request
//!    per page of gaps), `archive` leaves them out of the checkpoint for a later run. An
//!    archive that cannot be reached (decided once per run) means REST for its spans (`auto`).
//! 3. `republished` compares the checksums recorded in the checkpoint with the ones published
//!    now; a re-published file's range is staged again (and the loader's newest-wins rule
//!    replaces the rows).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

use super::archive::client::ArchiveClient;
use crate::datasets::klines::KlineBatch;
use crate::market::interval::DAY;
use crate::market::{Period, Series};
use crate::ranges::RangeSet;
use crate::sources::ExchangeError;
use crate::sources::history::{
    ArchiveFile, Fetched, History, HistorySource, HistoryStats, RestHistory, Span,
};

/// Archives, then REST (`auto`), or archives alone (`archive`).
pub struct ArchiveHistory {
    pub rest: RestHistory,
    pub archive: Arc<ArchiveClient>,
    pub source: HistorySource,
    /// Downloads in flight per series.
    pub in_flight: usize,
}

#[async_trait]
impl History for ArchiveHistory {
    fn plan(&self, series: &Series, ranges: &[(i64, i64)], now: i64) -> Vec<Span> {
        let archive_until = ArchiveClient::serves(series.interval).then(|| archive_until(now));
        let page = self.rest.rest.capabilities().page_limit as i64;
        let mut spans = plan(ranges, series.interval, page, archive_until);
        if self.source == HistorySource::Archive {
            // Archives only: the rest (today, a part of a day) is left for a later run.
            spans.retain(|s| s.file.is_some());
        }
        spans
    }

    async fn fetch(&self, series: &Series, span: Span) -> anyhow::Result<Fetched> {
        if span.file.is_some() {
            return self.fetch_file(series, span).await;
        }
        self.rest.fetch(series, span).await
    }

    async fn republished(
        &self,
        series: &Series,
        recorded: &BTreeMap<String, ArchiveFile>,
        start: i64,
        end: i64,
    ) -> anyhow::Result<Vec<String>> {
        let archive = &self.archive;
        let in_flight = self.in_flight;
        let files: Vec<(String, ArchiveFile)> = recorded
            .iter()
            .filter(|(_, f)| f.end > start && f.start < end)
            .map(|(n, f)| (n.clone(), f.clone()))
            .collect();
        let periods: Vec<Period> = files
            .iter()
            .map(|(_, f)| {
                if f.monthly {
                    Period::month_of(f.start)
                } else {
                    Period::day_of(f.start)
                }
            })
            .collect();
        let published: Vec<Option<String>> = futures::stream::iter(
            periods
                .into_iter()
                .map(|p| archive.checksum(&series.symbol, series.interval, p)),
        )
        .buffered(in_flight.max(1))
        .try_collect()
        .await
        .or_else(|e| match e {
            // Unreachable: nothing can be rechecked this run (the next one will).
            ExchangeError::Exhausted { .. } | ExchangeError::ArchiveUnreachable { .. } => {
                archive.give_up(&e);
                Ok(Vec::new())
            }
            e => Err(e),
        })?;
        let mut changed = Vec::new();
        for ((name, f), now) in files.into_iter().zip(published) {
            match now {
                Some(sum) if sum != f.sha256 => {
                    tracing::warn!(series = %series, file = %name, was = %f.sha256, now = %sum, "the archive re-published the file; staging it again");
                    changed.push(name);
                }
                _ => {}
            }
        }
        Ok(changed)
    }

    fn stats(&self) -> HistoryStats {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.archive.stats();
        HistoryStats {
            files: s.files.load(Relaxed),
            bytes: s.bytes.load(Relaxed),
            missing: s.missing.load(Relaxed),
            unreachable: self.archive.is_unreachable(),
        }
    }
}

impl ArchiveHistory {
    /// Fetches an archive span, falling back to days and then to REST (or leaving it lacking).
    async fn fetch_file(&self, series: &Series, span: Span) -> anyhow::Result<Fetched> {
        let archive = &self.archive;
        let Some(period) = span.file else {
            anyhow::bail!("not an archive span");
        };
        let mut out = Fetched::default();
        let got = match archive.fetch(&series.symbol, series.interval, period).await {
            Err(
                e @ (ExchangeError::Exhausted { .. } | ExchangeError::ArchiveUnreachable { .. }),
            ) if self.source == HistorySource::Auto => {
                // Logged once for the run; the span comes from REST.
                archive.give_up(&e);
                self.rest
                    .fetch_into(series, span.start, span.end, &mut out.rows)
                    .await?;
                return Ok(out);
            }
            other => other?,
        };
        if let Some(a) = got {
            let r = a.klines.range_of(span.start, span.end);
            out.rows.extend_from(&a.klines, r);
            self.confirm_gaps(series, span, &mut out).await?;
            out.files.push((
                a.file,
                ArchiveFile {
                    sha256: a.sha256,
                    monthly: matches!(period, Period::Month { .. }),
                    start: span.start,
                    end: span.end,
                },
            ));
            return Ok(out);
        }
        match period {
            Period::Month { .. } => {
                tracing::info!(series = %series, month = %crate::time::format_ms(span.start), "the archive has no file for the month; trying its days");
                let mut days = Vec::new();
                let mut t = span.start;
                while t < span.end {
                    let day = Period::day_of(t);
                    let end = day.range().1.min(span.end);
                    days.push(Span {
                        start: t,
                        end,
                        file: Some(day),
                    });
                    t = end;
                }
                let parts: Vec<Fetched> = futures::stream::iter(
                    days.into_iter()
                        .map(|d| Box::pin(self.fetch_file(series, d))),
                )
                .buffered(self.in_flight.max(1))
                .try_collect()
                .await?;
                for p in parts {
                    let n = p.rows.len();
                    out.rows.extend_from(&p.rows, 0..n);
                    out.lacking.union(&p.lacking);
                    out.files.extend(p.files);
                }
            }
            Period::Day { .. } if self.source == HistorySource::Auto => {
                tracing::info!(series = %series, day = %crate::time::format_ms(span.start), "the archive has no file for the day; taking it from REST");
                self.rest
                    .fetch_into(series, span.start, span.end, &mut out.rows)
                    .await?;
            }
            Period::Day { .. } => {
                tracing::warn!(series = %series, day = %crate::time::format_ms(span.start), "the archive has no file for the day; left for a later run (--source archive)");
                out.lacking.insert(span.start, span.end);
            }
        }
        Ok(out)
    }

    /// Minutes an archive file lacks are not confirmed empty on its word: with `auto` they are
    /// asked of REST (whose answer confirms them, or brings what the file lost), gaps one page
    /// apart in one request; with `archive` they are left lacking, for a later run.
    async fn confirm_gaps(
        &self,
        series: &Series,
        span: Span,
        out: &mut Fetched,
    ) -> anyhow::Result<()> {
        let gaps = gaps(&out.rows, series.interval, span.start, span.end);
        if gaps.ranges().is_empty() {
            return Ok(());
        }
        if self.source != HistorySource::Auto {
            out.lacking.union(&gaps);
            return Ok(());
        }
        // One request per page of gaps: a gap longer than a page takes several, gaps within one
        // page's reach share one.
        let interval = series.interval;
        let page = self.rest.rest.capabilities().page_limit as i64;
        let mut requests: Vec<(i64, i64)> = Vec::new();
        for &(gs, ge) in gaps.ranges() {
            let mut t = gs;
            while t < ge {
                let start = match requests.last() {
                    Some(&(rs, _)) if interval.advance(rs, page) > t => rs,
                    _ => t,
                };
                let e = ge.min(interval.advance(start, page));
                if start == t {
                    requests.push((t, e));
                } else if let Some(last) = requests.last_mut() {
                    last.1 = e;
                }
                t = e;
            }
        }
        let mut fetched = KlineBatch::default();
        for &(s, e) in &requests {
            let mut page_rows = KlineBatch::default();
            self.rest
                .rest
                .klines(&series.symbol, interval, s, e, &mut page_rows)
                .await?;
            // Only what the file lacks: the rows it has stay the archive's.
            for i in 0..page_rows.len() {
                let t = page_rows.open_time[i];
                if gaps.covers(t, t + 1) {
                    fetched.push(&page_rows.get(i));
                }
            }
        }
        tracing::debug!(series = %series, gaps = gaps.ranges().len(), requests = requests.len(), recovered = fetched.len(), "archive gaps asked of REST");
        if !fetched.is_empty() {
            tracing::warn!(series = %series, candles = fetched.len(), "REST has candles the archive file lacks; staging them");
            out.rows = KlineBatch::merge(&[&out.rows, &fetched]);
        }
        Ok(())
    }
}

/// The spans for the missing `ranges` of a series (each already clamped to the listing):
/// archive files only for periods that end by `archive_until`, REST pages of `page` candles.
pub fn plan(
    ranges: &[(i64, i64)],
    interval: crate::market::Interval,
    page: i64,
    archive_until: Option<i64>,
) -> Vec<Span> {
    let mut out = Vec::new();
    for &(s, e) in ranges {
        let mut t = s;
        while t < e {
            if let Some(until) = archive_until {
                // A file is worth downloading when most of its period is missing.
                let pick = |p: Period| {
                    let (ps, pe) = p.range();
                    (pe <= e && pe <= until && 2 * (pe - t) >= pe - ps).then_some(pe)
                };
                let found = [Period::month_of(t), Period::day_of(t)]
                    .into_iter()
                    .find_map(|p| pick(p).map(|end| (p, end)));
                if let Some((p, end)) = found {
                    out.push(Span {
                        start: t,
                        end,
                        file: Some(p),
                    });
                    t = end;
                    continue;
                }
            }
            let mut end = e.min(interval.advance(t, page));
            if archive_until.is_some_and(|u| t < u) {
                // Stop at the day's end, so the next day can be a file.
                end = end.min(Period::day_of(t).range().1);
            }
            out.push(Span {
                start: t,
                end,
                file: None,
            });
            t = end;
        }
    }
    out
}

/// The first open time whose day the archive cannot hold yet: today on the exchange's clock.
pub fn archive_until(server_time: i64) -> i64 {
    server_time.div_euclid(DAY) * DAY
}

/// The candles a file's rows lack in `[start, end)`: open-time ranges.
pub fn gaps(
    rows: &KlineBatch,
    interval: crate::market::Interval,
    start: i64,
    end: i64,
) -> RangeSet {
    let mut gaps = RangeSet::new();
    let mut cursor = start;
    for &t in &rows.open_time {
        if t > cursor {
            gaps.insert(cursor, t.min(end));
        }
        cursor = cursor.max(interval.next(t));
    }
    if cursor < end {
        gaps.insert(cursor, end);
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Interval;
    use crate::market::interval::MINUTE;

    const JAN: i64 = 1_704_067_200_000; // 2024-01-01
    const FEB: i64 = 1_706_745_600_000; // 2024-02-01

    #[test]
    fn months_then_days_then_rest_pages() {
        // 2024-01-01 .. 2024-02-03 12:00, with today 2024-02-03 on the exchange's clock.
        let end = FEB + 2 * DAY + 12 * 60 * MINUTE;
        let spans = plan(&[(JAN, end)], Interval::M1, 1000, Some(FEB + 2 * DAY));
        let files: Vec<_> = spans.iter().filter(|s| s.file.is_some()).collect();
        assert_eq!(files.len(), 3);
        assert_eq!(
            files[0].file,
            Some(Period::Month {
                year: 2024,
                month: 1
            })
        );
        assert_eq!((files[0].start, files[0].end), (JAN, FEB));
        assert_eq!(
            files[1].file,
            Some(Period::Day {
                year: 2024,
                month: 2,
                day: 1
            })
        );
        assert_eq!(
            files[2].file,
            Some(Period::Day {
                year: 2024,
                month: 2,
                day: 2
            })
        );
        let rest: Vec<_> = spans
            .iter()
            .filter(|s| s.file.is_none())
            .map(|s| (s.start, s.end))
            .collect();
        assert_eq!(rest, vec![(FEB + 2 * DAY, FEB + 2 * DAY + 720 * MINUTE)]);
        // Contiguous and complete.
        for w in spans.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        // REST only: pages of 1000 from the start.
        let rest = plan(&[(JAN, JAN + 2500 * MINUTE)], Interval::M1, 1000, None);
        assert_eq!(
            rest.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>(),
            vec![
                (JAN, JAN + 1000 * MINUTE),
                (JAN + 1000 * MINUTE, JAN + 2000 * MINUTE),
                (JAN + 2000 * MINUTE, JAN + 2500 * MINUTE)
            ]
        );
    }

    #[test]
    fn a_part_of_a_day_comes_from_rest_up_to_the_day_end() {
        let start = JAN + 14 * 60 * MINUTE; // 14:00, then the next whole day from a file
        let spans = plan(&[(start, JAN + 2 * DAY)], Interval::M1, 1000, Some(FEB));
        assert_eq!(
            spans,
            vec![
                Span {
                    start,
                    end: JAN + DAY,
                    file: None
                },
                Span {
                    start: JAN + DAY,
                    end: JAN + 2 * DAY,
                    file: Some(Period::Day {
                        year: 2024,
                        month: 1,
                        day: 2
                    })
                },
            ]
        );
        // Most of a month missing: the month's file, used from `start`.
        let start = JAN + 3 * DAY;
        let spans = plan(&[(start, FEB)], Interval::M1, 1000, Some(FEB));
        assert_eq!(
            spans,
            vec![Span {
                start,
                end: FEB,
                file: Some(Period::Month {
                    year: 2024,
                    month: 1
                })
            }]
        );
    }
}
