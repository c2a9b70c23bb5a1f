"""The job klines' indicator models replace, as a Python user writes it: read the candle
tables, compute SMA, EMA, RSI, MACD and Bollinger bands per symbol with pandas and TA-Lib,
and `create or replace` one table per interval. `cargo bench --bench models -- --indicators`
runs it beside `klines run -s tag:indicators` on the same DuckDB file and compares.

usage: indicators_job.py DATABASE.duckdb SCHEMA
"""

import sys

import duckdb
import numpy as np
import pandas as pd
import talib

INTERVALS = ["1M", "5M", "15M", "1H", "1D"]


def indicators(closes: np.ndarray) -> dict:
    out = {
        "sma_20": talib.SMA(closes, 20),
        "sma_50": talib.SMA(closes, 50),
        "ema_20": talib.EMA(closes, 20),
        "ema_50": talib.EMA(closes, 50),
        "rsi_14": talib.RSI(closes, 14),
    }
    out["macd"], out["macd_signal"], out["macd_hist"] = talib.MACD(closes, 12, 26, 9)
    out["bb_upper"], out["bb_middle"], out["bb_lower"] = talib.BBANDS(closes, 20, 2, 2)
    return out


def main() -> None:
    database, schema = sys.argv[1], sys.argv[2]
    con = duckdb.connect(database)
    con.execute("create schema if not exists job")
    for interval in INTERVALS:
        candles = con.execute(
            f'select symbol, open_time, close::double as close from {schema}."TRADES_OHLC_{interval}" '
            "where is_complete order by symbol, open_time"
        ).df()
        frames = []
        for symbol, rows in candles.groupby("symbol", sort=False):
            closes = rows["close"].to_numpy()
            frame = pd.DataFrame(indicators(closes))
            frame.insert(0, "open_time", rows["open_time"].to_numpy())
            frame.insert(0, "symbol", symbol)
            frames.append(frame)
        table = pd.concat(frames, ignore_index=True)
        con.register("computed", table)
        con.execute(f'create or replace table job."INDICATORS_{interval}" as select * from computed')
        con.unregister("computed")
        print(f"INDICATORS_{interval}: {len(table)} rows")
    con.close()


if __name__ == "__main__":
    main()
