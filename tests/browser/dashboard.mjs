// Drives Debian's Chromium through klines' dashboard and prints, as JSON, what the page holds
// at each step; tests/it/browser.rs compares it with the warehouse's tables.
//
//   node dashboard.mjs URL SCREENSHOT.png [live SYMBOL]
//
// Steps: open XRPETH 1m with the 1D range; hover a bar and read the legend; pan back to the
// oldest bar (lazy loading); switch to 15m by clicking; reload (the URL keeps the state).
// `live SYMBOL`: open SYMBOL's 1m candles while a stream runs and wait, without reloading,
// for three newer candles to arrive; then on 5m, for the forming bucket to become whole.
import { chromium } from 'playwright-core';

const [url, screenshot, mode, liveSymbol] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.KLINES_CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const out = { errors: [], requests: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.on('pageerror', (e) => out.errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') out.errors.push(m.text()); });
  page.on('request', (r) => out.requests.push(r.url()));
  const ready = (interval) => page.waitForFunction(
    (i) => window.klines && window.klines.ready && window.klines.state.interval === i, interval,
    { timeout: 20000 });
  const snapshot = () => page.evaluate(() => ({
    state: { ...window.klines.state },
    search: location.search,
    candles: window.klines.candles(),
    bars: window.klines.bars(),
    legend: document.getElementById('legend').textContent,
    status: document.getElementById('status').textContent,
    indicators: window.klines.indicators,
    sma_20: window.klines.indicatorData('sma_20'),
    rsi_14: window.klines.indicatorData('rsi_14'),
    macd_hist: window.klines.indicatorData('macd_hist'),
    panes: window.klines.panes(),
  }));

  if (mode === 'live') {
    await page.goto(`${url}/?symbol=${liveSymbol}&interval=1m&range=1D`);
    await ready('1m');
    // Gone if the page were loaded again.
    await page.evaluate(() => { window.sameDocument = true; });
    out.opened = await snapshot();
    const last = out.opened.candles[out.opened.candles.length - 1].time;
    await page.waitForFunction((t) => {
      const c = window.klines.candles();
      return c.length && c[c.length - 1].time >= t + 3 * 60000;
    }, last, { timeout: 30000 });
    // The indicators follow the live candles (the stream builds tag:indicators too).
    await page.waitForFunction((t) => {
      const d = window.klines.indicatorData('sma_20');
      return d.length && d[d.length - 1].time * 1000 >= t + 3 * 60000;
    }, last, { timeout: 30000 });
    out.updated = await snapshot();
    out.updates = await page.evaluate(() => window.klines.updates);
    // 5m: the bucket still forming is grey, and fills until it is whole.
    await page.click('#intervals button[data-value="5m"]');
    await ready('5m');
    // (The newest minute may just have completed its bucket: then wait for the next one.)
    await page.waitForFunction(() => {
      const c = window.klines.candles();
      return c.length && !c[c.length - 1].is_complete;
    }, null, { timeout: 30000 });
    out.forming = await page.evaluate(() => {
      const c = window.klines.candles();
      const b = window.klines.bars();
      return { candle: c[c.length - 1], bar: b[b.length - 1] };
    });
    await page.waitForFunction((t) => window.klines.candles().some((c) => c.time === t && c.is_complete),
      out.forming.candle.time, { timeout: 30000 });
    out.completed = await page.evaluate((t) => {
      const i = window.klines.candles().findIndex((c) => c.time === t);
      return { candle: window.klines.candles()[i], bar: window.klines.bars()[i] };
    }, out.forming.candle.time);
    out.same_document = await page.evaluate(() => window.sameDocument === true);
    await page.screenshot({ path: screenshot });
    await browser.close();
    // Exit only once stdout is written: a pipe takes 64 KiB at a time.
    process.stdout.write(JSON.stringify(out), () => process.exit(0));
    await new Promise(() => {});
  }

  const started = Date.now();
  await page.goto(`${url}/?symbol=XRPETH&interval=1m&range=1D`);
  await ready('1m');
  out.first_chart_ms = Date.now() - started;
  out.opened = await snapshot();

  // The crosshair on the 10th-newest bar: its values in the legend.
  const target = out.opened.candles[out.opened.candles.length - 10];
  const box = await page.locator('#chart').boundingBox();
  const xy = await page.evaluate((t) => ({
    x: window.klines.chart.timeScale().timeToCoordinate(t.time / 1000),
    y: window.klines.series.priceToCoordinate(+t.close),
  }), target);
  await page.mouse.move(box.x + xy.x, box.y + xy.y);
  await page.waitForFunction((t) => document.getElementById('legend').textContent.includes(
    new Date(t).toISOString().slice(11, 16)), target.time);
  out.hovered = { time: target.time, legend: await page.locator('#legend').textContent() };

  // Panning back to the oldest loaded bar loads older ones until the table has no more.
  for (let i = 0; i < 20 && !(await page.evaluate(() => window.klines.loadedAll())); i++) {
    const n = await page.evaluate(() => window.klines.candles().length);
    await page.evaluate(() => window.klines.chart.timeScale().setVisibleLogicalRange({ from: -5, to: 200 }));
    await page.waitForFunction((n) => !window.klines.loading()
      && (window.klines.candles().length > n || window.klines.loadedAll()), n, { timeout: 20000 });
  }
  out.panned = await snapshot();

  // The interval switch, by a click.
  await page.mouse.move(box.x + 5, box.y + 5);
  await page.click('#intervals button[data-value="15m"]');
  await ready('15m');
  out.switched = await snapshot();
  await page.screenshot({ path: screenshot });

  // A reload keeps the view: the URL holds it.
  await page.reload();
  await ready('15m');
  out.reloaded = await snapshot();
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
