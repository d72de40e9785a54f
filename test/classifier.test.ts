import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { initTf, tf, tfl } from '../src/runtime/tfjs.js';
import { buildClassifier, resolveChannels, validationReport, CLASSIFIER_LAYERS } from '../src/models/classifier.js';
import { trainClassifier } from '../src/models/train-classifier.js';
import { activation, conv, dense, flatten, maxPool, stack, dropout, countParams, layerSeeds } from '../src/models/layers.js';
import { trainModel, evaluate, lossTensor, type TrainSet } from '../src/train/loop.js';
import { leakedGroups } from '../src/data/split.js';
import { Rng } from '../src/util/rng.js';
import type { Dataset } from '../src/data/dataset.js';

before(async () => {
  // The plain-JS backend: has every gradient kernel and is deterministic.
  await initTf('cpu');
});

/** n stamps s x s: label 1 = a bright Gaussian blob at the centre, label 0 = noise only. */
function blobs(n: number, s: number, seed: number): { x: Float32Array; y: Int32Array } {
  const rng = new Rng(seed);
  const x = new Float32Array(n * s * s);
  const y = new Int32Array(n);
  const c = (s - 1) / 2;
  for (let i = 0; i < n; i++) {
    y[i] = i % 2;
    for (let p = 0; p < s * s; p++) {
      const d2 = (Math.floor(p / s) - c) ** 2 + ((p % s) - c) ** 2;
      x[i * s * s + p] = 0.2 * rng.next() + (y[i] ? 0.8 * Math.exp(-d2 / 3) : 0);
    }
  }
  return { x, y };
}

/**
 * A tiny CNN from the same builders, fast enough on the cpu backend for many epochs. Ends like
 * the classifier (logits + softmax layer) or, `fusedSoftmax`, in Dense(2, softmax).
 */
function tinyModel(s: number, seed = 0, fusedSoftmax = false) {
  const next = layerSeeds(seed);
  return stack('tiny', [s, s, 1], [
    conv(4, 3, { name: 'c1', activation: 'relu', seed: next() }),
    maxPool({ name: 'p1' }),
    flatten({ name: 'f' }),
    dense(8, { name: 'd1', activation: 'relu', seed: next() }),
    dropout(0.5, { name: 'dropout' }),
    ...(fusedSoftmax
      ? [dense(2, { name: 'out', activation: 'softmax', seed: next() })]
      : [dense(2, { name: 'out', seed: next() }), activation('softmax', { name: 'softmax' })]),
  ]);
}

const quiet = { quiet: true, log: () => {} };

test('seed classifier: layer sequence, output shapes and parameter count for 21x21x1, pad 3', () => {
  const m = buildClassifier({ inputShape: [21, 21, 1], numClasses: 2 });
  assert.deepEqual(m.layers.map((l) => l.name), ['input', ...CLASSIFIER_LAYERS]);
  const shapes = Object.fromEntries(m.layers.map((l) => [l.name, (l.outputShape as number[]).slice(1)]));
  assert.deepEqual(shapes.pad, [27, 27, 1]);
  assert.deepEqual(shapes.conv1, [27, 27, 32]);
  assert.deepEqual(shapes.conv2, [27, 27, 32]);
  assert.deepEqual(shapes.pool1, [13, 13, 32]);
  assert.deepEqual(shapes.conv5, [13, 13, 64]);
  assert.deepEqual(shapes.pool2, [6, 6, 64]);
  assert.deepEqual(shapes.flatten, [2304]);
  assert.deepEqual(shapes.out, [2]);
  // conv1 4*4*1*32+32 = 544; conv2 3*3*32*32+32 = 9248; conv3 3*3*32*64+64 = 18496;
  // conv4 = conv5 = 3*3*64*64+64 = 36928; dense1 2304*64+64 = 147520; dense2 64*64+64 = 4160;
  // out 64*2+2 = 130. Sum: 253954 (conv1..conv5 alone: 102144, the frozen autoencoder encoder).
  assert.equal(countParams(m), 253954);
  const convs = ['conv1', 'conv2', 'conv3', 'conv4', 'conv5'].map((n) => countParams(m.getLayer(n)));
  assert.equal(convs.reduce((a, b) => a + b, 0), 102144);
  assert.equal(m.getLayer('conv1').getConfig().activation, 'relu');
  assert.equal(m.getLayer('out').getConfig().activation, 'linear');
  assert.equal(m.getLayer('softmax').getConfig().activation, 'softmax');
  // Probabilities out.
  const p = tf.tidy(() => tf.sum(m.predict(tf.ones([2, 21, 21, 1])) as tf.Tensor, -1).dataSync());
  for (const v of p) assert.ok(Math.abs(v - 1) < 1e-5);
  m.dispose();
});

