// End-to-end test of Mayfly's web page in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; Playwright's own browser download is never used).
//
//   node tests/browser/e2e.mjs <http-url> [--private] [--screenshots DIR]
//
// The script makes an address on the page, prints `MAYFLY-E2E address=<address>` on
// stdout and then waits for two messages that somebody else sends to it over SMTP:
// tests/browser.rs does that with lettre as soon as it reads the line. The messages are
// described by the constants below; keep them in step with tests/browser.rs.
//
// With --private the server runs with --private-inboxes: the page must carry each inbox's
// token (kept in the URL fragment) on every request, and a link without it opens nothing.
//
// It exits 0 when every check passed and 1 with the reason otherwise; each step is
// logged so that a failure says how far it got.

import { mkdtemp, readFile, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

/** Subject of the rich message: text and HTML alternatives, an inline image, an attachment. */
const RICH_SUBJECT = 'Welcome aboard: confirm your address';
/** A phrase of its HTML part, and one that only its text part has. */
const RICH_HTML_PHRASE = 'Thanks for signing up';
const RICH_TEXT_PHRASE = 'plain-text version of this welcome';
/** Its attachment. */
const ATTACHMENT_NAME = 'report.txt';
const ATTACHMENT_TEXT = 'Quarterly numbers\nrevenue 42\ncosts 17\n';
/** Subject and body phrase of the text-only message. */
const TEXT_SUBJECT = 'Your login code is 493817';
const TEXT_PHRASE = 'Use 493817 to sign in';

/** Upper bound for the whole run, so a hang fails instead of blocking the caller. */
const RUN_TIMEOUT_MS = 150_000;
/** How long a sent message may take to show up on the page (it is pushed or long-polled). */
const ARRIVAL_TIMEOUT_MS = 20_000;
const STEP_TIMEOUT_MS = 10_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 667 };

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function usage() {
  console.error('usage: node e2e.mjs <http-url> [--private] [--screenshots DIR]');
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.length < 1 || !/^https?:\/\//.test(args[0])) usage();
const baseUrl = args[0].replace(/\/$/, '');
const origin = new URL(baseUrl).origin;
let screenshotDir = null;
let privateInboxes = false;
for (let i = 1; i < args.length; i += 1) {
  if (args[i] === '--private') {
    privateInboxes = true;
  } else if (args[i] === '--screenshots' && args[i + 1]) {
    screenshotDir = args[i + 1];
    i += 1;
  } else {
    usage();
  }
}

function log(text) {
  console.log(`e2e: ${text}`);
}

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  log(`ok: ${what}`);
}

const watchdog = setTimeout(() => {
  console.error(`e2e: FAIL: the run took longer than ${RUN_TIMEOUT_MS} ms`);
  process.exit(1);
}, RUN_TIMEOUT_MS);

/** Everything the pages did that a check looks at afterwards. */
const seen = {
  dialogs: [],
  pageErrors: [],
  consoleErrors: [],
  foreignRequests: [],
  /** Every response, so a check can look for one that came before it started waiting. */
  responses: [],
  mainNavigations: 0,
};

function watch(page) {
  page.on('dialog', (dialog) => {
    seen.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => seen.pageErrors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    // The WebSocket endpoint may not exist on this server (501): the page then long-polls.
    if (/WebSocket/i.test(text)) return;
    seen.consoleErrors.push(text);
  });
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(`${origin}/`) && !url.startsWith('about:') && !url.startsWith('data:')) {
      seen.foreignRequests.push(url);
    }
  });
  page.on('response', (response) => seen.responses.push(response));
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) seen.mainNavigations += 1;
  });
}

/** True when nothing on the page is wider than the viewport. */
async function fitsHorizontally(page) {
  return page.evaluate(() => document.scrollingElement.scrollWidth <= window.innerWidth);
}

/** A PNG of the viewport in `dir` (the kept screenshots by default, else a scratch dir). */
async function screenshot(page, name, dir = outDir) {
  const file = path.join(dir, name);
  await page.screenshot({ path: file });
  const bytes = await readFile(file);
  check(bytes.length > 1000 && bytes.subarray(1, 4).toString() === 'PNG', `screenshot ${file} written`);
}

/** The token in a page URL's fragment (`#address&token=...`), or null. */
function tokenOf(url) {
  const [, ...params] = new URL(url).hash.slice(1).split('&');
  return new URLSearchParams(params.join('&')).get('token');
}

