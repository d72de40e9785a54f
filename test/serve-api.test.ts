import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { PNG } from 'pngjs';
import { serializeNpy } from '../src/data/npy.js';
import { exactMaps } from '../src/occlusion/exact.js';
import { startServer, type RunningServer } from '../src/serve/app.js';
import { ExactPool } from '../src/serve/exact-pool.js';
import { formatLoad, runServeLoad } from '../bench/serve-load.js';
import { loadClassifier } from '../src/serve/models.js';
import { selectChannels } from '../src/models/predictor.js';
import { UserError } from '../src/util/errors.js';
import { C, H, N, PARAMS, W, makeConditionedEnsemble, makeServeFixtures, type ServeFixtures } from './serve-fixtures.js';

let fx: ServeFixtures;
let server: RunningServer;

before(async () => {
  fx = await makeServeFixtures();
  server = await startServer({ classifier: fx.classifier, explainer: fx.explainer, data: fx.data, port: 0, host: '127.0.0.1', exactThreads: 1, bodyLimit: 64 * 1024 });
});

after(async () => {
  await server?.close();
  if (fx) rmSync(fx.dir, { recursive: true, force: true });
});

const stamp = (i: number): Float32Array => fx.images.slice(i * H * W * C, (i + 1) * H * W * C);

interface Res {
  status: number;
  body: Record<string, any>;
}

async function post(path: string, body: Uint8Array | string, type: string | undefined): Promise<Res> {
  const headers: Record<string, string> = type ? { 'content-type': type } : {};
  const r = await fetch(server.url + path, { method: 'POST', body: typeof body === 'string' ? body : Buffer.from(body), headers });
  return { status: r.status, body: (await r.json()) as Record<string, any> };
}
const npy = (a: Float32Array | Float64Array | Int32Array, shape: number[]): Uint8Array => serializeNpy(a, shape);
const postNpy = (a: Float32Array, shape: number[], q = ''): Promise<Res> => post(`/explain${q}`, npy(a, shape), 'application/octet-stream');
const get = async (path: string): Promise<Res> => {
  const r = await fetch(server.url + path);
  return { status: r.status, body: (await r.json()) as Record<string, any> };
};

function assertMap(m: unknown, what: string): number[] {
  assert.ok(Array.isArray(m) && m.length === H, `${what}: ${H} rows`);
  for (const row of m as unknown[]) assert.ok(Array.isArray(row) && row.length === W && row.every((v) => typeof v === 'number' && Number.isFinite(v)), `${what}: rows of ${W} numbers`);
  return (m as number[][]).flat();
}

async function stillServing(): Promise<void> {
  const r = await postNpy(stamp(0), [H, W, C]);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assertMap(r.body.estimate.map, 'estimate after abuse');
}

test('healthz and models describe what is loaded', async () => {
  const h = await get('/healthz');
  assert.equal(h.status, 200);
  assert.equal(h.body.ok, true);
  assert.equal(h.body.exact.state, 'ready');
  const m = await get('/models');
  assert.equal(m.status, 200);
  assert.match(m.body.classifier.engine, /onnxruntime/);
  assert.match(m.body.explainer.engine, /onnxruntime/);
  assert.match(m.body.exact.engine, /onnxruntime/);
  assert.deepEqual(m.body.classifier.inputShape, [H, W, 1]);
  assert.deepEqual(m.body.classifier.channels, [1]);
  assert.equal(m.body.explainer.card.kind, 'explainer');
  assert.equal(m.body.classifier.card.kind, 'classifier');
  assert.equal(m.body.exact.inferencesPerMap, 82);
  assert.deepEqual(m.body.data.shape, [N, H, W, C]);
});

