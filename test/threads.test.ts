/**
 * Issue 11 item 7: a worker thread holding ONNX Runtime sessions is stopped without a native
 * abort. terminate() while the thread is inside a session run aborts the whole process
 * ("terminate called after throwing an instance of 'Napi::Error'"); stopWorker lets the batch
 * finish, the thread release its session and end by itself.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initTf, tfl } from '../src/runtime/tfjs.js';
import { exportModelToOnnx } from '../src/models/to-onnx.js';
import { StopRequested, ThreadLifecycle } from '../src/runtime/threads.js';
import type { Predictor } from '../src/models/predictor.js';

const child = fileURLToPath(new URL('./fixtures/threads/stop-child.js', import.meta.url));
const model = path.join(mkdtempSync(path.join(tmpdir(), 'occ-threads-')), 'm.onnx');

before(async () => {
  await initTf('cpu');
  const m = tfl.sequential({
    layers: [
      tfl.layers.conv2d({ inputShape: [9, 9, 1], filters: 8, kernelSize: 3, activation: 'relu' }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 2, activation: 'softmax' }),
    ],
  });
  await exportModelToOnnx(m, model, {});
  m.dispose();
});

function runChild(how: string): Promise<{ code: number | null; signal: string | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, model, how], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('exit', (code, signal) => resolve({ code, signal, out }));
  });
}

test('stopWorker stops a thread in the middle of ONNX Runtime runs without an abort (10 of 10)', async () => {
  for (let i = 0; i < 10; i++) {
    const r = await runChild('stop');
    assert.equal(r.signal, null, r.out);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^stopped\n$/);
  }
});

test('a guarded predictor refuses new batches once stopping began; stop waits for the work in hand', async () => {
  const life = new ThreadLifecycle();
  let calls = 0;
  let disposed = false;
  const p: Predictor = {
    inputShape: [1, 1, 1],
    numClasses: 2,
    engine: 'fake',
    hash: 'h',
    predict: async () => {
      calls++;
      await new Promise((r) => setTimeout(r, 5));
      return new Float32Array(2);
    },
    dispose: () => {
      disposed = true;
    },
  };
  const g = life.guard(p);
  assert.equal(g.hash, 'h');
  const job = life.track(async () => {
    for (;;) await g.predict(new Float32Array(1), 1);
  });
  await new Promise((r) => setTimeout(r, 20));
  let closed = false;
  const stopped = life.stop({ close: () => (closed = true) } as unknown as import('node:worker_threads').MessagePort, () => g.dispose());
  await assert.rejects(job, StopRequested);
  await stopped;
  assert.ok(disposed && closed);
  const n = calls;
  await assert.rejects(g.predict(new Float32Array(1), 1), StopRequested);
  assert.equal(calls, n, 'no batch after stop');
  await assert.rejects(life.track(async () => 1), StopRequested);
});
