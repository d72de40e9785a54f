/**
 * Train an amortized explainer (SEED.md "Autoencoder", plus the U-Net of issue 5 item 5) on a
 * maps dataset made by `occmap occlude`, through the one training loop, and save it as a model
 * directory: tfjs model + card.json + model.onnx (the ONNX export used for fast inference).
 *
 * Decisions (the seed left them open):
 * - Conditioning class = the class each map was drawn for (the occlusion target). With
 *   meta.occlusion.target 'predicted' (the default, as the seed) that is the classifier's
 *   prediction, which the maps file does not store: it is recomputed with --classifier (one
 *   inference per stamp). 'label' uses the dataset labels, a number k that class.
 * - Loss default MSE with Adam: the figure of merit (seed report, issue 5) is per-map MSE on
 *   the normalised maps, and on HiTS 2015 maps (966 stamps, frozen variant, held-out objects)
 *   MSE/Adam reached Spearman 0.62 / MSE 0.019 where the seed code's BCE/Adadelta (lr 1.0)
 *   stayed near the mean map (0.12 / 0.048). Both remain options.
 * - Ensembles: member k trains on a bootstrap resample of the training part drawn by GROUP
 *   (object) when ids exist, because epochs of one object are near-duplicates: resampling
 *   items would make every member see every object. All members share the held-out split.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { readDataset, type Dataset } from '../data/dataset.js';
import { splitIndices, type Split } from '../data/split.js';
import { buildAutoencoder, copyEncoderWeights, parameterCounts, labelUnits, type Condition } from '../models/autoencoder.js';
import { resolveChannels } from '../models/classifier.js';
import { refuseOutputOverInput } from '../util/paths.js';
import { valueRange } from '../data/stamps.js';
import { assertModelDirWritable, hashFile, hashModelDir, installDir, loadModelDir, readCard, saveModelDir, siblingTemp, writeCard, type ModelCard } from '../models/model-dir.js';
import { loadPredictor } from '../models/load.js';
import { selectChannels } from '../models/predictor.js';
import { backendDescription, initTf, tf, tfl, type BackendChoice } from '../runtime/tfjs.js';
import { trainModel, type EpochRecord, type LossName, type OptimizerName, type TrainResult, type TrainSet } from '../train/loop.js';
import { fileError, OptionError, UserError } from '../util/errors.js';
import { occmapVersion } from '../util/version.js';
import { applyHoldout, deriveHoldout, holdoutOfModelDir, holdoutWarnings, type Holdout } from '../data/holdout.js';
import { Rng } from '../util/rng.js';
import { ProgressReporter, type ProgressCallback } from '../util/progress.js';
import { conditionVectors, padFor, padImages, type Pad } from './data.js';
import { logRestUnits, seedUnitsUnclipped, uniformCoverage } from '../occlusion/geometry.js';
import { withLogRestHead, type Crop } from '../models/map-head.js';
import { conditionTargets, type ExplainerCard } from './estimate.js';
import { writeFusedEstimateFor } from './fused.js';

export type ExplainerVariant = 'normal' | 'frozen' | 'unet';
export type TargetUnits = 'seed' | 'unclipped' | 'log-rest';
export const TARGET_UNITS: readonly TargetUnits[] = ['seed', 'unclipped', 'log-rest'];
export const VARIANTS: readonly ExplainerVariant[] = ['normal', 'frozen', 'unet'];

export interface TrainExplainerOptions {
  /** Maps dataset (.npz with images, maps; labels and ids used when present), or one in memory. */
  data: string | Dataset;
  /** Names an in-memory dataset in errors and the card. */
  dataName?: string;
  /**
   * Explainer directory to write (model(s), card.json, model.onnx), complete or not at all;
   * absent or empty unless `force`. Without it the trained models are returned (`models`).
   */
  out?: string;
  /** Classifier model directory: channels, encoder weights (frozen, unet), predicted targets. */
  classifier?: string;
  /** --channels spec (see resolveChannels) when no classifier gives them. */
  channels?: string;
  variant?: ExplainerVariant;
  /** unet: keep the encoder convs copied from the classifier fixed. */
  freeze?: boolean;
  condition?: Condition;
  cut?: 0 | 1 | 2;
  bottleneck?: number;
  /**
   * How target maps are padded to the input size: 'zero' (the seed) or 'edge' (the nearest map
   * pixel repeated). The padding is cropped away at inference; zero targets there force a
   * sharp 0-edge the decoder must spend capacity on.
   */
  targetPad?: 'zero' | 'edge';
  /**
   * Weight g of a map-gradient term in the loss: mean over [map, g*dx, g*dy] squared errors
   * (forward differences). Exact maps are smooth away from the important region; the term
   * penalises the estimate's small-scale wiggles that MSE on values barely sees but that
   * scramble the rank order (Spearman) of the flat part. 0: plain MSE.
   */
  gradWeight?: number;
  /**
   * What the loss compares the output with. 'seed': the seed-normalised maps (z-score clipped
   * to [-1, 1], then (z+1)/2), through a sigmoid output. 'unclipped': the same units without
   * the clip, from the maps before normalisation (maps_raw), through a linear output; the saved
   * explainer ends in a clip to [0, 1], so its maps are in the exact maps' units. The clip
   * flattens the ranking inside the most important region (everything below z = -1 is 0);
   * the unclipped target keeps it for the loss to learn. 'log-rest': log(cover - raw map)
   * centred per map (occlusion/geometry.ts logRestUnits), through a linear output; the saved
   * explainer ends in the exact inverse to the seed's units (models/map-head.ts). Where the
   * classifier is confident its raw maps differ from cover by 1e-12 .. 1e-3, which the seed's
   * z-score squeezes together; log units give every order of magnitude the same room.
   */
  targetUnits?: TargetUnits;
  /** Fixed k x k box filter before the output sigmoid (0: none); see buildAutoencoder. */
  smooth?: number;
  /** Default: the classifier's activation (its encoder weights were trained with it), else relu. */
  activation?: 'relu' | 'linear';
  /** Model input side; default the smallest multiple of 4 holding the stamps (21 -> 24). */
  inputSize?: number;
  loss?: 'mse' | 'bce';
  optimizer?: OptimizerName;
  lr?: number;
  epochs?: number;
  batchSize?: number;
  patience?: number;
  seed?: number;
  valFraction?: number;
  /**
   * Hold out exactly this set instead of a seeded split: a Holdout (data/holdout.ts), or a
   * model directory whose held-out set to reuse (a classifier's validation objects, another
   * explainer's held-out objects), so models trained on different data are compared on, and
   * never see, the same objects.
   */
  holdout?: Holdout | string;
  /** K explainers on bootstrap resamples of the training part (1: a single model). */
  ensemble?: number;
  /**
   * false: ensemble members train on the whole training part and differ only by seed
   * (initial weights, shuffles). Each member is then as good as a single model and the mean
   * better; the std reflects training randomness only, not data variability. Default true.
   */
  bootstrap?: boolean;
  /** Use only a seeded random subset of this many maps. */
  subset?: number;
  restoreBest?: boolean;
  backend?: BackendChoice;
  /** Training threads (see LoopOptions.workers). */
  workers?: number;
  /**
   * A directory for the training state after every epoch: a rerun with the same options resumes
   * from it after a crash (ensemble members in member-K/). Removed once the model is saved.
   */
  checkpoint?: string;
  force?: boolean;
  quiet?: boolean;
  log?: (line: string) => void;
  /**
   * Epochs done of `epochs`, per ensemble member (label 'train explainer', or 'train explainer
   * k/K'); early stopping closes a member's work below the total.
   */
  onProgress?: ProgressCallback;
  /** Each epoch's losses and speed as it ends; `member` counts from 0. */
  onEpoch?: (e: EpochRecord, member: number) => void;
  /** Recorded in the card. */
  command?: string;
}

