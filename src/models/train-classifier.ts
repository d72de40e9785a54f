/**
 * trainClassifier: the seed's CNN trained on a dataset as one library call. It returns the
 * trained model, its card and the validation report, and writes the model directory (tfjs
 * files, card.json, model.onnx) only when asked (`out`). Lines go to `log`, never to stdout.
 * `occmap train-classifier` and the study are clients of it.
 */
import { rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { readDataset, type Dataset } from '../data/dataset.js';
import { valueRange } from '../data/stamps.js';
import { applyHoldout, deriveHoldout, holdoutOfModelDir, holdoutRecord, holdoutWarnings, type Holdout } from '../data/holdout.js';
import { initTf, backendDescription, type BackendChoice } from '../runtime/tfjs.js';
import { fileError, OptionError, UserError } from '../util/errors.js';
import { refuseOutputOverInput } from '../util/paths.js';
import { occmapVersion } from '../util/version.js';
import { ProgressReporter, type ProgressCallback } from '../util/progress.js';
import type { EpochRecord } from '../train/loop.js';
import { fitClassifier, type FitClassifierOptions, type TrainedClassifier } from './classifier.js';
import { assertModelDirWritable, hashFile, saveModelDir, type ModelCard } from './model-dir.js';

export interface TrainClassifierOptions {
  /** A dataset file, or a dataset in memory (then `dataName` names it in errors and the card). */
  data: string | Dataset;
  dataName?: string;
  /** Model directory to write (tfjs files, card.json, model.onnx); must be absent or empty unless `force`. */
  out?: string;
  force?: boolean;
  /** Channel spec: indices or names, comma separated, or 'all' (see resolveChannels). */
  channels?: string;
  activation?: 'relu' | 'linear';
  /** Zero padding added on each side inside the model (default 3: 21 -> 27). */
  pad?: number;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  patience?: number;
  /** Validation fraction of a seeded split (by object when the data has ids). */
  valFraction?: number;
  seed?: number;
  /** Train on a seeded random subset of this many stamps. */
  subset?: number;
  /** Hold out these objects instead of a seeded split: a Holdout, or a model directory whose held-out set to reuse. */
  holdout?: Holdout | string;
  /** Keep the best val_loss epoch's weights (default) or the last epoch's. */
  restoreBest?: boolean;
  backend?: BackendChoice;
  /** Training threads (see LoopOptions.workers). */
  workers?: number;
  /**
   * A directory for the training state after every epoch: a rerun with the same options resumes
   * from it after a crash. Removed once the model is saved.
   */
  checkpoint?: string;
  /** Recorded in the card. */
  command?: string;
  /** No within-epoch progress from the training loop (default true for library calls). */
  quiet?: boolean;
  /** Epoch lines and notes, one line each. */
  log?: (line: string) => void;
  /** Epochs done of `epochs` (label 'train classifier'); early stopping closes the work below the total. */
  onProgress?: ProgressCallback;
  /** Each epoch's losses, accuracy and speed as it ends. */
  onEpoch?: (e: EpochRecord) => void;
}

export interface TrainClassifierResult extends TrainedClassifier {
  card: ModelCard;
  holdout: Holdout;
  seconds: number;
}

function checkOptions(o: TrainClassifierOptions): void {
  const int = (field: keyof TrainClassifierOptions, min: number): void => {
    const v = o[field];
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= min)) throw new OptionError([field], `must be an integer >= ${min}, got ${String(v)}`);
  };
  int('pad', 0);
  int('epochs', 1);
  int('batchSize', 1);
  int('patience', 1);
  int('seed', 0);
  int('subset', 2);
  if (o.lr !== undefined && !(o.lr > 0)) throw new OptionError(['lr'], `must be a positive number, got ${o.lr}`);
  if (o.valFraction !== undefined && !(o.valFraction > 0 && o.valFraction < 1)) {
    throw new OptionError(['valFraction'], `must be between 0 and 1 (exclusive), got ${o.valFraction}`);
  }
  if (o.activation !== undefined && o.activation !== 'relu' && o.activation !== 'linear') {
    throw new OptionError(['activation'], `must be relu or linear, got '${String(o.activation)}'`);
  }
}

