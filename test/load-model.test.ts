/**
 * loadModel for every input kind, the finite-output check, and padded-input classifiers
 * (--pad): the same maps as a model that pads internally.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { initTf, tf, tfl } from '../src/runtime/tfjs.js';
import { fitToStamps, inputMargin, loadModel } from '../src/models/load.js';
import { ModelOutputError, firstBadOutput, padNhwc, softmaxRows, toProbabilities, type ModelPredictor } from '../src/models/predictor-head.js';
import { modelToOnnx } from '../src/models/to-onnx.js';
import { saveModelDir } from '../src/models/model-dir.js';
import { exactMaps, SEED_PARAMS, type OcclusionParams } from '../src/occlusion/exact.js';
import { UserError } from '../src/util/errors.js';
import { seedLikeSpec } from './fixtures/keras/make-fixtures.js';
import { writeKerasH5 } from './fixtures/keras/keras-h5-writer.js';

before(async () => {
  await initTf('cpu');
});

const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'occmap-load-model-'));

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

function stamps(n: number, h: number, w: number, c: number, seed = 1): Float32Array {
  return Float32Array.from({ length: n * h * w * c }, (_, i) => Math.abs(Math.sin(i * 0.37 + seed)) * (i % 5 === 0 ? 2 : 0.5));
}

function tfjsPredict(model: InstanceType<typeof tfl.LayersModel>, x: Float32Array, shape: [number, number, number, number]): Float32Array {
  return tf.tidy(() => (model.predict(tf.tensor4d(x, shape)) as InstanceType<typeof tf.Tensor>).dataSync() as Float32Array);
}

/** A seed-like classifier on 21x21 stamps; `pad` > 0 puts a ZeroPadding2D in front (the internal-pad model). */
function seedLike(inputSize: number, pad: number, seed = 5): InstanceType<typeof tfl.LayersModel> {
  const L = tfl.layers;
  const init = (s: number) => tfl.initializers.glorotUniform({ seed: s });
  return tfl.sequential({
    layers: [
      ...(pad > 0 ? [L.zeroPadding2d({ inputShape: [inputSize, inputSize, 1], padding: pad, name: 'pad' })] : []),
      L.conv2d({ ...(pad > 0 ? {} : { inputShape: [inputSize, inputSize, 1] }), filters: 4, kernelSize: 4, activation: 'relu', name: 'conv1', kernelInitializer: init(seed), biasInitializer: 'glorotUniform' }),
      L.maxPooling2d({ poolSize: 2, name: 'pool1' }),
      L.flatten({ name: 'flatten' }),
      L.dense({ units: 2, activation: 'softmax', name: 'out', kernelInitializer: init(seed + 1) }),
    ],
  });
}

/** The external-pad twin of an internal-pad model: the same layers and weights, the padded size as input. */
function externalTwin(internal: InstanceType<typeof tfl.LayersModel>, stamp: number, pad: number): InstanceType<typeof tfl.LayersModel> {
  const twin = seedLike(stamp + 2 * pad, 0);
  for (const name of ['conv1', 'out']) twin.getLayer(name).setWeights(internal.getLayer(name).getWeights());
  return twin;
}

const PARAMS: OcclusionParams = { ...SEED_PARAMS, normalize: 'none' };

// ---------------------------------------------------------------- pure helpers

test('toProbabilities: softmax of logits, [1-p, p] for one unit; firstBadOutput finds NaN, Inf and out-of-range values', () => {
  assert.ok(maxAbsDiff(toProbabilities(Float32Array.of(0, Math.log(3)), 1, 2, 'logits'), [0.25, 0.75]) < 1e-7);
  assert.deepEqual([...toProbabilities(Float32Array.of(0.25), 1, 1, 'probs')], [0.75, 0.25]);
  assert.ok(maxAbsDiff(toProbabilities(Float32Array.of(0), 1, 1, 'logits'), [0.5, 0.5]) < 1e-7);
  assert.equal(firstBadOutput(Float32Array.of(0, 1, 0.5), 'probs'), -1);
  assert.equal(firstBadOutput(Float32Array.of(0.5, NaN), 'probs'), 1);
  assert.equal(firstBadOutput(Float32Array.of(1.01), 'probs'), 0);
  assert.equal(firstBadOutput(Float32Array.of(-3, 40), 'logits'), -1);
  assert.equal(firstBadOutput(Float32Array.of(-3, Infinity), 'logits'), 1);
  assert.deepEqual([...softmaxRows(Float32Array.of(1000, 1000), 1, 2)], [0.5, 0.5]);
});

