/**
 * The static export in a real browser: `occmap export-web` writes a folder, a plain static
 * file server (no COOP/COEP headers, like most) hosts it on loopback, and Debian's Chromium
 * (playwright-core) opens it with every other address unreachable and recorded. The page's own
 * models (onnxruntime-web) must give the estimates and probabilities Node gives
 * (onnxruntime-node, max abs diff < 1e-4) and the exact maps `occmap occlude` writes (< 1e-5).
 * Latency per estimate and per exact map in the page goes to test-artifacts/web-latency.json,
 * screenshots to test-artifacts/web-*.png.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readDataset } from '../src/data/dataset.js';
import { serializeNpy } from '../src/data/npy.js';
import { loadExplainer } from '../src/explainer/estimate.js';
import { selectChannels } from '../src/models/predictor.js';
import { exportWeb } from '../src/serve/export-web.js';
import { loadClassifier } from '../src/serve/models.js';
import { contentType } from '../src/serve/site.js';
import { C, H, N, W, makeConditionedEnsemble, makeServeFixtures, type ServeFixtures } from './serve-fixtures.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is absent (apt-get install -y chromium)`;
const ROOT = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const BIN = path.join(ROOT, 'bin/occmap.js');

let fx: ServeFixtures;
let site: string;
let siteEnsemble: string;
let server: Server;
let origin: string;
const served: string[] = [];

/** A static file server that knows nothing of occmap: files by path, no special headers. */
function staticServer(roots: Record<string, string>): Promise<Server> {
  const s = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    served.push(url.pathname);
    const [, prefix, ...rest] = url.pathname.split('/');
    const root = roots[prefix];
    const rel = decodeURIComponent(rest.join('/') || 'index.html');
    const file = root ? path.join(root, rel) : '';
    if (!root || !file.startsWith(root) || !existsSync(file) || statSync(file).isDirectory()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': contentType(file), 'content-length': statSync(file).size });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(s)));
}

before(async () => {
  if (skip) return;
  fx = await makeServeFixtures();
  const ensemble = await makeConditionedEnsemble(fx);
  site = path.join(fx.dir, 'site');
  siteEnsemble = path.join(fx.dir, 'site-ensemble');
  await exportWeb({ classifier: fx.classifier, explainer: fx.explainer, data: fx.data, out: site });
  await exportWeb({ classifier: fx.classifier, explainer: ensemble, data: fx.data, out: siteEnsemble });
  server = await staticServer({ a: site, b: siteEnsemble });
  const addr = server.address();
  origin = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
});

after(async () => {
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  if (fx) rmSync(fx.dir, { recursive: true, force: true });
});

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

async function launch() {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(path.join(tmpdir(), 'occmap-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 1250 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // No address but loopback resolves: the page can reach nothing beyond the test's server.
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
    ],
  });
  const foreign: string[] = [];
  const errors: string[] = [];
  context.on('request', (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith('data:') && !r.url().startsWith('blob:')) foreign.push(r.url());
  });
  await context.route('**/*', (route) => (route.request().url().startsWith(origin) ? route.continue() : route.abort('blockedbyclient')));
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  const close = async (): Promise<void> => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, foreign, errors, close };
}

test('export-web writes a self-contained folder; bad input is a one-line error and no folder', { skip }, async () => {
  for (const f of ['index.html', 'app.js', 'exact-worker.js', 'style.css', 'occmap.json', 'coi-serviceworker.js', 'ort/ort.wasm.min.mjs', 'ort/ort-wasm-simd-threaded.wasm', 'ort/ort-wasm-simd-threaded.mjs', 'models/classifier.onnx', 'models/explainer.onnx', 'data/stamps.npz']) {
    assert.ok(existsSync(path.join(site, f)), f);
  }
  const bad = path.join(mkdtempSync(path.join(tmpdir(), 'occmap-site-')), 'bad-site');
  await assert.rejects(exportWeb({ classifier: fx.dir, explainer: fx.explainer, out: bad }), /has no model\.onnx|is not a model directory/);
  await assert.rejects(exportWeb({ classifier: fx.classifier, explainer: fx.classifier, out: bad }), /not an explainer card|card/);
  await assert.rejects(exportWeb({ classifier: fx.classifier, explainer: fx.explainer, out: site }), /not empty: use --force/);
  await assert.rejects(exportWeb({ classifier: fx.classifier, explainer: fx.explainer, out: path.join(fx.explainer, 'site') }), /overlaps the input --explainer/);
  assert.equal(existsSync(bad), false);
  rmSync(path.dirname(bad), { recursive: true, force: true });
});

