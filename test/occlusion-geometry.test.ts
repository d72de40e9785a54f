import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  accumulate,
  axisPositions,
  channelMeans,
  coverage,
  cropPadded,
  geometryProblem,
  logRestUnits,
  normalizeSeed,
  occludeInto,
  parsePatch,
  positions,
  seedFromLogRest,
  uniformCoverage,
  type Geometry,
} from '../src/occlusion/geometry.js';
import { exactMaps, SEED_PARAMS, type OcclusionParams } from '../src/occlusion/exact.js';
import { linearPredictor } from './occlusion-fixtures.js';
import { Rng } from '../src/util/rng.js';

const seedGeom: Geometry = { h: 21, w: 21, ph: 3, pw: 3, stride: 1, pad: 3 };

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-9): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `item ${i}: ${actual[i]} vs ${expected[i]}`);
  }
}

test('parsePatch reads N and HxW', () => {
  assert.deepEqual(parsePatch('3'), [3, 3]);
  assert.deepEqual(parsePatch('3x5'), [3, 5]);
  assert.equal(parsePatch('0'), null);
  assert.equal(parsePatch('3x'), null);
  assert.equal(parsePatch('a'), null);
});

test('position counts: seed 25x25, stride 2, rectangular patch', () => {
  const p = positions(seedGeom);
  assert.equal(p.ny, 25);
  assert.equal(p.nx, 25);
  assert.equal(p.ys.length, 625);
  assert.equal(p.ys[624], 24);
  assert.equal(p.xs[1], 1); // row-major
  assert.equal(positions({ ...seedGeom, stride: 2 }).ys.length, 13 * 13);
  const r = positions({ ...seedGeom, ph: 3, pw: 5 });
  assert.deepEqual([r.ny, r.nx], [25, 23]);
  assert.equal(axisPositions(4, 5, 1, 0), 0);
  assert.equal(axisPositions(21, 3, 5, 3), 5); // 0,5,10,15,20
});

test('coverage counts', () => {
  assert.ok(coverage(seedGeom).every((v) => v === 9));
  close(coverage({ h: 4, w: 4, ph: 2, pw: 2, stride: 1, pad: 0 }), [1, 2, 2, 1, 2, 4, 4, 2, 2, 4, 4, 2, 1, 2, 2, 1]);
  assert.ok(coverage({ h: 4, w: 4, ph: 2, pw: 2, stride: 2, pad: 1 }).every((v) => v === 1));
});

test('crop takes the window at (pad, pad)', () => {
  const padded = Array.from({ length: 16 }, (_, i) => i);
  close(cropPadded(padded, 4, 1, 2, 2), [5, 6, 9, 10]);
});

test('accumulate: sum and mean on hand-computed grids', () => {
  // 2x2 image, pad 1, 2x2 patch: 3x3 positions with scores 0..8.
  const g: Geometry = { h: 2, w: 2, ph: 2, pw: 2, stride: 1, pad: 1 };
  const s = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  close(accumulate(g, s, 'sum'), [8, 12, 20, 24]);
  close(accumulate(g, s, 'mean'), [2, 3, 5, 6]);
  // 2x3 image, no pad, 1x2 patch: uneven coverage [1,2,1].
  const r: Geometry = { h: 2, w: 3, ph: 1, pw: 2, stride: 1, pad: 0 };
  close(accumulate(r, [1, 2, 3, 4], 'sum'), [1, 3, 2, 3, 7, 4]);
  close(accumulate(r, [1, 2, 3, 4], 'mean'), [1, 1.5, 2, 3, 3.5, 4]);
  assert.throws(() => accumulate(r, [1, 2, 3], 'sum'), /expected 4 scores/);
});

test('seed normalisation: z-score, clip, (x+1)/2; constant map -> 0.5', () => {
  // mean 1.5, std sqrt(1.25): z = -1.342, -0.447, 0.447, 1.342
  close(normalizeSeed([0, 1, 2, 3]), [0, 0.5 - 0.5 / Math.sqrt(5), 0.5 + 0.5 / Math.sqrt(5), 1], 1e-12);
  close(normalizeSeed([2, 2, 2]), [0.5, 0.5, 0.5]);
});

test('geometry problems: patch too large, pixels no position covers', () => {
  assert.equal(geometryProblem(seedGeom), null);
  assert.match(geometryProblem({ ...seedGeom, ph: 30, pw: 30 })!, /does not fit/);
  assert.match(geometryProblem({ ...seedGeom, stride: 5 })!, /covered by no patch position/);
  assert.match(geometryProblem({ ...seedGeom, stride: 0 })!, /stride/);
});

