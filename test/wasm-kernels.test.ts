import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, tfl, initTf } from '../src/runtime/tfjs.js';
import {
  registerWasmGradKernels,
  wasmGradKernelMode,
  planBackpropInput,
  filterGradChunk,
  GRAD_KERNEL_NAMES,
  type ConvGeometry,
} from '../src/runtime/wasm-kernels.js';
import { Rng } from '../src/util/rng.js';

type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];

/** max|a-b| / max(1e-6, max|b|): b is the cpu reference. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  if (!Number.isFinite(diff)) return Infinity;
  return diff / Math.max(1e-6, scale);
}

function randn(rng: Rng, n: number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal();
  return v;
}

/** Run fn on a backend and return its output's values (fn's tensors are disposed). */
async function on(backend: 'wasm' | 'cpu', fn: () => tf.Tensor): Promise<{ shape: number[]; values: Float32Array }> {
  await tf.setBackend(backend);
  const t = tf.tidy(fn);
  const values = t.dataSync() as Float32Array;
  const shape = t.shape;
  t.dispose();
  return { shape, values: Float32Array.from(values) };
}

const ready = initTf('wasm');

async function parity(name: string, fn: () => tf.Tensor, tol = 1e-4): Promise<number> {
  const w = await on('wasm', fn);
  const c = await on('cpu', fn);
  await tf.setBackend('wasm');
  assert.deepEqual(w.shape, c.shape, `${name}: shape`);
  const e = relErr(w.values, c.values);
  assert.ok(e < tol, `${name}: relative error ${e} >= ${tol}`);
  return e;
}

interface Case {
  k: number;
  pad: Pad;
  stride: number;
  batch: number;
  h: number;
  w: number;
  cin: number;
  cout: number;
}

/** Every kernel size x padding x stride x batch, with small shapes that vary channel counts. */
function cases(): Case[] {
  // Big channel counts at batch 1, many images at batch 64 (24x24+ so the filter gradient
  // runs in several chunks); sizes keep the cpu reference (a scalar loop) fast.
  const shapes: Record<number, Array<[number, number, number, number]>> = {
    1: [[27, 27, 1, 32], [13, 13, 32, 16], [24, 24, 32, 1], [6, 6, 64, 64]],
    10: [[12, 12, 8, 16], [9, 11, 1, 32], [8, 8, 16, 8], [13, 13, 4, 1]],
    64: [[24, 24, 1, 4], [9, 9, 1, 32], [8, 8, 4, 8], [27, 27, 2, 3]],
  };
  const out: Case[] = [];
  let i = 0;
  for (const k of [3, 4]) {
    for (const pad of ['same', 'valid'] as const) {
      for (const stride of [1, 2]) {
        for (const batch of [1, 10, 64]) {
          const [h, w, cin, cout] = shapes[batch][i++ % 4];
          out.push({ k, pad, stride, batch, h, w, cin, cout });
        }
      }
    }
  }
  return out;
}

function label(c: Case): string {
  return `k${c.k} ${JSON.stringify(c.pad)} s${c.stride} n${c.batch} ${c.h}x${c.w}x${c.cin}->${c.cout}`;
}

function outSize(c: Case): [number, number] {
  const info = tf.backend_util.computeConv2DInfo([c.batch, c.h, c.w, c.cin], [c.k, c.k, c.cin, c.cout], c.stride, 1, c.pad as 'same');
  return [info.outHeight, info.outWidth];
}

function filterGradOp(c: Case, xv: Float32Array, dyv: Float32Array): () => tf.Tensor {
  const [oh, ow] = outSize(c);
  return () =>
    tf.engine().runKernel(
      'Conv2DBackpropFilter',
      { x: tf.tensor4d(xv, [c.batch, c.h, c.w, c.cin]), dy: tf.tensor4d(dyv, [c.batch, oh, ow, c.cout]) },
      { strides: c.stride, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined, filterShape: [c.k, c.k, c.cin, c.cout] } as never,
    ) as tf.Tensor;
}

