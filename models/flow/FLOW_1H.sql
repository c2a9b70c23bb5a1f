{{ config(
    materialized='incremental',
    event_time='open_time',
    batch_key='symbol',
    time_grain='1d',
    lookback=var('flow_lookback', '4d'),
    unique_key=['symbol', 'open_time'],
    tags=['flow'],
) }}

-- Flow metrics per symbol and closed 1h candle (macros/flow.sql; defined in models/flow/schema.yml).
-- Rebuilt by whole UTC days (for the day-anchored VWAP), reading `lookback` further back.
{{ flow_metrics(
    ref('TRADES_OHLC_1H'),
    window=var('realized_vol_window', 60),
    whale_window=var('whale_window', 60),
    whale_ratio=var('whale_ratio', 5),
) }}
