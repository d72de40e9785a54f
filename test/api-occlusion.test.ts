/**
 * The Occlusion attribution method: the captum preset against a brute-force reimplementation
 * of Captum's Occlusion (captum/attr/_core/occlusion.py: windows from the corner, stepping by
 * the stride until the dimension is covered, ceil((size - window) / stride) + 1 windows per
 * axis with the last cut off at the border; baseline 0 over every channel; attribution of a
 * pixel = the mean, over the windows covering it, of f(x)[t] - f(x occluded)[t]); the seed
 * preset against the engine; option checks; and the target forms.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Occlusion, captumMismatch, occlusionSettings } from '../src/methods/occlusion.js';
import { exactMaps, SEED_PARAMS } from '../src/occlusion/exact.js';
import type { Predictor } from '../src/models/predictor.js';
import { UserError } from '../src/util/errors.js';
import { Rng } from '../src/util/rng.js';

const H = 7;
const W = 6;
const C = 2;
const K = 3;

/** A smooth nonlinear 3-class model on 7x6x2 images: softmax of random linear logits of tanh(x). */
function linearSoftmax(seed: number): { f: (x: Float32Array, n: number) => Float32Array; predictor: Predictor } {
  const rng = new Rng(seed);
  const d = H * W * C;
  const wts = Float64Array.from({ length: K * d }, () => rng.next() * 2 - 1);
  const f = (x: Float32Array, n: number): Float32Array => {
    const out = new Float32Array(n * K);
    for (let i = 0; i < n; i++) {
      const z = new Float64Array(K);
      for (let k = 0; k < K; k++) for (let j = 0; j < d; j++) z[k] += wts[k * d + j] * Math.tanh(2 * x[i * d + j]);
      const m = Math.max(...z);
      const e = Array.from(z, (v) => Math.exp(v - m));
      const s = e.reduce((a, b) => a + b, 0);
      for (let k = 0; k < K; k++) out[i * K + k] = e[k] / s;
    }
    return out;
  };
  const predictor: Predictor = {
    inputShape: [H, W, C],
    numClasses: K,
    engine: 'test function',
    hash: 'test',
    predict: async (x, n) => f(x, n),
    dispose: () => undefined,
  };
  return { f, predictor };
}

function images(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n * H * W * C }, () => rng.next());
}

/** Captum's Occlusion, written out loop by loop for NHWC images and a window over all channels. */
function captumOcclusion(f: (x: Float32Array, n: number) => Float32Array, x: Float32Array, n: number, kh: number, kw: number, stride: number, targets: ArrayLike<number>): Float64Array {
  const px = H * W * C;
  const out = new Float64Array(n * H * W);
  const shiftsY = Math.ceil((H - kh) / stride) + 1;
  const shiftsX = Math.ceil((W - kw) / stride) + 1;
  for (let i = 0; i < n; i++) {
    const img = x.slice(i * px, (i + 1) * px);
    const t = targets[i];
    const base = f(img, 1)[t];
    const total = new Float64Array(H * W);
    const count = new Float64Array(H * W);
    for (let a = 0; a < shiftsY; a++) {
      for (let b = 0; b < shiftsX; b++) {
        const y0 = a * stride;
        const x0 = b * stride;
        const occ = img.slice();
        for (let y = y0; y < Math.min(H, y0 + kh); y++) for (let xx = x0; xx < Math.min(W, x0 + kw); xx++) for (let c = 0; c < C; c++) occ[(y * W + xx) * C + c] = 0;
        const diff = base - f(occ, 1)[t];
        for (let y = y0; y < Math.min(H, y0 + kh); y++) {
          for (let xx = x0; xx < Math.min(W, x0 + kw); xx++) {
            total[y * W + xx] += diff;
            count[y * W + xx] += 1;
          }
        }
      }
    }
    for (let p = 0; p < H * W; p++) out[i * H * W + p] = total[p] / count[p];
  }
  return out;
}

function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, eps: number): void {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  assert.ok(worst <= eps, `max |difference| ${worst} > ${eps}`);
}

const argmaxOf = (p: Float32Array, n: number): number[] =>
  Array.from({ length: n }, (_, i) => {
    let best = 0;
    for (let k = 1; k < K; k++) if (p[i * K + k] > p[i * K + best]) best = k;
    return best;
  });

for (const [kh, kw, stride] of [[3, 3, 1], [2, 3, 1], [3, 2, 2], [1, 1, 1]] as const) {
  test(`captum preset equals Captum's Occlusion (window ${kh}x${kw}, stride ${stride})`, async () => {
    const { f, predictor } = linearSoftmax(11);
    const n = 3;
    const x = images(n, 5);
    const occ = new Occlusion(predictor, { preset: 'captum', patch: [kh, kw], stride });
    assert.deepEqual(occ.params, { patch: [kh, kw], stride, pad: 0, fill: 0, score: 'drop', aggregate: 'mean', normalize: 'none' });
    const r = await occ.attribute({ data: x, shape: [n, H, W, C] }, { target: 'predicted' });
    assert.deepEqual(r.shape, [n, H, W]);
    assert.equal(r.score, 'drop');
    assert.equal(r.normalize, 'none');
    const predicted = argmaxOf(f(x, n), n);
    assert.deepEqual(Array.from(r.targets!), predicted);
    assertClose(r.data, captumOcclusion(f, x, n, kh, kw, stride, predicted), 1e-6);
    // Every class, as one per image and as one for all.
    const fixed = [2, 0, 1];
    const r2 = await occ.attribute({ data: x, shape: [n, H, W, C] }, { target: fixed });
    assertClose(r2.data, captumOcclusion(f, x, n, kh, kw, stride, fixed), 1e-6);
    const r3 = await occ.attribute({ data: x, shape: [n, H, W, C] }, { target: 1 });
    assertClose(r3.data, captumOcclusion(f, x, n, kh, kw, stride, [1, 1, 1]), 1e-6);
    assert.deepEqual(Array.from(r3.targets!), [1, 1, 1]);
  });
}

