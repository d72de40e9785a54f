/**
 * One replica's share of a data-parallel training step, the same code on the main thread
 * (rank 0) and in every worker (src/train/replica-worker.ts):
 *
 *   gradient of (n_shard / n_step) x mean loss over the shard  ->  a flat Float32Array
 *
 * Summed over the shards of a step these are exactly the gradient of the mean loss over the
 * whole batch (every loss here is a mean over items, or over items x equal-sized maps), so
 * data-parallel training follows single-worker training with the same batch size, up to float
 * rounding. Each replica then applies the same summed gradient with its own copy of the
 * optimiser: identical inputs and kernels keep the copies bit-identical without shipping
 * weights around, and the step costs one gradient exchange instead of gradient + weights.
 */
import { tf, tfl } from '../runtime/tfjs.js';
import type { Batch, Batcher } from './batcher.js';
import { correctCount, lossTensor, type LossName } from './objective.js';

export interface GradLayout {
  sizes: number[];
  total: number;
}

export function gradLayout(vars: readonly tf.Variable[]): GradLayout {
  const sizes = vars.map((v) => v.size);
  return { sizes, total: sizes.reduce((a, b) => a + b, 0) };
}

/** Item range `[a, b)` of rank `rank` among `workers` for the step covering `[from, to)`. */
export function shardRange(from: number, to: number, rank: number, workers: number): [number, number] {
  const n = to - from;
  return [from + Math.floor((rank * n) / workers), from + Math.floor(((rank + 1) * n) / workers)];
}

export interface ShardOutcome {
  /** The scaled loss (n_shard / n_step x shard mean): summed over shards, the batch mean. */
  scaledLoss: number;
  /** Correctly classified items of the shard (sparse cross-entropy only, else 0). */
  correct: number;
}

/** Writes the shard's scaled gradient into `out` (layout of `vars`). */
export function shardGradient(
  net: tfl.LayersModel,
  fromLogits: boolean,
  loss: LossName,
  b: Batch,
  scale: number,
  vars: readonly tf.Variable[],
  out: Float32Array,
): ShardOutcome {
  let corr: tf.Scalar | null = null;
  const { value, grads } = tf.variableGrads(() => {
    const pred = net.apply(b.x, { training: true }) as tf.Tensor;
    if (loss === 'sparse_categorical_crossentropy') corr = tf.keep(correctCount(b.y, pred));
    return tf.mul(lossTensor(loss, b.y, pred, fromLogits), scale) as tf.Scalar;
  }, vars as tf.Variable[]);
  try {
    let o = 0;
    for (const v of vars) {
      const g = grads[v.name];
      if (g) out.set(g.dataSync() as Float32Array, o);
      else out.fill(0, o, o + v.size); // a variable the loss does not reach
      o += v.size;
    }
    const scaledLoss = value.dataSync()[0];
    const correct = corr ? (corr as tf.Scalar).dataSync()[0] : 0;
    return { scaledLoss, correct };
  } finally {
    value.dispose();
    Object.values(grads).forEach((g) => g.dispose());
    (corr as tf.Scalar | null)?.dispose();
  }
}

/** Loss sum and correct count of the current weights on `idx[from..to)`, inference mode, in chunks. */
export function evalSums(
  net: tfl.LayersModel,
  fromLogits: boolean,
  loss: LossName,
  batcher: Batcher,
  idx: ArrayLike<number>,
  from: number,
  to: number,
  chunk = 256,
): { lossSum: number; correct: number } {
  let lossSum = 0;
  let correct = 0;
  for (let a = from; a < to; a += chunk) {
    const b = Math.min(to, a + chunk);
    const batch = batcher.batch(idx, a, b);
    try {
      const [l, c] = tf.tidy(() => {
        const out = net.apply(batch.x, { training: false }) as tf.Tensor;
        const lv = lossTensor(loss, batch.y, out, fromLogits).dataSync()[0];
        const cv = loss === 'sparse_categorical_crossentropy' ? correctCount(batch.y, out).dataSync()[0] : 0;
        return [lv, cv];
      });
      lossSum += l * (b - a);
      correct += c;
    } finally {
      batch.dispose();
    }
  }
  return { lossSum, correct };
}

/** Apply a flat gradient (layout of `vars`) with `optimizer`. */
export function applyFlat(optimizer: tf.Optimizer, vars: readonly tf.Variable[], flat: Float32Array): void {
  tf.tidy(() => {
    const named: tf.NamedTensorMap = {};
    let o = 0;
    for (const v of vars) {
      // slice(): a copy, so the tensor never aliases shared memory another thread rewrites.
      named[v.name] = tf.tensor(flat.slice(o, o + v.size), v.shape);
      o += v.size;
    }
    optimizer.applyGradients(named);
  });
}

/** All weights of a model (trainable or not) as one flat array, e.g. to compare replicas. */
export function flatWeights(model: tfl.LayersModel): Float32Array {
  const ws = model.getWeights();
  const out = new Float32Array(ws.reduce((s, w) => s + w.size, 0));
  let o = 0;
  for (const w of ws) {
    out.set(w.dataSync() as Float32Array, o);
    o += w.size;
  }
  return out;
}
