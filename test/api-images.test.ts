import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toImageBatch } from '../src/data/images.js';
import { initTf, tf } from '../src/runtime/tfjs.js';
import { UserError } from '../src/util/errors.js';

test('flat batches pass through without a copy; other shapes gain the batch / channel axes', () => {
  const data = Float32Array.from({ length: 2 * 3 * 4 * 2 }, (_, i) => i);
  const b = toImageBatch({ data, shape: [2, 3, 4, 2] });
  assert.equal(b.data, data);
  assert.deepEqual(b.shape, [2, 3, 4, 2]);
  assert.deepEqual(toImageBatch({ data: data.subarray(0, 24), shape: [3, 4, 2] }).shape, [1, 3, 4, 2]);
  assert.deepEqual(toImageBatch({ data: [1, 2, 3, 4, 5, 6], shape: [2, 3] }).shape, [1, 2, 3, 1]);
  assert.ok(toImageBatch({ data: [1, 2, 3, 4, 5, 6], shape: [2, 3] }).data instanceof Float32Array);
});

test('nested arrays: [N][H][W][C], [H][W][C] and [H][W], row-major', () => {
  const n4 = [[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]];
  assert.deepEqual(toImageBatch(n4), { data: Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), shape: [1, 2, 2, 2] });
  assert.deepEqual(toImageBatch(n4[0]).shape, [1, 2, 2, 2]);
  const n2 = [
    [1, 2, 3],
    [4, 5, 6],
  ];
  assert.deepEqual(toImageBatch(n2), { data: Float32Array.from([1, 2, 3, 4, 5, 6]), shape: [1, 2, 3, 1] });
});

test('tfjs tensors of rank 4, 3 and 2', async () => {
  await initTf('cpu');
  const t = tf.tensor4d(Float32Array.from({ length: 12 }, (_, i) => i / 10), [2, 3, 2, 1]);
  const b = toImageBatch(t);
  assert.deepEqual(b.shape, [2, 3, 2, 1]);
  assert.deepEqual(Array.from(b.data), Array.from(t.dataSync()));
  assert.deepEqual(toImageBatch(tf.zeros([3, 2, 4])).shape, [1, 3, 2, 4]);
  assert.deepEqual(toImageBatch(tf.zeros([3, 2], 'int32')).shape, [1, 3, 2, 1]);
  t.dispose();
});

test('bad images: one-line errors naming the argument', () => {
  const bad: [unknown, RegExp][] = [
    [{ data: new Float32Array(5), shape: [1, 2, 2, 1] }, /images: 5 values for shape \[1,2,2,1\] \(4 expected\)/],
    [{ data: new Float32Array(4), shape: [4] }, /has 1 dimension/],
    [{ data: new Float32Array(0), shape: [0, 2, 2, 1] }, /dimension 0/],
    [{ data: Float32Array.from([0, NaN, 0, 0]), shape: [2, 2] }, /value NaN at element 1/],
    [[[1, 2], [3]], /ragged/],
    [[[1, 'a']], /expected a number/],
    [[], /empty array/],
    ['stamp.png', /expected \{ data, shape/],
  ];
  for (const [x, re] of bad) assert.throws(() => toImageBatch(x as never), (e: Error) => e instanceof UserError && re.test(e.message), String(re));
});