export interface TrainedExplainer {
  card: ExplainerCard;
  /** One per member. */
  results: TrainResult[];
  seconds: number;
  holdout: Holdout;
  /** Without `out`: the trained models, one per member (the caller disposes them). */
  models?: tfl.LayersModel[];
}

export const LOSS_NAMES: Record<'mse' | 'bce', LossName> = { mse: 'mse', bce: 'binary_crossentropy' };

/** Smallest multiple of 4 (two 2x poolings) that holds an h x w stamp. */
export function defaultInputSize(h: number, w: number): number {
  return Math.ceil(Math.max(h, w) / 4) * 4;
}

/**
 * A bootstrap resample of `train` (item indices): as many draws as items, with replacement.
 * With groups, whole groups are drawn (with replacement) until at least as many items as
 * `train` holds are taken, so a member sees some objects twice and others not at all.
 */
export function bootstrapIndices(train: readonly number[], rng: Rng, groups?: readonly string[]): number[] {
  if (train.length === 0) return [];
  if (!groups) return Array.from({ length: train.length }, () => train[rng.int(train.length)]);
  const byGroup = new Map<string, number[]>();
  for (const i of train) {
    const g = groups[i];
    const list = byGroup.get(g);
    if (list) list.push(i);
    else byGroup.set(g, [i]);
  }
  const names = [...byGroup.keys()].sort();
  const out: number[] = [];
  while (out.length < train.length) out.push(...byGroup.get(names[rng.int(names.length)])!);
  return out;
}

/**
 * 3x3 kernel [kh, kw, in 1, out 3] (cross-correlation, as conv2d): out 0 = the pixel,
 * out 1 = g * (right - pixel), out 2 = g * (below - pixel).
 */
export function gradientKernel(g: number): Float32Array {
  const k = new Float32Array(3 * 3 * 3);
  const at = (dy: number, dx: number, o: number) => (dy * 3 + dx) * 3 + o;
  k[at(1, 1, 0)] = 1;
  k[at(1, 1, 1)] = -g;
  k[at(1, 2, 1)] = g;
  k[at(1, 1, 2)] = -g;
  k[at(2, 1, 2)] = g;
  return k;
}

