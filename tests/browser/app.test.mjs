// The web app in headless Chromium (Debian's), driven by playwright-core, with every
// screen checked by axe-core. Started by tests/it/web_app.rs, which runs two servers:
//   PP_APP_URL         embedded mode with the development sign-in and a fake Stripe
//   PP_GOOGLE_APP_URL  embedded mode with Google sign-in against a fake OpenID provider
// PP_CHROMIUM is the browser, PP_PHOTO a pet photo, PP_SCREENSHOTS where screenshots go.
// Exits non-zero, saying why, at the first thing that does not hold.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const APP = process.env.PP_APP_URL;
const GOOGLE_APP = process.env.PP_GOOGLE_APP_URL;
const PHOTO = fs.readFileSync(process.env.PP_PHOTO);
const SHOTS = process.env.PP_SCREENSHOTS;
const LONG = 90_000;
const SIZES = [
  { name: 'desktop', viewport: { width: 1280, height: 900 } },
  { name: 'phone', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
];

const log = (...parts) => console.log('[browser]', ...parts);
// The page in use, described when something fails.
let current = null;
function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** axe-core on the page as it is: no serious or critical violation. */
async function accessible(page, screen) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const minor = result.violations.filter((v) => !bad.includes(v)).map((v) => v.id);
  check(!bad.length, `axe-core on ${screen}: ${bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`).join('; ')}`);
  log(`axe ${screen}: no serious or critical violation${minor.length ? ` (minor: ${minor.join(', ')})` : ''}`);
}

/** Checks a screen with axe-core and writes its screenshot. */
async function screen(page, name, size) {
  await accessible(page, `${name} (${size})`);
  const widths = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  check(widths[0] <= widths[1], `${name} (${size}) is wider than the screen: ${widths[0]} > ${widths[1]} px`);
  if (SHOTS) await page.screenshot({ path: path.join(SHOTS, `${name}-${size}.jpg`), fullPage: true, type: 'jpeg', quality: 80 });
}

/** A context whose pages may reach only `allowed` origins, failing on script errors
 * and on any content security policy violation. */
async function open(browser, size, allowed, storageState) {
  const { name, ...options } = size;
  const context = await browser.newContext({ ...options, acceptDownloads: true, storageState });
  const problems = [];
  context.on('request', (request) => {
    const origin = new URL(request.url()).origin;
    if (!allowed.includes(origin) && !request.url().startsWith('data:') && !request.url().startsWith('blob:')) {
      problems.push(`a request to another host: ${request.url()}`);
    }
  });
  const page = await context.newPage();
  page.on('pageerror', (error) => problems.push(`script error: ${error.message}`));
  page.on('console', (message) => {
    if (/content security policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
  });
  page.setDefaultTimeout(30_000);
  current = { page, problems };
  return { context, page, problems };
}

async function noProblems(session) {
  check(!session.problems.length, session.problems.join('\n'));
  await session.context.close();
}

/** Bytes that crossed the network for the page's first load (compressed, with headers),
 * in a fresh browser (nothing cached) holding `storageState`'s cookies if given. */
async function firstLoad(browser, size, url, what, storageState) {
  const session = await open(browser, size, [new URL(APP).origin], storageState);
  const responses = [];
  session.page.on('requestfinished', (request) => responses.push(request));
  await session.page.goto(url, { waitUntil: 'networkidle' });
  let total = 0;
  for (const request of responses) {
    const sizes = await request.sizes();
    total += sizes.responseBodySize + sizes.responseHeadersSize;
  }
  const names = responses.map((r) => new URL(r.url()).pathname);
  log(`first load, ${what}: ${responses.length} requests, ${(total / 1024).toFixed(1)} KB transferred`);
  check(total < 200 * 1024, `the first load (${what}) transferred ${total} bytes`);
  check(!names.some((n) => n.includes('viewer')), `the 3D viewer was loaded up front: ${names.join(' ')}`);
  await noProblems(session);
}

async function upload(page, name, mimeType, buffer) {
  await page.setInputFiles('#photo', { name, mimeType, buffer });
}

/** Orders one of `kind` with the uploaded photo; resolves on its page. */
async function start(page, kind) {
  await page.goto(`${APP}/#/create`);
  await page.waitForSelector('#upload-status:has-text("Photo ready")');
  await page.check(`input[name=kind][value=${kind}]`);
  await page.waitForFunction(() => !document.querySelector('#create').disabled);
  await page.click('#create');
  await page.waitForURL(/#\/generations\//);
  await page.waitForSelector('#percent');
}