function inputGradOp(c: Case, dyv: Float32Array, wv: Float32Array): () => tf.Tensor {
  const [oh, ow] = outSize(c);
  return () =>
    tf.engine().runKernel(
      'Conv2DBackpropInput',
      { dy: tf.tensor4d(dyv, [c.batch, oh, ow, c.cout]), filter: tf.tensor4d(wv, [c.k, c.k, c.cin, c.cout]) },
      { strides: c.stride, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined, inputShape: [c.batch, c.h, c.w, c.cin] } as never,
    ) as tf.Tensor;
}

function caseData(c: Case, seed: number): { x: Float32Array; dy: Float32Array; w: Float32Array } {
  const rng = new Rng(seed);
  const [oh, ow] = outSize(c);
  return {
    x: randn(rng, c.batch * c.h * c.w * c.cin),
    dy: randn(rng, c.batch * oh * ow * c.cout),
    w: randn(rng, c.k * c.k * c.cin * c.cout),
  };
}

test('backprop-input plan: hand-computed paddings', () => {
  const g = (o: Partial<ConvGeometry>): ConvGeometry => ({
    batch: 1, inH: 8, inW: 8, inC: 1, outH: 8, outW: 8, outC: 1, kH: 3, kW: 3, strideH: 1, strideW: 1, padTop: 1, padLeft: 1, ...o,
  });
  // 3x3 same, stride 1: pad the 8x8 dy by 1 on every side -> 8x8.
  assert.deepEqual(planBackpropInput(g({})), { dilatedH: 8, dilatedW: 8, top: 1, bottom: 1, left: 1, right: 1 });
  // 4x4 same, stride 1 (tfjs pads 1 before, 2 after): full conv pads 2 before, 1 after.
  assert.deepEqual(planBackpropInput(g({ kH: 4, kW: 4 })), { dilatedH: 8, dilatedW: 8, top: 2, bottom: 1, left: 2, right: 1 });
  // 3x3 valid on 8x8 -> 6x6 dy: pad 2 on each side -> 8x8.
  assert.deepEqual(planBackpropInput(g({ outH: 6, outW: 6, padTop: 0, padLeft: 0 })), { dilatedH: 6, dilatedW: 6, top: 2, bottom: 2, left: 2, right: 2 });
  // 3x3 valid stride 2 on 8x8 -> 3x3 dy, dilated to 5x5; rows 7 of x is never read: 2 before, 3 after.
  assert.deepEqual(planBackpropInput(g({ outH: 3, outW: 3, padTop: 0, padLeft: 0, strideH: 2, strideW: 2 })), {
    dilatedH: 5, dilatedW: 5, top: 2, bottom: 3, left: 2, right: 3,
  });
  // Forward pad larger than the kernel: not expressible, left to the original kernel.
  assert.equal(planBackpropInput(g({ padTop: 3, outH: 12 })), null);
});

test('filter-gradient chunking stays within the batch and near the target width', () => {
  assert.equal(filterGradChunk(64, 24 * 26), 10);
  assert.equal(filterGradChunk(64, 100000), 1);
  assert.equal(filterGradChunk(3, 10), 3);
  assert.equal(filterGradChunk(0, 10), 1);
});

test('registration is idempotent and switches between fast and naive sets', async () => {
  await ready;
  registerWasmGradKernels('fast');
  registerWasmGradKernels('fast');
  assert.equal(wasmGradKernelMode(), 'fast');
  for (const name of GRAD_KERNEL_NAMES) assert.ok(tf.getKernel(name, 'wasm'), name);
  registerWasmGradKernels('naive');
  assert.equal(wasmGradKernelMode(), 'naive');
  const c: Case = { k: 3, pad: 'same', stride: 1, batch: 2, h: 6, w: 5, cin: 3, cout: 4 };
  const d = caseData(c, 7);
  await parity('naive filter grad', filterGradOp(c, d.x, d.dy));
  await parity('naive input grad', inputGradOp(c, d.dy, d.w));
  registerWasmGradKernels('fast');
  assert.equal(wasmGradKernelMode(), 'fast');
});