/** conv2d 'same' (zero padding) of n single-channel maps (n,S,S) with a [3,3,1,3] kernel -> (n,S,S,3). */
export function applyKernel(maps: Float32Array, n: number, S: number, kernel: Float32Array): Float32Array {
  const out = new Float32Array(n * S * S * 3);
  const chunk = 256;
  for (let from = 0; from < n; from += chunk) {
    const to = Math.min(n, from + chunk);
    const y = tf.tidy(() => {
      const x = tf.tensor4d(maps.subarray(from * S * S, to * S * S), [to - from, S, S, 1]);
      return tf.conv2d(x, tf.tensor4d(kernel, [3, 3, 1, 3]), 1, 'same').dataSync() as Float32Array;
    });
    out.set(y, from * S * S * 3);
  }
  return out;
}

/** The model with a fixed gradient head on its output, sharing every layer (for training only). */
function withGradientHead(model: tfl.LayersModel, kernel: Float32Array): tfl.LayersModel {
  const head = tfl.layers.conv2d({ name: 'grad_head', filters: 3, kernelSize: 3, padding: 'same', useBias: false, trainable: false });
  const out = head.apply(model.outputs[0]) as tfl.SymbolicTensor;
  head.setWeights([tf.tensor4d(kernel, [3, 3, 1, 3])]);
  return tfl.model({ inputs: model.inputs, outputs: out, name: `${model.name}_with_gradients` });
}

/** The model followed by a clip of its map to [0, 1] (a ReLU with max 1), sharing every layer. */
export function withClip(model: tfl.LayersModel): tfl.LayersModel {
  const clip = tfl.layers.reLU({ name: 'map_clip', maxValue: 1 });
  return tfl.model({ inputs: model.inputs, outputs: clip.apply(model.outputs[0]) as tfl.SymbolicTensor, name: model.name });
}

/** Pad n single-channel maps (n,h,w) by repeating their nearest edge pixel. */
export function padEdge(maps: Float32Array, n: number, h: number, w: number, p: Pad): Float32Array {
  const H = h + p.top + p.bottom;
  const W = w + p.left + p.right;
  const out = new Float32Array(n * H * W);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < H; y++) {
      const sy = Math.min(h - 1, Math.max(0, y - p.top));
      for (let x = 0; x < W; x++) {
        const sx = Math.min(w - 1, Math.max(0, x - p.left));
        out[(i * H + y) * W + x] = maps[(i * h + sy) * w + sx];
      }
    }
  }
  return out;
}

/** Every value in [0, 1] (the sigmoid output's range)? Returns the first bad index or -1. */
export function firstOutOfUnit(maps: Float32Array): number {
  for (let i = 0; i < maps.length; i++) if (!(maps[i] >= 0 && maps[i] <= 1)) return i;
  return -1;
}

