{{ config(
    materialized='incremental',
    event_time='open_time',
    batch_key='symbol',
    time_grain='1h',
    unique_key=['symbol', 'open_time'],
    tags=['ohlc'],
) }}

-- 1h candles per symbol (UTC), rolled up from TRADES_OHLC_15M with the source's rule for minutes without trades (macros/ohlc.sql).
{{ ohlc_rollup(ref('TRADES_OHLC_15M'), 3600) }}