/** Orders one of `kind` and watches it to the end: the progress must be seen moving
 * (the test's studio works at a model's pace). With `withoutStream` the event stream is
 * refused, as a buffering proxy would make it fail, and the page must poll instead. */
async function order(page, kind, withoutStream = false) {
  const polls = [];
  const count = (request) => {
    if (/\/v1\/generations\/gen_[^/?]+$/.test(request.url()) && request.method() === 'GET') polls.push(request.url());
  };
  if (withoutStream) {
    await page.route('**/v1/generations/*/events', (route) => route.abort('connectionrefused'));
    page.on('request', count);
  }
  await start(page, kind);
  // Every progress the page shows, from now to the end.
  await page.evaluate(() => {
    window.seenProgress = [];
    const note = () => window.seenProgress.push(`${document.querySelector('#percent').textContent} ${document.querySelector('#stage').textContent}`);
    note();
    new MutationObserver(note).observe(document.querySelector('#progress-label'), { subtree: true, childList: true, characterData: true });
  });
  await page.waitForFunction(() => document.querySelector('#percent')?.textContent === '100 %', null, { timeout: LONG });
  await page.waitForSelector('#status:has-text("Done")');
  const seen = [...new Set(await page.evaluate(() => window.seenProgress))];
  const between = seen.filter((s) => !s.startsWith('0 %') && !s.startsWith('100 %'));
  check(between.length >= 2, `${kind}: the progress was not seen moving: ${seen.join(' | ')}`);
  if (withoutStream) {
    await page.unroute('**/v1/generations/*/events');
    page.off('request', count);
    // The first GET is the screen's own load; the others are the polls.
    check(polls.length >= 3, `without the event stream the page polled ${polls.length - 1} times`);
    log(`${kind} followed without the event stream: ${polls.length - 1} polls, progress seen: ${seen.join(' | ')}`);
  } else {
    log(`${kind} followed live: ${seen.join(' | ')}`);
  }
}