/** Put the staged directory in place of `dir` (replacing it only with force). */
function installStaged(staged: string, dir: string, force: boolean): void {
  try {
    installDir(staged, dir, force);
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw fileError(dir, `cannot install the trained explainer (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

interface Prepared {
  ds: Dataset;
  units: TargetUnits;
  /** Dataset rows used (after `subset`), ascending. */
  rows: number[];
  x: Float32Array;
  y: Float32Array;
  cond?: Float32Array;
  targets?: Int32Array;
  conditionOn: ExplainerCard['conditionOn'];
  groups?: string[];
  channels: number[];
  channelNames?: string[];
  numClasses: number;
  size: number;
  pad: Pad;
  h: number;
  w: number;
  classifierCard?: ModelCard;
  classifierHash?: string;
  classifierMatchesMaps?: boolean;
}

/** Every option with its default, checked (errors name the option fields). */
interface Settings {
  variant: ExplainerVariant;
  condition: Condition;
  seed: number;
  K: number;
  valFraction: number;
  lossName: 'mse' | 'bce';
  optimizer: OptimizerName;
  gradWeight: number;
  frozen: boolean;
  copyEncoder: boolean;
  boot: boolean;
}

function settingsOf(o: TrainExplainerOptions): Settings {
  const variant = o.variant ?? 'normal';
  if (!VARIANTS.includes(variant)) throw new OptionError(['variant'], `must be one of ${VARIANTS.join(', ')}, got '${variant}'`);
  if (variant === 'frozen' && !o.classifier) {
    throw new OptionError(['variant'], 'frozen copies the encoder convs from a trained classifier: give {classifier} (its directory)');
  }
  if (o.freeze && variant !== 'unet') throw new OptionError(['freeze'], 'is for {variant} unet ({variant} frozen is the seed autoencoder with a frozen encoder)');
  if (o.freeze && !o.classifier) throw new OptionError(['freeze'], "keeps the classifier's encoder weights: give {classifier} (its directory)");
  if (variant === 'unet' && (o.cut ?? 0) !== 0) throw new OptionError(['cut'], 'applies to the seed autoencoder, not to {variant} unet');
  const K = o.ensemble ?? 1;
  if (!(Number.isInteger(K) && K >= 1)) throw new OptionError(['ensemble'], `must be a positive integer, got ${K}`);
  const valFraction = o.valFraction ?? 0.25;
  if (!(valFraction > 0 && valFraction < 1)) throw new OptionError(['valFraction'], `must be between 0 and 1 (exclusive), got ${valFraction}`);
  const lossName = o.loss ?? 'mse';
  if (!(lossName in LOSS_NAMES)) throw new OptionError(['loss'], `must be mse or bce, got '${lossName}'`);
  const optimizer = o.optimizer ?? 'adam';
  if (optimizer !== 'adam' && optimizer !== 'adadelta') throw new OptionError(['optimizer'], `must be adam or adadelta, got '${optimizer}'`);
  const gradWeight = o.gradWeight ?? 0;
  if (!(gradWeight >= 0 && Number.isFinite(gradWeight))) throw new OptionError(['gradWeight'], `must be a non-negative number, got ${gradWeight}`);
  if (gradWeight > 0 && lossName !== 'mse') throw new OptionError(['gradWeight'], 'needs {loss} mse (map differences are not probabilities)');
  return {
    variant,
    condition: o.condition ?? 'none',
    seed: o.seed ?? 0,
    K,
    valFraction,
    lossName,
    optimizer,
    gradWeight,
    frozen: variant === 'frozen' || (variant === 'unet' && !!o.freeze),
    copyEncoder: variant === 'frozen' || (variant === 'unet' && !!o.classifier),
    boot: o.bootstrap ?? true,
  };
}

const cropOf = (p: Pad): Crop => [[p.top, p.bottom], [p.left, p.right]];

/**
 * Map r of the dataset in the loss's units, after checking the maps can give them: 'unclipped'
 * and 'log-rest' are computed from maps_raw and need seed-normalised maps; 'log-rest' also
 * needs maps that sum class probabilities over a uniform coverage (its inverse relies on it).
 */
function targetMaps(ds: Dataset, units: TargetUnits, file: string): (r: number) => ArrayLike<number> {
  const [, h, w] = ds.shape;
  const size = h * w;
  const mapAt = (a: Float32Array | Float64Array, r: number) => a.subarray(r * size, (r + 1) * size);
  if (units === 'seed') return (r) => mapAt(ds.maps!, r);
  const occ = (ds.meta.occlusion ?? {}) as { normalize?: unknown; score?: unknown; aggregate?: unknown; patch?: unknown; stride?: unknown; pad?: unknown };
  if (occ.normalize !== undefined && occ.normalize !== 'seed') {
    throw fileError(file, `target units '${units}' are computed from the maps before the seed's normalisation, but the maps are normalised '${String(occ.normalize)}' (make them with normalize 'seed')`);
  }
  if (!ds.mapsRaw) {
    throw fileError(file, `has no maps_raw (the maps before normalisation) for target units '${units}': remake the maps with this version's 'occmap occlude', or use target units 'seed'`);
  }
  const raw = ds.mapsRaw;
  if (units === 'unclipped') return (r) => seedUnitsUnclipped(mapAt(raw, r));
  if (occ.score !== 'prob' || occ.aggregate !== 'sum') {
    throw fileError(file, `target units 'log-rest' need maps of score 'prob' summed over positions, but these are score '${String(occ.score)}', aggregate '${String(occ.aggregate)}'`);
  }
  const patch = occ.patch as [number, number];
  const cover = Array.isArray(patch) ? uniformCoverage({ h, w, ph: patch[0], pw: patch[1], stride: Number(occ.stride), pad: Number(occ.pad) }) : null;
  if (cover === null) {
    throw fileError(file, `target units 'log-rest' need every pixel covered by the same number of patch positions, which patch ${JSON.stringify(occ.patch)}, stride ${String(occ.stride)}, pad ${String(occ.pad)} do not give (stride 1 with pad >= patch - 1 does)`);
  }
  return (r) => logRestUnits(mapAt(raw, r), cover);
}

async function prepare(o: TrainExplainerOptions, file: string, log: (s: string) => void): Promise<Prepared> {
  // `file` names the data in messages; an in-memory dataset (o.data) is used as it is.
  const ds = typeof o.data === 'string' ? await readDataset(o.data) : o.data;
  if (!ds.maps) throw fileError(file, "has no maps: make a maps dataset with 'occmap occlude --model CLF --data DATA --out MAPS.npz'");
  const [n, h, w, cData] = ds.shape;
  const units = o.targetUnits ?? 'seed';
  const target = targetMaps(ds, units, file);
  const bad = firstOutOfUnit(ds.maps);
  if (bad >= 0) {
    throw fileError(file, `map ${Math.floor(bad / (h * w))} has value ${ds.maps[bad]} outside [0,1], which a sigmoid output cannot reach (make the maps with --normalize seed)`);
  }

  // Channels: the classifier's when given (its encoder reads exactly those), else --channels.
  let classifierCard: ModelCard | undefined;
  let classifierHash: string | undefined;
  let channels: number[];
  if (o.classifier) {
    if (!existsSync(o.classifier) || !statSync(o.classifier).isDirectory()) {
      throw fileError(o.classifier, 'is not a classifier model directory (from occmap train-classifier)');
    }
    classifierCard = readCard(o.classifier);
    classifierHash = hashModelDir(o.classifier);
    const cc = classifierCard?.channels;
    const fromSpec = o.channels !== undefined ? resolveChannels(o.channels, cData, ds.meta.channels, file, ds.meta.source) : undefined;
    if (cc) {
      if (fromSpec && fromSpec.join() !== cc.join()) {
        throw new OptionError(['channels'], `${o.channels} selects [${fromSpec.join(',')}] but the classifier ${o.classifier} reads channels [${cc.join(',')}]`);
      }
      const out = cc.find((c) => c >= cData);
      if (out !== undefined) throw fileError(file, `has ${cData} channel(s) but the classifier ${o.classifier} reads channel ${out}`);
      channels = cc;
    } else channels = fromSpec ?? resolveChannels(undefined, cData, ds.meta.channels, file, ds.meta.source);
  } else {
    channels = resolveChannels(o.channels, cData, ds.meta.channels, file, ds.meta.source);
  }

  let rows = Array.from({ length: n }, (_, i) => i);
  if (o.subset !== undefined) {
    if (!(Number.isInteger(o.subset) && o.subset >= 2)) throw new OptionError(['subset'], `must be an integer >= 2, got ${o.subset}`);
    if (o.subset < n) rows = new Rng((o.seed ?? 0) ^ 0x11a1).shuffle(rows).slice(0, o.subset).sort((a, b) => a - b);
  }
  const m = rows.length;
  const item = h * w * cData;
  const picked = new Float32Array(m * item);
  const maps = new Float32Array(m * h * w);
  rows.forEach((r, k) => {
    picked.set(ds.images.subarray(r * item, (r + 1) * item), k * item);
    maps.set(target(r), k * h * w);
  });
  const size = o.inputSize ?? defaultInputSize(h, w);
  if (!(Number.isInteger(size) && size % 4 === 0 && size >= Math.max(h, w))) {
    throw new OptionError(['inputSize'], `must be a multiple of 4 of at least ${Math.max(h, w)} (the stamp side), got ${size}`);
  }
  const pad = padFor(h, w, size);
  const x = padImages(selectChannels(picked, m, h, w, cData, channels), m, h, w, channels.length, pad);
  const y = o.targetPad === 'edge' ? padEdge(maps, m, h, w, pad) : padImages(maps, m, h, w, 1, pad);
  const groups = ds.ids ? rows.map((r) => ds.ids![r]) : undefined;

  let maxLabel = 0;
  if (ds.labels) for (const l of ds.labels) maxLabel = Math.max(maxLabel, l);
  const numClasses = classifierCard?.numClasses ?? Math.max(2, maxLabel + 1);

  // The classifier that made the maps should be the one given: warn when not.
  const occ = ds.meta.occlusion as { modelHash?: unknown; target?: unknown } | undefined;
  let classifierMatchesMaps: boolean | undefined;
  if (classifierHash && typeof occ?.modelHash === 'string') {
    classifierMatchesMaps = occ.modelHash === classifierHash;
    if (!classifierMatchesMaps) log(`warning: ${o.classifier} is not the classifier that made the maps in ${file} (hash ${classifierHash.slice(0, 12)} vs ${occ.modelHash.slice(0, 12)})`);
  }

  const condition = o.condition ?? 'none';
  let cond: Float32Array | undefined;
  let targets: Int32Array | undefined;
  let conditionOn: ExplainerCard['conditionOn'] = null;
  if (condition !== 'none') {
    const target = occ?.target ?? 'predicted';
    let predicted: Int32Array | undefined;
    if (target === 'predicted') {
      if (!o.classifier) {
        throw fileError(
          file,
          `maps were drawn for the classifier's predicted class (meta.occlusion.target 'predicted'); condition ${condition} needs the classifier to recompute it`,
        );
      }
      predicted = await predictClasses(o.classifier, picked, [m, h, w, cData]);
    }
    const labels = ds.labels ? Int32Array.from(rows, (r) => ds.labels![r]) : undefined;
    const t = conditionTargets(target, { labels, predicted, file: file });
    targets = t.targets;
    conditionOn = t.source;
    for (const v of targets) if (v >= numClasses) throw fileError(file, `conditioning class ${v} is not below the ${numClasses} classes`);
    cond = conditionVectors(targets, condition, numClasses);
  }
  const channelNames = ds.meta.channels && ds.meta.channels.length === cData ? channels.map((c) => ds.meta.channels![c]) : undefined;
  return { ds, units, rows, x, y, cond, targets, conditionOn, groups, channels, channelNames, numClasses, size, pad, h, w, classifierCard, classifierHash, classifierMatchesMaps };
}

/** argmax classes of the classifier for dataset images (it selects its own channels). */
async function predictClasses(classifier: string, images: Float32Array, shape: [number, number, number, number]): Promise<Int32Array> {
  const p = await loadPredictor(classifier, { engine: 'tfjs' });
  try {
    const [n, h, w, c] = shape;
    const probs = await p.predict(selectChannels(images, n, h, w, c, p.channels), n);
    const k = p.numClasses;
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < k; j++) if (probs[i * k + j] > probs[i * k + best]) best = j;
      out[i] = best;
    }
    return out;
  } finally {
    p.dispose();
  }
}