function messageItem(page, subject) {
  return page.locator('#message-list li', { hasText: subject });
}

let outDir = screenshotDir;
let browser = null;
let exitCode = 0;
const scratch = await mkdtemp(path.join(tmpdir(), 'mayfly-e2e-'));
try {
  if (outDir) await mkdir(outDir, { recursive: true });
  else outDir = scratch;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // Playwright adds a fresh, empty --user-data-dir of its own for every launch.
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
  log(`chromium ${browser.version()}`);

  // ---------------------------------------------------------------- desktop
  const desktop = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
  await desktop.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  const page = await desktop.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  watch(page);
  const pageResponse = await page.goto(`${baseUrl}/`);
  check(pageResponse.status() === 200, 'GET / answers 200');
  const csp = pageResponse.headers()['content-security-policy'] || '';
  const scriptPolicy = csp.split(';').map((part) => part.trim()).find((part) => part.startsWith('script-src '));
  check(scriptPolicy === "script-src 'self'" && !/style-src [^;]*unsafe-inline/.test(csp),
    `strict CSP on the page: ${csp}`);
  check((await page.title()) === 'Mayfly', 'page title');
  const manifestHref = await page.locator('link[rel="manifest"]').getAttribute('href');
  const manifest = await (await page.request.get(`${baseUrl}${manifestHref}`)).json();
  check(manifest.theme_color && manifest.icons.length >= 1, 'web app manifest is linked and parses');
  for (const icon of manifest.icons) {
    const response = await page.request.get(`${baseUrl}${icon.src}`);
    check(response.status() === 200 && response.headers()['content-type'] === icon.type,
      `manifest icon ${icon.src} is served as ${icon.type}`);
  }

  // A new random address, in the box and in the URL fragment.
  await page.getByRole('button', { name: 'New address' }).click();
  await page.waitForFunction(() => /^[a-z0-9]+@/.test(document.getElementById('address-input').value));
  const address = await page.inputValue('#address-input');
  const hash = new URL(page.url()).hash;
  const token = tokenOf(page.url());
  check(hash === `#${address}&token=${token}` && /^[A-Za-z0-9_-]{43}$/.test(token),
    `address ${address} and its token are in the URL fragment (${hash})`);
  const bearer = { Authorization: `Bearer ${token}` };

  // The copy button puts exactly the address on the clipboard.
  await page.getByRole('button', { name: 'Copy' }).click();
  await page.getByRole('button', { name: 'Copied' }).waitFor();
  const clipboard = await page.evaluate(() => navigator.clipboard.readText());
  check(clipboard === address, 'Copy puts the address on the clipboard');

  // Mark this document: if the page reloaded to show new mail, the mark would be gone.
  await page.evaluate(() => { window.e2eMark = 'same document'; });
  const navigationsBefore = seen.mainNavigations;
  // The server has the WebSocket: the page must be on it, not on the long-poll fallback,
  // so the two messages below arrive as pushed frames.
  await page.locator('#live-status[data-state="live"]').waitFor();
  const liveText = await page.textContent('#live-status');
  log(`live updates: ${liveText}`);
  check(liveText.trim() === 'Live', 'the page follows the inbox over the real WebSocket');
  console.log(`MAYFLY-E2E address=${address}`);

  await messageItem(page, RICH_SUBJECT).waitFor({ timeout: ARRIVAL_TIMEOUT_MS });
  await messageItem(page, TEXT_SUBJECT).waitFor({ timeout: ARRIVAL_TIMEOUT_MS });
  check(await page.evaluate(() => window.e2eMark === 'same document') && seen.mainNavigations === navigationsBefore,
    'both messages appeared without a reload');
  check((await page.textContent('#inbox-count')) === '2 messages', 'the count says 2 messages');
  check(/expires in/.test(await messageItem(page, RICH_SUBJECT).textContent()), 'the list shows the expiry');
  log(`live updates after arrival: ${await page.textContent('#live-status')}`);

  // The search box asks the server (?q=) and lists only what it found; empty lists all.
  await page.fill('#search-input', 'subject:"login code"');
  await page.press('#search-input', 'Enter');
  await messageItem(page, RICH_SUBJECT).waitFor({ state: 'detached' });
  check((await page.textContent('#inbox-count')) === '1 message found', 'a search lists what matches');
  check(await messageItem(page, TEXT_SUBJECT).count() === 1, 'the matching message stays listed');
  await page.fill('#search-input', '');
  await page.press('#search-input', 'Enter');
  await messageItem(page, RICH_SUBJECT).waitFor();
  check((await page.textContent('#inbox-count')) === '2 messages', 'an empty search lists every message again');

  // Open the rich message: sanitized HTML in a sandboxed frame, with its inline image.
  await messageItem(page, RICH_SUBJECT).getByRole('button').click();
  const frameElement = page.locator('#body-slot iframe');
  await frameElement.waitFor();
  const sandbox = await frameElement.getAttribute('sandbox');
  check(sandbox !== null && !sandbox.includes('allow-scripts') && !sandbox.includes('allow-same-origin'),
    `the message frame is sandboxed without scripts or same origin (sandbox="${sandbox}")`);
  const srcdoc = await frameElement.getAttribute('srcdoc');
  check(/http-equiv="Content-Security-Policy" content="default-src 'none'/.test(srcdoc),
    'the frame document carries its own default-src none policy');
  const frame = page.frameLocator('#body-slot iframe');
  await frame.getByText(RICH_HTML_PHRASE).waitFor();
  check(true, 'the HTML part is shown in the frame');
  const inline = frame.locator('img[alt="Example logo"]');
  await inline.waitFor();
  const inlineSrc = await inline.getAttribute('src');
  check(inlineSrc.startsWith('/api/v1/inboxes/') && inlineSrc.endsWith(`?token=${token}`),
    `the cid: image points at its attachment, with the token (${inlineSrc})`);
  const inlineWidth = await inline.evaluate((img) => (img.complete ? img.naturalWidth : 0));
  check(inlineWidth === 192, `the inline image (192 px wide) loaded from its attachment URL (${inlineWidth})`);
  // The mail's own (sanitized) style attributes apply inside the frame.
  const headingColor = await frame.locator('h1').evaluate((h1) => getComputedStyle(h1).color);
  check(headingColor === 'rgb(15, 118, 110)', `the mail's style attribute colours its heading (${headingColor})`);
  await page.locator('#reader-meta').getByText('Expires').waitFor();
  check((await page.textContent('#reader-title')) === RICH_SUBJECT, 'the reader shows the subject');
  check((await page.textContent('#reader-meta')).includes('hello@shop.test'), 'the reader shows the sender');
  // The server runs the sender checks against a DNS server that never answers.
  const spfBadge = page.locator('#reader-meta [data-check="spf"]');
  check((await spfBadge.textContent()) === 'SPF temperror', `the SPF check shows as a badge (${await spfBadge.textContent()})`);
  check(await page.locator('#reader-meta .badge').count() === 5, 'one badge per sender check');
  await page.getByRole('button', { name: 'Copy', exact: true }).waitFor();
  await screenshot(page, 'page-desktop.png');

  // Nothing hostile ran: no script, no handler, no dialog, no remote load.
  check(await page.evaluate(() => window.e2ePwned === undefined), 'no script or handler of the mail ran');
  check(seen.dialogs.length === 0, `no dialog opened (${seen.dialogs.join('; ')})`);
  check(seen.foreignRequests.length === 0, `no request left the server (${seen.foreignRequests.join(', ')})`);

  // ---------------------------------------------------------------- phone
  const phone = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 1 });
  const phonePage = await phone.newPage();
  phonePage.setDefaultTimeout(STEP_TIMEOUT_MS);
  watch(phonePage);
  if (privateInboxes) {
    // The address alone opens nothing on a server with private inboxes.
    const consoleErrorsBefore = seen.consoleErrors.length;
    await phonePage.goto(`${baseUrl}/#${address}`);
    await phonePage.locator('#live-status', { hasText: 'Not watching' }).waitFor();
    check(/private/.test(await phonePage.textContent('#notice'))
      && await messageItem(phonePage, RICH_SUBJECT).count() === 0,
      'phone: a link without the token lists nothing and says the inbox may be private');
    // The browser logs that refused listing; it is the one error expected.
    const refusals = seen.consoleErrors.splice(consoleErrorsBefore);
    check(refusals.length === 1 && /404/.test(refusals[0]), `the refused listing was a 404 (${refusals.join('; ')})`);
  }
  // A shared link reopens the inbox.
  await phonePage.goto(`${baseUrl}/${hash}`);
  await messageItem(phonePage, RICH_SUBJECT).waitFor();
  await messageItem(phonePage, TEXT_SUBJECT).waitFor();
  check((await phonePage.inputValue('#address-input')) === address, 'phone: the link #address&token= opens that inbox');
  check(await fitsHorizontally(phonePage), 'phone: the inbox fits 375 px without horizontal scrolling');
  await screenshot(phonePage, 'page-phone-inbox.png', scratch);
  await messageItem(phonePage, RICH_SUBJECT).getByRole('button').click();
  await phonePage.frameLocator('#body-slot iframe').getByText(RICH_HTML_PHRASE).waitFor();
  check(!(await phonePage.locator('#inbox').isVisible()), 'phone: an open message replaces the list');
  check(await fitsHorizontally(phonePage), 'phone: the open message fits without horizontal scrolling');
  await screenshot(phonePage, 'page-phone.png');
  await phonePage.getByRole('button', { name: 'Inbox' }).click();
  await phonePage.locator('#inbox').waitFor();

  // ---------------------------------------------------------------- desktop again
  // The text alternative.
  await page.getByRole('button', { name: 'Text', exact: true }).click();
  await page.locator('#body-slot pre', { hasText: RICH_TEXT_PHRASE }).waitFor();
  check(true, 'the Text switch shows the text part');
  await page.getByRole('button', { name: 'HTML', exact: true }).click();
  await frameElement.waitFor();

  // The attachment downloads with its name and bytes.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('#attachment-list a', { hasText: ATTACHMENT_NAME }).click(),
  ]);
  const downloaded = await readFile(await download.path(), 'utf8');
  check(download.suggestedFilename() === ATTACHMENT_NAME && downloaded === ATTACHMENT_TEXT,
    `the attachment downloads as ${download.suggestedFilename()} with its content`);

  // Delete it: it leaves the list, and the server no longer has it.
  const messageUrl = await page.getAttribute('#raw-link', 'href');
  check(messageUrl.endsWith(`/raw?token=${token}`)
    && (await page.request.get(`${baseUrl}${messageUrl}`)).status() === 200,
    `the raw download link carries the token and works (${messageUrl})`);
  if (privateInboxes) {
    const bare = messageUrl.replace(/\?token=.*/, '');
    check((await page.request.get(`${baseUrl}${bare}`)).status() === 404, 'without its token the raw message is a 404');
  }
  await page.getByRole('button', { name: 'Delete' }).click();
  await messageItem(page, RICH_SUBJECT).waitFor({ state: 'detached' });
  check((await page.request.get(`${baseUrl}${messageUrl}`)).status() === 404, 'the deleted message is gone on the server');
  check((await page.textContent('#inbox-count')) === '1 message', 'the count says 1 message');

  // The text-only message shows its text, and no frame.
  await messageItem(page, TEXT_SUBJECT).getByRole('button').click();
  await page.locator('#body-slot pre', { hasText: TEXT_PHRASE }).waitFor();
  check(await frameElement.count() === 0, 'a text-only message is shown as text, without a frame');
  // Its one-time code is shown with a button that copies it.
  await page.locator('#reader-meta code', { hasText: '493817' }).waitFor();
  await desktop.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: baseUrl });
  await page.getByRole('button', { name: 'Copy code' }).click();
  await page.getByText('Copied 493817.').waitFor();
  check((await page.evaluate(() => navigator.clipboard.readText())) === '493817', 'Copy code puts the code on the clipboard');
  check(await fitsHorizontally(page), 'desktop: nothing overflows horizontally');

  // A reload shows what the desktop left; then empty the inbox (two clicks: arm, confirm).
  await phonePage.reload();
  await messageItem(phonePage, TEXT_SUBJECT).waitFor();
  check(await messageItem(phonePage, RICH_SUBJECT).count() === 0, 'phone: after a reload the deleted message is not listed');
  await phonePage.getByRole('button', { name: 'Empty inbox' }).click();
  await phonePage.getByRole('button', { name: 'Really empty?' }).click();
  await messageItem(phonePage, TEXT_SUBJECT).waitFor({ state: 'detached' });
  check((await phonePage.textContent('#inbox-count')) === '0 messages', 'phone: Empty inbox empties it');
  const listing = await (await phonePage.request.get(`${baseUrl}/api/v1/inboxes/${encodeURIComponent(address)}`, { headers: bearer })).json();
  check(listing.total === 0, 'the server holds no message for the address any more');

  // ---------------------------------------------------------------- WebSocket
  // The page prefers the WebSocket. Whatever this server does at /ws, a mocked socket shows
  // that a pushed summary is listed (escaped) and that a closed socket falls back to the
  // long poll and is tried again later.
  const socketContext = await browser.newContext({ viewport: DESKTOP });
  const sockets = [];
  await socketContext.routeWebSocket(/\/ws(\?|$)/, (socket) => { sockets.push(socket); });
  const socketPage = await socketContext.newPage();
  socketPage.setDefaultTimeout(STEP_TIMEOUT_MS);
  watch(socketPage);
  // An address the server made (so it has a token), opened from its link.
  const created = await (await socketPage.request.post(`${baseUrl}/api/v1/addresses`)).json();
  const socketAddress = created.address;
  // When the socket opens the page lists what arrived meanwhile (?after=) and drops what
  // the server does not hold; a summary pushed before that answer would be dropped again.
  const firstCatchUp = socketPage.waitForResponse((response) =>
    response.url().includes(`${encodeURIComponent(socketAddress)}?after=`));
  await socketPage.goto(`${baseUrl}/#${socketAddress}&token=${created.token}`);
  await socketPage.locator('#live-status', { hasText: /^Live$/ }).waitFor();
  await firstCatchUp;
  const socketUrl = sockets.length ? new URL(sockets[0].url()) : null;
  check(sockets.length === 1 && socketUrl.pathname === `/api/v1/inboxes/${encodeURIComponent(socketAddress)}/ws`
    && socketUrl.searchParams.get('token') === created.token,
    `the page opened the inbox's WebSocket with its token (${sockets.map((socket) => socket.url()).join(', ')})`);
  const now = Date.now();
  const hostileSubject = '<img src=x onerror="window.e2ePwned=1">Pushed & escaped';
  sockets[0].send(JSON.stringify({
    id: '000000000000000000000000001', from: 'push@shop.test', to: [socketAddress], subject: hostileSubject,
    date: null, received_at: new Date(now).toISOString(), expires_at: new Date(now + 3_600_000).toISOString(),
    size: 321, preview: 'pushed over the socket',
  }));
  sockets[0].send('not json: ignored');
  await messageItem(socketPage, 'Pushed & escaped').waitFor();
  const pushedItem = messageItem(socketPage, 'Pushed & escaped');
  check((await pushedItem.locator('.item-subject').textContent()) === hostileSubject
    && (await pushedItem.locator('img').count()) === 0, 'a pushed summary is listed, its subject as text');
  check(await socketPage.evaluate(() => window.e2ePwned === undefined), 'the pushed subject ran nothing');
  await sockets[0].close({ code: 1011, reason: 'e2e: going away' });
  await socketPage.locator('#live-status', { hasText: 'Live (polling)' }).waitFor();
  check(true, 'a closed WebSocket falls back to the long poll');
  const retryDeadline = Date.now() + 12_000;
  while (sockets.length < 2 && Date.now() < retryDeadline) await new Promise((done) => setTimeout(done, 100));
  check(sockets.length === 2, 'the WebSocket is tried again after a pause');
  await socketPage.locator('#live-status', { hasText: /^Live$/ }).waitFor();
  // The server never had that message: the catch-up listing after the reconnect says the
  // inbox holds none, and the page drops what it listed.
  await messageItem(socketPage, 'Pushed & escaped').waitFor({ state: 'detached' });
  check(true, 'after the reconnect the list is back in step with the server');
  await socketContext.close();

  check(seen.pageErrors.length === 0, `no script error on the page (${seen.pageErrors.join('; ')})`);
  check(seen.consoleErrors.length === 0, `no console error (${seen.consoleErrors.join('; ')})`);
  check(seen.dialogs.length === 0 && seen.foreignRequests.length === 0, 'still no dialog and no remote request');
  log('PASS');
} catch (error) {
  exitCode = 1;
  console.error(`e2e: FAIL: ${error && error.stack ? error.stack : error}`);
  console.error(`e2e: seen so far: ${JSON.stringify({ ...seen, responses: seen.responses.length })}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  await rm(scratch, { recursive: true, force: true }).catch(() => {});
  clearTimeout(watchdog);
}
process.exit(exitCode);
