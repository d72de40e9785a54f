/**
 * Training checkpoints (src/train/checkpoint.ts): a run stopped after some epochs and resumed
 * from its checkpoint ends where the uninterrupted run ends (same weights, same history), with
 * the optimiser's moments, the early-stopping state and the seeded shuffles/dropout restored;
 * a checkpoint of another training is refused; the CLI resumes after kill -9.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initTf } from '../src/runtime/tfjs.js';
import { activation, conv, dense, dropout, flatten, maxPool, stack, layerSeeds } from '../src/models/layers.js';
import { trainModel, type TrainSet } from '../src/train/loop.js';
import { Rng } from '../src/util/rng.js';
import { runOccmap } from './cli-run.js';
import { makeClassifier, makeMaps, writeMaps } from './explainer-fixtures.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'occmap-ckpt-'));
const quiet = { quiet: true, log: () => {} };
before(async () => {
  await initTf('cpu');
});
after(() => rmSync(tmp, { recursive: true, force: true }));

function data(n: number, s: number): TrainSet {
  const rng = new Rng(4);
  const x = new Float32Array(n * s * s);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % 2;
    for (let p = 0; p < s * s; p++) x[i * s * s + p] = 0.3 * rng.next() + (y[i] && p % s > s / 2 ? 0.5 : 0);
  }
  return { x, shape: [n, s, s, 1], y };
}

const model = (s: number) => {
  const next = layerSeeds(2);
  return stack('tiny', [s, s, 1], [conv(4, 3, { name: 'c1', activation: 'relu', seed: next() }), maxPool({ name: 'p1' }), flatten({ name: 'f' }), dense(8, { name: 'd1', activation: 'relu', seed: next() }), dropout(0.3, { name: 'drop' }), dense(2, { name: 'out', seed: next() }), activation('softmax', { name: 'softmax' })]);
};

test('stopped after 2 epochs and resumed to 5: the same weights and history as 5 epochs in one run', async () => {
  const s = 8;
  const d = data(40, s);
  const opts = { loss: 'sparse_categorical_crossentropy' as const, lr: 0.02, seed: 3, batchSize: 8, patience: 10, workers: 1, ...quiet };
  const a = model(s);
  const ra = await trainModel(a, d, { ...opts, epochs: 5 });
  const ck = path.join(tmp, 'ck');
  const b1 = model(s);
  await trainModel(b1, d, { ...opts, epochs: 2, checkpoint: ck });
  b1.dispose();
  assert.ok(existsSync(path.join(ck, 'checkpoint.json')));
  const lines: string[] = [];
  const b = model(s);
  const rb = await trainModel(b, d, { ...opts, epochs: 5, checkpoint: ck, log: (l) => lines.push(l) });
  assert.match(lines.join('\n'), /resuming from .*: 2 epoch\(s\) done/);
  assert.deepEqual(rb.history.map((h) => h.valLoss), ra.history.map((h) => h.valLoss));
  assert.equal(rb.bestEpoch, ra.bestEpoch);
  const wa = a.getWeights().map((t) => Array.from(t.dataSync()));
  const wb = b.getWeights().map((t) => Array.from(t.dataSync()));
  assert.deepEqual(wb, wa);
  // Another training's checkpoint (other batch size) is refused, naming the file.
  await assert.rejects(trainModel(model(s), d, { ...opts, batchSize: 4, epochs: 5, checkpoint: ck }), /checkpoint\.json: is the checkpoint of another training \(batchSize 8 vs 4\)/);
  // So is one of other data of the same size.
  const other = { ...d, x: d.x.map((v) => v + 0.01) };
  await assert.rejects(trainModel(model(s), other, { ...opts, epochs: 5, checkpoint: ck }), /checkpoint\.json: is the checkpoint of another training \(data "[0-9a-f]{8}" vs "[0-9a-f]{8}"\)/);
  // A checkpoint of the first version (no data hash) is taken, with a warning.
  const jf = path.join(ck, 'checkpoint.json');
  const j = JSON.parse(readFileSync(jf, 'utf8'));
  delete j.fingerprint.data;
  writeFileSync(jf, JSON.stringify(j));
  const warned: string[] = [];
  await trainModel(model(s), d, { ...opts, epochs: 5, checkpoint: ck, log: (l) => warned.push(l) });
  assert.match(warned.join('\n'), /warning: .*checkpoint\.json does not record which data it was trained on/);
});

test('train-explainer --checkpoint: killed after its first epoch, the same command resumes and installs the model', { timeout: 240_000 }, async () => {
  const clf = await makeClassifier(path.join(tmp, 'clf'));
  const maps = await writeMaps(path.join(tmp, 'maps.npz'), makeMaps(60));
  const out = path.join(tmp, 'expl');
  const ck = path.join(tmp, 'expl-ck');
  const args = ['train-explainer', '--data', maps, '--classifier', clf, '--out', out, '--epochs', '4', '--patience', '9', '--batch-size', '6', '--workers', '1', '--checkpoint', ck];
  const killed = await runOccmap(args, () => existsSync(path.join(ck, 'checkpoint.json')));
  assert.equal(killed.signal, 'SIGKILL');
  assert.ok(!existsSync(out), 'no model after the kill');
  const r = await runOccmap(args);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /resuming from .*expl-ck: [1-4] epoch\(s\) done/);
  assert.ok(existsSync(path.join(out, 'card.json')));
  assert.ok(!existsSync(ck), 'the checkpoint is removed once the model is installed');
});
