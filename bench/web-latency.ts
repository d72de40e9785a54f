/**
 * Latency of one stamp's estimate and exact map in the browser page (onnxruntime-web) against
 * the server path (POST /explain to `occmap serve`, asked from the same page), side by side in
 * one run: `occmap serve` serves the page (cross-origin isolated: threads), Debian's Chromium
 * opens it, and the page times both paths on the same dataset stamps, alternating. Also the
 * static export's size. Run through /work/bin/quiet for figures to report.
 *
 *   node dist/bench/web-latency.js --classifier clf --explainer expl --data maps.npz
 *        [--stamps 20] [--exact 5] [--page-threads N] [--json FILE] [--screenshots DIR]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startServer } from '../src/serve/app.js';
import { exportWeb } from '../src/serve/export-web.js';
import { writeFileAtomic } from '../src/util/atomic.js';

const { values: a } = parseArgs({
  options: {
    classifier: { type: 'string' },
    explainer: { type: 'string' },
    data: { type: 'string' },
    stamps: { type: 'string', default: '20' },
    exact: { type: 'string', default: '5' },
    'page-threads': { type: 'string' },
    json: { type: 'string' },
    screenshots: { type: 'string' },
  },
});
if (!a.classifier || !a.explainer || !a.data) throw new Error('usage: web-latency --classifier C --explainer E --data maps.npz [--stamps 20] [--exact 5]');

const median = (v: number[]): number => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];

const out = mkdtempSync(path.join(tmpdir(), 'occmap-web-bench-'));
const site = await exportWeb({ classifier: a.classifier, explainer: a.explainer, data: a.data, out: path.join(out, 'site') });
rmSync(out, { recursive: true, force: true });
const server = await startServer({ classifier: a.classifier, explainer: a.explainer, data: a.data, port: 0 });
const { chromium } = await import('playwright-core');
const profile = mkdtempSync(path.join(tmpdir(), 'occmap-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1440, height: 1250 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const q = a['page-threads'] ? `?threads=${a['page-threads']}` : '';
  await page.goto(`${server.url}/${q}`);
  await page.waitForFunction(() => (window as unknown as { occmap?: unknown }).occmap !== undefined, undefined, { timeout: 120_000 });
  const r = await page.evaluate(
    async ({ nStamps, nExact }) => {
      const o = (window as any).occmap;
      await o.ready;
      await o.scored;
      const n = Math.min(nStamps, o.manifest.data.shape[0]);
      const post = async (s: any, exact: boolean): Promise<any> => {
        const res = await fetch(`explain${exact ? '?exact=1' : ''}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ image: s.image, ...(s.label !== null ? { label: s.label } : {}) }),
        });
        return res.json();
      };
      const nested = (s: any): any => {
        const [h, w, c] = s.shape;
        return { ...s, image: Array.from({ length: h }, (_, y) => Array.from({ length: w }, (_, x) => Array.from(s.image.slice((y * w + x) * c, (y * w + x + 1) * c)))) };
      };
      const est = { page: [] as number[], pageEngine: [] as number[], server: [] as number[], serverEngine: [] as number[] };
      const ex = { page: [] as number[], pageWorker: [] as number[], server: [] as number[], serverWorker: [] as number[] };
      // Warm both paths up, then alternate them stamp by stamp.
      for (let i = 0; i < 3; i++) {
        const s = o.stamp(i % n);
        await o.explain({ image: s.image, shape: s.shape, label: s.label ?? undefined });
        await post(nested(s), false);
      }
      for (let i = 0; i < n; i++) {
        const s = o.stamp(i);
        let t0 = performance.now();
        const e = await o.explain({ image: s.image, shape: s.shape, label: s.label ?? undefined });
        est.page.push(performance.now() - t0);
        est.pageEngine.push(e.timings.classifyMs + e.timings.estimateMs);
        const body = nested(s);
        t0 = performance.now();
        const sr = await post(body, false);
        est.server.push(performance.now() - t0);
        est.serverEngine.push(sr.timings.classifyMs + sr.timings.estimateMs);
      }
      for (let i = 0; i < Math.min(nExact, n); i++) {
        const s = o.stamp(i);
        let t0 = performance.now();
        const x = await o.exact({ image: s.image, shape: s.shape, label: s.label ?? undefined });
        ex.page.push(performance.now() - t0);
        ex.pageWorker.push(x.exact.timings.exactMs);
        t0 = performance.now();
        const sr = await post(nested(s), true);
        ex.server.push(performance.now() - t0);
        ex.serverWorker.push(sr.timings.exactMs);
      }
      return { est, ex, threads: o.threads, isolated: o.crossOriginIsolated, inferences: o.manifest.exact.inferencesPerMap, shape: o.manifest.data.shape };
    },
    { nStamps: Number(a.stamps), nExact: Number(a.exact) },
  );
  const m = (v: number[]): number => Number(median(v).toFixed(2));
  const result = {
    stamp: r.shape.slice(1),
    inferencesPerMap: r.inferences,
    pageThreads: r.threads,
    crossOriginIsolated: r.isolated,
    serverThreads: { estimate: server.ctx.predictor.engine, exact: server.ctx.exact.engine },
    estimateMs: { page: m(r.est.page), pageEngine: m(r.est.pageEngine), server: m(r.est.server), serverEngine: m(r.est.serverEngine), n: r.est.page.length },
    exactMs: { page: m(r.ex.page), pageWorker: m(r.ex.pageWorker), server: m(r.ex.server), serverWorker: m(r.ex.serverWorker), n: r.ex.page.length },
    exportBytes: site.bytes,
    exportParts: site.parts,
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  if (a.json) await writeFileAtomic(a.json, JSON.stringify(result, null, 2));
  if (a.screenshots) {
    await page.evaluate(() => (window as any).occmap.show(0));
    await page.waitForSelector('#panel-exact[data-drawn]', { timeout: 120_000 });
    await page.screenshot({ path: path.join(a.screenshots, 'web-real.png') });
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  await server.close();
}
