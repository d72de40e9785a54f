import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { initTf, tf, tfl } from '../src/runtime/tfjs.js';
import { buildClassifier } from '../src/models/classifier.js';
import { countParams } from '../src/models/layers.js';
import { fsHandler, saveModelDir, loadModelDir, readCard, hashModelDir, type ModelCard } from '../src/models/model-dir.js';
import { loadPredictor } from '../src/models/load.js';
import { TfjsPredictor } from '../src/models/tfjs-predictor.js';
import { writeDataset } from '../src/data/dataset.js';
import { Rng } from '../src/util/rng.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/occmap.js');

before(async () => {
  await initTf('cpu');
});

function tmp(): string {
  return mkdtempSync(path.join(tmpdir(), 'occmap-io-'));
}

function randomImages(n: number, len: number, seed: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n * len }, () => r.next());
}

const card = (extra: Partial<ModelCard> = {}): ModelCard => ({ kind: 'classifier', occmapVersion: 'test', createdAt: 'now', ...extra });

test('save/load round trip: identical predictions, standard tfjs files, card with hash', async () => {
  const dir = path.join(tmp(), 'clf');
  const m = buildClassifier({ inputShape: [9, 9, 1], numClasses: 3, pad: 1, seed: 4 });
  const x = randomImages(5, 81, 1);
  const before = await new TfjsPredictor(m, { hash: 'x' }).predict(x, 5);
  const { hash } = await saveModelDir(m, dir, card({ channels: [0] }));
  assert.deepEqual(readdirSync(dir).sort(), ['card.json', 'model.json', 'weights.bin']);
  // Standard layout: one weights group pointing at weights.bin, float32 weights.
  const json = JSON.parse(readFileSync(path.join(dir, 'model.json'), 'utf8'));
  assert.equal(json.format, 'layers-model');
  assert.deepEqual(json.weightsManifest[0].paths, ['weights.bin']);
  assert.equal(statSync(path.join(dir, 'weights.bin')).size, 4 * countParams(m));
  assert.equal(json.modelTopology.config.layers.find((l: { config: { name: string } }) => l.config.name === 'conv1').class_name, 'Conv2D');
  // card.json: what we gave plus the content hash, which matches the files.
  const c = readCard(dir)!;
  assert.equal(c.kind, 'classifier');
  assert.deepEqual(c.channels, [0]);
  assert.equal(c.hash, hash);
  assert.equal(hashModelDir(dir), hash);
  assert.match(hash, /^[0-9a-f]{64}$/);

  // Through tfjs' own loader with our handler, and through loadModelDir.
  const viaTf = await tfl.loadLayersModel(fsHandler(dir));
  const again = await loadModelDir(dir);
  for (const mm of [viaTf, again]) {
    assert.deepEqual(mm.layers.map((l) => l.name), m.layers.map((l) => l.name));
    const after = await new TfjsPredictor(mm, { hash }).predict(x, 5);
    assert.deepEqual(Array.from(after), Array.from(before));
    mm.dispose();
  }
  m.dispose();
});

test('saving the same weights twice gives the same hash; other weights another', async () => {
  const root = tmp();
  const hashes: string[] = [];
  for (const [name, seed] of [['a', 1], ['b', 1], ['c', 2]] as const) {
    const m = buildClassifier({ inputShape: [6, 6, 1], numClasses: 2, pad: 0, seed });
    hashes.push((await saveModelDir(m, path.join(root, name), card())).hash);
    m.dispose();
  }
  assert.equal(hashes[0], hashes[1]);
  assert.notEqual(hashes[0], hashes[2]);
});

