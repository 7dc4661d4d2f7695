// Drives the try-it page in headless Chromium: sign in, upload, order a pop-art
// portrait, wait for the image, then a tune (an audio player appears) and a sculpture
// (download links appear), save a screenshot. Not part of CI (it needs a browser):
//
//   apt-get install chromium && npm install --prefix /tmp/pw playwright-core@1
//   STARTER_CREDITS=20 cargo run --release    (pop art, music and a sculpture cost 17 credits)
//   NODE_PATH=/tmp/pw/node_modules node scripts/browser-check.js http://127.0.0.1:8080/ photo.jpg [shot.png]
const { chromium } = require('playwright-core');
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  page.on('console', (m) => console.log('console:', m.text()));
  await page.goto(process.argv[2]);
  await page.click('#login');
  await page.waitForSelector('#app:not([hidden])');
  await page.waitForFunction(() => document.querySelector('#style').options.length > 0);
  await page.setInputFiles('#file', process.argv[3]);
  await page.selectOption('#style', 'portrait/pop_art');
  await page.click('#create');
  await page.waitForSelector('.gen img', { timeout: 30000 });
  await page.waitForFunction(() => [...document.querySelectorAll('.gen img')].every((i) => i.complete && i.naturalWidth > 0));
  for (const [style, selector] of [['music/pet_theme', '.gen audio'], ['sculpture/relief', '.gen a[download]']]) {
    await page.selectOption('#style', style);
    await page.click('#create');
    await page.waitForSelector(selector, { timeout: 60000 });
  }
  await page.waitForFunction(() => document.querySelector('.gen audio').readyState >= 1);
  console.log('me:', await page.textContent('#me'));
  for (const row of await page.$$eval('.gen', (rows) => rows.map((r) => r.textContent))) console.log('row:', row);
  await page.screenshot({ path: process.argv[4] || 'page.png' });
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
