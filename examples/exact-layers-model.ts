/**
 * Exact occlusion maps of an in-memory tfjs LayersModel (one built or trained in this process),
 * with the captum preset. loadModel converts it to ONNX at load and runs it on ONNX Runtime;
 * `engine: 'tfjs'` runs the same model on tfjs, and both give the same maps.
 * Run: node exact-layers-model.js
 */
import { Occlusion, initTf, loadModel, tf, tfl } from 'occmap';

await initTf('cpu');
const H = 9;
const W = 9;

// A 2-class classifier on 9x9 greyscale stamps, weights set by hand so the result is known: the
// brighter the centre pixel, the more likely class 1 (softmax of [0, 6 * centre - 3]).
const model = tfl.sequential({
  layers: [tfl.layers.flatten({ inputShape: [H, W, 1] }), tfl.layers.dense({ units: 2, activation: 'softmax' })],
});
const kernel = new Float32Array(H * W * 2);
kernel[(4 * W + 4) * 2 + 1] = 6;
model.setWeights([tf.tensor2d(kernel, [H * W, 2]), tf.tensor1d([0, -3])]);

// One stamp: a point source at the centre on a faint background.
const stamp = Array.from({ length: H }, (_, y) => Array.from({ length: W }, (_, x) => (x === 4 && y === 4 ? 1 : 0.1)));

const onnx = await loadModel(model); // the caller keeps `model`: disposing the predictor leaves it usable
const maps = await new Occlusion(onnx, { preset: 'captum', patch: 3 }).attribute(stamp, { target: 'predicted' });
const onTfjs = await loadModel(model, { engine: 'tfjs' });
const again = await new Occlusion(onTfjs, { preset: 'captum', patch: 3 }).attribute(stamp, { target: 'predicted' });

const [n, h, w] = maps.shape;
const peak = maps.data.indexOf(Math.max(...maps.data));
let diff = 0;
for (let i = 0; i < maps.data.length; i++) diff = Math.max(diff, Math.abs(maps.data[i] - again.data[i]));
console.log(`engine: ${onnx.engine}; maps ${n}x${h}x${w}, class ${maps.targets![0]}, p = ${maps.probabilities![1].toFixed(3)}`);
console.log(`most important pixel: (${peak % w}, ${Math.floor(peak / w)}), value ${maps.data[peak].toFixed(4)}`);
console.log(`${onTfjs.engine} gives the same maps: max |difference| ${diff.toExponential(1)}`);
onnx.dispose();
onTfjs.dispose();
model.dispose();
