import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareMap, compareMaps, METRICS, METRIC_NAMES, ssimWindow } from '../src/metrics/compare.js';
import { mae, mse, pearson, spearman, ssim, topKIoU } from '../src/metrics/maps.js';
import { normalizeSeed } from '../src/occlusion/geometry.js';
import { UserError } from '../src/util/errors.js';
import { Rng } from '../src/util/rng.js';

const rand = (n: number, seed: number): Float32Array => {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.next());
};

test('the registry holds every map metric, each a pure function of the two maps', () => {
  assert.deepEqual(METRIC_NAMES, ['mse', 'mae', 'ssim', 'pearson', 'spearman', 'spearmanTop', 'iou']);
  const a = { values: rand(81, 1), importance: rand(81, 2), h: 9, w: 9 };
  const b = { values: rand(81, 3), importance: rand(81, 4), h: 9, w: 9 };
  const r = compareMap(a, b);
  assert.equal(r.mse, mse(a.values, b.values));
  assert.equal(r.mae, mae(a.values, b.values));
  assert.equal(r.ssim, ssim(a.values, b.values, 9, 9, { win: 7, dataRange: 1 }));
  assert.equal(r.pearson, pearson(a.values, b.values));
  assert.equal(r.spearman, spearman(a.values, b.values));
  assert.equal(r.iou, topKIoU(a.importance, b.importance, 0.1));
  assert.equal(compareMap(a, b, { fraction: 0.5 }).iou, topKIoU(a.importance, b.importance, 0.5));
  // Same inputs, same numbers (no state).
  assert.deepEqual(compareMap(a, b), r);
  for (const k of METRIC_NAMES) assert.ok(METRICS[k].better === 'lower' || METRICS[k].better === 'higher');
});

test('SSIM on small maps: the largest odd window that fits, undefined (NaN) below 3x3', () => {
  assert.equal(ssimWindow(21, 21), 7);
  assert.equal(ssimWindow(6, 8), 5);
  assert.equal(ssimWindow(5, 3), 3);
  assert.equal(ssimWindow(4, 4), 3);
  assert.equal(ssimWindow(2, 9), 0);
  const a = { values: rand(10, 1), importance: rand(10, 1), h: 2, w: 5 };
  assert.ok(Number.isNaN(compareMap(a, a).ssim));
  const s = { values: rand(25, 1), importance: rand(25, 1), h: 5, w: 5 };
  assert.equal(compareMap(s, s).ssim, 1);
});

test('compareMaps: seed maps as they are, other maps seed-normalised; orientation from score', () => {
  const n = 3;
  const h = 5;
  const w = 6;
  const est = rand(n * h * w, 7);
  const ex = rand(n * h * w, 8);
  const hw = h * w;
  const seed = compareMaps({ data: est, shape: [n, h, w], score: 'prob', normalize: 'seed' }, { data: ex, shape: [n, h, w], score: 'prob', normalize: 'seed' });
  const none = compareMaps({ data: est, shape: [n, h, w], score: 'prob' }, { data: ex, shape: [n, h, w], score: 'prob' });
  for (let i = 0; i < n; i++) {
    const a = est.subarray(i * hw, (i + 1) * hw);
    const b = ex.subarray(i * hw, (i + 1) * hw);
    assert.equal(seed.perMap.mse[i], mse(a, b));
    assert.equal(none.perMap.mse[i], mse(normalizeSeed(a), normalizeSeed(b)));
    // prob: low = important, so the IoU ranks the negated maps.
    assert.equal(seed.perMap.iou[i], topKIoU(Array.from(a, (v) => -v), Array.from(b, (v) => -v), 0.1));
  }
  const drop = compareMaps({ data: est, shape: [n, h, w] }, { data: ex, shape: [n, h, w] }, { score: 'drop', normalize: 'seed' });
  assert.equal(drop.perMap.iou[0], topKIoU(est.subarray(0, hw), ex.subarray(0, hw), 0.1));
  assert.equal(seed.mean.mse, seed.perMap.mse.reduce((s, v) => s + v, 0) / n);
  // One [H,W] map is N = 1.
  const one = compareMaps({ data: est.subarray(0, hw), shape: [h, w] }, { data: ex.subarray(0, hw), shape: [h, w] }, { score: 'prob', normalize: 'seed' });
  assert.equal(one.n, 1);
  assert.equal(one.mean.mse, seed.perMap.mse[0]);
});

test('compareMaps: mismatched or unlabelled maps are one-line errors', () => {
  const m = (shape: number[], score?: 'prob' | 'drop') => ({ data: new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, score });
  const cases: [() => unknown, RegExp][] = [
    [() => compareMaps(m([2, 3, 3]), m([2, 3, 3])), /say which end of the maps is important/],
    [() => compareMaps(m([2, 3, 3], 'prob'), m([2, 3, 3], 'drop')), /score 'prob' but the exact maps 'drop'/],
    [() => compareMaps(m([1, 3, 3], 'prob'), m([2, 3, 3], 'prob')), /1 estimate\(s\) of 3x3 for 2 exact map/],
    [() => compareMaps({ data: new Float32Array(5), shape: [2, 3] }, m([2, 3], 'prob')), /estimate holds 5 values/],
    [() => compareMaps(m([3], 'prob'), m([3], 'prob')), /not \[N,H,W\] or \[H,W\]/],
  ];
  for (const [f, re] of cases) assert.throws(f, (e: Error) => e instanceof UserError && re.test(e.message), String(re));
});

test("spearmanTop: Spearman of the importances on the exact map's top fraction, against brute force", () => {
  const est = rand(100, 5);
  const ex = rand(100, 6);
  // Brute force: the 10 largest exact importances (distinct values), then textbook Spearman
  // 1 - 6 sum d^2 / (n (n^2 - 1)) on the ranks of both sides there.
  const top = Array.from({ length: 100 }, (_, i) => i).sort((i, j) => ex[j] - ex[i]).slice(0, 10);
  const rank = (v: number[]) => v.map((x) => v.filter((y) => y < x).length + 1);
  const re = rank(top.map((i) => est[i]));
  const rx = rank(top.map((i) => ex[i]));
  const d2 = re.reduce((s, r, k) => s + (r - rx[k]) ** 2, 0);
  const want = 1 - (6 * d2) / (10 * (100 - 1));
  const got = compareMap({ values: est, importance: est, h: 10, w: 10 }, { values: ex, importance: ex, h: 10, w: 10 }).spearmanTop;
  assert.ok(Math.abs(got - want) < 1e-12, `${got} vs ${want}`);
  // The same order on the top pixels (whatever happens elsewhere) is a perfect 1.
  const same = Float32Array.from(ex, (v, i) => (top.includes(i) ? v * 2 + 1 : -v));
  assert.ok(Math.abs(compareMap({ values: same, importance: same, h: 10, w: 10 }, { values: ex, importance: ex, h: 10, w: 10 }).spearmanTop - 1) < 1e-12);
  // A flat estimate there (clipped at the seed's 0) carries no order: 0.
  const flat = Float32Array.from(ex, (v, i) => (top.includes(i) ? 5 : v));
  assert.equal(compareMap({ values: flat, importance: flat, h: 10, w: 10 }, { values: ex, importance: ex, h: 10, w: 10 }).spearmanTop, 0);
});
