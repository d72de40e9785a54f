import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MicroBatcher } from '../src/serve/batcher.js';
import { conditionClass, exactTarget } from '../src/serve/app.js';
import { SEED_PARAMS } from '../src/occlusion/exact.js';
import { HttpError, binaryKind, checkStamp, flattenNested, stampFromArray, type StampSpec } from '../src/serve/stamp.js';
import { percentile, summarize } from '../bench/serve-load.js';
import type { ExplainerCard } from '../src/explainer/estimate.js';

const status = (code: number, re: RegExp) => (e: unknown) => e instanceof HttpError && e.statusCode === code && re.test(e.message);

test('stampFromArray reads one stamp from (H,W), (H,W,C), (1,H,W) and (1,H,W,C)', () => {
  const spec = { h: 3, w: 4 };
  const d = (n: number) => new Float32Array(n);
  assert.deepEqual(({ ...stampFromArray(d(12), [3, 4], spec), image: 0 }), { image: 0, h: 3, w: 4, c: 1 });
  assert.deepEqual(({ ...stampFromArray(d(24), [3, 4, 2], spec), image: 0 }), { image: 0, h: 3, w: 4, c: 2 });
  // A leading 1 before the model's H,W is a batch of one, not a 1-row image of W channels.
  assert.deepEqual(({ ...stampFromArray(d(12), [1, 3, 4], spec), image: 0 }), { image: 0, h: 3, w: 4, c: 1 });
  assert.deepEqual(({ ...stampFromArray(d(36), [1, 3, 4, 3], spec), image: 0 }), { image: 0, h: 3, w: 4, c: 3 });
  assert.throws(() => stampFromArray(d(24), [2, 3, 4, 1], spec), status(400, /one stamp per request/));
  assert.throws(() => stampFromArray(d(3), [3], spec), status(400, /shape \(3\)/));
  assert.throws(() => stampFromArray(d(0), [0, 4], spec), status(400, /empty/));
  const bad = d(12);
  bad[5] = Infinity;
  assert.throws(() => stampFromArray(bad, [3, 4], spec), status(400, /NaN\/Inf value at element 5/));
});

