/** `occmap train-explainer --data MAPS.npz --out DIR`: an autoencoder that estimates occlusion maps in one pass. */
import { Option, type Command } from 'commander';
import { trainExplainer, TARGET_UNITS, VARIANTS, type ExplainerVariant, type TrainedExplainer } from '../explainer/train.js';
import type { BackendChoice } from '../runtime/tfjs.js';
import { UserError } from '../util/errors.js';
import { choice, int, num, RENAMED_LIMIT } from './options.js';

const EXAMPLES = `
Examples:
  $ occmap train-explainer --data maps.npz --classifier clf --variant frozen --out expl
      the seed's frozen autoencoder: encoder convs copied from clf and not trained
  $ occmap train-explainer --data maps.npz --classifier clf --variant frozen --condition onehot --out expl-oh
      conditioned on the class each map was drawn for (the classifier's prediction when the
      maps were made with --target predicted: recomputed with clf)
  $ occmap train-explainer --data maps.npz --classifier clf --variant unet --condition onehot --out expl-unet
      U-Net: encoder initialised from clf, decoder with skip connections at 24x24 and 12x12;
      with one-hot conditioning the most faithful variant on HiTS 2015 maps (held-out objects)
  $ occmap train-explainer --data maps.npz --variant normal --loss bce --optimizer adadelta --out expl-seed
      trained from scratch with the seed code's loss and optimiser
  $ occmap train-explainer --data maps-all.npz --classifier clf --variant unet --holdout-from expl-unet --out expl-all
      trained on maps of every stamp, holding out the same objects as expl-unet
  $ occmap train-explainer --data maps.npz --classifier clf --variant unet --holdout-from clf --out expl
      holding out exactly the classifier's validation objects
  $ occmap train-explainer --data maps.npz --classifier clf --variant unet --ensemble 5 --out expl-ens
      5 members on bootstrap resamples (by object): estimates come with a per-pixel std

The maps dataset comes from 'occmap occlude --model clf --data data.npz --out maps.npz'; any
number of stamps works (e.g. maps of every stamp, not only a balanced subset).
Writes DIR/model.json + weights.bin + card.json (options, parameter counts, loss history, the
held-out split: by object id when the data has ids) and DIR/model.onnx for fast inference; an
ensemble writes DIR/member-<k>/ and an ensemble card.json. DIR appears complete or not at all.`;

export interface TrainExplainerCliOptions {
  data: string;
  out: string;
  classifier?: string;
  channels?: string;
  variant: string;
  freeze?: boolean;
  condition: string;
  cut: string;
  bottleneck: string;
  smooth: string;
  targetPad: string;
  targetUnits: string;
  gradWeight: string;
  activation?: string;
  inputSize?: string;
  loss: string;
  optimizer: string;
  lr?: string;
  epochs: string;
  batchSize: string;
  patience: string;
  valFraction: string;
  holdoutFrom?: string;
  seed: string;
  ensemble: string;
  bootstrap: boolean;
  subset?: string;
  limit?: string;
  backend: string;
  workers?: string;
  checkpoint?: string;
  keepLast?: boolean;
  force?: boolean;
  quiet?: boolean;
}

export async function runTrainExplainer(o: TrainExplainerCliOptions): Promise<TrainedExplainer> {
  if (o.limit !== undefined) throw new UserError(RENAMED_LIMIT);
  const cut = int('--cut', o.cut, 0, 2);
  const bottleneck = int('--bottleneck', o.bottleneck, 1);
  if (Math.round(Math.sqrt(bottleneck)) ** 2 !== bottleneck) throw new UserError(`--bottleneck must be a square number (it is reshaped to a square plane), got ${bottleneck}`);
  const opts = {
    data: o.data,
    out: o.out,
    classifier: o.classifier,
    channels: o.channels,
    variant: choice('--variant', o.variant, VARIANTS) as ExplainerVariant,
    freeze: !!o.freeze,
    condition: choice('--condition', o.condition, ['none', 'numeral', 'onehot'] as const),
    cut: cut as 0 | 1 | 2,
    bottleneck,
    smooth: int('--smooth', o.smooth, 0),
    gradWeight: num('--grad-weight', o.gradWeight, (x) => x >= 0, 'a non-negative number'),
    targetPad: choice('--target-pad', o.targetPad, ['zero', 'edge'] as const),
    targetUnits: choice('--target-units', o.targetUnits, TARGET_UNITS),
    activation: o.activation !== undefined ? choice('--activation', o.activation, ['relu', 'linear'] as const) : undefined,
    inputSize: o.inputSize !== undefined ? int('--input-size', o.inputSize, 4) : undefined,
    loss: choice('--loss', o.loss, ['mse', 'bce'] as const),
    optimizer: choice('--optimizer', o.optimizer, ['adam', 'adadelta'] as const),
    lr: o.lr !== undefined ? num('--lr', o.lr, (x) => x > 0, 'a positive number') : undefined,
    epochs: int('--epochs', o.epochs, 1),
    batchSize: int('--batch-size', o.batchSize, 1),
    patience: int('--patience', o.patience, 1),
    valFraction: num('--val-fraction', o.valFraction, (x) => x > 0 && x < 1, 'between 0 and 1 (exclusive)'),
    seed: int('--seed', o.seed, 0),
    ensemble: int('--ensemble', o.ensemble, 1),
    bootstrap: o.bootstrap,
    holdout: o.holdoutFrom,
    subset: o.subset !== undefined ? int('--subset', o.subset, 2) : undefined,
    backend: choice('--backend', o.backend, ['auto', 'wasm', 'cpu'] as const) as BackendChoice,
    restoreBest: !o.keepLast,
    workers: o.workers !== undefined ? int('--workers', o.workers, 1) : undefined,
    checkpoint: o.checkpoint,
    force: o.force,
    quiet: o.quiet,
    command: ['occmap', ...process.argv.slice(2)].join(' '),
  };
  const r = await trainExplainer({ ...opts, log: (line) => process.stderr.write(line + '\n') });
  const card = r.card as Record<string, unknown> & typeof r.card;
  const pc = card.parameterCounts as { total: number; trainable: number; nonTrainable: number };
  const vals = r.results.map((x) => x.final.valLoss);
  process.stdout.write(
    `${o.out}: ${card.variant} explainer${card.ensemble ? ` (ensemble of ${card.ensemble})` : ''}, val_loss ${vals.map((v) => v.toFixed(5)).join(' / ')} (${opts.loss}) on ` +
      `${card.split.valIndices.length} held-out maps (split by ${card.split.by}); ${pc.total} parameters (${pc.nonTrainable} frozen); ` +
      `epochs ${r.results.map((x) => `${x.epochsRun}${x.stoppedEarly ? ' (early stop)' : ''}`).join(', ')}; ${r.seconds.toFixed(1)}s\n`,
  );
  return r;
}

