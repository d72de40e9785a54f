/**
 * An exact occlusion map of a classifier that is a plain function, with the captum preset
 * (positive = important). Run: node exact-function.js
 */
import { Occlusion, type Predictor } from 'occmap';

// A 2-class "classifier" on 9x9 greyscale stamps: the brighter the centre, the more likely class 1.
const H = 9;
const W = 9;
const predict = async (batch: Float32Array, n: number): Promise<Float32Array> => {
  const out = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const centre = batch[i * H * W + 4 * W + 4];
    const p = 1 / (1 + Math.exp(-(6 * centre - 3)));
    out.set([1 - p, p], 2 * i);
  }
  return out;
};
const model: Predictor = { inputShape: [H, W, 1], numClasses: 2, engine: 'function', hash: 'centre-v1', predict, dispose: () => {} };

// One stamp: a point source at the centre on a faint background.
const stamp = Array.from({ length: H }, (_, y) => Array.from({ length: W }, (_, x) => (x === 4 && y === 4 ? 1 : 0.1)));

const occlusion = new Occlusion(model, { preset: 'captum', patch: 3 });
const maps = await occlusion.attribute(stamp, { target: 'predicted' });

const [n, h, w] = maps.shape;
const peak = maps.data.indexOf(Math.max(...maps.data));
console.log(`maps ${n}x${h}x${w}, class ${maps.targets![0]}, p = ${maps.probabilities![1].toFixed(3)}`);
console.log(`most important pixel: (${peak % w}, ${Math.floor(peak / w)}), value ${maps.data[peak].toFixed(4)} (score ${maps.score}: positive = important)`);
