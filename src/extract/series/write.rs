//! Fetching the planned spans (a few in flight, consumed in order) and writing each file
//! unit once no later span touches it: its rows to one Parquet file, its manifest entry,
//! then the checkpoint.

use super::*;

/// Checkpoints go to disk at most once a second (and at the end): each is an fsync, and a
/// crash only means redoing that second's files, which are written again byte for byte.
pub(super) struct Saver {
    pub(super) last: std::time::Instant,
    pub(super) dirty: bool,
    /// Live runs: partial files (data key, manifest key) a newer file of their unit replaced,
    /// deleted once a saved checkpoint no longer names them.
    pub(super) superseded: Vec<(String, String)>,
}

impl Saver {
    pub(super) async fn save(
        &mut self,
        ctx: &RunContext,
        cp: &Checkpoint,
        lock: &SeriesLock,
    ) -> anyhow::Result<()> {
        ctx.state.save(cp, lock).await?;
        crate::failpoint::hit("backfill.after_checkpoint");
        self.last = std::time::Instant::now();
        self.dirty = false;
        // The manifest entry first: a loader that lists it next finds the newer file instead.
        for (data, entry) in self.superseded.drain(..) {
            for key in [&entry, &data] {
                ctx.stage
                    .delete(key)
                    .await
                    .with_context(|| format!("cannot delete superseded {key}"))?;
            }
        }
        Ok(())
    }
}

/// A live run's pieces of one open unit before they are merged into one file.
const MAX_PIECES: usize = 60;

const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[allow(clippy::too_many_arguments)]
pub(super) async fn fetch_and_write(
    ctx: &RunContext,
    series: &Series,
    lock: &SeriesLock,
    cp: &mut Checkpoint,
    saver: &mut Saver,
    mut pending: BTreeMap<i64, UnitBuf>,
    spans: Vec<Span>,
    task: &Task,
) -> anyhow::Result<()> {
    let interval = series.interval;
    let span_starts: Vec<i64> = spans.iter().map(|s| s.start).collect();
    let mut fetched = futures::stream::iter(spans.into_iter().map(|span| async move {
        let (s, e) = (span.start, span.end);
        if span.file.is_none()
            && let Some(rows) = ctx
                .prefetched
                .as_ref()
                .and_then(|p| p.take_span(series, s, e))
        {
            return Ok((
                s,
                e,
                Fetched {
                    rows,
                    ..Default::default()
                },
            ));
        }
        ctx.history.fetch(series, span).await.map(|f| (s, e, f))
    }))
    .buffered(ctx.spans_in_flight.max(1));
    // Archive files whose ranges are not yet in the checkpoint.
    let mut files: Vec<(String, ArchiveFile)> = Vec::new();

    let mut index = 0;
    loop {
        // Interrupted: what is staged stays, and the checkpoint records it (see `run`).
        let next = tokio::select! {
            r = fetched.try_next() => r?,
            () = crate::cancel::cancelled() => anyhow::bail!(crate::cancel::Interrupted),
        };
        let Some((s, e, got)) = next else { break };
        index += 1;
        files.extend(got.files);
        let lacking = got.lacking;
        let (cut_at, rows) = closed_only(series, s, e, got.rows, ctx.server_time);
        let cut = cut_at < e;
        let e = cut_at;
        ctx.totals
            .rows
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        route(interval, &mut pending, s, e, &rows, &lacking);
        task.advance((e - s) as u64, &layout_time(e));
        let next = if cut {
            e
        } else {
            span_starts.get(index).copied().unwrap_or(i64::MAX)
        };
        while let Some(entry) = pending.first_entry() {
            if entry.get().end > next {
                break;
            }
            let (unit_start, unit) = entry.remove_entry();
            write_unit(ctx, series, lock, cp, saver, unit_start, unit).await?;
            record_files(cp, &mut files);
        }
        if cut {
            break;
        }
    }
    drop(fetched);
    while let Some((unit_start, unit)) = pending.pop_first() {
        write_unit(ctx, series, lock, cp, saver, unit_start, unit).await?;
    }
    record_files(cp, &mut files);
    Ok(())
}

/// Moves the archive files whose whole range the checkpoint now covers into it.
fn record_files(cp: &mut Checkpoint, files: &mut Vec<(String, ArchiveFile)>) {
    files.retain(|(name, f)| {
        if cp.covered.covers(f.start, f.end) {
            cp.archives.insert(name.clone(), f.clone());
            false
        } else {
            true
        }
    });
}

fn layout_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// Keeps the rows of a span that are closed at `server_time`. Binance has no "closed" flag:
/// a candle is closed when its close time is before the server's clock. If a row is still
/// open, the span's coverage stops at its open time.
fn closed_only(
    series: &Series,
    s: i64,
    e: i64,
    mut rows: KlineBatch,
    server_time: i64,
) -> (i64, KlineBatch) {
    match rows.close_time.iter().position(|&c| c >= server_time) {
        None => (e, rows),
        Some(i) => {
            let open = rows.open_time[i];
            tracing::warn!(series = %series, open_time = open, "the exchange returned an unclosed candle; not staging it");
            rows.truncate(i);
            (open.max(s), rows)
        }
    }
}