function historyOf(r: TrainResult): Omit<EpochRecord, 'acc' | 'valAcc'>[] {
  return r.history.map((e) => ({ epoch: e.epoch, loss: e.loss, valLoss: e.valLoss, samplesPerSec: e.samplesPerSec, seconds: e.seconds }));
}

/** The held-out set and the split of the used rows under it (indices into p.rows). */
async function splitFor(o: TrainExplainerOptions, p: Prepared, st: Settings, file: string, dataHash: string | undefined, log: (s: string) => void): Promise<{ holdout: Holdout; split: Split }> {
  const n = p.ds.shape[0];
  let holdout: Holdout;
  if (typeof o.holdout === 'string') holdout = await holdoutOfModelDir(o.holdout);
  else holdout = o.holdout ?? deriveHoldout({ n, rows: p.rows, ids: p.ds.ids, valFraction: st.valFraction, seed: st.seed, dataSha256: dataHash });
  const split = applyHoldout(holdout, { n, rows: p.rows, ids: p.ds.ids, file, dataSha256: dataHash });
  if (split.train.length === 0 || split.val.length === 0) {
    throw new UserError(
      `the ${split.by} split of ${p.rows.length} maps left ${split.train.length} for training and ${split.val.length} for validation: need both${split.by === 'group' ? ' (too few distinct ids?)' : ''}`,
    );
  }
  for (const w of holdoutWarnings(split, p.ds.ids, p.rows)) log(`warning: ${w}`);
  return { holdout, split };
}

