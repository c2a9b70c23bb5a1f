//! The periods of an indicators model, from its config (`sma`, `ema`, `rsi`, `macd`,
//! `bbands`; the project's models set them from vars).

use serde_json::Value as Json;

use super::compute::Params;

/// The model's periods from its config (`sma`, `ema`, `rsi`, `macd`, `bbands`), checked.
pub fn params(config: &serde_json::Map<String, Json>) -> Result<Params, String> {
    let mut p = Params::default();
    let list = |key: &str| -> Result<Option<Vec<Json>>, String> {
        match config.get(key) {
            None => Ok(None),
            Some(Json::Array(a)) => Ok(Some(a.clone())),
            Some(v) => Ok(Some(vec![v.clone()])),
        }
    };
    let int = |key: &str, v: &Json| -> Result<usize, String> {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .map(|n| n as usize)
            .ok_or_else(|| format!("{key}: {v} is not a whole number"))
    };
    if let Some(a) = list("sma")? {
        p.sma = a.iter().map(|v| int("sma", v)).collect::<Result<_, _>>()?;
    }
    if let Some(a) = list("ema")? {
        p.ema = a.iter().map(|v| int("ema", v)).collect::<Result<_, _>>()?;
    }
    if let Some(v) = config.get("rsi") {
        p.rsi = int("rsi", v)?;
    }
    if let Some(a) = list("macd")? {
        let n = a
            .iter()
            .map(|v| int("macd", v))
            .collect::<Result<Vec<_>, _>>()?;
        let [f, s, g] = n[..] else {
            return Err("macd: give [fast, slow, signal]".into());
        };
        p.macd = (f, s, g);
    }
    if let Some(a) = list("bbands")? {
        let [n, d] = &a[..] else {
            return Err("bbands: give [period, deviations]".into());
        };
        let d = d
            .as_f64()
            .or_else(|| d.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| format!("bbands: {d} is not a number"))?;
        p.bbands = (int("bbands", n)?, d);
    }
    p.check()?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn periods_come_from_config_and_bad_ones_are_named() {
        let m = |v: Json| v.as_object().unwrap().clone();
        let p = params(&m(
            json!({"sma": [10, 30], "ema": 9, "rsi": "7", "macd": [5, 35, 5], "bbands": [10, 1.5]}),
        ))
        .unwrap();
        assert_eq!(p.sma, [10, 30]);
        assert_eq!(p.ema, [9]);
        assert_eq!(p.rsi, 7);
        assert_eq!(p.macd, (5, 35, 5));
        assert_eq!(p.bbands, (10, 1.5));
        assert_eq!(params(&m(json!({}))).unwrap(), Params::default());
        for (bad, says) in [
            (json!({"sma": ["x"]}), "sma: \"x\" is not a whole number"),
            (json!({"macd": [12, 26]}), "macd: give [fast, slow, signal]"),
            (json!({"bbands": [20]}), "bbands: give [period, deviations]"),
            (
                json!({"rsi": 1}),
                "rsi: period 1 is not between 2 and 100000",
            ),
        ] {
            assert_eq!(params(&m(bad)).unwrap_err(), says);
        }
    }
}
