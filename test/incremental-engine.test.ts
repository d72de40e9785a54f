/**
 * The incremental engine on ONNX Runtime against the full engine (the exported model on ONNX
 * Runtime, one inference per position): the same maps to < 1e-5 on the issue's model shapes;
 * fallback notes for graphs it cannot run; exactMaps' engine option.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tf, tfl, initTf } from '../src/runtime/tfjs.js';
import { buildClassifier } from '../src/models/classifier.js';
import { modelToOnnx } from '../src/models/to-onnx.js';
import { loadModel } from '../src/models/load.js';
import { exactMaps, SEED_PARAMS, type ExactOptions } from '../src/occlusion/exact.js';
import { incrementalPredictorFor, type IncrementalPredictor } from '../src/occlusion/incremental-predictor.js';
import { assignLanes, laneItems } from '../src/occlusion/incremental.js';
import { TfjsPredictor } from '../src/models/tfjs-predictor.js';
import type { Predictor } from '../src/models/predictor.js';
import { Rng } from '../src/util/rng.js';
import { approximationError } from '../src/occlusion/approx.js';
import { nchwcBlockSize } from '../src/occlusion/incremental-ort.js';
import type { LayoutChoice } from '../src/occlusion/net-layout.js';

type Model = InstanceType<typeof tfl.LayersModel>;

/** Random weights (seeded), biases and batch-norm statistics included, so every term matters. */
function randomize(model: Model, seed: number): Model {
  const rng = new Rng(seed);
  const names = model.weights.map((w) => w.originalName ?? w.name);
  const values = model.getWeights().map((w, i) => {
    const fanIn = w.shape.length === 4 ? w.shape[0] * w.shape[1] * w.shape[2] : w.shape.length === 2 ? w.shape[0] : 0;
    const positive = /moving_variance|gamma/.test(names[i]);
    const v = Float32Array.from({ length: w.size }, () =>
      positive ? 0.5 + rng.next() : (rng.next() * 2 - 1) * (fanIn > 0 ? 1.7 / Math.sqrt(fanIn) : 0.2),
    );
    return tf.tensor(v, w.shape);
  });
  model.setWeights(values);
  values.forEach((v) => v.dispose());
  return model;
}

/** The maps carry a signal (else equal maps would prove nothing): spread of values within a map. */
function spread(maps: Float32Array, n: number): number {
  const m = maps.length / n;
  let min = Infinity;
  for (let i = 0; i < n; i++) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let j = 0; j < m; j++) {
      lo = Math.min(lo, maps[i * m + j]);
      hi = Math.max(hi, maps[i * m + j]);
    }
    min = Math.min(min, hi - lo);
  }
  return min;
}

const L = tfl.layers;

function seqModel(input: [number, number, number], layers: InstanceType<typeof tfl.layers.Layer>[]): Model {
  const m = tfl.sequential();
  m.add(L.inputLayer({ inputShape: input }));
  for (const l of layers) m.add(l);
  return m;
}

interface Case {
  name: string;
  build: () => Model;
  input: [number, number, number];
  opts: Partial<ExactOptions>;
}

