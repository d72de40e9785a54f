/** `occmap train-classifier --data FILE --out DIR`: the seed's CNN, trained and saved. */
import { Option, type Command } from 'commander';
import { trainClassifier, type TrainClassifierResult } from '../models/train-classifier.js';
import { UserError } from '../util/errors.js';
import { choice, int, num, RENAMED_LIMIT } from './options.js';

const EXAMPLES = `
Examples:
  $ occmap train-classifier --data hits.npz --out clf
      seed classifier (ReLU) on the SNR-difference channel, split by object id, up to 30 epochs
  $ occmap train-classifier --data hits.npz --out clf-seed --activation linear --seed 1
      the seed-faithful model: no activations on conv/dense layers
  $ occmap train-classifier --data sim.npz --out quick --subset 500 --epochs 3 --backend cpu
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
  holdoutFrom?: string;
  seed: string;
  subset?: string;
  limit?: string;
  backend: string;
  workers?: string;
  checkpoint?: string;
  keepLast?: boolean;
  force?: boolean;
  quiet?: boolean;
}

export async function runTrainClassifier(o: TrainClassifierCliOptions): Promise<TrainClassifierResult> {
  if (o.limit !== undefined) throw new UserError(RENAMED_LIMIT);
  const t0 = performance.now();
  const r = await trainClassifier({
    data: o.data,
    out: o.out,
    force: o.force,
    channels: o.channels,
    activation: choice('--activation', o.activation, ['relu', 'linear'] as const),
    pad: int('--pad', o.pad, 0),
    epochs: int('--epochs', o.epochs, 1),
    batchSize: int('--batch-size', o.batchSize, 1),
    lr: num('--lr', o.lr, (x) => x > 0, 'a positive number'),
    patience: int('--patience', o.patience, 1),
    valFraction: num('--val-fraction', o.valFraction, (x) => x > 0 && x < 1, 'between 0 and 1 (exclusive)'),
    holdout: o.holdoutFrom,
    seed: int('--seed', o.seed, 0),
    subset: o.subset !== undefined ? int('--subset', o.subset, 2) : undefined,
    restoreBest: !o.keepLast,
    workers: o.workers !== undefined ? int('--workers', o.workers, 1) : undefined,
    checkpoint: o.checkpoint,
    backend: choice('--backend', o.backend, ['auto', 'wasm', 'cpu'] as const),
    command: ['occmap', ...process.argv.slice(2)].join(' '),
    quiet: !!o.quiet,
    log: (line) => process.stderr.write(line + '\n'),
  });
  r.model.dispose();
  const { result } = r;
  const acc = result.final.valAcc ?? NaN;
  process.stdout.write(
    `${o.out}: val_acc ${acc.toFixed(4)} (balanced ${r.validation.balancedAccuracy.toFixed(4)}) val_loss ${result.final.valLoss.toFixed(4)} on ${result.split.val} held-out stamps (split by ${result.split.by}); ` +
      `${result.epochsRun} epoch(s)${result.stoppedEarly ? ', stopped early' : ''}, ${result.weights} weights (epoch ${result.weights === 'best' ? result.bestEpoch : result.epochsRun}); ` +
      `${r.parameters} parameters; ${((performance.now() - t0) / 1000).toFixed(1)}s on tfjs-${result.backend}${result.workers > 1 ? ` (${result.workers} threads)` : ''}\n` +
      `confusion on the validation split (rows: true class, columns: predicted): ${JSON.stringify(r.validation.confusion)}\n`,
  );
  return r;
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
    .option('--holdout-from <dir>', "hold out the objects another model held out (a classifier's validation objects or an explainer's held-out objects, from its card)")
    .option('--subset <n>', 'train on a seeded random subset of N stamps, for quick runs')
    .addOption(new Option('--limit <n>').hideHelp())
    .option('--backend <name>', 'auto | wasm | cpu', 'auto')
    .option('--checkpoint <dir>', 'save the training state after every epoch in DIR; the same command again resumes from it after a crash (DIR is removed once the model is saved)')
    .option('--workers <n>', 'training threads: data-parallel model replicas, gradients summed every step (default: every core for jobs large enough; 1: no worker threads; env OCCMAP_TRAIN_WORKERS)')
    .option('--keep-last', "keep the last epoch's weights (Keras' default) instead of the best val_loss epoch's")
    .option('--force', 'replace an existing non-empty output directory')
    .option('--quiet', 'no within-epoch progress (epoch lines are still printed)')
    .addHelpText('after', EXAMPLES)
    .action(async (o: TrainClassifierCliOptions) => {
      await runTrainClassifier(o);
    });
}
