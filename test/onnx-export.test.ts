import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initTf, tf, tfl } from '../src/runtime/tfjs.js';
import { exportModelToOnnx, modelToOnnx, permute, samePadding, META_LAYOUT, ONNX_OPSET } from '../src/models/to-onnx.js';
import { encodeOnnxModel, ProtoWriter, readOnnxHeader, readProtoFields } from '../src/models/onnx-proto.js';
import { createOnnxSession, releaseOnnxSession, runOnnxBatched } from '../src/runtime/onnx.js';
import { UserError } from '../src/util/errors.js';

type Model = InstanceType<typeof tfl.LayersModel>;
type Sym = ReturnType<typeof tfl.input>;
type Layer = InstanceType<typeof tfl.layers.Layer>;
const apply = (l: Layer, t: Sym | Sym[]): Sym => l.apply(t) as Sym;
const L = tfl.layers;

// ---------------------------------------------------------------- protobuf writer, by hand

test('protobuf varints and fields match hand-encoded bytes', () => {
  const w = new ProtoWriter();
  w.varint(1, 300); // tag 0x08, 300 = 0b10_0101100 -> ac 02
  w.varint(2, -1); // int64 -1: ten bytes
  w.string(3, 'hi'); // tag 0x1a, len 2
  w.float(4, 1); // tag 0x25, 0x3f800000 little-endian
  assert.deepEqual(
    [...w.finish()],
    [0x08, 0xac, 0x02, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x1a, 0x02, 0x68, 0x69, 0x25, 0x00, 0x00, 0x80, 0x3f],
  );
  const fields = readProtoFields(w.finish());
  assert.deepEqual(
    fields.map((f) => [f.field, f.wire]),
    [[1, 0], [2, 0], [3, 2], [4, 5]],
  );
  assert.equal(fields[0].value, 300n);
  assert.equal(BigInt.asIntN(64, fields[1].value as bigint), -1n);
});

test('readOnnxHeader reads back IR version, opset and metadata; rejects non-ONNX bytes', () => {
  const bytes = encodeOnnxModel({
    irVersion: 8,
    opsetVersion: 13,
    producerName: 'me',
    producerVersion: '1',
    graph: { name: 'g', nodes: [], initializers: [], inputs: [], outputs: [] },
    metadata: { a: 'b' },
  });
  assert.deepEqual(readOnnxHeader(bytes), { irVersion: 8, producerName: 'me', opsetVersion: 13, metadata: { a: 'b' } });
  assert.throws(() => readOnnxHeader(new TextEncoder().encode('{"modelTopology": 1}')), RangeError);
});

// ---------------------------------------------------------------- pure helpers

test('permute is numpy transpose (hand-computed 2x3 and 2x2x2 cases)', () => {
  assert.deepEqual([...permute(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3], [1, 0])], [1, 4, 2, 5, 3, 6]);
  // x[i,j,k] = 4i + 2j + k; perm [2,0,1]: out[k,i,j] = x[i,j,k]
  const x = Float32Array.from({ length: 8 }, (_, i) => i);
  assert.deepEqual([...permute(x, [2, 2, 2], [2, 0, 1])], [0, 2, 4, 6, 1, 3, 5, 7]);
  assert.throws(() => permute(x, [2, 2, 2], [0, 0, 1]), RangeError);
});

test("samePadding puts the odd pixel after, like TensorFlow's 'same'", () => {
  assert.deepEqual(samePadding(27, 4, 1), [1, 2]);
  assert.deepEqual(samePadding(27, 3, 1), [1, 1]);
  assert.deepEqual(samePadding(6, 3, 2), [0, 1]); // out 3: (3-1)*2 + 3 - 6 = 1
  assert.deepEqual(samePadding(7, 3, 2), [1, 1]); // out 4: 3*2 + 3 - 7 = 2
  assert.deepEqual(samePadding(5, 3, 1, 2), [2, 2]); // effective kernel 5
  assert.deepEqual(samePadding(4, 1, 2), [0, 0]);
});