test('occludeInto fills every channel, only inside the image', () => {
  const g: Geometry = { h: 3, w: 3, ph: 2, pw: 2, stride: 1, pad: 1 };
  const img = new Float32Array(18).map((_, i) => i + 1);
  const dst = new Float32Array(20);
  occludeInto(dst, 2, img, g, 2, 0, 0, [-1, -2]); // covers padded (0..1,0..1): image (0,0) only
  assert.deepEqual(Array.from(dst.subarray(2)), [-1, -2, ...Array.from(img.subarray(2))]);
  occludeInto(dst, 2, img, g, 2, 2, 1, [0, 0]); // image rows 1..2, cols 0..1
  const expect = Array.from(img);
  for (const [r, c] of [[1, 0], [1, 1], [2, 0], [2, 1]]) expect[(r * 3 + c) * 2] = expect[(r * 3 + c) * 2 + 1] = 0;
  assert.deepEqual(Array.from(dst.subarray(2)), expect);
  close(channelMeans(img, 3, 3, 2), [9, 10]);
});

/**
 * The linear model p1 = 0.5 + sum(W * x): occluding a set of pixels lowers p1 by exactly
 * sum over them of W * (x - fill). With pad >= patch - 1 and stride 1, pixels q and r share
 * (p - |dy|)(p - |dx|) patch positions, so the drop map is v = W * (x - fill) convolved with
 * that triangle kernel — derived without looping over positions.
 */
function triangleMap(v: Float64Array, h: number, w: number, p: number): Float64Array {
  const out = new Float64Array(h * w);
  for (let qy = 0; qy < h; qy++)
    for (let qx = 0; qx < w; qx++)
      for (let ry = 0; ry < h; ry++)
        for (let rx = 0; rx < w; rx++) {
          const k = Math.max(0, p - Math.abs(qy - ry)) * Math.max(0, p - Math.abs(qx - rx));
          out[qy * w + qx] += k * v[ry * w + rx];
        }
  return out;
}

test('exact maps of a linear model equal the closed form', async () => {
  const h = 7;
  const w = 6;
  const cData = 3;
  const channels = [2, 0];
  const rng = new Rng(11);
  const n = 3;
  const images = new Float32Array(n * h * w * cData).map(() => rng.next());
  // Image 1 has the weights flipped so its prediction is class 0, not 1.
  const weights = Array.from({ length: h * w * 2 }, () => rng.uniform(-1, 1) * 0.005);
  const model = linearPredictor({ h, w, weights, channels });
  for (const fill of [0, 0.25, 'mean'] as const) {
    for (const score of ['prob', 'drop'] as const) {
      for (const aggregate of ['sum', 'mean'] as const) {
        const params: OcclusionParams = { ...SEED_PARAMS, fill, score, aggregate, normalize: 'none', target: 1 };
        const r = await exactMaps(model, images, [n, h, w, cData], { ...params, batchSize: 100 });
        for (let i = 0; i < n; i++) {
          const x = new Float64Array(h * w * 2);
          for (let p = 0; p < h * w; p++) for (let k = 0; k < 2; k++) x[p * 2 + k] = images[(i * h * w + p) * cData + channels[k]];
          const means = [0, 1].map((k) => x.filter((_, j) => j % 2 === k).reduce((a, b) => a + b, 0) / (h * w));
          const v = new Float64Array(h * w);
          let base = 0.5;
          for (let p = 0; p < h * w; p++) {
            for (let k = 0; k < 2; k++) {
              const f = fill === 'mean' ? means[k] : fill;
              v[p] += weights[p * 2 + k] * (x[p * 2 + k] - f);
              base += weights[p * 2 + k] * x[p * 2 + k];
            }
          }
          const drop = triangleMap(v, h, w, 3);
          // coverage is 9 everywhere with pad 3: prob map = 9 * base - drop map.
          const expected = Array.from(drop, (d) => {
            const s = score === 'drop' ? d : 9 * base - d;
            return aggregate === 'mean' ? s / 9 : s;
          });
          close(r.maps.subarray(i * h * w, (i + 1) * h * w), expected, 2e-6);
          assert.equal(r.targets[i], 1);
          assert.ok(Math.abs(r.baseProbs[i * 2 + 1] - base) < 1e-6);
        }
        assert.equal(r.inferences, n * (positions({ h, w, ph: 3, pw: 3, stride: 1, pad: 3 }).ys.length + 1));
      }
    }
  }
});