test('Conv2DBackpropFilter on wasm matches cpu: k 3/4 x same/valid x stride 1/2 x batch 1/10/64', async () => {
  await ready;
  let worst = 0;
  for (const [i, c] of cases().entries()) {
    const d = caseData(c, 100 + i);
    worst = Math.max(worst, await parity(`dW ${label(c)}`, filterGradOp(c, d.x, d.dy)));
  }
  assert.ok(worst < 1e-4);
});

test('Conv2DBackpropInput on wasm matches cpu: k 3/4 x same/valid x stride 1/2 x batch 1/10/64', async () => {
  await ready;
  for (const [i, c] of cases().entries()) {
    const d = caseData(c, 200 + i);
    await parity(`dx ${label(c)}`, inputGradOp(c, d.dy, d.w));
  }
});

test('numeric and explicit pads, rectangular kernels and NCHW fall back correctly', async () => {
  await ready;
  const more: Case[] = [
    { k: 3, pad: 1, stride: 1, batch: 3, h: 7, w: 9, cin: 5, cout: 6 },
    { k: 4, pad: 2, stride: 2, batch: 2, h: 9, w: 8, cin: 3, cout: 7 },
    { k: 3, pad: [[0, 0], [2, 0], [0, 1], [0, 0]], stride: 1, batch: 2, h: 6, w: 7, cin: 4, cout: 3 },
    // Pads beyond the kernel size: the input gradient goes to the backend's own kernel.
    { k: 3, pad: [[0, 0], [3, 4], [1, 3], [0, 0]], stride: 1, batch: 2, h: 5, w: 6, cin: 2, cout: 3 },
  ];
  for (const [i, c] of more.entries()) {
    const d = caseData(c, 300 + i);
    await parity(`dW ${label(c)}`, filterGradOp(c, d.x, d.dy));
    await parity(`dx ${label(c)}`, inputGradOp(c, d.dy, d.w));
  }
  const rng = new Rng(5);
  const x = randn(rng, 2 * 3 * 6 * 5);
  const dy = randn(rng, 2 * 4 * 6 * 5);
  await parity('dW NCHW', () =>
    tf.engine().runKernel(
      'Conv2DBackpropFilter',
      { x: tf.tensor4d(x, [2, 3, 6, 5]), dy: tf.tensor4d(dy, [2, 4, 6, 5]) },
      { strides: 1, pad: 'same', dataFormat: 'NCHW', dimRoundingMode: undefined, filterShape: [3, 2, 3, 4] } as never,
    ) as tf.Tensor,
  );
  const rect = { x: randn(rng, 3 * 8 * 7 * 4), w: randn(rng, 2 * 4 * 4 * 5) };
  await parity('dW rect kernel 2x4 same', () => {
    const xt = tf.tensor4d(rect.x, [3, 8, 7, 4]);
    const dy = tf.conv2d(xt, tf.tensor4d(rect.w, [2, 4, 4, 5]), 1, 'same');
    return tf.engine().runKernel('Conv2DBackpropFilter', { x: xt, dy }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [2, 4, 4, 5] } as never) as tf.Tensor;
  });
});

test('fast kernels free every scratch buffer on the wasm heap', async () => {
  await ready;
  await tf.setBackend('wasm');
  const c: Case = { k: 3, pad: 'same', stride: 2, batch: 12, h: 24, w: 24, cin: 2, cout: 3 };
  const d = caseData(c, 9);
  const run = () => {
    for (const op of [filterGradOp(c, d.x, d.dy), inputGradOp(c, d.dy, d.w), filterGradOp({ ...c, stride: 1 }, d.x, caseData({ ...c, stride: 1 }, 9).dy)]) {
      tf.tidy(op).dispose();
    }
    tf.tidy(() => tf.matMul(tf.ones([5, 7]), tf.ones([5, 3]), true, false)).dispose();
    tf.tidy(() => tf.sum(tf.ones([4, 5, 3]), [0, 1])).dispose();
    tf.dispose(tf.tidy(() => tf.split(tf.ones([4, 5, 6]), [2, 4], 2)));
  };
  run();
  const before = tf.backend().numDataIds();
  for (let i = 0; i < 3; i++) run();
  assert.equal(tf.backend().numDataIds(), before);
});

