import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseNpy, serializeNpy } from '../src/data/npy.js';
import { parseNpz, serializeNpz } from '../src/data/npz.js';
import { readDataset, writeDataset, subsetDataset, type Dataset } from '../src/data/dataset.js';

const hasNumpy = (() => {
  try {
    execFileSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test('npy round trip keeps dtype, shape and values', () => {
  const f = new Float32Array([1.5, -2, 3.25, 0, 1e-7, 7]);
  const a = parseNpy(serializeNpy(f, [2, 3]));
  assert.equal(a.dtype, '<f4');
  assert.deepEqual(a.shape, [2, 3]);
  assert.deepEqual(Array.from(a.data as Float32Array), Array.from(f));
  const s = parseNpy(serializeNpy(['SNHiTS15A', 'b', 'é'], [3]));
  assert.deepEqual(s.data, ['SNHiTS15A', 'b', 'é']);
  const i = parseNpy(serializeNpy(new Int32Array([0, 1, -5]), [3]));
  assert.deepEqual(Array.from(i.data as Int32Array), [0, 1, -5]);
});

test('npy header is 64-byte aligned', () => {
  const bytes = serializeNpy(new Float32Array(4), [4]);
  assert.equal((bytes.length - 16) % 64, 0);
});

test('npy reader rejects bad magic, truncation and object arrays', () => {
  assert.throws(() => parseNpy(new TextEncoder().encode('hello world, not npy')), /magic/);
  const b = serializeNpy(new Float32Array(100), [10, 10]);
  assert.throws(() => parseNpy(b.subarray(0, b.length - 8)), /truncated/);
  const hdr = "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }".padEnd(117) + '\n';
  const o = new Uint8Array(10 + hdr.length + 16);
  o.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(o.buffer).setUint16(8, hdr.length, true);
  o.set(new TextEncoder().encode(hdr), 10);
  assert.throws(() => parseNpy(o), /object arrays/);
});

test('npy reader converts big-endian and Fortran order', () => {
  // 2x3 float64, big-endian, Fortran order: columns first.
  const hdr = "{'descr': '>f8', 'fortran_order': True, 'shape': (2, 3), }".padEnd(117) + '\n';
  const vals = [1, 4, 2, 5, 3, 6]; // F-order of [[1,2,3],[4,5,6]]
  const o = new Uint8Array(10 + hdr.length + 48);
  o.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const dv = new DataView(o.buffer);
  dv.setUint16(8, hdr.length, true);
  o.set(new TextEncoder().encode(hdr), 10);
  vals.forEach((v, k) => dv.setFloat64(10 + hdr.length + 8 * k, v, false));
  const a = parseNpy(o);
  assert.deepEqual(Array.from(a.data as Float64Array), [1, 2, 3, 4, 5, 6]);
});

test('npz bytes are deterministic for the same contents, whatever the clock says', (t) => {
  const make = () => serializeNpz({ x: { data: new Float32Array([1, 2]), shape: [2] } }, { 'meta.json': '{}' });
  t.mock.timers.enable({ apis: ['Date'], now: Date.UTC(2026, 0, 1) });
  const first = make();
  // Zip entry times have 2-second resolution: a clock a day later would change unfixed bytes.
  t.mock.timers.tick(86_400_000);
  assert.deepEqual(make(), first);
});

test('npz round trip with raw members, stored and deflated', () => {
  for (const level of [0, 6] as const) {
    const z = parseNpz(
      serializeNpz({ x: { data: new Float32Array([1, 2]), shape: [2] } }, { 'meta.json': '{"a":1}' }, level),
    );
    assert.deepEqual(Array.from(z.arrays.get('x')!.data as Float32Array), [1, 2]);
    assert.equal(new TextDecoder().decode(z.files.get('meta.json')), '{"a":1}');
  }
});

function tinyDataset(): Dataset {
  const n = 3;
  const images = new Float32Array(n * 4 * 4 * 2).map((_, i) => i / 10);
  return {
    images,
    shape: [n, 4, 4, 2],
    labels: new Int32Array([0, 1, 1]),
    maps: new Float32Array(n * 16).map((_, i) => i),
    ids: ['a', 'b', 'b'],
    meta: { source: 'test', channels: ['x', 'y'] },
  };
}

test('dataset write/read round trip, atomic, and subset', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'occmap-'));
  const f = path.join(dir, 'd.npz');
  const d = tinyDataset();
  await writeDataset(f, d);
  assert.deepEqual(readdirSync(dir), ['d.npz']);
  const r = await readDataset(f);
  assert.deepEqual(r.shape, d.shape);
  assert.deepEqual(Array.from(r.images), Array.from(d.images));
  assert.deepEqual(Array.from(r.labels!), [0, 1, 1]);
  assert.deepEqual(Array.from(r.maps!), Array.from(d.maps!));
  assert.deepEqual(r.ids, ['a', 'b', 'b']);
  assert.equal(r.meta.source, 'test');
  const s = subsetDataset(r, [2, 0]);
  assert.deepEqual(Array.from(s.labels!), [1, 0]);
  assert.deepEqual(Array.from(s.maps!.subarray(0, 16)), Array.from(d.maps!.subarray(32, 48)));
});

test('dataset is readable by numpy.load', { skip: !hasNumpy && 'numpy not installed' }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'occmap-'));
  const f = path.join(dir, 'd.npz');
  await writeDataset(f, tinyDataset());
  const out = execFileSync('python3', [
    '-c',
    `import numpy as np, json; z = np.load(${JSON.stringify(f)}); print(z['images'].dtype, z['images'].shape, z['labels'].dtype, z['maps'].shape, [str(x) for x in z['ids']], json.loads(bytes(z['meta.json']))['source'])`,
  ]).toString().trim();
  assert.equal(out, "float32 (3, 4, 4, 2) int32 (3, 4, 4) ['a', 'b', 'b'] test");
});

test('bad dataset files give one-line errors naming the file', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'occmap-'));
  const junk = path.join(dir, 'junk.npz');
  writeFileSync(junk, 'this is not a zip');
  await assert.rejects(readDataset(junk), (e: Error) => e.message.startsWith(junk) && !e.message.includes('\n'));
  await assert.rejects(readDataset(path.join(dir, 'missing.npz')), /missing\.npz: cannot read \(ENOENT\)/);
  const nan = path.join(dir, 'nan.npz');
  const d = tinyDataset();
  d.images[5] = NaN;
  await writeDataset(nan, d);
  await assert.rejects(readDataset(nan), /nan\.npz: images contain 1 NaN\/Inf value\(s\), first in item 0/);
  const trunc = path.join(dir, 'trunc.npy');
  writeFileSync(trunc, serializeNpy(new Float32Array(64), [4, 4, 4]).subarray(0, 200));
  await assert.rejects(readDataset(trunc), /trunc\.npy: truncated data/);
  await assert.rejects(writeDataset(path.join(dir, 'nodir', 'x.npz'), d), /nodir\/x\.npz: cannot write/);
  assert.equal(existsSync(path.join(dir, 'nodir')), false);
});