test('checkStamp: the data channels or the classifier channels, else a 422 naming both', () => {
  const withData: StampSpec = { h: 21, w: 21, modelChannels: 1, dataChannels: [3], datasetChannels: 4 };
  const s = (h: number, w: number, c: number) => ({ image: new Float32Array(0), h, w, c });
  assert.equal(checkStamp(s(21, 21, 4), withData), 'data');
  assert.equal(checkStamp(s(21, 21, 1), withData), 'model');
  assert.throws(() => checkStamp(s(21, 21, 2), withData), status(422, /2 channel\(s\).*21x21x1 \(the classifier's channel\) or 21x21x4 \(the dataset's channels\)/));
  assert.throws(() => checkStamp(s(20, 21, 4), withData), status(422, /20x21x4/));
  // A 3-channel dataset for a classifier reading data channel 3: never offered as acceptable.
  const short: StampSpec = { h: 21, w: 21, modelChannels: 1, dataChannels: [3], datasetChannels: 3 };
  assert.throws(() => checkStamp(s(21, 21, 3), short), (e: unknown) => status(422, /3 channel\(s\).*expected 21x21x1 \(the classifier's channel\)$/)(e) && !/21x21x3 \(the dataset/.test((e as Error).message));
  // Without a dataset, any channel count that holds the classifier's channels reads as data.
  const noData: StampSpec = { h: 21, w: 21, modelChannels: 1, dataChannels: [3] };
  assert.equal(checkStamp(s(21, 21, 5), noData), 'data');
  assert.throws(() => checkStamp(s(21, 21, 3), noData), status(422, /C > 3/));
  const plain: StampSpec = { h: 9, w: 9, modelChannels: 2 };
  assert.equal(checkStamp(s(9, 9, 2), plain), 'model');
  assert.throws(() => checkStamp(s(9, 9, 1), plain), status(422, /expected 9x9x2/));
});

test('flattenNested: rectangular lists of finite numbers only', () => {
  assert.deepEqual(flattenNested([[1, 2], [3, 4]], 'x'), { data: Float32Array.of(1, 2, 3, 4), shape: [2, 2] });
  assert.deepEqual(flattenNested([[[1], [2]]], 'x').shape, [1, 2, 1]);
  assert.throws(() => flattenNested([[1, 2], [3]], 'x'), status(400, /x\[1\] is not a list of 2/));
  assert.throws(() => flattenNested([[1, '2']], 'x'), status(400, /x\[0\]\[1\] is string/));
  assert.throws(() => flattenNested([1, 2], 'x'), status(400, /2-D/));
  assert.throws(() => flattenNested([[[[[1]]]]], 'x'), status(400, /2-D/));
});

test('binaryKind: PNG by content type or magic bytes, else .npy', () => {
  const png = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0);
  assert.equal(binaryKind('image/png', Uint8Array.of(1)), 'png');
  assert.equal(binaryKind('application/octet-stream', png), 'png');
  assert.equal(binaryKind('application/octet-stream', Uint8Array.of(0x93, 0x4e)), 'npy');
});

test('conditioning class and exact target follow how the explainer was trained', () => {
  const card = (condition: string, conditionOn: unknown) => ({ condition, conditionOn }) as unknown as ExplainerCard;
  assert.equal(conditionClass(card('none', null), 1, 0), undefined);
  assert.deepEqual(conditionClass(card('onehot', 'label'), 1, 0), { class: 1, source: 'label' });
  assert.deepEqual(conditionClass(card('onehot', 'label'), undefined, 0), { class: 0, source: 'predicted' });
  assert.deepEqual(conditionClass(card('onehot', 'predicted'), 1, 0), { class: 0, source: 'predicted' });
  assert.deepEqual(conditionClass(card('numeral', 1), 0, 0), { class: 1, source: 'fixed' });
  // Conditioned: the exact map is drawn for the same class.
  const t = exactTarget(SEED_PARAMS, { class: 1, source: 'label' }, 1, 0);
  assert.deepEqual([t.opts.target, Array.from(t.opts.labels!), t.source], ['label', [1], 'label']);
  assert.deepEqual(exactTarget(SEED_PARAMS, undefined, 1, 0), { opts: { target: 'predicted' }, source: 'predicted' });
  const byLabel = exactTarget({ ...SEED_PARAMS, target: 'label' }, undefined, undefined, 1);
  assert.deepEqual([Array.from(byLabel.opts.labels!), byLabel.source], [[1], 'predicted']);
  assert.deepEqual(exactTarget({ ...SEED_PARAMS, target: 0 }, undefined, 1, 1), { opts: { target: 0 }, source: 'fixed' });
});

test('MicroBatcher runs requests that arrive together as one batch, in order', async () => {
  const calls: number[][] = [];
  const b = new MicroBatcher<number, number>(async (xs) => {
    calls.push(xs);
    await new Promise((r) => setTimeout(r, 5));
    return xs.map((x) => x * 10);
  }, 3);
  const outs = await Promise.all([1, 2, 3, 4, 5].map((x) => b.push(x)));
  assert.deepEqual(outs.map((o) => o.out), [10, 20, 30, 40, 50]);
  // At most maxBatch per call; the ones that wait go together next.
  assert.deepEqual(calls, [[1, 2, 3], [4, 5]]);
  assert.deepEqual(outs.map((o) => o.batch.size), [3, 3, 3, 2, 2]);
  // A lone request is not held back waiting for company.
  const lone = await b.push(7);
  assert.deepEqual([lone.out, lone.batch.size], [70, 1]);
});

test('MicroBatcher: a failing item fails only its own request', async () => {
  const b = new MicroBatcher<number, number>(async (xs) => {
    if (xs.includes(13)) throw new Error('unlucky');
    return xs.map((x) => x + 1);
  });
  const r = await Promise.allSettled([1, 13, 2].map((x) => b.push(x)));
  assert.deepEqual(r.map((s) => s.status), ['fulfilled', 'rejected', 'fulfilled']);
  assert.equal((r[0] as PromiseFulfilledResult<{ out: number }>).value.out, 2);
  assert.match(String((r[1] as PromiseRejectedResult).reason), /unlucky/);
  b.close();
  await assert.rejects(b.push(1), /closed/);
});

test('load bench percentiles: nearest rank', () => {
  const s = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(s, 0.5), 50);
  assert.equal(percentile(s, 0.99), 99);
  assert.equal(percentile(s, 1), 100);
  assert.equal(percentile([4], 0.99), 4);
  assert.ok(Number.isNaN(percentile([], 0.5)));
  const r = summarize([3, 1, 2, 10], 2);
  assert.deepEqual([r.requests, r.perSecond, r.p50, r.p99, r.max, r.mean], [4, 2, 2, 10, 10, 4]);
});
