/**
 * Issue 11 item 1 end to end: a model directory with flipped bytes (same size) in weights.bin
 * or model.onnx is refused by every command that loads it (occlude, explain, evaluate, serve),
 * with a one-line error naming the file, a non-zero exit and no output; and a model whose
 * outputs are not finite probabilities is a server error, never an HTTP 200.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeServeFixtures, type ServeFixtures } from './serve-fixtures.js';

const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));

let fx: ServeFixtures;
before(async () => {
  fx = await makeServeFixtures();
});
after(() => {
  rmSync(fx.dir, { recursive: true, force: true });
});

/** A copy of `dir` with `count` bytes flipped in the middle of `file` (its size unchanged). */
function corrupted(dir: string, file: string, tag: string, count = 64): string {
  const copy = `${dir}-${tag}`;
  cpSync(dir, copy, { recursive: true });
  const f = path.join(copy, file);
  const b = readFileSync(f);
  const size = b.length;
  const at = Math.floor(size / 2);
  for (let i = 0; i < count && at + i < size; i++) b[at + i] ^= 0x5a;
  writeFileSync(f, b);
  assert.equal(statSync(f).size, size);
  return copy;
}

function run(args: string[]): Promise<{ status: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, OCCMAP_BACKEND: 'cpu' } });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => (stdout += d));
    child.on('close', (status) => resolve({ status, stderr, stdout }));
  });
}

async function refused(args: string[], file: string, out?: string): Promise<void> {
  const r = await run(args);
  const lines = r.stderr.trim().split('\n');
  assert.notEqual(r.status, 0, `${args[0]} accepted ${file}: ${r.stderr}`);
  const want = `${file}: does not match card.json (sha256 `;
  const line = lines.find((l) => l.includes(want));
  assert.ok(line, `${args[0]}: no line naming ${file}:\n${r.stderr}`);
  assert.match(line!, /\): the model directory is corrupted or was edited; retrain or restore it$/);
  assert.ok(!r.stderr.includes('    at '), `a stack trace:\n${r.stderr}`);
  if (out) assert.ok(!existsSync(out), `${out} was written`);
}

test('flipped bytes in the classifier weights.bin or model.onnx: occlude, explain, evaluate and serve refuse it', async () => {
  for (const file of ['weights.bin', 'model.onnx']) {
    const clf = corrupted(fx.classifier, file, file.replace('.', '-'));
    const bad = path.join(clf, file);
    const out = path.join(fx.dir, `maps-${file}.npz`);
    await refused(['occlude', '--model', clf, '--data', fx.data, '--out', out, '--pad', '1', '--limit', '1', '--quiet'], bad, out);
    await refused(['explain', '--explainer', fx.explainer, '--input', fx.data, '--model', clf, '--exact', '--out', out, '--quiet'], bad, out);
    await refused(['evaluate', '--explainer', fx.explainer, '--data', fx.data, '--model', clf, '--split', 'all', '--steps', '2', '--quiet'], bad);
    await refused(['serve', '--classifier', clf, '--explainer', fx.explainer, '--port', '0'], bad);
  }
});

test('flipped bytes in the explainer weights.bin or model.onnx: explain, evaluate and serve refuse it', async () => {
  for (const file of ['weights.bin', 'model.onnx']) {
    const expl = corrupted(fx.explainer, file, file.replace('.', '-'));
    const bad = path.join(expl, file);
    const out = path.join(fx.dir, `est-${file}.npz`);
    await refused(['explain', '--explainer', expl, '--input', fx.data, '--out', out, '--quiet'], bad, out);
    await refused(['evaluate', '--explainer', expl, '--data', fx.data, '--split', 'all', '--no-faithfulness', '--quiet'], bad);
    await refused(['serve', '--classifier', fx.classifier, '--explainer', expl, '--port', '0'], bad);
  }
});

test('a classifier whose outputs turn NaN on a stamp: the server answers 500 naming the model, never a 200', async () => {
  const { startServer } = await import('../src/serve/app.js');
  const { loadModel } = await import('../src/models/load.js');
  const { serializeNpy } = await import('../src/data/npy.js');
  const { H, W, C } = await import('./serve-fixtures.js');
  const server = await startServer({ classifier: fx.classifier, explainer: fx.explainer, port: 0, host: '127.0.0.1', exactThreads: 1 });
  const real = server.ctx.predictor;
  try {
    // Same shape and channels as the real classifier; NaN once the first pixel is above 50.
    server.ctx.predictor = await loadModel(
      (b: Float32Array, n: number) => {
        const out = new Float32Array(2 * n);
        for (let i = 0; i < n; i++) out.set(b[i * H * W] > 50 ? [NaN, NaN] : [0.4, 0.6], 2 * i);
        return out;
      },
      { inputShape: real.inputShape, numClasses: 2, channels: real.channels, name: 'nan-model' },
    );
    const post = async (image: Float32Array) => {
      const r = await fetch(`${server.url}/explain`, { method: 'POST', body: Buffer.from(serializeNpy(image, [H, W, C])), headers: { 'content-type': 'application/octet-stream' } });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const ok = await post(fx.images.slice(0, H * W * C));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const image = fx.images.slice(0, H * W * C);
    image[1] = 1000; // pixel 0 of channel 1, the one the classifier reads
    const bad = await post(image);
    assert.equal(bad.status, 500, JSON.stringify(bad.body));
    assert.match(String(bad.body.error), /nan-model: the model gave NaN for image 0 \(class 0\), not a finite probability/);
    assert.ok(!('probabilities' in bad.body));
  } finally {
    server.ctx.predictor.dispose();
    server.ctx.predictor = real;
    await server.close();
  }
});
