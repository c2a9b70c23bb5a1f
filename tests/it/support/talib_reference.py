"""Compares klines' indicator tables with TA-Lib (PyPI's `ta-lib`, which bundles the C library).

Reads a JSON file written by tests/it/indicators.rs:
  {"params": {"sma": [20, 50], "ema": [20, 50], "rsi": 14, "macd": [12, 26, 9], "bbands": [20, 2]},
   "series": [{"name": "INDICATORS_1M BTCUSDT", "closes": ["30000.12", ...],
               "values": {"sma_20": [null, ..., 30001.5], ...}}]}
Closes are exact decimal strings; Python's float() reads each as the nearest double, the value
klines computes from too. For every indicator value: the same first bar (TA-Lib's NaN where
klines has NULL, and nowhere else), and a relative difference under 1e-9.

Prints one JSON line: {"compared": {column: values compared}, "max_rel": {column: ...},
"failures": [first few messages]}; exits 1 when anything differs.
"""

import json
import math
import sys

import numpy as np
import talib

TOLERANCE = 1e-9


def reference(closes, p):
    c = np.array(closes, dtype=np.float64)
    out = {}
    for n in p["sma"]:
        out[f"sma_{n}"] = talib.SMA(c, timeperiod=n)
    for n in p["ema"]:
        out[f"ema_{n}"] = talib.EMA(c, timeperiod=n)
    out[f"rsi_{p['rsi']}"] = talib.RSI(c, timeperiod=p["rsi"])
    f, s, g = p["macd"]
    out["macd"], out["macd_signal"], out["macd_hist"] = talib.MACD(
        c, fastperiod=f, slowperiod=s, signalperiod=g
    )
    n, d = p["bbands"]
    out["bb_upper"], out["bb_middle"], out["bb_lower"] = talib.BBANDS(
        c, timeperiod=n, nbdevup=d, nbdevdn=d, matype=0
    )
    return out


def main():
    data = json.load(open(sys.argv[1]))
    p = data["params"]
    compared, max_rel, failures = {}, {}, []
    for series in data["series"]:
        closes = [float(x) for x in series["closes"]]
        for col, want in reference(closes, p).items():
            got = series["values"][col]
            if len(got) != len(want):
                failures.append(f"{series['name']} {col}: {len(got)} rows, TA-Lib has {len(want)}")
                continue
            for i, (g, w) in enumerate(zip(got, want)):
                at = f"{series['name']} {col} bar {i}"
                if math.isnan(w):
                    if g is not None:
                        failures.append(f"{at}: klines has {g!r}, TA-Lib has none yet")
                    continue
                if g is None:
                    failures.append(f"{at}: klines has none, TA-Lib has {w!r}")
                    continue
                rel = 0.0 if g == w else abs(g - w) / max(abs(g), abs(w))
                compared[col] = compared.get(col, 0) + 1
                max_rel[col] = max(max_rel.get(col, 0.0), rel)
                if rel >= TOLERANCE:
                    failures.append(f"{at}: klines {g!r}, TA-Lib {w!r} (relative difference {rel:.3g})")
    print(json.dumps({"compared": compared, "max_rel": max_rel, "failures": failures[:20]}))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