export function registerTrainExplainer(program: Command): void {
  program
    .command('train-explainer')
    .description('train an autoencoder that estimates occlusion maps in one inference (seed variants + U-Net); save tfjs + ONNX + card.json')
    .requiredOption('--data <file>', "maps dataset .npz from 'occmap occlude' (images, maps; labels and ids used when present)")
    .requiredOption('--out <dir>', 'output explainer directory (must be absent or empty unless --force)')
    .option('--classifier <dir>', 'the classifier the maps explain: its channels, encoder weights (frozen/unet) and predicted classes')
    .option('--channels <list>', 'channels to use without --classifier: indices or names, or all (default: snr_difference for HiTS 4-channel data)')
    .option('--variant <name>', `${VARIANTS.join(' | ')} (normal: from scratch; frozen: encoder copied from --classifier, fixed; unet: skip connections)`, 'normal')
    .option('--freeze', 'unet: keep the encoder copied from --classifier fixed')
    .option('--condition <mode>', 'none | numeral | onehot: the class each map is drawn for, fed to the bottleneck', 'none')
    .option('--cut <n>', '0 | 1 | 2: cut the seed autoencoder at its max-pool layers (docs/seed.md Exp. 3)', '0')
    .option('--bottleneck <n>', 'bottleneck units incl. label units (a square; seed 36)', '36')
    .option('--grad-weight <g>', 'add g^2 x the squared error of map differences (dx, dy) to the MSE: penalises wiggles in flat parts (0: plain MSE)', '0')
    .option('--target-pad <mode>', 'zero | edge: how target maps are padded to the input size (zero: the seed)', 'zero')
    .option('--target-units <u>', 'seed | unclipped | log-rest: the loss sees the seed-normalised maps; the same units before the clip; or log(cover - raw map), centred per map. The last two come from maps_raw, and the saved explainer turns its output back into seed units', 'seed')
    .option('--smooth <k>', 'fixed k x k box filter before the output sigmoid (0: none)', '0')
    .option('--activation <name>', "relu | linear (default: the classifier's, else relu)")
    .option('--input-size <n>', 'model input side, a multiple of 4 (default: stamps padded to the next multiple of 4: 21 -> 24)')
    .option('--loss <name>', 'mse | bce (the seed code used bce)', 'mse')
    .option('--optimizer <name>', 'adam | adadelta (the seed code used adadelta)', 'adam')
    .option('--lr <x>', 'learning rate (default: 0.001 for adam, 1.0 for adadelta)')
    .option('--epochs <n>', 'maximum epochs', '30')
    .option('--batch-size <n>', 'batch size', '10')
    .option('--patience <n>', 'early stopping: epochs without a lower val_loss', '3')
    .option('--val-fraction <x>', 'held-out fraction (by object when the data has ids)', '0.25')
    .option('--holdout-from <dir>', "hold out the objects another model held out: a classifier's validation objects (hold out exactly what the classifier never trained on) or another explainer's held-out objects (compare training sets)")
    .option('--seed <n>', 'seed for split, shuffles, initial weights and bootstrap', '0')
    .option('--ensemble <k>', 'train K explainers on bootstrap resamples of the training part', '1')
    .option('--no-bootstrap', 'ensemble members train on the whole training part, differing by seed only')
    .option('--subset <n>', 'train on a seeded random subset of N maps, for quick runs')
    .addOption(new Option('--limit <n>').hideHelp())
    .option('--backend <name>', 'auto | wasm | cpu', 'auto')
    .option('--checkpoint <dir>', 'save the training state after every epoch in DIR; the same command again resumes from it after a crash (DIR is removed once the model is saved)')
    .option('--workers <n>', 'training threads: data-parallel model replicas, gradients summed every step (default: every core for jobs large enough; 1: no worker threads; env OCCMAP_TRAIN_WORKERS)')
    .option('--keep-last', "keep the last epoch's weights instead of the best val_loss epoch's")
    .option('--force', 'replace an existing non-empty output directory')
    .option('--quiet', 'no within-epoch progress (epoch lines are still printed)')
    .addHelpText('after', EXAMPLES)
    .action(async (o: TrainExplainerCliOptions) => {
      await runTrainExplainer(o);
    });
}
