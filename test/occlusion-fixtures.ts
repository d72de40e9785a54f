/**
 * Predictors for the occlusion tests (no test cases here): a linear "model" whose occlusion
 * effect has a closed form, and a small random CNN built with tfjs layers on the cpu backend.
 * Factories are exported by name so worker threads can build identical copies.
 * Run as a script (`node occlusion-fixtures.js run-job <spec.json>`) it runs an occlusion
 * job, for the kill -9 / resume test.
 */
import type { Predictor } from '../src/models/predictor.js';
import { Rng } from '../src/util/rng.js';

export interface LinearSpec {
  h: number;
  w: number;
  /** Model channels (length = model input channels). */
  weights: number[];
  /** Data channels the model reads. */
  channels?: number[];
  bias?: number;
}

/**
 * Two classes: p1 = bias + sum(weights * x) (the caller keeps it inside [0, 1]), p0 = 1 - p1.
 * Computed in float64, so occluding a pixel changes p1 by exactly -weight * (x - fill).
 */
export function linearPredictor(spec: LinearSpec): Predictor & { calls: number[] } {
  const c = spec.weights.length / (spec.h * spec.w);
  const calls: number[] = [];
  return {
    inputShape: [spec.h, spec.w, c],
    numClasses: 2,
    channels: spec.channels,
    engine: 'linear-test',
    hash: 'linear',
    calls,
    async predict(images: Float32Array, n: number): Promise<Float32Array> {
      calls.push(n);
      const s = spec.weights.length;
      const out = new Float32Array(n * 2);
      for (let i = 0; i < n; i++) {
        let p = spec.bias ?? 0.5;
        for (let j = 0; j < s; j++) p += spec.weights[j] * images[i * s + j];
        if (p < 0 || p > 1) throw new Error(`linear test model left [0,1]: ${p}`);
        out[i * 2] = 1 - p;
        out[i * 2 + 1] = p;
      }
      return out;
    },
    dispose() {},
  };
}

export interface CnnSpec {
  seed: number;
  h: number;
  w: number;
  c: number;
  classes: number;
  channels?: number[];
  /** Milliseconds to sleep per predict call (makes a run slow enough to kill mid-way). */
  delayMs?: number;
}

/**
 * A random small CNN (conv 4 3x3 relu -> conv 4 3x3 relu -> flatten -> dense softmax), the
 * weights drawn from a seeded Rng so every thread builds the same model.
 */
export async function smallCnnPredictor(spec: CnnSpec): Promise<Predictor> {
  const { tf, tfl, initTf } = await import('../src/runtime/tfjs.js');
  await initTf('cpu');
  const model = tfl.sequential({
    layers: [
      tfl.layers.conv2d({ inputShape: [spec.h, spec.w, spec.c], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }),
      tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: spec.classes, activation: 'softmax' }),
    ],
  });
  const rng = new Rng(spec.seed);
  model.setWeights(
    model.getWeights().map((wt) => {
      const v = new Float32Array(wt.size);
      for (let i = 0; i < v.length; i++) v[i] = rng.normal() * 0.5;
      return tf.tensor(v, wt.shape);
    }),
  );
  const delay = spec.delayMs ?? 0;
  return {
    inputShape: [spec.h, spec.w, spec.c],
    numClasses: spec.classes,
    channels: spec.channels,
    engine: 'tfjs-cpu-test',
    hash: `cnn-${spec.seed}`,
    async predict(images: Float32Array, n: number): Promise<Float32Array> {
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      const x = tf.tensor4d(images, [n, spec.h, spec.w, spec.c]);
      const y = model.predict(x) as import('@tensorflow/tfjs-core').Tensor;
      const out = (await y.data()) as Float32Array;
      x.dispose();
      y.dispose();
      return out;
    },
    dispose() {
      model.dispose();
    },
  };
}

/** Random images in [0, 1), seeded. */
export function randomImages(seed: number, n: number, h: number, w: number, c: number): Float32Array {
  const rng = new Rng(seed);
  const a = new Float32Array(n * h * w * c);
  for (let i = 0; i < a.length; i++) a[i] = rng.next();
  return a;
}

export interface JobSpec {
  cnn: CnnSpec;
  n: number;
  shardDir: string;
  shardSize: number;
  batchSize: number;
  workers: number;
  resume: boolean;
  /** Where to write the assembled maps (raw float32 bytes). */
  out: string;
}

/** Run an occlusion job as the CLI would, minus model loading from disk. */
export async function runJob(spec: JobSpec): Promise<{ reused: number; computed: number }> {
  const { writeFileSync } = await import('node:fs');
  const { runOcclusionJob } = await import('../src/occlusion/workers.js');
  const { ShardStore } = await import('../src/occlusion/shards.js');
  const { SEED_PARAMS } = await import('../src/occlusion/exact.js');
  const predictor = await smallCnnPredictor(spec.cnn);
  const { h, w, c } = spec.cnn;
  const images = randomImages(7, spec.n, h, w, c);
  const opts = { ...SEED_PARAMS, pad: 1, batchSize: spec.batchSize };
  const store = await ShardStore.open(
    spec.shardDir,
    { params: { ...opts }, modelHash: predictor.hash, engine: predictor.engine, dataHash: 'random-7', shardSize: spec.shardSize },
    { resume: spec.resume },
  );
  const r = await runOcclusionJob({
    predictor,
    source: { kind: 'module', url: import.meta.url, exportName: 'smallCnnPredictor', arg: spec.cnn },
    images,
    shape: [spec.n, h, w, c],
    n: spec.n,
    opts,
    store,
    workers: spec.workers,
  });
  writeFileSync(spec.out, new Uint8Array(r.maps.buffer));
  return { reused: r.reused, computed: r.computed };
}

if (process.argv[2] === 'run-job') {
  const { readFileSync } = await import('node:fs');
  const stats = await runJob(JSON.parse(readFileSync(process.argv[3], 'utf8')));
  process.stdout.write(JSON.stringify(stats) + '\n');
}