test('atomic directory: nothing left on failure; no overwrite without force; force replaces', async () => {
  const root = tmp();
  const dir = path.join(root, 'clf');
  const m = buildClassifier({ inputShape: [6, 6, 1], numClasses: 2, pad: 0 });
  // A card JSON.stringify cannot serialise fails after the model files were written.
  const bad = card() as ModelCard & { self?: unknown };
  bad.self = bad;
  await assert.rejects(saveModelDir(m, dir, bad), /clf: cannot save model/);
  assert.deepEqual(readdirSync(root), []);

  mkdirSync(dir);
  writeFileSync(path.join(dir, 'notes.txt'), 'keep me');
  await assert.rejects(saveModelDir(m, dir, card()), /clf: exists and is not empty \(use --force/);
  assert.deepEqual(readdirSync(dir), ['notes.txt']);
  await saveModelDir(m, dir, card(), { force: true });
  assert.deepEqual(readdirSync(dir).sort(), ['card.json', 'model.json', 'weights.bin']);
  assert.deepEqual(readdirSync(root), ['clf']);
  // An existing empty directory is fine without force.
  const empty = path.join(root, 'empty');
  mkdirSync(empty);
  await saveModelDir(m, empty, card());
  assert.ok(existsSync(path.join(empty, 'model.json')));
  await assert.rejects(saveModelDir(m, path.join(root, 'no', 'such', 'dir'), card()), /parent directory .* does not exist/);
  m.dispose();
});

test('loadPredictor: channels from card.json, engine, hash; one-line errors for bad paths', async () => {
  const root = tmp();
  const dir = path.join(root, 'clf');
  const m = buildClassifier({ inputShape: [6, 6, 1], numClasses: 2, pad: 1 });
  const { hash } = await saveModelDir(m, dir, card({ channels: [3] }));
  const p = await loadPredictor(dir);
  assert.deepEqual(p.channels, [3]);
  assert.deepEqual(p.inputShape, [6, 6, 1]);
  assert.equal(p.numClasses, 2);
  // No model.onnx in the directory: the weights are converted to ONNX at load.
  assert.match(p.engine, /^onnxruntime \(\d+ threads?\)$/);
  assert.equal(p.hash, hash);
  const t = await loadPredictor(dir, { engine: 'tfjs' });
  assert.equal(t.engine, 'tfjs-cpu');
  assert.equal(t.hash, hash);
  t.dispose();
  const probs = await p.predict(randomImages(3, 36, 2), 3);
  assert.equal(probs.length, 6);
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(probs[2 * i] + probs[2 * i + 1] - 1) < 1e-5);
  await assert.rejects(p.predict(new Float32Array(10), 1), /model input is 6x6x1/);
  p.dispose();
  // model.json path works too.
  const p2 = await loadPredictor(path.join(dir, 'model.json'));
  assert.equal(p2.hash, hash);
  p2.dispose();

  const oneLine = (re: RegExp) => (err: Error) => re.test(err.message) && !err.message.includes('\n') && err.name === 'UserError';
  await assert.rejects(loadPredictor(path.join(root, 'missing')), oneLine(/missing: does not exist/));
  mkdirSync(path.join(root, 'plain'));
  await assert.rejects(loadPredictor(path.join(root, 'plain')), oneLine(/plain: is not a model directory \(no model\.json\)/));
  writeFileSync(path.join(root, 'net.onnx'), 'x');
  await assert.rejects(loadPredictor(path.join(root, 'net.onnx')), oneLine(/net\.onnx: /));
  writeFileSync(path.join(root, 'net.h5'), 'x');
  await assert.rejects(loadPredictor(path.join(root, 'net.h5')), oneLine(/net\.h5: is not an HDF5 file/));
  const broken = path.join(root, 'broken');
  mkdirSync(broken);
  writeFileSync(path.join(broken, 'model.json'), '{"modelTopology": ');
  await assert.rejects(loadPredictor(broken), oneLine(/broken\/model\.json: is not valid JSON/));
  // Truncated weights.
  const trunc = path.join(root, 'trunc');
  await saveModelDir(m, trunc, card());
  writeFileSync(path.join(trunc, 'weights.bin'), readFileSync(path.join(trunc, 'weights.bin')).subarray(0, 100));
  await assert.rejects(loadPredictor(trunc), oneLine(/weights\.bin: does not match card\.json \(sha256 [0-9a-f]{12}\.\.\., card\.json records [0-9a-f]{12}\.\.\.\): the model directory is corrupted or was edited; retrain or restore it/));
  // Without a card, the tfjs loader's own size check still names the file.
  rmSync(path.join(trunc, 'card.json'));
  await assert.rejects(loadPredictor(trunc, { onNote: () => undefined }), oneLine(/weights\.bin: holds 100 bytes, model\.json describes \d+/));
  // card.json channels that do not fit the model.
  const mism = path.join(root, 'mism');
  await saveModelDir(m, mism, card({ channels: [0, 1] }));
  await assert.rejects(loadPredictor(mism), oneLine(/card\.json: lists 2 channel\(s\) \[0,1\] but the model takes 1/));
  m.dispose();
});

