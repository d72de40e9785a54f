import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initTf } from '../src/runtime/tfjs.js';
import { buildClassifier } from '../src/models/classifier.js';
import { buildAutoencoder } from '../src/models/autoencoder.js';
import { modelFlops } from '../src/models/flops.js';

test('FLOPs of the seed classifier and autoencoder, counted by hand', async () => {
  await initTf('cpu');
  // 27x27 after padding: conv1 2*4*4*1*32*729, conv2 2*9*32*32*729; 13x13: conv3 2*9*32*64*169,
  // conv4, conv5 2*9*64*64*169; dense 2*2304*64, 2*64*64, 2*64*2.
  const clf = 746496 + 13436928 + 6230016 + 2 * 12460032 + 294912 + 8192 + 256;
  const m = buildClassifier({ inputShape: [21, 21, 1], numClasses: 2 });
  assert.equal(modelFlops(m), clf);
  // 24x24: conv1 2*16*32*576, conv2 2*9*32*32*576; 12x12: conv3 2*9*32*64*144, conv4/5 2*9*64*64*144;
  // bottleneck 2*2304*36; 6x6: 2*9*1*64*36, 2 x 2*9*64*64*36; 12x12: 2*9*64*32*144, 2*16*32*32*144;
  // 24x24: 2*9*32*1*576.
  const ae = 589824 + 10616832 + 5308416 + 2 * 10616832 + 165888 + 41472 + 2 * 2654208 + 5308416 + 4718592 + 331776;
  const a = buildAutoencoder();
  assert.equal(modelFlops(a), ae);
  m.dispose();
  a.dispose();
});