test('seed classifier options: channels, pad 0, classes, linear activation', () => {
  // 4 channels: conv1 = 4*4*4*32+32 = 2080 instead of 544.
  const m4 = buildClassifier({ inputShape: [21, 21, 4], numClasses: 2 });
  assert.equal(countParams(m4), 253954 - 544 + 2080);
  // No padding: 21 -> pool 10 -> pool 5, flatten 5*5*64 = 1600, dense1 1600*64+64 = 102464.
  const m0 = buildClassifier({ inputShape: [21, 21, 1], numClasses: 3, pad: 0, activation: 'linear' });
  assert.equal(m0.layers[1].name, 'conv1');
  assert.deepEqual((m0.getLayer('flatten').outputShape as number[]).slice(1), [1600]);
  assert.equal(countParams(m0), 102144 + 102464 + 4160 + (64 * 3 + 3));
  assert.equal(m0.getLayer('dense2').getConfig().activation, 'linear');
  assert.throws(() => buildClassifier({ inputShape: [21, 21, 1], numClasses: 1 }), /at least 2 classes/);
  m4.dispose();
  m0.dispose();
});

test('same seed -> same initial weights; different seed -> different', () => {
  const w = (seed: number) => {
    const m = buildClassifier({ inputShape: [9, 9, 1], numClasses: 2, pad: 1, seed });
    const v = Array.from(m.getLayer('conv3').getWeights()[0].dataSync().slice(0, 50));
    m.dispose();
    return v;
  };
  assert.deepEqual(w(5), w(5));
  assert.notDeepEqual(w(5), w(6));
});

test('channel selection: HiTS default, names, indices, errors naming the file', () => {
  const hits = ['template', 'science', 'difference', 'snr_difference'];
  assert.deepEqual(resolveChannels(undefined, 4, hits, 'd.npz'), [3]);
  assert.deepEqual(resolveChannels(undefined, 4, undefined, 'd.pkl', 'hits2013-pickle'), [3]);
  assert.deepEqual(resolveChannels(undefined, 4, undefined, 'd.npy'), [0, 1, 2, 3]);
  assert.deepEqual(resolveChannels(undefined, 1, undefined, 'd.npy'), [0]);
  assert.deepEqual(resolveChannels(undefined, 4, ['a', 'b', 'c', 'd'], 'd.npz'), [0, 1, 2, 3]);
  assert.deepEqual(resolveChannels('SNR-Difference', 4, hits, 'd.npz'), [3]);
  assert.deepEqual(resolveChannels('snr', 4, hits, 'd.npz'), [3]);
  assert.deepEqual(resolveChannels('difference,template', 4, hits, 'd.npz'), [2, 0]);
  assert.deepEqual(resolveChannels('2,3', 4, hits, 'd.npz'), [2, 3]);
  assert.deepEqual(resolveChannels('all', 4, hits, 'd.npz'), [0, 1, 2, 3]);
  assert.throws(() => resolveChannels('5', 4, hits, 'd.npz'), /^UserError: d\.npz: channel 5 is out of range: the images have 4 channel/);
  assert.throws(() => resolveChannels('flux', 4, hits, 'd.npz'), /d\.npz: has no channel named 'flux'/);
  assert.throws(() => resolveChannels('3', 1, undefined, 'd.npy'), /d\.npy: channel 3 is out of range/);
  assert.throws(() => resolveChannels('1,1', 4, hits, 'd.npz'), /twice/);
});