// ---------------------------------------------------------------- parity: ONNX Runtime vs tfjs

/** Deterministic pseudo-random numbers (test data only). */
function rand(n: number, seed: number, lo = 0, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 8) / 2 ** 24) * (hi - lo);
  }
  return out;
}

/** Non-trivial biases and batch-norm statistics (their initialisers are 0/1, which would hide mistakes). */
function randomiseNonKernels(model: Model, seed: number): void {
  let k = seed;
  for (const layer of model.layers) {
    const ws = layer.getWeights();
    if (ws.length === 0) continue;
    const next = layer.weights.map((v, i) => {
      const name = v.originalName;
      const shape = ws[i].shape;
      const size = ws[i].size;
      if (/moving_variance$/.test(name)) return tf.tensor(rand(size, ++k, 0.5, 2), shape);
      if (/(bias|beta|moving_mean)$/.test(name)) return tf.tensor(rand(size, ++k, -0.3, 0.3), shape);
      if (/(gamma|alpha)$/.test(name)) return tf.tensor(rand(size, ++k, 0.5, 1.5), shape);
      return ws[i];
    });
    layer.setWeights(next);
  }
}

/**
 * Export `model` with every layer's output as an extra graph output, run both engines and
 * return the max abs diff of the model's own outputs. Every intermediate tensor must agree too
 * (to 1e-4 of its scale), so a wrong layout or padding cannot hide behind a final softmax or
 * sigmoid that saturates.
 */
async function maxDiffAgainstTfjs(model: Model, feeds: { data: Float32Array; shape: number[] }[], n: number): Promise<number> {
  const finals = model.outputs as unknown as Sym[];
  const finalLayers = new Set(finals.map((t) => (t as unknown as { sourceLayer: Layer }).sourceLayer));
  const probes = model.layers
    .filter((l) => l.getClassName() !== 'InputLayer' && !finalLayers.has(l) && (l as unknown as { inboundNodes: unknown[] }).inboundNodes.length === 1)
    .map((l) => l.output as Sym);
  assert.ok(probes.length > 0);
  const wide = tfl.model({ inputs: model.inputs, outputs: [...finals, ...probes] });
  const { bytes } = modelToOnnx(wide);
  const session = await createOnnxSession(bytes, { threads: 1, cache: false });
  const xs = feeds.map((f) => tf.tensor(f.data, [n, ...f.shape]));
  try {
    const inputs = (model.inputs as unknown as { sourceLayer: Layer }[]).map((t) => t.sourceLayer.name);
    assert.deepEqual([...session.inputNames], inputs);
    assert.equal(session.outputNames.length, finals.length + probes.length);
    const ys = wide.predict(xs.length === 1 ? xs[0] : xs) as InstanceType<typeof tf.Tensor>[];
    let finalMax = 0;
    for (let o = 0; o < ys.length; o++) {
      const out = await runOnnxBatched(
        session,
        feeds.map((f, i) => ({ name: inputs[i], data: f.data, shape: f.shape })),
        n,
        { output: session.outputNames[o] },
      );
      const expected = ys[o].dataSync();
      assert.deepEqual(out.shape, ys[o].shape.slice(1), `shape of ${session.outputNames[o]}`);
      let max = 0;
      let scale = 1;
      for (let i = 0; i < expected.length; i++) {
        max = Math.max(max, Math.abs(out.data[i] - expected[i]));
        scale = Math.max(scale, Math.abs(expected[i]));
      }
      if (o < finals.length) finalMax = Math.max(finalMax, max);
      else assert.ok(max <= 1e-4 * scale, `layer ${session.outputNames[o]}: max abs diff ${max} at scale ${scale}`);
    }
    tf.dispose(ys);
    return finalMax;
  } finally {
    tf.dispose(xs);
    await releaseOnnxSession(session);
  }
}