test('a good .npy, JSON and PNG stamp each get probabilities and a map of the stamp size', async () => {
  const a = await postNpy(stamp(1), [H, W, C]);
  assert.equal(a.status, 200, JSON.stringify(a.body));
  assert.equal(a.body.channels, 'data');
  assert.equal(a.body.probabilities.length, 2);
  assert.ok(Math.abs(a.body.probabilities[0] + a.body.probabilities[1] - 1) < 1e-4);
  assert.equal(a.body.predicted, a.body.probabilities[1] > a.body.probabilities[0] ? 1 : 0);
  assert.equal(a.body.exact, null);
  const estA = assertMap(a.body.estimate.map, 'npy estimate');
  for (const k of ['classifyMs', 'estimateMs', 'totalMs']) assert.ok(a.body.timings[k] >= 0, k);

  // The same stamp reduced to the classifier's channel, as JSON rows: the same answer.
  const ch1 = selectChannels(stamp(1), 1, H, W, C, [1]);
  const rows = Array.from({ length: H }, (_, y) => Array.from(ch1.subarray(y * W, (y + 1) * W)));
  const j = await post('/explain', JSON.stringify({ image: rows, label: 1 }), 'application/json');
  assert.equal(j.status, 200, JSON.stringify(j.body));
  assert.equal(j.body.channels, 'model');
  assert.equal(j.body.label, 1);
  const estJ = assertMap(j.body.estimate.map, 'json estimate');
  assert.ok(estJ.every((v, i) => Math.abs(v - estA[i]) < 1e-6));
  assert.deepEqual(j.body.probabilities, a.body.probabilities);

  // An 8-bit greyscale PNG: values are grey / 255.
  const png = new PNG({ width: W, height: H, colorType: 0, inputColorType: 0, bitDepth: 8, inputHasAlpha: false });
  const grey = Buffer.alloc(H * W);
  for (let p = 0; p < H * W; p++) grey[p] = Math.round(255 * Math.min(1, ch1[p]));
  png.data = grey;
  const bytes = PNG.sync.write(png, { colorType: 0, inputColorType: 0, inputHasAlpha: false, bitDepth: 8 });
  const g = await post('/explain?echo=1', bytes, 'image/png');
  assert.equal(g.status, 200, JSON.stringify(g.body));
  assertMap(g.body.estimate.map, 'png estimate');
  assert.deepEqual(g.body.shape, [H, W, 1]);
  assert.ok(Math.abs(g.body.image[4][4][0] - grey[4 * W + 4] / 255) < 1e-6, 'echoed PNG pixel');

  // .npy as (1,H,W,C) and with another dtype reads the same.
  const f64 = await post('/explain', npy(Float64Array.from(stamp(1)), [1, H, W, C]), 'application/x-npy');
  assert.equal(f64.status, 200, JSON.stringify(f64.body));
  assert.deepEqual(f64.body.probabilities, a.body.probabilities);
});

test('?exact=1 returns the exact map exactMaps gives for the stamp, and the metrics between the maps', async () => {
  const i = 2;
  const r = await postNpy(stamp(i), [H, W, C], '?exact=1');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const got = assertMap(r.body.exact.map, 'exact');
  const p = await loadClassifier(fx.classifier, { engine: 'auto', threads: 1 });
  try {
    const want = await exactMaps(p, stamp(i), [1, H, W, C], PARAMS);
    const maxDiff = Math.max(...got.map((v, k) => Math.abs(v - want.maps[k])));
    assert.ok(maxDiff < 1e-5, `exact map differs from exactMaps by ${maxDiff}`);
    assert.equal(r.body.exact.target.class, want.targets[0]);
  } finally {
    p.dispose();
  }
  assert.equal(r.body.exact.inferences, 82);
  const est = assertMap(r.body.estimate.map, 'estimate');
  const mse = est.reduce((s, v, k) => s + (v - got[k]) ** 2, 0) / est.length;
  assert.ok(Math.abs(r.body.metrics.mse - mse) < 1e-5, `mse ${r.body.metrics.mse} vs ${mse}`);
  for (const k of ['mae', 'ssim', 'pearson', 'spearman', 'iouTop10']) assert.equal(typeof r.body.metrics[k], 'number', k);
  assert.ok(r.body.timings.exactMs > 0);
  assert.ok(r.body.timings.exactQueueMs >= 0);

  // The page's stamp endpoint returns the stored map, which is that exact map.
  const s = await get(`/api/stamps/${i}`);
  assert.equal(s.status, 200);
  assert.deepEqual(s.body.shape, [H, W, C]);
  assert.equal(s.body.label, fx.labels[i]);
  const stored = assertMap(s.body.map, 'stored');
  assert.ok(stored.every((v, k) => Math.abs(v - got[k]) < 1e-5));
  assert.equal(s.body.image[3][4][1], stamp(i)[(3 * W + 4) * C + 1]);
});

