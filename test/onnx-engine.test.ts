import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createOnnxSession, onnxSessionsCached, releaseOnnxSession } from '../src/runtime/onnx.js';
import { guessLayout, nhwcToNchw, type OnnxCore } from '../src/models/onnx-predictor.js';
import { looksLikeProbabilities, softmaxRows, type ModelPredictor } from '../src/models/predictor-head.js';
import { loadModel } from '../src/models/load.js';
import { saveModelDir } from '../src/models/model-dir.js';
import { encodeOnnxModel, type OnnxNode } from '../src/models/onnx-proto.js';
import { initTf, tf, tfl } from '../src/runtime/tfjs.js';
import { UserError } from '../src/util/errors.js';

const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'occmap-onnx-engine-'));

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `index ${i}: ${a[i]} vs ${b[i]}`);
}

// ---------------------------------------------------------------- pure helpers

test('softmaxRows: hand-computed rows, and no overflow on large logits', () => {
  close(softmaxRows(Float32Array.of(0, Math.log(3), 1000, 1000), 2, 2), [0.25, 0.75, 0.5, 0.5], 1e-7);
});

test('nhwcToNchw moves channels first (hand-computed 1x1x2x3)', () => {
  // pixels a, b with channels 0..2 -> channel planes [a0 b0] [a1 b1] [a2 b2]
  assert.deepEqual([...nhwcToNchw(Float32Array.of(10, 11, 12, 20, 21, 22), 1, 1, 2, 3)], [10, 20, 11, 21, 12, 22]);
});

test('guessLayout takes the small end as channels, and gives up when both ends are small', () => {
  assert.equal(guessLayout(['N', 21, 21, 1]), 'NHWC');
  assert.equal(guessLayout(['batch', 3, 32, 32]), 'NCHW');
  assert.equal(guessLayout([1, 3, 4, 4]), undefined);
  assert.equal(guessLayout(['N', 'h', 'w', 'c']), undefined);
});

test('looksLikeProbabilities', () => {
  assert.equal(looksLikeProbabilities(Float32Array.of(0.2, 0.8, 1, 0), 2, 2), true);
  assert.equal(looksLikeProbabilities(Float32Array.of(0.2, 0.7), 1, 2), false);
  assert.equal(looksLikeProbabilities(Float32Array.of(1.5, -0.5), 1, 2), false);
});

// ---------------------------------------------------------------- hand-built ONNX classifiers

interface LinearSpec {
  layout: 'NCHW' | 'NHWC';
  h: number;
  w: number;
  c: number;
  k: number;
  batch?: number | string;
  softmax?: boolean;
  seed?: number;
}

function weights(spec: LinearSpec): { W: Float32Array; b: Float32Array } {
  const d = spec.h * spec.w * spec.c;
  const W = Float32Array.from({ length: d * spec.k }, (_, i) => Math.sin(i * 1.7 + (spec.seed ?? 0)) * 0.5);
  const b = Float32Array.from({ length: spec.k }, (_, j) => 0.1 * (j - 1));
  return { W, b };
}

/** A linear classifier: Flatten (in the model's own layout) -> Gemm [-> Softmax]. */
function linearOnnx(spec: LinearSpec): Uint8Array {
  const { h, w, c, k } = spec;
  const { W, b } = weights(spec);
  const nodes: OnnxNode[] = [
    { opType: 'Flatten', inputs: ['x'], outputs: ['flat'], attributes: [{ name: 'axis', value: { type: 'int', value: 1 } }] },
    { opType: 'Gemm', inputs: ['flat', 'W', 'b'], outputs: [spec.softmax ? 'logits' : 'y'] },
  ];
  if (spec.softmax) nodes.push({ opType: 'Softmax', inputs: ['logits'], outputs: ['y'], attributes: [{ name: 'axis', value: { type: 'int', value: 1 } }] });
  const batch = spec.batch ?? 'N';
  return encodeOnnxModel({
    irVersion: 8,
    opsetVersion: 13,
    producerName: 'test',
    producerVersion: '0',
    graph: {
      name: 'linear',
      nodes,
      initializers: [
        { name: 'W', dims: [h * w * c, k], data: W },
        { name: 'b', dims: [k], data: b },
      ],
      inputs: [{ name: 'x', shape: spec.layout === 'NCHW' ? [batch, c, h, w] : [batch, h, w, c] }],
      outputs: [{ name: 'y', shape: [batch, k] }],
    },
  });
}

/** The same classifier computed by hand on NHWC images: logits = b + W . flatten(model layout). */
function expectedLogits(spec: LinearSpec, images: Float32Array, n: number): Float32Array {
  const { h, w, c, k } = spec;
  const { W, b } = weights(spec);
  const out = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) {
      let s = b[j];
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          for (let ch = 0; ch < c; ch++) {
            const d = spec.layout === 'NCHW' ? ch * h * w + y * w + x : (y * w + x) * c + ch;
            s += W[d * k + j] * images[((i * h + y) * w + x) * c + ch];
          }
        }
      }
      out[i * k + j] = s;
    }
  }
  return out;
}