test('BatchMatMul with transposed operands matches cpu', async () => {
  await ready;
  const rng = new Rng(11);
  const a = randn(rng, 37 * 23);
  const b = randn(rng, 23 * 19);
  const bt = randn(rng, 19 * 23);
  const at = randn(rng, 23 * 37);
  await parity('a.b', () => tf.matMul(tf.tensor2d(a, [37, 23]), tf.tensor2d(b, [23, 19])));
  await parity('a.bT', () => tf.matMul(tf.tensor2d(a, [37, 23]), tf.tensor2d(bt, [19, 23]), false, true));
  await parity('aT.b', () => tf.matMul(tf.tensor2d(at, [23, 37]), tf.tensor2d(b, [23, 19]), true, false));
  await parity('aT.bT', () => tf.matMul(tf.tensor2d(at, [23, 37]), tf.tensor2d(bt, [19, 23]), true, true));
  await parity('3d aT.b', () => tf.matMul(tf.tensor3d(at, [1, 23, 37]), tf.tensor3d(b, [1, 23, 19]), true, false));
  const ab = randn(rng, 3 * 5 * 4);
  const bb = randn(rng, 3 * 6 * 4);
  await parity('batched a.bT (original kernel)', () => tf.matMul(tf.tensor3d(ab, [3, 5, 4]), tf.tensor3d(bb, [3, 6, 4]), false, true));
});

test('Sum over leading axes and SplitV along the last axis match cpu; other axes and dtypes fall back', async () => {
  await ready;
  const rng = new Rng(12);
  const x = randn(rng, 3 * 5 * 4 * 7);
  const x4 = () => tf.tensor4d(x, [3, 5, 4, 7]);
  await parity('sum [0,1,2]', () => tf.sum(x4(), [0, 1, 2]));
  await parity('sum [2,0,1] keepDims', () => tf.sum(x4(), [2, 0, 1], true));
  await parity('sum [-4,-3,-2]', () => tf.sum(x4(), [-4, -3, -2]));
  await parity('sum rank 2 axis 0', () => tf.sum(tf.tensor2d(x, [60, 7]), 0));
  await parity('sum [1,2] (original kernel)', () => tf.sum(x4(), [1, 2]));
  await parity('sum all (original kernel)', () => tf.reshape(tf.sum(x4()), [1]));
  await parity('sum int32 (original kernel)', () => tf.cast(tf.sum(tf.tensor2d(Int32Array.from(x, (v) => Math.round(v * 10)), [60, 7], 'int32'), 0), 'float32'));
  await parity('sum of an empty batch', () => tf.sum(tf.zeros([0, 4, 7]), [0, 1]));
  for (const [sizes, axis] of [[[3, 4], 3], [[1, 5, 1], -1], [[2, 2, 3], 3], [[7], 3], [[2, 3], 1]] as [number[], number][]) {
    const parts = await Promise.all(sizes.map((_, i) => parity(`splitV ${sizes} axis ${axis} part ${i}`, () => tf.split(x4(), sizes, axis)[i])));
    assert.equal(parts.length, sizes.length);
  }
  await parity('split in 7 equal parts', () => tf.split(x4(), 7, 3)[6]);
});

