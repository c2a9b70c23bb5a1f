//! The indicators themselves: one bar at a time, in doubles, in TA-Lib's order of operations.
//!
//! Conventions (TA-Lib's, which `tests/it/indicators.rs` checks against the `ta-lib` wheel):
//! - Bars are the rows of one series in time order. A missing bucket (an outage) is not a bar;
//!   a filler bucket (no trades) is one, with its close.
//! - SMA(n) and the Bollinger middle band: the mean of the last n closes, from bar n-1.
//! - EMA(n): k = 2/(n+1), seeded with the SMA of the first n closes; from bar n-1.
//! - RSI(n): Wilder's smoothing of gains and losses, seeded with their means over the first n
//!   changes; from bar n. When the average gain and loss are both zero (a flat series) it is 0,
//!   as in TA-Lib (TradingView says 100).
//! - MACD(f, s, g): EMA(f) - EMA(s), the fast EMA seeded on the s-f+1..s closes so that both
//!   start at bar s-1; the signal is the EMA(g) of MACD seeded with the mean of its first g
//!   values; all three outputs from bar s+g-2.
//! - Bollinger(n, d): middle ± d × the population standard deviation of the last n closes.
//!
//! Where klines differs from TA-Lib, on purpose: TA-Lib treats |x| < 1e-8 as zero in RSI's
//! denominator and a variance under 1e-8 as zero; klines tests for exact zero, so assets priced
//! below 1e-4 get real values. Sums are taken fresh over each window (TA-Lib keeps running
//! sums), so a value depends only on its window, never on where a run started: an incremental
//! run gives the same bits as a full one.

use std::collections::VecDeque;

/// Indicator periods. Checked by [`Params::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub sma: Vec<usize>,
    pub ema: Vec<usize>,
    pub rsi: usize,
    /// fast, slow, signal
    pub macd: (usize, usize, usize),
    /// period, deviations
    pub bbands: (usize, f64),
}

impl Default for Params {
    fn default() -> Self {
        Params {
            sma: vec![20, 50],
            ema: vec![20, 50],
            rsi: 14,
            macd: (12, 26, 9),
            bbands: (20, 2.0),
        }
    }
}

impl Params {
    /// The problem with the periods, naming the config key.
    pub fn check(&self) -> Result<(), String> {
        for (key, ps) in [("sma", &self.sma), ("ema", &self.ema)] {
            if ps.is_empty() {
                return Err(format!("{key}: give at least one period"));
            }
            if let Some(p) = ps.iter().find(|p| !(2..=100_000).contains(*p)) {
                return Err(format!("{key}: period {p} is not between 2 and 100000"));
            }
            let mut sorted = ps.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != ps.len() {
                return Err(format!("{key}: a period is given twice"));
            }
        }
        if !(2..=100_000).contains(&self.rsi) {
            return Err(format!(
                "rsi: period {} is not between 2 and 100000",
                self.rsi
            ));
        }
        let (f, s, g) = self.macd;
        if !(2..=100_000).contains(&f) || !(2..=100_000).contains(&s) || !(1..=100_000).contains(&g)
        {
            return Err(format!(
                "macd: periods [{f}, {s}, {g}] must be 2..100000 (signal 1..)"
            ));
        }
        if f >= s {
            return Err(format!(
                "macd: the fast period {f} must be below the slow {s}"
            ));
        }
        let (n, d) = self.bbands;
        if !(2..=100_000).contains(&n) || !d.is_finite() || d <= 0.0 {
            return Err(format!(
                "bbands: [{n}, {d}] needs a period 2..100000 and deviations above 0"
            ));
        }
        Ok(())
    }

    /// How many closes the longest window holds.
    pub fn window(&self) -> usize {
        let (_, slow, _) = self.macd;
        self.sma
            .iter()
            .chain(&self.ema)
            .copied()
            .chain([self.rsi + 1, slow, self.bbands.0])
            .max()
            .unwrap_or(1)
    }

    /// The first bar after which every indicator runs on carried state alone (seeds done): a
    /// run may continue from a stored bar at or after it.
    pub fn warm_bar(&self) -> i64 {
        let (_, s, g) = self.macd;
        (self.window() as i64 - 1).max((s + g) as i64 - 2)
    }

