import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mse, mae, pearson, spearman, ranks, ssim, topKIoU, aucUniform, summarize } from '../src/metrics/maps.js';
import { deletionInsertion, curveImages } from '../src/metrics/faithfulness.js';

const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) < eps, `${a} != ${b}`);

test('mse and mae on hand-computed values', () => {
  close(mse([0, 1, 2], [1, 1, 0]), (1 + 0 + 4) / 3);
  close(mae([0, 1, 2], [1, 1, 0]), (1 + 0 + 2) / 3);
  assert.throws(() => mse([1], [1, 2]), /length mismatch/);
});

test('pearson on hand-computed values, 0 for a constant map', () => {
  // da = [-1,0,1], db = [-7/3,-1/3,8/3]: sab = 5, saa = 2, sbb = 114/9
  close(pearson([1, 2, 3], [2, 4, 7]), 5 / Math.sqrt(2 * (114 / 9)));
  close(pearson([1, 2, 3], [3, 2, 1]), -1);
  assert.equal(pearson([1, 1, 1], [1, 2, 3]), 0);
});

test('ranks average ties; spearman matches the 1 - 6 sum d^2 / n(n^2-1) formula', () => {
  assert.deepEqual(Array.from(ranks([1, 1, 2])), [1.5, 1.5, 3]);
  assert.deepEqual(Array.from(ranks([30, 10, 20])), [3, 1, 2]);
  close(spearman([1, 2, 3], [1, 3, 2]), 1 - (6 * 2) / (3 * 8));
  close(spearman([1, 2, 3, 4], [10, 200, 3000, 40000]), 1);
});

test('ssim: identical maps 1, constant maps by the formula, complementary checkerboard', () => {
  const c1 = 0.01 ** 2;
  const c2 = 0.03 ** 2;
  const a = Array.from({ length: 49 }, (_, i) => (i % 2 === 0 ? 1 : 0));
  close(ssim(a, a, 7, 7), 1);
  // Constant 0.2 vs 0.4: variances 0, so SSIM = (2*0.08 + c1) / (0.04 + 0.16 + c1).
  close(ssim(new Array(49).fill(0.2), new Array(49).fill(0.4), 7, 7), (0.16 + c1) / (0.2 + c1));
  // a has 25 ones; b = 1 - a has 24. Sample covariance factor 49/48.
  const b = a.map((v) => 1 - v);
  const ua = 25 / 49;
  const ub = 24 / 49;
  const v = (49 / 48) * (25 / 49 - ua * ua);
  const vab = (49 / 48) * (0 - ua * ub);
  close(ssim(a, b, 7, 7), ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua * ua + ub * ub + c1) * (2 * v + c2)));
  // 8x7 map: two windows, mean of both.
  const big = Array.from({ length: 56 }, (_, i) => i / 56);
  close(ssim(big, big, 8, 7), 1);
});

test('topKIoU, with lowest values as the important ones for probability maps', () => {
  const a = [9, 8, 0, 0, 0, 0, 0, 0, 0, 0];
  const b = [9, 0, 8, 0, 0, 0, 0, 0, 0, 0];
  close(topKIoU(a, b, 0.2), 1 / 3);
  close(topKIoU(a, a, 0.2), 1);
  const pa = a.map((x) => 10 - x);
  const pb = b.map((x) => 10 - x);
  close(topKIoU(pa, pb, 0.2, true), 1 / 3);
});

test('aucUniform and summarize', () => {
  close(aucUniform([1, 0]), 0.5);
  close(aucUniform([0, 1, 1]), 0.75);
  const s = summarize([1, 3, NaN]);
  close(s.mean, 2);
  close(s.std, 1);
  assert.equal(s.n, 2);
});

test('deletion / insertion AUC with a model whose probability is the mean pixel', async () => {
  // prob(class 0) = mean of the image; image [1,0,0,0], pixel 0 ranked first.
  const predict = async (x: Float32Array, n: number) => {
    const out = new Float32Array(n * 2);
    for (let i = 0; i < n; i++) {
      const m = (x[i * 4] + x[i * 4 + 1] + x[i * 4 + 2] + x[i * 4 + 3]) / 4;
      out[i * 2] = m;
      out[i * 2 + 1] = 1 - m;
    }
    return out;
  };
  const r = await deletionInsertion(predict, 2, new Float32Array([1, 0, 0, 0]), 4, 1, [4, 3, 2, 1], 0, { steps: 4 });
  assert.deepEqual(r.deletionCurve, [0.25, 0, 0, 0, 0]);
  close(r.deletion, 0.125 / 4);
  assert.deepEqual(r.insertionCurve, [0, 0.25, 0.25, 0.25, 0.25]);
  close(r.insertion, (0.125 + 0.75) / 4);
  const imgs = curveImages(new Float32Array([1, 2, 3, 4]), 4, 1, [3, 2, 1, 0], 'deletion', { steps: 2, baseline: -1 });
  assert.deepEqual(Array.from(imgs), [1, 2, 3, 4, 1, 2, -1, -1, -1, -1, -1, -1]);
});
