//! A series: one exchange, market, symbol and interval, the unit of checkpoints, locks, staged
//! files and the raw tables' key.

use super::{Exchange, Interval, Market, Symbol};

/// One exchange, market, symbol and interval: the unit of checkpoints and locks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Series {
    pub exchange: Exchange,
    pub market: Market,
    pub symbol: Symbol,
    pub interval: Interval,
}

impl Series {
    /// `exchange=binance/market=spot/interval=1m/symbol=BTCUSDT`
    pub fn prefix(&self) -> String {
        format!("exchange={}/{}", self.exchange, self.legacy_prefix())
    }

    /// The prefix of stages written before the exchange was part of the layout (Binance's).
    pub fn legacy_prefix(&self) -> String {
        format!(
            "market={}/interval={}/symbol={}",
            self.market, self.interval, self.symbol
        )
    }
}

impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.exchange, self.market, self.symbol, self.interval
        )
    }
}