/**
 * Labels must name the classes the model will have: 0..K-1 with every class present, and no
 * more classes than the data's class names (a stray 7 would build an 8-class model whose card
 * lists 2 names).
 */
export function checkTrainingLabels(file: string, labels: Int32Array | undefined, classes: string[] | undefined): void {
  if (!labels) throw fileError(file, 'has no labels: a classifier needs labels (an int array named labels or y)');
  const seen = new Set(labels);
  const k = Math.max(...seen) + 1;
  if (classes && k > classes.length) {
    const i = labels.findIndex((v) => v >= classes.length);
    throw fileError(file, `label ${labels[i]} of stamp ${i} is not one of its ${classes.length} classes (${classes.map((c, j) => `${j} ${c}`).join(', ')}): fix the labels or meta.json's classes`);
  }
  const missing = Array.from({ length: k }, (_, j) => j).filter((j) => !seen.has(j));
  if (missing.length > 0) {
    throw fileError(file, `labels take the values ${[...seen].sort((a, b) => a - b).join(', ')}: class(es) ${missing.join(', ')} have no stamps, so a ${k}-class model would be trained; relabel to 0..${seen.size - 1}`);
  }
  if (seen.size < 2) throw fileError(file, `all labels are ${[...seen][0]}: a classifier needs at least 2 classes`);
}

/** The card of a trained classifier (kind, data, options, split, history, validation). */
async function classifierCard(o: TrainClassifierOptions, ds: Dataset, file: string, t: TrainedClassifier, holdout: Holdout, opts: FitClassifierOptions, seconds: number): Promise<ModelCard> {
  const { result } = t;
  const onDisk = typeof o.data === 'string';
  return {
    kind: 'classifier',
    architecture: 'seed-classifier',
    occmapVersion: occmapVersion(),
    createdAt: new Date().toISOString(),
    command: o.command,
    inputShape: t.inputShape,
    numClasses: t.numClasses,
    classes: ds.meta.classes,
    channels: t.channels,
    channelNames: t.channelNames,
    parameters: t.parameters,
    data: {
      file: onDisk ? path.resolve(file) : file,
      bytes: onDisk ? statSync(file).size : undefined,
      sha256: onDisk ? await hashFile(file) : undefined,
      source: ds.meta.source,
      shape: ds.shape,
      used: t.used,
      hasIds: ds.ids !== undefined,
      // Value range of the training stamps: explain/serve warn on inputs far outside it.
      range: valueRange(ds.images),
    },
    options: {
      activation: opts.activation,
      pad: opts.pad,
      epochs: opts.epochs,
      batchSize: opts.batchSize,
      optimizer: 'adam',
      lr: opts.lr,
      loss: 'sparse_categorical_crossentropy',
      patience: opts.patience,
      valFraction: opts.valFraction,
      seed: opts.seed,
      subset: opts.subset ?? null,
      channels: o.channels ?? null,
    },
    training: {
      // counts, then the held-out set itself (its object ids), so an explainer can hold out the same
      split: { ...result.split, ...holdoutRecord(holdout) },
      epochsRun: result.epochsRun,
      workers: result.workers,
      stoppedEarly: result.stoppedEarly,
      bestEpoch: result.bestEpoch,
      weights: result.weights,
      history: result.history.map((e) => ({ epoch: e.epoch, loss: e.loss, acc: e.acc, valLoss: e.valLoss, valAcc: e.valAcc, samplesPerSec: e.samplesPerSec })),
      valLoss: result.final.valLoss,
      valAccuracy: result.final.valAcc,
      valBalancedAccuracy: t.validation.balancedAccuracy,
      valConfusion: t.validation.confusion,
      backend: `tfjs-${result.backend}`,
      wallSeconds: seconds,
    },
  };
}

