/**
 * THE training loop of occmap: every model (classifier, autoencoders) trains through
 * `trainModel`. A manual optimiser loop rather than `model.fit`, because fit shuffles with
 * Math.random: here the split, the per-epoch shuffles and every dropout mask come from the
 * seed, so a run repeats exactly (on the same backend).
 *
 * Early stopping follows Keras' EarlyStopping(monitor='val_loss', patience, min_delta=0): stop
 * after `patience` epochs in a row without a lower val_loss. Unlike Keras' default (which the
 * seed used, keeping the weights of the LAST epoch, up to `patience` epochs past the best), we
 * restore the weights of the best epoch by default (restore_best_weights=True): the saved
 * model is the one its reported validation figures describe. `restoreBest: false` keeps the last.
 *
 * Cross-entropy is taken from the logits when the model ends in a separate softmax layer (as
 * TF2 Keras does for softmax outputs): the seed-era form, -log(clip(p, 1e-7, 1-1e-7)), has zero
 * gradient once the softmax saturates. On the HiTS 2015 data (97% not-supernova) that froze a
 * run at "always not supernova" after one epoch, with loss = 2.5% x -log(1e-7) forever.
 */
import { tf, tfl } from '../runtime/tfjs.js';
import { splitIndices, type Split } from '../data/split.js';
import { Rng } from '../util/rng.js';
import { Progress } from '../util/progress.js';
import { UserError } from '../util/errors.js';

type LayersModel = tfl.LayersModel;

export type LossName = 'sparse_categorical_crossentropy' | 'mse' | 'binary_crossentropy';
export type OptimizerName = 'adam' | 'adadelta';

export interface TrainSet {
  /** Model inputs, NHWC float32. */
  x: Float32Array;
  /** [N, H, W, C] */
  shape: [number, number, number, number];
  /** Class labels (sparse CE) or targets (n * prod(yShape) floats) for mse / bce. */
  y: Int32Array | Float32Array;
  /** Per-item target shape for float targets, e.g. [24, 24, 1]; [] for labels. */
  yShape?: number[];
  /** Group (object) id per item: the split keeps each group on one side. */
  groups?: readonly string[];
  /**
   * Further model inputs after `x`, in the model's input order (e.g. the label of a conditioned
   * autoencoder): n * prod(shape) floats each, `shape` per item.
   */
  extra?: { data: Float32Array; shape: number[] }[];
}

export interface LoopOptions {
  loss: LossName;
  optimizer?: OptimizerName;
  /** Default: 1e-3 for Adam; 1.0 for Adadelta (the Keras 2 default the seed ran with). */
  lr?: number;
  epochs?: number;
  batchSize?: number;
  patience?: number;
  valFraction?: number;
  seed?: number;
  /** Restore the best-val_loss weights at the end (default true); false keeps the last. */
  restoreBest?: boolean;
  /** Use this split instead of a seeded `valFraction` split. */
  split?: Split;
  /** Per-epoch summary lines (default: stderr). */
  log?: (line: string) => void;
  /** No within-epoch progress bar / lines. */
  quiet?: boolean;
  onEpoch?: (e: EpochRecord) => void;
}

export interface EpochRecord {
  epoch: number;
  loss: number;
  valLoss: number;
  /** Only for sparse categorical cross-entropy. */
  acc?: number;
  valAcc?: number;
  samplesPerSec: number;
  seconds: number;
}

export interface TrainResult {
  history: EpochRecord[];
  epochsRun: number;
  stoppedEarly: boolean;
  /** 1-based epoch with the lowest val_loss. */
  bestEpoch: number;
  /** Which weights the model holds now. */
  weights: 'best' | 'last';
  split: { by: 'group' | 'item'; train: number; val: number };
  /** The split itself (item indices into the TrainSet), e.g. to evaluate on held-out items. */
  splitIndices: Split;
  backend: string;
  wallSeconds: number;
  /** Validation figures of the weights the model holds now. */
  final: { valLoss: number; valAcc?: number };
}

const EPS = 1e-7; // Keras backend epsilon, used to clip probabilities in cross-entropies.

/**
 * Mean loss over the batch, the way Keras computes it for these outputs. `fromLogits`: `yPred`
 * holds the logits of a softmax output (sparse cross-entropy only).
 */
