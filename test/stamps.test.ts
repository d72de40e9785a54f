/**
 * Issue 11 items 4 and 5: one stamp reader (data/stamps.ts) for the CLI, the server and the
 * library; what cannot be right is refused, what may be right is warned about, FITS is read.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'fflate';
import { PNG } from 'pngjs';
import { fits } from './stamp-fixtures.js';
import { serializeNpy } from '../src/data/npy.js';
import { readDataset, writeDataset } from '../src/data/dataset.js';
import { checkLabels, expectFromCard, interpretShape, minMaxPerStamp, parseFits, readStampBytes, StampError, valueWarnings, type StampExpect } from '../src/data/stamps.js';
import { readStampFile } from '../src/data/stamp-file.js';
import { minMaxNormalise } from '../src/data/hits2015.js';
import { stampFromNpy, stampFromPng } from '../src/serve/stamp.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'occ-stamps-'));
const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));
const hits: StampExpect = { h: 21, w: 21, channels: [1, 4], numClasses: 2, classes: ['bogus', 'real'], range: [0, 1], who: 'the classifier clf' };

test('FITS: primary HDU image, BITPIX 8/16/32/-32/-64, BSCALE/BZERO, gzip; (NAXIS2,NAXIS1) = (H,W)', () => {
  const vals = [0, 1, 2, 3, 4, 5]; // 3 wide, 2 high
  for (const bp of [8, 16, 32, -32, -64]) {
    const f = parseFits(fits(bp, [3, 2], vals));
    assert.deepEqual(f.dims, [2, 3], `BITPIX ${bp}`);
    assert.deepEqual(Array.from(f.array), vals, `BITPIX ${bp}`);
  }
  // Unsigned 16-bit as FITS stores it: BZERO 32768.
  const u16 = parseFits(fits(16, [2, 1], [-32768, 32767], { BZERO: 32768, BSCALE: 1 }));
  assert.deepEqual(Array.from(u16.array), [0, 65535]);
  const scaled = parseFits(fits(16, [2, 1], [10, 20], { BSCALE: 0.5, BZERO: -1 }));
  assert.deepEqual(Array.from(scaled.array), [4, 9]);
  const gz = parseFits(gzipSync(fits(-32, [3, 2], vals)));
  assert.deepEqual(Array.from(gz.array), vals);
  // A 21x21 stamp through the reader: one stamp (1,21,21,1); a 4-plane cube is channel-first.
  const one = readStampBytes(fits(-32, [21, 21], Array.from({ length: 441 }, (_, i) => i / 441)), 's.fits', { expect: hits });
  assert.deepEqual(one.shape, [1, 21, 21, 1]);
  assert.equal(one.format, 'fits');
  const cube = readStampBytes(fits(-32, [21, 21, 4], Array.from({ length: 441 * 4 }, (_, i) => (i % 441) / 441)), 'c.fits', { expect: { ...hits, channels: [4] } });
  assert.deepEqual(cube.shape, [1, 21, 21, 4]);
  assert.match(cube.warnings[0], /channel-first .* transposed/);
  assert.throws(() => parseFits(fits(16, [2, 1], [5, -1], { BLANK: -1 })), /BLANK/);
  assert.throws(() => parseFits(fits(-32, [0, 21], [])), /empty dimension/);
  assert.throws(() => parseFits(new TextEncoder().encode('SIMPLE  = T')), /no END card/);
});

test('one shape rule: (21,21,4) is one stamp everywhere; (4,21,21) is transposed or refused as ambiguous; zero-size refused', () => {
  assert.deepEqual(interpretShape([21, 21, 4]).shape, [1, 21, 21, 4]);
  assert.deepEqual(interpretShape([21, 21, 4], hits).shape, [1, 21, 21, 4]);
  assert.deepEqual(interpretShape([12, 21, 21]).shape, [12, 21, 21, 1]);
  assert.deepEqual(interpretShape([21, 21]).shape, [1, 21, 21, 1]);
  // Channel-first with a model that takes only 4-channel stamps: transposed, with a warning.
  const r = interpretShape([4, 21, 21], { h: 21, w: 21, channels: [4] });
  assert.deepEqual([r.shape, r.transpose], [[1, 21, 21, 4], 'chw']);
  assert.match(r.warning!, /channel-first/);
  // ... and refused when it could as well be 4 single-channel stamps.
  assert.throws(() => interpretShape([4, 21, 21], hits), /could be 4 single-channel stamps or one channel-first/);
  assert.match(interpretShape([4, 21, 21]).warning!, /if it is one channel-first stamp/);
  assert.deepEqual(interpretShape([3, 4, 21, 21], { h: 21, w: 21, channels: [4] }).transpose, 'nchw');
  assert.throws(() => interpretShape([0, 21, 1]), /empty dimension/);
  assert.throws(() => interpretShape([24, 24, 1], hits), /takes 21x21 stamps/);
  // The dataset reader (dataset import, train-classifier) reads a (21,21,4) .npy as one stamp too.
  const img = Float32Array.from({ length: 21 * 21 * 4 }, (_, i) => (i % 97) / 97);
  const f = path.join(tmp, 'one.npy');
  writeFileSync(f, serializeNpy(img, [21, 21, 4]));
  return Promise.all([readDataset(f), readStampFile(f, { expect: hits })]).then(([ds, st]) => {
    assert.deepEqual(ds.shape, [1, 21, 21, 4]);
    assert.deepEqual(st.shape, [1, 21, 21, 4]);
    // ...and so does the server.
    assert.deepEqual([stampFromNpy(serializeNpy(img, [21, 21, 4]), { h: 21, w: 21 }).c], [4]);
  });
});

test('values outside the training range are read with a warning saying what was assumed; --scale minmax applies the datasets\' scaling', () => {
  const sentinel = Float32Array.from({ length: 441 }, (_, i) => (i === 5 ? -9999 : 0.5));
  const w1 = valueWarnings(sentinel, hits);
  assert.ok(w1.some((w) => /equal -9999, which looks like a missing-data sentinel/.test(w)), w1.join('|'));
  const counts = Float32Array.from({ length: 441 }, (_, i) => -300 + ((i * 37) % 5000));
  assert.match(valueWarnings(counts, hits)[0], /values run from -300 to \d+, outside the training data's 0\.\.1: read as given/);
  const u8 = readStampBytes(serializeNpy(Uint8Array.from({ length: 441 }, (_, i) => i % 256), [21, 21]), 'u.npy', { expect: hits });
  assert.match(u8.warnings.join(' '), /8-bit values 0-255: divide by 255, or --scale minmax/);
  assert.deepEqual(valueWarnings(Float32Array.from({ length: 441 }, (_, i) => i / 440), hits), []);
  const scaled = readStampBytes(serializeNpy(counts, [21, 21]), 'c.npy', { expect: hits, scale: 'minmax' });
  assert.deepEqual(scaled.warnings, []);
  // The same per-stamp scaling as the HiTS 2015 / simulated datasets (one channel each).
  assert.deepEqual(Array.from(scaled.images), Array.from(minMaxNormalise(counts)));
  const two = Float32Array.from({ length: 2 * 441 * 2 }, (_, i) => (i % 2 ? 100 : 1) * ((i * 13) % 17));
  const mm = minMaxPerStamp(two, [2, 21, 21, 2]);
  const ch = (a: Float32Array, s: number, k: number) => Float32Array.from({ length: 441 }, (_, p) => a[s * 882 + p * 2 + k]);
  for (const s of [0, 1]) for (const k of [0, 1]) assert.deepEqual(Array.from(ch(mm, s, k)), Array.from(minMaxNormalise(ch(two, s, k))));
});

test('labels outside the model\'s classes and wrong sizes are refused, naming the fix', async () => {
  assert.throws(() => checkLabels([0, 1, 7], hits), /label 7 of stamp 2 is not a class of the classifier clf: it has 2 classes, 0\.\.1 \(0 bogus, 1 real\)/);
  const f = path.join(tmp, 'labels.npz');
  await writeDataset(f, { images: new Float32Array(3 * 441), shape: [3, 21, 21, 1], labels: Int32Array.of(0, 1, 7), meta: {} });
  await assert.rejects(readStampFile(f, { expect: hits }), (e: Error) => e.message.startsWith(`${f}: label 7 of stamp 2`));
  const big = path.join(tmp, 'big.npy');
  writeFileSync(big, serializeNpy(new Float32Array(12 * 24 * 24), [12, 24, 24]));
  await assert.rejects(readStampFile(big, { expect: hits }), (e: Error) => e.message.startsWith(`${big}: has shape (12,24,24): the classifier clf takes 21x21 stamps`));
  const rgb = path.join(tmp, 'rgb.npy');
  writeFileSync(rgb, serializeNpy(new Float32Array(12 * 21 * 21 * 3), [12, 21, 21, 3]));
  await assert.rejects(readStampFile(rgb, { expect: hits }), (e: Error) => e.message.startsWith(`${rgb}: has shape (12,21,21,3): the classifier clf takes 21x21 stamps with 1 or 4 channel(s)`));
  // A rank-2 image array with labels for 12 stamps: says how it was read.
  const r2 = path.join(tmp, 'rank2.npz');
  const { serializeNpz } = await import('../src/data/npz.js');
  writeFileSync(r2, serializeNpz({ images: { data: new Float32Array(12 * 441), shape: [12, 441] }, labels: { data: new Int32Array(12), shape: [12] } }));
  await assert.rejects(readDataset(r2), /labels have 12 values for 1 image\(s\): the images \(12,441\) read as one 12x441 stamp; store several stamps as \(N,H,W\)/);
});

test('expectFromCard reads size, channels, classes and range from classifier and explainer cards', () => {
  const clf = expectFromCard({ inputShape: [21, 21, 1], channels: [3], numClasses: 2, classes: ['a', 'b'], data: { shape: [10, 21, 21, 4], range: [0, 1] } }, 'c');
  assert.deepEqual([clf.h, clf.w, clf.channels, clf.range, clf.numClasses], [21, 21, [1, 4], [0, 1], 2]);
  const expl = expectFromCard({ inputShape: [24, 24, 1], imageSize: [21, 21], channels: [3], numClasses: 2, dataInfo: { shape: [5, 21, 21, 4], source: 'hits2015' } }, 'e');
  assert.deepEqual([expl.h, expl.w, expl.channels, expl.range], [21, 21, [1, 4], [0, 1]]);
  assert.equal(expectFromCard({ inputShape: [21, 21, 1] }, 'x').range, undefined);
});

test('PNG: greyscale read the same by the server and the CLI; a PNG of the wrong size is refused before decoding', async () => {
  const png = new PNG({ width: 21, height: 21, colorType: 0, inputColorType: 0, bitDepth: 8, inputHasAlpha: false });
  for (let p = 0; p < 441; p++) png.data[p] = p % 256;
  const bytes = PNG.sync.write(png, { colorType: 0, inputColorType: 0, bitDepth: 8, inputHasAlpha: false });
  const f = path.join(tmp, 's.png');
  writeFileSync(f, bytes);
  const cli = await readStampFile(f, { expect: hits });
  const srv = stampFromPng(bytes, { h: 21, w: 21 });
  assert.deepEqual(cli.shape, [1, 21, 21, 1]);
  assert.deepEqual(Array.from(cli.images), Array.from(srv.image));
  assert.equal(cli.images[300], Math.fround(44 / 255));
  assert.throws(() => stampFromPng(bytes, { h: 24, w: 24 }), (e: Error & { statusCode?: number }) => e.statusCode === 422 && /21x21 PNG .*takes 24x24/.test(e.message));
  assert.ok(StampError);
});

test('FITS input through the CLI: dataset import reads it (not "not a zip archive")', () => {
  const f = path.join(tmp, 'stamp.fits.gz');
  writeFileSync(f, gzipSync(fits(-32, [21, 21], Array.from({ length: 441 }, (_, i) => i / 441))));
  const out = path.join(tmp, 'from-fits.npz');
  const r = spawnSync(process.execPath, [bin, 'dataset', 'import', f, '--out', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /1 images 21x21x1/);
  assert.ok(readFileSync(out).length > 441 * 4);
});

test('train-classifier refuses labels its classes cannot hold and zero-size images, before any training', async () => {
  const bad = path.join(tmp, 'seven.npz');
  await writeDataset(bad, { images: new Float32Array(4 * 81), shape: [4, 9, 9, 1], labels: Int32Array.of(0, 1, 7, 1), meta: { classes: ['bogus', 'real'] } });
  const r = spawnSync(process.execPath, [bin, 'train-classifier', '--data', bad, '--out', path.join(tmp, 'clf7')], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /seven\.npz: label 7 of stamp 2 is not one of its 2 classes \(0 bogus, 1 real\)/);
  const gap = path.join(tmp, 'gap.npz');
  await writeDataset(gap, { images: new Float32Array(4 * 81), shape: [4, 9, 9, 1], labels: Int32Array.of(0, 7, 0, 7), meta: {} });
  const g = spawnSync(process.execPath, [bin, 'train-classifier', '--data', gap, '--out', path.join(tmp, 'clfg')], { encoding: 'utf8' });
  assert.equal(g.status, 2, g.stderr);
  assert.match(g.stderr, /labels take the values 0, 7: class\(es\) 1, 2, 3, 4, 5, 6 have no stamps, so a 8-class model would be trained; relabel to 0\.\.1/);
  const { serializeNpz } = await import('../src/data/npz.js');
  const zero = path.join(tmp, 'zero.npz');
  writeFileSync(zero, serializeNpz({ images: { data: new Float32Array(0), shape: [3, 0, 21, 1] }, labels: { data: Int32Array.of(0, 1, 0), shape: [3] } }));
  await assert.rejects(readDataset(zero), /zero\.npz: images has an empty dimension: shape \(3,0,21,1\)/);
});
