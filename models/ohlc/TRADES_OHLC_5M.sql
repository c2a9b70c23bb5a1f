{{ config(
    materialized='incremental',
    event_time='open_time',
    batch_key='symbol',
    time_grain='5m',
    unique_key=['symbol', 'open_time'],
    tags=['ohlc'],
) }}

-- 5m candles per symbol (UTC), rolled up from TRADES_OHLC_1M with the source's rule for minutes without trades (macros/ohlc.sql).
{{ ohlc_rollup(ref('TRADES_OHLC_1M'), 300) }}