test("Sum and SplitV give the backend's own results bit for bit (training trajectories must not change)", async () => {
  await ready;
  await tf.setBackend('wasm');
  const x = randn(new Rng(13), 10 * 12 * 12 * 32);
  const run = () => tf.tidy(() => [tf.sum(tf.tensor4d(x, [10, 12, 12, 32]), [0, 1, 2]), ...tf.split(tf.tensor4d(x, [10, 12, 12, 32]), [12, 20], 3)].map((t) => t.dataSync()));
  const fast = run();
  registerWasmGradKernels('naive');
  try {
    assert.deepEqual(fast, run());
  } finally {
    registerWasmGradKernels('fast');
  }
});

test('MaxPoolGrad on wasm matches cpu, ties included (pool 2/2 valid, 3/2 same, 3/1 same, odd sizes)', async () => {
  await ready;
  const rng = new Rng(21);
  const configs: Array<{ shape: [number, number, number, number]; size: number; stride: number; pad: 'valid' | 'same' }> = [
    { shape: [10, 24, 24, 32], size: 2, stride: 2, pad: 'valid' },
    { shape: [3, 27, 27, 8], size: 2, stride: 2, pad: 'valid' },
    { shape: [2, 13, 13, 64], size: 2, stride: 2, pad: 'valid' },
    { shape: [2, 9, 11, 5], size: 3, stride: 2, pad: 'same' },
    { shape: [1, 7, 7, 3], size: 3, stride: 1, pad: 'same' },
    { shape: [2, 8, 8, 4], size: 2, stride: 2, pad: 'same' },
  ];
  for (const cfg of configs) {
    const n = cfg.shape.reduce((a, b) => a * b, 1);
    // Quantised and rectified, so many windows hold equal maxima (zeros after relu).
    const xv = Float32Array.from({ length: n }, () => Math.max(0, Math.round(rng.normal() * 2) / 2));
    await parity(`MaxPoolGrad ${JSON.stringify(cfg)}`, () => {
      const x = tf.tensor4d(xv, cfg.shape);
      const dy = tf.randomNormal(tf.maxPool(x, cfg.size, cfg.stride, cfg.pad).shape, 0, 1, 'float32', 4);
      return tf.grad((t) => tf.sum(tf.mul(tf.maxPool(t as tf.Tensor4D, cfg.size, cfg.stride, cfg.pad), dy)))(x);
    });
  }
});

test('ResizeNearestNeighborGrad on wasm matches cpu at batch 1 (integer and non-integer scales)', async () => {
  await ready;
  const rng = new Rng(22);
  for (const [h, w, oh, ow, c, align] of [
    [6, 6, 12, 12, 64, false],
    [12, 12, 24, 24, 32, false],
    [5, 4, 15, 8, 3, false],
    [5, 4, 7, 9, 3, false],
    [5, 4, 10, 8, 3, true],
  ] as Array<[number, number, number, number, number, boolean]>) {
    const dyv = randn(rng, oh * ow * c);
    await parity(`ResizeNearestNeighborGrad ${h}x${w}->${oh}x${ow} align=${align}`, () => {
      const dy = tf.tensor4d(dyv, [1, oh, ow, c]);
      return tf.grad((x) => tf.sum(tf.mul(tf.image.resizeNearestNeighbor(x as tf.Tensor4D, [oh, ow], align), dy)))(tf.zeros([1, h, w, c]));
    });
  }
});

test('ResizeNearestNeighborGrad on wasm sums 2x2 blocks for batch > 1 (the cpu kernel does not)', async () => {
  await ready;
  // tfjs-backend-cpu 4.22 offsets dy by the *input* batch stride, so its gradient is wrong for
  // every image after the first; hence the per-example cpu reference in the next test.
  const [n, h, w, c] = [2, 3, 3, 2];
  const dyv = Float32Array.from({ length: n * 2 * h * 2 * w * c }, (_, i) => i);
  const expected: number[] = [];
  for (let b = 0; b < n; b++)
    for (let r = 0; r < h; r++)
      for (let q = 0; q < w; q++)
        for (let ch = 0; ch < c; ch++) {
          let s = 0;
          for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) s += dyv[((b * 2 * h + 2 * r + i) * 2 * w + 2 * q + j) * c + ch];
          expected.push(s);
        }
  const got = await on('wasm', () => {
    const dy = tf.tensor4d(dyv, [n, 2 * h, 2 * w, c]);
    return tf.grad((x) => tf.sum(tf.mul(tf.image.resizeNearestNeighbor(x as tf.Tensor4D, [2 * h, 2 * w]), dy)))(tf.zeros([n, h, w, c]));
  });
  assert.deepEqual(Array.from(got.values), expected);
});

