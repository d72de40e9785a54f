import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readDataset, writeDataset } from '../src/data/dataset.js';
import { saveModelDir } from '../src/models/model-dir.js';
import { loadPredictor } from '../src/models/load.js';
import { tf, tfl, initTf } from '../src/runtime/tfjs.js';
import { exactMaps, SEED_PARAMS } from '../src/occlusion/exact.js';
import { normalizeSeed } from '../src/occlusion/geometry.js';
import { randomImages } from './occlusion-fixtures.js';
import { Rng } from '../src/util/rng.js';
import { runOccmap } from './cli-run.js';

const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'occ-cli-'));
const model = path.join(tmp, 'clf');
const modelRange = path.join(tmp, 'clf-range');
const data = path.join(tmp, 'data.npz');
const N = 6;

const run = (args: string[], killWhen?: () => boolean) => runOccmap(args, killWhen);

before(async () => {
  await initTf('cpu');
  // 9x9 stamps with 2 channels; the model reads channel 1 and pads internally like the seed's.
  const m = tfl.sequential({
    layers: [
      tfl.layers.zeroPadding2d({ inputShape: [9, 9, 1], padding: 1 }),
      tfl.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu' }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 2, activation: 'softmax' }),
    ],
  });
  const rng = new Rng(4);
  m.setWeights(m.getWeights().map((w) => tf.tensor(Float32Array.from({ length: w.size }, () => rng.normal() * 0.4), w.shape)));
  await saveModelDir(m, model, { kind: 'classifier', occmapVersion: 'test', createdAt: 'test', channels: [1] });
  // The same model with the value range of its training data on its card (as train-classifier writes it).
  await saveModelDir(m, modelRange, { kind: 'classifier', occmapVersion: 'test', createdAt: 'test', channels: [1], data: { range: [0, 1] } });
  m.dispose();
  const labels = Int32Array.from({ length: N }, (_, i) => i % 2);
  await writeDataset(data, { images: randomImages(1, N, 9, 9, 2), shape: [N, 9, 9, 2], labels, ids: Array.from(labels, String), meta: { source: 'test' } });
});

test('occlude writes the dataset plus maps, equal to exactMaps; 2 workers identical to 1', async () => {
  const out1 = path.join(tmp, 'w1.npz');
  const out2 = path.join(tmp, 'w2.npz');
  const r1 = await run(['occlude', '--model', model, '--data', data, '--out', out1, '--limit', '5', '--quiet']);
  assert.equal(r1.code, 0, r1.err);
  const r2 = await run(['occlude', '--model', model, '--data', data, '--out', out2, '--limit', '5', '--workers', '2', '--shard-size', '1', '--quiet']);
  assert.equal(r2.code, 0, r2.err);
  assert.match(r2.err, /wrote 5 maps .* maps\/s, \d+ classifier inferences\/s/);
  const a = await readDataset(out1);
  const b = await readDataset(out2);
  assert.deepEqual(a.shape, [5, 9, 9, 2]);
  assert.equal(a.maps!.length, 5 * 81);
  assert.deepEqual(a.ids, ['0', '1', '0', '1', '0']);
  assert.deepEqual(b.maps, a.maps);
  const occ = a.meta.occlusion!;
  assert.equal(occ.stride, 1);
  assert.equal(occ.pad, 3);
  assert.equal(occ.inferencesPerMap, 170); // (9 + 2*3 - 3 + 1)^2 + 1
  assert.equal(a.meta.source, 'test');
  assert.ok(!existsSync(`${out1}.shards`) && !existsSync(`${out2}.shards`));
  // The same maps computed in this process through the library.
  const p = await loadPredictor(model);
  assert.equal(occ.modelHash, p.hash);
  const direct = await exactMaps(p, a.images, [5, 9, 9, 2], SEED_PARAMS);
  p.dispose();
  let worst = 0;
  for (let i = 0; i < direct.maps.length; i++) worst = Math.max(worst, Math.abs(direct.maps[i] - a.maps![i]));
  assert.ok(worst < 1e-5, `max abs diff ${worst}`);
  // maps_raw: the summed scores before the seed normalisation, the same through workers;
  // normalising them gives the maps.
  assert.ok(a.mapsRaw && b.mapsRaw);
  // float64 through the file and the workers (class-scores.ts)
  assert.ok(a.mapsRaw instanceof Float64Array && b.mapsRaw instanceof Float64Array);
  assert.deepEqual(b.mapsRaw, a.mapsRaw);
  for (let i = 0; i < 5; i++) {
    const seed = normalizeSeed(a.mapsRaw.subarray(i * 81, (i + 1) * 81));
    // float32 storage of the raw sums: the z-score of a nearly flat map moves by ~1e-4.
    for (let j = 0; j < 81; j++) assert.ok(Math.abs(seed[j] - a.maps![i * 81 + j]) < 1e-3, `map ${i} pixel ${j}: ${seed[j]} vs ${a.maps![i * 81 + j]}`);
  }
  let worstRaw = 0;
  for (let i = 0; i < direct.raw.length; i++) worstRaw = Math.max(worstRaw, Math.abs(direct.raw[i] - a.mapsRaw[i]));
  assert.ok(worstRaw < 1e-5, `raw max abs diff ${worstRaw}`);
  // --normalize none: the maps are the raw scores, stored once.
  const out3 = path.join(tmp, 'w3.npz');
  const r3 = await run(['occlude', '--model', model, '--data', data, '--out', out3, '--limit', '5', '--normalize', 'none', '--quiet']);
  assert.equal(r3.code, 0, r3.err);
  const c = await readDataset(out3);
  assert.equal(c.mapsRaw, undefined);
  for (let i = 0; i < c.maps!.length; i++) assert.ok(Math.abs(c.maps![i] - a.mapsRaw[i]) < 1e-6);
});

