/**
 * The viewer's pure parts, in Node: the important-region outline against a brute-force edge
 * count, the training-range warning, the list's sorting and filters, the held-out split from an
 * explainer card, the channel ranges, and the diverging colour table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Dataset } from '../src/data/dataset.js';
import type { ExplainerCard } from '../src/explainer/estimate.js';
import { channelRanges, splitOf } from '../src/serve/site.js';
import { colorOf, diverging } from '../src/viz/colormap.js';
import { importantMask, outlinePath } from '../src/web/contour.js';
import { computeView, newListState, type Row } from '../src/web/list.js';
import { checkRange } from '../src/web/range.js';
import { Rng } from '../src/util/rng.js';
import { encode as encodePng } from 'fast-png';
import { gzipSync } from 'fflate';
import { readUpload } from '../src/web/upload.js';
import { fits } from './stamp-fixtures.js';

/** Total edge length of an outline path (its H/V runs). */
function pathLength(d: string): number {
  let len = 0;
  for (const m of d.matchAll(/M(\d+) (\d+)([HV])(\d+)/g)) len += Math.abs(Number(m[4]) - Number(m[m[3] === 'H' ? 1 : 2]));
  return len;
}

test('outlinePath: the boundary length equals the brute-force count of in/out pixel sides', () => {
  const rng = new Rng(3);
  for (let trial = 0; trial < 30; trial++) {
    const h = 1 + rng.int(8);
    const w = 1 + rng.int(8);
    const mask = Uint8Array.from({ length: h * w }, () => (rng.next() < 0.4 ? 1 : 0));
    const at = (y: number, x: number): number => (y >= 0 && y < h && x >= 0 && x < w ? mask[y * w + x] : 0);
    let edges = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (!at(y, x)) continue;
        for (const [dy, dx] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) if (!at(y + dy, x + dx)) edges++;
      }
    }
    assert.equal(pathLength(outlinePath(mask, h, w)), edges, `trial ${trial} (${h}x${w})`);
  }
  // One pixel: a unit square; the whole image: its border.
  assert.equal(outlinePath(Uint8Array.of(0, 0, 0, 0, 1, 0, 0, 0, 0), 3, 3), 'M1 1H2M1 2H2M1 1V2M2 1V2');
  assert.equal(pathLength(outlinePath(new Uint8Array(12).fill(1), 3, 4)), 14);
});

test('importantMask: the lowest 10% of a prob map, the highest of a drop map', () => {
  const map = Float32Array.from({ length: 20 }, (_, i) => i / 19);
  assert.deepEqual([...importantMask(map, 'prob', 0.1)].flatMap((v, i) => (v ? [i] : [])), [0, 1]);
  assert.deepEqual([...importantMask(map, 'drop', 0.1)].flatMap((v, i) => (v ? [i] : [])), [18, 19]);
});

test('checkRange: raw counts are out of a [0,1] training range; a stamp like the training data is not', () => {
  const ranges = [
    { name: 'science', min: 0, max: 1, p001: 0.001, p999: 0.999 },
    { name: 'difference', min: 0, max: 1, p001: 0.01, p999: 0.99 },
  ];
  const inside = Float32Array.from({ length: 2 * 25 }, (_, i) => 0.2 + 0.5 * ((i * 7) % 10) / 10);
  assert.deepEqual(checkRange(inside, 2, [0, 1], ranges).warnings, []);
  const raw = inside.map((v) => v * 3000);
  const w = checkRange(raw, 2, [0, 1], ranges).warnings;
  assert.equal(w.length, 2);
  assert.match(w[0], /^science: values .* training data 0\.000 … 1\.000/);
  // A model-channel stamp: its one channel is data channel 1.
  assert.match(checkRange(raw.filter((_, i) => i % 2 === 1), 1, [1], ranges).warnings[0], /^difference/);
});

test('list: sort by P and by disagreement (unscored rows last), filter by label, split and text', () => {
  const rows: Row[] = [
    { index: 0, id: 'HiTS01-a', label: 0, heldOut: true, p: 0.2, predicted: 0, disagreement: 0.01 },
    { index: 1, id: 'HiTS02-b', label: 1, heldOut: false, p: 0.9, predicted: 1, disagreement: null },
    { index: 2, id: 'HiTS03-c', label: 1, heldOut: true, p: null, predicted: null, disagreement: 0.05 },
    { index: 3, id: 'other-d', label: 0, heldOut: false, p: 0.5, predicted: 1, disagreement: 0.03 },
  ];
  const s = newListState(rows);
  assert.deepEqual(computeView(s), [0, 1, 2, 3]);
  s.sort = { key: 'p', dir: -1 };
  assert.deepEqual(computeView(s), [1, 3, 0, 2]);
  s.sort = { key: 'p', dir: 1 };
  assert.deepEqual(computeView(s), [0, 3, 1, 2]);
  s.sort = { key: 'disagreement', dir: -1 };
  assert.deepEqual(computeView(s), [2, 3, 0, 1]);
  s.label = 1;
  assert.deepEqual(computeView(s), [2, 1]);
  s.label = null;
  s.split = 'held';
  assert.deepEqual(computeView(s), [2, 0]);
  s.split = 'all';
  s.text = 'hits0';
  s.sort = { key: 'id', dir: -1 };
  assert.deepEqual(computeView(s), [2, 1, 0]);
});