function images(n: number, h: number, w: number, c: number): Float32Array {
  return Float32Array.from({ length: n * h * w * c }, (_, i) => ((i * 37) % 101) / 101);
}

const layoutOf = (p: ModelPredictor) => (p.core as OnnxCore).layout;

function writeModel(bytes: Uint8Array, name = 'm.onnx'): string {
  const f = path.join(tmp(), name);
  writeFileSync(f, bytes);
  return f;
}

test('bring-your-own NCHW logits classifier: layout and logits detected, softmax applied, batching invisible', async () => {
  const spec: LinearSpec = { layout: 'NCHW', h: 5, w: 5, c: 2, k: 3 };
  const file = writeModel(linearOnnx(spec));
  const n = 5;
  const x = images(n, 5, 5, 2);
  const want = softmaxRows(expectedLogits(spec, x, n), n, 3);
  const p = await loadModel(file, { threads: 1, batchSize: 2 });
  try {
    assert.equal(layoutOf(p), 'NCHW');
    assert.equal(p.outputs, 'logits');
    assert.deepEqual(p.inputShape, [5, 5, 2]);
    assert.equal(p.numClasses, 3);
    assert.equal(p.engine, 'onnxruntime (1 thread)');
    assert.match(p.hash, /^sha256:[0-9a-f]{16}$/);
    assert.equal(p.channels, undefined);
    close(await p.predict(x, n), want, 1e-5);
    assert.equal((await p.predict(new Float32Array(0), 0)).length, 0);
  } finally {
    p.dispose();
  }
});

test('NHWC classifier with a softmax in the graph: probabilities used as they are; explicit options win', async () => {
  const spec: LinearSpec = { layout: 'NHWC', h: 6, w: 6, c: 1, k: 2, softmax: true };
  const file = writeModel(linearOnnx(spec));
  const n = 4;
  const x = images(n, 6, 6, 1);
  const want = softmaxRows(expectedLogits(spec, x, n), n, 2);
  const p = await loadModel(file, { threads: 2 });
  assert.equal(layoutOf(p), 'NHWC');
  assert.equal(p.outputs, 'probs');
  assert.equal(p.engine, 'onnxruntime (2 threads)');
  close(await p.predict(x, n), want, 1e-5);
  p.dispose();
  // Declaring the probabilities logits softmaxes them a second time: the option is obeyed.
  const q = await loadModel(file, { threads: 1, outputs: 'logits', channels: [3] });
  assert.deepEqual(q.channels, [3]);
  close(await q.predict(x, n), softmaxRows(want, n, 2), 1e-5);
  q.dispose();
});

test('a model with a fixed batch of 1 runs any number of images', async () => {
  const spec: LinearSpec = { layout: 'NCHW', h: 5, w: 5, c: 3, k: 2, batch: 1 };
  const p = await loadModel(writeModel(linearOnnx(spec)), { threads: 1 });
  const x = images(3, 5, 5, 3);
  close(await p.predict(x, 3), softmaxRows(expectedLogits(spec, x, 3), 3, 2), 1e-5);
  p.dispose();
});

test('one output unit: needs --outputs; a logit becomes [1 - sigmoid, sigmoid]', async () => {
  const spec: LinearSpec = { layout: 'NHWC', h: 5, w: 5, c: 1, k: 1 };
  const file = writeModel(linearOnnx(spec));
  await assert.rejects(loadModel(file, { threads: 1 }), /m\.onnx: the output has one unit: .*outputs 'probs' or 'logits'/);
  const p = await loadModel(file, { threads: 1, outputs: 'logits' });
  assert.equal(p.numClasses, 2);
  const x = images(2, 5, 5, 1);
  const z = expectedLogits(spec, x, 2);
  const s = [...z].map((v) => 1 / (1 + Math.exp(-v)));
  close(await p.predict(x, 2), [1 - s[0], s[0], 1 - s[1], s[1]], 1e-5);
  p.dispose();
});

test('ambiguous input layout: a one-line error asking for --layout; an explicit layout works', async () => {
  const spec: LinearSpec = { layout: 'NCHW', h: 4, w: 4, c: 3, k: 2 };
  const file = writeModel(linearOnnx(spec));
  await assert.rejects(loadModel(file, { threads: 1 }), (err: Error) => {
    assert.ok(err instanceof UserError);
    assert.match(err.message, /^.*m\.onnx: cannot tell whether input shape \[N, 3, 4, 4\] is NCHW or NHWC; give the layout/);
    return true;
  });
  const p = await loadModel(file, { threads: 1, layout: 'NCHW' });
  const x = images(2, 4, 4, 3);
  close(await p.predict(x, 2), softmaxRows(expectedLogits(spec, x, 2), 2, 2), 1e-5);
  p.dispose();
});

// ---------------------------------------------------------------- exported tfjs classifiers