export function lossTensor(name: LossName, yTrue: tf.Tensor, yPred: tf.Tensor, fromLogits = false): tf.Scalar {
  return tf.tidy(() => {
    if (name === 'sparse_categorical_crossentropy' && fromLogits) {
      const k = yPred.shape[yPred.shape.length - 1]!;
      const oneHot = tf.oneHot(tf.cast(tf.reshape(yTrue, [-1]), 'int32') as tf.Tensor1D, k);
      return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.logSoftmax(tf.reshape(yPred, [-1, k]))), -1)));
    }
    if (name === 'sparse_categorical_crossentropy') {
      const k = yPred.shape[yPred.shape.length - 1]!;
      const oneHot = tf.oneHot(tf.cast(tf.reshape(yTrue, [-1]), 'int32') as tf.Tensor1D, k);
      const logp = tf.log(tf.clipByValue(tf.reshape(yPred, [-1, k]), EPS, 1 - EPS));
      return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, logp), -1)));
    }
    if (name === 'mse') return tf.mean(tf.squaredDifference(yTrue, yPred));
    const p = tf.clipByValue(yPred, EPS, 1 - EPS);
    return tf.neg(tf.mean(tf.add(tf.mul(yTrue, tf.log(p)), tf.mul(tf.sub(1, yTrue), tf.log(tf.sub(1, p))))));
  }) as tf.Scalar;
}

function correctCount(yTrue: tf.Tensor, yPred: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const k = yPred.shape[yPred.shape.length - 1]!;
    return tf.sum(tf.cast(tf.equal(tf.argMax(tf.reshape(yPred, [-1, k]), -1), tf.cast(tf.reshape(yTrue, [-1]), 'int32')), 'float32')) as tf.Scalar;
  });
}

function makeOptimizer(name: OptimizerName, lr: number | undefined): tf.Optimizer {
  if (name === 'adadelta') return tf.train.adadelta(lr ?? 1.0, 0.95, 1e-7);
  return tf.train.adam(lr ?? 1e-3, 0.9, 0.999, 1e-7);
}

/** Copies the items at `idx` into contiguous batch tensors. */
class Batcher {
  private readonly yItem: number;
  private readonly yShape: number[];
  /** Every model input: [data, per-item shape, per-item size]. */
  private readonly inputs: { data: Float32Array; shape: number[]; size: number }[];
  constructor(private readonly data: TrainSet) {
    const [n, h, w, c] = data.shape;
    this.inputs = [{ data: data.x, shape: [h, w, c], size: h * w * c }];
    for (const e of data.extra ?? []) {
      const size = e.shape.reduce((a, b) => a * b, 1);
      if (e.data.length !== n * size) throw new Error(`extra input of shape (${e.shape.join(',')}) has ${e.data.length} values for ${n} items`);
      this.inputs.push({ data: e.data, shape: e.shape, size });
    }
    this.yShape = data.yShape ?? [];
    this.yItem = this.yShape.reduce((a, b) => a * b, 1);
  }
  batch(idx: ArrayLike<number>, from: number, to: number): { x: tf.Tensor | tf.Tensor[]; y: tf.Tensor; dispose(): void } {
    const n = to - from;
    const xs = this.inputs.map((inp) => {
      const buf = new Float32Array(n * inp.size);
      for (let k = 0; k < n; k++) {
        const i = idx[from + k];
        buf.set(inp.data.subarray(i * inp.size, (i + 1) * inp.size), k * inp.size);
      }
      return tf.tensor(buf, [n, ...inp.shape]);
    });
    let y: tf.Tensor;
    if (this.data.y instanceof Int32Array) {
      const yb = new Int32Array(n);
      for (let k = 0; k < n; k++) yb[k] = this.data.y[idx[from + k]];
      y = tf.tensor1d(yb, 'int32');
    } else {
      const yb = new Float32Array(n * this.yItem);
      for (let k = 0; k < n; k++) {
        const i = idx[from + k];
        yb.set(this.data.y.subarray(i * this.yItem, (i + 1) * this.yItem), k * this.yItem);
      }
      y = tf.tensor(yb, [n, ...this.yShape]);
    }
    return {
      x: xs.length === 1 ? xs[0] : xs,
      y,
      dispose: () => {
        xs.forEach((t) => t.dispose());
        y.dispose();
      },
    };
  }
}

