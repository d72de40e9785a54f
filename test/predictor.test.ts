import { test } from 'node:test';
import assert from 'node:assert/strict';
import { argmax, argmaxRows, selectChannels } from '../src/models/predictor.js';

test('argmax: first index on ties, with offset and length; argmaxRows per row', () => {
  assert.equal(argmax([0.2, 0.5, 0.5]), 1);
  assert.equal(argmax([9, 1, 3, 2], 1, 3), 1);
  assert.deepEqual(Array.from(argmaxRows([0.9, 0.1, 0.3, 0.7, 0.5, 0.5], 3, 2)), [0, 1, 0]);
});

test('selectChannels picks model channels out of dataset pixels', () => {
  const x = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]); // 2 pixels x 4 channels
  assert.deepEqual(Array.from(selectChannels(x, 1, 1, 2, 4, [3, 1])), [4, 2, 8, 6]);
  assert.equal(selectChannels(x, 1, 1, 2, 4, undefined), x);
});