/** The whole life of an account at one screen size, through the development sign-in. */
async function journey(browser, size) {
  const session = await open(browser, size, [new URL(APP).origin, 'https://checkout.stripe.com']);
  const { page } = session;
  const tag = size.name;
  await page.goto(APP);
  await page.waitForSelector('#dev-sign-in');
  await screen(page, 'sign-in', tag);
  await page.fill('#dev-sign-in input[name=name]', `Ann ${tag}`);
  await page.fill('#dev-sign-in input[name=email]', `ann-${tag}@example.org`);
  await page.click('#dev-sign-in button');
  await page.waitForSelector('#accept-policy');
  await screen(page, 'policy', tag);
  await page.click('#accept-policy');
  await page.waitForSelector('h1:has-text("Create")');

  // An endpoint and a token first, so the privacy centre has deliveries to show later.
  await page.goto(`${APP}/#/account`);
  await page.fill('#endpoint-url', 'https://hooks.example.org/petportrait');
  await page.click('#webhooks button[type=submit]');
  await page.waitForSelector('#endpoint-created .secret');
  await page.fill('#token-name', 'my script');
  await page.click('#api-tokens button[type=submit]');
  await page.waitForSelector('#token-created .secret');
  check((await page.textContent('#token-created .secret')).startsWith('ppat_'), 'the new token is shown');

  // Each class of bad file gets its own explanation.
  await page.goto(`${APP}/#/create`);
  // The first one dropped on the zone, as a file dragged from the desktop is.
  const dropped = await page.evaluateHandle(() => {
    const transfer = new DataTransfer();
    transfer.items.add(new File(['these are my notes, not a photo'], 'notes.jpg', { type: 'image/jpeg' }));
    return transfer;
  });
  await page.dispatchEvent('#drop-zone', 'drop', { dataTransfer: dropped });
  await page.waitForSelector('#upload-error:has-text("not a photo we can read")');
  await screen(page, 'upload-error', tag);
  await upload(page, 'cut.jpg', 'image/jpeg', PHOTO.subarray(0, Math.floor(PHOTO.length / 2)));
  await page.waitForSelector('#upload-error:has-text("incomplete"), #upload-error:has-text("damaged")');
  const max = Number(await page.getAttribute('body', 'data-upload-max-bytes'));
  await upload(page, 'huge.jpg', 'image/jpeg', Buffer.concat([PHOTO, Buffer.alloc(max)]));
  await page.waitForSelector('#upload-error:has-text("too large")');
  log(`${tag}: bad uploads explained (not an image, cut short, too large)`);

  await upload(page, 'chelsea.jpg', 'image/jpeg', PHOTO);
  await page.waitForSelector('#upload-status:has-text("Photo ready")');
  await page.waitForSelector('#preview:not([hidden])');
  await page.waitForSelector('#quote:has-text("Costs")');
  await screen(page, 'create', tag);

  // A portrait, watched to 100 % (on the phone without the event stream), shown,
  // downloaded and saved.
  await order(page, 'portrait', tag === 'phone');
  await page.waitForFunction(() => [...document.querySelectorAll('#results img')].some((i) => i.complete && i.naturalWidth > 0));
  await screen(page, 'portrait', tag);
  const [picture] = await Promise.all([page.waitForEvent('download'), page.click('#results a[download]')]);
  const pictureBytes = fs.readFileSync(await picture.path());
  check(pictureBytes.length > 1000 && (pictureBytes[0] === 0xff || pictureBytes[0] === 0x89),
    `the downloaded portrait ${picture.suggestedFilename()} is a JPEG or PNG`);
  log(`${tag}: portrait downloaded as ${picture.suggestedFilename()}, ${pictureBytes.length} bytes`);
  await page.click('#save');
  await page.waitForSelector('#save-status:has-text("Saved")');
  await page.goto(`${APP}/#/gallery`);
  await page.waitForFunction(() => [...document.querySelectorAll('#gallery img')].some((i) => i.complete && i.naturalWidth > 0));
  await screen(page, 'gallery', tag);

  // Two at once with one worker: the second waits in the queue, and is canceled there.
  await start(page, 'music');
  const first = page.url();
  await start(page, 'music');
  check(page.url() !== first, 'a second generation was made');
  await page.waitForSelector('#queue-position:has-text("Position in the queue")');
  await screen(page, 'queued', tag);
  await page.click('#cancel');
  await page.waitForSelector('#status:has-text("Canceled")');
  await page.waitForSelector('#generation-error:has-text("released")');
  check(await page.isHidden('#cancel'), 'the cancel button is gone once canceled');
  log(`${tag}: a queued generation canceled (${await page.textContent('#cost')})`);

  // Music that plays.
  await order(page, 'music');
  const played = await page.evaluate(async () => {
    const audio = document.querySelector('#results audio');
    audio.muted = true;
    await audio.play();
    await Promise.race([
      new Promise((resolve) => {
        const moved = () => { if (audio.currentTime > 0) resolve(); };
        audio.addEventListener('timeupdate', moved);
        moved();
      }),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`the tune did not advance in 20 s (readyState ${audio.readyState}, error ${audio.error?.code})`)), 20_000)),
    ]);
    return { duration: audio.duration, currentTime: audio.currentTime };
  });
  check(played.duration > 1 && played.currentTime > 0, `the tune plays: ${JSON.stringify(played)}`);
  log(`${tag}: the tune plays (${played.duration.toFixed(1)} s long)`);
  await screen(page, 'music', tag);

  // A sculpture in 3D: the viewer arrives only now, and draws something.
  const viewerBefore = await page.evaluate(() => performance.getEntriesByType('resource').some((e) => e.name.includes('/vendor/viewer.js')));
  check(!viewerBefore, 'the 3D viewer was loaded before a sculpture was shown');
  await order(page, 'sculpture');
  await page.waitForSelector('canvas.model-view[data-rendered=true]', { timeout: LONG });
  const drawn = await page.evaluate(() => {
    const canvas = document.querySelector('canvas.model-view');
    const copy = document.createElement('canvas');
    copy.width = canvas.width;
    copy.height = canvas.height;
    const context = copy.getContext('2d');
    context.drawImage(canvas, 0, 0);
    const { data } = context.getImageData(0, 0, copy.width, copy.height);
    const [r, g, b] = [data[0], data[1], data[2]];
    let differing = 0;
    const colours = new Set();
    for (let i = 0; i < data.length; i += 4) {
      if (Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) > 30) differing += 1;
      colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    }
    return { share: differing / (data.length / 4), colours: colours.size, width: copy.width };
  });
  check(drawn.share > 0.05 && drawn.colours > 50, `the 3D view is blank: ${JSON.stringify(drawn)}`);
  log(`${tag}: the sculpture is drawn on ${(drawn.share * 100).toFixed(0)} % of the canvas in ${drawn.colours} colours`);
  const viewer = await page.evaluate(() => performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/vendor/viewer.js')).map((e) => ({ url: e.name, transferred: e.transferSize, size: e.decodedBodySize }))[0]);
  check(viewer && new URL(viewer.url).origin === new URL(APP).origin, `the 3D viewer came from this server: ${JSON.stringify(viewer)}`);
  log(`${tag}: the 3D viewer loaded on demand, ${(viewer.transferred / 1024).toFixed(0)} KB transferred (${(viewer.size / 1024).toFixed(0)} KB unpacked)`);
  await screen(page, 'sculpture', tag);

  // History, filtered.
  await page.goto(`${APP}/#/history`);
  await page.waitForFunction(() => document.querySelectorAll('#history > li').length >= 3);
  await page.selectOption('#filter-kind', 'music');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#history > li')];
    return rows.length === 3 && rows.every((row) => row.textContent.includes('Music'));
  });
  await page.selectOption('#filter-status', 'canceled');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#history > li')];
    return rows.length === 1 && rows[0].textContent.includes('canceled');
  });
  await screen(page, 'history', tag);

  // Buying credits: off to Stripe Checkout (answered here as Stripe would, by sending
  // the buyer back) and the return page.
  await page.goto(`${APP}/#/credits`);
  await page.waitForSelector('#packs button');
  await page.waitForSelector('#ledger-title');
  await screen(page, 'credits', tag);
  let checkout = null;
  await page.route('https://checkout.stripe.com/**', (route) => {
    checkout = route.request().url();
    const session = checkout.split('/').pop();
    route.fulfill({ status: 303, headers: { location: `${APP}/?checkout=success&session_id=${session}` } });
  });
  await page.click('#packs button');
  await page.waitForSelector('#checkout-notice:has-text("Payment confirmed: 5 credits added")');
  check(checkout && checkout.includes('/c/pay/cs_'), `the browser went to Stripe Checkout: ${checkout}`);
  check(new URL(page.url()).search === '', 'the return address is tidied');
  await screen(page, 'checkout-return', tag);

  // The privacy centre: profile, deliveries, a copy of the data.
  await page.goto(`${APP}/#/account`);
  await page.fill('#profile-name', `Ann ${tag} Smith`);
  await page.click('#profile button[type=submit]');
  await page.waitForSelector('#profile .success');
  await page.click('#endpoints button:has-text("Delivery log")');
  await page.waitForSelector('#endpoints table tbody tr td:has-text("generation.")');
  await page.click('#request-export');
  const link = await page.waitForSelector('#privacy-requests a[download]', { timeout: LONG });
  await screen(page, 'privacy', tag);
  const [archive] = await Promise.all([page.waitForEvent('download'), link.click()]);
  const zip = fs.readFileSync(await archive.path());
  check(zip.subarray(0, 2).toString() === 'PK' && zip.length > 1000, 'the export is a ZIP archive');
  log(`${tag}: export downloaded as ${archive.suggestedFilename()}, ${zip.length} bytes`);

  // Deleting the account ends the session.
  await page.fill('#delete-confirm', 'delete');
  check(await page.isDisabled('#delete-account'), 'deletion needs DELETE typed exactly');
  await page.fill('#delete-confirm', 'DELETE');
  await page.click('#delete-account');
  await page.waitForSelector('#dev-sign-in');
  await page.waitForSelector('.notice:has-text("being deleted")');
  await screen(page, 'deleted', tag);
  const me = await page.evaluate(() => fetch('/v1/me').then((r) => r.status));
  check(me === 401, `after deletion /v1/me answers ${me}`);
  await page.reload();
  await page.waitForSelector('#dev-sign-in');
  log(`${tag}: account deleted, session ended`);
  await noProblems(session);
}

