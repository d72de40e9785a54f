import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import { initTf } from '../src/runtime/tfjs.js';
import { parseNpz } from '../src/data/npz.js';
import { parseNpy, serializeNpy } from '../src/data/npy.js';
import { trainExplainer } from '../src/explainer/train.js';
import { loadExplainer } from '../src/explainer/estimate.js';
import { H, W, C, makeClassifier, makeMaps, writeMaps } from './explainer-fixtures.js';

const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'occmap-explain-'));
const N = 16;
const data = makeMaps(N, 9);
let clf = '';
let maps = '';
let plain = '';
let cond = '';

function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: tmp });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

/** stderr without tfjs' multi-line "install tfjs-node" banner. */
const errLines = (err: string) => err.split('\n').filter((l) => l.trim() && !/^=+$|Hi, looks like|tfjs-node/.test(l));

before(async () => {
  await initTf('wasm');
  clf = await makeClassifier(path.join(tmp, 'clf'));
  maps = await writeMaps(path.join(tmp, 'maps.npz'), data, 'label');
  const quiet = { quiet: true, log: () => undefined, epochs: 1, seed: 1 };
  plain = path.join(tmp, 'plain');
  await trainExplainer({ data: maps, out: plain, classifier: clf, variant: 'frozen', ...quiet });
  cond = path.join(tmp, 'cond');
  await trainExplainer({ data: maps, out: cond, classifier: clf, variant: 'unet', condition: 'onehot', ...quiet });
});

test('one stamp of a dataset: maps .npz and a heatmap PNG; equal to the library estimate', async () => {
  const out = path.join(tmp, 'one.npz');
  const r = await run(['explain', '--explainer', plain, '--input', maps, '--index', '3', '--out', out]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /explained 1 stamp\(s\) .* ms\/map/);
  const { arrays, files } = parseNpz(readFileSync(out));
  assert.deepEqual(arrays.get('maps')!.shape, [1, H, W]);
  const meta = JSON.parse(new TextDecoder().decode(files.get('meta.json')!));
  assert.equal(meta.index, 3);
  const e = await loadExplainer(plain);
  const item = H * W * C;
  const ref = await e.estimate(data.images.slice(3 * item, 4 * item), [1, H, W, C]);
  e.dispose();
  const got = arrays.get('maps')!.data as Float32Array;
  for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - ref.maps[i]) < 1e-5);
  const png = PNG.sync.read(readFileSync(path.join(tmp, 'one.png')));
  assert.ok(png.width > 2 * W * 12 && png.height > H * 12, `${png.width}x${png.height}`);
});

test('whole dataset to .npy; --exact prints timings and metrics and stores the exact maps', async () => {
  const all = path.join(tmp, 'all.npy');
  let r = await run(['explain', '--explainer', plain, '--input', maps, '--out', all]);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(parseNpy(readFileSync(all)).shape, [N, H, W]);
  assert.equal(existsSync(path.join(tmp, 'all.png')), false, 'no PNG for many stamps');

  const ex = path.join(tmp, 'ex.npz');
  r = await run(['explain', '--explainer', plain, '--input', maps, '--index', '2', '--exact', '--model', clf, '--out', ex]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /exact maps on .*: [\d.]+ ms\/map/);
  assert.match(r.out, /MSE [\d.]+ {2}SSIM -?[\d.]+ {2}Spearman -?[\d.]+/);
  const { arrays } = parseNpz(readFileSync(ex));
  assert.deepEqual(arrays.get('exact')!.shape, [1, H, W]);
  const v = arrays.get('exact')!.data as Float32Array;
  assert.ok(v.every((x) => x >= 0 && x <= 1), 'exact map seed-normalised like the training maps');
});

test('conditioned explainer: labels from the data, from --label, or from the classifier', async () => {
  const o1 = path.join(tmp, 'c1.npz');
  let r = await run(['explain', '--explainer', cond, '--input', maps, '--out', o1]);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(Array.from(parseNpz(readFileSync(o1)).arrays.get('labels')!.data as Int32Array), Array.from(data.labels));

  // A .npy stamp (H,W,C) has no labels: --label, or the classifier's prediction.
  const stamp = path.join(tmp, 'stamp.npy');
  writeFileSync(stamp, serializeNpy(data.images.slice(0, H * W * C), [H, W, C]));
  const o2 = path.join(tmp, 'c2.npz');
  r = await run(['explain', '--explainer', cond, '--input', stamp, '--label', '1', '--out', o2]);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(Array.from(parseNpz(readFileSync(o2)).arrays.get('labels')!.data as Int32Array), [1]);
  assert.ok(existsSync(path.join(tmp, 'c2.png')));
  const o3 = path.join(tmp, 'c3.npz');
  r = await run(['explain', '--explainer', cond, '--input', stamp, '--model', clf, '--out', o3]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /conditioned on classifier prediction: class [01]/);
});

test('a greyscale PNG stamp is the channel the explainer reads', async () => {
  const png = new PNG({ width: W, height: H });
  for (let p = 0; p < H * W; p++) {
    const g = Math.round(255 * Math.min(1, data.images[p * C + 1]));
    png.data.set([g, g, g, 255], p * 4);
  }
  const f = path.join(tmp, 'stamp.png');
  writeFileSync(f, PNG.sync.write(png));
  const out = path.join(tmp, 'p.npz');
  const r = await run(['explain', '--explainer', plain, '--input', f, '--out', out]);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(parseNpz(readFileSync(out)).arrays.get('maps')!.shape, [1, H, W]);
});

test('bad input: one-line error, exit 2, no output', async () => {
  const colour = new PNG({ width: W, height: H });
  colour.data.fill(255);
  colour.data[0] = 0; // one red-free pixel: not grey
  const colourFile = path.join(tmp, 'colour.png');
  writeFileSync(colourFile, PNG.sync.write(colour));
  const stamp = path.join(tmp, 'stamp2.npy');
  writeFileSync(stamp, serializeNpy(data.images.slice(0, H * W * C), [H, W, C]));
  const cases: [string[], RegExp][] = [
    [['--explainer', plain, '--input', path.join(tmp, 'missing.npz')], /missing\.npz: cannot read/],
    [['--explainer', plain, '--input', maps, '--index', '99'], /maps\.npz: has 16 stamp\(s\): --index 99 is out of range/],
    [['--explainer', cond, '--input', stamp], /stamp2\.npy: has no labels.*--label K, or --model CLF/],
    [['--explainer', plain, '--input', colourFile], /colour\.png: is a colour PNG/],
    [['--explainer', maps, '--input', stamp], /maps\.npz: is not a directory/],
    [['--explainer', plain, '--input', maps, '--exact'], /--exact needs the classifier/],
    [['--explainer', plain, '--input', maps, '--out', path.join(tmp, 'x.txt')], /x\.txt: output must end in \.npz/],
  ];
  for (const [args, re] of cases) {
    const out = path.join(tmp, 'bad.npz');
    const r = await run(['explain', ...args, ...(args.includes('--out') ? [] : ['--out', out])]);
    const lines = errLines(r.err);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.equal(lines.length, 1, r.err);
    assert.match(lines[0], /^occmap: /);
    assert.match(lines[0], re);
    assert.equal(existsSync(out), false);
    assert.equal(existsSync(path.join(tmp, 'bad.png')), false);
  }
});
