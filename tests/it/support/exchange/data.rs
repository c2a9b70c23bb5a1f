//! The test exchange's market data: deterministic synthetic klines, and Binance's real 1m
//! klines from `tests/fixtures/binance-real/` (a copy of `../shared/fixtures/binance-real/`).
//!
//! Synthetic 1m klines are a pure function of (symbol, minute):
//! - exchange-wide outages: about one minute in a thousand, plus 02:10-02:25 UTC on every
//!   seventh day, are missing for every symbol;
//! - about one minute in five is a zero-trade *filler* (open = high = low = close = the
//!   previous close, volume 0, trades 0), as Binance prints them;
//! - traded minutes open near the previous close, so Binance's rule for coarse candles (open,
//!   high and low over traded minutes only) gives other results than plain first/max/min.
//!
//! Coarser intervals are built from the 1m klines with Binance's rule; 1s klines have their
//! own generator.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use klines::datasets::klines::Kline;
use klines::decimal;
use klines::market::Interval;

pub const MINUTE: i64 = 60_000;
const UNIT: i128 = 100_000_000;

/// A symbol of the synthetic market.
#[derive(Debug, Clone)]
pub struct SyntheticSymbol {
    pub name: String,
    /// Open time of its first kline.
    pub listed_from: i64,
    /// exchangeInfo status: TRADING, HALT, BREAK.
    pub status: String,
    /// Price level in 10^-8 units, and its tick.
    pub base_price: i128,
    pub tick: i128,
}

impl SyntheticSymbol {
    pub fn new(name: &str, listed_from: i64, base_price: &str, tick: &str) -> Self {
        SyntheticSymbol {
            name: name.to_string(),
            listed_from,
            status: "TRADING".into(),
            base_price: decimal::parse(base_price).unwrap(),
            tick: decimal::parse(tick).unwrap(),
        }
    }
}

/// 2017-08-17, BTCUSDT's first day on Binance.
pub const EPOCH_2017_08_17: i64 = 1_502_928_000_000;

/// The default synthetic market: BTCUSDT and ETHUSDT from 2017, SOLUSDT from 2020-08-11,
/// NEWUSDT listed 2024-01-03 12:00, HALTUSDT halted.
pub fn default_symbols() -> Vec<SyntheticSymbol> {
    let mut halted = SyntheticSymbol::new("HALTUSDT", EPOCH_2017_08_17, "1.0", "0.0001");
    halted.status = "HALT".into();
    vec![
        SyntheticSymbol::new("BTCUSDT", EPOCH_2017_08_17, "42000.00", "0.01"),
        SyntheticSymbol::new("ETHUSDT", EPOCH_2017_08_17, "2300.00", "0.01"),
        SyntheticSymbol::new("SOLUSDT", 1_597_125_600_000, "95.00", "0.01"),
        SyntheticSymbol::new("NEWUSDT", 1_704_283_200_000, "0.50000000", "0.00001"),
        halted,
    ]
}

/// A 64-bit mix of the inputs (splitmix64): deterministic everywhere.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    })
}

/// True when the exchange was down during this minute (no symbol has a kline).
pub fn is_outage(minute_open: i64) -> bool {
    let m = minute_open.div_euclid(MINUTE);
    let day = m.div_euclid(1440);
    let minute_of_day = m.rem_euclid(1440);
    mix(m as u64, 7) % 1000 == 0 || (day % 7 == 0 && (130..145).contains(&minute_of_day))
}

/// Market data: synthetic symbols plus, optionally, the real fixtures, with overrides for
/// corrections.
#[derive(Debug, Clone, Default)]
pub struct Market {
    pub synthetic: Vec<SyntheticSymbol>,
    /// Real 1m klines by symbol, by open time.
    pub real: HashMap<String, BTreeMap<i64, Kline>>,
    /// Replaced 1m klines by (symbol, open time): a "correction" the exchange published.
    pub overrides: HashMap<(String, i64), Kline>,
}

impl Market {
    pub fn synthetic() -> Market {
        Market {
            synthetic: default_symbols(),
            ..Default::default()
        }
    }

