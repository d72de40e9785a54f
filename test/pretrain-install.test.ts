/**
 * `npm run pretrain -- --install`: what it puts in the repository is loadable, verified by its
 * card's hashes, portable (no paths of the machine that trained it), and described by a card
 * whose figures come from the evaluation file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { installPretrained, sampleRows, spread } from '../scripts/pretrain-install.js';
import { readDataset } from '../src/data/dataset.js';
import { verifyModelDir } from '../src/models/model-dir.js';
import { makeServeFixtures } from './serve-fixtures.js';

test('spread picks evenly and sampleRows keeps held-out originals per class', async () => {
  assert.deepEqual(spread([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 5), [0, 2, 4, 6, 8]);
  assert.deepEqual(spread([1, 2], 5), [1, 2]);
  // Two supernova objects x8 copies, then 4 others; hold out one of each kind.
  const labels = Int32Array.from([...Array(16).fill(1), 0, 0, 0, 0]);
  const ds = { images: new Float32Array(20), shape: [20, 1, 1, 1] as [number, number, number, number], labels, meta: { derivation: { augment: 'dihedral', augmentLabels: [1] } } };
  const heldOut = [8, 9, 10, 11, 12, 13, 14, 15, 18, 19];
  assert.deepEqual(sampleRows(ds, heldOut, 5), [8, 18, 19]);
  assert.deepEqual(sampleRows(ds, heldOut, 1), [8, 18]);
});

test('installPretrained: verified, portable model directories, a sample of held-out stamps, a card from the evaluation', async () => {
  const fx = await makeServeFixtures();
  const work = mkdtempSync(path.join(tmpdir(), 'occ-pretrain-'));
  try {
    cpSync(fx.classifier, path.join(work, 'classifier'), { recursive: true });
    cpSync(fx.explainer, path.join(work, 'explainer'), { recursive: true });
    const card = JSON.parse(readFileSync(path.join(work, 'explainer', 'card.json'), 'utf8'));
    card.split = { ...card.split, valIndices: [2, 3, 4, 5], valCount: 4 };
    card.classifier = path.resolve(fx.classifier);
    card.data = path.resolve(work, 'maps.npz');
    writeFileSync(path.join(work, 'explainer', 'card.json'), JSON.stringify(card));
    cpSync(fx.data, path.join(work, 'maps.npz'));
    const evaluation = { indices: [2, 3, 4, 5], methods: [{ name: 'explainer', summary: { ssim: { mean: 0.9123, std: 0, n: 4 }, spearman: { mean: 0.8766, std: 0, n: 4 } } }], exact: { name: 'exactMap', summary: { deletion: { mean: 0.4321, std: 0, n: 4 } } } };
    writeFileSync(path.join(work, 'evaluation.json'), JSON.stringify(evaluation));
    const out = path.join(work, 'installed');
    await installPretrained({ work, out, command: 'npm run pretrain -- --install', perClass: 1 });
    for (const d of ['classifier', 'explainer']) {
      const v = verifyModelDir(path.join(out, d));
      assert.ok(v, `${d} verifies`);
      const text = readFileSync(path.join(out, d, 'card.json'), 'utf8');
      assert.ok(!text.includes(work) && !text.includes(fx.dir), `${d}/card.json names no absolute path of this machine`);
      assert.ok(existsSync(path.join(out, d, 'model.onnx')), `${d} has its ONNX export`);
    }
    const sample = await readDataset(path.join(out, 'sample.npz'));
    assert.equal(sample.shape[0], 2, 'one held-out stamp per class');
    assert.ok(sample.maps, 'with its exact maps');
    const readme = readFileSync(path.join(out, 'README.md'), 'utf8');
    assert.match(readme, /\| explainer \| 0\.912 \| 0\.877 \|/);
    assert.match(readme, /exact map \(reference\) \| \| \| \| \| 0\.432/);
    assert.ok(existsSync(path.join(out, 'heldout-objects.txt')));
    assert.ok(!existsSync(`${out}.staging-${process.pid}`), 'no staging left');
  } finally {
    rmSync(work, { recursive: true, force: true });
    rmSync(fx.dir, { recursive: true, force: true });
  }
});