/** The loop's training set: padded inputs, targets (with gradient channels), conditioning. */
function trainSetOf(p: Prepared, st: Settings): { set: TrainSet; gradKernel?: Float32Array } {
  const m = p.rows.length;
  const gradKernel = st.gradWeight > 0 ? gradientKernel(st.gradWeight) : undefined;
  const set: TrainSet = {
    x: p.x,
    shape: [m, p.size, p.size, p.channels.length],
    y: gradKernel ? applyKernel(p.y, m, p.size, gradKernel) : p.y,
    yShape: [p.size, p.size, gradKernel ? 3 : 1],
    groups: p.groups,
    extra: p.cond ? [{ data: p.cond, shape: [labelUnits(st.condition, p.numClasses)] }] : undefined,
  };
  return { set, gradKernel };
}

/** The card every member shares (data, options, the held-out split). */
function baseCard(o: TrainExplainerOptions, p: Prepared, st: Settings, file: string, dataHash: string | undefined, hs: { holdout: Holdout; split: Split }, activation: 'relu' | 'linear', backend: string): ExplainerCard & ModelCard {
  const { split, holdout } = hs;
  const m = p.rows.length;
  const C = p.channels.length;
  const given = o.holdout !== undefined;
  const valIds = p.groups ? [...new Set(split.val.map((i) => p.groups![i]))].sort() : undefined;
  const options = {
    variant: st.variant,
    freeze: !!o.freeze,
    condition: st.condition,
    cut: o.cut ?? 0,
    bottleneck: o.bottleneck ?? 36,
    smooth: o.smooth ?? 0,
    targetUnits: o.targetUnits ?? 'seed',
    targetPad: o.targetPad ?? 'zero',
    gradWeight: st.gradWeight,
    activation,
    loss: st.lossName,
    optimizer: st.optimizer,
    lr: o.lr ?? null,
    epochs: o.epochs ?? 30,
    batchSize: o.batchSize ?? 10,
    patience: o.patience ?? 3,
    seed: st.seed,
    valFraction: st.valFraction,
    ensemble: st.K,
    bootstrap: st.K > 1 ? st.boot : null,
    subset: o.subset ?? null,
    restoreBest: o.restoreBest ?? true,
  };
  return {
    kind: 'explainer',
    occmapVersion: occmapVersion(),
    createdAt: new Date().toISOString(),
    command: o.command,
    variant: st.variant,
    architecture: st.variant === 'unet' ? 'unet' : 'seed-autoencoder',
    frozen: st.frozen,
    condition: st.condition,
    conditionOn: p.conditionOn,
    channels: p.channels,
    channelNames: p.channelNames,
    inputSize: p.size,
    inputShape: [p.size, p.size, C],
    imageSize: [p.h, p.w],
    pad: p.pad,
    numClasses: p.numClasses,
    classes: p.ds.meta.classes,
    data: typeof o.data === 'string' ? path.resolve(file) : file,
    dataInfo: { sha256: dataHash, shape: p.ds.shape, used: m, source: p.ds.meta.source, hasIds: !!p.ds.ids, range: valueRange(p.ds.images) },
    occlusion: p.ds.meta.occlusion,
    classifier: o.classifier ? path.resolve(o.classifier) : undefined,
    classifierHash: p.classifierHash,
    classifierMatchesMaps: p.classifierMatchesMaps,
    options,
    split: {
      by: split.by,
      seed: st.seed,
      valFraction: given ? split.val.length / m : st.valFraction,
      valIndices: split.val.map((i) => p.rows[i]),
      ...(given ? { holdoutFrom: holdout.source, holdoutIds: holdout.ids?.length ?? holdout.rows?.length ?? 0 } : {}),
      holdoutSource: holdout.source,
      trainCount: split.train.length,
      valCount: split.val.length,
      ...(valIds ? { valIds } : {}),
      ...(p.targets ? { valTargets: split.val.map((i) => p.targets![i]) } : {}),
      // the rows a subset trained on: evaluation's training side (and its mean map) is exactly these
      ...(o.subset !== undefined ? { subset: o.subset, trainIndices: split.train.map((i) => p.rows[i]), note: 'valIndices and trainIndices index the rows of the data file' } : {}),
    },
    backend: `tfjs-${backend}`,
  };
}