function seedEncoder(x: ReturnType<typeof tfl.input>, act: 'relu' | 'linear'): ReturnType<typeof tfl.input> {
  const conv = (f: number, k: number) => L.conv2d({ filters: f, kernelSize: k, padding: 'same', activation: act });
  let h = conv(32, 4).apply(x) as ReturnType<typeof tfl.input>;
  h = conv(32, 3).apply(h) as ReturnType<typeof tfl.input>;
  h = L.maxPooling2d({ poolSize: 2 }).apply(h) as ReturnType<typeof tfl.input>;
  for (let i = 0; i < 3; i++) h = conv(64, 3).apply(h) as ReturnType<typeof tfl.input>;
  return L.maxPooling2d({ poolSize: 2 }).apply(h) as ReturnType<typeof tfl.input>;
}

function seedClassifier(act: 'relu' | 'linear'): Model {
  const x = tfl.input({ shape: [21, 21, 1], name: 'image' });
  let h = L.zeroPadding2d({ padding: 3 }).apply(x) as ReturnType<typeof tfl.input>;
  h = seedEncoder(h, act);
  h = L.flatten().apply(h) as ReturnType<typeof tfl.input>;
  h = L.dense({ units: 64, activation: act }).apply(h) as ReturnType<typeof tfl.input>;
  h = L.dense({ units: 64, activation: act }).apply(h) as ReturnType<typeof tfl.input>;
  h = L.dropout({ rate: 0.5 }).apply(h) as ReturnType<typeof tfl.input>;
  const y = L.dense({ units: 2, activation: 'softmax' }).apply(h) as ReturnType<typeof tfl.input>;
  return tfl.model({ inputs: x, outputs: y });
}

function seedDecoder(z: ReturnType<typeof tfl.input>): ReturnType<typeof tfl.input> {
  const conv = (f: number, k: number, activation = 'relu') =>
    L.conv2d({ filters: f, kernelSize: k, padding: 'same', activation: activation as 'relu' });
  let h = L.reshape({ targetShape: [6, 6, 1] }).apply(z) as ReturnType<typeof tfl.input>;
  for (let i = 0; i < 3; i++) h = conv(64, 3).apply(h) as ReturnType<typeof tfl.input>;
  h = L.upSampling2d({ size: [2, 2] }).apply(h) as ReturnType<typeof tfl.input>;
  h = conv(32, 3).apply(h) as ReturnType<typeof tfl.input>;
  h = conv(32, 4).apply(h) as ReturnType<typeof tfl.input>;
  h = L.upSampling2d({ size: [2, 2] }).apply(h) as ReturnType<typeof tfl.input>;
  return conv(1, 3, 'sigmoid').apply(h) as ReturnType<typeof tfl.input>;
}

test('parity: seed classifier (relu and linear), ONNX Runtime vs tfjs, max abs diff < 1e-4', async () => {
  await initTf('cpu');
  for (const act of ['relu', 'linear'] as const) {
    const model = seedClassifier(act);
    randomiseNonKernels(model, act === 'relu' ? 1 : 2);
    const n = 5;
    const diff = await maxDiffAgainstTfjs(model, [{ data: rand(n * 21 * 21, 7), shape: [21, 21, 1] }], n);
    assert.ok(diff < 1e-4, `${act}: max abs diff ${diff}`);
    model.dispose();
  }
});

test('parity: seed autoencoder (24x24 -> Dense 36 softmax -> 6x6 -> 24x24 sigmoid)', async () => {
  await initTf('cpu');
  const x = tfl.input({ shape: [24, 24, 1], name: 'image' });
  let h = seedEncoder(x, 'relu');
  h = L.flatten().apply(h) as ReturnType<typeof tfl.input>;
  h = L.dense({ units: 36, activation: 'softmax' }).apply(h) as ReturnType<typeof tfl.input>;
  const model = tfl.model({ inputs: x, outputs: seedDecoder(h) });
  randomiseNonKernels(model, 3);
  const n = 3;
  const diff = await maxDiffAgainstTfjs(model, [{ data: rand(n * 24 * 24, 8), shape: [24, 24, 1] }], n);
  assert.ok(diff < 1e-4, `max abs diff ${diff}`);
  model.dispose();
});