test('captum preset: positive = important (hiding the evidence lowers the probability)', async () => {
  // p(class 1) rises with the centre pixel: occluding it must give the largest positive value there.
  const predictor: Predictor = {
    inputShape: [5, 5, 1],
    numClasses: 2,
    engine: 'fn',
    hash: 'fn',
    predict: async (x, n) => {
      const out = new Float32Array(2 * n);
      for (let i = 0; i < n; i++) {
        const p = 1 / (1 + Math.exp(-(4 * x[i * 25 + 12] - 2)));
        out[2 * i] = 1 - p;
        out[2 * i + 1] = p;
      }
      return out;
    },
    dispose: () => undefined,
  };
  const img = new Float32Array(25).fill(0.2);
  img[12] = 1;
  const r = await new Occlusion(predictor, { preset: 'captum', patch: 1 }).attribute({ data: img, shape: [1, 5, 5, 1] }, { target: 1 });
  const best = r.data.indexOf(Math.max(...r.data));
  assert.equal(best, 12);
  assert.ok(r.data[12] > 0);
  for (let p = 0; p < 25; p++) if (p !== 12) assert.ok(Math.abs(r.data[p]) < 1e-7);
});

test('captum preset refuses geometries Captum would cut off at the border, naming the stride', async () => {
  const { predictor } = linearSoftmax(1);
  // H - 3 = 4 is divisible by 2, W - 3 = 3 is not: Captum would add a cut-off last column window.
  assert.match(captumMismatch(occlusionSettings({ preset: 'captum', stride: 2 }).settings, H, W) ?? '', /stride 2 does not divide the image width 6 minus the patch 3/);
  await assert.rejects(
    new Occlusion(predictor, { preset: 'captum', stride: 2 }).attribute({ data: images(1, 2), shape: [1, H, W, C] }),
    (e: Error) => e instanceof UserError && /captum preset.*stride 2/.test(e.message),
  );
  assert.match(captumMismatch(occlusionSettings({ preset: 'captum', pad: 1 }).settings, H, W) ?? '', /pad 1/);
});

test('seed preset (default) equals the exact engine with the seed parameters', async () => {
  const { predictor } = linearSoftmax(3);
  const x = images(2, 9);
  const r = await new Occlusion(predictor).attribute({ data: x, shape: [2, H, W, C] });
  const ref = await exactMaps(predictor, x, [2, H, W, C], SEED_PARAMS);
  assert.deepEqual(r.data, ref.maps);
  assert.deepEqual(r.targets, ref.targets);
  assert.deepEqual(r.probabilities, ref.baseProbs);
  assert.equal(r.score, 'prob');
  assert.equal(r.normalize, 'seed');
  assert.equal(new Occlusion(predictor).inferencesPerMap(21, 21), 626);
});

test('Occlusion options: errors name the option and the value', () => {
  const { predictor } = linearSoftmax(1);
  const bad: [object, RegExp][] = [
    [{ patch: 0 }, /patch must be/],
    [{ patch: [3] }, /patch must be/],
    [{ stride: 1.5 }, /stride must be an integer >= 1, got 1.5/],
    [{ pad: -1 }, /pad must be an integer >= 0/],
    [{ fill: 'median' }, /fill must be a finite number or 'mean'/],
    [{ score: 'logit' }, /score must be 'prob' or 'drop', got "logit"/],
    [{ aggregate: 'max' }, /aggregate must be/],
    [{ normalize: 'minmax' }, /normalize must be/],
    [{ preset: 'lime' }, /preset must be 'seed' or 'captum'/],
  ];
  for (const [o, re] of bad) assert.throws(() => new Occlusion(predictor, o as never), (e: Error) => e instanceof UserError && re.test(e.message), JSON.stringify(o));
});

test('attribute() targets: out of range and wrong counts are one-line errors', async () => {
  const { predictor } = linearSoftmax(1);
  const occ = new Occlusion(predictor, { preset: 'captum' });
  const batch = { data: images(2, 1), shape: [2, H, W, C] as [number, number, number, number] };
  await assert.rejects(occ.attribute(batch, { target: 3 }), /target 3 is not a class of the 3-class model/);
  await assert.rejects(occ.attribute(batch, { target: [0] }), /target lists 1 classes for 2 image/);
  await assert.rejects(occ.attribute(batch, { target: [0, -1] }), /target\[1\] must be a class index/);
});
