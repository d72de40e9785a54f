/**
 * The viewer page as `occmap serve` serves it, in a real browser: Debian's Chromium driven by
 * playwright-core. The server's COOP/COEP headers make it cross-origin isolated; the page picks
 * a stamp, draws its estimated and exact maps (computed in the page), moves with the keyboard,
 * switches to the server's API for the maps, uploads a .npy, and saves a screenshot to
 * test-artifacts/serve.png.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serializeNpy } from '../src/data/npy.js';
import { fits } from './stamp-fixtures.js';
import { startServer, type RunningServer } from '../src/serve/app.js';
import { C, H, W, makeServeFixtures, type ServeFixtures } from './serve-fixtures.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is absent (apt-get install -y chromium)`;
const ARTIFACTS = path.resolve(fileURLToPath(new URL('../../test-artifacts', import.meta.url)));

let fx: ServeFixtures;
let server: RunningServer;

before(async () => {
  if (skip) return;
  fx = await makeServeFixtures();
  server = await startServer({ classifier: fx.classifier, explainer: fx.explainer, data: fx.data, port: 0, host: '127.0.0.1', exactThreads: 1 });
});

after(async () => {
  await server?.close();
  if (fx) rmSync(fx.dir, { recursive: true, force: true });
});

test('the page shows a stamp, its estimate and its exact map; keys and upload work', { skip, timeout: 120_000 }, async (t) => {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(path.join(tmpdir(), 'occmap-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1360, height: 1180 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const errors: string[] = [];
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(server.url + '/');
    await page.waitForSelector('#stamps tbody tr');
    assert.equal(await page.locator('#stamps tbody tr').count(), 6);
    assert.match((await page.textContent('#models')) ?? '', /onnxruntime-web \d threads?/);
    assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'occmap serve sends COOP/COEP');

    const bothMaps = async (): Promise<void> => {
      await page.waitForSelector('#panel-estimate[data-drawn]', { timeout: 30_000 });
      await page.waitForSelector('#panel-exact[data-drawn]', { timeout: 30_000 });
      await page.waitForSelector('#panel-diff[data-drawn]', { timeout: 30_000 });
    };

    await page.click('#stamps tbody tr:nth-child(3)');
    await page.waitForFunction(() => document.querySelector('#title')?.textContent?.includes('#2'));
    await bothMaps();
    assert.match((await page.textContent('#title')) ?? '', /obj-B/);
    // The canvases hold the map itself (one canvas pixel per map pixel), not a blank.
    const drawn = await page.evaluate(() => {
      const c = document.querySelector('#panel-exact canvas') as HTMLCanvasElement;
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      const colours = new Set<string>();
      for (let p = 0; p < d.length; p += 4) colours.add(`${d[p]},${d[p + 1]},${d[p + 2]},${d[p + 3]}`);
      return { w: c.width, h: c.height, colours: colours.size, opaque: d[3] };
    });
    assert.deepEqual([drawn.w, drawn.h, drawn.opaque], [W, H, 255]);
    assert.ok(drawn.colours > 3, `exact map drawn with ${drawn.colours} colours`);
    assert.equal(await page.locator('#channels .frame canvas').count(), C);
    assert.match((await page.textContent('#metrics')) ?? '', /MSE\s*\d/);
    assert.match((await page.textContent('#timings')) ?? '', /Exact map.*\d+(\.\d+)? m?s/s);
    assert.match((await page.textContent('#panel-exact')) ?? '', /82 inferences/);

    // Keyboard: j moves to the next stamp, k back.
    await page.locator('.stamps-wrap').focus();
    await page.keyboard.press('j');
    await page.waitForFunction(() => document.querySelector('#title')?.textContent?.includes('#3'));
    await bothMaps();
    await page.keyboard.press('ArrowUp');
    await page.waitForFunction(() => document.querySelector('#title')?.textContent?.includes('#2'));
    await bothMaps();

    // Hovering a pixel reads its values in every panel.
    const box = (await page.locator('#panel-exact .frame').boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5);
    assert.match((await page.textContent('#readout')) ?? '', /x 4, y 4 .*estimate \d.*exact \d/);

    // The server's API instead of the page's models: the same maps, from POST /explain.
    await page.click('#mode button[data-mode="server"]');
    await page.waitForFunction(() => /server/.test(document.querySelector('#panel-exact .sub')?.textContent ?? ''), undefined, { timeout: 30_000 });
    await bothMaps();
    assert.match((await page.textContent('#timings')) ?? '', /on the server/);
    await page.click('#mode button[data-mode="page"]');
    await page.waitForFunction(() => !/server/.test(document.querySelector('#panel-exact .sub')?.textContent ?? ''), undefined, { timeout: 30_000 });
    await bothMaps();

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'serve.png');
    await page.screenshot({ path: shot });
    t.diagnostic(`screenshot: ${shot}`);

    // Upload a .npy stamp (the classifier's one channel).
    const one = fx.images.slice(0, H * W * C).filter((_, k) => k % C === 1);
    await page.setInputFiles('#file', { name: 'upload.npy', mimeType: 'application/octet-stream', buffer: Buffer.from(serializeNpy(one, [H, W])) });
    await page.waitForFunction(() => document.querySelector('#title')?.textContent?.includes('upload.npy'));
    await bothMaps();
    assert.equal(await page.locator('#channels .frame canvas').count(), 1);
    // The same stamp as FITS: the page reads it with the CLI's stamp reader, bundled.
    await page.setInputFiles('#file', { name: 'upload.fits', mimeType: 'application/fits', buffer: Buffer.from(fits(-32, [W, H], Array.from(one))) });
    await page.waitForFunction(() => document.querySelector('#title')?.textContent?.includes('upload.fits'));
    await bothMaps();

    // A bad upload shows the server's message, and the page goes on working.
    await page.setInputFiles('#file', { name: 'junk.npy', mimeType: 'application/octet-stream', buffer: Buffer.from('not an array') });
    await page.waitForFunction(() => /junk\.npy: .*npy/.test(document.querySelector('#status')?.textContent ?? ''));
    await page.click('#stamps tbody tr:nth-child(1)');
    await page.waitForFunction(() => document.querySelector('#title')?.textContent?.includes('#0'));
    await bothMaps();
    assert.deepEqual(errors.filter((e) => !/Failed to load resource: the server responded with a status of 4\d\d/.test(e)), []);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
