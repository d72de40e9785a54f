import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { writeDataset } from '../src/data/dataset.js';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { applyHoldout, deriveHoldout, heldOutLookup, holdoutOfCard, holdoutOfIds, holdoutOfModelDir, holdoutWarnings, TINY_HOLDOUT } from '../src/data/holdout.js';
import { splitIndices } from '../src/data/split.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'occmap-holdout-'));

test('applyHoldout: the given objects held out wherever they appear, the rest trained on; ids required', () => {
  const h = holdoutOfIds(['a', 'z'], 'test');
  assert.deepEqual(applyHoldout(h, { n: 4, ids: ['a', 'b', 'a', 'c'], file: 'f' }), { train: [1, 3], val: [0, 2], by: 'group' });
  // on a subset of rows: indices into the rows, membership by the rows' ids
  assert.deepEqual(applyHoldout(h, { n: 4, rows: [1, 2, 3], ids: ['a', 'b', 'a', 'c'], file: 'f' }), { train: [0, 2], val: [1], by: 'group' });
  assert.throws(() => applyHoldout(h, { n: 2, file: 'maps.npz' }), /maps.npz: has no ids/);
});

test('deriveHoldout = the seeded group split the training loop made (same val items), as object ids', () => {
  const ids = Array.from({ length: 40 }, (_, i) => `obj${i % 13}`);
  const rows = [0, 3, 4, 7, 9, 12, 15, 18, 21, 22, 25, 30, 31, 33, 36, 39];
  const h = deriveHoldout({ n: 40, rows, ids, valFraction: 0.25, seed: 5 });
  const ref = splitIndices(rows.length, 0.25, 5, rows.map((r) => ids[r]));
  assert.equal(h.by, 'group');
  assert.deepEqual(h.ids, [...new Set(ref.val.map((i) => ids[rows[i]]))].sort());
  assert.deepEqual(applyHoldout(h, { n: 40, rows, ids, file: 'f' }), ref);
  // Without ids: rows of the file, and only of that file.
  const hi = deriveHoldout({ n: 10, valFraction: 0.3, seed: 1, dataSha256: 'aa' });
  const refI = splitIndices(10, 0.3, 1);
  assert.deepEqual(hi.rows, refI.val);
  assert.deepEqual(applyHoldout(hi, { n: 10, file: 'f', dataSha256: 'aa' }), refI);
  assert.throws(() => applyHoldout(hi, { n: 10, file: 'other.npz', dataSha256: 'bb' }), /other.npz: is not the file whose rows/);
  assert.throws(() => deriveHoldout({ n: 10, valFraction: 1, seed: 0 }), /valFraction must be between 0 and 1/);
});

test('holdoutOfModelDir: a classifier card gives its validation objects, an explainer card its held-out objects', async () => {
  const clf = path.join(tmp, 'clf');
  mkdirSync(clf);
  writeFileSync(path.join(clf, 'card.json'), JSON.stringify({ kind: 'classifier', training: { split: { by: 'group', train: 6, val: 2, valIds: ['b', 'a'] } } }));
  assert.deepEqual((await holdoutOfModelDir(clf)).ids, ['a', 'b']);
  const ex = path.join(tmp, 'ex');
  mkdirSync(ex);
  writeFileSync(path.join(ex, 'card.json'), JSON.stringify({ kind: 'explainer', split: { by: 'group', valIndices: [0], valIds: ['q'] } }));
  assert.deepEqual((await holdoutOfModelDir(ex)).ids, ['q']);
  // A classifier from before cards recorded the objects: derived again from its card (data file,
  // sha256, seed, fraction) exactly as the training loop split; without its data, a clear error.
  const ids = Array.from({ length: 30 }, (_, i) => `o${i % 11}`);
  const data = path.join(tmp, 'd.npz');
  await writeDataset(data, { images: new Float32Array(30 * 4), shape: [30, 2, 2, 1], labels: new Int32Array(30), ids, meta: {} });
  const sha = createHash('sha256').update(readFileSync(data)).digest('hex');
  const old = path.join(tmp, 'old');
  mkdirSync(old);
  const oldCard = { kind: 'classifier', data: { file: data, sha256: sha }, options: { seed: 3, valFraction: 0.25, limit: null }, training: { split: { by: 'group', train: 22, val: 8 } } };
  writeFileSync(path.join(old, 'card.json'), JSON.stringify(oldCard));
  const ref = splitIndices(30, 0.25, 3, ids);
  assert.deepEqual((await holdoutOfModelDir(old)).ids, [...new Set(ref.val.map((i) => ids[i]))].sort());
  writeFileSync(path.join(old, 'card.json'), JSON.stringify({ ...oldCard, data: { file: path.join(tmp, 'gone.npz'), sha256: sha } }));
  await assert.rejects(holdoutOfModelDir(old), /lists no held-out objects \(training.split.valIds, and its training data is gone\)/);
  await assert.rejects(holdoutOfModelDir(path.join(tmp, 'none')), /no card.json/);
});

test('holdoutWarnings: a tiny held-out set is named; a normal one is not', () => {
  const ids = Array.from({ length: 100 }, (_, i) => `o${i}`);
  const few = { train: ids.slice(3).map((_, i) => i + 3), val: [0, 1, 2], by: 'group' as const };
  assert.match(holdoutWarnings(few, ids)[0], /only 3 held-out objects \(3 stamps\)/);
  const many = { train: Array.from({ length: 80 }, (_, i) => i + 20), val: Array.from({ length: 20 }, (_, i) => i), by: 'group' as const };
  assert.ok(20 >= TINY_HOLDOUT);
  assert.deepEqual(holdoutWarnings(many, ids), []);
});

test('heldOutLookup: per stamp, held out by the card (by object id), or null when it cannot tell', () => {
  const h = holdoutOfCard({ kind: 'explainer', split: { by: 'group', valIds: ['b'] } }, 'x');
  const f = heldOutLookup(h, ['a', 'b', 'b', 'c']);
  assert.deepEqual([0, 1, 2, 3].map(f), [false, true, true, false]);
  assert.equal(heldOutLookup(h, undefined)(0), null, 'no ids to match objects by');
  const rows = holdoutOfCard({ kind: 'explainer', split: { by: 'item', valIndices: [2, 0] }, dataInfo: { sha256: 'aa' } }, 'x');
  assert.deepEqual(rows?.rows, [0, 2]);
  assert.deepEqual([0, 1, 2].map(heldOutLookup(rows, undefined, 'aa')), [true, false, true]);
  assert.equal(heldOutLookup(rows, undefined, 'bb')(0), null, 'rows of another file');
  assert.equal(heldOutLookup(undefined, ['a'])(0), null);
});
