/**
 * The model-directory format (models/model-dir.ts): card.json records every file's sha256,
 * loading verifies them, and the engine choice follows from what the card vouches for.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initTf, tf, tfl } from '../src/runtime/tfjs.js';
import {
  cardProblem,
  fileHashes,
  modelDirRun,
  openModelDir,
  readCard,
  saveModelDir,
  verifyModelDir,
  writeCard,
  type ModelCard,
} from '../src/models/model-dir.js';
import { loadModel } from '../src/models/load.js';
import { UserError } from '../src/util/errors.js';

before(async () => {
  await initTf('cpu');
});

const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'occmap-model-dir-'));
const card = (extra: Partial<ModelCard> = {}): ModelCard => ({ kind: 'classifier', occmapVersion: 'test', createdAt: 'now', ...extra });

function tinyClassifier(seed = 1): InstanceType<typeof tfl.LayersModel> {
  const L = tfl.layers;
  return tfl.sequential({
    layers: [
      L.conv2d({ inputShape: [6, 6, 1], filters: 2, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed }) }),
      L.flatten(),
      L.dense({ units: 2, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 1 }) }),
    ],
  });
}

/** Flip `count` bytes in the middle of a file, keeping its size. */
function flipBytes(file: string, count = 8): void {
  const b = readFileSync(file);
  const at = Math.floor(b.length / 2);
  for (let i = 0; i < count && at + i < b.length; i++) b[at + i] ^= 0xff;
  writeFileSync(file, b);
}

/** `fn` fails with a one-line UserError matching `re`. */
async function refuses(fn: () => unknown, re: RegExp): Promise<void> {
  await assert.rejects(async () => fn(), (err: Error) => {
    assert.ok(err instanceof UserError, `not a UserError: ${err?.stack ?? err}`);
    assert.ok(!err.message.includes('\n'), `multi-line: ${err.message}`);
    assert.match(err.message, re);
    return true;
  });
}

async function savedDir(onnx = true): Promise<{ dir: string; hash: string }> {
  const m = tinyClassifier();
  const dir = path.join(tmp(), 'clf');
  const { hash } = await saveModelDir(m, dir, card({ channels: [0] }), { onnx });
  m.dispose();
  return { dir, hash };
}

test('saveModelDir records the sha256 of model.json, weights.bin and model.onnx in card.json', async () => {
  const { dir, hash } = await savedDir();
  const c = readCard(dir)!;
  assert.equal(c.hash, hash);
  assert.deepEqual(Object.keys(c.files!), ['model.json', 'model.onnx', 'weights.bin']);
  for (const h of Object.values(c.files!)) assert.match(h, /^[0-9a-f]{64}$/);
  assert.deepEqual(c.files, fileHashes(dir, c));
  const v = verifyModelDir(dir);
  assert.equal(v.hash, hash);
  assert.equal(v.onnx, path.join(dir, 'model.onnx'));
  assert.deepEqual(v.notes, []);
});

test('flipped bytes (same size) in weights.bin, model.json or model.onnx: refused naming the file', async () => {
  for (const name of ['weights.bin', 'model.onnx', 'model.json']) {
    const { dir } = await savedDir();
    const file = path.join(dir, name);
    const size = statSync(file).size;
    if (name === 'model.json') writeFileSync(file, readFileSync(file, 'utf8').replace('"relu"', '"tanh"'));
    else flipBytes(file);
    if (name !== 'model.json') assert.equal(statSync(file).size, size);
    const re = new RegExp(`${name.replace('.', '\\.')}: does not match card\\.json \\(sha256 [0-9a-f]{12}\\.\\.\\., card\\.json records [0-9a-f]{12}\\.\\.\\.\\): the model directory is corrupted or was edited; retrain or restore it$`);
    await refuses(() => verifyModelDir(dir), re);
    for (const engine of ['auto', 'onnx', 'tfjs'] as const) await refuses(() => loadModel(dir, { engine, threads: 1 }), re);
    // The model.onnx path itself is checked against the card beside it.
    await refuses(() => loadModel(path.join(dir, 'model.onnx'), { threads: 1 }), re);
  }
});

test('a recorded file that is missing, or a weight file the card does not record: refused', async () => {
  const { dir } = await savedDir();
  rmSync(path.join(dir, 'model.onnx'));
  await refuses(() => loadModel(dir, { threads: 1 }), /model\.onnx: is missing but card\.json records it/);
  const other = (await savedDir()).dir;
  const c = readCard(other)!;
  delete c.files!['weights.bin'];
  writeFileSync(path.join(other, 'card.json'), JSON.stringify(c));
  await refuses(() => verifyModelDir(other), /weights\.bin: is not recorded in card\.json/);
});

test('model.onnx the card does not record is not used: the weights are converted at load, with a note', async () => {
  const { dir } = await savedDir(false);
  const bogus = await savedDir();
  cpSync(path.join(bogus.dir, 'model.onnx'), path.join(dir, 'model.onnx'));
  const v = verifyModelDir(dir);
  assert.equal(v.onnx, undefined);
  assert.equal(v.notes.length, 1);
  assert.match(v.notes[0], /model\.onnx is not recorded in card\.json: not used/);
  const notes: string[] = [];
  const run = await modelDirRun(v, 'auto', { note: (l) => notes.push(l) });
  assert.equal(run.engine, 'onnx');
  assert.ok(run.engine === 'onnx' && run.model instanceof Uint8Array && run.converted);
});

