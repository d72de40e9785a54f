/**
 * The seed's stamp classifier (docs/seed.md, "Classifier"; Deep-HiTS style):
 *
 *   input HxWxC -> zero pad (default 3: 21 -> 27) -> conv1 32 4x4 -> conv2 32 3x3 -> pool1
 *   -> conv3 64 3x3 -> conv4 64 3x3 -> conv5 64 3x3 -> pool2 -> flatten -> dense1 64
 *   -> dense2 64 -> dropout 0.5 -> out K -> softmax
 *
 * The softmax is its own layer after the `out` logits (same function, same parameters as the
 * seed's Dense(K, softmax)) so the loop can compute the cross-entropy from logits.
 *
 * Layer names are part of the contract: the frozen autoencoder copies conv1..conv5 by name.
 * The seed's code has no activation on conv/dense layers (linear); occmap defaults to ReLU and
 * offers `activation: 'linear'` for the seed-faithful model.
 */
import type { tfl } from '../runtime/tfjs.js';
import { activation, conv, dense, dropout, flatten, maxPool, stack, zeroPad, layerSeeds, countParams } from './layers.js';
import { selectChannels } from './predictor.js';
import { trainModel, type TrainResult, type LoopOptions } from '../train/loop.js';
import { TfjsPredictor } from './tfjs-predictor.js';
import type { Dataset } from '../data/dataset.js';
import { fileError, OptionError, UserError } from '../util/errors.js';
import type { Split } from '../data/split.js';
import { Rng } from '../util/rng.js';

export interface ClassifierOptions {
  /** Model input (H, W, C) = dataset stamp size and number of selected channels. */
  inputShape: [number, number, number];
  numClasses: number;
  activation?: 'relu' | 'linear';
  /** Zero padding added on every side inside the model. */
  pad?: number;
  seed?: number;
}

export const CLASSIFIER_LAYERS = [
  'pad', 'conv1', 'conv2', 'pool1', 'conv3', 'conv4', 'conv5', 'pool2', 'flatten', 'dense1', 'dense2', 'dropout', 'out', 'softmax',
] as const;

export function buildClassifier(o: ClassifierOptions): tfl.Sequential {
  const act = o.activation ?? 'relu';
  const pad = o.pad ?? 3;
  if (!(Number.isInteger(pad) && pad >= 0)) throw new OptionError(['pad'], `must be a non-negative integer, got ${pad}`);
  if (!(Number.isInteger(o.numClasses) && o.numClasses >= 2)) throw new UserError(`need at least 2 classes, got ${o.numClasses}`);
  const [h, w] = o.inputShape;
  // Two 2x2 valid poolings need at least 4x4 after padding.
  if (h + 2 * pad < 4 || w + 2 * pad < 4) throw new UserError(`input ${h}x${w} with pad ${pad} is too small for two 2x2 poolings`);
  const seed = layerSeeds(o.seed ?? 0);
  const layers = [
    ...(pad > 0 ? [zeroPad(pad, { name: 'pad' })] : []),
    conv(32, 4, { name: 'conv1', activation: act, seed: seed() }),
    conv(32, 3, { name: 'conv2', activation: act, seed: seed() }),
    maxPool({ name: 'pool1' }),
    conv(64, 3, { name: 'conv3', activation: act, seed: seed() }),
    conv(64, 3, { name: 'conv4', activation: act, seed: seed() }),
    conv(64, 3, { name: 'conv5', activation: act, seed: seed() }),
    maxPool({ name: 'pool2' }),
    flatten({ name: 'flatten' }),
    dense(64, { name: 'dense1', activation: act, seed: seed() }),
    dense(64, { name: 'dense2', activation: act, seed: seed() }),
    dropout(0.5, { name: 'dropout' }),
    dense(o.numClasses, { name: 'out', activation: 'linear', seed: seed() }),
    activation('softmax', { name: 'softmax' }),
  ];
  return stack('classifier', o.inputShape, layers);
}

/** The HiTS channel layout (docs/seed.md): channel 3 is what the seed trains on. */
export const HITS_CHANNELS = ['template', 'science', 'difference', 'snr_difference'];

const norm = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, '');

const ALIASES: Record<string, string> = { snr: 'snrdifference', snrdiff: 'snrdifference', diff: 'difference', sci: 'science', ref: 'template' };

/**
 * Which dataset channels the classifier reads. `spec` is 'all', or a comma list of indices or
 * names (case, '_' and '-' ignored; snr/diff/sci/ref accepted). Without a spec: the SNR
 * difference when the data has the HiTS 4-channel layout (named in meta.json, or the seed's
 * HiTS 2013 pickle), else every channel. Errors name the data file.
 */
export function resolveChannels(
  spec: string | undefined,
  cData: number,
  names: readonly string[] | undefined,
  file: string,
  source?: string,
): number[] {
  const named = names && names.length === cData ? names : undefined;
  if (spec === undefined || spec === '') {
    const hitsNamed = cData === 4 && named && named.map(norm).join() === HITS_CHANNELS.map(norm).join();
    const hitsPickle = cData === 4 && !named && source === 'hits2013-pickle';
    if (hitsNamed || hitsPickle) return [3];
    return Array.from({ length: cData }, (_, i) => i);
  }
  if (norm(spec) === 'all') return Array.from({ length: cData }, (_, i) => i);
  const out: number[] = [];
  for (const raw of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    let idx: number;
    if (/^\d+$/.test(raw)) {
      idx = Number(raw);
    } else {
      const key = ALIASES[norm(raw)] ?? norm(raw);
      const list = named ?? (cData === 4 ? HITS_CHANNELS : undefined);
      idx = list ? list.map(norm).indexOf(key) : -1;
      if (idx < 0) {
        throw fileError(file, `has no channel named '${raw}' (channels: ${named ? named.join(', ') : `${cData} unnamed`})`);
      }
    }
    if (idx >= cData) {
      throw fileError(file, `channel ${idx} is out of range: the images have ${cData} channel(s)${named ? ` (${named.join(', ')})` : ''}`);
    }
    if (out.includes(idx)) throw new OptionError(['channels'], `lists channel ${idx} twice`);
    out.push(idx);
  }
  if (out.length === 0) throw new OptionError(['channels'], `'${spec}' selects no channel`);
  return out;
}