test('the export opened as a file (no server) says to serve it instead of loading forever', { skip, timeout: 60_000 }, async () => {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage();
    await page.goto(`file://${path.join(site, 'index.html')}`);
    await page.waitForFunction(() => /through a web server, not as a file/.test(document.querySelector('#models')?.textContent ?? ''));
  } finally {
    await browser.close();
  }
});

test('the static export computes in the page what Node computes, offline', { skip, timeout: 240_000 }, async (t) => {
  // Node's figures for the same stamps: onnxruntime-node, and `occmap occlude` for the exact maps.
  const ds = await readDataset(fx.data);
  const explainer = await loadExplainer(fx.explainer, { engine: 'onnx', threads: 1 });
  const predictor = await loadClassifier(fx.classifier, { engine: 'onnx', threads: 1 });
  const nodeEst = (await explainer.estimate(ds.images, [N, H, W, C])).maps;
  const nodeProbs = await predictor.predict(selectChannels(ds.images, N, H, W, C, predictor.channels), N);
  explainer.dispose();
  predictor.dispose();
  const occluded = path.join(fx.dir, 'occluded.npz');
  await promisify(execFile)(process.execPath, [BIN, 'occlude', '--model', fx.classifier, '--data', fx.data, '--out', occluded, '--pad', '1', '--quiet']);
  const occ = await readDataset(occluded);

  const b = await launch();
  try {
    const { page } = b;
    await page.goto(`${origin}/a/`);
    // The service worker adds COOP/COEP and reloads once: then the page may use threads.
    await page.waitForFunction(() => (window as unknown as { occmap?: unknown }).occmap !== undefined, undefined, { timeout: 60_000 });
    const info = await page.evaluate(async () => {
      const o = (window as any).occmap;
      await o.ready;
      await o.scored;
      return { threads: o.threads, isolated: o.crossOriginIsolated };
    });
    t.diagnostic(`page: crossOriginIsolated ${info.isolated}, onnxruntime-web threads ${info.threads}`);
    assert.equal(info.isolated, true, 'the service worker makes a header-less static server cross-origin isolated');

    const images = Array.from(ds.images);
    const inPage = await page.evaluate(
      async ({ images, n, shape }) => {
        const o = (window as any).occmap;
        const px = shape[0] * shape[1] * shape[2];
        const out = { maps: [] as number[][], probs: [] as number[][], ms: [] as number[] };
        for (let i = 0; i < n; i++) {
          const t0 = performance.now();
          const r = await o.explain({ image: images.slice(i * px, (i + 1) * px), shape });
          out.ms.push(performance.now() - t0);
          out.maps.push(Array.from(r.map as Float32Array));
          out.probs.push(Array.from(r.probabilities as Float32Array));
        }
        // Latency: the same stamp again and again, after the first calls warmed the sessions.
        const reps: number[] = [];
        for (let k = 0; k < 20; k++) {
          const t0 = performance.now();
          await o.explain({ image: images.slice(0, px), shape });
          reps.push(performance.now() - t0);
        }
        const ex = { maps: [] as number[][], ms: [] as number[], inferences: 0 };
        for (const i of [0, 1, 2]) {
          const t0 = performance.now();
          const r = await o.exact({ image: images.slice(i * px, (i + 1) * px), shape });
          ex.ms.push(performance.now() - t0);
          ex.maps.push(Array.from(r.exact.map as Float32Array));
          ex.inferences = r.exact.inferences;
        }
        return { ...out, reps, ex };
      },
      { images, n: N, shape: [H, W, C] },
    );
    for (let i = 0; i < N; i++) {
      const dm = maxAbsDiff(inPage.maps[i], nodeEst.subarray(i * H * W, (i + 1) * H * W));
      const dp = maxAbsDiff(inPage.probs[i], nodeProbs.subarray(i * 2, (i + 1) * 2));
      assert.ok(dm < 1e-4, `stamp ${i}: estimate differs from Node's by ${dm}`);
      assert.ok(dp < 1e-4, `stamp ${i}: probabilities differ from Node's by ${dp}`);
    }
    [0, 1, 2].forEach((i, j) => {
      const d = maxAbsDiff(inPage.ex.maps[j], occ.maps!.subarray(i * H * W, (i + 1) * H * W));
      assert.ok(d < 1e-5, `stamp ${i}: the page's exact map differs from occlude's by ${d}`);
    });
    const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    const latency = { estimateMs: median(inPage.reps), exactMs: median(inPage.ex.ms), inferencesPerMap: inPage.ex.inferences, threads: info.threads, stamp: [H, W, C] };
    t.diagnostic(`in-page latency: estimate ${latency.estimateMs.toFixed(2)} ms (median of 20), exact map ${latency.exactMs.toFixed(1)} ms (${latency.inferencesPerMap} inferences, median of 3)`);
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(path.join(ARTIFACTS, 'web-latency.json'), JSON.stringify(latency, null, 2));

    // The viewer itself: the first stamp shown with both maps, its outline and its list row.
    await page.waitForSelector('#panel-exact[data-drawn]', { timeout: 60_000 });
    await page.waitForSelector('#channels figure[data-outline="exact"]');
    assert.match((await page.textContent('#title')) ?? '', /obj-A/);
    assert.equal(await page.locator('#stamps tbody tr').count(), N);
    assert.match((await page.textContent('#panel-exact')) ?? '', /82 inferences/);
    assert.match((await page.textContent('#channels')) ?? '', /classifier \+ explainer/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-export.png') });

    // Sort by P(real), then by disagreement: the column's numbers come out ordered.
    const column = async (cls: string): Promise<number[]> => (await page.locator(`#stamps tbody td.${cls}`).allTextContents()).map(Number);
    await page.click('#stamps th button[data-sort="p"]');
    const ps = await column('p');
    assert.deepEqual(ps, [...ps].sort((x, y) => y - x));
    await page.click('#stamps th button[data-sort="disagreement"]');
    const ds2 = await column('d');
    assert.deepEqual(ds2, [...ds2].sort((x, y) => y - x));

    // Night mode: red light only.
    await page.keyboard.press('n');
    const shot = await page.screenshot({ path: path.join(ARTIFACTS, 'web-night.png') });
    const { PNG } = await import('pngjs');
    const png = PNG.sync.read(shot);
    let green = 0;
    for (let p = 0; p < png.width * png.height; p++) green = Math.max(green, png.data[4 * p + 1], png.data[4 * p + 2]);
    assert.ok(green <= 2, `night mode leaks green/blue light (max ${green})`);
    await page.keyboard.press('n');

    // An upload far outside the training range gets a warning, and still its maps.
    const raw = ds.images.slice(0, H * W * C).map((v) => v * 3000);
    await page.setInputFiles('#file', { name: 'raw-counts.npy', mimeType: 'application/octet-stream', buffer: Buffer.from(serializeNpy(raw, [H, W, C])) });
    await page.waitForFunction(() => document.querySelector('#title')?.textContent?.includes('raw-counts.npy'));
    await page.waitForSelector('#panel-exact[data-drawn]', { timeout: 60_000 });
    assert.match((await page.textContent('#range-warning')) ?? '', /Outside the training data's range/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-upload.png') });
    // A bad upload: the parser's message, and the page goes on.
    await page.setInputFiles('#file', { name: 'junk.npy', mimeType: 'application/octet-stream', buffer: Buffer.from('not an array') });
    await page.waitForFunction(() => /junk\.npy: .*npy/.test(document.querySelector('#status')?.textContent ?? ''));

    assert.deepEqual(b.foreign, [], 'the page asked for nothing beyond its own server');
    assert.deepEqual(b.errors, []);
    const outside = served.filter((u) => !u.startsWith('/a/') && !u.startsWith('/b/'));
    assert.deepEqual(outside, []);
  } finally {
    await b.close();
  }
});