/** Which objects (or rows) the classifier holds out. */
async function holdoutFor(o: TrainClassifierOptions, ds: Dataset, file: string, rows: number[]): Promise<Holdout> {
  if (typeof o.holdout === 'string') return holdoutOfModelDir(o.holdout);
  if (o.holdout) return o.holdout;
  const sha = typeof o.data === 'string' ? await hashFile(file) : undefined;
  return deriveHoldout({ n: ds.shape[0], rows, ids: ds.ids, valFraction: o.valFraction ?? 0.25, seed: o.seed ?? 0, dataSha256: sha });
}

/**
 * Train the seed classifier on `data` (holding out a seeded fraction of its objects, or the
 * given held-out set) and, with `out`, save it with its card and ONNX export. The caller owns
 * the returned model (dispose it).
 */
export async function trainClassifier(o: TrainClassifierOptions): Promise<TrainClassifierResult> {
  checkOptions(o);
  const log = o.log ?? (() => {});
  // Before any work: an unusable output must not cost a training run.
  refuseOutputOverInput(
    [
      { flag: '{data}', path: typeof o.data === 'string' ? o.data : undefined },
      { flag: "the held-out set's model directory", path: typeof o.holdout === 'string' ? o.holdout : undefined },
    ],
    [{ flag: '{out}', path: o.out, kind: 'dir' }],
  );
  if (o.out) assertModelDirWritable(o.out, o.force);
  const t0 = performance.now();
  const file = typeof o.data === 'string' ? o.data : (o.dataName ?? 'the dataset');
  const ds = typeof o.data === 'string' ? await readDataset(o.data) : o.data;
  for (const w of ds.warnings ?? []) log(`warning: ${file}: ${w}`);
  checkTrainingLabels(file, ds.labels, ds.meta.classes);
  const backend = await initTf(o.backend ?? 'auto');
  log(`training on ${backendDescription()}`);
  const opts: FitClassifierOptions = {
    activation: o.activation ?? 'relu',
    pad: o.pad ?? 3,
    epochs: o.epochs ?? 30,
    batchSize: o.batchSize ?? 10,
    lr: o.lr ?? 0.001,
    patience: o.patience ?? 3,
    valFraction: o.valFraction ?? 0.25,
    seed: o.seed ?? 0,
    subset: o.subset,
    channels: o.channels,
    restoreBest: o.restoreBest ?? true,
    quiet: o.quiet ?? true,
    workers: o.workers,
    checkpoint: o.checkpoint,
    log,
  };
  let holdout: Holdout | undefined;
  let trained: TrainedClassifier;
  const progress = new ProgressReporter(o.onProgress, { label: 'train classifier', unit: 'epochs', total: opts.epochs! });
  try {
    trained = await fitClassifier(ds, file, {
      ...opts,
      onEpoch: (e) => {
        progress.tick();
        o.onEpoch?.(e);
      },
      splitOf: async (rows) => {
        holdout = await holdoutFor(o, ds, file, rows);
        const split = applyHoldout(holdout, { n: ds.shape[0], rows, ids: ds.ids, file });
        for (const w of holdoutWarnings(split, ds.ids, rows)) log(`warning: ${w}`);
        return split;
      },
    });
  } catch (err) {
    const msg = (err as Error).message ?? '';
    if (!(err instanceof UserError) && /not registered/.test(msg)) {
      throw new OptionError(['backend'], `'${backend}' cannot train this model here (${msg.split('\n')[0]}); try 'cpu'`);
    }
    throw err;
  } finally {
    progress.stop();
  }
  const seconds = (performance.now() - t0) / 1000;
  try {
    const card = await classifierCard(o, ds, file, trained, holdout!, opts, seconds);
    if (o.out) {
      // model.onnx (what occlude/evaluate/serve run, several times faster than tfjs) is written
      // in the same staged directory, and card.json records every file's sha256.
      const saved = await saveModelDir(trained.model, o.out, card, { force: o.force, onnx: true });
      Object.assign(card, saved.card);
      if (o.checkpoint) rmSync(o.checkpoint, { recursive: true, force: true });
    }
    return { ...trained, card, holdout: holdout!, seconds };
  } catch (err) {
    trained.model.dispose();
    throw err;
  }
}