test('kill -9 during occlude, then --resume: the same maps as an uninterrupted run', async () => {
  const n = 120;
  const big = path.join(tmp, 'big.npz');
  await writeDataset(big, { images: randomImages(2, n, 9, 9, 2), shape: [n, 9, 9, 2], meta: {} });
  const common = ['occlude', '--model', model, '--data', big, '--batch-size', '170', '--shard-size', '2', '--quiet'];
  const clean = path.join(tmp, 'clean.npz');
  const out = path.join(tmp, 'killed.npz');
  const shards = `${out}.shards`;
  const count = () => (existsSync(shards) ? readdirSync(shards).filter((f) => f.startsWith('shard-')).length : 0);
  const [c, k] = await Promise.all([run([...common, '--out', clean]), run([...common, '--out', out], () => count() >= 3)]);
  assert.equal(c.code, 0, c.err);
  assert.equal(k.signal, 'SIGKILL', k.err);
  const left = count();
  assert.ok(left >= 3 && left < n / 2, `${left} shards`);
  assert.ok(!existsSync(out));
  const [refused, changed] = await Promise.all([run([...common, '--out', out]), run([...common, '--out', out, '--resume', '--stride', '2'])]);
  assert.equal(refused.code, 2);
  assert.match(refused.err, /^occmap: .*killed\.npz\.shards: shards of an interrupted run exist; add --resume/);
  assert.equal(changed.code, 2);
  assert.match(changed.err, /different job \(stride 1 -> 2/);
  const r = await run([...common, '--out', out, '--resume', '--workers', '2']);
  assert.equal(r.code, 0, r.err);
  const x = await readDataset(out);
  const y = await readDataset(clean);
  assert.deepEqual(x.maps, y.maps);
  assert.deepEqual(x.images, y.images);
  assert.deepEqual(x.meta.occlusion, y.meta.occlusion);
  assert.ok(!existsSync(shards));
});

test('bad input: one-line error naming the file, exit 2, no output', async () => {
  const out = path.join(tmp, 'bad.npz');
  const nan = path.join(tmp, 'nan.npz');
  const img = randomImages(3, 2, 9, 9, 2);
  img[100] = NaN;
  await writeDataset(nan, { images: img, shape: [2, 9, 9, 2], meta: {} });
  const small = path.join(tmp, 'small.npz');
  await writeDataset(small, { images: randomImages(3, 2, 7, 7, 2), shape: [2, 7, 7, 2], meta: {} });
  const cases: [string[], RegExp][] = [
    [['--data', nan], /nan\.npz: images contain 1 NaN\/Inf value\(s\), first in item 0$/],
    [['--data', small], /clf: model input is 9x9x1 but the data images are 7x7 .*small\.npz/],
    [['--data', data, '--out', path.join(tmp, 'no', 'such', 'dir', 'o.npz')], /o\.npz: directory .* (does not exist|is not writable)/],
    [['--data', small, '--target', 'label'], /clf: model input/],
    [['--data', data, '--patch', '0'], /--patch: expected N or HxW/],
    [['--data', data, '--stride', '20'], /covered by no patch position/],
    [['--data', data, '--target', '7'], /--target 7: the model .* has 2 classes/],
    [['--data', path.join(tmp, 'missing.npz')], /missing\.npz: cannot read \(ENOENT\)/],
  ];
  const results = await Promise.all(cases.map(([args]) => run(['occlude', '--model', model, '--data', data, '--out', out, '--quiet', ...args])));
  for (const [i, [args, re]] of cases.entries()) {
    const r = results[i];
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    const lines = r.err.trimEnd().split('\n');
    assert.equal(lines.length, 1, r.err);
    assert.match(lines[0], /^occmap: /);
    assert.match(lines[0], re);
    assert.ok(!existsSync(out), args.join(' '));
  }
});

test('data far outside the range the classifier was trained on: occlude warns (also with --quiet), then maps it', async () => {
  const raw = path.join(tmp, 'raw.npz');
  const img = randomImages(5, 2, 9, 9, 2).map((v) => v * 4700);
  await writeDataset(raw, { images: img, shape: [2, 9, 9, 2], meta: {} });
  const out = path.join(tmp, 'raw-maps.npz');
  const r = await run(['occlude', '--model', modelRange, '--data', raw, '--out', out, '--quiet']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^occlude: warning: .*raw\.npz: values run from .* outside the training data's 0\.\.1/m);
  assert.ok(existsSync(out));
  // In range: no warning.
  const r2 = await run(['occlude', '--model', modelRange, '--data', data, '--out', path.join(tmp, 'in-range.npz'), '--quiet']);
  assert.equal(r2.code, 0, r2.err);
  assert.doesNotMatch(r2.err, /warning/);
});