const CASES: Case[] = [
  { name: 'seed classifier, relu (4x4 even kernel same, 3x3 same, max pool valid)', input: [21, 21, 1], build: () => buildClassifier({ inputShape: [21, 21, 1], numClasses: 2, seed: 1 }), opts: {} },
  { name: 'seed classifier, linear activations', input: [21, 21, 1], build: () => buildClassifier({ inputShape: [21, 21, 1], numClasses: 2, seed: 2, activation: 'linear' }), opts: { normalize: 'none', score: 'drop' } },
  {
    name: "valid 5x5 stride 2, average pool, even 2x2 valid, 2 channels, fill mean",
    input: [17, 15, 2],
    build: () =>
      seqModel([17, 15, 2], [
        L.conv2d({ filters: 6, kernelSize: 5, strides: 2, padding: 'valid', activation: 'relu' }),
        L.averagePooling2d({ poolSize: 2 }),
        L.conv2d({ filters: 8, kernelSize: 2, padding: 'valid', activation: 'tanh' }),
        L.flatten(),
        L.dense({ units: 3, activation: 'softmax' }),
      ]),
    opts: { patch: [4, 3], stride: 2, pad: 2, fill: 'mean', normalize: 'none', aggregate: 'mean' },
  },
  {
    name: 'asymmetric zero padding, 3x2 same stride 2, max pool 3x3/2 same, dilated conv, batch norm, leaky relu, dropout',
    input: [14, 12, 1],
    build: () =>
      seqModel([14, 12, 1], [
        L.zeroPadding2d({ padding: [[1, 2], [0, 3]] }),
        L.conv2d({ filters: 8, kernelSize: [3, 2], strides: 2, padding: 'same' }),
        L.batchNormalization(),
        L.leakyReLU({ alpha: 0.1 }),
        L.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }),
        L.conv2d({ filters: 8, kernelSize: 3, dilationRate: 2, padding: 'same', activation: 'relu' }),
        L.dropout({ rate: 0.3 }),
        L.flatten(),
        L.dense({ units: 16, activation: 'relu' }),
        L.dense({ units: 4 }),
        L.softmax(),
      ]),
    opts: { patch: [2, 2], stride: 1, pad: 1, fill: 0.5, normalize: 'seed' },
  },
];

