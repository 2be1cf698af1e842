// Renders the page's PNG icons (src/http/page/icon-192.png, icon-512.png) from icon.svg in
// headless Chromium, so the PNGs never drift from the SVG. Run after editing icon.svg:
//   node tests/browser/render-icons.mjs
import { readFile, writeFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const pageDir = path.join(here, '..', '..', 'src', 'http', 'page');
const SIZES_PX = [192, 512];

const svg = await readFile(path.join(pageDir, 'icon.svg'), 'utf8');
const profile = await mkdtemp(path.join(tmpdir(), 'mayfly-icons-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await context.newPage();
  for (const size of SIZES_PX) {
    await page.setViewportSize({ width: size, height: size });
    const sized = svg.replace('width="64" height="64"', `width="${size}" height="${size}"`);
    await page.setContent(`<html><body style="margin:0">${sized}</body></html>`);
    const png = await page.screenshot({ omitBackground: true, clip: { x: 0, y: 0, width: size, height: size } });
    await writeFile(path.join(pageDir, `icon-${size}.png`), png);
    console.log(`icon-${size}.png: ${png.length} bytes`);
  }
} finally {
  await context.close();
  await rm(profile, { recursive: true, force: true });
}
