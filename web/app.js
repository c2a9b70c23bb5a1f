// klines dashboard: candles and volume of the warehouse's TRADES_OHLC tables, with the
// INDICATORS tables' moving averages, Bollinger bands, RSI and MACD where they are built.
// State lives in the URL (?symbol=&interval=&range=), so a view can be shared and reloaded.
(() => {
  'use strict';
  const LC = window.LightweightCharts;
  const $ = (id) => document.getElementById(id);
  const DAY = 86400000;
  const RANGES = { '1D': DAY, '1W': 7 * DAY, '1M': 30 * DAY, '1Y': 365 * DAY, 'all': null };
  const PAGE = 1000; // bars per request when loading older ones
  const MAX = 10000; // the API's most per request
  const INTERVAL_MS = { '1m': 60000, '5m': 300000, '15m': 900000, '1h': 3600000, '1d': DAY };
  const FORMING = '#8b949e';

  const url = new URLSearchParams(location.search);
  const state = {
    symbol: url.get('symbol'),
    interval: url.get('interval') || '5m',
    range: RANGES.hasOwnProperty(url.get('range')) ? url.get('range') : 'all',
  };
  let intervals = [];
  let candles = []; // as the API sent them (exact decimal strings), oldest first
  let byTime = new Map(); // chart time (UTC seconds) -> candle
  let exhausted = false; // no older bars in the table
  let loading = false;
  let generation = 0; // a newer view replaces what an older request would draw
  let live = null; // the EventSource of new and changed candles
  let hovering = false;

  const chart = LC.createChart($('chart'), {
    autoSize: true,
    layout: { background: { color: '#0f1419' }, textColor: '#c9d1d9', attributionLogo: true },
    grid: { vertLines: { color: '#1c2128' }, horzLines: { color: '#1c2128' } },
    timeScale: { timeVisible: true, secondsVisible: false, borderColor: '#30363d' },
    rightPriceScale: { borderColor: '#30363d' },
    crosshair: { mode: LC.CrosshairMode.Normal },
    localization: { timeFormatter: (t) => utc(t * 1000) },
  });
  const candleSeries = chart.addSeries(LC.CandlestickSeries, {
    upColor: '#26a69a', downColor: '#ef5350', borderVisible: false,
    wickUpColor: '#26a69a', wickDownColor: '#ef5350',
  });
  const volumeSeries = chart.addSeries(LC.HistogramSeries, {
    priceFormat: { type: 'volume' }, priceScaleId: '', lastValueVisible: false, priceLineVisible: false,
  });
  volumeSeries.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });

  // Indicators (models/indicators): moving averages and Bollinger bands over the candles, RSI
  // and MACD in panes of their own; drawn when the interval's INDICATORS table is built.
  const IND_COLORS = { sma_20: '#e3b341', sma_50: '#d2a8ff', ema_20: '#58a6ff', ema_50: '#ff9bce' };
  const indSeries = new Map(); // column -> its series
  let indicatorPoints = []; // as the API sent them, oldest first
  let indByTime = new Map(); // chart time (UTC seconds) -> point
  let pricePrecision = 2; // the candles' decimals

  // The API answers in columns (an array per field); the page keeps one object per bar.
  const CANDLE_FIELDS = ['open', 'high', 'low', 'close', 'volume', 'quote_volume', 'trades',
    'taker_buy_base_volume', 'taker_buy_quote_volume'];
  // What the chart and the legend show: the quote volumes stay on the server.
  const DRAWN = 'open,high,low,close,volume,trades,taker_buy_base_volume';
  function candlesOf(cols) {
    const incomplete = new Set(cols.incomplete);
    return cols.time.map((time, i) => {
      const c = { time };
      for (const f of CANDLE_FIELDS) c[f] = cols[f] ? cols[f][i] : null;
      c.is_complete = !incomplete.has(time);
      return c;
    });
  }
  function pointsOf(body) {
    return body.time.map((time, i) => {
      const p = { time };
      for (const c of body.columns) p[c] = body.values[c][i];
      return p;
    });
  }

  function indicatorSeries(column) {
    if (indSeries.has(column)) return indSeries.get(column);
    const quiet = { lineWidth: 1, priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false };
    const line = (pane, opts) => chart.addSeries(LC.LineSeries, Object.assign({}, quiet, opts), pane);
    let s;
    if (column.startsWith('bb_')) s = line(0, { color: '#6e7681', lineStyle: column === 'bb_middle' ? 2 : 0 });
    else if (column.startsWith('sma_') || column.startsWith('ema_')) s = line(0, { color: IND_COLORS[column] || '#e3b341' });
    else if (column.startsWith('rsi_')) {
      s = line(1, { color: '#d2a8ff', lastValueVisible: true });
      for (const price of [70, 30]) s.createPriceLine({ price, color: '#30363d', lineWidth: 1, lineStyle: 2, axisLabelVisible: false });
    } else if (column === 'macd_hist') s = chart.addSeries(LC.HistogramSeries, { priceLineVisible: false, lastValueVisible: false }, 2);
    else if (column === 'macd_signal') s = line(2, { color: '#e3b341' });
    else s = line(2, { color: '#58a6ff', lastValueVisible: true });
    const panes = chart.panes();
    for (const i of [1, 2]) if (panes[i] && panes[i].getHeight() > 140) panes[i].setHeight(120);
    indSeries.set(column, s);
    return s;
  }

  function indicatorPoint(column, p) {
    const point = { time: p.time / 1000, value: p[column] };
    if (column === 'macd_hist') point.color = p[column] >= 0 ? '#26a69a88' : '#ef535088';
    return point;
  }

  function drawIndicators(columns) {
    indByTime = new Map(indicatorPoints.map((p) => [p.time / 1000, p]));
    for (const c of columns) {
      indicatorSeries(c).setData(indicatorPoints.filter((p) => p[c] !== null).map((p) => indicatorPoint(c, p)));
    }
    for (const [c, s] of indSeries) if (!columns.includes(c)) s.setData([]);
    // MACD is a price difference: as many decimals as the prices, and two more.
    const precision = Math.min(10, pricePrecision + 2);
    for (const c of ['macd', 'macd_signal', 'macd_hist']) {
      if (indSeries.has(c)) indSeries.get(c).applyOptions({ priceFormat: { type: 'price', precision, minMove: Math.pow(10, -precision) } });
    }
    window.klines.indicators = columns;
  }

  // The indicators of every loaded candle (a table not built means candles only).
  async function loadIndicators(mine) {
    if (!candles.length) { indicatorPoints = []; drawIndicators([]); return; }
    try {
      const body = await api('/api/indicators', {
        symbol: state.symbol, interval: state.interval, from: candles[0].time, limit: MAX, digits: 8,
      });
      if (mine !== generation) return;
      indicatorPoints = pointsOf(body);
      drawIndicators(body.columns);
    } catch (e) {
      if (mine === generation) { indicatorPoints = []; drawIndicators([]); }
    }
  }

  // After live candles: the indicators from the newest drawn point on.
  async function refreshIndicators(mine) {
    const columns = window.klines.indicators || [];
    if (!indicatorPoints.length || !columns.length) return loadIndicators(mine);
    const last = indicatorPoints[indicatorPoints.length - 1].time;
    try {
      const body = await api('/api/indicators', { symbol: state.symbol, interval: state.interval, from: last, limit: MAX, digits: 8 });
      if (mine !== generation) return;
      for (const p of pointsOf(body)) {
        const end = indicatorPoints[indicatorPoints.length - 1];
        if (p.time < end.time) continue;
        if (p.time === end.time) indicatorPoints[indicatorPoints.length - 1] = p; else indicatorPoints.push(p);
        indByTime.set(p.time / 1000, p);
        for (const c of columns) if (p[c] !== null) indicatorSeries(c).update(indicatorPoint(c, p));
      }
    } catch (e) { /* the candles stay live */ }
  }

  function utc(ms) {
    const d = new Date(ms).toISOString(); // always UTC
    return d.slice(0, 10) + ' ' + d.slice(11, 16) + ' UTC';
  }

  // Exact decimal text without trailing zeros ("42000.10000000" -> "42000.1").
  function trim(s) {
    if (s === null || s === undefined) return '–';
    return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
  }

  function decimals(s) {
    const t = trim(s);
    const i = t.indexOf('.');
    return i < 0 ? 0 : t.length - i - 1;
  }

  function status(text, error) {
    const el = $('status');
    el.textContent = text;
    el.className = error ? 'error' : '';
  }

  function toBar(c) {
    const bar = { time: c.time / 1000, open: +c.open, high: +c.high, low: +c.low, close: +c.close };
    if (!c.is_complete) Object.assign(bar, { color: FORMING, wickColor: FORMING, borderColor: FORMING });
    return bar;
  }

  function toVolume(c) {
    const up = +c.close >= +c.open;
    return {
      time: c.time / 1000, value: +c.volume,
      color: !c.is_complete ? '#8b949e55' : up ? '#26a69a66' : '#ef535066',
    };
  }

  function draw() {
    const precision = Math.min(8, Math.max(2, ...candles.slice(-200).map((c) => decimals(c.close))));
    pricePrecision = precision;
    candleSeries.applyOptions({ priceFormat: { type: 'price', precision, minMove: Math.pow(10, -precision) } });
    candleSeries.setData(candles.map(toBar));
    volumeSeries.setData(candles.map(toVolume));
    byTime = new Map(candles.map((c) => [c.time / 1000, c]));
    legend(candles[candles.length - 1]);
  }

  function legend(c) {
    const el = $('legend');
    if (!c) { el.textContent = state.symbol ? 'no candles' : ''; return; }
    const cls = !c.is_complete ? 'forming' : +c.close >= +c.open ? 'up' : 'down';
    const share = c.taker_buy_base_volume !== null && +c.volume > 0
      ? (100 * (+c.taker_buy_base_volume) / (+c.volume)).toFixed(1) + '%' : '–';
    const parts = [
      ['', `${state.symbol} · ${state.interval} · ${utc(c.time)}${c.is_complete ? '' : ' (forming)'}`],
      ['O', trim(c.open)], ['H', trim(c.high)], ['L', trim(c.low)], ['C', trim(c.close)],
      ['V', trim(c.volume)], ['Trades', c.trades === null ? '–' : String(c.trades)], ['Taker buy', share],
    ];
    const p = indByTime.get(c.time / 1000);
    for (const col of (p && window.klines.indicators) || []) {
      if (col.startsWith('sma_') || col.startsWith('ema_') || col.startsWith('rsi_') || col === 'macd') {
        parts.push([col.toUpperCase().replace('_', ''), p[col] === null ? '–' : (+p[col].toPrecision(8)).toString()]);
      }
    }
    el.replaceChildren(...parts.flatMap(([k, v]) => {
      const value = document.createElement('span');
      value.textContent = v;
      value.dataset.field = k || 'title';
      if (k === '') return [value];
      value.className = cls;
      const key = document.createElement('span');
      key.className = 'k';
      key.textContent = k + ' ';
      return [key, value];
    }));
  }

  async function api(path, params) {
    const q = new URLSearchParams(params);
    const res = await fetch(`${path}?${q}`, { credentials: 'same-origin' });
    const body = await res.json().catch(() => ({ error: res.statusText }));
    if (!res.ok) throw new Error(body.error || res.statusText);
    return body;
  }

  function saveUrl() {
    const q = new URLSearchParams({ symbol: state.symbol || '', interval: state.interval, range: state.range });
    history.replaceState(null, '', `?${q}`);
  }

  function buttons(navId, names, current, pick) {
    $(navId).replaceChildren(...names.map((name) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = name;
      b.dataset.value = name;
      b.setAttribute('aria-pressed', String(name === current));
      b.addEventListener('click', () => pick(name));
      return b;
    }));
  }

  // The newest bars, enough to cover the range preset; the chart then shows that range.
  // Enough bars for the range preset and some to pan back over; older ones come lazily.
  function initialLimit() {
    const span = RANGES[state.range];
    if (span === null) return MAX;
    return Math.min(MAX, Math.max(500, Math.ceil(1.5 * span / INTERVAL_MS[state.interval])));
  }

  // New candles and the forming one as they land (klines stream --serve pushes them; klines
  // serve looks every few seconds).
  function follow() {
    if (live) live.close();
    const since = candles.length ? candles[candles.length - 1].time : 0;
    const q = new URLSearchParams({ symbol: state.symbol, interval: state.interval, since });
    const mine = generation;
    live = new EventSource(`/api/live?${q}`);
    live.addEventListener('candles', (e) => {
      if (mine !== generation) return;
      for (const c of candlesOf(JSON.parse(e.data))) {
        const last = candles[candles.length - 1];
        if (last && c.time < last.time) continue;
        if (last && c.time === last.time) candles[candles.length - 1] = c; else candles.push(c);
        candleSeries.update(toBar(c));
        volumeSeries.update(toVolume(c));
        byTime.set(c.time / 1000, c);
      }
      window.klines.updates += 1;
      refreshIndicators(mine);
      if (!hovering) legend(candles[candles.length - 1]);
      status(`${candles.length} candles, live`);
    });
  }

  async function load() {
    const mine = ++generation;
    if (live) { live.close(); live = null; }
    exhausted = false;
    window.klines.ready = false;
    saveUrl();
    buttons('intervals', intervals, state.interval, (i) => { state.interval = i; load(); });
    if (!state.symbol) { candles = []; draw(); showRange(); return; }
    status('loading…');
    try {
      const limit = initialLimit();
      const body = await api('/api/candles', { symbol: state.symbol, interval: state.interval, limit, fields: DRAWN });
      if (mine !== generation) return;
      candles = candlesOf(body);
      exhausted = candles.length < limit;
      draw();
      showRange();
      await loadIndicators(mine);
      if (mine !== generation) return;
      legend(candles[candles.length - 1]);
      status(`${candles.length} candles`);
      follow();
      window.klines.ready = true;
    } catch (e) {
      if (mine === generation) status(e.message, true);
    }
  }

  // A range the loaded bars do not cover loads again, enough for it.
  function pickRange(r) {
    state.range = r;
    saveUrl();
    const span = RANGES[r];
    const covered = candles.length && (exhausted || (span !== null
      && candles[0].time <= candles[candles.length - 1].time - span));
    if (covered) showRange(); else load();
  }

  function showRange() {
    buttons('ranges', Object.keys(RANGES), state.range, pickRange);
    const span = RANGES[state.range];
    if (!candles.length) return;
    const last = candles[candles.length - 1].time;
    if (span === null) { chart.timeScale().fitContent(); return; }
    chart.timeScale().setVisibleRange({ from: (last - span) / 1000, to: last / 1000 });
  }

  // Older bars as the user pans back to the oldest loaded one.
  async function loadOlder() {
    if (loading || exhausted || !candles.length) return;
    loading = true;
    const mine = generation;
    try {
      const body = await api('/api/candles', {
        symbol: state.symbol, interval: state.interval, to: candles[0].time, limit: PAGE, fields: DRAWN,
      });
      if (mine !== generation) return;
      const older = candlesOf(body);
      exhausted = older.length < PAGE;
      if (older.length) {
        const ts = chart.timeScale();
        const before = ts.getVisibleLogicalRange();
        candles = older.concat(candles);
        draw();
        if (before) ts.setVisibleLogicalRange({ from: before.from + older.length, to: before.to + older.length });
        status(`${candles.length} candles`);
        loadIndicators(mine);
      }
    } catch (e) {
      status(e.message, true);
    } finally {
      loading = false;
    }
  }

  chart.timeScale().subscribeVisibleLogicalRangeChange((r) => {
    if (r && r.from < 20) loadOlder();
  });
  chart.subscribeCrosshairMove((p) => {
    hovering = !!(p && p.time !== undefined && byTime.get(p.time));
    legend((hovering && byTime.get(p.time)) || candles[candles.length - 1]);
  });

  // For tests and the curious: what the chart holds.
  window.klines = {
    ready: false,
    updates: 0,
    state,
    candles: () => candles,
    bars: () => candleSeries.data(),
    loadedAll: () => exhausted, // no older bars left in the table
    loading: () => loading,
    chart,
    series: candleSeries,
    indicators: [], // the indicator columns drawn
    indicatorData: (column) => (indSeries.get(column) ? indSeries.get(column).data() : []),
    panes: () => chart.panes().length,
  };

  (async () => {
    try {
      const body = await api('/api/symbols', {});
      intervals = body.intervals;
      const select = $('symbol');
      select.replaceChildren(...body.symbols.map((s) => new Option(s, s)));
      if (!body.symbols.includes(state.symbol)) state.symbol = body.symbols[0] || null;
      if (!intervals.includes(state.interval)) state.interval = intervals[0] || '5m';
      select.value = state.symbol || '';
      select.addEventListener('change', () => { state.symbol = select.value; load(); });
      if (!body.symbols.length) status('no candles yet: run klines pipeline or klines stream --build');
      await load();
    } catch (e) {
      status(e.message, true);
    }
  })();
})();