test('target predicted follows the unoccluded argmax; seed normalisation applied per map', async () => {
  const h = 5;
  const w = 5;
  // p1 = 0.3 + 0.01 * (sum of the image): bright images -> class 1, dark -> class 0.
  const weights = new Array(h * w).fill(0.01);
  const model = linearPredictor({ h, w, weights, bias: 0.3 });
  const dark = new Float32Array(h * w).fill(0.1); // p1 = 0.325
  const bright = new Float32Array(h * w).fill(1); // p1 = 0.55
  const images = new Float32Array([...dark, ...bright]);
  const r = await exactMaps(model, images, [2, h, w, 1], { ...SEED_PARAMS, score: 'drop', normalize: 'none' });
  assert.deepEqual(Array.from(r.targets), [0, 1]);
  // The dark image is explained for class 0: occlusion lowers p1, so p0 rises and drop < 0.
  const v0 = new Float64Array(h * w).fill(-0.01 * 0.1);
  const v1 = new Float64Array(h * w).fill(0.01 * 1);
  close(r.maps.subarray(0, 25), triangleMap(v0, h, w, 3), 1e-6);
  close(r.maps.subarray(25), triangleMap(v1, h, w, 3), 1e-6);
  const s = await exactMaps(model, images, [2, h, w, 1], { ...SEED_PARAMS, score: 'drop' });
  close(s.maps.subarray(25), normalizeSeed(triangleMap(v1, h, w, 3)), 1e-5);
  // Target by label, and the label must be a class of the model.
  const l = await exactMaps(model, images, [2, h, w, 1], { ...SEED_PARAMS, target: 'label', labels: new Int32Array([1, 1]), normalize: 'none', score: 'drop' });
  close(l.maps.subarray(0, 25), triangleMap(v0.map((x) => -x), h, w, 3), 1e-6);
  await assert.rejects(exactMaps(model, images, [2, h, w, 1], { ...SEED_PARAMS, target: 'label' }), /needs labels/);
  await assert.rejects(exactMaps(model, images, [2, h, w, 1], { ...SEED_PARAMS, target: 5 }), /out of range/);
});

test('batches never exceed batch size and group whole maps', async () => {
  const h = 5;
  const w = 5;
  const model = linearPredictor({ h, w, weights: new Array(25).fill(0.001) });
  const images = new Float32Array(7 * 25).fill(0.5);
  // 9x9 positions (5 + 2*3 - 3 + 1) + 1 = 82 inferences per map: 2 maps per call of <= 170.
  await exactMaps(model, images, [7, h, w, 1], { ...SEED_PARAMS, batchSize: 170 });
  assert.deepEqual(model.calls, [164, 164, 164, 82]);
  model.calls.length = 0;
  await exactMaps(model, images.subarray(0, 25), [1, h, w, 1], { ...SEED_PARAMS, batchSize: 16 });
  assert.deepEqual(model.calls, [16, 16, 16, 16, 16, 2]);
  await assert.rejects(exactMaps(model, images, [7, h, w, 2], SEED_PARAMS), /model input is 5x5x1/);
});

test('uniformCoverage: 9 for the seed geometry (pad 3 >= patch - 1), null when the edges are covered less', () => {
  assert.equal(uniformCoverage(seedGeom), 9);
  assert.equal(uniformCoverage({ ...seedGeom, pad: 2 }), 9);
  assert.equal(uniformCoverage({ ...seedGeom, pad: 1 }), null);
  assert.equal(uniformCoverage({ ...seedGeom, stride: 2, pad: 3 }), null);
});

test('logRestUnits -> seedFromLogRest is the seed normalisation of the raw map (brute force over random maps)', () => {
  const rng = new Rng(4);
  const cover = 9;
  for (let trial = 0; trial < 20; trial++) {
    // Confident classifiers: what the patches take away spans many orders of magnitude.
    const scale = 10 ** -(1 + 6 * rng.next());
    const raw = Float64Array.from({ length: 441 }, () => cover - cover * scale * 10 ** (-3 * rng.next()));
    const t = logRestUnits(raw, cover);
    close(seedFromLogRest(t), normalizeSeed(raw), 1e-6);
    // Centred per map, and any additive constant gives the same seed map.
    assert.ok(Math.abs(t.reduce((a, b) => a + b, 0)) < 1e-9 * t.length);
    close(seedFromLogRest(t.map((v) => v + 7.5)), seedFromLogRest(t), 1e-12);
  }
});

test('logRestUnits: the order is reversed (less probability left = more important = larger), flat and saturated maps', () => {
  const t = logRestUnits([9 - 1e-3, 9 - 1e-9, 9 - 1e-6], 9);
  assert.ok(t[0] > t[2] && t[2] > t[1]);
  // Exactly cover (every occluded probability rounded to 1): the floor, a flat map, all 0.5.
  const flat = logRestUnits([9, 9, 9, 9], 9);
  assert.deepEqual(Array.from(flat), [0, 0, 0, 0]);
  assert.deepEqual(Array.from(seedFromLogRest(flat)), [0.5, 0.5, 0.5, 0.5]);
  assert.ok(Number.isFinite(logRestUnits([9, 9 - 1e-3], 9)[0]));
});
