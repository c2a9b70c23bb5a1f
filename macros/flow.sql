{#
  Flow metrics per bucket, from candles with the columns of TRADES_OHLC_* (models/flow/schema.yml
  defines each one). Windows count bars (the rows that exist: an outage's missing buckets are
  not bars), per symbol, in time order:
  - `window` bars of log returns for the realised volatility;
  - `whale_window` bars before a bucket for its volume norm; a bucket is a whale when its volume
    is positive and at least `whale_ratio` times the mean volume of those bars.
  Window sums are exact (volumes as decimals, squared returns as decimals of 18 places), so a
  value does not depend on how a warehouse evaluates the window or where a run started.
  The model's `lookback` config must reach back over the longest window (and over a UTC day, for
  the day-anchored VWAP), so that an incremental run reads every bar a rewritten row depends on.
#}

{# A number as a double, for ratios and logarithms that have no exact decimal. #}
{% macro to_double(expr) %}{{ adapter.dispatch('to_double')(expr) }}{% endmacro %}
{% macro duckdb__to_double(expr) %}cast({{ expr }} as double){% endmacro %}
{% macro postgres__to_double(expr) %}cast({{ expr }} as double precision){% endmacro %}
{% macro snowflake__to_double(expr) %}cast({{ expr }} as float){% endmacro %}

{#
  num / den rounded half up to 8 decimals, exactly, for non-negative decimals of at most 8
  places (volumes): an integer division of their units on every warehouse, because DuckDB
  divides decimals as doubles (off by 1e-8 now and then). NULL when den is 0 or either is NULL.
  With n and d the units: round(n / d) at 8 places = floor((2 * n * 1e8 + d) / (2 * d)) * 1e-8.
#}
{% macro exact_div8(num, den) %}{{ adapter.dispatch('exact_div8')(num, den) }}{% endmacro %}
{% macro duckdb__exact_div8(num, den) -%}
cast(cast((cast(({{ num }}) * 100000000 as hugeint) * 200000000 + cast(({{ den }}) * 100000000 as hugeint)) // nullif(cast(({{ den }}) * 100000000 as hugeint) * 2, 0) as decimal(38, 0)) * 0.00000001 as decimal(38, 8))
{%- endmacro %}
{% macro postgres__exact_div8(num, den) -%}
cast(div(({{ num }}) * 200000000 + ({{ den }}), nullif(({{ den }}) * 2, 0)) * 0.00000001 as numeric(38, 8))
{%- endmacro %}
{% macro snowflake__exact_div8(num, den) -%}
cast(((({{ num }}) * 200000000 + ({{ den }})) - mod(({{ num }}) * 200000000 + ({{ den }}), nullif(({{ den }}) * 2, 0))) / nullif(({{ den }}) * 2, 0) * 0.00000001 as number(38, 8))
{%- endmacro %}

{% macro flow_metrics(relation, window, whale_window, whale_ratio) %}
with bars as (
    select
        '{{ var("exchange", "binance") }}' as exchange,
        symbol,
        open_time,
        high,
        low,
        close,
        volume,
        quote_volume,
        taker_buy_base_volume,
        {{ bucket('open_time', 86400) }} as utc_day,
        ln({{ to_double('close') }} / {{ to_double('lag(close) over (partition by symbol order by open_time)') }}) as log_return
    from {{ relation }}
    where is_complete
),
windows as (
    select
        bars.*,
        sum(quote_volume) over (partition by symbol, utc_day order by open_time rows between unbounded preceding and current row) as day_quote_volume,
        sum(volume) over (partition by symbol, utc_day order by open_time rows between unbounded preceding and current row) as day_volume,
        sum(cast(log_return * log_return as decimal(38, 18))) over (partition by symbol order by open_time rows between {{ window - 1 }} preceding and current row) as sum_sq_returns,
        count(log_return) over (partition by symbol order by open_time rows between {{ window - 1 }} preceding and current row) as returns_in_window,
        {{ to_double('sum(volume) over (partition by symbol order by open_time rows between ' ~ whale_window ~ ' preceding and 1 preceding)') }}
            / nullif(count(*) over (partition by symbol order by open_time rows between {{ whale_window }} preceding and 1 preceding), 0) as mean_volume_before,
        count(*) over (partition by symbol order by open_time rows between {{ whale_window }} preceding and 1 preceding) as bars_before
    from bars
)
select
    exchange,
    symbol,
    open_time,
    high,
    low,
    close,
    volume,
    {{ exact_div8('quote_volume', 'volume') }} as vwap,
    {{ exact_div8('day_quote_volume', 'day_volume') }} as vwap_day,
    {{ to_double('taker_buy_base_volume') }} / nullif({{ to_double('volume') }}, 0) as taker_buy_share,
    (2 * {{ to_double('taker_buy_base_volume') }} - {{ to_double('volume') }}) / nullif({{ to_double('volume') }}, 0) as imbalance,
    log_return,
    case when returns_in_window = {{ window }} then sqrt({{ to_double('sum_sq_returns') }}) end as realized_vol,
    case when bars_before = {{ whale_window }} then {{ to_double('volume') }} / nullif(mean_volume_before, 0) end as volume_ratio,
    case when bars_before = {{ whale_window }} then volume > 0 and (mean_volume_before = 0 or {{ to_double('volume') }} / mean_volume_before >= {{ whale_ratio }}) end as is_whale
from windows
{% endmacro %}
