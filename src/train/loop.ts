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
import { tf, tfl, type BackendChoice } from '../runtime/tfjs.js';
import { splitIndices, type Split } from '../data/split.js';
import { Rng } from '../util/rng.js';
import { Progress } from '../util/progress.js';
import { UserError, OptionError } from '../util/errors.js';
import { Batcher, type TrainSet } from './batcher.js';
import { dropoutLayers, installShardDropout, type ShardWindow } from './dropout.js';
import { correctCount, lossTensor, lossView, makeOptimizer, type LossName, type OptimizerName } from './objective.js';
import { availableCores, emptyTiming, parallelBlocker, ReplicaPool, type MainContext, type StepTiming } from './parallel.js';
import { threadTime, threadTimeSince } from './thread-time.js';
import { evalSums } from './replica.js';
import { dataHash, loadCheckpoint, saveCheckpoint, type Fingerprint, type LoopState } from './checkpoint.js';

export { lossTensor, lossView, type LossName, type OptimizerName } from './objective.js';
export type { TrainSet } from './batcher.js';

type LayersModel = tfl.LayersModel;

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
  /**
   * Threads training data-parallel (each a replica of the model; gradients summed every step,
   * so the run follows single-thread training with the same batch size up to float rounding).
   * Default: $OCCMAP_TRAIN_WORKERS, else every core for jobs large enough to repay starting the
   * workers. 1: this thread only. Results repeat exactly for a given seed and worker count.
   */
  workers?: number;
  /**
   * A directory for the training state after every epoch (src/train/checkpoint.ts): when it
   * holds a checkpoint of this training, the run resumes from it instead of starting over.
   */
  checkpoint?: string;
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
  /** Threads that trained (1: the calling thread only). */
  workers: number;
  /** Data-parallel runs: where the main thread's step time went. */
  stepTiming?: StepTiming;
  wallSeconds: number;
  /** Validation figures of the weights the model holds now. */
  final: { valLoss: number; valAcc?: number };
}

