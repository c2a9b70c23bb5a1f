//! Binance's limits as it states them: exchangeInfo's `rateLimits`, and the weight used so
//! far that every response reports (`X-MBX-USED-WEIGHT-1M`).

use reqwest::header::HeaderMap;

/// What a window counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// `REQUEST_WEIGHT`: the weight of each request.
    Weight,
    /// `RAW_REQUESTS`: one per request.
    Raw,
}

/// One limit from exchangeInfo's `rateLimits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub kind: LimitKind,
    /// Window length in milliseconds (`intervalNum` times `interval`).
    pub window_ms: i64,
    pub limit: u32,
}

impl RateLimit {
    /// Reads one `rateLimits` entry; limits klines does not pace by (ORDERS) give `None`.
    pub fn from_exchange(kind: &str, interval: &str, num: u32, limit: u32) -> Option<RateLimit> {
        let kind = match kind {
            "REQUEST_WEIGHT" => LimitKind::Weight,
            "RAW_REQUESTS" => LimitKind::Raw,
            _ => return None,
        };
        let unit = match interval {
            "SECOND" => 1_000,
            "MINUTE" => 60_000,
            "HOUR" => 3_600_000,
            "DAY" => 86_400_000,
            _ => return None,
        };
        (num > 0 && limit > 0).then_some(RateLimit {
            kind,
            window_ms: unit * num as i64,
            limit,
        })
    }
}

/// Reads `X-MBX-USED-WEIGHT-<n><unit>` headers as (window length in ms, used weight).
pub fn used_weight_headers(headers: &HeaderMap) -> Vec<(i64, u32)> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let Some(suffix) = name.as_str().strip_prefix("x-mbx-used-weight-") else {
            continue;
        };
        let Some(unit) = suffix.chars().last() else {
            continue;
        };
        let unit_ms = match unit.to_ascii_lowercase() {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => continue,
        };
        let Ok(n) = suffix[..suffix.len() - 1].parse::<i64>() else {
            continue;
        };
        let Some(used) = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            continue;
        };
        out.push((n * unit_ms, used));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn weight(limit: u32, window_ms: i64) -> RateLimit {
        RateLimit {
            kind: LimitKind::Weight,
            limit,
            window_ms,
        }
    }

    #[test]
    fn reads_binance_limits_and_headers() {
        assert_eq!(
            RateLimit::from_exchange("REQUEST_WEIGHT", "MINUTE", 1, 6000),
            Some(weight(6000, 60_000))
        );
        assert_eq!(
            RateLimit::from_exchange("REQUEST_WEIGHT", "SECOND", 10, 100),
            Some(weight(100, 10_000))
        );
        assert_eq!(RateLimit::from_exchange("ORDERS", "SECOND", 10, 100), None);
        let mut h = HeaderMap::new();
        h.insert("x-mbx-used-weight-1m", HeaderValue::from_static("1234"));
        h.insert("x-mbx-used-weight-10s", HeaderValue::from_static("7"));
        h.insert("x-mbx-used-weight", HeaderValue::from_static("1234"));
        let mut got = used_weight_headers(&h);
        got.sort();
        assert_eq!(got, vec![(10_000, 7), (60_000, 1234)]);
    }
}