test('parity: conditioned autoencoder with two inputs (image + one-hot label into the bottleneck)', async () => {
  await initTf('cpu');
  const x = tfl.input({ shape: [24, 24, 1], name: 'image' });
  const label = tfl.input({ shape: [2], name: 'label' });
  let h = seedEncoder(x, 'relu');
  h = L.flatten().apply(h) as ReturnType<typeof tfl.input>;
  h = L.dense({ units: 34, activation: 'softmax' }).apply(h) as ReturnType<typeof tfl.input>;
  const z = L.concatenate({ axis: -1 }).apply([h, label]) as ReturnType<typeof tfl.input>;
  const model = tfl.model({ inputs: [x, label], outputs: seedDecoder(z) });
  randomiseNonKernels(model, 4);
  const n = 4;
  const labels = Float32Array.of(1, 0, 0, 1, 0, 1, 1, 0);
  const diff = await maxDiffAgainstTfjs(model, [{ data: rand(n * 24 * 24, 9), shape: [24, 24, 1] }, { data: labels, shape: [2] }], n);
  assert.ok(diff < 1e-4, `max abs diff ${diff}`);
  model.dispose();
});

test('parity: the other layers (valid/stride 2/dilation, avg pool, cropping, batchnorm, bilinear, activations, 4D concat)', async () => {
  await initTf('cpu');
  const x = tfl.input({ shape: [17, 16, 3], name: 'img' });
  let h = apply(L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'valid', activation: 'tanh' }), x); // 8x7
  let g = apply(L.conv2d({ filters: 6, kernelSize: 4, strides: 2, padding: 'same', activation: 'elu' }), x); // 9x8
  g = apply(L.cropping2D({ cropping: [[1, 0], [0, 1]] }), g); // 8x7
  h = apply(L.concatenate({}), [h, g]); // 8x7x14
  h = apply(L.batchNormalization({}), h);
  h = apply(L.activation({ activation: 'selu' }), h);
  h = apply(L.conv2d({ filters: 5, kernelSize: 3, dilationRate: 2, padding: 'same', useBias: false, activation: 'softplus' }), h);
  h = apply(L.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same' }), h); // 4x4
  h = apply(L.leakyReLU({ alpha: 0.2 }), h);
  h = apply(L.upSampling2d({ size: [2, 3], interpolation: 'bilinear' }), h); // 8x12
  h = apply(L.maxPooling2d({ poolSize: [2, 3], strides: [2, 2], padding: 'same' }), h); // 4x6
  h = apply(L.zeroPadding2d({ padding: [[0, 1], [2, 0]] }), h); // 5x8
  h = apply(L.conv2d({ filters: 4, kernelSize: [2, 3], activation: 'hardSigmoid' }), h); // 4x6
  h = apply(L.reshape({ targetShape: [6, 4, 4] }), h); // Reshape of a 4D value: element order must stay NHWC
  h = apply(L.conv2d({ filters: 3, kernelSize: 1, activation: 'swish' }), h);
  h = apply(L.flatten(), h);
  h = apply(L.dense({ units: 10, activation: 'relu6' }), h);
  h = apply(L.batchNormalization({}), h);
  h = apply(L.dense({ units: 6, activation: 'gelu' }), h);
  h = apply(L.dense({ units: 4, activation: 'sigmoid' }), h);
  const model = tfl.model({ inputs: x, outputs: h });
  randomiseNonKernels(model, 5);
  const n = 3;
  const diff = await maxDiffAgainstTfjs(model, [{ data: rand(n * 17 * 16 * 3, 10, -1, 2), shape: [17, 16, 3] }], n);
  assert.ok(diff < 1e-4, `max abs diff ${diff}`);
  model.dispose();
});