test('validation report: confusion matrix, accuracy, balanced accuracy by hand', () => {
  // true:  0 0 0 0 1 1 ; predicted: 0 0 0 1 1 0
  const probs = new Float32Array([0.9, 0.1, 0.8, 0.2, 0.6, 0.4, 0.3, 0.7, 0.1, 0.9, 0.7, 0.3]);
  const r = validationReport([0, 0, 0, 0, 1, 1], probs, 2);
  assert.deepEqual(r.confusion, [[3, 1], [1, 1]]);
  assert.equal(r.accuracy, 4 / 6);
  assert.equal(r.balancedAccuracy, (3 / 4 + 1 / 2) / 2);
  // A class absent from the labels does not count in the balanced mean.
  assert.equal(validationReport([0, 0], new Float32Array([1, 0, 0, 0, 0.4, 0.3, 0.2, 0.1]), 4).balancedAccuracy, 1);
});

test('sparse cross-entropy matches the hand-computed value', () => {
  // -(ln 0.8 + ln 0.25) / 2
  const v = tf.tidy(() => lossTensor('sparse_categorical_crossentropy', tf.tensor1d([0, 1], 'int32'), tf.tensor2d([[0.8, 0.2], [0.75, 0.25]])).dataSync()[0]);
  assert.ok(Math.abs(v - -(Math.log(0.8) + Math.log(0.25)) / 2) < 1e-6);
  const mse = tf.tidy(() => lossTensor('mse', tf.tensor1d([1, 0]), tf.tensor1d([0.5, 0.5])).dataSync()[0]);
  assert.ok(Math.abs(mse - 0.25) < 1e-7);
});

test('training loop learns a separable dataset well above chance', async () => {
  const s = 8;
  const { x, y } = blobs(60, s, 1);
  const m = tinyModel(s);
  const r = await trainModel(m, { x, shape: [60, s, s, 1], y }, { loss: 'sparse_categorical_crossentropy', epochs: 15, lr: 0.01, seed: 1, ...quiet });
  assert.equal(r.split.by, 'item');
  assert.equal(r.split.val, 15); // 25% of 60
  assert.ok(r.final.valAcc! >= 0.9, `val acc ${r.final.valAcc}`);
  assert.ok(r.history[r.history.length - 1].acc! > 0.8);
  // The model holds the weights whose figures are reported.
  const ev = evaluate(m, { x, shape: [60, s, s, 1], y }, r.splitIndices.val, 'sparse_categorical_crossentropy');
  assert.ok(Math.abs(ev.loss - r.final.valLoss) < 1e-6);
  m.dispose();
});

test('cross-entropy from logits recovers from a saturated softmax; the clipped-probability form cannot', async () => {
  const s = 8;
  const { x, y } = blobs(40, s, 8);
  const finals: number[][] = [];
  let frac1 = 0;
  for (const fused of [false, true]) {
    const m = tinyModel(s, 0, fused);
    // Out bias 40 for class 0: p(class 1) = e^-40, far below the 1e-7 clip.
    const out = m.getLayer('out');
    const bias = tf.tensor1d([40, 0]);
    out.setWeights([out.getWeights()[0], bias]);
    bias.dispose();
    const r = await trainModel(m, { x, shape: [40, s, s, 1], y }, { loss: 'sparse_categorical_crossentropy', epochs: 6, lr: 0.05, patience: 6, ...quiet });
    finals.push(r.history.map((e) => e.loss));
    frac1 = r.splitIndices.train.filter((i) => y[i] === 1).length / r.splitIndices.train.length;
    m.dispose();
  }
  const [logits, clipped] = finals;
  assert.ok(logits[logits.length - 1] < 0.5 * logits[0], `logits: ${logits}`);
  // Clipped form: loss stays at (fraction of class 1) x -ln(1e-7), no gradient.
  for (const l of clipped) assert.ok(Math.abs(l - clipped[0]) < 1e-6, `clipped: ${clipped}`);
  assert.ok(Math.abs(clipped[0] - frac1 * -Math.log(1e-7)) < 1e-4, `clipped: ${clipped}`);
});