test('splitOf: held-out objects by id (data/holdout.ts), rows of the training file, else unknown', () => {
  const ds = { shape: [4, 2, 2, 1], ids: ['A', 'A', 'B', 'C'] } as unknown as Dataset;
  const byGroup = { split: { by: 'group', valIndices: [2], valIds: ['B'] }, dataInfo: { sha256: 'abc' } } as unknown as ExplainerCard;
  const own = splitOf(byGroup, ds, 'abc');
  assert.deepEqual([own.basis, own.heldOut, own.trainedOnAll], ['file', [2], true]);
  const other = splitOf(byGroup, ds, 'zzz');
  assert.deepEqual([other.basis, other.heldOut, other.trainedOnAll], ['ids', [2], false]);
  const noIds = { shape: [4, 2, 2, 1] } as unknown as Dataset;
  const byItem = { split: { by: 'item', valIndices: [2, 3, 9] }, dataInfo: { sha256: 'abc' } } as unknown as ExplainerCard;
  const rows = splitOf(byItem, noIds, 'abc');
  assert.deepEqual([rows.basis, rows.heldOut], ['file', [2, 3]]);
  const none = splitOf(byItem, noIds, 'zzz');
  assert.deepEqual([none.basis, none.heldOut], ['unknown', []]);
});

test('channelRanges: min, max and percentiles over the given rows only', () => {
  // 3 images of 2x2x2: channel 0 = image index, channel 1 = -pixel.
  const images = new Float32Array(3 * 4 * 2);
  for (let i = 0; i < 3; i++) for (let p = 0; p < 4; p++) [images[(i * 4 + p) * 2], images[(i * 4 + p) * 2 + 1]] = [i, p === 0 ? 0 : -p];
  const ds = { images, shape: [3, 2, 2, 2], meta: {} } as unknown as Dataset;
  const r = channelRanges(ds, [0, 2], ['a', 'b']);
  assert.deepEqual(r.map((c) => [c.name, c.min, c.max]), [['a', 0, 2], ['b', -3, 0]]);
});

test('diverging: dark at the middle, blue below, orange above; colorOf reads the same table', () => {
  assert.deepEqual(diverging(0.5), [18, 20, 26]);
  const [r0, , b0] = diverging(0.1);
  const [r1, , b1] = diverging(0.9);
  assert.ok(b0 > r0 && r1 > b1);
  // The 256-entry table: the middle value lands on entry 128.
  assert.deepEqual(colorOf(0, -1, 1, 'diverging'), diverging(128 / 255));
  assert.deepEqual(diverging(Number.NaN), diverging(0.5));
});

test('page uploads go through the one stamp reader: 16-bit PNG exactly, FITS, .fits.gz, JSON; errors name the file', async () => {
  const spec = { h: 4, w: 3, modelChannels: 1, datasetChannels: 4 };
  const v16 = Uint16Array.from({ length: 12 }, (_, i) => i * 5000 + 1);
  const png = encodePng({ width: 3, height: 4, data: v16, depth: 16, channels: 1 });
  const up = await readUpload('s16.png', png, spec);
  assert.deepEqual([up.h, up.w, up.c, up.kind], [4, 3, 1, 'model']);
  for (let i = 0; i < 12; i++) assert.ok(Math.abs(up.image[i] - v16[i] / 65535) < 1e-7, `pixel ${i}: ${up.image[i]} vs ${v16[i] / 65535}`);
  const vals = Array.from({ length: 12 }, (_, i) => i / 12);
  const f = fits(-32, [3, 4], vals);
  for (const [name, bytes] of [['s.fits', f], ['s.fits.gz', gzipSync(f)]] as const) {
    const u = await readUpload(name, bytes, spec);
    assert.deepEqual([u.h, u.w, u.c], [4, 3, 1], name);
    for (let i = 0; i < 12; i++) assert.ok(Math.abs(u.image[i] - vals[i]) < 1e-7, `${name} pixel ${i}`);
  }
  const rows = [[0, 0.1, 0.2], [0.3, 0.4, 0.5], [0.6, 0.7, 0.8], [0.9, 1, 0.5]];
  const j = await readUpload('s.json', new TextEncoder().encode(JSON.stringify(rows)), spec);
  assert.deepEqual(Array.from(j.image, (x) => Math.round(x * 10) / 10), rows.flat());
  await assert.rejects(readUpload('junk.npy', new TextEncoder().encode('not an array'), spec), /^Error: junk\.npy: /);
  await assert.rejects(readUpload('big.png', encodePng({ width: 30, height: 30, data: new Uint8Array(900), depth: 8, channels: 1 }), spec), /^Error: big\.png: .*30x30/);
});