test('exported tfjs classifier directory: runs its model.onnx (NHWC from the metadata), channels and hash from card.json, same outputs as tfjs', async () => {
  await initTf('cpu');
  const L = tfl.layers;
  const model = tfl.sequential({
    layers: [
      L.zeroPadding2d({ inputShape: [9, 9, 1], padding: 2 }),
      L.conv2d({ filters: 4, kernelSize: 4, padding: 'same', activation: 'relu' }),
      L.maxPooling2d({ poolSize: 2 }),
      L.flatten(),
      L.dense({ units: 2, activation: 'softmax' }),
    ],
  });
  const dir = path.join(tmp(), 'clf');
  const { hash } = await saveModelDir(model, dir, { kind: 'classifier', occmapVersion: 'test', createdAt: 'now', channels: [3] }, { onnx: true });
  const n = 7;
  const x = images(n, 9, 9, 1);
  const p = await loadModel(dir, { threads: 1, batchSize: 3 });
  const y = model.predict(tf.tensor4d(x, [n, 9, 9, 1])) as InstanceType<typeof tf.Tensor>;
  try {
    assert.equal(layoutOf(p), 'NHWC');
    assert.equal(p.outputs, 'probs');
    assert.deepEqual(p.channels, [3]);
    assert.equal(p.hash, hash);
    assert.equal(p.engine, 'onnxruntime (1 thread)');
    assert.deepEqual(p.inputShape, [9, 9, 1]);
    close(await p.predict(x, n), y.dataSync(), 1e-4);
  } finally {
    p.dispose();
    y.dispose();
  }
  // The model.onnx path itself: the card beside it vouches for it, so its channels and hash apply.
  const q = await loadModel(path.join(dir, 'model.onnx'), { threads: 1 });
  assert.equal(q.hash, hash);
  assert.deepEqual(q.channels, [3]);
  q.dispose();
  model.dispose();
});

// ---------------------------------------------------------------- bad input

test('bad model files: one-line errors naming the file', async () => {
  const dir = tmp();
  const cases: [string, RegExp][] = [];
  const missing = path.join(dir, 'nope.onnx');
  cases.push([missing, /nope\.onnx: does not exist/]);
  cases.push([dir, /: is not a model directory \(no model\.json\)/]);
  const text = path.join(dir, 'text.onnx');
  writeFileSync(text, 'this is not a model\n');
  cases.push([text, /text\.onnx: not an ONNX model/]);
  const good = linearOnnx({ layout: 'NCHW', h: 5, w: 5, c: 2, k: 3 });
  const cut = path.join(dir, 'cut.onnx');
  writeFileSync(cut, good.subarray(0, good.length - 40));
  cases.push([cut, /cut\.onnx: (not an ONNX model|ONNX Runtime cannot load)/]);
  const twoInputs = encodeOnnxModel({
    irVersion: 8,
    opsetVersion: 13,
    producerName: 'test',
    producerVersion: '0',
    graph: {
      name: 'two',
      nodes: [{ opType: 'Add', inputs: ['a', 'b'], outputs: ['y'] }],
      initializers: [],
      inputs: [{ name: 'a', shape: ['N', 2] }, { name: 'b', shape: ['N', 2] }],
      outputs: [{ name: 'y', shape: ['N', 2] }],
    },
  });
  const two = path.join(dir, 'two.onnx');
  writeFileSync(two, twoInputs);
  cases.push([two, /two\.onnx: has 2 inputs \(a, b\); a classifier takes one image input/]);
  const unknownOp = encodeOnnxModel({
    irVersion: 8,
    opsetVersion: 13,
    producerName: 'test',
    producerVersion: '0',
    graph: {
      name: 'bad',
      nodes: [{ opType: 'NoSuchOp', inputs: ['x'], outputs: ['y'] }],
      initializers: [],
      inputs: [{ name: 'x', shape: ['N', 5, 5, 1] }],
      outputs: [{ name: 'y', shape: ['N', 2] }],
    },
  });
  const bad = path.join(dir, 'bad.onnx');
  writeFileSync(bad, unknownOp);
  cases.push([bad, /bad\.onnx: ONNX Runtime cannot load the model \(/]);
  for (const [file, re] of cases) {
    await assert.rejects(loadModel(file, { threads: 1 }), (err: Error) => {
      assert.ok(err instanceof UserError, `${file}: ${err}`);
      assert.match(err.message, re);
      assert.ok(!err.message.includes('\n'), err.message);
      return true;
    });
  }
  assert.equal(onnxSessionsCached(), 0, 'failed loads release their sessions');
});

// ---------------------------------------------------------------- session cache

test('session cache: equal requests share a session until the last release', async () => {
  const bytes = linearOnnx({ layout: 'NCHW', h: 5, w: 5, c: 2, k: 3 });
  const before = onnxSessionsCached();
  const a = await createOnnxSession(bytes, { threads: 1 });
  const b = await createOnnxSession(bytes, { threads: 1 });
  const c = await createOnnxSession(bytes, { threads: 2 });
  assert.equal(a, b);
  assert.notEqual(a, c);
  assert.equal(onnxSessionsCached(), before + 2);
  await releaseOnnxSession(a);
  assert.equal(onnxSessionsCached(), before + 2);
  await releaseOnnxSession(b);
  await releaseOnnxSession(c);
  assert.equal(onnxSessionsCached(), before);
  await assert.rejects(createOnnxSession(bytes, { threads: 0 }), /(^|: )threads must be a positive integer, got 0$/);
});
