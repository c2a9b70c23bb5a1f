// Time until the first chart is drawn: from navigation start to the frame after the page has
// handed its candles to the chart (benches/serve.rs).
//
//   node first-chart.mjs URL RUNS
import { chromium } from 'playwright-core';

const [url, runs] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.KLINES_CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const times = [];
let bars = 0;
try {
  for (let i = 0; i < Number(runs || 5); i++) {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    await page.goto(url);
    await page.waitForFunction(() => window.klines && window.klines.ready, null, { timeout: 60000 });
    const t = await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => done(performance.now()))));
    bars = await page.evaluate(() => window.klines.bars().length);
    times.push(t);
    await page.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ times, bars }));
