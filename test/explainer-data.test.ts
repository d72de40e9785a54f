import { test } from 'node:test';
import assert from 'node:assert/strict';
import { padFor, padImages, cropMaps, conditionVectors } from '../src/explainer/data.js';

test('seed padding 21 -> 24 is top/left 2, bottom/right 1', () => {
  assert.deepEqual(padFor(21, 21, 24), { top: 2, bottom: 1, left: 2, right: 1 });
  assert.deepEqual(padFor(24, 24, 24), { top: 0, bottom: 0, left: 0, right: 0 });
  assert.throws(() => padFor(25, 21, 24), /larger/);
});

test('pad then crop returns the original; padding is zero', () => {
  // 2 images of 2x3 with 2 channels.
  const x = Float32Array.from({ length: 2 * 2 * 3 * 2 }, (_, i) => i + 1);
  const p = { top: 1, bottom: 0, left: 2, right: 1 };
  const padded = padImages(x, 2, 2, 3, 2, p);
  assert.equal(padded.length, 2 * 3 * 6 * 2);
  // First row of image 0 is padding; row 1 starts with 2 zero pixels then pixel (0,0) = [1,2].
  assert.deepEqual(Array.from(padded.subarray(0, 12)), new Array(12).fill(0));
  assert.deepEqual(Array.from(padded.subarray(12, 18)), [0, 0, 0, 0, 1, 2]);
  const maps = Float32Array.from({ length: 2 * 2 * 3 }, (_, i) => i + 1);
  const pm = padImages(maps, 2, 2, 3, 1, p);
  assert.deepEqual(Array.from(cropMaps(pm, 2, 3, 6, p)), Array.from(maps));
});

test('condition vectors: one-hot and numeral', () => {
  assert.deepEqual(Array.from(conditionVectors([1, 0], 'onehot', 2)!), [0, 1, 1, 0]);
  assert.deepEqual(Array.from(conditionVectors([1, 0], 'numeral', 2)!), [1, 0]);
  assert.equal(conditionVectors([1], 'none', 2), undefined);
  assert.throws(() => conditionVectors([2], 'onehot', 2), /out of range/);
});
