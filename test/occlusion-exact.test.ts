import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Predictor } from '../src/models/predictor.js';
import { exactMaps, SEED_PARAMS, type ExactOptions } from '../src/occlusion/exact.js';
import { ShardStore } from '../src/occlusion/shards.js';
import { runOcclusionJob } from '../src/occlusion/workers.js';
import { randomImages, runJob, smallCnnPredictor, type CnnSpec, type JobSpec } from './occlusion-fixtures.js';

const fixtures = fileURLToPath(new URL('./occlusion-fixtures.js', import.meta.url));
const cnn: CnnSpec = { seed: 3, h: 9, w: 9, c: 2, classes: 3, channels: [2, 0] };
const N = 3;
const C_DATA = 3;
const images = randomImages(5, N, 9, 9, C_DATA);
const labels = new Int32Array([2, 0, 1]);

/**
 * The seed's procedure written out one position at a time, sharing no code with the engine:
 * pad, paint the patch on the padded image, crop the model window back, predict one image,
 * add the score over the patch on a padded accumulator, crop, normalise.
 */
async function naiveMap(model: Predictor, i: number, o: ExactOptions): Promise<Float64Array> {
  const { h, w } = cnn;
  const ch = cnn.channels!;
  const c = ch.length;
  const img = new Float32Array(h * w * c);
  for (let p = 0; p < h * w; p++) for (let k = 0; k < c; k++) img[p * c + k] = images[(i * h * w + p) * C_DATA + ch[k]];
  const base = await model.predict(img, 1);
  let target = 0;
  if (o.target === 'label') target = labels[i];
  else if (typeof o.target === 'number') target = o.target;
  else for (let k = 1; k < cnn.classes; k++) if (base[k] > base[target]) target = k;
  const fill = Array.from({ length: c }, (_, k) => {
    if (o.fill !== 'mean') return o.fill;
    let s = 0;
    for (let p = 0; p < h * w; p++) s += img[p * c + k];
    return s / (h * w);
  });
  const P = o.pad;
  const hp = h + 2 * P;
  const wp = w + 2 * P;
  const [ph, pw] = o.patch;
  const acc = new Float64Array(hp * wp);
  const cnt = new Float64Array(hp * wp);
  for (let y = 0; y + ph <= hp; y += o.stride) {
    for (let x = 0; x + pw <= wp; x += o.stride) {
      const padded = new Float32Array(hp * wp * c);
      for (let r = 0; r < h; r++) for (let q = 0; q < w; q++) for (let k = 0; k < c; k++) padded[((r + P) * wp + q + P) * c + k] = img[(r * w + q) * c + k];
      for (let r = y; r < y + ph; r++) for (let q = x; q < x + pw; q++) for (let k = 0; k < c; k++) padded[(r * wp + q) * c + k] = fill[k];
      const input = new Float32Array(h * w * c);
      for (let r = 0; r < h; r++) for (let q = 0; q < w; q++) for (let k = 0; k < c; k++) input[(r * w + q) * c + k] = padded[((r + P) * wp + q + P) * c + k];
      const p = (await model.predict(input, 1))[target];
      const s = o.score === 'drop' ? base[target] - p : p;
      for (let r = y; r < y + ph; r++) for (let q = x; q < x + pw; q++) {
        acc[r * wp + q] += s;
        cnt[r * wp + q] += 1;
      }
    }
  }
  const map = new Float64Array(h * w);
  for (let r = 0; r < h; r++) for (let q = 0; q < w; q++) {
    const j = (r + P) * wp + q + P;
    map[r * w + q] = o.aggregate === 'mean' ? acc[j] / cnt[j] : acc[j];
  }
  if (o.normalize === 'seed') {
    const mean = map.reduce((a, b) => a + b, 0) / map.length;
    const std = Math.sqrt(map.reduce((a, b) => a + (b - mean) ** 2, 0) / map.length);
    for (let j = 0; j < map.length; j++) map[j] = std === 0 ? 0.5 : (Math.min(1, Math.max(-1, (map[j] - mean) / std)) + 1) / 2;
  }
  return map;
}

const configs: [string, ExactOptions][] = [
  ['seed defaults (fill 0, prob, predicted, sum, seed norm)', { ...SEED_PARAMS }],
  ['fill mean, drop, label, no norm', { ...SEED_PARAMS, fill: 'mean', score: 'drop', target: 'label', normalize: 'none' }],
  ['fill 0, drop, predicted, no norm', { ...SEED_PARAMS, score: 'drop', normalize: 'none' }],
  ['fill mean, prob, label, mean aggregate, 2x3 patch, stride 2, pad 2', { ...SEED_PARAMS, fill: 'mean', target: 'label', aggregate: 'mean', patch: [2, 3], stride: 2, pad: 2 }],
];

test('batched engine equals a naive one-position-at-a-time loop on a small CNN', async () => {
  const model = await smallCnnPredictor(cnn);
  try {
    for (const [name, o] of configs) {
      // A batch size that splits maps across calls, and one that packs several maps per call.
      for (const batchSize of [50, 400]) {
        const r = await exactMaps(model, images, [N, 9, 9, C_DATA], { ...o, batchSize, labels });
        let worst = 0;
        for (let i = 0; i < N; i++) {
          const naive = await naiveMap(model, i, o);
          for (let j = 0; j < naive.length; j++) worst = Math.max(worst, Math.abs(naive[j] - r.maps[i * 81 + j]));
        }
        assert.ok(worst < 1e-5, `${name}, batch ${batchSize}: max abs diff ${worst}`);
      }
    }
  } finally {
    model.dispose();
  }
});

const jobOpts = { ...SEED_PARAMS, pad: 1 };