/// Files the rows of span `[s, e)` under their units, and notes the gaps in the span as
/// confirmed empty, except where the span's source had nothing to say (`lacking`).
pub(super) fn route(
    interval: Interval,
    pending: &mut BTreeMap<i64, UnitBuf>,
    s: i64,
    e: i64,
    rows: &KlineBatch,
    lacking: &RangeSet,
) {
    let mut empty = RangeSet::new();
    let mut cursor = s;
    for &t in &rows.open_time {
        if t > cursor {
            empty.insert(cursor, t);
        }
        cursor = interval.next(t);
    }
    if cursor < e {
        empty.insert(cursor, e);
    }
    for &(ls, le) in lacking.ranges() {
        empty.remove(ls, le);
    }
    let mut t = s;
    while t < e {
        let (us, ue) = layout::unit_of(interval, t);
        let part_end = e.min(ue);
        if let Some(unit) = pending.get_mut(&us) {
            let r = rows.range_of(t, part_end);
            unit.rows.extend_from(rows, r);
            for (fs, fe) in lacking.missing(t, part_end) {
                unit.fetched.insert(fs, fe);
            }
            unit.empty.union(&empty.within(t, part_end));
        }
        t = part_end;
    }
}

async fn write_unit(
    ctx: &RunContext,
    series: &Series,
    lock: &SeriesLock,
    cp: &mut Checkpoint,
    saver: &mut Saver,
    unit_start: i64,
    unit: UnitBuf,
) -> anyhow::Result<()> {
    let unit_range = (unit_start, unit.end);
    let before = cp.covered.within(unit_start, unit.end);
    let mut covered = before.clone();
    covered.union(&unit.fetched);
    let complete = covered.covers(unit_start, unit.end);
    // A live run adds its new candles as a piece of their own (a fresh append for the loader)
    // while the unit is open and its pieces are few; the pieces are merged every MAX_PIECES
    // flushes and when the unit closes.
    let earlier_keys = cp.partial.get(&unit_start).cloned().unwrap_or_default();
    let piece = match (unit.fetched.ranges(), before.span()) {
        ([(s, _)], last) => {
            ctx.live
                && !complete
                && earlier_keys.len() < MAX_PIECES
                && last.is_none_or(|(_, e)| e == *s)
        }
        _ => false,
    };
    // Rows staged earlier for this unit, in the files of its partial coverage.
    let mut earlier = Vec::new();
    let mut earlier_files = Vec::new();
    for key in earlier_keys.iter().filter(|_| !piece) {
        let bytes = ctx
            .stage
            .get(key)
            .await
            .with_context(|| format!("cannot read back {key} from {}", ctx.stage.url()))?;
        earlier_files.push((
            key.clone(),
            layout::manifest_key(key, &manifest::sha256_hex(&bytes)),
        ));
        let decoded = parquet::decode(key, bytes)?;
        earlier.push(decoded.klines);
    }
    let mut batches: Vec<&KlineBatch> = earlier.iter().collect();
    batches.push(&unit.rows);
    let rows = if batches.len() == 1 {
        unit.rows.clone()
    } else {
        KlineBatch::merge(&batches)
    };
    let mut written = None;
    if !rows.is_empty() {
        let (start, end) = if complete {
            unit_range
        } else if piece {
            unit.fetched.span().unwrap_or(unit_range)
        } else {
            covered.span().unwrap_or(unit_range)
        };
        let key = layout::data_key(series, unit_range, start, end);
        let encoded = {
            let series = series.clone();
            tokio::task::spawn_blocking(move || {
                let n = rows.len();
                parquet::encode(&series, rows).map(|b| (b, n))
            })
            .await
            .context("Parquet encoder panicked")??
        };
        let (bytes, n) = encoded;
        let entry = ManifestEntry::new(series, key.clone(), (start, end), complete, n, &bytes);
        let size = entry.bytes;
        lock.check()?;
        ctx.stage
            .put(&key, bytes)
            .await
            .with_context(|| format!("cannot stage {key} to {}", ctx.stage.url()))?;
        crate::failpoint::hit("backfill.after_data_put");
        manifest::write(&ctx.stage, &entry).await?;
        crate::failpoint::hit("backfill.after_manifest");
        if ctx.live {
            ctx.totals
                .staged
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((entry.clone(), crate::time::now_ms()));
        }
        ctx.totals.files.fetch_add(1, Ordering::Relaxed);
        ctx.totals.bytes.fetch_add(size, Ordering::Relaxed);
        tracing::debug!(series = %series, file = %key, rows = n, bytes = size, "staged");
        written = Some(key);
    }
    lock.check()?;
    cp.covered.union(&unit.fetched);
    cp.empty.union(&unit.empty);
    if ctx.live && written.is_some() {
        // Bounded files per series and day: each flush of a live run rewrites the day's
        // partial file with all its rows, so the earlier one goes once the checkpoint moved on.
        saver.superseded.extend(
            earlier_files
                .into_iter()
                .filter(|(data, _)| Some(data) != written.as_ref()),
        );
    }
    if complete {
        cp.partial.remove(&unit_start);
    } else if let Some(key) = written {
        if piece {
            cp.partial.entry(unit_start).or_default().push(key);
        } else {
            cp.partial.insert(unit_start, vec![key]);
        }
    }
    saver.dirty = true;
    if saver.last.elapsed() >= SAVE_EVERY {
        saver.save(ctx, cp, lock).await?;
    }
    Ok(())
}
