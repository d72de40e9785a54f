import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { initTf, tf, tfl } from '../src/runtime/tfjs.js';
import { buildClassifier } from '../src/models/classifier.js';
import { buildAutoencoder } from '../src/models/autoencoder.js';
import { trainModel, resolveWorkers, AUTO_PARALLEL_MIN_SAMPLES, type TrainSet, type LoopOptions } from '../src/train/loop.js';
import { shardRange } from '../src/train/replica.js';
import { flatWeights } from '../src/train/replica.js';
import { Rng } from '../src/util/rng.js';

before(async () => {
  // The backend data-parallel training runs on (the cpu backend's ResizeNearestNeighborGrad is
  // wrong for batch > 1, so shard sizes would change its results).
  await initTf('wasm');
});

function classifierSet(n: number, seed: number): TrainSet {
  const rng = new Rng(seed);
  const x = new Float32Array(n * 21 * 21);
  for (let i = 0; i < x.length; i++) x[i] = rng.next();
  const y = Int32Array.from({ length: n }, (_, i) => i % 2);
  return { x, shape: [n, 21, 21, 1], y };
}

/** Maps as targets and a one-hot label as the second input (the conditioned U-Net's inputs). */
function unetSet(n: number, seed: number): TrainSet {
  const rng = new Rng(seed);
  const x = new Float32Array(n * 24 * 24 * 2);
  for (let i = 0; i < x.length; i++) x[i] = rng.next();
  const y = new Float32Array(n * 24 * 24);
  for (let i = 0; i < y.length; i++) y[i] = rng.next();
  const label = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) label[i * 2 + (i % 2)] = 1;
  return { x, shape: [n, 24, 24, 2], y, yShape: [24, 24, 1], extra: [{ data: label, shape: [2] }] };
}

async function trained(build: () => tfl.LayersModel, set: TrainSet, o: LoopOptions): Promise<{ w: Float32Array; losses: number[]; valLosses: number[]; workers: number }> {
  const model = build();
  try {
    const r = await trainModel(model, set, { quiet: true, log: () => {}, ...o });
    return { w: flatWeights(model), losses: r.history.map((h) => h.loss), valLosses: r.history.map((h) => h.valLoss), workers: r.workers };
  } finally {
    model.dispose();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test('shardRange splits a step into contiguous, covering, near-equal shards', () => {
  for (const [from, to, w] of [[0, 10, 2], [20, 27, 3], [5, 6, 2], [0, 64, 4]] as [number, number, number][]) {
    let next = from;
    for (let r = 0; r < w; r++) {
      const [a, b] = shardRange(from, to, r, w);
      assert.equal(a, next);
      assert.ok(b - a === Math.floor((to - from) / w) || b - a === Math.ceil((to - from) / w));
      next = b;
    }
    assert.equal(next, to);
  }
});

const clfOpts: LoopOptions = { loss: 'sparse_categorical_crossentropy', epochs: 2, batchSize: 12, seed: 3, restoreBest: false };
const buildClf = () => buildClassifier({ inputShape: [21, 21, 1], numClasses: 2, seed: 5 });

test('classifier (with dropout): 2 workers follow 1 worker within float tolerance, and repeat exactly', async () => {
  const set = classifierSet(40, 1); // 30 train items: batches of 12, 12, 6 (shards 6+6, 6+6, 3+3)
  const one = await trained(buildClf, set, { ...clfOpts, workers: 1 });
  const two = await trained(buildClf, set, { ...clfOpts, workers: 2 });
  const again = await trained(buildClf, set, { ...clfOpts, workers: 2 });
  assert.equal(one.workers, 1);
  assert.equal(two.workers, 2);
  const d = maxAbsDiff(one.w, two.w);
  assert.ok(d < 1e-4, `max weight difference 1 vs 2 workers ${d}`);
  assert.ok(d > 0 || one.losses[0] > 0); // trained at all
  for (let i = 0; i < one.losses.length; i++) assert.ok(Math.abs(one.losses[i] - two.losses[i]) < 1e-5);
  // Validation is shared out over the replicas too.
  for (let i = 0; i < one.valLosses.length; i++) assert.ok(Math.abs(one.valLosses[i] - two.valLosses[i]) < 1e-5);
  assert.deepEqual(two.w, again.w, 'same seed and worker count: identical weights');
  assert.deepEqual(two.losses, again.losses);
  // A different dropout stream must change the result, or the test above proves nothing about masks.
  const other = await trained(buildClf, set, { ...clfOpts, seed: 4, workers: 2 });
  assert.ok(maxAbsDiff(other.w, two.w) > 1e-4);
});

test('conditioned U-Net (two inputs, map targets, mse): 1 vs 3 workers agree', async () => {
  const build = () => buildAutoencoder({ unet: true, channels: 2, condition: 'onehot', numClasses: 2, seed: 2 });
  const set = unetSet(20, 2); // 15 train items, batch 8: steps of 8 and 7
  const o: LoopOptions = { loss: 'mse', epochs: 1, batchSize: 8, seed: 1, restoreBest: false };
  const one = await trained(build, set, { ...o, workers: 1 });
  const three = await trained(build, set, { ...o, workers: 3 });
  assert.equal(three.workers, 3);
  const d = maxAbsDiff(one.w, three.w);
  assert.ok(d < 1e-4, `max weight difference 1 vs 3 workers ${d}`);
  assert.ok(Math.abs(one.losses[0] - three.losses[0]) < 1e-5);
  assert.ok(Math.abs(one.valLosses[0] - three.valLosses[0]) < 1e-6);
});

test('resolveWorkers: explicit counts, the auto threshold, batch cap, and backends that thread themselves', () => {
  const model = buildClf();
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  const big = { batchSize: 64, samples: AUTO_PARALLEL_MIN_SAMPLES };
  const saved = process.env.OCCMAP_TRAIN_WORKERS;
  delete process.env.OCCMAP_TRAIN_WORKERS;
  try {
    assert.equal(resolveWorkers({ workers: 3 }, model, 'wasm', big, log), 3);
    assert.equal(resolveWorkers({}, model, 'wasm', { batchSize: 64, samples: 100 }, log), 1);
    assert.equal(resolveWorkers({ workers: 4 }, model, 'wasm', { batchSize: 2, samples: 100 }, log), 2);
    assert.match(lines.pop()!, /a batch of 2/);
    assert.equal(resolveWorkers({ workers: 2 }, model, 'tensorflow', big, log), 1);
    assert.match(lines.pop()!, /tensorflow backend runs its own threads/);
    process.env.OCCMAP_TRAIN_WORKERS = '2';
    assert.equal(resolveWorkers({}, model, 'wasm', { batchSize: 64, samples: 10 }, log), 2);
    process.env.OCCMAP_TRAIN_WORKERS = 'many';
    assert.throws(() => resolveWorkers({}, model, 'wasm', big, log), /OCCMAP_TRAIN_WORKERS must be a positive integer/);
    assert.throws(() => resolveWorkers({ workers: 0 }, model, 'wasm', big, log), /(^|: )workers must be a positive integer/);
    const bn = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [3], units: 2 }), tfl.layers.batchNormalization()] });
    assert.equal(resolveWorkers({ workers: 2 }, bn, 'wasm', big, log), 1);
    assert.match(lines.pop()!, /normalises over the batch/);
    bn.dispose();
  } finally {
    if (saved === undefined) delete process.env.OCCMAP_TRAIN_WORKERS;
    else process.env.OCCMAP_TRAIN_WORKERS = saved;
    model.dispose();
  }
  assert.equal(tf.getBackend(), 'wasm');
});
