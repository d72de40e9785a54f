import { test } from 'node:test';
import assert from 'node:assert/strict';
import { simulateDataset, addMoffat, BOGUS_KINDS } from '../src/data/simulate.js';
import { splitIndices, leakedGroups } from '../src/data/split.js';

test('deterministic for a seed; another seed differs; a smaller N is a prefix', () => {
  const a = simulateDataset({ n: 40, seed: 7, quiet: true });
  const b = simulateDataset({ n: 40, seed: 7, quiet: true });
  assert.deepEqual(a.dataset.images, b.dataset.images);
  assert.deepEqual(a.dataset.labels, b.dataset.labels);
  assert.deepEqual(a.kinds, b.kinds);
  const c = simulateDataset({ n: 40, seed: 8, quiet: true });
  assert.notDeepEqual(c.dataset.images, a.dataset.images);
  const p = simulateDataset({ n: 15, seed: 7, quiet: true });
  assert.deepEqual(p.dataset.images, a.dataset.images.subarray(0, p.dataset.images.length));
  assert.deepEqual(p.kinds, a.kinds.slice(0, 15));
});

test('label balance follows --real-fraction exactly, labels match the kinds', () => {
  const half = simulateDataset({ n: 101, seed: 1, quiet: true });
  assert.equal(half.dataset.labels!.reduce((s, v) => s + v, 0), 50);
  const third = simulateDataset({ n: 100, seed: 1, realFraction: 0.3, quiet: true });
  assert.equal(third.dataset.labels!.reduce((s, v) => s + v, 0), 30);
  const none = simulateDataset({ n: 10, seed: 1, realFraction: 0, quiet: true });
  assert.equal(none.dataset.labels!.reduce((s, v) => s + v, 0), 0);
  half.kinds.forEach((k, i) => assert.equal(half.dataset.labels![i], k === 'real' || k === 'real_host' ? 1 : 0));
});

test('shape, [0,1] channels, no NaN, unique ids, every bogus kind appears', () => {
  const r = simulateDataset({ n: 300, seed: 2, quiet: true });
  const d = r.dataset;
  assert.deepEqual(d.shape, [300, 21, 21, 4]);
  assert.deepEqual(d.meta.channels, ['template', 'science', 'difference', 'snr_difference']);
  for (const v of d.images) assert.ok(v >= 0 && v <= 1);
  assert.equal(new Set(d.ids).size, 300);
  for (const k of BOGUS_KINDS) assert.ok(r.counts[k] > 0, `kind ${k}`);
  assert.ok(r.counts.real > 0 && r.counts.real_host > 0);
  const split = splitIndices(300, 0.25, 1, d.ids);
  assert.deepEqual(leakedGroups(split, d.ids!), []);
  assert.throws(() => simulateDataset({ n: 0 }), /OptionError: n must be a positive integer/);
  assert.throws(() => simulateDataset({ n: 5, realFraction: 2 }), /OptionError: realFraction must be in \[0,1\]/);
});

test('real stamps carry a central source in the SNR difference; noise-only ones do not', () => {
  const r = simulateDataset({ n: 400, seed: 3, quiet: true });
  const s = 21 * 21 * 4;
  // Central 3x3 of the normalised SNR difference minus its frame median: a point source
  // makes the centre the brightest part of the stamp.
  const contrast = (i: number) => {
    const ch = (y: number, x: number) => r.dataset.images[i * s + (y * 21 + x) * 4 + 3];
    let c = 0;
    for (let y = 9; y <= 11; y++) for (let x = 9; x <= 11; x++) c += ch(y, x) / 9;
    const frame: number[] = [];
    for (let y = 0; y < 21; y++) for (let x = 0; x < 21; x++) if (y < 2 || y > 18 || x < 2 || x > 18) frame.push(ch(y, x));
    frame.sort((a, b) => a - b);
    return c - frame[frame.length >> 1];
  };
  const mean = (kind: string) => {
    const v = r.kinds.map((k, i) => (k === kind ? contrast(i) : NaN)).filter((x) => !Number.isNaN(x));
    return v.reduce((a, b) => a + b, 0) / v.length;
  };
  assert.ok(mean('real') > 0.3, `real ${mean('real')}`);
  assert.ok(Math.abs(mean('noise_only')) < 0.1, `noise ${mean('noise_only')}`);
});

test('Moffat profile has the requested FWHM and unit flux', () => {
  const size = 61;
  const img = new Float64Array(size * size);
  addMoffat(img, size, 30, 30, 4, 1);
  const total = img.reduce((a, b) => a + b, 0);
  // beta = 3 wings beyond 30 px hold ~1e-3 of the flux.
  assert.ok(Math.abs(total - 1) < 0.01, `flux ${total}`);
  const peak = img[30 * size + 30];
  assert.ok(Math.abs(img[30 * size + 32] / peak - 0.5) < 1e-9, 'half maximum at FWHM/2');
});