test('parity: separable/depthwise conv, PReLU, global pooling, merge layers, nested Sequential, NHWC 4D output', async () => {
  await initTf('cpu');
  const inner = tfl.sequential({
    layers: [
      L.depthwiseConv2d({ inputShape: [10, 10, 3], kernelSize: 3, depthMultiplier: 2, padding: 'same', activation: 'relu' }),
      L.separableConv2d({ filters: 5, kernelSize: 3, padding: 'valid' }),
      L.prelu({}),
    ],
  }); // 8x8x5
  const x = tfl.input({ shape: [10, 10, 3], name: 'x' });
  const a = apply(inner, x);
  const b = apply(L.conv2d({ filters: 5, kernelSize: 3, activation: 'mish' }), x);
  const sum = apply(L.add({}), [a, b]);
  const prod = apply(L.multiply({}), [a, b]);
  const m = apply(L.maximum({}), [sum, prod]);
  const avg = apply(L.average({}), [m, a]);
  const gap = apply(L.globalAveragePooling2d({}), avg);
  const gmp = apply(L.globalMaxPooling2d({}), avg);
  let v = apply(L.concatenate({}), [gap, gmp]);
  v = apply(L.dense({ units: 3 }), v);
  v = apply(L.softmax({}), v);
  const model = tfl.model({ inputs: x, outputs: [v, avg] });
  randomiseNonKernels(model, 6);
  randomiseNonKernels(inner, 7);
  const n = 2;
  const data = rand(n * 10 * 10 * 3, 11, -1, 1);
  // two outputs: compare each (runOnnxBatched returns the first by default, so check both by name)
  const { bytes } = modelToOnnx(model);
  const session = await createOnnxSession(bytes, { threads: 1, cache: false });
  try {
    const xs = tf.tensor(data, [n, 10, 10, 3]);
    const ys = model.predict(xs) as InstanceType<typeof tf.Tensor>[];
    for (let o = 0; o < 2; o++) {
      const got = await runOnnxBatched(session, [{ name: 'x', data, shape: [10, 10, 3] }], n, { output: session.outputNames[o] });
      assert.deepEqual(got.shape, ys[o].shape.slice(1));
      const exp = ys[o].dataSync();
      let max = 0;
      for (let i = 0; i < exp.length; i++) max = Math.max(max, Math.abs(got.data[i] - exp[i]));
      assert.ok(max < 1e-4, `output ${o}: max abs diff ${max}`);
    }
    tf.dispose([xs, ...ys]);
  } finally {
    await releaseOnnxSession(session);
  }
  model.dispose();
});

// ---------------------------------------------------------------- the file

test('exportModelToOnnx writes an ONNX file with NHWC metadata, opset 13 and the tfjs input/output shapes', async () => {
  await initTf('cpu');
  const dir = mkdtempSync(path.join(tmpdir(), 'occmap-onnx-'));
  const model = seedClassifier('relu');
  const file = path.join(dir, 'model.onnx');
  const info = await exportModelToOnnx(model, file);
  const bytes = readFileSync(file);
  assert.equal(bytes.length, info.bytes);
  const header = readOnnxHeader(bytes);
  assert.equal(header.metadata[META_LAYOUT], 'NHWC');
  assert.equal(header.opsetVersion, ONNX_OPSET);
  assert.deepEqual(info.inputs[0].shape, [null, 21, 21, 1]);
  assert.deepEqual(info.outputs[0].shape, [null, 2]);
  const session = await createOnnxSession(file, { threads: 1, cache: false });
  const meta = session.inputMetadata[0];
  assert.ok(meta.isTensor);
  assert.deepEqual(meta.isTensor ? meta.shape.slice(1) : [], [21, 21, 1]);
  await releaseOnnxSession(session);
  assert.deepEqual(readdirSync(dir), ['model.onnx'], 'no temp files left');
  model.dispose();
});

