/** `occmap train-classifier --data FILE --out DIR`: the seed's CNN, trained and saved. */
import type { Command } from 'commander';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { readDataset } from '../data/dataset.js';
import { trainClassifier, type TrainedClassifier } from '../models/classifier.js';
import { exportModelToOnnx, META_SOURCE_HASH } from '../models/to-onnx.js';
import { assertModelDirWritable, hashFile, saveModelDir, type ModelCard } from '../models/io.js';
import { initTf, backendDescription, type BackendChoice } from '../runtime/tfjs.js';
import { UserError } from '../util/errors.js';
import { int, num } from './options.js';

const EXAMPLES = `
Examples:
  $ occmap train-classifier --data hits.npz --out clf
      seed classifier (ReLU) on the SNR-difference channel, split by object id, up to 30 epochs
  $ occmap train-classifier --data hits.npz --out clf-seed --activation linear --seed 1
      the seed-faithful model: no activations on conv/dense layers
  $ occmap train-classifier --data sim.npz --out quick --limit 500 --epochs 3 --backend cpu
      a quick run on 500 stamps
  $ occmap train-classifier --data hits.npz --out clf-all --channels template,science,difference,snr_difference
      use all four HiTS channels (or --channels all, or indices: --channels 2,3)

Writes DIR/model.json + weights.bin (tfjs layers format) and DIR/card.json (data, options,
split, per-epoch history, validation accuracy). The directory appears complete or not at all.
Early stopping restores the weights of the best val_loss epoch (--keep-last: Keras' default).`;

export interface TrainClassifierCliOptions {
  data: string;
  out: string;
  channels?: string;
  activation: string;
  pad: string;
  epochs: string;
  batchSize: string;
  lr: string;
  patience: string;
  valFraction: string;
  seed: string;
  limit?: string;
  backend: string;
  workers?: string;
  keepLast?: boolean;
  force?: boolean;
  quiet?: boolean;
}