test('old cards (no file hashes): load with one note; their hash still guards model.json + weights', async () => {
  const { dir, hash } = await savedDir();
  const c = readCard(dir)!;
  delete c.files;
  writeFileSync(path.join(dir, 'card.json'), JSON.stringify(c));
  const notes: string[] = [];
  const p = await loadModel(dir, { threads: 1, onNote: (l) => notes.push(l) });
  assert.equal(p.hash, hash);
  assert.match(p.engine, /^onnxruntime/);
  p.dispose();
  assert.equal(notes.length, 1);
  assert.match(notes[0], /card\.json records no file hashes \(written by an older occmap\): the integrity of its files cannot be fully checked; model\.onnx is not used$/);
  flipBytes(path.join(dir, 'weights.bin'));
  await refuses(() => loadModel(dir, { threads: 1, onNote: () => undefined }), /model\.json \+ weights do not match card\.json \(sha256 .*\): the model directory is corrupted/);
  // No card at all: a note, and nothing to compare with.
  const bare = (await savedDir(false)).dir;
  rmSync(path.join(bare, 'card.json'));
  assert.match(verifyModelDir(bare).notes[0], /no card\.json: the integrity of its files cannot be fully checked$/);
});

test('engine choice: a vouched model.onnx runs as is; tfjs when asked; an unconvertible layer falls back to tfjs with a note (auto) or fails (onnx)', async () => {
  const { dir } = await savedDir();
  const v = verifyModelDir(dir);
  const onnx = await modelDirRun(v, 'auto');
  assert.deepEqual(onnx, { engine: 'onnx', model: path.join(dir, 'model.onnx'), converted: false });
  const tfjs = await modelDirRun(v, 'tfjs');
  assert.equal(tfjs.engine, 'tfjs');
  if (tfjs.engine === 'tfjs') tfjs.model.dispose();

  // A layer the exporter has no converter for (LayerNormalization).
  const L = tfl.layers;
  const odd = tfl.sequential({ layers: [L.flatten({ inputShape: [6, 6, 1] }), L.layerNormalization({}), L.dense({ units: 2, activation: 'softmax' })] });
  const oddDir = path.join(tmp(), 'odd');
  await saveModelDir(odd, oddDir, card());
  const notes: string[] = [];
  const p = await loadModel(oddDir, { threads: 1, onNote: (l) => notes.push(l) });
  assert.equal(p.engine, 'tfjs-cpu');
  assert.equal(notes.length, 1);
  assert.match(notes[0], /odd: runs on tfjs \(slower than ONNX Runtime\): cannot export layer .*LayerNormalization/);
  p.dispose();
  await refuses(() => loadModel(oddDir, { engine: 'onnx' }), /odd: cannot run on ONNX Runtime \(cannot export layer .*\); use engine 'tfjs'/);
  // The same model in memory: the caller's model survives both paths.
  const q = await loadModel(odd, { onNote: () => undefined });
  assert.equal(q.engine, 'tfjs-cpu');
  q.dispose();
  const y = tf.tidy(() => Array.from((odd.predict(tf.ones([1, 6, 6, 1])) as InstanceType<typeof tf.Tensor>).dataSync()));
  assert.equal(y.length, 2, 'the caller still has a working model');
  odd.dispose();
});

test('ensembles: the top card records every member file; a member edited or swapped is refused', async () => {
  const root = tmp();
  const dir = path.join(root, 'ens');
  const base = card({ kind: 'explainer', ensemble: 2, members: [{ dir: 'member-0' }, { dir: 'member-1' }] });
  mkdirSync(dir);
  const hashes: string[] = [];
  for (const k of [0, 1]) {
    const m = tinyClassifier(k + 3);
    hashes.push((await saveModelDir(m, path.join(dir, `member-${k}`), card({ member: k }), { onnx: true })).hash);
    m.dispose();
  }
  const top = writeCard(dir, { ...base, members: hashes.map((hash, k) => ({ dir: `member-${k}`, hash })) });
  assert.deepEqual(Object.keys(top.files!), ['member-0/model.json', 'member-0/model.onnx', 'member-0/weights.bin', 'member-1/model.json', 'member-1/model.onnx', 'member-1/weights.bin']);
  const opened = openModelDir(dir);
  assert.deepEqual(opened.members.map((m) => m.hash), hashes);
  assert.ok(opened.members.every((m) => m.onnx));
  assert.deepEqual(opened.notes, []);

  // Swap the members' directories: every file matches its own card, not the ensemble's record.
  const swapped = path.join(root, 'swapped');
  cpSync(dir, swapped, { recursive: true });
  rmSync(path.join(swapped, 'member-0'), { recursive: true });
  cpSync(path.join(dir, 'member-1'), path.join(swapped, 'member-0'), { recursive: true });
  await refuses(() => openModelDir(swapped), /member-0\/(model\.json|model\.onnx|weights\.bin): does not match card\.json/);
  flipBytes(path.join(dir, 'member-1', 'model.onnx'));
  await refuses(() => openModelDir(dir), /member-1\/model\.onnx: does not match card\.json/);
});

test('cardProblem: the fields occmap relies on, named with the bad value', () => {
  assert.equal(cardProblem(card()), null);
  assert.equal(cardProblem([]), 'is not a JSON object');
  assert.match(cardProblem({ ...card(), files: { 'weights.bin': 'abc' } })!, /'files'\.'weights\.bin' must be a sha256 hash \(64 hex digits\), got "abc"/);
  assert.match(cardProblem({ ...card(), outputs: 'scores' })!, /'outputs' must be 'probs' or 'logits', got "scores"/);
  assert.match(cardProblem({ ...card(), channels: [-1] })!, /'channels'/);
  assert.match(cardProblem({ ...card(), ensemble: 0 })!, /'ensemble' must be a positive integer, got 0/);
  assert.match(cardProblem({ ...card(), hash: 5 })!, /'hash' must be a string/);
});