async function fullEngine(model: Model, dir: string, name: string): Promise<Predictor> {
  const file = path.join(dir, `${name}.onnx`);
  writeFileSync(file, modelToOnnx(model).bytes);
  return loadModel(file, { threads: 2, outputs: 'probs', layout: 'NHWC' });
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Incremental maps of case `c` (random weights of seed 10 + ci) equal the full engine's; returns the engine's stats. */
async function assertSameMaps(c: Case, ci: number, dir: string, lanes: number, layout?: LayoutChoice): Promise<IncrementalPredictor['stats']> {
  const model = randomize(c.build(), 10 + ci);
  const rng = new Rng(20 + ci);
  const n = 3;
  const [h, w, ch] = c.input;
  const images = Float32Array.from({ length: n * h * w * ch }, () => rng.next() * 2 - 1);
  const opts: ExactOptions = { ...SEED_PARAMS, ...c.opts, batchSize: 2 * 700 };
  const full = await fullEngine(model, dir, `m${ci}`);
  const r = incrementalPredictorFor(model, { hash: 'test', threads: Math.max(2, lanes), lanes, layout });
  assert.ok('predictor' in r, `${c.name}: ${'unsupported' in r ? r.unsupported : ''}`);
  const inc = (r as { predictor: IncrementalPredictor }).predictor;
  try {
    const want = await exactMaps(full, images, [n, h, w, ch], opts);
    const got = await exactMaps(inc, images, [n, h, w, ch], opts);
    assert.equal(got.engine, 'incremental');
    assert.equal(want.engine, 'full');
    assert.deepEqual([...got.targets], [...want.targets], c.name);
    assert.ok(maxDiff(got.baseProbs, want.baseProbs) < 1e-5, `${c.name}: base probabilities`);
    const d = maxDiff(got.maps, want.maps);
    assert.ok(d < 1e-5, `${c.name}: max abs diff ${d}`);
    assert.ok(spread(want.maps, n) > 1e-3, `${c.name}: the test maps are flat`);
    assert.equal(got.inferences, want.inferences);
    // the windows really were used: positions recomputed, and at least one stage on windows
    assert.ok(inc.stats.items > 0 && inc.stats.stages.some((st) => st.mode.startsWith('window')), c.name);
    assert.equal(inc.stats.lanes, lanes, c.name);
    // plain predictions agree too
    const p1 = await inc.predict(images, n);
    const p2 = await full.predict(images, n);
    assert.ok(maxDiff(p1, p2) < 1e-5);
    return inc.stats;
  } finally {
    inc.dispose();
    full.dispose();
    model.dispose();
  }
}

test('incremental maps equal the full engine\'s (< 1e-5) on four model shapes', async () => {
  await initTf('cpu');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'occmap-incr-'));
  try {
    // one lane on 2 intra-op threads, and 2 or 3 lanes (worker threads) sharing the items
    for (const [ci, c] of CASES.entries()) await assertSameMaps(c, ci, dir, ci === 0 ? 1 : 2 + (ci % 2), 'nhwc');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Zero padding after the last stage (the tail converts back to NHWC) and 20 channels (padded to whole blocks). */
const PADDED_TAIL: Case = {
  name: '20 channels, max pool same, zero padding before flatten',
  input: [11, 10, 3],
  build: () =>
    seqModel([11, 10, 3], [
      L.conv2d({ filters: 20, kernelSize: 3, padding: 'same', activation: 'elu' }),
      L.maxPooling2d({ poolSize: 2, strides: 2, padding: 'same' }),
      L.conv2d({ filters: 20, kernelSize: 2, padding: 'valid', activation: 'relu' }),
      L.zeroPadding2d({ padding: 1 }),
      L.flatten(),
      L.dense({ units: 3, activation: 'softmax' }),
    ]),
  opts: { patch: [3, 3], stride: 1, pad: 1, normalize: 'none' },
};

test('NCHWc between steps: the same maps (< 1e-5) as the full engine; a model it cannot lay out is refused with the reason', async (t) => {
  if ((await nchwcBlockSize()) === 0) {
    t.skip('this ONNX Runtime has no NCHWc kernels');
    return;
  }
  await initTf('cpu');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'occmap-incr-nchwc-'));
  try {
    for (const [ci, c] of [...CASES.slice(0, 3), PADDED_TAIL].entries()) {
      const st = await assertSameMaps(c, ci, dir, ci === 0 ? 1 : 2, 'nchwc');
      assert.match(st.layout, /^NCHWc \(block \d+\)$/, c.name);
    }
    // batch normalisation after a convolution: asked for NCHWc, the engine says why not
    await assert.rejects(assertSameMaps(CASES[3], 3, dir, 1, 'nchwc'), /cannot run this model in NCHWc: .*batch normalisation/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('lanes split every map\'s items into disjoint shares covering them all, in proportion to their shares', () => {
  for (const [n, nActive, shares] of [[1, 7, [1]], [3, 10, [0.5, 0.5]], [2, 50, [0.2, 0.3, 0.5]], [2, 2, [0.4, 0.3, 0.3]], [1, 625, [0.55, 0.45]]] as [number, number, number[]][]) {
    const laneOf = assignLanes(nActive, shares);
    const seen = new Int32Array(n * nActive);
    for (let lane = 0; lane < shares.length; lane++) {
      const ids = laneItems(n, laneOf, lane);
      for (let t = 1; t < ids.length; t++) assert.ok(ids[t] > ids[t - 1], 'ascending');
      for (const id of ids) {
        assert.equal(laneOf[id % nActive], lane);
        seen[id]++;
      }
      // within one position of its share
      assert.ok(Math.abs(ids.length / n - shares[lane] * nActive) <= 1, `lane ${lane}: ${ids.length / n} of ${nActive}`);
    }
    assert.ok(seen.every((v) => v === 1), `n ${n} active ${nActive} shares ${shares}`);
  }
  // interleaved: two equal lanes alternate
  assert.deepEqual([...assignLanes(6, [0.5, 0.5])], [0, 1, 0, 1, 0, 1]);
});

test('graphs the engine cannot run are named in one line; exactMaps falls back to the full engine with that note', async () => {
  await initTf('cpu');
  const input = tfl.input({ shape: [8, 8, 1] });
  const a = L.conv2d({ filters: 2, kernelSize: 3, padding: 'same' }).apply(input) as InstanceType<typeof tfl.SymbolicTensor>;
  const b = L.conv2d({ filters: 2, kernelSize: 3, padding: 'same' }).apply(a) as InstanceType<typeof tfl.SymbolicTensor>;
  const sum = L.add().apply([a, b]) as InstanceType<typeof tfl.SymbolicTensor>;
  const out = L.dense({ units: 2, activation: 'softmax' }).apply(L.flatten().apply(sum)) as InstanceType<typeof tfl.SymbolicTensor>;
  const residual = tfl.model({ inputs: input, outputs: out });
  const r = incrementalPredictorFor(residual, { hash: 'x' });
  assert.ok('unsupported' in r);
  assert.match((r as { unsupported: string }).unsupported, /has 2 inputs \(not a sequential chain\)/);
  const gap = seqModel([8, 8, 1], [L.conv2d({ filters: 2, kernelSize: 3 }), L.globalAveragePooling2d({}), L.dense({ units: 2, activation: 'softmax' })]);
  const r2 = incrementalPredictorFor(gap, { hash: 'x' });
  assert.match((r2 as { unsupported: string }).unsupported, /GlobalAveragePooling2D\) is not supported/);
  const avgSame = seqModel([7, 7, 1], [L.averagePooling2d({ poolSize: 2, padding: 'same' }), L.flatten(), L.dense({ units: 2, activation: 'softmax' })]);
  assert.match((incrementalPredictorFor(avgSame, { hash: 'x' }) as { unsupported: string }).unsupported, /AveragePooling2D with 'same' padding/);

  // exactMaps with engine 'incremental' on a tfjs predictor of that model: full engine, with the note
  const tp = new TfjsPredictor(randomize(residual, 3), { hash: 'x' });
  const images = Float32Array.from({ length: 2 * 64 }, (_, i) => (i % 7) / 7);
  const res = await exactMaps(tp, images, [2, 8, 8, 1], { ...SEED_PARAMS, engine: 'incremental' });
  assert.equal(res.engine, 'full');
  assert.match(res.note ?? '', /does not run the incremental engine/);
  // a sequential model's incremental engine (incrementalPredictorFor) against its tfjs predictor
  const seq = randomize(buildClassifier({ inputShape: [9, 9, 1], numClasses: 3, seed: 4 }), 4);
  const sp = new TfjsPredictor(seq, { hash: 'y' });
  const built = incrementalPredictorFor(seq, { hash: 'y' });
  assert.ok(!('unsupported' in built));
  const spInc = built.predictor;
  const img = Float32Array.from({ length: 2 * 81 }, (_, i) => Math.sin(i));
  const viaInc = await exactMaps(spInc, img, [2, 9, 9, 1], { ...SEED_PARAMS, normalize: 'none', engine: 'incremental' });
  const viaFull = await exactMaps(sp, img, [2, 9, 9, 1], { ...SEED_PARAMS, normalize: 'none' });
  assert.equal(viaInc.engine, 'incremental');
  assert.equal(viaFull.engine, 'full');
  assert.ok(maxDiff(viaInc.maps, viaFull.maps) < 1e-5);
  tp.dispose();
  sp.dispose();
  spInc.dispose();
});

test('approximate mode (projective-field threshold): tau 1 is exact; a small tau computes less, and its error is measured', async () => {
  await initTf('cpu');
  const model = randomize(buildClassifier({ inputShape: [21, 21, 1], numClasses: 2, seed: 5 }), 5);
  const r = incrementalPredictorFor(model, { hash: 'a', threads: 2 });
  model.dispose();
  const inc = (r as { predictor: IncrementalPredictor }).predictor;
  try {
    const rng = new Rng(6);
    const images = Float32Array.from({ length: 2 * 441 }, () => rng.next());
    const opts: ExactOptions = { ...SEED_PARAMS, normalize: 'none' };
    const exact = await exactMaps(inc, images, [2, 21, 21, 1], opts);
    const one = await exactMaps(inc, images, [2, 21, 21, 1], { ...opts, approx: 1 });
    assert.deepEqual(one.maps, exact.maps);
    const g = { h: 21, w: 21, ph: 3, pw: 3, stride: 1, pad: 3 };
    const approx = await exactMaps(inc, images, [2, 21, 21, 1], { ...opts, approx: 0.3 });
    assert.ok(inc.flopsPerMap(g, 0.3) < 0.8 * inc.flopsPerMap(g));
    const e = approximationError(approx.raw, exact.raw, [2, 21, 21], 'prob', 'none');
    assert.equal(e.maps, 2);
    assert.ok(e.maxAbsError > 0, 'truncating the windows changes the maps');
    assert.ok(e.ssim > 0 && e.ssim <= 1 && Number.isFinite(e.maxAbsError));
    await assert.rejects(exactMaps(inc, images, [2, 21, 21, 1], { ...opts, approx: 1.5 }), /approx/);
  } finally {
    inc.dispose();
  }
});

test('overlapping engine calls (maps of several groups, 2 lanes) give the full engine\'s maps', async () => {
  await initTf('cpu');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'occmap-incr-'));
  const c = CASES[1];
  const model = randomize(c.build(), 11);
  const full = await fullEngine(model, dir, 'overlap');
  const r = incrementalPredictorFor(model, { hash: 'test', threads: 2, lanes: 2 });
  assert.ok('predictor' in r);
  const inc = r.predictor;
  try {
    const [h, w, ch] = c.input;
    // three engine calls, the last one short: each call's share of this thread overlaps the other lane's previous one
    const n = 2 * inc.mapsPerCall + 1;
    const rng = new Rng(31);
    const images = Float32Array.from({ length: n * h * w * ch }, () => rng.next() * 2 - 1);
    const opts: ExactOptions = { ...SEED_PARAMS, ...c.opts, batchSize: 2 * 700 };
    const want = await exactMaps(full, images, [n, h, w, ch], opts);
    const got = await exactMaps(inc, images, [n, h, w, ch], opts);
    assert.equal(got.engine, 'incremental');
    assert.ok(maxDiff(got.maps, want.maps) < 1e-5);
    assert.deepEqual([...got.targets], [...want.targets]);
    assert.equal(inc.stats.maps, n);
  } finally {
    inc.dispose();
    full.dispose();
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A scorer whose calls resolve when the test says, recording when each was asked for. */
function gatedScorer(fail?: number) {
  const log: string[] = [];
  const release: (() => void)[] = [];
  let running = 0;
  const scorer = {
    inputShape: [2, 2, 1] as [number, number, number],
    numClasses: 2,
    engine: 'fake',
    hash: 'fake',
    mapsPerCall: 1,
    predict: async (_x: Float32Array, n: number) => new Float32Array(n * 2).fill(0.5),
    occlusionProbs: (_x: Float32Array, n: number, g: { h: number; w: number; ph: number; pw: number; stride: number; pad: number }) => {
      const call = release.length;
      log.push(`ask ${call}`);
      running++;
      const perMap = ((g.h + 2 * g.pad - g.ph) / g.stride + 1) * ((g.w + 2 * g.pad - g.pw) / g.stride + 1) + 1;
      return new Promise<Float32Array>((resolve, reject) => {
        release.push(() => {
          running--;
          log.push(`done ${call}`);
          if (call === fail) reject(new Error(`call ${call} failed`));
          else resolve(new Float32Array(n * perMap * 2).fill(0.5));
        });
      });
    },
    dispose: () => undefined,
  };
  return { scorer, log, release, running: () => running };
}

test('exactMaps asks an occlusion scorer for the next group before awaiting this one, and leaves none running on failure', async () => {
  const tick = () => new Promise((r) => setTimeout(r, 5));
  const opts: ExactOptions = { ...SEED_PARAMS, pad: 1, batchSize: 1 };
  const ok = gatedScorer();
  const run = exactMaps(ok.scorer, new Float32Array(3 * 4), [3, 2, 2, 1], opts);
  await tick();
  assert.deepEqual(ok.log, ['ask 0', 'ask 1']);
  for (let i = 0; i < 3; i++) {
    ok.release[i]();
    await tick();
  }
  const res = await run;
  assert.deepEqual(ok.log, ['ask 0', 'ask 1', 'done 0', 'ask 2', 'done 1', 'done 2']);
  assert.equal(res.maps.length, 3 * 4);

  const bad = gatedScorer(0);
  const failing = exactMaps(bad.scorer, new Float32Array(3 * 4), [3, 2, 2, 1], opts);
  let settled = false;
  failing.catch(() => undefined).finally(() => (settled = true));
  await tick();
  bad.release[0]();
  await tick();
  // the call asked for ahead is still running: the failure waits for it
  assert.equal(settled, false);
  bad.release[1]();
  await assert.rejects(failing, /call 0 failed/);
  assert.equal(bad.running(), 0);
  assert.deepEqual(bad.log, ['ask 0', 'ask 1', 'done 0', 'done 1']);
});
