//! `GET /api/live?symbol=&interval=&since=`: server-sent events with the candles that are new
//! or changed since `since` (columns, as `/api/candles` answers) (the forming bucket again as it fills), each time the warehouse
//! may have changed: after every flush of `klines stream --serve`, or every few seconds under
//! `klines serve` (another process loads).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::watch;

use super::api::{Api, ApiError, CandleQuery};
use super::columns::CandleColumns;

/// Tells open pages that the tables may have changed.
#[derive(Clone)]
pub struct Updates(Arc<watch::Sender<u64>>);

impl Updates {
    pub fn new() -> Updates {
        Updates(Arc::new(watch::channel(0).0))
    }

    /// The tables changed (a flush was loaded and built).
    pub fn changed(&self) {
        self.0.send_modify(|v| *v += 1);
    }

    /// A change every `every` (the warehouse is written by another process).
    pub fn poll(self, every: Duration) -> Updates {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                me.changed();
            }
        });
        self
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

impl Default for Updates {
    fn default() -> Self {
        Updates::new()
    }
}

/// The stream of one page's candles.
pub async fn live(
    State((api, updates)): State<(Arc<Api>, Updates)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // `since` is the `from` of each query; the rest is checked as /api/candles checks it.
    let mut query = CandleQuery::parse_as(&q, "since", &["symbol", "interval", "since"])?;
    query.limit = super::api::MAX_LIMIT;
    // A table not built or a symbol it does not hold is a 404 now, not a silent stream.
    super::api::fetch(&api, &query).await?;
    let mut rx = updates.subscribe();
    let events = async_stream(move |tx| async move {
        // What was sent last, so that an unchanged forming candle is not sent again.
        let mut last_sent: Option<super::columns::Candle> = None;
        loop {
            // Ends when the page goes away, and on Ctrl-C or SIGTERM (so that the server's
            // graceful shutdown finishes).
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                () = tx.closed() => return,
                () = crate::cancel::cancelled() => return,
            }
            let candles = match super::api::fetch(&api, &query).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e.1, "live candles");
                    continue;
                }
            };
            if candles.is_empty() || (candles.len() == 1 && last_sent.as_ref() == candles.last()) {
                continue;
            }
            // Next time from the newest sent: it may still be forming.
            if let Some(c) = candles.last() {
                query.from = c.time;
            }
            last_sent = candles.last().cloned();
            let event = Event::default().event("candles").data(
                serde_json::to_string(&candles.into_iter().collect::<CandleColumns>())
                    .unwrap_or_default(),
            );
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A stream fed by a task, which ends when the client goes away.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(f(tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
}