    /// `n` synthetic symbols (`S000USDT`, `S001USDT`, ...) for benchmarks of many series.
    pub fn synthetic_n(n: usize) -> Market {
        Market {
            synthetic: (0..n)
                .map(|i| {
                    SyntheticSymbol::new(
                        &format!("S{i:03}USDT"),
                        EPOCH_2017_08_17,
                        &format!("{}.00", 10 + i * 7),
                        "0.01",
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The real fixtures only (XRPETH, BTCUSDT, ETHUSDT, SOLUSDT).
    pub fn real(fixtures: &Path) -> Market {
        Market {
            real: load_real(fixtures),
            ..Default::default()
        }
    }

    pub fn symbol_names(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .synthetic
            .iter()
            .map(|s| (s.name.clone(), s.status.clone()))
            .collect();
        for name in self.real.keys() {
            if !out.iter().any(|(n, _)| n == name) {
                out.push((name.clone(), "TRADING".into()));
            }
        }
        out.sort();
        out
    }

    pub fn has_symbol(&self, name: &str) -> bool {
        self.real.contains_key(name) || self.synthetic.iter().any(|s| s.name == name)
    }

    /// The first 1m open time of a symbol.
    pub fn first_minute(&self, name: &str) -> Option<i64> {
        if let Some(rows) = self.real.get(name) {
            return rows.keys().next().copied();
        }
        self.synthetic
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.listed_from)
    }

    /// The symbol's 1m kline opening at `t`, if the exchange has one.
    pub fn minute(&self, name: &str, t: i64) -> Option<Kline> {
        if let Some(k) = self.overrides.get(&(name.to_string(), t)) {
            return Some(k.clone());
        }
        if let Some(rows) = self.real.get(name) {
            return rows.get(&t).cloned();
        }
        let s = self.synthetic.iter().find(|s| s.name == name)?;
        if t < s.listed_from || t.rem_euclid(MINUTE) != 0 || is_outage(t) {
            return None;
        }
        Some(synthetic_minute(s, t))
    }

    /// The symbol's first `limit` 1m klines opening in `[start, end)`.
    pub fn minutes(&self, name: &str, start: i64, end: i64, limit: usize) -> Vec<Kline> {
        let first = match self.first_minute(name) {
            Some(f) => f,
            None => return Vec::new(),
        };
        if let Some(rows) = self.real.get(name) {
            let mut out: Vec<Kline> = rows
                .range(start..end.max(start))
                .take(limit)
                .map(|(_, k)| k.clone())
                .collect();
            for k in out.iter_mut() {
                if let Some(o) = self.overrides.get(&(name.to_string(), k.open_time)) {
                    *k = o.clone();
                }
            }
            return out;
        }
        let mut t = start.max(first);
        t = (t + MINUTE - 1).div_euclid(MINUTE) * MINUTE;
        let mut out = Vec::new();
        while t < end && out.len() < limit {
            if let Some(k) = self.minute(name, t) {
                out.push(k);
            }
            t += MINUTE;
        }
        out
    }

    /// The first `limit` klines of any interval opening in `[start, end)` whose 1m data exists
    /// up to `now` (the candle containing `now` is included, unclosed).
    pub fn klines(
        &self,
        name: &str,
        interval: Interval,
        start: i64,
        end: i64,
        now: i64,
        limit: usize,
    ) -> Vec<Kline> {
        let end = end.min(interval.floor(now) + 1);
        match interval {
            Interval::M1 => self.minutes(name, start, end, limit),
            Interval::S1 => self.seconds(name, start, end, limit),
            _ => {
                let mut out = Vec::new();
                let mut b = interval.ceil(
                    start.max(
                        self.first_minute(name)
                            .map(|f| interval.floor(f))
                            .unwrap_or(start),
                    ),
                );
                while b < end && out.len() < limit {
                    let next = interval.next(b);
                    let minutes = self.minutes(name, b, next.min(now + 1), usize::MAX);
                    if let Some(k) = rollup(&minutes, b, next - 1) {
                        out.push(k);
                    }
                    b = next;
                }
                out
            }
        }
    }

    fn seconds(&self, name: &str, start: i64, end: i64, limit: usize) -> Vec<Kline> {
        let Some(s) = self.synthetic.iter().find(|s| s.name == name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut t = start.max(s.listed_from).div_euclid(1000) * 1000;
        if t < start {
            t += 1000;
        }
        while t < end && out.len() < limit {
            let minute = t.div_euclid(MINUTE) * MINUTE;
            if !is_outage(minute) {
                let h = mix(name_hash(&s.name) ^ 0x5EC, t as u64);
                let price = level(s, minute) + (h % 7) as i128 * s.tick;
                let traded = h % 3 != 0;
                let volume = if traded {
                    (h % 10_000) as i128 * 10_000 + 1
                } else {
                    0
                };
                out.push(Kline {
                    open_time: t,
                    open: price,
                    high: price + if traded { s.tick } else { 0 },
                    low: price,
                    close: price,
                    volume,
                    close_time: t + 999,
                    quote_volume: volume * price / UNIT,
                    trades: if traded { 1 + (h % 5) as i64 } else { 0 },
                    taker_buy_base_volume: volume / 2,
                    taker_buy_quote_volume: volume / 2 * price / UNIT,
                });
            }
            t += 1000;
        }
        out
    }
}

/// The price level of a synthetic symbol in the hour holding `t`: a random walk by hour.
fn level(s: &SyntheticSymbol, t: i64) -> i128 {
    let hour = t.div_euclid(3_600_000);
    let h = mix(name_hash(&s.name), hour as u64);
    // Within +-5% of the base, in ticks.
    let span = (s.base_price / 20 / s.tick).max(1);
    s.base_price + ((h % (2 * span as u64 + 1)) as i128 - span) * s.tick
}

/// The close of the last traded minute at or before `t` (fillers repeat it).
fn close_before(s: &SyntheticSymbol, t: i64) -> i128 {
    let mut m = t;
    for _ in 0..2000 {
        if m < s.listed_from {
            break;
        }
        if !is_outage(m) && is_traded(s, m) {
            return traded_close(s, m);
        }
        m -= MINUTE;
    }
    level(s, t)
}

fn is_traded(s: &SyntheticSymbol, t: i64) -> bool {
    mix(name_hash(&s.name), (t / MINUTE) as u64) % 5 != 0
}

fn traded_close(s: &SyntheticSymbol, t: i64) -> i128 {
    let h = mix(name_hash(&s.name) ^ 0xC105E, (t / MINUTE) as u64);
    level(s, t) + ((h % 41) as i128 - 20) * s.tick
}

fn synthetic_minute(s: &SyntheticSymbol, t: i64) -> Kline {
    let prev = close_before(s, t - MINUTE);
    if !is_traded(s, t) {
        return Kline {
            open_time: t,
            open: prev,
            high: prev,
            low: prev,
            close: prev,
            volume: 0,
            close_time: t + MINUTE - 1,
            quote_volume: 0,
            trades: 0,
            taker_buy_base_volume: 0,
            taker_buy_quote_volume: 0,
        };
    }
    let h = mix(name_hash(&s.name) ^ 0x0F, (t / MINUTE) as u64);
    let open = prev + ((h % 5) as i128 - 2) * s.tick;
    let close = traded_close(s, t);
    let high = open.max(close) + ((h >> 8) % 6) as i128 * s.tick;
    let low = (open.min(close) - ((h >> 16) % 6) as i128 * s.tick).max(s.tick);
    // Volumes with all 8 decimals in use.
    let volume = ((h >> 24) % 50_000_000_000) as i128 + 1;
    let taker = volume * ((h >> 40) % 100) as i128 / 100;
    let avg = (open + close) / 2;
    Kline {
        open_time: t,
        open,
        high,
        low,
        close,
        volume,
        close_time: t + MINUTE - 1,
        quote_volume: volume * avg / UNIT,
        trades: 1 + ((h >> 48) % 900) as i64,
        taker_buy_base_volume: taker,
        taker_buy_quote_volume: taker * avg / UNIT,
    }
}

/// Binance's coarse candle over 1m klines (see the fixtures' README): open, high and low over
/// traded minutes only; close from the last minute; sums over all; all fillers give a filler.
pub fn rollup(minutes: &[Kline], open_time: i64, close_time: i64) -> Option<Kline> {
    let last = minutes.last()?;
    let traded: Vec<&Kline> = minutes
        .iter()
        .filter(|k| k.trades > 0 || k.volume > 0)
        .collect();
    let (open, high, low) = match traded.first() {
        Some(first) => (
            first.open,
            traded.iter().map(|k| k.high).max().unwrap_or(first.high),
            traded.iter().map(|k| k.low).min().unwrap_or(first.low),
        ),
        None => (last.close, last.close, last.close),
    };
    Some(Kline {
        open_time,
        open,
        high,
        low,
        close: last.close,
        volume: minutes.iter().map(|k| k.volume).sum(),
        close_time,
        quote_volume: minutes.iter().map(|k| k.quote_volume).sum(),
        trades: minutes.iter().map(|k| k.trades).sum(),
        taker_buy_base_volume: minutes.iter().map(|k| k.taker_buy_base_volume).sum(),
        taker_buy_quote_volume: minutes.iter().map(|k| k.taker_buy_quote_volume).sum(),
    })
}

/// Where the 12-field real fixtures are: the repository's copy of
/// `../shared/fixtures/binance-real-full12` (`KLINES_REAL_FULL12` to use another).
pub fn full12_dir() -> std::path::PathBuf {
    match std::env::var_os("KLINES_REAL_FULL12") {
        Some(dir) => dir.into(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/binance-real-full12"),
    }
}

/// One line of Binance's 12 kline fields, every one as Binance wrote it: the open time as epoch
/// ms or `YYYY-MM-DD HH:MM:SS` (UTC), decimals as text, the trade count. `None` for a header.
pub fn parse_full_row(line: &str) -> Option<Kline> {
    let f: Vec<&str> = line.trim().split(',').map(str::trim).collect();
    if f.len() < 11 {
        return None;
    }
    let t = match f[0].parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => chrono::NaiveDateTime::parse_from_str(f[0], "%Y-%m-%d %H:%M:%S")
            .ok()?
            .and_utc()
            .timestamp_millis(),
    };
    let d = |s: &str| decimal::parse(s).ok();
    Some(Kline {
        open_time: t,
        open: d(f[1])?,
        high: d(f[2])?,
        low: d(f[3])?,
        close: d(f[4])?,
        volume: d(f[5])?,
        close_time: f[6].parse().ok()?,
        quote_volume: d(f[7])?,
        trades: f[8].parse().ok()?,
        taker_buy_base_volume: d(f[9])?,
        taker_buy_quote_volume: d(f[10])?,
    })
}

/// The 12-field rows of a CSV file or of the one CSV in a data.binance.vision zip.
pub fn read_full_rows(path: &Path) -> BTreeMap<i64, Kline> {
    let text = if path.extension().is_some_and(|e| e == "zip") {
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut zip =
            zip::ZipArchive::new(file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut inner = zip.by_index(0).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut inner, &mut text).unwrap();
        text
    } else {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    text.lines()
        .filter_map(parse_full_row)
        .map(|k| (k.open_time, k))
        .collect()
}

impl Market {
    /// Real klines with all 12 fields as Binance published them: spot ETHUSDT (a REST dump
    /// of 2021-09-23 to 26 and the archives of 2022-08-14 and 15).
    pub fn real_full12_spot(dir: &Path) -> Market {
        let mut eth = read_full_rows(&dir.join("spot/ETHUSDT_1m_2021-09-23.csv"));
        for day in ["14", "15"] {
            eth.extend(read_full_rows(
                &dir.join(format!("spot/ETHUSDT-1m-2022-08-{day}.zip")),
            ));
        }
        Market {
            real: HashMap::from([("ETHUSDT".to_string(), eth)]),
            ..Default::default()
        }
    }

    /// USD-M futures BTCUSDT from the archives of 2022-09-05 and 06, all 12 fields.
    pub fn real_full12_usdm(dir: &Path) -> Market {
        let mut btc = BTreeMap::new();
        for day in ["05", "06"] {
            btc.extend(read_full_rows(
                &dir.join(format!("usdm/BTCUSDT-1m-2022-09-{day}.zip")),
            ));
        }
        Market {
            real: HashMap::from([("BTCUSDT".to_string(), btc)]),
            ..Default::default()
        }
    }
}

/// Where the real fixtures are: `KLINES_REAL_FIXTURES` if set, else the repository's copy
/// of `../shared/fixtures/binance-real` (so a clean clone tests anywhere).
pub fn fixtures_dir() -> std::path::PathBuf {
    match std::env::var_os("KLINES_REAL_FIXTURES") {
        Some(dir) => dir.into(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/binance-real"),
    }
}

/// Fills the fields the fixtures lack, deterministically: quote volume = volume x close,
/// trades from a hash (0 when volume is 0), half the volume bought by takers.
fn real_kline(symbol: &str, t: i64, o: &str, h: &str, l: &str, c: &str, v: &str) -> Kline {
    let p = |s: &str| decimal::parse(s).unwrap_or_else(|e| panic!("fixture {symbol} {t}: {e}"));
    let (open, high, low, close, volume) = (p(o), p(h), p(l), p(c), p(v));
    let trades = if volume == 0 {
        0
    } else {
        1 + (mix(name_hash(symbol), t as u64) % 500) as i64
    };
    let taker = volume / 2;
    Kline {
        open_time: t,
        open,
        high,
        low,
        close,
        volume,
        close_time: t + MINUTE - 1,
        quote_volume: volume * close / UNIT,
        trades,
        taker_buy_base_volume: taker,
        taker_buy_quote_volume: taker * close / UNIT,
    }
}

fn load_real(dir: &Path) -> HashMap<String, BTreeMap<i64, Kline>> {
    let mut out = HashMap::new();
    let xrp = dir.join("freqtrade_xrpeth/XRP_ETH-1m.json");
    let text = std::fs::read_to_string(&xrp).unwrap_or_else(|e| panic!("{}: {e}", xrp.display()));
    out.insert("XRPETH".to_string(), parse_json_rows("XRPETH", &text));
    for sym in ["BTCUSDT", "ETHUSDT", "SOLUSDT"] {
        let path = dir.join(format!("rocketalerts_spot/{sym}_1m.csv"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.insert(sym.to_string(), parse_csv_rows(sym, &text));
    }
    out
}

/// `[[ms, o, h, l, c, v], ...]`, numbers kept as written.
pub fn parse_json_rows(symbol: &str, text: &str) -> BTreeMap<i64, Kline> {
    let mut rows = BTreeMap::new();
    for row in text
        .split(']')
        .map(|r| r.trim_start_matches([',', '[', ' ', '\n']))
        .filter(|r| !r.trim().is_empty())
    {
        let f: Vec<&str> = row.split(',').map(str::trim).collect();
        if f.len() < 6 {
            continue;
        }
        let t: i64 = f[0]
            .parse()
            .unwrap_or_else(|_| panic!("{symbol}: bad time {:?}", f[0]));
        rows.insert(t, real_kline(symbol, t, f[1], f[2], f[3], f[4], f[5]));
    }
    rows
}

/// `Date,Open,High,Low,Close,Volume` with `YYYY-MM-DD HH:MM:SS` UTC dates.
pub fn parse_csv_rows(symbol: &str, text: &str) -> BTreeMap<i64, Kline> {
    let mut rows = BTreeMap::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let t = chrono::NaiveDateTime::parse_from_str(f[0], "%Y-%m-%d %H:%M:%S")
            .unwrap_or_else(|e| panic!("{symbol}: bad date {:?}: {e}", f[0]))
            .and_utc()
            .timestamp_millis();
        rows.insert(t, real_kline(symbol, t, f[1], f[2], f[3], f[4], f[5]));
    }
    rows
}

/// Formats klines as Binance's JSON body.
pub fn to_json(rows: &[Kline]) -> String {
    let mut s = String::with_capacity(rows.len() * 200 + 2);
    s.push('[');
    for (i, k) in rows.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        use std::fmt::Write;
        let d = decimal::format;
        let _ = write!(
            s,
            "[{},\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",{},\"{}\",{},\"{}\",\"{}\",\"0\"]",
            k.open_time,
            d(k.open),
            d(k.high),
            d(k.low),
            d(k.close),
            d(k.volume),
            k.close_time,
            d(k.quote_volume),
            k.trades,
            d(k.taker_buy_base_volume),
            d(k.taker_buy_quote_volume)
        );
    }
    s.push(']');
    s
}
