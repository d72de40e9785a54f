import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Predictor } from '../src/models/predictor.js';
import { classScores } from '../src/occlusion/class-scores.js';
import { exactMaps, SEED_PARAMS } from '../src/occlusion/exact.js';
import { normalizeSeed } from '../src/occlusion/geometry.js';
import { Rng } from '../src/util/rng.js';

const H = 6;
const W = 6;
const weights = Array.from({ length: H * W }, (_, i) => 0.05 + 0.01 * ((i * 7) % 11));

/** Class 1's logit -22 + w.x, written as float32 softmax probabilities: p0 rounds to 1 in float32. */
function saturated(): Predictor {
  return {
    inputShape: [H, W, 1],
    numClasses: 2,
    engine: 'saturated-test',
    hash: 'saturated',
    async predict(images: Float32Array, n: number): Promise<Float32Array> {
      const out = new Float32Array(2 * n);
      for (let i = 0; i < n; i++) {
        let l = -22;
        for (let j = 0; j < H * W; j++) l += weights[j] * images[i * H * W + j];
        const p1 = 1 / (1 + Math.exp(-l));
        out[2 * i] = 1 - p1;
        out[2 * i + 1] = p1;
      }
      return out;
    },
    dispose() {},
  };
}

/** The seed's map in float64 from the logits, no float32 anywhere. */
function bruteForce(img: Float32Array): Float64Array {
  const pad = SEED_PARAMS.pad;
  const acc = new Float64Array(H * W);
  for (let y = -pad; y + 3 <= H + pad; y++) {
    for (let x = -pad; x + 3 <= W + pad; x++) {
      let l = -22;
      for (let r = 0; r < H; r++) for (let q = 0; q < W; q++) {
        const inside = r >= y && r < y + 3 && q >= x && q < x + 3;
        l += weights[r * W + q] * (inside ? 0 : img[r * W + q]);
      }
      const p0 = 1 - 1 / (1 + Math.exp(-l));
      for (let r = Math.max(0, y); r < Math.min(H, y + 3); r++) for (let q = Math.max(0, x); q < Math.min(W, x + 3); q++) acc[r * W + q] += p0;
    }
  }
  return acc;
}

test('a confident classifier: the map of p0 ~ 1 - 1e-8 keeps its shape (float32 p0 is flat)', async () => {
  const rng = new Rng(4);
  const img = Float32Array.from({ length: H * W }, () => rng.next());
  const model = saturated();
  const direct = await model.predict(img, 1);
  assert.equal(direct[0], 1, 'the fixture must saturate float32, or the test shows nothing');
  const r = await exactMaps(model, img, [1, H, W, 1], { ...SEED_PARAMS });
  assert.equal(r.targets[0], 0);
  assert.ok(r.raw instanceof Float64Array);
  const want = bruteForce(img);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of want) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
  assert.ok(hi - lo > 1e-9, `span ${hi - lo}`);
  for (let i = 0; i < H * W; i++) assert.ok(Math.abs(r.raw[i] - want[i]) < 1e-4 * (hi - lo), `pixel ${i}: ${r.raw[i]} vs ${want[i]}`);
  const norm = normalizeSeed(want);
  for (let i = 0; i < H * W; i++) assert.ok(Math.abs(r.maps[i] - norm[i]) < 1e-4, `normalised pixel ${i}: ${r.maps[i]} vs ${norm[i]}`);
});

test('classScores: above 0.5 from the other classes, below from the class itself; drop = base - p', () => {
  const rng = new Rng(9);
  const k = 3;
  const nPos = 5;
  for (let trial = 0; trial < 40; trial++) {
    const probs = new Float32Array((nPos + 1) * k);
    for (let row = 0; row <= nPos; row++) {
      const e = Array.from({ length: k }, () => Math.exp(12 * rng.next()));
      const s = e.reduce((a, b) => a + b, 0);
      e.forEach((v, j) => (probs[row * k + j] = v / s));
    }
    const t = trial % k;
    const viaRest = probs[t] > 0.5;
    const p = (row: number) => (viaRest ? 1 - [0, 1, 2].filter((j) => j !== t).reduce((a, j) => a + probs[row * k + j], 0) : probs[row * k + t]);
    const prob = classScores(probs, 0, k, t, nPos, 'prob', new Float64Array(nPos));
    const drop = classScores(probs, 0, k, t, nPos, 'drop', new Float64Array(nPos));
    for (let j = 0; j < nPos; j++) {
      assert.equal(prob[j], p(j + 1));
      assert.equal(drop[j], p(0) - p(j + 1));
      assert.ok(Math.abs(prob[j] - probs[(j + 1) * k + t]) < 1e-6, 'either way the same probability up to float32 rounding');
    }
  }
});