/**
 * The network the loss sees: for sparse cross-entropy on a model whose last layer is a softmax
 * Activation, the same layers up to the logits (shared weights; never dispose it).
 */
export function lossView(model: LayersModel, loss: LossName): { net: LayersModel; fromLogits: boolean } {
  const last = model.layers[model.layers.length - 1];
  if (
    loss === 'sparse_categorical_crossentropy' &&
    model.outputs.length === 1 &&
    last.getClassName() === 'Activation' &&
    last.getConfig().activation === 'softmax'
  ) {
    return { net: tfl.model({ inputs: model.inputs, outputs: last.input as tfl.SymbolicTensor }), fromLogits: true };
  }
  return { net: model, fromLogits: false };
}

function dropoutLayers(model: LayersModel): { seed?: number }[] {
  return model.layers.filter((l) => l.getClassName() === 'Dropout') as unknown as { seed?: number }[];
}

/** Loss (and accuracy) of the current weights on `idx`, inference mode, in chunks. */
export function evaluate(
  model: LayersModel,
  data: TrainSet,
  idx: ArrayLike<number>,
  loss: LossName,
  chunk = 256,
): { loss: number; acc?: number } {
  const batcher = new Batcher(data);
  const { net, fromLogits } = lossView(model, loss);
  let lossSum = 0;
  let correct = 0;
  for (let from = 0; from < idx.length; from += chunk) {
    const to = Math.min(idx.length, from + chunk);
    const b = batcher.batch(idx, from, to);
    const { x, y } = b;
    const [l, c] = tf.tidy(() => {
      const out = net.apply(x, { training: false }) as tf.Tensor;
      const lv = lossTensor(loss, y, out, fromLogits).dataSync()[0];
      const cv = loss === 'sparse_categorical_crossentropy' ? correctCount(y, out).dataSync()[0] : 0;
      return [lv, cv];
    });
    b.dispose();
    lossSum += l * (to - from);
    correct += c;
  }
  const n = idx.length;
  return loss === 'sparse_categorical_crossentropy' ? { loss: lossSum / n, acc: correct / n } : { loss: lossSum / n };
}

/** One summary line per epoch, the same for every model. */
export function formatEpoch(e: EpochRecord, epochs: number, backend: string, best: boolean): string {
  const parts = [`epoch ${e.epoch}/${epochs}`, `loss ${e.loss.toFixed(4)}`];
  if (e.acc !== undefined) parts.push(`acc ${e.acc.toFixed(4)}`);
  parts.push(`val_loss ${e.valLoss.toFixed(4)}${best ? '*' : ' '}`);
  if (e.valAcc !== undefined) parts.push(`val_acc ${e.valAcc.toFixed(4)}`);
  parts.push(`${e.samplesPerSec.toFixed(1)} samples/s`, `${e.seconds.toFixed(1)}s`, `tfjs-${backend}`);
  return parts.join('  ');
}

/**
 * Train `model` in place on `data` and return the history. The model must not be compiled:
 * the loop owns the loss and the optimiser.
 */
