{{ config(
    materialized='incremental',
    event_time='open_time',
    batch_key='symbol',
    time_grain='1m',
    unique_key=['symbol', 'open_time'],
    tags=['ohlc'],
) }}

-- One row per symbol and closed minute, from the raw 1m klines of one exchange and market.
select
    exchange,
    symbol,
    open_time,
    open,
    high,
    low,
    close,
    volume,
    quote_volume,
    trades,
    taker_buy_base_volume,
    taker_buy_quote_volume,
    cast(1 as bigint) as candles,
    true as is_complete
from {{ source('binance', 'klines') }}
where exchange = '{{ var("exchange", "binance") }}'
  and market = '{{ var("market", "spot") }}'
  and {{ adapter.quote('interval') }} = '1m'
