/**
 * The library's long jobs called in-process through the public API (src/index.ts), as a user
 * would: datasets (simulate, write, read, derive HiTS 2015), trainClassifier, occludeDataset and
 * trainExplainer on a tiny fixture. Each returns its results, writes files only with `out`, and
 * reports progress through callbacks (nothing on stdout).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  deriveHits2015,
  buildHits2015,
  exactMaps,
  loadPredictor,
  occludeDataset,
  readDataset,
  SEED_PARAMS,
  simulateDataset,
  trainClassifier,
  trainExplainer,
  writeDataset,
  tf,
  type EpochRecord,
  type ProgressEvent,
} from '../src/index.js';
import { defaultArchivePath, readHits2015Archive, type Hits2015Archive } from '../src/data/hits2015/archive.js';
import { archiveOf } from './hits2015-fixtures.js';

let tmp: string;
const stdout: string[] = [];
const write = process.stdout.write.bind(process.stdout);

before(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'occmap-libjobs-'));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Run `f` with stdout captured: library jobs must not print. */
async function silent<T>(f: () => Promise<T>): Promise<T> {
  process.stdout.write = ((chunk: string | Uint8Array, enc?: unknown, cb?: unknown) => {
    stdout.push(String(chunk));
    const done = typeof enc === 'function' ? enc : cb;
    if (typeof done === 'function') queueMicrotask(() => done());
    return true;
  }) as typeof process.stdout.write;
  try {
    return await f();
  } finally {
    process.stdout.write = write;
  }
}

/** The events of one label: starts at its `start`, counts up by one, ends with a final event or at total. */
function checkProgress(events: ProgressEvent[], label: string, unit: string, total: number): number {
  const es = events.filter((e) => e.label === label);
  assert.ok(es.length >= 2, `${label}: ${es.length} events`);
  assert.ok(es.every((e) => e.unit === unit && e.total === total), JSON.stringify(es[0]));
  assert.equal(es[0].done, es[0].start ?? 0);
  for (let i = 1; i < es.length; i++) assert.ok(es[i].done >= es[i - 1].done && es[i].done <= total);
  const last = es[es.length - 1];
  assert.ok(last.final === true || last.done === total);
  return last.done;
}

test('datasets, trainClassifier, occludeDataset, trainExplainer: in-process, results returned, files only with out, progress by callback', { timeout: 240_000 }, async () => {
  // Datasets: simulate, write, read back.
  const sim = simulateDataset({ n: 40, size: 9, seed: 5 });
  const file = path.join(tmp, 'sim.npz');
  await writeDataset(file, sim.dataset);
  const ds = await readDataset(file);
  assert.deepEqual(ds.shape, [40, 9, 9, 4]);
  assert.deepEqual(Array.from(ds.images), Array.from(sim.dataset.images));
  assert.deepEqual(ds.ids, sim.dataset.ids);

  // trainClassifier without out: the model in memory, nothing written.
  const events: ProgressEvent[] = [];
  const epochs: EpochRecord[] = [];
  const before = readdirSync(tmp).sort();
  const mem = await silent(() => trainClassifier({ data: ds, dataName: 'sim', epochs: 2, pad: 1, seed: 1, channels: '3', workers: 1, onProgress: (e) => events.push(e), onEpoch: (e) => epochs.push(e) }));
  assert.deepEqual(readdirSync(tmp).sort(), before);
  assert.equal(mem.result.epochsRun, epochs.length);
  assert.deepEqual(epochs.map((e) => e.epoch), Array.from({ length: epochs.length }, (_, i) => i + 1));
  assert.equal(checkProgress(events, 'train classifier', 'epochs', 2), mem.result.epochsRun);
  mem.model.dispose();

  // With out: the model directory, which occludeDataset then loads from its path.
  const clf = path.join(tmp, 'clf');
  const t = await silent(() => trainClassifier({ data: file, out: clf, epochs: 1, pad: 1, seed: 1, channels: '3', workers: 1 }));
  t.model.dispose();
  assert.ok(existsSync(path.join(clf, 'card.json')) && existsSync(path.join(clf, 'model.onnx')));

  // occludeDataset without out: maps returned, no file; they are the exact maps of the model.
  events.length = 0;
  const occ = await silent(() => occludeDataset({ model: clf, data: file, limit: 12, workers: 1, onProgress: (e) => events.push(e) }));
  assert.deepEqual(readdirSync(tmp).sort(), [...before, 'clf'].sort());
  assert.deepEqual(occ.dataset.shape, [12, 9, 9, 4]);
  assert.equal(occ.summary.maps, 12);
  const label = events.find((e) => e.unit === 'maps')!.label;
  assert.equal(checkProgress(events, label, 'maps', 12), 12);
  const predictor = await loadPredictor(clf);
  const ref = await exactMaps(predictor, occ.dataset.images, [12, 9, 9, 4], SEED_PARAMS);
  let diff = 0;
  for (let i = 0; i < ref.maps.length; i++) diff = Math.max(diff, Math.abs(ref.maps[i] - occ.dataset.maps![i]));
  assert.ok(diff < 1e-6, `max |occludeDataset - exactMaps| = ${diff}`);
  predictor.dispose();

  // With out: the file, whole.
  const mapsFile = path.join(tmp, 'maps.npz');
  await silent(() => occludeDataset({ model: clf, data: file, out: mapsFile, limit: 12, workers: 1 }));
  assert.deepEqual(Array.from((await readDataset(mapsFile)).maps!), Array.from(occ.dataset.maps!));

  // trainExplainer on the maps in memory, without out: models returned, nothing written; progress per epoch.
  events.length = 0;
  const members: number[] = [];
  const ex = await silent(() =>
    trainExplainer({ data: occ.dataset, dataName: 'maps', classifier: clf, variant: 'normal', epochs: 2, seed: 1, workers: 1, onProgress: (e) => events.push(e), onEpoch: (_, k) => members.push(k) }),
  );
  assert.equal(ex.models?.length, 1);
  assert.deepEqual(readdirSync(tmp).sort(), [...before, 'clf', 'maps.npz'].sort());
  assert.equal(checkProgress(events, 'train explainer', 'epochs', 2), ex.results[0].epochsRun);
  assert.deepEqual(members, Array(ex.results[0].epochsRun).fill(0));
  const est = ex.models![0].predict(tf.zeros([1, ...(ex.models![0].inputs[0].shape.slice(1) as number[])])) as { shape: number[]; dispose(): void };
  assert.equal(est.shape[0], 1);
  est.dispose();
  for (const m of ex.models!) m.dispose();
  assert.deepEqual(stdout, [], 'library jobs printed nothing');
});

