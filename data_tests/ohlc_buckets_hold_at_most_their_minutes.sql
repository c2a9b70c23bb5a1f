-- A 5m candle is made of at most five 1m candles, a 15m one of at most fifteen, an hour of 60,
-- a day of 1440.
select 'TRADES_OHLC_5M' as model, symbol, open_time, candles from {{ ref('TRADES_OHLC_5M') }} where candles > 5
union all
select 'TRADES_OHLC_15M', symbol, open_time, candles from {{ ref('TRADES_OHLC_15M') }} where candles > 15
union all
select 'TRADES_OHLC_1H', symbol, open_time, candles from {{ ref('TRADES_OHLC_1H') }} where candles > 60
union all
select 'TRADES_OHLC_1D', symbol, open_time, candles from {{ ref('TRADES_OHLC_1D') }} where candles > 1440
