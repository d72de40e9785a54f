/**
 * The shipped models (models/hits2015, made by `npm run pretrain -- --install`) work with no
 * model arguments: `occmap explain --input <one .npy stamp>` prints probabilities and writes a
 * map; `occmap serve` with no arguments serves the page with the shipped stamps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseServeOptions } from '../src/cli/serve.js';
import { readDataset } from '../src/data/dataset.js';
import { serializeNpy } from '../src/data/npy.js';
import { parseNpz } from '../src/data/npz.js';
import { pretrained } from '../src/models/pretrained.js';
import { verifyModelDir } from '../src/models/model-dir.js';
import { startServer } from '../src/serve/app.js';

const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));

test('the pretrained models are installed and verified by their cards', () => {
  const p = pretrained();
  assert.ok(verifyModelDir(p.classifier));
  assert.ok(verifyModelDir(p.explainer));
  assert.match(readFileSync(p.card, 'utf8'), /Figures \(held-out objects\)/);
});

test('occmap explain --input stamp.npy, nothing else: probabilities, the class explained, a map and a PNG', async () => {
  const sample = await readDataset(pretrained().sample);
  const [, h, w, c] = sample.shape;
  const dir = mkdtempSync(path.join(tmpdir(), 'occ-pre-'));
  try {
    writeFileSync(path.join(dir, 'stamp.npy'), serializeNpy(sample.images.slice(0, h * w * c), [h, w, c]));
    const r = spawnSync(process.execPath, [bin, 'explain', '--input', 'stamp.npy'], { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /P\(not_supernova\) \d\.\d{3}  P\(supernova\) \d\.\d{3}  map for: (not_)?supernova/);
    assert.match(r.stdout, /map legend: .*LOW = important/);
    const { arrays } = parseNpz(readFileSync(path.join(dir, 'stamp-explained.npz')));
    assert.deepEqual(arrays.get('maps')!.shape, [1, h, w]);
    const probs = arrays.get('probabilities')!.data as Float32Array;
    assert.ok(Math.abs(probs[0] + probs[1] - 1) < 1e-5);
    assert.ok(readFileSync(path.join(dir, 'stamp-explained.png')).length > 100);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('serve with no model arguments: the shipped models and stamps', async () => {
  const o = parseServeOptions({ port: '0', host: '127.0.0.1', engine: 'auto', threads: '1', exactNice: '0', bodyLimit: '1000000', maxExactQueue: '4', exactThreads: '1' });
  const server = await startServer(o);
  try {
    const list = (await (await fetch(`${server.url}/api/stamps?limit=5`)).json()) as { total: number; items: { id: string; heldOut: boolean }[] };
    const sample = await readDataset(pretrained().sample);
    assert.equal(list.total, sample.shape[0]);
    assert.ok(list.items.every((it) => it.heldOut), 'the shipped stamps are held-out ones');
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
  } finally {
    await server.close();
  }
});