/** A few objects of the shipped archive: 2 supernovae and the constant stars that calibrate their fields. */
function smallArchive(): Hits2015Archive {
  const A = readHits2015Archive(defaultArchivePath());
  const pick: number[] = [];
  let sn = 0;
  A.classes.forEach((c, o) => {
    if (c === 'supernova' && sn < 2) {
      pick.push(o);
      sn++;
    } else if (c === 'constant' && o % 8 === 0) {
      pick.push(o);
    }
  });
  return archiveOf(A, pick);
}

test('deriveHits2015 / buildHits2015 through the public API: a dataset returned, progress by callback, nothing printed', async () => {
  const archive = smallArchive();
  const objects = new Set(archive.object).size;
  const events: ProgressEvent[] = [];
  const d = await silent(async () => deriveHits2015({ archive, classes: ['supernova', 'constant'], onProgress: (e) => events.push(e) }));
  const n = d.images.length;
  assert.ok(n > 0 && d.h === 21 && d.w === 21 && d.images[0].length === 21 * 21 * 4, `${n} stamps ${d.h}x${d.w}`);
  assert.equal(d.labels.length, n);
  const objEvents = events.filter((e) => e.unit === 'objects');
  assert.ok(objEvents.length >= 2);
  assert.equal(objEvents[objEvents.length - 1].done, objEvents[objEvents.length - 1].total);
  assert.ok(objEvents[0].total <= objects);
  const b = await silent(async () => buildHits2015({ archive, classes: ['supernova', 'constant'], balance: 'undersample', seed: 1 }));
  const ones = Array.from(b.dataset.labels!).filter((l) => l === 1).length;
  assert.equal(ones * 2, b.dataset.labels!.length, 'undersampled to balance');
  assert.deepEqual(stdout, []);
});

test('library option errors name the library fields (the CLI words OptionErrors as flags, test/queue.test.ts)', async () => {
  const sim = simulateDataset({ n: 12, size: 9, seed: 5 }).dataset;
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ epochs: 0 }, /(^|: )epochs must be an integer >= 1, got 0$/],
    [{ batchSize: 2.5 }, /(^|: )batchSize must be an integer >= 1, got 2\.5$/],
    [{ patience: 0 }, /(^|: )patience must be an integer >= 1, got 0$/],
    [{ valFraction: 1 }, /(^|: )valFraction must be between 0 and 1 \(exclusive\), got 1$/],
    [{ workers: 0 }, /(^|: )workers must be a positive integer, got 0$/],
  ];
  for (const [opts, msg] of bad) {
    await assert.rejects(silent(() => trainClassifier({ data: sim, dataName: 'sim', pad: 1, channels: '3', ...opts })), msg, JSON.stringify(opts));
  }
  await assert.rejects(loadPredictor(path.join(tmp, 'none'), { engine: 'gpu' as never }), /(^|: )engine must be auto, onnx or tfjs, got "gpu"$/);
});