test('early stopping: stops after `patience` epochs without a lower val_loss', async () => {
  const s = 8;
  const { x, y } = blobs(40, s, 2);
  const m = tinyModel(s);
  // lr 0: weights never move, so val_loss (inference mode, no dropout) never improves on epoch 1.
  const r = await trainModel(m, { x, shape: [40, s, s, 1], y }, { loss: 'sparse_categorical_crossentropy', epochs: 30, lr: 0, patience: 3, ...quiet });
  assert.equal(r.epochsRun, 4);
  assert.equal(r.stoppedEarly, true);
  assert.equal(r.bestEpoch, 1);
  m.dispose();
});

test('early stopping restores the best epoch (default) or keeps the last (restoreBest false)', async () => {
  const s = 8;
  const { x, y } = blobs(60, s, 3);
  // Validation labels inverted: the better the model learns the training rule, the worse
  // val_loss gets, so epoch 1 is the best and training stops at epoch 1 + patience.
  const split = { train: Array.from({ length: 40 }, (_, i) => i), val: Array.from({ length: 20 }, (_, i) => 40 + i), by: 'item' as const };
  for (const i of split.val) y[i] = 1 - y[i];
  const data: TrainSet = { x, shape: [60, s, s, 1], y };
  for (const restoreBest of [true, false]) {
    const m = tinyModel(s);
    const r = await trainModel(m, data, { loss: 'sparse_categorical_crossentropy', epochs: 30, lr: 0.01, patience: 2, split, restoreBest, ...quiet });
    assert.equal(r.bestEpoch, 1);
    assert.equal(r.epochsRun, 3);
    assert.ok(r.history[2].valLoss > r.history[0].valLoss);
    const now = evaluate(m, data, split.val, 'sparse_categorical_crossentropy').loss;
    const expected = restoreBest ? r.history[0].valLoss : r.history[2].valLoss;
    assert.equal(r.weights, restoreBest ? 'best' : 'last');
    assert.ok(Math.abs(now - expected) < 1e-6, `restoreBest=${restoreBest}: ${now} vs ${expected}`);
    m.dispose();
  }
});

test('group split keeps every group on one side', async () => {
  const s = 8;
  const { x, y } = blobs(60, s, 4);
  const groups = Array.from({ length: 60 }, (_, i) => `obj${Math.floor(i / 6)}`);
  const m = tinyModel(s);
  const r = await trainModel(m, { x, shape: [60, s, s, 1], y, groups }, { loss: 'sparse_categorical_crossentropy', epochs: 1, seed: 3, ...quiet });
  assert.equal(r.splitIndices.by, 'group');
  assert.deepEqual(leakedGroups(r.splitIndices, groups), []);
  assert.equal(r.split.train + r.split.val, 60);
  assert.equal(r.split.val % 6, 0);
  m.dispose();
});

test('same seed -> same history; another seed -> another', async () => {
  const s = 8;
  const { x, y } = blobs(40, s, 5);
  const run = async (seed: number) => {
    const m = tinyModel(s, seed);
    const r = await trainModel(m, { x, shape: [40, s, s, 1], y }, { loss: 'sparse_categorical_crossentropy', epochs: 3, lr: 0.01, seed, ...quiet });
    m.dispose();
    return r.history.map((e) => [e.loss, e.acc, e.valLoss, e.valAcc]);
  };
  const a = await run(7);
  assert.deepEqual(await run(7), a);
  assert.notDeepEqual(await run(8), a);
});

