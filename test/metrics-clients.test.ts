/**
 * One compareMaps for every client: `evaluate`, `explain --exact` and the server report the
 * same numbers for the same maps. Maps made with and without seed normalisation (the case
 * where computing "MSE" two ways would disagree).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runExplain } from '../src/cli/explain.js';
import { parseNpz } from '../src/data/npz.js';
import { serializeNpy } from '../src/data/npy.js';
import { evaluateExplainer, type EvaluableExplainer } from '../src/explainer/evaluate.js';
import { readDataset } from '../src/data/dataset.js';
import { readExplainerCard } from '../src/explainer/estimate.js';
import { compareMaps, importanceOf, METRIC_NAMES } from '../src/metrics/compare.js';
import { startServer, type RunningServer } from '../src/serve/app.js';
import { C, H, N, PARAMS, W, makeServeFixtures, type ServeFixtures } from './serve-fixtures.js';

let fx: ServeFixtures;
const servers: RunningServer[] = [];

before(async () => {
  fx = await makeServeFixtures();
  // The same explainer, told its training maps were drop maps without normalisation.
  const raw = path.join(fx.dir, 'expl-raw');
  cpSync(fx.explainer, raw, { recursive: true });
  const card = JSON.parse(readFileSync(path.join(raw, 'card.json'), 'utf8'));
  card.occlusion = { ...card.occlusion, score: 'drop', aggregate: 'mean', normalize: 'none' };
  writeFileSync(path.join(raw, 'card.json'), JSON.stringify(card));
});

after(async () => {
  for (const s of servers) await s.close();
  if (fx) rmSync(fx.dir, { recursive: true, force: true });
});

const round6 = (v: number): number => Math.round(v * 1e6) / 1e6;

for (const variant of ['expl', 'expl-raw'] as const) {
  test(`${variant}: evaluate, explain --exact and the server give the same numbers for the same maps`, async () => {
    const explainer = path.join(fx.dir, variant);
    const params = readExplainerCard(explainer).occlusion as { score: 'prob' | 'drop'; normalize: 'seed' | 'none' };
    assert.equal(params.normalize, variant === 'expl' ? PARAMS.normalize : 'none');

    // explain --exact on every stamp: the estimated and exact maps it wrote, and its figures.
    const out = path.join(fx.dir, `${variant}-explained.npz`);
    const s = await runExplain({ explainer, input: fx.data, exact: true, model: fx.classifier, out, engine: 'auto', quiet: true });
    const { arrays } = parseNpz(readFileSync(out));
    const est = arrays.get('maps')!.data as Float32Array;
    const exact = arrays.get('exact')!.data as Float32Array;
    const raw = arrays.get('exact_raw')?.data as Float64Array | undefined;
    const want = compareMaps({ data: est, shape: [N, H, W] }, { data: exact, shape: [N, H, W], importance: raw ? importanceOf(raw, params.score) : undefined }, params);
    for (const k of METRIC_NAMES) assert.equal(s.exact![k], want.mean[k], `explain ${k}`);

    // evaluate on the same maps: an explainer returning explain's estimates, the exact maps as data.
    const ds = await readDataset(fx.data);
    const card = { ...readExplainerCard(explainer), split: { by: 'item' as const, valIndices: [] as number[] } };
    const fake: EvaluableExplainer = { card, estimate: async () => ({ maps: est }) };
    const ev = await evaluateExplainer({
      explainer: fake,
      data: { ...ds, maps: exact, mapsRaw: raw, meta: { ...ds.meta, occlusion: { ...ds.meta.occlusion, ...params } } },
      split: 'all',
      baselines: false,
      faithfulness: false,
      batchSize: N,
    });
    const perMap = ev.methods.find((m) => m.name === 'explainer')!.perMap;
    for (const k of METRIC_NAMES) assert.deepEqual(perMap[k], want.perMap[k], `evaluate ${k}`);

    // The server: its metrics are compareMaps of the maps it returns, and those are explain's maps.
    const server = await startServer({ classifier: fx.classifier, explainer, data: fx.data, port: 0, host: '127.0.0.1', exactThreads: 1 });
    servers.push(server);
    for (let i = 0; i < N; i++) {
      const body = serializeNpy(fx.images.slice(i * H * W * C, (i + 1) * H * W * C), [H, W, C]);
      const r = await fetch(`${server.url}/explain?exact=1`, { method: 'POST', body: Buffer.from(body), headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(r.status, 200);
      const j = (await r.json()) as { estimate: { map: number[][] }; exact: { map: number[][]; raw?: number[][] }; metrics: Record<string, number> };
      const e1 = Float32Array.from(j.estimate.map.flat());
      const x1 = Float32Array.from(j.exact.map.flat());
      // As evaluate and explain: the exact map's importance order from its maps before the clip.
      assert.equal(!!j.exact.raw, !!raw, 'the server returns the raw exact map when explain writes exact_raw');
      const imp1 = j.exact.raw ? importanceOf(Float64Array.from(j.exact.raw.flat()), params.score) : undefined;
      const own = compareMaps({ data: e1, shape: [H, W] }, { data: x1, shape: [H, W], importance: imp1 }, params).mean;
      for (const k of METRIC_NAMES) {
        const key = k === 'iou' ? 'iouTop10' : k;
        assert.equal(j.metrics[key], round6(own[k]), `server ${k}, stamp ${i}`);
        // The server ran its own engines on one stamp: its maps equal explain's to float
        // precision (checked below), so the continuous metrics agree closely; rank metrics can
        // flip on near-ties and are covered by the equality with compareMaps above.
        if (!['spearman', 'spearmanTop', 'iou'].includes(k)) assert.ok(Math.abs(j.metrics[key] - want.perMap[k][i]) < 1e-4, `server ${k} ${j.metrics[key]} vs explain ${want.perMap[k][i]}, stamp ${i}`);
      }
      const hw = H * W;
      for (let p = 0; p < hw; p++) {
        assert.ok(Math.abs(e1[p] - est[i * hw + p]) < 1e-5, 'server estimate = explain estimate');
        assert.ok(Math.abs(x1[p] - exact[i * hw + p]) < 1e-5, 'server exact map = explain exact map');
      }
    }
  });
}
