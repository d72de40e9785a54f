/**
 * occlude with the incremental engine: the default where it can run, the same maps as the full
 * engine, the one-line fallback note, --approx's report, and a resumed run keeping the engine
 * its shards were made with; identical maps whatever the job's split.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readDataset, writeDataset } from '../src/data/dataset.js';
import { occludeDataset } from '../src/occlusion/job.js';
import { saveModelDir } from '../src/models/model-dir.js';
import { modelToOnnx } from '../src/models/to-onnx.js';
import { tf, tfl, initTf } from '../src/runtime/tfjs.js';
import { randomImages } from './occlusion-fixtures.js';
import { Rng } from '../src/util/rng.js';
import { runOccmap } from './cli-run.js';

const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'occ-incr-cli-'));
const model = path.join(tmp, 'clf');
const onnx = path.join(tmp, 'clf.onnx');
const data = path.join(tmp, 'data.npz');

const run = (args: string[], killWhen?: () => boolean) => runOccmap(args, killWhen);

before(async () => {
  await initTf('cpu');
  // 11x11 stamps; zero padding, an even 'same' conv, max pooling, dense head
  const m = tfl.sequential({
    layers: [
      tfl.layers.zeroPadding2d({ inputShape: [11, 11, 1], padding: 2 }),
      tfl.layers.conv2d({ filters: 4, kernelSize: 4, padding: 'same', activation: 'relu' }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 2, activation: 'softmax' }),
    ],
  });
  const rng = new Rng(8);
  m.setWeights(m.getWeights().map((w) => tf.tensor(Float32Array.from({ length: w.size }, () => rng.normal() * 0.4), w.shape)));
  await saveModelDir(m, model, { kind: 'classifier', occmapVersion: 'test', createdAt: 'test' });
  writeFileSync(onnx, modelToOnnx(m).bytes);
  m.dispose();
  await writeDataset(data, { images: randomImages(5, 40, 11, 11, 1), shape: [40, 11, 11, 1], meta: {} });
});

test('occlude: incremental by default, equal to --engine onnx maps; an .onnx model falls back with one line', async () => {
  const a = path.join(tmp, 'a.npz');
  const b = path.join(tmp, 'b.npz');
  const r1 = await run(['occlude', '--model', model, '--data', data, '--out', a, '--limit', '6', '--normalize', 'none']);
  assert.equal(r1.code, 0, r1.err);
  assert.match(r1.err, /onnxruntime-incremental/);
  const r2 = await run(['occlude', '--model', onnx, '--data', data, '--out', b, '--limit', '6', '--normalize', 'none']);
  assert.equal(r2.code, 0, r2.err);
  const notes = r2.err.split('\n').filter((l) => l.includes('incremental engine cannot run'));
  assert.equal(notes.length, 1);
  assert.match(notes[0], /\.onnx file has no layer list/);
  const x = await readDataset(a);
  const y = await readDataset(b);
  assert.equal(x.meta.occlusion!.engine, 'onnxruntime-incremental');
  let worst = 0;
  for (let i = 0; i < x.maps!.length; i++) worst = Math.max(worst, Math.abs(x.maps![i] - y.maps![i]));
  assert.ok(worst < 1e-5, `max abs diff ${worst}`);
});

test('occlude --approx: the error against exact maps is printed and stored', async () => {
  const out = path.join(tmp, 'approx.npz');
  const r = await run(['occlude', '--model', model, '--data', data, '--out', out, '--limit', '4', '--approx', '0.3']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /approximate maps \(projective-field threshold 0\.3\) against exact ones on the first 4: SSIM [\d.]+, max \|error\| /);
  const d = await readDataset(out);
  const occ = d.meta.occlusion as Record<string, unknown>;
  assert.equal(occ.method, 'approximate');
  const check = occ.approximation as { maps: number; ssim: number; maxAbsError: number };
  assert.equal(check.maps, 4);
  assert.ok(check.maxAbsError > 0 && check.ssim <= 1);
  const bad = await run(['occlude', '--model', model, '--data', data, '--out', path.join(tmp, 'x.npz'), '--approx', '2']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--approx: expected a number in \(0, 1\]/);
});

test('--resume of a run made on the full engine keeps that engine (its shards stay valid)', async () => {
  const out = path.join(tmp, 'resumed.npz');
  const shards = `${out}.shards`;
  const count = (): number => (existsSync(shards) ? readdirSync(shards).filter((f) => f.startsWith('shard-')).length : 0);
  const common = ['occlude', '--model', model, '--data', data, '--out', out, '--batch-size', '82', '--shard-size', '1', '--quiet'];
  const k = await run([...common, '--engine', 'tfjs'], () => count() >= 2);
  assert.equal(k.signal, 'SIGKILL', k.err);
  const r = await run([...common, '--resume']);
  assert.equal(r.code, 0, r.err);
  const d = await readDataset(out);
  assert.match(String(d.meta.occlusion!.engine), /^tfjs/);
});

test('incremental engine through the job runner: identical maps whatever the split (maps per call, shard size, worker threads)', async () => {
  const ds = await readDataset(data);
  const splits = [
    { workers: 1, batchSize: 2048, shardSize: 256 }, // 9 maps per call, one shard
    { workers: 2, batchSize: 226, shardSize: 1 }, // 1 map per call, a shard per map
    { workers: 3, batchSize: 678, shardSize: 4 }, // 3 maps per call, shards of 6
  ];
  const runs = [];
  for (const s of splits) {
    const r = await occludeDataset({ model, data: ds, limit: 12, engine: 'incremental', params: { normalize: 'none' }, ...s });
    assert.match(r.summary.engine, /^onnxruntime-incremental/);
    assert.equal(r.summary.computed, 12);
    runs.push(r.dataset.maps!);
  }
  assert.equal(runs[0].length, 12 * 121);
  assert.ok(runs[0].some((v) => v !== 0));
  assert.deepEqual(runs[1], runs[0]);
  assert.deepEqual(runs[2], runs[0]);
});