test('trainClassifier: the seed model end to end on a small in-memory dataset, classes from labels, subset, held-out objects in the card', async () => {
  const s = 6;
  const n = 30;
  const { x, y } = blobs(n, s, 6);
  // 4 HiTS channels; only channel 3 carries the signal.
  const images = new Float32Array(n * s * s * 4);
  for (let p = 0; p < n * s * s; p++) images[p * 4 + 3] = x[p];
  y[0] = 2; // a third class present -> 3 outputs
  const ds: Dataset = {
    images,
    shape: [n, s, s, 4],
    labels: y,
    ids: Array.from({ length: n }, (_, i) => `g${i % 10}`),
    meta: { channels: ['template', 'science', 'difference', 'snr_difference'] },
  };
  const t = await trainClassifier({ data: ds, dataName: 'small.npz', epochs: 1, pad: 1, seed: 2, subset: 24, backend: 'cpu', ...quiet });
  assert.deepEqual(t.channels, [3]);
  assert.deepEqual(t.channelNames, ['snr_difference']);
  assert.deepEqual(t.inputShape, [s, s, 1]);
  assert.equal(t.used, 24);
  assert.equal(t.result.split.by, 'group');
  assert.equal(t.result.split.train + t.result.split.val, 24);
  assert.equal(t.numClasses, 3);
  assert.deepEqual((t.model.outputs[0].shape as number[]).slice(1), [3]);
  const conf = t.validation.confusion;
  assert.equal(conf.length, 3);
  assert.equal(conf.flat().reduce((a, b) => a + b, 0), t.result.split.val);
  assert.ok(Math.abs(t.validation.accuracy - t.result.final.valAcc!) < 1e-9);
  // The card records the held-out objects themselves: every stamp of them, and only those, is validation.
  const split = (t.card.training as { split: { by: string; valIds: string[]; val: number } }).split;
  assert.equal(split.by, 'group');
  assert.deepEqual(split.valIds, t.holdout.ids);
  assert.ok(split.valIds.length >= 1 && split.valIds.length < 10 && split.valIds.every((g) => ds.ids!.includes(g)));
  t.model.dispose();
  await assert.rejects(trainClassifier({ data: { ...ds, labels: undefined }, dataName: 'nolabels.npz', ...quiet }), /nolabels\.npz: has no labels/);
});

test('training loop: float targets (mse) and a second model input, as a conditioned autoencoder uses', async () => {
  // Target = the image scaled by 1 (label [1,0]) or 0.2 (label [0,1]): learnable only with the label input.
  const n = 48;
  const r = new Rng(11);
  const x = Float32Array.from({ length: n * 16 }, () => r.next());
  const label = new Float32Array(n * 2);
  const target = new Float32Array(n * 16);
  for (let i = 0; i < n; i++) {
    const k = i % 2;
    label[i * 2 + k] = 1;
    for (let p = 0; p < 16; p++) target[i * 16 + p] = x[i * 16 + p] * (k ? 0.2 : 1);
  }
  const img = tfl.input({ shape: [4, 4, 1], name: 'image' });
  const lab = tfl.input({ shape: [2], name: 'label' });
  const flat = tfl.layers.flatten({ name: 'f' }).apply(img) as tfl.SymbolicTensor;
  const cat = tfl.layers.concatenate({ name: 'cat' }).apply([flat, lab]) as tfl.SymbolicTensor;
  const hid = dense(32, { name: 'h', activation: 'relu', seed: 1 }).apply(cat) as tfl.SymbolicTensor;
  const out = dense(16, { name: 'o', activation: 'sigmoid', seed: 2 }).apply(hid) as tfl.SymbolicTensor;
  const m = tfl.model({ inputs: [img, lab], outputs: tfl.layers.reshape({ targetShape: [4, 4, 1], name: 'r' }).apply(out) as tfl.SymbolicTensor });
  const res = await trainModel(
    m,
    { x, shape: [n, 4, 4, 1], y: target, yShape: [4, 4, 1], extra: [{ data: label, shape: [2] }] },
    { loss: 'mse', epochs: 40, lr: 0.02, seed: 2, patience: 40, ...quiet },
  );
  assert.equal(res.history[0].acc, undefined);
  assert.ok(res.final.valLoss < res.history[0].valLoss / 2, `${res.history[0].valLoss} -> ${res.final.valLoss}`);
  m.dispose();
});