test('occmap train-classifier CLI: trains on cpu, writes model + card; bad input is a one-line error', async () => {
  const root = tmp();
  const data = path.join(root, 'small.npz');
  const n = 24;
  const s = 6;
  const r = new Rng(3);
  const images = new Float32Array(n * s * s * 4);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 2;
    for (let p = 0; p < s * s; p++) images[(i * s * s + p) * 4 + 3] = r.next() * 0.2 + (labels[i] && p === 14 ? 1 : 0);
  }
  await writeDataset(data, {
    images,
    shape: [n, s, s, 4],
    labels,
    ids: Array.from({ length: n }, (_, i) => `obj${i % 8}`),
    meta: { source: 'test', channels: ['template', 'science', 'difference', 'snr_difference'], classes: ['bogus', 'real'] },
  });
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, 'train-classifier', '--data', data, '--backend', 'cpu', '--quiet', ...args], { encoding: 'utf8' });
  const out = path.join(root, 'clf');
  const ok = run('--out', out, '--epochs', '2', '--pad', '1', '--seed', '1');
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stderr, /training on tfjs cpu backend/);
  assert.match(ok.stderr, /epoch 1\/2 .*val_acc .*samples\/s .*tfjs-cpu/);
  assert.match(ok.stdout, /val_acc \d\.\d{4}/);
  const c = readCard(out)!;
  assert.equal(c.kind, 'classifier');
  assert.deepEqual(c.channels, [3]);
  assert.deepEqual(c.channelNames, ['snr_difference']);
  assert.deepEqual(c.inputShape, [6, 6, 1]);
  assert.equal(c.numClasses, 2);
  const training = c.training as { split: { by: string; train: number; val: number }; epochsRun: number; history: unknown[]; valAccuracy: number; backend: string };
  assert.equal(training.split.by, 'group');
  assert.equal(training.split.train + training.split.val, n);
  assert.equal(training.epochsRun, 2);
  assert.equal(training.history.length, 2);
  assert.equal(training.backend, 'tfjs-cpu');
  assert.ok(training.valAccuracy >= 0 && training.valAccuracy <= 1);
  const d = c.data as { sha256: string; bytes: number };
  assert.equal(d.bytes, statSync(data).size);
  assert.match(d.sha256, /^[0-9a-f]{64}$/);
  assert.equal(c.hash, hashModelDir(out));
  assert.equal(typeof c.parameters, 'number');

  // Non-empty output without --force: refused before training, nothing changed.
  const again = run('--out', out, '--epochs', '1');
  assert.equal(again.status, 2);
  assert.match(again.stderr.trim(), /^occmap: .*clf: exists and is not empty \(use --force to replace it\)$/);
  assert.equal(readCard(out)!.hash, c.hash);

  // Channel out of range for the data: one line naming the data file, no output directory.
  const bad = run('--out', path.join(root, 'bad'), '--channels', '7');
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr.trim().split('\n').filter((l) => l.startsWith('occmap:')).length, 1);
  assert.match(bad.stderr, /occmap: .*small\.npz: channel 7 is out of range: the images have 4 channel/);
  assert.ok(!existsSync(path.join(root, 'bad')));
  const badOpt = run('--out', path.join(root, 'bad'), '--epochs', 'many');
  assert.equal(badOpt.status, 2);
  assert.match(badOpt.stderr, /--epochs must be an integer >= 1, got 'many'/);
  assert.deepEqual(readdirSync(root).sort(), ['clf', 'small.npz']);
});

test('TfjsPredictor predicts in chunks the same as one call', async () => {
  const m = buildClassifier({ inputShape: [6, 6, 2], numClasses: 2, pad: 0, seed: 9 });
  const x = randomImages(7, 72, 5);
  const whole = await new TfjsPredictor(m, { hash: 'h' }).predict(x, 7);
  const chunked = await new TfjsPredictor(m, { hash: 'h', batchSize: 3 }).predict(x, 7);
  assert.deepEqual(Array.from(chunked), Array.from(whole));
  const direct = tf.tidy(() => (m.predict(tf.tensor4d(x, [7, 6, 6, 2])) as tf.Tensor).dataSync());
  assert.deepEqual(Array.from(whole), Array.from(direct));
  m.dispose();
});