interface MemberJob {
  o: TrainExplainerOptions;
  p: Prepared;
  st: Settings;
  split: Split;
  set: TrainSet;
  gradKernel?: Float32Array;
  activation: 'relu' | 'linear';
  clfModel?: tfl.LayersModel;
  bootRng: Rng;
  base: ExplainerCard & ModelCard;
  /** What the loss saw: 'seed' through a sigmoid, the others through a linear output and saved with the head back to seed units. */
  units: TargetUnits;
  /** Where members are saved (undefined: kept in memory). */
  staged?: string;
  log: (s: string) => void;
}

/** Train member k (of K) and save it (or keep it); returns its card summary and the model when kept. */
async function trainMember(j: MemberJob, k: number): Promise<{ result: TrainResult; member: Record<string, unknown>; counts: ReturnType<typeof parameterCounts>; copied: string[]; model?: tfl.LayersModel }> {
  const { o, p, st, split } = j;
  const model = buildAutoencoder({
    size: p.size,
    channels: p.channels.length,
    activation: j.activation,
    bottleneck: o.bottleneck ?? 36,
    condition: st.condition,
    numClasses: p.numClasses,
    cut: o.cut ?? 0,
    frozen: st.frozen,
    unet: st.variant === 'unet',
    smooth: o.smooth ?? 0,
    output: j.units === 'seed' ? 'sigmoid' : 'linear',
    seed: st.seed * 7919 + 1 + k * 104729,
  });
  // What is saved and exported: the trained model plus the way back to the exact maps' units
  // (shared layers): a clip to [0, 1] for unclipped z-scores, models/map-head.ts for log-rest.
  const saved = j.units === 'unclipped' ? withClip(model) : j.units === 'log-rest' ? withLogRestHead(model, cropOf(p.pad)) : model;
  let keep = false;
  try {
    const copied = j.clfModel ? copyEncoderWeights(j.clfModel, model) : [];
    const counts = parameterCounts(model);
    const memberSplit: Split = st.K > 1 && st.boot ? { train: bootstrapIndices(split.train, j.bootRng, p.groups), val: split.val, by: split.by } : split;
    if (k === 0) {
      j.log(
        `explainer ${st.variant}${st.frozen ? ' (frozen encoder)' : ''}, condition ${st.condition}: ${counts.total} parameters (${counts.trainable} trainable, ${counts.nonTrainable} frozen); ` +
          `${p.rows.length} maps ${p.h}x${p.w} -> ${p.size}x${p.size}x${p.channels.length}; ${split.by} split: ${split.train.length} train / ${split.val.length} held out` +
          (st.K > 1 ? `; ensemble of ${st.K}${st.boot ? ' on bootstrap resamples' : ' (seeds only, no bootstrap)'}` : ''),
      );
    }
    const prefix = st.K > 1 ? `[member ${k + 1}/${st.K}] ` : '';
    // With a gradient term the loop trains a wrapper whose output is [map, g*dx, g*dy]
    // of the model's map (shared layers), against the same of the target maps.
    const trainee = j.gradKernel ? withGradientHead(model, j.gradKernel) : model;
    const progress = new ProgressReporter(o.onProgress, { label: st.K > 1 ? `train explainer ${k + 1}/${st.K}` : 'train explainer', unit: 'epochs', total: o.epochs ?? 30 });
    const r = await trainModel(trainee, j.set, {
      loss: LOSS_NAMES[st.lossName],
      optimizer: st.optimizer,
      lr: o.lr,
      epochs: o.epochs ?? 30,
      batchSize: o.batchSize ?? 10,
      patience: o.patience ?? 3,
      seed: st.seed + k,
      split: memberSplit,
      restoreBest: o.restoreBest,
      quiet: o.quiet,
      workers: o.workers,
      checkpoint: o.checkpoint && (st.K > 1 ? path.join(o.checkpoint, `member-${k}`) : o.checkpoint),
      log: (line) => j.log(prefix + line),
      onEpoch: (e) => {
        progress.tick();
        o.onEpoch?.(e, k);
      },
    });
    progress.stop();
    if (trainee !== model) trainee.getLayer('grad_head').dispose();
    const training = {
      epochsRun: r.epochsRun,
      stoppedEarly: r.stoppedEarly,
      bestEpoch: r.bestEpoch,
      weights: r.weights,
      valLoss: r.final.valLoss,
      history: historyOf(r),
      trainItems: memberSplit.train.length,
      workers: r.workers,
      wallSeconds: r.wallSeconds,
    };
    const bootMode = !st.boot ? 'none' : p.groups ? 'groups' : 'items';
    const memberCard = { ...j.base, parameters: counts.total, parameterCounts: counts, encoderCopied: copied, training, ...(st.K > 1 ? { member: k, ensembleOf: st.K, bootstrap: bootMode } : {}) };
    if (!j.staged) {
      keep = true;
      return { result: r, member: { member: k, card: memberCard, ...training }, counts, copied, model: saved };
    }
    const dir = st.K > 1 ? path.join(j.staged, `member-${k}`) : j.staged;
    const { hash } = await saveModelDir(saved, dir, memberCard, { onnx: { docString: `occmap explainer (${st.variant}, condition ${st.condition})` } });
    return { result: r, member: { dir: `member-${k}`, hash, ...training }, counts, copied };
  } finally {
    if (!keep) model.dispose();
  }
}