test('padNhwc: zeros around each image, the image in the middle (hand-computed 1x2x1x2)', () => {
  // one image 2x1 with 2 channels, padded by 1 -> 4x3
  const out = padNhwc(Float32Array.of(1, 2, 3, 4), 1, 2, 1, 2, 1);
  const want = new Float32Array(4 * 3 * 2);
  want.set([1, 2], (1 * 3 + 1) * 2);
  want.set([3, 4], (2 * 3 + 1) * 2);
  assert.deepEqual([...out], [...want]);
});

// ---------------------------------------------------------------- every input kind

test('a plain function: NHWC or NCHW batches, probabilities or logits; inputShape and numClasses required', async () => {
  const [h, w, c] = [3, 2, 2];
  const seen: number[][] = [];
  // Class 1's logit is the first value of each image as the function receives it.
  const fn = (batch: Float32Array, n: number) => {
    seen.push([n, batch.length]);
    const out = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) out[2 * i + 1] = batch[i * h * w * c];
    return out;
  };
  const x = Float32Array.from({ length: 2 * h * w * c }, (_, i) => i / 10);
  const p = await loadModel(fn, { inputShape: [h, w, c], numClasses: 2, outputs: 'logits', batchSize: 1 });
  assert.equal(p.engine, 'function');
  assert.match(p.hash, /^fn:[0-9a-f]{16}$/);
  const y = await p.predict(x, 2);
  assert.ok(maxAbsDiff(y, softmaxRows(Float32Array.of(0, x[0], 0, x[12]), 2, 2)) < 1e-6);
  assert.deepEqual(seen.at(-1), [1, 12], 'batches of batchSize images');
  // NCHW: the function gets channel planes first.
  const firsts: number[] = [];
  const q = await loadModel(
    (b: Float32Array, n: number) => {
      for (let i = 0; i < n; i++) firsts.push(b[i * 12 + 1]);
      return new Float32Array(2 * n).fill(0.5);
    },
    { inputShape: [h, w, c], numClasses: 2, layout: 'NCHW' },
  );
  assert.equal(q.outputs, 'probs');
  firsts.length = 0;
  await q.predict(x.slice(0, h * w * c), 1);
  assert.deepEqual(firsts, [x[2]], 'NCHW element 1 = pixel 1 of channel 0 = NHWC element 2');
  await assert.rejects(loadModel(fn, { numClasses: 2 }), /a function model needs inputShape/);
  await assert.rejects(loadModel(fn, { inputShape: [h, w, c] }), /a function model needs numClasses/);
});

test('outputs that are not finite probabilities: an error at load, and at predict for the image that gives them', async () => {
  const nan = () => new Float32Array([NaN, NaN, NaN, NaN]);
  await assert.rejects(loadModel(nan, { inputShape: [2, 2, 1], numClasses: 2, outputs: 'probs' }), (err: Error) => {
    assert.ok(err instanceof ModelOutputError && err instanceof UserError);
    assert.match(err.message, /^function nan: the model gave NaN for image 0 \(class 0\), not a finite probability/);
    return true;
  });
  // Finite on ordinary images, NaN once an image holds a large value.
  const p = await loadModel((b: Float32Array, n: number) => {
    const out = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) out.set(b[i * 4] > 100 ? [NaN, 0] : [0.3, 0.7], 2 * i);
    return out;
  }, { inputShape: [2, 2, 1], numClasses: 2 });
  assert.deepEqual([...(await p.predict(new Float32Array(4), 1))].map((v) => +v.toFixed(3)), [0.3, 0.7]);
  await assert.rejects(p.predict(Float32Array.of(0, 0, 0, 0, 500, 0, 0, 0), 2), /gave NaN for image 1 \(class 0\)/);
  // Declared logits must be finite too.
  await assert.rejects(
    loadModel((_b: Float32Array, n: number) => new Float32Array(2 * n).fill(Infinity), { inputShape: [1, 1, 1], numClasses: 2, outputs: 'logits' }),
    /gave Infinity for image 0 \(class 0\), not a finite logit/,
  );
});

