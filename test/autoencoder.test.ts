import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initTf, tf } from '../src/runtime/tfjs.js';
import { buildAutoencoder, parameterCounts, copyEncoderWeights } from '../src/models/autoencoder.js';

test('seed autoencoder: 294,789 parameters, 102,144 frozen in the frozen variant', async () => {
  await initTf('cpu');
  const normal = buildAutoencoder();
  assert.deepEqual(parameterCounts(normal), { total: 294789, trainable: 294789, nonTrainable: 0 });
  assert.deepEqual(normal.outputs[0].shape, [null, 24, 24, 1]);
  const frozen = buildAutoencoder({ frozen: true });
  assert.deepEqual(parameterCounts(frozen), { total: 294789, trainable: 192645, nonTrainable: 102144 });
  normal.dispose();
  frozen.dispose();
});

test('conditioning: 34 learned units + 2 one-hot label units = 36; numeral 35 + 1', async () => {
  await initTf('cpu');
  const onehot = buildAutoencoder({ condition: 'onehot' });
  assert.equal(onehot.inputs.length, 2);
  assert.equal(onehot.getLayer('bottleneck').outputShape[1], 34);
  // Dense 2304 -> 34 instead of -> 36: 2 * 2305 fewer parameters.
  assert.equal(parameterCounts(onehot).total, 294789 - 2 * 2305);
  const numeral = buildAutoencoder({ condition: 'numeral' });
  assert.equal(numeral.getLayer('bottleneck').outputShape[1], 35);
  const y = onehot.predict([tf.zeros([3, 24, 24, 1]), tf.cast(tf.oneHot([0, 1, 1], 2), 'float32')]) as tf.Tensor;
  assert.deepEqual(y.shape, [3, 24, 24, 1]);
  onehot.dispose();
  numeral.dispose();
});

test('cuts keep fewer encoder convs and still map 24x24 -> 24x24', async () => {
  await initTf('cpu');
  for (const cut of [1, 2] as const) {
    const m = buildAutoencoder({ cut });
    assert.deepEqual(m.outputs[0].shape, [null, 24, 24, 1]);
    const names = m.layers.map((l: { name: string }) => l.name);
    assert.equal(names.includes('conv3'), false);
    assert.equal(names.includes('conv2'), cut === 1);
    assert.ok(parameterCounts(m).total > 0);
    m.dispose();
  }
});

test('frozen encoder copies conv weights by name and keeps them through a training step', async () => {
  await initTf('cpu');
  const donor = buildAutoencoder({ seed: 99 });
  const m = buildAutoencoder({ frozen: true, seed: 1 });
  assert.deepEqual(copyEncoderWeights(donor, m), ['conv1', 'conv2', 'conv3', 'conv4', 'conv5']);
  const before = m.getLayer('conv3').getWeights()[0].dataSync().slice();
  assert.deepEqual(before, donor.getLayer('conv3').getWeights()[0].dataSync());
  m.compile({ optimizer: tf.train.adam(1e-2), loss: 'meanSquaredError' });
  await m.trainOnBatch(tf.randomUniform([4, 24, 24, 1], 0, 1, 'float32', 1), tf.randomUniform([4, 24, 24, 1], 0, 1, 'float32', 2));
  assert.deepEqual(m.getLayer('conv3').getWeights()[0].dataSync(), before);
  donor.dispose();
  m.dispose();
});