test('gradients of a small conv model on wasm match cpu (tf.variableGrads)', async () => {
  await ready;
  const rng = new Rng(3);
  const n = 6;
  const xs = randn(rng, n * 12 * 12 * 1);
  const labels = Array.from({ length: n }, (_, i) => i % 2);
  const build = () =>
    tfl.sequential({
      layers: [
        tfl.layers.conv2d({ inputShape: [12, 12, 1], filters: 8, kernelSize: 4, padding: 'same', activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }),
        tfl.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }),
        tfl.layers.maxPooling2d({ poolSize: 2 }),
        tfl.layers.conv2d({ filters: 16, kernelSize: 3, padding: 'valid', strides: 2, kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }) }),
        tfl.layers.upSampling2d({ size: [2, 2] }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 8, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 4 }) }),
        tfl.layers.dense({ units: 2, kernelInitializer: tfl.initializers.glorotUniform({ seed: 5 }) }),
      ],
    });
  // Summed (not averaged) loss, so the batch gradient is the sum of per-example gradients.
  const gradsOf = (model: tfl.Sequential, from: number, to: number): Float32Array[] =>
    tf.tidy(() => {
      const x = tf.tensor4d(xs.subarray(from * 144, to * 144), [to - from, 12, 12, 1]);
      const y = tf.oneHot(tf.tensor1d(labels.slice(from, to), 'int32'), 2);
      const { grads } = tf.variableGrads(
        () => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor, undefined, undefined, tf.Reduction.SUM) as tf.Scalar,
      );
      // Variable names carry a per-model counter, so go by position; the order is fixed.
      return model.trainableWeights.map((w) => Float32Array.from(grads[w.name].dataSync()));
    });

  await tf.setBackend('wasm');
  const wasmModel = build();
  const wasm = gradsOf(wasmModel, 0, n);
  wasmModel.dispose();

  await tf.setBackend('cpu');
  const cpuModel = build();
  const cpu = gradsOf(cpuModel, 0, 1);
  for (let i = 1; i < n; i++) gradsOf(cpuModel, i, i + 1).forEach((g, j) => g.forEach((v, k) => (cpu[j][k] += v)));
  cpuModel.dispose();
  await tf.setBackend('wasm');

  assert.equal(wasm.length, 10);
  wasm.forEach((g, j) => {
    const e = relErr(g, cpu[j]);
    assert.ok(e < 1e-4, `weight ${j}: relative error ${e}`);
  });
});

test('train-speed bench runs both kernel sets on both seed models and reports ratios (smoke, no timing asserted)', async () => {
  await ready;
  const { runTrainBench } = await import('../bench/train-speed.js');
  const r = await runTrainBench({ batchSizes: [2], steps: 1, warmup: 0, profile: true });
  assert.equal(r.backend, 'wasm');
  assert.deepEqual(
    r.figures.map((f) => `${f.model}/${f.mode}`),
    ['autoencoder/fast', 'autoencoder/naive', 'classifier/fast', 'classifier/naive'],
  );
  for (const f of r.figures) assert.ok(f.samplesPerSec > 0 && Number.isFinite(f.samplesPerSec));
  assert.equal(r.ratios.length, 2);
  assert.ok(r.profiles.every((p) => p.kernels.some((k) => k.kernel === 'Conv2DBackpropFilter')));
  // The bench restores the fast kernels when it is done.
  assert.equal(wasmGradKernelMode(), 'fast');
});