function occmapVersion(): string {
  try {
    return JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

export async function runTrainClassifier(o: TrainClassifierCliOptions): Promise<{ trained: TrainedClassifier; card: ModelCard }> {
  if (o.activation !== 'relu' && o.activation !== 'linear') throw new UserError(`--activation must be relu or linear, got '${o.activation}'`);
  if (!['auto', 'wasm', 'cpu'].includes(o.backend)) throw new UserError(`--backend must be auto, wasm or cpu, got '${o.backend}'`);
  const opts = {
    activation: o.activation as 'relu' | 'linear',
    pad: int('--pad', o.pad, 0),
    epochs: int('--epochs', o.epochs, 1),
    batchSize: int('--batch-size', o.batchSize, 1),
    lr: num('--lr', o.lr, (x) => x > 0, 'a positive number'),
    patience: int('--patience', o.patience, 1),
    valFraction: num('--val-fraction', o.valFraction, (x) => x > 0 && x < 1, 'between 0 and 1 (exclusive)'),
    seed: int('--seed', o.seed, 0),
    limit: o.limit !== undefined ? int('--limit', o.limit, 2) : undefined,
    channels: o.channels,
    restoreBest: !o.keepLast,
    quiet: o.quiet,
    workers: o.workers !== undefined ? int('--workers', o.workers, 1) : undefined,
  };
  // Before any work: an unusable output must not cost a training run.
  assertModelDirWritable(o.out, o.force);
  const t0 = performance.now();
  const ds = await readDataset(o.data);
  const backend = await initTf(o.backend as BackendChoice);
  process.stderr.write(`training on ${backendDescription()}\n`);
  let trained: TrainedClassifier;
  try {
    trained = await trainClassifier(ds, o.data, opts);
  } catch (err) {
    const msg = (err as Error).message ?? '';
    if (!(err instanceof UserError) && /not registered/.test(msg)) {
      throw new UserError(`${msg.split('\n')[0]} (the tfjs ${backend} backend cannot train this model here; try --backend cpu)`);
    }
    throw err;
  }
  const { result } = trained;
  const card: ModelCard = {
    kind: 'classifier',
    architecture: 'seed-classifier',
    occmapVersion: occmapVersion(),
    createdAt: new Date().toISOString(),
    command: ['occmap', ...process.argv.slice(2)].join(' '),
    inputShape: trained.inputShape,
    numClasses: trained.numClasses,
    classes: ds.meta.classes,
    channels: trained.channels,
    channelNames: trained.channelNames,
    parameters: trained.parameters,
    data: {
      file: path.resolve(o.data),
      bytes: statSync(o.data).size,
      sha256: await hashFile(o.data),
      source: ds.meta.source,
      shape: ds.shape,
      used: trained.used,
      hasIds: ds.ids !== undefined,
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
      limit: opts.limit ?? null,
      channels: o.channels ?? null,
    },
    training: {
      split: result.split,
      epochsRun: result.epochsRun,
      workers: result.workers,
      stoppedEarly: result.stoppedEarly,
      bestEpoch: result.bestEpoch,
      weights: result.weights,
      history: result.history.map((e) => ({
        epoch: e.epoch,
        loss: e.loss,
        acc: e.acc,
        valLoss: e.valLoss,
        valAcc: e.valAcc,
        samplesPerSec: e.samplesPerSec,
      })),
      valLoss: result.final.valLoss,
      valAccuracy: result.final.valAcc,
      valBalancedAccuracy: trained.validation.balancedAccuracy,
      valConfusion: trained.validation.confusion,
      backend: `tfjs-${result.backend}`,
      wallSeconds: (performance.now() - t0) / 1000,
    },
  };
  try {
    const { hash } = await saveModelDir(trained.model, o.out, card, { force: o.force });
    card.hash = hash;
    // The ONNX export is what occlude/evaluate/serve run by default (several times faster);
    // its metadata names the weights it came from, so a stale export is never used.
    await exportModelToOnnx(trained.model, path.join(o.out, 'model.onnx'), { metadata: { [META_SOURCE_HASH]: hash } });
  } finally {
    trained.model.dispose();
  }
  const acc = result.final.valAcc ?? NaN;
  process.stdout.write(
    `${o.out}: val_acc ${acc.toFixed(4)} (balanced ${trained.validation.balancedAccuracy.toFixed(4)}) val_loss ${result.final.valLoss.toFixed(4)} on ${result.split.val} held-out stamps (split by ${result.split.by}); ` +
      `${result.epochsRun} epoch(s)${result.stoppedEarly ? ', stopped early' : ''}, ${result.weights} weights (epoch ${result.weights === 'best' ? result.bestEpoch : result.epochsRun}); ` +
      `${trained.parameters} parameters; ${((performance.now() - t0) / 1000).toFixed(1)}s on tfjs-${result.backend}${result.workers > 1 ? ` (${result.workers} threads)` : ''}\n` +
      `confusion on the validation split (rows: true class, columns: predicted): ${JSON.stringify(trained.validation.confusion)}\n`,
  );
  return { trained, card };
}

export function registerTrainClassifier(program: Command): void {
  program
    .command('train-classifier')
    .description("train the seed's CNN classifier on a stamp dataset; save a tfjs model directory + card.json")
    .requiredOption('--data <file>', 'dataset .npz (images, labels, optional ids), .npy or HiTS 2013 pickle')
    .requiredOption('--out <dir>', 'output model directory (must be absent or empty unless --force)')
    .option('--channels <list>', "channels to use: indices or names, comma separated, or 'all' (default: snr_difference for HiTS 4-channel data, else all)")
    .option('--activation <name>', 'relu | linear (linear = the seed code)', 'relu')
    .option('--pad <n>', 'zero padding added on each side inside the model', '3')
    .option('--epochs <n>', 'maximum epochs', '30')
    .option('--batch-size <n>', 'batch size', '10')
    .option('--lr <x>', 'Adam learning rate', '0.001')
    .option('--patience <n>', 'early stopping: epochs without a lower val_loss', '3')
    .option('--val-fraction <x>', 'validation fraction (by object when the data has ids)', '0.25')
    .option('--seed <n>', 'seed for split, shuffles, initial weights and dropout', '0')
    .option('--limit <n>', 'use only N stamps (seeded random subset) for quick runs')
    .option('--backend <name>', 'auto | wasm | cpu', 'auto')
    .option('--workers <n>', 'training threads: data-parallel model replicas, gradients summed every step (default: every core for jobs large enough; 1: no worker threads; env OCCMAP_TRAIN_WORKERS)')
    .option('--keep-last', "keep the last epoch's weights (Keras' default) instead of the best val_loss epoch's")
    .option('--force', 'replace an existing non-empty output directory')
    .option('--quiet', 'no within-epoch progress (epoch lines are still printed)')
    .addHelpText('after', EXAMPLES)
    .action(async (o: TrainClassifierCliOptions) => {
      await runTrainClassifier(o);
    });
}
