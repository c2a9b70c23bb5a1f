//! Live: how a source follows its series as candles close. A live source tells the stream what
//! happens on one channel, in order: candles it says are closed, the exchange's times, the
//! messages it could not use (dead letters) and its connections' comings and goings. It judges
//! nothing and stages nothing: the stream (`extract::stream`) believes a candle or keeps it as
//! a dead letter, and fills every gap over REST.

use async_trait::async_trait;

use crate::datasets::klines::Kline;
use crate::market::Series;

/// What a live source tells the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    /// A message arrived (counted, whatever it holds).
    Received,
    /// The exchange's time when it sent a message: its clock was at least there, if the
    /// time is believable.
    Seen(i64),
    /// A candle the exchange says is closed, with the message it came in.
    Closed {
        series: Series,
        kline: Kline,
        raw: String,
    },
    /// A message that could not be used, and why.
    DeadLetter { raw: String, reason: String },
    /// A connection is read from now: what it missed before comes from REST.
    Opened,
    /// A connection was lost (it failed, closed or fell silent) and is opened again.
    Lost,
    /// A connection was replaced before it closed (announced restart, age limit): nothing
    /// was missed.
    Rotated,
}

/// Where a live source sends what happens.
pub type LiveSender = tokio::sync::mpsc::UnboundedSender<LiveEvent>;

#[async_trait]
pub trait Live: Send + Sync {
    /// Follows the closed candles of `series` until the task running it is dropped; never
    /// returns on its own (connections are opened again, with backoff).
    async fn follow(&self, series: Vec<Series>, events: LiveSender);
}
