import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { initTf, tf, tfl } from '../src/runtime/tfjs.js';
import { modelToOnnx } from '../src/models/to-onnx.js';
import { fuseClassifierExplainer, readWireModel } from '../src/models/onnx-fuse.js';
import { buildAutoencoder } from '../src/models/autoencoder.js';
import { activation, conv, dense, flatten, maxPool, stack } from '../src/models/layers.js';
import { argmaxRows } from '../src/models/predictor.js';
import { conditionVectors, padFor, padImages } from '../src/explainer/data.js';
import { createOnnxSession, releaseOnnxSession, runOnnxBatched, runOnnxBatchedOutputs } from '../src/runtime/onnx.js';
import { Rng } from '../src/util/rng.js';

before(async () => {
  await initTf('cpu');
});

/**
 * A tiny classifier on 21x21xC whose class flips with the sign of the input (out kernel
 * columns are negatives of each other, zero bias), so both classes occur in the test batch.
 */
function tinyClassifier(channels: number): Uint8Array {
  const m = stack('clf', [21, 21, channels], [
    conv(3, 3, { name: 'c1', activation: 'linear', seed: 1 }),
    maxPool({ name: 'p1' }),
    flatten({ name: 'f' }),
    dense(2, { name: 'out', activation: 'linear', seed: 2 }),
    activation('softmax', { name: 'softmax' }),
  ]);
  const out = m.getLayer('out');
  const [k] = out.getWeights();
  const col = tf.tidy(() => tf.slice(k, [0, 0], [k.shape[0], 1]));
  out.setWeights([tf.concat([col, tf.neg(col)], 1), tf.zeros([2])]);
  const bytes = modelToOnnx(m).bytes;
  m.dispose();
  return bytes;
}

function explainer(condition: 'onehot' | 'numeral', seed: number, channels: number): Uint8Array {
  const m = buildAutoencoder({ unet: true, channels, condition, numClasses: 2, seed });
  const bytes = modelToOnnx(m).bytes;
  m.dispose();
  return bytes;
}

/** n padded explainer inputs (24x24xC, stamp at rows/cols 2..22); odd items negated. */
function inputs(n: number, C: number): Float32Array {
  const rng = new Rng(7);
  const stamps = new Float32Array(n * 21 * 21 * C);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < 21 * 21 * C; j++) stamps[i * 21 * 21 * C + j] = (i % 2 ? -1 : 1) * (0.2 + rng.next());
  }
  return padImages(stamps, n, 21, 21, C, padFor(21, 21, 24));
}

function crop(x: Float32Array, n: number, C: number, channels: number[]): Float32Array {
  const out = new Float32Array(n * 21 * 21 * channels.length);
  let o = 0;
  for (let i = 0; i < n; i++) {
    for (let r = 2; r < 23; r++) {
      for (let c = 2; c < 23; c++) for (const ch of channels) out[o++] = x[((i * 24 + r) * 24 + c) * C + ch];
    }
  }
  return out;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Fused graph vs classifier session -> argmax -> label vector -> each member's session. */
async function parity(condition: 'onehot' | 'numeral', members: number, C: number, clfChannels: number[]): Promise<void> {
  const clf = tinyClassifier(clfChannels.length);
  const expl = Array.from({ length: members }, (_, k) => explainer(condition, 10 + k, C));
  const fused = fuseClassifierExplainer({
    classifier: clf,
    members: expl,
    condition,
    numClasses: 2,
    crop: { top: 2, left: 2, height: 21, width: 21 },
    classifierChannels: clfChannels,
  });
  const n = 6;
  const x = inputs(n, C);
  const sessions = await Promise.all([clf, fused, ...expl].map((b) => createOnnxSession(b, { threads: 1, cache: false })));
  try {
    const [sc, sf, ...se] = sessions;
    const probs = (await runOnnxBatched(sc, [{ name: sc.inputNames[0], data: crop(x, n, C, clfChannels), shape: [21, 21, clfChannels.length] }], n)).data;
    const cls = argmaxRows(probs, n, 2);
    assert.ok(cls.includes(0) && cls.includes(1), `both classes in the batch: ${[...cls]}`);
    const label = conditionVectors(cls, condition, 2)!;
    const names = members === 1 ? ['map'] : expl.map((_, k) => `map${k}`);
    assert.deepEqual(sf.outputNames, ['probs', ...names]);
    assert.deepEqual(sf.inputNames, ['image']);
    const got = await runOnnxBatchedOutputs(sf, [{ name: 'image', data: x, shape: [24, 24, C] }], n, sf.outputNames, { batchSize: 4 });
    assert.ok(maxDiff(got.probs.data, probs) < 1e-5);
    for (let k = 0; k < members; k++) {
      const feeds = [
        { name: 'image', data: x, shape: [24, 24, C] },
        { name: 'label', data: label, shape: [label.length / n] },
      ];
      const want = (await runOnnxBatched(se[k], feeds, n)).data;
      const d = maxDiff(got[names[k]].data, want);
      assert.ok(d < 1e-5, `member ${k}: max difference ${d}`);
    }
  } finally {
    await Promise.all(sessions.map((s) => releaseOnnxSession(s)));
  }
}

test('fused one-hot graph == classifier, argmax, one-hot, explainer (classifier reads channel 1 of 2)', async () => {
  await parity('onehot', 1, 2, [1]);
});

test('fused numeral graph == the two calls (classifier reads both channels: no gather)', async () => {
  await parity('numeral', 1, 2, [0, 1]);
});

test('fused ensemble (2 one-hot members) == classifier then each member', async () => {
  await parity('onehot', 2, 1, [0]);
});

test('fusing refuses graphs that do not fit, naming the part', () => {
  const clf = tinyClassifier(1);
  const e = explainer('onehot', 1, 1);
  const base = { classifier: clf, members: [e], condition: 'onehot' as const, numClasses: 2, crop: { top: 2, left: 2, height: 21, width: 21 }, classifierChannels: [0] };
  assert.throws(() => fuseClassifierExplainer({ ...base, crop: { top: 2, left: 2, height: 20, width: 21 } }), /classifier takes \(.*\), not \(N,20,21,1\)/);
  assert.throws(() => fuseClassifierExplainer({ ...base, condition: 'numeral' }), /label of shape \(.*2\), not \(N,1\)/);
  assert.throws(() => fuseClassifierExplainer({ ...base, members: [clf] }), /takes \[input\]/);
  assert.throws(() => fuseClassifierExplainer({ ...base, classifierChannels: [1] }), /classifier channels \[1\] are not among the explainer's 1/);
  const m = readWireModel(e);
  assert.deepEqual(m.inputs.map((v) => v.name), ['image', 'label']);
  assert.equal(m.inputs[0].shape.slice(1).join(), '24,24,1');
});
