import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitIndices, leakedGroups } from '../src/data/split.js';

test('group split keeps every group on one side and is near the fraction', () => {
  const ids = Array.from({ length: 400 }, (_, i) => `obj${i % 37}`);
  const s = splitIndices(ids.length, 0.25, 7, ids);
  assert.equal(s.by, 'group');
  assert.deepEqual(leakedGroups(s, ids), []);
  assert.equal(s.train.length + s.val.length, 400);
  assert.ok(Math.abs(s.val.length - 100) <= 11, `val ${s.val.length}`);
  assert.deepEqual(splitIndices(ids.length, 0.25, 7, ids), s, 'same seed, same split');
  assert.notDeepEqual(splitIndices(ids.length, 0.25, 8, ids).val, s.val);
});

test('item split without ids, and at least one training group', () => {
  const s = splitIndices(8, 0.25, 1);
  assert.equal(s.by, 'item');
  assert.equal(s.val.length, 2);
  assert.deepEqual([...s.train, ...s.val].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7]);
  const two = splitIndices(4, 0.9, 1, ['a', 'a', 'b', 'b']);
  assert.equal(two.train.length, 2);
  assert.throws(() => splitIndices(4, 1.5, 1), /fraction/);
});