async function jobIn(dir: string, shardSize: number, workers: number, n: number, resume = false) {
  const model = await smallCnnPredictor(cnn);
  const store = await ShardStore.open(
    dir,
    { params: { ...jobOpts, batchSize: 200 }, modelHash: model.hash, engine: model.engine, dataHash: 'x', shardSize },
    { resume },
  );
  const data = randomImages(9, n, 9, 9, C_DATA);
  const r = await runOcclusionJob({
    predictor: model,
    source: { kind: 'module', url: new URL('./occlusion-fixtures.js', import.meta.url).href, exportName: 'smallCnnPredictor', arg: cnn },
    images: data,
    shape: [n, 9, 9, C_DATA],
    n,
    opts: { ...jobOpts, batchSize: 200 },
    store,
    workers,
  });
  model.dispose();
  return { r, store, data };
}

test('2 worker threads give the same maps as 1, and as one exactMaps call', async () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'occ-workers-'));
  // 9x9 pad 1: 81 positions + 1 = 82 inferences per map, 2 maps per call of <= 200.
  const one = await jobIn(path.join(tmp, 'a'), 4, 1, 11);
  const two = await jobIn(path.join(tmp, 'b'), 4, 2, 11);
  assert.equal(two.r.computed, 11);
  assert.deepEqual(two.r.maps, one.r.maps);
  assert.deepEqual(two.r.targets, one.r.targets);
  assert.deepEqual(two.r.baseProbs, one.r.baseProbs);
  assert.equal(readdirSync(path.join(tmp, 'b')).filter((f) => f.startsWith('shard-')).length, 3);
  const model = await smallCnnPredictor(cnn);
  const direct = await exactMaps(model, one.data, [11, 9, 9, C_DATA], { ...jobOpts, batchSize: 200 });
  assert.deepEqual(direct.maps, one.r.maps);
  model.dispose();
  // A second run finds every shard and computes nothing.
  const again = await jobIn(path.join(tmp, 'b'), 4, 2, 11, true);
  assert.deepEqual([again.r.reused, again.r.computed], [11, 0]);
  assert.deepEqual(again.r.maps, one.r.maps);
});

test('shard store refuses a foreign job and an unrequested resume', async () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'occ-store-'));
  const dir = path.join(tmp, 's');
  const id = { params: { stride: 1 }, modelHash: 'm', engine: 'e', dataHash: 'd', shardSize: 4 };
  await ShardStore.open(dir, id, { resume: false });
  await assert.rejects(ShardStore.open(dir, id, { resume: false }), /--resume/);
  await assert.rejects(ShardStore.open(dir, { ...id, params: { stride: 2 } }, { resume: true }), /different job \(stride 1 -> 2\)/);
  await assert.rejects(ShardStore.open(dir, { ...id, modelHash: 'n' }, { resume: true }), /model \(hash differs\)/);
  const same = await ShardStore.open(dir, id, { resume: true });
  assert.equal(same.present(), 0);
});

function runChild(spec: JobSpec, killWhen?: (dir: string) => boolean): Promise<{ code: number | null; signal: string | null; out: string; err: string }> {
  const specFile = `${spec.out}.spec.json`;
  writeFileSync(specFile, JSON.stringify(spec));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixtures, 'run-job', specFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    let timer: NodeJS.Timeout | undefined;
    if (killWhen) {
      timer = setInterval(() => {
        if (killWhen(spec.shardDir)) {
          clearInterval(timer);
          child.kill('SIGKILL');
        }
      }, 10);
    }
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearInterval(timer);
      resolve({ code, signal, out, err });
    });
  });
}

test('kill -9 mid-run, then resume: maps identical to an uninterrupted run', async () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'occ-kill-'));
  const base: Omit<JobSpec, 'shardDir' | 'out' | 'resume'> = {
    cnn: { ...cnn, channels: undefined, c: 3, delayMs: 60 },
    n: 14,
    shardSize: 2,
    batchSize: 100, // one map per call: 7 shards of 2 calls each
    workers: 1,
  };
  const shards = (dir: string): number => (existsSync(dir) ? readdirSync(dir).filter((f) => /^shard-.*\.npz$/.test(f)).length : 0);
  const killed = path.join(tmp, 'killed');
  const k = await runChild({ ...base, shardDir: killed, out: path.join(tmp, 'k.f32'), resume: false }, (d) => shards(d) >= 2);
  assert.equal(k.signal, 'SIGKILL');
  const before = shards(killed);
  assert.ok(before >= 2 && before < 7, `${before} shards when killed`);
  assert.ok(!existsSync(path.join(tmp, 'k.f32')));
  // Without --resume the leftover shards are refused, not overwritten.
  const refused = await runChild({ ...base, shardDir: killed, out: path.join(tmp, 'k.f32'), resume: false });
  assert.notEqual(refused.code, 0);
  assert.match(refused.err, /shards of an interrupted run exist; add --resume/);
  const resumed = await runChild({ ...base, shardDir: killed, out: path.join(tmp, 'k.f32'), resume: true, workers: 2 });
  assert.equal(resumed.code, 0, resumed.err);
  const stats = JSON.parse(resumed.out);
  assert.ok(stats.reused >= 4 && stats.reused + stats.computed === 14, resumed.out);
  const spec: JobSpec = { ...base, cnn: { ...base.cnn, delayMs: 0 }, shardDir: path.join(tmp, 'clean'), out: path.join(tmp, 'c.f32'), resume: false };
  await runJob(spec);
  assert.deepEqual(readFileSync(path.join(tmp, 'k.f32')), readFileSync(path.join(tmp, 'c.f32')));
});
