import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultArchivePath, readHits2015Archive, type Hits2015Archive } from '../src/data/hits2015.js';
import { deriveHits2015 } from '../src/data/hits2015/derive.js';
import { balancedRanges, buildHits2015Parallel, deriveHits2015Parallel } from '../src/data/hits2015/derive-parallel.js';
import { buildHits2015 } from '../src/data/hits2015.js';
import { archiveOf } from './hits2015-fixtures.js';

/** A slice of the shipped archive: a few objects of each class and enough constant stars to calibrate. */
function slice(): Hits2015Archive {
  const A = readHits2015Archive(defaultArchivePath());
  const quota: Record<string, number> = { supernova: 6, constant: 40, eclipsing_binary: 3, rr_lyrae: 3 };
  const taken: Record<string, number> = {};
  const objs: number[] = [];
  A.classes.forEach((c, o) => {
    if (c === 'constant' && o % 8 !== 0) return;
    if ((taken[c] ?? 0) < quota[c]) {
      objs.push(o);
      taken[c] = (taken[c] ?? 0) + 1;
    }
  });
  return archiveOf(A, objs);
}

test('balancedRanges: consecutive, covering, about equal weight', () => {
  assert.deepEqual(balancedRanges([1, 1, 1, 1], 2), [[0, 2], [2, 4]]);
  assert.deepEqual(balancedRanges([5, 1, 1, 1, 1, 1], 2), [[0, 1], [1, 6]]);
  assert.deepEqual(balancedRanges([2, 2], 3), [[0, 0], [0, 1], [1, 2]]);
  assert.deepEqual(balancedRanges([], 2), [[0, 0], [0, 0]]);
  const r = balancedRanges(Array.from({ length: 100 }, (_, i) => 1 + (i % 7)), 3);
  assert.equal(r[0][0], 0);
  assert.equal(r[2][1], 100);
  for (let k = 1; k < 3; k++) assert.equal(r[k][0], r[k - 1][1]);
});

test('the derivation over 2 and 3 threads equals the single-thread one (stamps, labels, provenance, counts, meta)', async () => {
  const archive = slice();
  const one = deriveHits2015({ archive });
  let ticks = 0;
  for (const threads of [2, 3]) {
    const par = await deriveHits2015Parallel({ archive, onProgress: () => ticks++ }, threads);
    assert.equal(par.images.length, one.images.length);
    par.images.forEach((img, i) => assert.deepEqual(img, one.images[i], `stamp ${i}`));
    assert.deepEqual(par.labels, one.labels);
    assert.deepEqual(par.info, one.info);
    assert.deepEqual(par.byClass, one.byClass);
    assert.deepEqual(par.total, one.total);
    assert.deepEqual(par.derivation, one.derivation);
  }
  assert.ok(ticks > 0, 'progress reported');
  const a = buildHits2015({ archive, balance: 'undersample', seed: 2 });
  const b = await buildHits2015Parallel({ archive, balance: 'undersample', seed: 2 }, 2);
  assert.deepEqual(b.dataset.images, a.dataset.images);
  assert.deepEqual(b.dataset.ids, a.dataset.ids);
  assert.deepEqual(b.summary, a.summary);
});

test('an error in a derivation thread is reported, not swallowed', async () => {
  const archive = slice();
  await assert.rejects(deriveHits2015Parallel({ archive, templateEpochs: 1 }, 2), /templateEpochs/);
});
