import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { initTf, tf, tfl } from '../src/runtime/tfjs.js';
import { buildClassifier } from '../src/models/classifier.js';
import { fusedAdamApply } from '../src/train/fused-adam.js';
import { flatWeights } from '../src/train/replica.js';
import { Rng } from '../src/util/rng.js';

before(async () => {
  await initTf('wasm');
});

const model = () => buildClassifier({ inputShape: [21, 21, 1], numClasses: 2, seed: 3 });
const varsOf = (m: tfl.LayersModel) => m.trainableWeights.map((w) => w.read() as tf.Variable);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function randomGrads(total: number, rng: Rng): Float32Array {
  // Magnitudes from 1e-1 to 1e-4 and zeros, as real gradients have.
  return Float32Array.from({ length: total }, (_, i) => (i % 17 === 0 ? 0 : (rng.next() - 0.5) * 10 ** (-1 - 3 * rng.next())));
}

test('fused Adam reproduces tf.train.adam bit for bit (weights, predictions, optimizer state over several steps)', async () => {
  const a = model();
  const b = model();
  const va = varsOf(a);
  const vb = varsOf(b);
  const oa = tf.train.adam(1e-3, 0.9, 0.999, 1e-7);
  const ob = tf.train.adam(1e-3, 0.9, 0.999, 1e-7);
  const total = va.reduce((s, v) => s + v.size, 0);
  const rng = new Rng(9);
  const x = tf.tensor4d(Float32Array.from({ length: 4 * 21 * 21 }, () => rng.next()), [4, 21, 21, 1]);
  try {
    assert.deepEqual(flatWeights(a), flatWeights(b));
    for (let step = 0; step < 5; step++) {
      const flat = randomGrads(total, rng);
      tf.tidy(() => {
        const named: tf.NamedTensorMap = {};
        let o = 0;
        for (const v of va) {
          named[v.name] = tf.tensor(flat.slice(o, o + v.size), v.shape);
          o += v.size;
        }
        (oa as tf.Optimizer).applyGradients(named);
      });
      assert.equal(fusedAdamApply(ob, vb, flat), true);
      // Forward passes between updates: the backend caches packed filters per tensor, so an
      // update written in place into a filter would be ignored here.
      const [pa, pb] = [a, b].map((m) => tf.tidy(() => (m.predict(x, { batchSize: 4 }) as tf.Tensor).dataSync()));
      assert.deepEqual(pb, pa, `predictions after step ${step + 1}`);
    }
    assert.deepEqual(flatWeights(b), flatWeights(a));
    assert.ok(maxAbsDiff(flatWeights(b), flatWeights(model())) > 1e-3, 'the steps changed the weights');
    const [sa, sb] = [await oa.getWeights(), await ob.getWeights()];
    assert.equal(sb.length, sa.length);
    assert.equal(ob.iterations, oa.iterations);
    for (let k = 0; k < sa.length; k++) {
      assert.equal(sb[k].name.replace(/_\d+\//, '/'), sa[k].name.replace(/_\d+\//, '/'));
      assert.deepEqual(sb[k].tensor.dataSync(), sa[k].tensor.dataSync(), sa[k].name);
    }
    // The state it keeps in the optimizer object restores (checkpoints) like tf.train.adam's:
    // restored into two plain optimizers, fused and tfjs updates continue identically.
    const [oc, od] = [tf.train.adam(1e-3, 0.9, 0.999, 1e-7), tf.train.adam(1e-3, 0.9, 0.999, 1e-7)];
    await oc.setWeights(await ob.getWeights());
    await od.setWeights(await ob.getWeights());
    const [c, d] = [model(), model()];
    c.setWeights(b.getWeights()); // shares b's data: the fused write must not reach b
    d.setWeights(b.getWeights());
    const wb = flatWeights(b);
    const flat = randomGrads(total, rng);
    fusedAdamApply(oc, varsOf(c), flat);
    tf.tidy(() => {
      const named: tf.NamedTensorMap = {};
      let o = 0;
      for (const v of varsOf(d)) {
        named[v.name] = tf.tensor(flat.slice(o, o + v.size), v.shape);
        o += v.size;
      }
      (od as tf.Optimizer).applyGradients(named);
    });
    assert.deepEqual(flatWeights(c), flatWeights(d));
    assert.deepEqual(flatWeights(b), wb);
    [oc, od].forEach((o) => o.dispose());
    [c, d].forEach((m) => m.dispose());
  } finally {
    [oa, ob].forEach((o) => o.dispose());
    [a, b].forEach((m) => m.dispose());
    x.dispose();
  }
});

test('fused Adam never writes into tensors that share a variable\'s data, and declines other optimizers', () => {
  const a = model();
  const saved = a.getWeights().map((t) => t.clone());
  const before = saved.map((t) => t.dataSync().slice());
  a.setWeights(saved); // the variables now share their data with `saved`
  const va = varsOf(a);
  const total = va.reduce((s, v) => s + v.size, 0);
  const opt = tf.train.adam(1e-2);
  const other = tf.train.adadelta(1);
  try {
    assert.equal(fusedAdamApply(opt, va, randomGrads(total, new Rng(1))), true);
    saved.forEach((t, i) => assert.deepEqual(t.dataSync(), before[i]));
    assert.notDeepEqual(flatWeights(a).slice(0, before[0].length), before[0]);
    assert.equal(fusedAdamApply(other, va, new Float32Array(total)), false);
    assert.throws(() => fusedAdamApply(opt, va, new Float32Array(total - 1)), /gradient of/);
  } finally {
    saved.forEach((t) => t.dispose());
    opt.dispose();
    other.dispose();
    a.dispose();
  }
});