/** Loss (and accuracy) of the current weights on `idx`, inference mode, in chunks. */
export function evaluate(
  model: LayersModel,
  data: TrainSet,
  idx: ArrayLike<number>,
  loss: LossName,
  chunk = 256,
): { loss: number; acc?: number } {
  const { net, fromLogits } = lossView(model, loss);
  const { lossSum, correct } = evalSums(net, fromLogits, loss, new Batcher(data), idx, 0, idx.length, chunk);
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

/** Below this many samples (epochs x training items) a job is done before workers would pay off. */
export const AUTO_PARALLEL_MIN_SAMPLES = 4096;

/** How many threads train (see LoopOptions.workers); logs why it is fewer than asked. */
export function resolveWorkers(
  o: Pick<LoopOptions, 'workers'>,
  model: LayersModel,
  backend: string,
  work: { batchSize: number; samples: number },
  log: (line: string) => void,
): number {
  const env = process.env.OCCMAP_TRAIN_WORKERS;
  const asked = o.workers ?? (env !== undefined && env !== '' ? Number(env) : undefined);
  if (asked !== undefined && !(Number.isInteger(asked) && asked >= 1)) {
    if (o.workers !== undefined) throw new OptionError(['workers'], `must be a positive integer, got ${o.workers}`);
    throw new UserError(`OCCMAP_TRAIN_WORKERS must be a positive integer, got ${env}`);
  }
  const auto = asked === undefined;
  let n = asked ?? availableCores();
  if (n > 1 && auto && work.samples < AUTO_PARALLEL_MIN_SAMPLES) return 1;
  const blocker = n > 1 ? parallelBlocker(model, backend) : null;
  if (blocker) {
    if (!auto || backend !== 'tensorflow') log(`training on one thread: ${blocker}`);
    return 1;
  }
  if (n > work.batchSize) {
    if (!auto) log(`training on ${work.batchSize} threads, not ${n}: a batch of ${work.batchSize} has no item for the others`);
    n = work.batchSize;
  }
  return n;
}

interface Stepper {
  readonly workers: number;
  startEpoch(order: number[]): void;
  /** One optimiser step over the epoch order's items [from, to): loss sum and correct count. */
  step(from: number, to: number, seeds: number[]): Promise<{ lossSum: number; correct: number }>;
  close(): Promise<void>;
  timing?: StepTiming;
  /** Validation loss (and accuracy) over the replicas, when they share that work. */
  evaluate?(): Promise<{ loss: number; acc?: number }>;
}

/** Single-thread steps: tf's own minimize on the whole batch. */
function localStepper(ctx: MainContext, batcher: Batcher): Stepper {
  let order: number[] = [];
  let timing = emptyTiming(1);
  return {
    workers: 1,
    startEpoch: (o) => {
      order = o;
      timing = emptyTiming(1);
    },
    get timing() {
      return timing;
    },
    async step(from, to, seeds) {
      const t0 = performance.now();
      const tt0 = threadTime();
      ctx.drops.forEach((d, i) => (d.seed = seeds[i]));
      ctx.dropWindow.offset = 0;
      ctx.dropWindow.total = to - from;
      const { x, y, dispose } = batcher.batch(order, from, to);
      let corr: tf.Scalar | null = null;
      try {
        const cost = ctx.optimizer.minimize(
          () => {
            const out = ctx.net.apply(x, { training: true }) as tf.Tensor;
            if (ctx.loss === 'sparse_categorical_crossentropy') corr = tf.keep(correctCount(y, out));
            return lossTensor(ctx.loss, y, out, ctx.fromLogits);
          },
          true,
          ctx.vars,
        )!;
        const lossSum = cost.dataSync()[0] * (to - from);
        cost.dispose();
        const own = threadTimeSince(tt0);
        const wall = performance.now() - t0;
        timing.steps++;
        timing.computeMs += wall;
        timing.shards[0].wallMs += wall;
        timing.shards[0].cpuMs += own.cpuMs;
        timing.shards[0].queuedMs += own.queuedMs;
        return { lossSum, correct: corr ? (corr as tf.Scalar).dataSync()[0] : 0 };
      } finally {
        (corr as tf.Scalar | null)?.dispose();
        dispose();
      }
    },
    close: async () => {},
  };
}

async function makeStepper(model: LayersModel, data: TrainSet, trainCount: number, val: readonly number[], ctx: MainContext, workers: number, o: LoopOptions): Promise<Stepper> {
  if (workers <= 1) return localStepper(ctx, new Batcher(data));
  const backend = tf.getBackend() as BackendChoice;
  const pool = await ReplicaPool.start(model, data, trainCount, val, ctx, { workers, loss: o.loss, optimizer: o.optimizer ?? 'adam', lr: o.lr, backend });
  return {
    workers,
    startEpoch: (order) => pool.setOrder(order),
    step: (from, to, seeds) => pool.step(from, to, seeds),
    close: () => pool.close(),
    get timing() {
      return pool.timing;
    },
    evaluate: () => pool.evaluate(),
  };
}

/** Checks the loop's numeric options and makes the split. */
function checkedSplit(data: TrainSet, o: LoopOptions): Split {
  const n = data.shape[0];
  const { epochs = 30, batchSize = 10, patience = 3 } = o;
  if (!(Number.isInteger(epochs) && epochs >= 1)) throw new OptionError(['epochs'], `must be a positive integer, got ${epochs}`);
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new OptionError(['batchSize'], `must be a positive integer, got ${batchSize}`);
  if (!(Number.isInteger(patience) && patience >= 1)) throw new OptionError(['patience'], `must be a positive integer, got ${patience}`);
  if (data.y.length === 0 || n === 0) throw new UserError('no training data');
  const valFraction = o.valFraction ?? 0.25;
  if (!o.split && !(valFraction > 0 && valFraction < 1)) {
    throw new OptionError(['valFraction'], `must be between 0 and 1 (exclusive), got ${valFraction}`);
  }
  const split = o.split ?? splitIndices(n, valFraction, o.seed ?? 0, data.groups);
  if (split.val.length === 0 || split.train.length === 0) {
    throw new UserError(
      `the ${split.by} split of ${n} items left ${split.train.length} for training and ${split.val.length} for validation: need both` +
        (split.by === 'group' ? ' (too few distinct ids?)' : ''),
    );
  }
  return split;
}

/**
 * Train `model` in place on `data` and return the history. The model must not be compiled:
 * the loop owns the loss and the optimiser.
 */
export async function trainModel(model: LayersModel, data: TrainSet, o: LoopOptions): Promise<TrainResult> {
  const t0 = performance.now();
  const epochs = o.epochs ?? 30;
  const batchSize = o.batchSize ?? 10;
  const patience = o.patience ?? 3;
  const seed = o.seed ?? 0;
  const restoreBest = o.restoreBest ?? true;
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const split = checkedSplit(data, o);

  const backend = tf.getBackend();
  const { net, fromLogits } = lossView(model, o.loss);
  const dropWindow: ShardWindow = { offset: 0, total: 1 };
  const drops = dropoutLayers(model);
  const savedDropSeeds = drops.map((d) => d.seed);
  const ctx: MainContext = {
    loss: o.loss,
    net,
    fromLogits,
    vars: model.trainableWeights.map((w) => w.read() as tf.Variable),
    optimizer: makeOptimizer(o.optimizer ?? 'adam', o.lr),
    dropWindow,
    drops,
  };
  const restoreDropout = installShardDropout(model, dropWindow);
  // Separate streams: changing the number of epochs must not change the split.
  const shuffleRng = new Rng(seed ^ 0x51f15e);
  const dropRng = new Rng(seed ^ 0x0d50);
  const workers = resolveWorkers(o, model, backend, { batchSize, samples: epochs * split.train.length }, log);
  const label = workers > 1 ? `${backend} x${workers} threads` : backend;

  const s: LoopState = { epoch: 0, history: [], best: Infinity, bestEpoch: 0, wait: 0, stopped: false };
  const history = s.history;
  let bestWeights: tf.Tensor[] | null = null;
  const order = split.train.slice();
  let stepper: Stepper | null = null;
  const fp: Fingerprint = { weights: model.getWeights().map((t) => t.shape), data: o.checkpoint ? dataHash([data.x, data.y, ...(data.extra ?? []).map((e) => e.data)]) : '', train: split.train.length, val: split.val.length, seed, batchSize, loss: o.loss, optimizer: o.optimizer ?? 'adam', lr: o.lr ?? null, patience, workers };
  try {
    if (o.checkpoint) bestWeights = await resume(o.checkpoint, fp, s, model, ctx, log, (n) => replayStreams(n, order, batchSize, shuffleRng, dropRng, drops.length));
    stepper = await makeStepper(model, data, order.length, split.val, ctx, workers, o);
    for (let epoch = s.epoch + 1; epoch <= epochs && !s.stopped; epoch++) {
      const te = performance.now();
      shuffleRng.shuffle(order);
      stepper.startEpoch(order);
      const progress = new Progress({ label: `epoch ${epoch}/${epochs}`, unit: 'samples', total: order.length, quiet: o.quiet });
      let lossSum = 0;
      let correct = 0;
      for (let from = 0; from < order.length; from += batchSize) {
        const to = Math.min(order.length, from + batchSize);
        const r = await stepper.step(from, to, drops.map(() => dropRng.int(2 ** 31)));
        lossSum += r.lossSum;
        correct += r.correct;
        progress.tick(to - from);
      }
      progress.stop();
      const trainSeconds = (performance.now() - te) / 1000;
      const val = stepper.evaluate ? await stepper.evaluate() : evaluate(model, data, split.val, o.loss);
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
      const improved = rec.valLoss < s.best;
      log(formatEpoch(rec, epochs, label, improved));
      o.onEpoch?.(rec);
      s.epoch = epoch;
      if (improved) {
        s.best = rec.valLoss;
        s.bestEpoch = epoch;
        s.wait = 0;
        if (restoreBest) {
          bestWeights?.forEach((t) => t.dispose());
          bestWeights = model.getWeights().map((t) => t.clone());
        }
      } else if (++s.wait >= patience) s.stopped = true;
      if (o.checkpoint) await saveCheckpoint(o.checkpoint, fp, s, model.getWeights(), bestWeights, workers === 1 ? await ctx.optimizer.getWeights() : null);
    }
    const stoppedEarly = s.stopped && s.epoch < epochs;
    const bestEpoch = s.bestEpoch;
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
      workers,
      ...(stepper.timing ? { stepTiming: { ...stepper.timing } } : {}),
      wallSeconds: (performance.now() - t0) / 1000,
      final: held.valAcc !== undefined ? { valLoss: held.valLoss, valAcc: held.valAcc } : { valLoss: held.valLoss },
    };
  } finally {
    await stepper?.close();
    bestWeights?.forEach((t) => t.dispose());
    restoreDropout();
    drops.forEach((d, i) => (d.seed = savedDropSeeds[i]));
    ctx.optimizer.dispose();
  }
}

