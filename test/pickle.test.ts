import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { readHits2013Pickle, unpickle } from '../src/data/hits2013-pickle.js';
import { parseNpz } from '../src/data/npz.js';
import { readDataset } from '../src/data/dataset.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIR = path.join(ROOT, 'test/fixtures/pickles');
const expected = parseNpz(readFileSync(path.join(DIR, 'expected.npz'))).arrays;
const fixtures = readdirSync(DIR).filter((f) => f.endsWith('.pkl'));

test('fixtures cover protocols 0, 2, 4, 5 and Python 2', () => {
  for (const f of ['p0-f32', 'p2-f32-int', 'p2-f64-float', 'p4-f32-21x21', 'p5-f32-inband', 'py2-p2-f32', 'p2-bigendian', 'p4-fortran']) {
    assert.ok(fixtures.includes(`${f}.pkl`), f);
  }
});

for (const f of fixtures) {
  const name = f.slice(0, -4);
  test(`pickle ${name}: exact arrays`, () => {
    const arrays = readHits2013Pickle(readFileSync(path.join(DIR, f)));
    for (const key of ['images', 'labels']) {
      const got = arrays.get(key)!;
      const want = expected.get(`${name}__${key}`)!;
      assert.ok(got, `${key} missing`);
      assert.deepEqual(got.shape, want.shape, key);
      const g = Array.from(got.data as ArrayLike<number | bigint>, Number);
      const w = Array.from(want.data as ArrayLike<number | bigint>, Number);
      assert.deepEqual(g, w, key);
      if (key === 'images') assert.equal(got.dtype.slice(1), want.dtype.slice(1), 'image dtype kept');
    }
  });
}

test('readDataset routes a pickle to the reader: float32 images, int32 labels', async () => {
  const d = await readDataset(path.join(DIR, 'p4-f32-21x21.pkl'));
  assert.deepEqual(d.shape, [2, 21, 21, 4]);
  assert.deepEqual(Array.from(d.labels!), [0, 1]);
  assert.equal(d.meta.source, 'hits2013-pickle');
  const want = expected.get('p4-f32-21x21__images')!.data as Float32Array;
  assert.deepEqual(d.images, want);
  const f64 = await readDataset(path.join(DIR, 'p2-f64-float.pkl'));
  assert.ok(f64.images instanceof Float32Array);
  assert.deepEqual(Array.from(f64.labels!), [0, 1, 1]);
});

test('garbage, truncated, empty and code-running pickles: one-line errors naming the file', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'occmap-pkl-'));
  const good = readFileSync(path.join(DIR, 'p4-f32-21x21.pkl'));
  const cases: [string, Uint8Array, RegExp][] = [
    ['garbage.pkl', new TextEncoder().encode('this is not a pickle at all\n'), /not a Python pickle/],
    ['truncated.pkl', good.subarray(0, Math.floor(good.length / 2)), /truncated pickle/],
    ['cut-before-stop.pkl', good.subarray(0, good.length - 1), /truncated pickle|no STOP/],
    ['empty.pkl', new Uint8Array(0), /empty file/],
    // os.system('ls'): a reader that called arbitrary globals would run it.
    ['evil.pkl', Buffer.from('\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.', 'latin1'), /refusing to call Python object os\.system/],
    ['notdict.pkl', Buffer.from('\x80\x02X\x02\x00\x00\x00hi.', 'latin1'), /expected a dict of arrays/],
  ];
  for (const [name, bytes, re] of cases) {
    const file = path.join(dir, name);
    writeFileSync(file, bytes);
    await assert.rejects(readDataset(file), (err: Error) => {
      assert.equal(err.name, 'UserError');
      assert.ok(err.message.startsWith(`${file}: `), err.message);
      assert.match(err.message, re);
      assert.ok(!err.message.includes('\n'), 'one line');
      return true;
    });
  }
});

test('small VM details: memo, marks, longs, nested lists, tuples', () => {
  // {'a': [1, 2**70, -3], 'b': (1.5, True, None)} via protocol 2 opcodes.
  const bytes = Buffer.from(
    '\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x40J\xfd\xff\xff\xffeX\x01\x00\x00\x00bG?\xf8\x00\x00\x00\x00\x00\x00\x88N\x87u.',
    'latin1',
  );
  const v = unpickle(bytes) as Map<string, unknown>;
  assert.deepEqual(v.get('a'), [1, 2n ** 70n, -3]);
  assert.deepEqual(v.get('b'), [1.5, true, null]);
  const arrays = readHits2013Pickle(Buffer.from('\x80\x02}(X\x06\x00\x00\x00images](](K\x01K\x02e](K\x03K\x04eeu.', 'latin1'));
  assert.deepEqual(arrays.get('images')!.shape, [2, 2]);
  assert.deepEqual(Array.from(arrays.get('images')!.data as Int32Array), [1, 2, 3, 4]);
});

test('CLI: dataset import of a pickle writes an occmap dataset with the HiTS channel names', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'occmap-pkl-'));
  const out = path.join(dir, 'h13.npz');
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin/occmap.js'), 'dataset', 'import', path.join(DIR, 'p2-f32-int.pkl'), '--out', out], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /3 images 6x6x4/);
  assert.match(r.stdout, /labels: 0: 1, 1: 2/);
  assert.match(r.stdout, /no ids/);
  const d = await readDataset(out);
  assert.deepEqual(d.meta.channels, ['template', 'science', 'difference', 'snr_difference']);
  assert.deepEqual(Array.from(d.labels!), [1, 0, 1]);
  assert.deepEqual(d.images, expected.get('p2-f32-int__images')!.data);
  const bad = spawnSync(process.execPath, [path.join(ROOT, 'bin/occmap.js'), 'dataset', 'import', path.join(dir, 'missing.pkl'), '--out', path.join(dir, 'x.npz')], {
    encoding: 'utf8',
  });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^occmap: .*missing\.pkl: cannot read/);
  assert.deepEqual(readdirSync(dir), ['h13.npz']);
});