/**
 * Train one explainer (or an ensemble). With `out`, save it there: the directory appears
 * complete (model(s), card.json, model.onnx) or not at all; without, return the models.
 */
export async function trainExplainer(o: TrainExplainerOptions): Promise<TrainedExplainer> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const st = settingsOf(o);
  refuseOutputOverInput(
    [
      { flag: '{data}', path: typeof o.data === 'string' ? o.data : undefined },
      { flag: '{classifier}', path: o.classifier },
      { flag: "the held-out set's model directory", path: typeof o.holdout === 'string' ? o.holdout : undefined },
    ],
    [{ flag: '{out}', path: o.out, kind: 'dir' }],
  );
  if (o.out) assertModelDirWritable(o.out, o.force);
  const file = typeof o.data === 'string' ? o.data : (o.dataName ?? 'the dataset');
  const backend = await initTf(o.backend ?? 'auto');
  log(`training on ${backendDescription()}`);
  const p = await prepare(o, file, log);
  const dataHash = typeof o.data === 'string' ? await hashFile(o.data) : undefined;
  const hs = await splitFor(o, p, st, file, dataHash, log);
  const activation = o.activation ?? ((p.classifierCard?.options as { activation?: string } | undefined)?.activation === 'linear' ? 'linear' : 'relu');
  const { set, gradKernel } = trainSetOf(p, st);
  const base = baseCard(o, p, st, file, dataHash, hs, activation, backend);
  const clfModel = st.copyEncoder ? await loadModelDir(o.classifier!) : undefined;
  const staged = o.out ? siblingTemp(o.out, 'new') : undefined;
  const job: MemberJob = { o, p, st, split: hs.split, set, gradKernel, activation, clfModel, bootRng: new Rng(st.seed ^ 0xb0075), base, units: p.units, staged, log };
  const models: tfl.LayersModel[] = [];
  try {
    if (staged && st.K > 1) mkdirSync(staged);
    const done = [];
    for (let k = 0; k < st.K; k++) {
      const d = await trainMember(job, k);
      if (d.model) models.push(d.model);
      done.push(d);
    }
    const last = done[done.length - 1];
    let card: ExplainerCard;
    if (st.K > 1) {
      const bootMode = !st.boot ? 'none' : p.groups ? 'groups' : 'items';
      card = { ...base, ensemble: st.K, members: done.map((d) => d.member), bootstrap: bootMode, parameters: last.counts.total, parameterCounts: last.counts, parametersPerMember: last.counts, encoderCopied: last.copied };
      if (staged) card = writeCard(staged, card as unknown as ModelCard) as unknown as ExplainerCard; // records every member's file hashes
    } else {
      card = staged ? (readCard(staged) as unknown as ExplainerCard) : ((last.member as { card: ExplainerCard }).card);
    }
    if (staged && st.condition !== 'none' && o.classifier && p.classifierHash) {
      const members = st.K > 1 ? done.map((d) => d.member as { dir: string; hash: string }) : [{ dir: '.', hash: (card as { hash?: string }).hash ?? '' }];
      card = await writeFusedEstimateFor(staged, card, { dir: o.classifier, hash: p.classifierHash, channels: p.classifierCard?.channels }, members);
      const fe = card.fusedEstimate as { file: string | null; reason?: string };
      log(fe.file ? `${fe.file}: classifier -> class -> explainer as one ONNX graph` : `no fused estimate graph: ${fe.reason}`);
    }
    if (staged) installStaged(staged, o.out!, o.force ?? false);
    if (staged && o.checkpoint) rmSync(o.checkpoint, { recursive: true, force: true });
    return { card, results: done.map((d) => d.result), seconds: (performance.now() - t0) / 1000, holdout: hs.holdout, ...(staged ? {} : { models }) };
  } catch (err) {
    for (const m of models) m.dispose();
    throw err;
  } finally {
    if (staged) rmSync(staged, { recursive: true, force: true });
    clfModel?.dispose();
  }
}