/** The seeded shuffles and dropout seeds of `epochs` epochs, drawn and dropped: where a checkpoint left them. */
function replayStreams(epochs: number, order: number[], batchSize: number, shuffleRng: Rng, dropRng: Rng, drops: number): void {
  for (let e = 0; e < epochs; e++) {
    shuffleRng.shuffle(order);
    for (let from = 0; from < order.length; from += batchSize) for (let d = 0; d < drops; d++) dropRng.int(2 ** 31);
  }
}

/**
 * Load the checkpoint in `dir` into the model, the optimiser (single-thread runs: worker
 * replicas start their optimisers afresh, so the main one does too) and `s`, and replay the
 * seeded streams past its epochs; returns the best epoch's weights. No checkpoint: no change.
 */
async function resume(
  dir: string,
  fp: Fingerprint,
  s: LoopState,
  model: LayersModel,
  ctx: MainContext,
  log: (line: string) => void,
  replay: (epochs: number) => void,
): Promise<tf.Tensor[] | null> {
  const r = loadCheckpoint(dir, fp);
  if (!r) return null;
  if (r.note) log(`warning: ${r.note}`);
  replay(r.state.epoch);
  model.setWeights(r.weights);
  r.weights.forEach((t) => t.dispose());
  if (r.optimizer) {
    await ctx.optimizer.setWeights(r.optimizer);
    r.optimizer.forEach((n) => n.tensor.dispose());
  }
  Object.assign(s, { ...r.state, history: s.history });
  s.history.push(...r.state.history);
  log(
    `resuming from ${dir}: ${s.epoch} epoch(s) done (best ${s.bestEpoch}, val_loss ${s.best.toPrecision(4)})` +
      (r.optimizer ? '' : '; the optimiser state restarts (worker replicas)') +
      (s.stopped ? '; early stopping had ended it' : ''),
  );
  return r.bestWeights;
}
