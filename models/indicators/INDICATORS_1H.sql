{{ config(
    materialized='indicators',
    event_time='open_time',
    batch_key='symbol',
    time_grain='1h',
    sma=var('sma_periods', [20, 50]),
    ema=var('ema_periods', [20, 50]),
    rsi=var('rsi_period', 14),
    macd=var('macd_periods', [12, 26, 9]),
    bbands=var('bbands', [20, 2]),
    read_rows=var('indicator_read_rows', 100000),
    tags=['indicators'],
) }}

-- SMA, EMA, RSI, MACD and Bollinger bands per symbol over the closed 1h candles, computed by
-- klines in Rust (the indicators materialization); models/indicators/schema.yml defines them.
select '{{ var("exchange", "binance") }}' as exchange, symbol, open_time, close
from {{ ref('TRADES_OHLC_1H') }}
where is_complete