    /// The output columns, in order.
    pub fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = self.sma.iter().map(|p| format!("sma_{p}")).collect();
        out.extend(self.ema.iter().map(|p| format!("ema_{p}")));
        out.push(format!("rsi_{}", self.rsi));
        out.extend(
            [
                "macd",
                "macd_signal",
                "macd_hist",
                "bb_upper",
                "bb_middle",
                "bb_lower",
            ]
            .map(String::from),
        );
        out.extend(STATE.map(String::from));
        out
    }

    /// A fingerprint of the periods: a table built with others must be rebuilt.
    pub fn fingerprint(&self) -> i64 {
        let text = format!("{self:?}");
        // FNV-1a: stable across releases, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h >> 1) as i64
    }
}

/// The carried state, stored with every row so that a later run can continue from any bar.
pub const STATE: [&str; 4] = [
    "rsi_avg_gain",
    "rsi_avg_loss",
    "macd_fast_ema",
    "macd_slow_ema",
];

/// One series' running computation.
#[derive(Debug, Clone)]
pub struct Series {
    p: Params,
    /// Index of the last bar taken (-1 before the first).
    pub bar: i64,
    closes: VecDeque<f64>,
    ema: Vec<Option<f64>>,
    gain: Option<f64>,
    loss: Option<f64>,
    fast: Option<f64>,
    slow: Option<f64>,
    /// The signal's seed sum while it is being seeded, then the signal.
    signal: Option<f64>,
}

/// What a stored row carries, to continue from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carried {
    pub bar: i64,
    pub ema: Vec<Option<f64>>,
    pub gain: Option<f64>,
    pub loss: Option<f64>,
    pub fast: Option<f64>,
    pub slow: Option<f64>,
    pub signal: Option<f64>,
}

impl Series {
    pub fn new(p: &Params) -> Series {
        Series {
            ema: vec![None; p.ema.len()],
            closes: VecDeque::with_capacity(p.window() + 1),
            p: p.clone(),
            bar: -1,
            gain: None,
            loss: None,
            fast: None,
            slow: None,
            signal: None,
        }
    }

    /// Continues after a stored bar `c.bar` (at or after [`Params::warm_bar`]), given the
    /// closes of the bars up to it, oldest first (at least `window - 1` of them).
    pub fn resume(p: &Params, c: &Carried, closes: &[f64]) -> Series {
        let mut s = Series::new(p);
        let keep = p.window();
        s.closes
            .extend(closes[closes.len().saturating_sub(keep)..].iter().copied());
        s.bar = c.bar;
        s.ema = c.ema.clone();
        s.gain = c.gain;
        s.loss = c.loss;
        s.fast = c.fast;
        s.slow = c.slow;
        s.signal = c.signal;
        s
    }

    /// Mean of the last `n` closes, summed oldest first.
    fn mean(&self, n: usize) -> f64 {
        let mut sum = 0.0;
        for x in self.closes.range(self.closes.len() - n..) {
            sum += x;
        }
        sum / n as f64
    }

    /// Takes the next bar's close; writes one value per output column (NaN for none yet).
    pub fn push(&mut self, x: f64, out: &mut Vec<f64>) {
        self.bar += 1;
        let i = self.bar as usize;
        if self.closes.len() == self.p.window() {
            self.closes.pop_front();
        }
        self.closes.push_back(x);
        let prev = (self.closes.len() >= 2).then(|| self.closes[self.closes.len() - 2]);
        out.clear();
        for &n in &self.p.sma {
            out.push(if i + 1 >= n { self.mean(n) } else { f64::NAN });
        }
        for (j, &n) in self.p.ema.iter().enumerate() {
            let k = 2.0 / (n + 1) as f64;
            self.ema[j] = match self.ema[j] {
                Some(e) => Some(((x - e) * k) + e),
                None if i + 1 == n => Some(self.mean(n)),
                None => None,
            };
            out.push(self.ema[j].unwrap_or(f64::NAN));
        }
        out.push(self.rsi(i, x, prev));
        self.macd(i, x, out);
        let (n, d) = self.p.bbands;
        if i + 1 >= n {
            let mean = self.mean(n);
            let mut var = 0.0;
            for v in self.closes.range(self.closes.len() - n..) {
                var += (v - mean) * (v - mean);
            }
            let sd = (var / n as f64).sqrt();
            out.extend([mean + d * sd, mean, mean - d * sd]);
        } else {
            out.extend([f64::NAN; 3]);
        }
        for v in [self.gain, self.loss, self.fast, self.slow] {
            out.push(v.unwrap_or(f64::NAN));
        }
    }