test('an unsupported layer is a one-line error naming the output file and the layer; nothing is written', async () => {
  await initTf('cpu');
  const dir = mkdtempSync(path.join(tmpdir(), 'occmap-onnx-'));
  const model = tfl.sequential({ layers: [L.conv1d({ inputShape: [8, 2], filters: 2, kernelSize: 3 })] });
  const file = path.join(dir, 'm.onnx');
  await assert.rejects(exportModelToOnnx(model, file), (err: Error) => {
    assert.ok(err instanceof UserError);
    assert.match(err.message, /m\.onnx: cannot export layer '.*' \(Conv1D\) to ONNX: unsupported layer type/);
    assert.ok(!err.message.includes('\n'));
    return true;
  });
  assert.equal(existsSync(file), false);
  assert.deepEqual(readdirSync(dir), []);
  model.dispose();
});

/** op_type of every node of an exported graph. */
function opTypes(bytes: Uint8Array): string[] {
  const graph = readProtoFields(bytes).find((f) => f.field === 7)!.value as Uint8Array;
  return readProtoFields(graph)
    .filter((f) => f.field === 1)
    .map((f) => new TextDecoder().decode(readProtoFields(f.value as Uint8Array).find((g) => g.field === 4)!.value as Uint8Array));
}

test('a Conv over concatenated channels with a thin part reads the parts (its Concat pruned); block-wide parts keep their Concat; a one-output Conv is depthwise + a channel sum', async () => {
  await initTf('cpu');
  const x = tfl.input({ shape: [10, 10, 3], name: 'img' });
  const plane = tfl.input({ shape: [10, 10, 1], name: 'plane' });
  const h = apply(L.conv2d({ filters: 16, kernelSize: 3, padding: 'same', activation: 'relu' }), x);
  const thin = apply(L.concatenate({}), [h, plane]); // 17 channels: split
  const a = apply(L.conv2d({ filters: 16, kernelSize: 3, padding: 'same', activation: 'relu' }), thin);
  const wide = apply(L.concatenate({}), [a, h]); // 32 channels: kept
  const y = apply(L.conv2d({ filters: 1, kernelSize: [3, 2], strides: [1, 2], padding: 'same' }), wide); // one output: depthwise + channel sum
  const model = tfl.model({ inputs: [x, plane], outputs: y });
  randomiseNonKernels(model, 6);
  const n = 3;
  const diff = await maxDiffAgainstTfjs(model, [{ data: rand(n * 300, 11), shape: [10, 10, 3] }, { data: rand(n * 100, 12), shape: [10, 10, 1] }], n);
  assert.ok(diff < 1e-4, `max abs diff ${diff}`);
  const ops = opTypes(modelToOnnx(model).bytes);
  assert.equal(ops.filter((o) => o === 'Concat').length, 1, ops.join(','));
  assert.equal(ops.filter((o) => o === 'Conv').length, 4, ops.join(','));
  assert.equal(ops.filter((o) => o === 'ReduceSum').length, 1, ops.join(','));
  model.dispose();
});

test('pruneDead keeps what feeds the outputs, in order, and the initializers they read', async () => {
  const { pruneDead } = await import('../src/models/onnx-export/graph.js');
  const node = (name: string, inputs: string[], outputs: string[]) => ({ opType: 'X', name, inputs, outputs });
  const t = (name: string) => ({ name, dims: [1], data: Float32Array.of(0) });
  const nodes = [node('a', ['in', 'wa'], ['ya']), node('dead', ['ya', 'wd'], ['yd']), node('b', ['ya', 'wb'], ['out']), node('dead2', ['yd'], ['yd2'])];
  const r = pruneDead(nodes, [t('wa'), t('wd'), t('wb')], ['out']);
  assert.deepEqual(r.nodes.map((x) => x.name), ['a', 'b']);
  assert.deepEqual(r.initializers.map((x) => x.name), ['wa', 'wb']);
});