/** Google sign-in: a child refused at the age question, an adult let in. */
async function ageQuestion(browser, size, birthYear, expectAdult) {
  const provider = process.env.PP_OIDC_ORIGIN;
  const session = await open(browser, size, [new URL(GOOGLE_APP).origin, provider]);
  const { page } = session;
  await page.goto(GOOGLE_APP);
  await page.click('#google-sign-in');
  await page.waitForSelector('#age-question');
  await screen(page, 'age-question', size.name);
  await page.selectOption('#age-question select[name=birth_month]', '6');
  await page.selectOption('#age-question select[name=birth_year]', String(birthYear));
  await page.click('#age-question button');
  if (expectAdult) {
    await page.waitForSelector('#accept-policy');
    await page.click('#accept-policy');
    await page.waitForSelector('h1:has-text("Create")');
    log(`${size.name}: signed up with Google through the age question`);
  } else {
    await page.waitForSelector('text=not available to children under 13');
    await screen(page, 'under-13', size.name);
    log(`${size.name}: a child is refused at the age question`);
  }
  await noProblems(session);
}

const browser = await chromium.launch({
  executablePath: process.env.PP_CHROMIUM,
  args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
    '--autoplay-policy=no-user-gesture-required'],
});
try {
  if (SHOTS) fs.mkdirSync(SHOTS, { recursive: true });
  const [desktop, phone] = SIZES;
  await firstLoad(browser, desktop, APP, 'signed out');
  await ageQuestion(browser, desktop, new Date().getFullYear() - 10, false);
  await ageQuestion(browser, phone, 1990, true);
  for (const size of SIZES) await journey(browser, size);
  // Signed in, the first screen loads every module it needs: still under the budget.
  const signedIn = await open(browser, phone, [new URL(APP).origin]);
  await signedIn.page.goto(APP);
  await signedIn.page.fill('#dev-sign-in input[name=email]', 'budget@example.org');
  await signedIn.page.click('#dev-sign-in button');
  await signedIn.page.click('#accept-policy');
  await signedIn.page.waitForSelector('h1:has-text("Create")');
  const cookies = await signedIn.context.storageState();
  await noProblems(signedIn);
  await firstLoad(browser, desktop, `${APP}/#/create`, 'signed in', cookies);
  log('all passed');
} catch (error) {
  if (current) {
    console.error(`at ${current.page.url()}; the page says: ${await current.page.textContent('main').catch(() => '?')}`);
    if (current.problems.length) console.error(`problems seen: ${current.problems.join('\n')}`);
    const shot = path.join(os.tmpdir(), 'petportrait-browser-failure.png');
    await current.page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.error(`the page as it was: ${shot}`);
  }
  throw error;
} finally {
  await browser.close();
}