test('a conditioned ensemble in the page: per-pixel std, and the estimates Node gives', { skip, timeout: 120_000 }, async () => {
  const ds = await readDataset(fx.data);
  const explainer = await loadExplainer(path.join(fx.dir, 'ensemble'), { engine: 'onnx', threads: 1 });
  const labels = Array.from(ds.labels!);
  const node = await explainer.estimate(ds.images, [N, H, W, C], labels);
  explainer.dispose();
  const b = await launch();
  try {
    await b.page.goto(`${origin}/b/`);
    await b.page.waitForFunction(() => (window as unknown as { occmap?: unknown }).occmap !== undefined, undefined, { timeout: 60_000 });
    const r = await b.page.evaluate(async ({ n }) => {
      const o = (window as any).occmap;
      await o.ready;
      const out = [] as { map: number[]; std: number[] }[];
      for (let i = 0; i < n; i++) {
        const s = o.stamp(i);
        const e = await o.explain({ image: s.image, shape: s.shape, label: s.label });
        out.push({ map: Array.from(e.map as Float32Array), std: Array.from(e.std as Float32Array) });
      }
      return out;
    }, { n: N });
    for (let i = 0; i < N; i++) {
      assert.ok(maxAbsDiff(r[i].map, node.maps.subarray(i * H * W, (i + 1) * H * W)) < 1e-4, `stamp ${i} mean`);
      assert.ok(maxAbsDiff(r[i].std, node.std!.subarray(i * H * W, (i + 1) * H * W)) < 1e-4, `stamp ${i} std`);
    }
    await b.page.waitForSelector('#panel-std[data-drawn]', { timeout: 60_000 });
    assert.deepEqual(b.errors, []);
    assert.deepEqual(b.foreign, []);
  } finally {
    await b.close();
  }
});