    fn rsi(&mut self, i: usize, x: f64, prev: Option<f64>) -> f64 {
        let n = self.p.rsi;
        let nf = n as f64;
        match (self.gain, self.loss, prev) {
            (Some(mut g), Some(mut l), Some(prev)) => {
                let d = x - prev;
                l *= (n - 1) as f64;
                g *= (n - 1) as f64;
                if d < 0.0 {
                    l -= d;
                } else {
                    g += d;
                }
                l /= nf;
                g /= nf;
                (self.gain, self.loss) = (Some(g), Some(l));
            }
            _ if i == n => {
                let (mut g, mut l) = (0.0, 0.0);
                let c = &self.closes;
                let start = c.len() - n - 1;
                for j in start + 1..c.len() {
                    let d = c[j] - c[j - 1];
                    if d < 0.0 {
                        l -= d;
                    } else {
                        g += d;
                    }
                }
                l /= nf;
                g /= nf;
                (self.gain, self.loss) = (Some(g), Some(l));
            }
            _ => return f64::NAN,
        }
        let (g, l) = (self.gain.unwrap_or(0.0), self.loss.unwrap_or(0.0));
        let total = g + l;
        if total != 0.0 {
            100.0 * (g / total)
        } else {
            0.0
        }
    }

    fn macd(&mut self, i: usize, x: f64, out: &mut Vec<f64>) {
        let (f, s, g) = self.p.macd;
        let (kf, ks, kg) = (
            2.0 / (f + 1) as f64,
            2.0 / (s + 1) as f64,
            2.0 / (g + 1) as f64,
        );
        let first_out = s + g - 2;
        match (self.fast, self.slow) {
            (Some(fast), Some(slow)) => {
                let fast = (x - fast) * kf + fast;
                let slow = (x - slow) * ks + slow;
                (self.fast, self.slow) = (Some(fast), Some(slow));
                let m = fast - slow;
                let signal = self.signal.unwrap_or(0.0);
                if i <= first_out {
                    // Seeding the signal with the mean of the first g MACD values.
                    let sum = signal + m;
                    self.signal = Some(if i == first_out { sum / g as f64 } else { sum });
                } else {
                    self.signal = Some((m - signal) * kg + signal);
                }
            }
            _ if i + 1 == s => {
                let c = &self.closes;
                let start = c.len() - s;
                let mut slow = 0.0;
                for v in c.range(start..start + s - f) {
                    slow += v;
                }
                let mut fast = 0.0;
                for v in c.range(start + s - f..) {
                    fast += v;
                    slow += v;
                }
                let (fast, slow) = (fast / f as f64, slow / s as f64);
                (self.fast, self.slow) = (Some(fast), Some(slow));
                let m = fast - slow;
                let sum = 0.0 + m;
                self.signal = Some(if i == first_out { sum / g as f64 } else { sum });
            }
            _ => {}
        }
        match (self.fast, self.slow, self.signal) {
            (Some(fast), Some(slow), Some(signal)) if i >= first_out => {
                let m = fast - slow;
                out.extend([m, signal, m - signal]);
            }
            _ => out.extend([f64::NAN; 3]),
        }
    }