test('an in-memory LayersModel runs converted on ONNX Runtime, equal to tfjs; the caller keeps a working model', async () => {
  const m = seedLike(9, 2);
  const x = stamps(3, 9, 9, 1);
  const want = tfjsPredict(m, x, [3, 9, 9, 1]);
  const p = await loadModel(m, { threads: 1 });
  assert.equal(p.engine, 'onnxruntime (1 thread)');
  assert.match(p.hash, /^[0-9a-f]{64}$/);
  assert.ok(maxAbsDiff(await p.predict(x, 3), want) < 1e-5);
  p.dispose();
  const t = await loadModel(m, { engine: 'tfjs' });
  assert.equal(t.engine, 'tfjs-cpu');
  assert.equal(t.hash, p.hash, 'the same model, the same hash');
  t.dispose();
  assert.deepEqual(tfjsPredict(m, x, [3, 9, 9, 1]), want, 'still usable after both predictors are disposed');
  m.dispose();
});

test('ONNX bytes and an InferenceSession: the same outputs; a session given stays the caller\'s', async () => {
  const m = seedLike(9, 2);
  const bytes = modelToOnnx(m).bytes;
  const x = stamps(2, 9, 9, 1);
  const want = tfjsPredict(m, x, [2, 9, 9, 1]);
  const a = await loadModel(bytes, { threads: 1 });
  assert.match(a.hash, /^sha256:[0-9a-f]{16}$/);
  assert.ok(maxAbsDiff(await a.predict(x, 2), want) < 1e-5);
  a.dispose();
  const session = await ort.InferenceSession.create(bytes);
  const b = await loadModel(session);
  assert.equal(b.engine, 'onnxruntime');
  assert.match(b.hash, /^session:/);
  assert.ok(maxAbsDiff(await b.predict(x, 2), want) < 1e-5);
  b.dispose();
  const again = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x.slice(0, 81), [1, 9, 9, 1]) });
  assert.equal((again[session.outputNames[0]].data as Float32Array).length, 2, 'the session still runs');
  await session.release();
  await assert.rejects(loadModel(bytes, { engine: 'tfjs' }), /ONNX bytes run on ONNX Runtime only/);
  m.dispose();
});