test('stamp listing pages through the dataset', async () => {
  const l = await get('/api/stamps?offset=2&limit=3');
  assert.equal(l.status, 200);
  assert.equal(l.body.total, N);
  assert.deepEqual(l.body.items.map((it: { index: number }) => it.index), [2, 3, 4]);
  assert.equal(l.body.items[0].id, 'obj-B');
  assert.deepEqual(l.body.channels, ['noise', 'signal']);
  for (const [path, status] of [['/api/stamps/99', 404], ['/api/stamps/-1', 400], ['/api/stamps?limit=abc', 400], ['/api/stamps?limit=0', 400], ['/nope', 404]] as const) {
    const r = await get(path);
    assert.equal(r.status, status, path);
    assert.equal(typeof r.body.error, 'string');
  }
});

test('bad input gets a 4xx with a message, and the server keeps serving', async () => {
  const good = stamp(0);
  const goodNpy = npy(good, [H, W, C]);
  const withNaN = good.slice();
  withNaN[17] = NaN;
  const cases: [string, () => Promise<Res>, number, RegExp][] = [
    ['random bytes', () => post('/explain', new Uint8Array(randomBytes(500)), 'application/octet-stream'), 400, /not a readable \.npy/],
    ['truncated .npy', () => post('/explain', goodNpy.subarray(0, goodNpy.length - 40), 'application/octet-stream'), 400, /npy/],
    ['truncated .npy header', () => post('/explain', goodNpy.subarray(0, 30), 'application/x-npy'), 400, /npy/],
    ['wrong size', () => postNpy(new Float32Array(5 * 5 * C), [5, 5, C]), 422, /5x5x2; expected 9x9x1/],
    ['wrong channel count', () => postNpy(new Float32Array(H * W * 3), [H, W, 3]), 422, /3 channel/],
    ['a stack of stamps', () => postNpy(new Float32Array(2 * H * W * C), [2, H, W, C]), 400, /one stamp per request/],
    ['5-D array', () => postNpy(new Float32Array(H * W * C), [1, 1, H, W, C]), 400, /shape/],
    ['NaN in .npy', () => postNpy(withNaN, [H, W, C]), 400, /NaN\/Inf value at element 17/],
    ['string dtype', () => post('/explain', serializeNpy(['a', 'bc'], [2]), 'application/octet-stream'), 400, /non-numeric dtype/],
    ['oversized body', () => post('/explain', new Uint8Array(200 * 1024), 'application/octet-stream'), 413, /larger than the 65536-byte limit/],
    ['wrong content type', () => post('/explain', 'hello', 'text/plain'), 415, /Content-Type/],
    ['form content type', () => post('/explain', 'a=1', 'application/x-www-form-urlencoded'), 415, /Content-Type/],
    ['empty body', () => post('/explain', new Uint8Array(0), 'application/octet-stream'), 400, /empty|body/],
    ['JSON garbage', () => post('/explain', '{"image": [[1, 2], [3', 'application/json'), 400, /not valid JSON/],
    ['JSON NaN literal', () => post('/explain', '{"image": [[NaN]]}', 'application/json'), 400, /not valid JSON/],
    ['JSON infinity', () => post('/explain', `{"image": ${JSON.stringify(Array.from({ length: H }, () => Array(W).fill(1)))} }`.replace('[1,', '[1e999,'), 'application/json'), 400, /not finite/],
    ['JSON array body', () => post('/explain', '[1, 2]', 'application/json'), 400, /must be an object/],
    ['JSON without image', () => post('/explain', '{"img": 1}', 'application/json'), 400, /no "image"/],
    ['JSON strings', () => post('/explain', JSON.stringify({ image: [['a', 'b'], ['c', 'd']] }), 'application/json'), 400, /expected a number/],
    ['JSON ragged', () => post('/explain', JSON.stringify({ image: [[1, 2], [3]] }), 'application/json'), 400, /rectangular/],
    ['JSON flat list', () => post('/explain', JSON.stringify({ image: [1, 2, 3] }), 'application/json'), 400, /2-D/],
    ['label out of range', () => postNpy(good, [H, W, C], '?label=7'), 422, /label 7 is not a class/],
    ['label not a number', () => postNpy(good, [H, W, C], '?label=x'), 400, /non-negative integer/],
    ['colour PNG', () => post('/explain', PNG.sync.write(Object.assign(new PNG({ width: W, height: H }), { data: Buffer.from(Array.from({ length: H * W * 4 }, (_, k) => (k % 4 === 0 ? 200 : k % 4 === 3 ? 255 : 10))) })), 'image/png'), 400, /colour PNG/],
    ['broken PNG', () => post('/explain', Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47]), randomBytes(60)]), 'image/png'), 400, /not a readable PNG/],
  ];
  for (const [name, send, status, message] of cases) {
    const r = await send();
    assert.equal(r.status, status, `${name}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.statusCode, status, name);
    assert.match(String(r.body.error), message, name);
    assert.ok(!String(r.body.error).includes('\n'), `${name}: one line`);
  }
  await stillServing();
  const h = await get('/healthz');
  assert.equal(h.body.ok, true);
});

test('the exact-map queue refuses work beyond its bound with a 503, and a worker that cannot load fails cleanly', async () => {
  const pool = await ExactPool.start({ classifier: fx.classifier, engine: 'auto', threads: 1 }, { maxQueue: 1 });
  try {
    const x = stamp(3);
    const first = pool.run(x, [1, H, W, C], PARAMS);
    await assert.rejects(pool.run(x, [1, H, W, C], PARAMS), (e: Error & { statusCode?: number }) => e.statusCode === 503 && /queue is full/.test(e.message));
    const r = await first;
    assert.equal(r.maps.length, H * W);
    assert.equal(pool.pending, 0);
    // A bad job fails alone (a 422), and the worker goes on.
    await assert.rejects(pool.run(new Float32Array(4), [1, 2, 2, 1], PARAMS), (e: Error & { statusCode?: number }) => e.statusCode === 422);
    assert.equal((await pool.run(x, [1, H, W, C], PARAMS)).maps.length, H * W);
    // A worker that dies (here: terminated) fails what it held; the next map starts a new one.
    // The job is held back from the thread: otherwise a quick map can be done (and answered)
    // before the termination lands, and the test would race the worker. Holding it back also
    // means the thread is terminated idle, never inside ONNX Runtime (that aborts the process).
    const worker = (pool as unknown as { worker: Worker }).worker;
    worker.postMessage = () => undefined;
    const running = pool.run(x, [1, H, W, C], PARAMS);
    assert.equal(pool.pending, 1);
    await worker.terminate();
    await assert.rejects(running, (e: Error & { statusCode?: number }) => e.statusCode === 503 && /worker stopped/.test(e.message));
    assert.equal(pool.state, 'down');
    assert.equal((await pool.run(x, [1, H, W, C], PARAMS)).maps.length, H * W);
    assert.equal(pool.state, 'ready');
  } finally {
    await pool.close();
  }
  await assert.rejects(ExactPool.start({ classifier: fx.dir + '/nothing', engine: 'auto' }), (e: Error) => /nothing: does not exist/.test(e.message));
  await stillServing();
});

test('a conditioned ensemble: the map is drawn for the given label, with a std, and the exact map for the same class', async () => {
  const ens = await startServer({ classifier: fx.classifier, explainer: await makeConditionedEnsemble(fx), port: 0, exactThreads: 1 });
  try {
    const body = (label: number) => JSON.stringify({ image: Array.from({ length: H }, (_, y) => Array.from({ length: W }, (_, x) => Array.from(stamp(4).subarray((y * W + x) * C, (y * W + x + 1) * C)))), label });
    const send = async (label: number, q = ''): Promise<Res> => {
      const r = await fetch(`${ens.url}/explain${q}`, { method: 'POST', body: body(label), headers: { 'content-type': 'application/json' } });
      return { status: r.status, body: (await r.json()) as Record<string, any> };
    };
    const a = await send(0, '?exact=1');
    const b = await send(1);
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.deepEqual(a.body.condition, { class: 0, source: 'label' });
    assert.deepEqual(b.body.condition, { class: 1, source: 'label' });
    const std = assertMap(a.body.estimate.std, 'std');
    assert.ok(std.some((v) => v > 0), 'two different members disagree somewhere');
    assert.ok(assertMap(a.body.estimate.map, 'a').some((v, k) => v !== assertMap(b.body.estimate.map, 'b')[k]), 'the class changes the estimate');
    // The exact map explains the class the estimate was drawn for (not the prediction).
    assert.deepEqual(a.body.exact.target, { class: 0, source: 'label' });
    const p = await loadClassifier(fx.classifier, { engine: 'auto', threads: 1 });
    try {
      const want = await exactMaps(p, stamp(4), [1, H, W, C], { ...PARAMS, target: 'label', labels: Int32Array.of(0) });
      const got = assertMap(a.body.exact.map, 'exact');
      assert.ok(got.every((v, k) => Math.abs(v - want.maps[k]) < 1e-5));
    } finally {
      p.dispose();
    }
  } finally {
    await ens.close();
  }
});

test('startup refuses models that cannot serve together, with a one-line error', async () => {
  await assert.rejects(
    startServer({ classifier: fx.classifier, explainer: fx.dir + '/missing', port: 0 }),
    (e: Error) => e instanceof UserError && /missing: does not exist/.test(e.message),
  );
  await assert.rejects(
    startServer({ classifier: fx.classifier, explainer: fx.explainer, data: fx.dir + '/none.npz', port: 0 }),
    (e: Error) => e instanceof UserError && /none\.npz/.test(e.message),
  );
});

test('the load bench drives `occmap serve` in a child process: estimates and exact maps, no errors', async () => {
  const lines: string[] = [];
  const r = await runServeLoad({ classifier: fx.classifier, explainer: fx.explainer, clients: 4, exactClients: 1, durationS: 1, warmupS: 0.3, log: (l) => lines.push(l) });
  assert.match(lines[0], /4 estimate clients \+ 1 exact-map clients/);
  assert.equal(r.estimate.errors, 0, JSON.stringify(r.estimate.errorKinds));
  assert.ok(r.estimate.requests > 0);
  assert.ok(r.estimate.p50 <= r.estimate.p99 && r.estimate.p99 <= r.estimate.max);
  assert.equal(r.exact?.errors, 0, JSON.stringify(r.exact?.errorKinds));
  assert.ok((r.exact?.requests ?? 0) > 0);
  assert.match(formatLoad(r), /req\/s; latency ms p50/);
});

test('beyond loopback, /models shows names, not paths; a PNG bomb gets a 422 from its header', async () => {
  const pub = await startServer({ classifier: fx.classifier, explainer: fx.explainer, data: fx.data, port: 0, host: '0.0.0.0', exactThreads: 1 });
  try {
    const port = new URL(pub.url).port;
    const m = (await (await fetch(`http://127.0.0.1:${port}/models`)).json()) as Record<string, any>;
    assert.equal(m.classifier.path, path.basename(fx.classifier));
    assert.equal(m.explainer.path, path.basename(fx.explainer));
    assert.equal(m.data.path, path.basename(fx.data));
    assert.ok(!JSON.stringify(m).includes(fx.dir), 'no absolute path of the model directories anywhere (cards included)');
    // Loopback keeps the full paths (the operator's own machine).
    const local = (await get('/models')).body;
    assert.equal(local.classifier.path, path.resolve(fx.classifier));
    // A PNG whose header declares 20000x20000 (its pixel data is not even there): refused unread.
    const ihdr = Buffer.alloc(33);
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(ihdr);
    ihdr.writeUInt32BE(13, 8);
    ihdr.write('IHDR', 12, 'latin1');
    ihdr.writeUInt32BE(20000, 16);
    ihdr.writeUInt32BE(20000, 20);
    ihdr[24] = 8;
    const r = await fetch(`http://127.0.0.1:${port}/explain`, { method: 'POST', body: ihdr, headers: { 'content-type': 'image/png' } });
    const body = (await r.json()) as Record<string, any>;
    assert.equal(r.status, 422, JSON.stringify(body));
    assert.match(body.error ?? body.message, /20000x20000 PNG .*takes 21x21 stamps \(not decoded\)|takes \d+x\d+ stamps/);
  } finally {
    await pub.close();
  }
});