export async function trainModel(model: LayersModel, data: TrainSet, o: LoopOptions): Promise<TrainResult> {
  const t0 = performance.now();
  const n = data.shape[0];
  const epochs = o.epochs ?? 30;
  const batchSize = o.batchSize ?? 10;
  const patience = o.patience ?? 3;
  const seed = o.seed ?? 0;
  const restoreBest = o.restoreBest ?? true;
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  if (!(Number.isInteger(epochs) && epochs >= 1)) throw new UserError(`--epochs must be a positive integer, got ${epochs}`);
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new UserError(`--batch-size must be a positive integer, got ${batchSize}`);
  if (!(Number.isInteger(patience) && patience >= 1)) throw new UserError(`--patience must be a positive integer, got ${patience}`);
  if (data.y.length === 0 || n === 0) throw new UserError('no training data');
  const valFraction = o.valFraction ?? 0.25;
  if (!o.split && !(valFraction > 0 && valFraction < 1)) {
    throw new UserError(`--val-fraction must be between 0 and 1 (exclusive), got ${valFraction}`);
  }
  const split = o.split ?? splitIndices(n, valFraction, seed, data.groups);
  if (split.val.length === 0 || split.train.length === 0) {
    throw new UserError(
      `the ${split.by} split of ${n} items left ${split.train.length} for training and ${split.val.length} for validation: need both` +
        (split.by === 'group' ? ' (too few distinct ids?)' : ''),
    );
  }

  const backend = tf.getBackend();
  const optimizer = makeOptimizer(o.optimizer ?? 'adam', o.lr);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const batcher = new Batcher(data);
  const { net, fromLogits } = lossView(model, o.loss);
  // Separate streams: changing the number of epochs must not change the split.
  const shuffleRng = new Rng(seed ^ 0x51f15e);
  const drops = dropoutLayers(model);
  const savedDropSeeds = drops.map((d) => d.seed);
  const dropRng = new Rng(seed ^ 0x0d50);

  const history: EpochRecord[] = [];
  let best = Infinity;
  let bestEpoch = 0;
  let bestWeights: tf.Tensor[] | null = null;
  let wait = 0;
  let stoppedEarly = false;
  const order = split.train.slice();
  try {
    for (let epoch = 1; epoch <= epochs; epoch++) {
      const te = performance.now();
      shuffleRng.shuffle(order);
      const progress = new Progress({ label: `epoch ${epoch}/${epochs}`, unit: 'samples', total: order.length, quiet: o.quiet });
      let lossSum = 0;
      let correct = 0;
      for (let from = 0; from < order.length; from += batchSize) {
        const to = Math.min(order.length, from + batchSize);
        for (const d of drops) d.seed = dropRng.int(2 ** 31);
        const b = batcher.batch(order, from, to);
        const { x, y } = b;
        let corr: tf.Scalar | null = null;
        const cost = optimizer.minimize(
          () => {
            const out = net.apply(x, { training: true }) as tf.Tensor;
            if (o.loss === 'sparse_categorical_crossentropy') corr = tf.keep(correctCount(y, out));
            return lossTensor(o.loss, y, out, fromLogits);
          },
          true,
          vars,
        )!;
        lossSum += cost.dataSync()[0] * (to - from);
        cost.dispose();
        if (corr) {
          correct += (corr as tf.Scalar).dataSync()[0];
          (corr as tf.Scalar).dispose();
        }
        b.dispose();
        progress.tick(to - from);
      }
      progress.stop();
      const trainSeconds = (performance.now() - te) / 1000;
      const val = evaluate(model, data, split.val, o.loss);
      const rec: EpochRecord = {
        epoch,
        loss: lossSum / order.length,
        valLoss: val.loss,
        samplesPerSec: order.length / trainSeconds,
        seconds: (performance.now() - te) / 1000,
      };
      if (o.loss === 'sparse_categorical_crossentropy') {
        rec.acc = correct / order.length;
        rec.valAcc = val.acc;
      }
      if (!Number.isFinite(rec.loss) || !Number.isFinite(rec.valLoss)) {
        throw new UserError(`training diverged at epoch ${epoch} (loss ${rec.loss}, val_loss ${rec.valLoss}); try a lower --lr`);
      }
      history.push(rec);
      const improved = rec.valLoss < best;
      log(formatEpoch(rec, epochs, backend, improved));
      o.onEpoch?.(rec);
      if (improved) {
        best = rec.valLoss;
        bestEpoch = epoch;
        wait = 0;
        if (restoreBest) {
          bestWeights?.forEach((t) => t.dispose());
          bestWeights = model.getWeights().map((t) => t.clone());
        }
      } else if (++wait >= patience) {
        stoppedEarly = epoch < epochs;
        break;
      }
    }
    let weights: 'best' | 'last' = 'last';
    if (restoreBest && bestWeights && bestEpoch !== history.length) {
      model.setWeights(bestWeights);
      weights = 'best';
    } else if (restoreBest) {
      weights = 'best'; // the last epoch was the best one
    }
    const held = history[(weights === 'best' ? bestEpoch : history.length) - 1];
    return {
      history,
      epochsRun: history.length,
      stoppedEarly,
      bestEpoch,
      weights,
      split: { by: split.by, train: split.train.length, val: split.val.length },
      splitIndices: split,
      backend,
      wallSeconds: (performance.now() - t0) / 1000,
      final: held.valAcc !== undefined ? { valLoss: held.valLoss, valAcc: held.valAcc } : { valLoss: held.valLoss },
    };
  } finally {
    bestWeights?.forEach((t) => t.dispose());
    drops.forEach((d, i) => (d.seed = savedDropSeeds[i]));
    optimizer.dispose();
  }
}