    /// The state after the last bar, as the stored row holds it.
    pub fn carried(&self) -> Carried {
        Carried {
            bar: self.bar,
            ema: self.ema.clone(),
            gain: self.gain,
            loss: self.loss,
            fast: self.fast,
            slow: self.slow,
            signal: self.signal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(p: &Params, closes: &[f64]) -> Vec<Vec<f64>> {
        let mut s = Series::new(p);
        let mut out = Vec::new();
        closes
            .iter()
            .map(|&x| {
                s.push(x, &mut out);
                out.clone()
            })
            .collect()
    }

    fn first_bar(rows: &[Vec<f64>], col: usize) -> Option<usize> {
        rows.iter().position(|r| !r[col].is_nan())
    }

    #[test]
    fn first_bars_follow_ta_lib() {
        let p = Params::default();
        let closes: Vec<f64> = (0..100).map(|i| 100.0 + ((i * 7) % 13) as f64).collect();
        let rows = run(&p, &closes);
        let cols = p.columns();
        let at = |name: &str| first_bar(&rows, cols.iter().position(|c| c == name).unwrap());
        assert_eq!(at("sma_20"), Some(19));
        assert_eq!(at("sma_50"), Some(49));
        assert_eq!(at("ema_20"), Some(19));
        assert_eq!(at("ema_50"), Some(49));
        assert_eq!(at("rsi_14"), Some(14));
        assert_eq!(at("macd"), Some(33));
        assert_eq!(at("macd_signal"), Some(33));
        assert_eq!(at("macd_hist"), Some(33));
        assert_eq!(at("bb_upper"), Some(19));
        assert_eq!(p.warm_bar(), 49);
    }

    #[test]
    fn known_values() {
        let p = Params {
            sma: vec![3],
            ema: vec![3],
            rsi: 2,
            macd: (2, 3, 1),
            bbands: (3, 2.0),
        };
        let rows = run(&p, &[1.0, 2.0, 3.0, 2.0, 4.0]);
        // sma_3 at bar 2: 2; ema_3 seeded 2, then (2-2)*0.5+2 = 2, then (4-2)*0.5+2 = 3.
        assert_eq!(rows[2][0], 2.0);
        assert_eq!(rows[3][1], 2.0);
        assert_eq!(rows[4][1], 3.0);
        // RSI(2) at bar 2: gains 1+1 over 2 changes, no loss: 100; bar 3: gain 0.5, loss 0.5.
        assert_eq!(rows[2][2], 100.0);
        assert_eq!(rows[3][2], 50.0);
        // Bollinger(3, 2) at bar 2: mean 2, population sd sqrt(2/3).
        let sd = (2.0f64 / 3.0).sqrt();
        assert_eq!(rows[2][6..9], [2.0 + 2.0 * sd, 2.0, 2.0 - 2.0 * sd]);
    }

    #[test]
    fn a_flat_series_has_rsi_zero_as_in_ta_lib() {
        let p = Params::default();
        let rows = run(&p, &[5.0; 30]);
        assert_eq!(rows[20][4], 0.0);
        assert_eq!(rows[20][8], 5.0, "bb_upper of a flat series is its price");
    }

    #[test]
    fn bad_periods_are_named() {
        let p = Params {
            macd: (26, 12, 9),
            ..Params::default()
        };
        assert!(p.check().unwrap_err().starts_with("macd:"));
        let p = Params {
            sma: vec![20, 20],
            ..Params::default()
        };
        assert!(p.check().unwrap_err().starts_with("sma:"));
        assert!(Params::default().check().is_ok());
    }

    proptest! {
        /// Continuing from any stored bar after the warm-up gives the same bits as one run.
        #[test]
        fn resuming_equals_one_run(
            steps in proptest::collection::vec(-500i64..500, 60..160),
            cut in 0usize..100,
        ) {
            let p = Params::default();
            let mut x = 30_000.0;
            let closes: Vec<f64> = steps.iter().map(|d| { x += *d as f64 / 100.0; x }).collect();
            let whole = run(&p, &closes);
            let cut = (p.warm_bar() as usize + cut).min(closes.len() - 1);
            let mut first = Series::new(&p);
            let mut out = Vec::new();
            for &c in &closes[..=cut] {
                first.push(c, &mut out);
            }
            let mut resumed = Series::resume(&p, &first.carried(), &closes[..=cut]);
            for (i, &c) in closes.iter().enumerate().skip(cut + 1) {
                resumed.push(c, &mut out);
                let same = out.iter().zip(&whole[i]).all(|(a, b)| a.to_bits() == b.to_bits());
                prop_assert!(same, "bar {}: {:?} vs {:?}", i, out, whole[i]);
            }
        }
    }
}