test('bad options and inputs: one-line errors naming the field and the value', async () => {
  const fn = (_b: Float32Array, n: number) => new Float32Array(2 * n);
  const cases: [Parameters<typeof loadModel>[1], RegExp][] = [
    [{ engine: 'gpu' as never }, /engine must be auto, onnx or tfjs, got "gpu"/],
    [{ threads: 0 }, /loadModel: threads must be a positive integer, got 0/],
    [{ batchSize: 1.5 }, /loadModel: batchSize must be a positive integer, got 1\.5/],
    [{ layout: 'CHW' as never }, /loadModel: layout must be 'auto', 'NHWC' or 'NCHW', got "CHW"/],
    [{ outputs: 'scores' as never }, /loadModel: outputs must be 'auto', 'probs' or 'logits', got "scores"/],
    [{ channels: [-1] }, /loadModel: channels must be a non-empty list of channel indices/],
    [{ pad: -2 }, /loadModel: pad must be a non-negative integer, got -2/],
    [{ inputShape: [21, 21] as never }, /loadModel: inputShape must be \[height, width, channels\]/],
    [{ numClasses: 0 }, /loadModel: numClasses must be a positive integer, got 0/],
  ];
  for (const [opts, re] of cases) {
    await assert.rejects(loadModel(fn, { inputShape: [2, 2, 1], numClasses: 2, ...opts }), (err: Error) => {
      assert.ok(err instanceof UserError, String(err));
      assert.match(err.message, re);
      assert.ok(!err.message.includes('\n'));
      return true;
    });
  }
  await assert.rejects(loadModel(42 as never), /loadModel: expected a model directory or file path, ONNX bytes .*; got number/);
  await assert.rejects(loadModel(fn, { inputShape: [6, 6, 1], numClasses: 2, pad: 3 }), /pad 3 leaves nothing of the model's 6x6 input/);
  await assert.rejects(loadModel(fn, { inputShape: [6, 6, 1], numClasses: 2, channels: [0, 1] }), /reads 2 data channel\(s\) \[0,1\] but the model takes 1/);
});

// ---------------------------------------------------------------- padded-input classifiers (--pad)

test('pad: a model whose input is the padded stamp gives the same maps as its internal-pad twin (fill 0 and 0.5)', async () => {
  const [S, P, n] = [21, 3, 2];
  const internal = seedLike(S, P);
  const twin = externalTwin(internal, S, P);
  const x = stamps(n, S, S, 1, 3);
  const a = await loadModel(internal, { threads: 1 });
  const b = await loadModel(twin, { threads: 1, pad: P });
  assert.deepEqual(b.inputShape, [S, S, 1], 'the padded-input model takes stamps');
  assert.equal(b.pad, P);
  assert.ok(maxAbsDiff(await a.predict(x, n), await b.predict(x, n)) < 1e-6);
  for (const fill of [0, 0.5]) {
    const ma = await exactMaps(a, x, [n, S, S, 1], { ...PARAMS, fill });
    const mb = await exactMaps(b, x, [n, S, S, 1], { ...PARAMS, fill });
    const d = maxAbsDiff(ma.maps, mb.maps);
    assert.ok(d < 1e-6, `fill ${fill}: max abs diff ${d}`);
    assert.ok(new Set(Array.from(ma.maps).map((v) => v.toFixed(4))).size > 10, 'the maps are not flat');
  }
  // fitToStamps does the same from a model loaded without the option.
  const loaded = await loadModel(twin, { threads: 1 });
  assert.equal(inputMargin(loaded, S, S), P);
  const fitted = fitToStamps(loaded, S, S, P);
  assert.equal(fitted.padded, P);
  assert.ok(maxAbsDiff(await fitted.predictor.predict(x, n), await a.predict(x, n)) < 1e-6);
  assert.equal(fitToStamps(a, S, S, P).padded, 0, 'a model that takes the stamps is left alone');
  assert.equal(fitToStamps(await loadModel(twin, { threads: 1 }), S, S, 2).padded, 0, 'only the matching pad');
  for (const p of [a, b, fitted.predictor as ModelPredictor]) p.dispose();
  internal.dispose();
  twin.dispose();
});

test('Keras 2 .h5 with a 27x27 input (the seed\'s classifier shape): converted to ONNX at load, --pad 3 gives the internal-pad maps', async () => {
  const [S, P, n] = [21, 3, 2];
  const internal = seedLike(S, P, 8);
  const [convKernel, convBias] = internal.getLayer('conv1').getWeights().map((t) => t.dataSync() as Float32Array);
  const [denseKernel, denseBias] = internal.getLayer('out').getWeights().map((t) => t.dataSync() as Float32Array);
  const file = path.join(tmp(), 'seed27.h5');
  await writeKerasH5(file, seedLikeSpec(S + 2 * P, 4, 2, { convKernel, convBias, denseKernel, denseBias }));

  const notes: string[] = [];
  const k = await loadModel(file, { pad: P, threads: 1, onNote: (l) => notes.push(l) });
  assert.equal(k.engine, 'onnxruntime (1 thread)', 'converted to ONNX at load');
  assert.deepEqual(notes, []);
  assert.deepEqual(k.inputShape, [S, S, 1]);
  assert.equal(k.outputs, 'probs', 'from the softmax activation');
  const a = await loadModel(internal, { threads: 1 });
  const x = stamps(n, S, S, 1, 7);
  const ma = await exactMaps(a, x, [n, S, S, 1], PARAMS);
  const mk = await exactMaps(k, x, [n, S, S, 1], PARAMS);
  assert.ok(maxAbsDiff(ma.maps, mk.maps) < 1e-6, `max abs diff ${maxAbsDiff(ma.maps, mk.maps)}`);
  // On tfjs (asked), the same maps up to the two engines' float rounding.
  const kt = await loadModel(file, { pad: P, engine: 'tfjs' });
  assert.equal(kt.engine, 'tfjs-cpu');
  const dt = maxAbsDiff((await exactMaps(kt, x, [n, S, S, 1], PARAMS)).maps, ma.maps);
  assert.ok(dt < 1e-5, `tfjs vs ONNX Runtime: max abs diff ${dt}`);
  assert.equal(k.hash, kt.hash);
  assert.equal(k.hash.length, 64);
  assert.notEqual(readFileSync(file).length, 0);
  for (const p of [a, k, kt]) p.dispose();
  internal.dispose();
});

test('saved directories too: the twin saved with saveModelDir and loaded with pad equals the internal-pad directory', async () => {
  const [S, P] = [21, 3];
  const internal = seedLike(S, P, 11);
  const twin = externalTwin(internal, S, P);
  const root = tmp();
  const card = { kind: 'classifier', occmapVersion: 'test', createdAt: 'now' };
  await saveModelDir(internal, path.join(root, 'internal'), card, { onnx: true });
  await saveModelDir(twin, path.join(root, 'external'), card, { onnx: true });
  const a = await loadModel(path.join(root, 'internal'), { threads: 1 });
  const b = await loadModel(path.join(root, 'external'), { threads: 1, pad: P });
  const x = stamps(1, S, S, 1, 2);
  const d = maxAbsDiff((await exactMaps(a, x, [1, S, S, 1], PARAMS)).maps, (await exactMaps(b, x, [1, S, S, 1], PARAMS)).maps);
  assert.ok(d < 1e-6, `max abs diff ${d}`);
  a.dispose();
  b.dispose();
  internal.dispose();
  twin.dispose();
});

test('occmap occlude --pad 3 on a 27x27 Keras .h5 and 21x21 stamps: pads them (with a note), the same maps as the internal-pad model, in 1 or 2 workers', async () => {
  const { spawnSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const { readDataset, writeDataset } = await import('../src/data/dataset.js');
  const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));
  const [S, P, n] = [21, 3, 3];
  const root = tmp();
  const internal = seedLike(S, P, 13);
  const [convKernel, convBias] = internal.getLayer('conv1').getWeights().map((t) => t.dataSync() as Float32Array);
  const [denseKernel, denseBias] = internal.getLayer('out').getWeights().map((t) => t.dataSync() as Float32Array);
  const h5 = path.join(root, 'seed27.h5');
  await writeKerasH5(h5, seedLikeSpec(S + 2 * P, 4, 2, { convKernel, convBias, denseKernel, denseBias }));
  await saveModelDir(internal, path.join(root, 'internal'), { kind: 'classifier', occmapVersion: 'test', createdAt: 'now' }, { onnx: true });
  internal.dispose();
  const data = path.join(root, 'stamps.npz');
  await writeDataset(data, { images: stamps(n, S, S, 1, 4), shape: [n, S, S, 1], labels: Int32Array.of(0, 1, 0), meta: { source: 'test' } });
  const occlude = (model: string, out: string, ...extra: string[]) => {
    const r = spawnSync(process.execPath, [bin, 'occlude', '--model', model, '--data', data, '--out', out, '--normalize', 'none', '--threads', '1', ...extra], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stderr;
  };
  const ref = path.join(root, 'internal.npz');
  occlude(path.join(root, 'internal'), ref, '--quiet');
  const want = (await readDataset(ref)).maps!;
  for (const workers of ['1', '2']) {
    const out = path.join(root, `h5-${workers}.npz`);
    const stderr = occlude(h5, out, '--workers', workers);
    assert.match(stderr, /seed27\.h5 takes 27x27 images: the 21x21 stamps are zero-padded by 3 before it \(pad 3\)/);
    const got = await readDataset(out);
    const d = maxAbsDiff(got.maps!, want);
    assert.ok(d < 1e-6, `${workers} worker(s): max abs diff ${d}`);
    assert.equal((got.meta.occlusion as Record<string, unknown>).modelPad, 3);
  }
  // --pad that does not fit the model: the error says which would.
  const r = spawnSync(process.execPath, [bin, 'occlude', '--model', h5, '--data', data, '--out', path.join(root, 'x.npz'), '--pad', '1'], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /model input is 27x27x1 but the data images are 21x21.*if the model takes the stamps zero-padded by 3, use --pad 3/);
});
