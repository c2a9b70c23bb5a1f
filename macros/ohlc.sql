{#
  Coarse candles from finer ones, exact per source, by what the source provides:
  - Binance marks a minute without trades with a filler (trades = 0, open = high = low = close
    = the previous close, volume 0; see the fixtures' README in ../shared). Coarse candles take
    open, high and low from traded minutes only, close from the last minute, and sum
    everything else over all minutes. A bucket without any trade is itself a filler.
  - Coinbase publishes no candle for a minute without trades and reports no trade count
    (trades is NULL): every candle it has is a traded one, and a bucket without any candle
    has none either. Trades, quote and taker volumes stay NULL.
  So "traded" is `trades is null or trades > 0`. Each macro has a variant per warehouse,
  picked by adapter.dispatch.
#}

{# Milliseconds since the epoch (no interval arithmetic: DuckDB keeps TIMESTAMPTZ math in ICU). #}
{% macro epoch_ms(column) %}{{ adapter.dispatch('epoch_ms')(column) }}{% endmacro %}
{% macro duckdb__epoch_ms(column) %}epoch_ms({{ column }}){% endmacro %}
{% macro postgres__epoch_ms(column) %}(extract(epoch from {{ column }}) * 1000){% endmacro %}
{% macro snowflake__epoch_ms(column) %}date_part(epoch_millisecond, {{ column }}){% endmacro %}

{# The UTC bucket of `seconds` seconds holding `column` (aligned to the epoch, so to days). #}
{% macro bucket(column, seconds) %}{{ adapter.dispatch('bucket')(column, seconds) }}{% endmacro %}
{% macro duckdb__bucket(column, seconds) %}to_timestamp((epoch_ms({{ column }}) // {{ seconds * 1000 }}) * {{ seconds }}){% endmacro %}
{% macro postgres__bucket(column, seconds) %}to_timestamp(floor(extract(epoch from {{ column }}) / {{ seconds }}) * {{ seconds }}){% endmacro %}
{% macro snowflake__bucket(column, seconds) %}to_timestamp_ntz(floor(date_part(epoch_second, {{ column }}) / {{ seconds }}) * {{ seconds }}){% endmacro %}

{# `value` of the row with the smallest `order_by` among rows where `condition` holds. #}
{% macro first_where(value, order_by, condition) %}{{ adapter.dispatch('first_where')(value, order_by, condition) }}{% endmacro %}
{% macro duckdb__first_where(value, order_by, condition) %}arg_min({{ value }}, {{ order_by }}) filter (where {{ condition }}){% endmacro %}
{% macro postgres__first_where(value, order_by, condition) %}(array_agg({{ value }} order by {{ order_by }}) filter (where {{ condition }}))[1]{% endmacro %}
{% macro snowflake__first_where(value, order_by, condition) %}min_by({{ value }}, iff({{ condition }}, {{ order_by }}, null)){% endmacro %}

{# `value` of the row with the largest `order_by`. #}
{% macro last_by(value, order_by) %}{{ adapter.dispatch('last_by')(value, order_by) }}{% endmacro %}
{% macro duckdb__last_by(value, order_by) %}arg_max({{ value }}, {{ order_by }}){% endmacro %}
{% macro postgres__last_by(value, order_by) %}(array_agg({{ value }} order by {{ order_by }} desc))[1]{% endmacro %}
{% macro snowflake__last_by(value, order_by) %}max_by({{ value }}, {{ order_by }}){% endmacro %}

{# The exact sum of a price or volume column: a decimal of scale 8 on every warehouse (fakesnow's
   sum of a NUMBER(38, 8) is a float otherwise). #}
{% macro exact_sum(column) %}cast(sum({{ column }}) as decimal(38, 8)){% endmacro %}

{#
  Candles of `seconds` seconds from the candles of `relation` (which has the columns of
  TRADES_OHLC_1M). `is_complete` is true once the loaded 1m data covers the whole bucket (from
  the first loaded minute to the last): the newest bucket, still forming, and the first one
  when a backfill began inside it, are kept and marked false.
#}
{% macro ohlc_rollup(relation, seconds) %}
with buckets as (
    select
        symbol,
        {{ bucket('open_time', seconds) }} as open_time,
        {{ first_where('open', 'open_time', '(trades is null or trades > 0)') }} as traded_open,
        max(case when trades is null or trades > 0 then high end) as traded_high,
        min(case when trades is null or trades > 0 then low end) as traded_low,
        {{ last_by('close', 'open_time') }} as close,
        {{ exact_sum('volume') }} as volume,
        {{ exact_sum('quote_volume') }} as quote_volume,
        cast(sum(trades) as bigint) as trades,
        {{ exact_sum('taker_buy_base_volume') }} as taker_buy_base_volume,
        {{ exact_sum('taker_buy_quote_volume') }} as taker_buy_quote_volume,
        cast(sum(candles) as bigint) as candles
    from {{ relation }}
    group by 1, 2
),

coverage as (
    select symbol, min(range_start) as covered_from, max(range_end) as covered_until
    from {{ source('binance', 'klines_load_history') }}
    where exchange = '{{ var("exchange", "binance") }}' and market = '{{ var("market", "spot") }}'
      and {{ adapter.quote('interval') }} = '1m'
    group by symbol
)

select
    -- From the var, not the parent: a parent built before the column existed lacks it.
    cast('{{ var("exchange", "binance") }}' as varchar) as exchange,
    b.symbol,
    b.open_time,
    coalesce(b.traded_open, b.close) as open,
    coalesce(b.traded_high, b.close) as high,
    coalesce(b.traded_low, b.close) as low,
    b.close,
    b.volume,
    b.quote_volume,
    b.trades,
    b.taker_buy_base_volume,
    b.taker_buy_quote_volume,
    b.candles,
    coalesce(
        {{ epoch_ms('c.covered_from') }} <= {{ epoch_ms('b.open_time') }}
        and {{ epoch_ms('c.covered_until') }} >= {{ epoch_ms('b.open_time') }} + {{ seconds * 1000 }},
        false
    ) as is_complete
from buckets as b
left join coverage as c on c.symbol = b.symbol
{% endmacro %}