export interface FitClassifierOptions extends Omit<LoopOptions, 'loss' | 'split'> {
  activation?: 'relu' | 'linear';
  pad?: number;
  /** Channel spec (see resolveChannels). */
  channels?: string;
  /** Use only a seeded random subset of this many stamps. */
  subset?: number;
  /**
   * The train / validation split of the rows used (dataset rows, ascending), as indices into
   * them; default: the loop's seeded split by group.
   */
  splitOf?: (rows: number[]) => Split | Promise<Split>;
}

export interface TrainedClassifier {
  model: tfl.Sequential;
  result: TrainResult;
  channels: number[];
  channelNames?: string[];
  numClasses: number;
  inputShape: [number, number, number];
  parameters: number;
  /** Stamps used (after `subset`). */
  used: number;
  /** On the validation split with the weights the model holds. */
  validation: ValidationReport;
}

export interface ValidationReport {
  /** confusion[t][p]: validation items of true class t predicted as p. */
  confusion: number[][];
  accuracy: number;
  /** Mean per-class recall over the classes present: honest when classes are imbalanced. */
  balancedAccuracy: number;
}

/** Confusion matrix, accuracy and balanced accuracy of argmax predictions (pure). */
export function validationReport(labels: ArrayLike<number>, probs: Float32Array, k: number): ValidationReport {
  const n = labels.length;
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  let correct = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (probs[i * k + j] > probs[i * k + best]) best = j;
    confusion[labels[i]][best]++;
    if (best === labels[i]) correct++;
  }
  const recalls = confusion.map((row, t) => [row[t], row.reduce((a, b) => a + b, 0)]).filter(([, tot]) => tot > 0);
  const balancedAccuracy = recalls.reduce((a, [c, tot]) => a + c / tot, 0) / Math.max(1, recalls.length);
  return { confusion, accuracy: n > 0 ? correct / n : NaN, balancedAccuracy };
}

/**
 * Select channels, build the seed classifier and train it through the one loop (the model and
 * its validation report; trainClassifier in train-classifier.ts adds the card and the files).
 */
export async function fitClassifier(ds: Dataset, file: string, o: FitClassifierOptions = {}): Promise<TrainedClassifier> {
  if (!ds.labels) throw fileError(file, 'has no labels: a classifier needs labels');
  const [n, h, w, c] = ds.shape;
  const channels = resolveChannels(o.channels, c, ds.meta.channels, file, ds.meta.source);
  let idx: number[] = Array.from({ length: n }, (_, i) => i);
  if (o.subset !== undefined) {
    if (!(Number.isInteger(o.subset) && o.subset >= 2)) throw new OptionError(['subset'], `must be an integer >= 2, got ${o.subset}`);
    if (o.subset < n) idx = new Rng((o.seed ?? 0) ^ 0x11a1).shuffle(idx).slice(0, o.subset).sort((a, b) => a - b);
  }
  const m = idx.length;
  const item = h * w * c;
  const picked = new Float32Array(m * item);
  const labels = new Int32Array(m);
  const groups = ds.ids ? new Array<string>(m) : undefined;
  idx.forEach((i, k) => {
    picked.set(ds.images.subarray(i * item, (i + 1) * item), k * item);
    labels[k] = ds.labels![i];
    if (groups) groups[k] = ds.ids![i];
  });
  const x = selectChannels(picked, m, h, w, c, channels);
  let maxLabel = 0;
  for (const l of labels) maxLabel = Math.max(maxLabel, l);
  const numClasses = Math.max(2, maxLabel + 1);
  const inputShape: [number, number, number] = [h, w, channels.length];
  const model = buildClassifier({ inputShape, numClasses, activation: o.activation, pad: o.pad, seed: o.seed });
  try {
    const split = o.splitOf ? await o.splitOf(idx) : undefined;
    const result = await trainModel(model, { x, shape: [m, h, w, channels.length], y: labels, groups }, { ...o, loss: 'sparse_categorical_crossentropy', split });
    const names = ds.meta.channels && ds.meta.channels.length === c ? channels.map((i) => ds.meta.channels![i]) : undefined;
    const val = result.splitIndices.val;
    const vItem = h * w * channels.length;
    const vx = new Float32Array(val.length * vItem);
    val.forEach((i, k) => vx.set(x.subarray(i * vItem, (i + 1) * vItem), k * vItem));
    const probs = await new TfjsPredictor(model, { hash: '' }).predict(vx, val.length);
    const validation = validationReport(val.map((i) => labels[i]), probs, numClasses);
    return { model, result, channels, channelNames: names, numClasses, inputShape, parameters: countParams(model), used: m, validation };
  } catch (err) {
    model.dispose();
    throw err;
  }
}
