/**
 * How good an explainer's one-pass maps are: on the maps it never trained on (the held-out
 * indices of its card's split), per map and as mean +- std, against the exact maps and beside
 * two trivial baselines that any explainer must beat:
 *   - the mean training map (the same map for every stamp: what a collapsed autoencoder outputs);
 *   - |SNR difference| as saliency (bright residuals = important, no model at all): |x| of the
 *     channel as stored. occmap's HiTS stamps are min-max scaled per stamp to [0, 1], so there
 *     |x| = x (bright = important) and the sky sits anywhere in 0.1..0.9; snrCentre 'median'
 *     measures |x - the stamp's median| instead (negative residuals count too). On the HiTS
 *     2015 maps the plain |x| is the stronger baseline, hence the default.
 *
 * Orientation. With `score prob` (the seed's maps) a pixel is important when occluding it LOWERS
 * the class probability, i.e. where the map is LOW; with `score drop` where it is HIGH. Every
 * map is turned into an "importance" (higher = more important) for the ranking metrics (top-k
 * IoU, deletion / insertion); the value metrics compare maps in the seed's units.
 *
 * What is compared with what, exactly:
 *   - MSE, MAE, SSIM, Pearson, Spearman: on seed-normalised maps ("comparison maps"). When the
 *     data's maps are stored seed-normalised (meta.occlusion.normalize == 'seed') the exact and
 *     estimated maps are used as they are (the explainer was trained to output that scale, and
 *     re-normalising would hide a scale error); otherwise both are seed-normalised here, each
 *     map on its own. The |SNR| baseline is given a map in those units: seed normalisation of
 *     -|SNR| for prob maps (important = low, like the exact map) or of +|SNR| for drop maps.
 *   - Top-k IoU and deletion / insertion: on importance orderings: -map (prob) or map (drop) of
 *     the raw exact / estimated / mean map, and |SNR| itself for the baseline (its unclipped
 *     order, so the seed clip's ties do not decide the top pixels).
 *   - Deletion / insertion: the classifier sees the dataset image with its own channels; pixels
 *     are removed (set to 0, the occlusion fill) or inserted into a 0 canvas in order of
 *     importance, all channels of a pixel at once, and the probability of the class the exact
 *     map explains (meta.occlusion.target) is followed. The exact map's own AUCs are the
 *     reference: an estimate as faithful as the exact map has the same AUCs.
 *   - Uncertainty (ensembles): Spearman between the predicted per-pixel std and the actual
 *     |estimate - exact| in the explainer's output units, per map (then mean) and pooled over
 *     every pixel of every map.
 */
import type { Dataset } from '../data/dataset.js';
import { argmax, selectChannels, type Predictor } from '../models/predictor.js';
import { inputMismatch } from '../occlusion/exact.js';
import { normalizeSeed } from '../occlusion/geometry.js';
import { spearman, summarize, aucUniform, type Summary } from '../metrics/maps.js';
import { compareMap, importanceOf, METRIC_NAMES, ssimWindow } from '../metrics/compare.js';
import { curveImages, importanceOrder } from '../metrics/faithfulness.js';
import { UserError } from '../util/errors.js';
import { holdoutWarnings } from '../data/holdout.js';

export type Score = 'prob' | 'drop';
export type SnrCentre = 'median' | 'zero';

/**
 * The part of an Explainer (src/explainer/estimate.ts) evaluation needs, structurally, so tests
 * pass small fakes and this module does not load any engine.
 */
export interface EvaluableExplainer {
  readonly card: {
    condition: 'none' | 'numeral' | 'onehot';
    inputSize: number;
    channels?: number[];
    split: {
      by: 'group' | 'item';
      seed?: number;
      valFraction?: number;
      valIndices: number[];
      /** Conditioning class of each held-out row, in valIndices order. */
      valTargets?: number[];
      /** Set when training used a random subset of the rows (older cards: limit, without trainIndices). */
      limit?: unknown;
      subset?: unknown;
      /** The rows a subset trained on. */
      trainIndices?: unknown;
      [k: string]: unknown;
    };
    data: string;
    /** What conditioned training used as the class: labels, predictions or a fixed class. */
    conditionOn?: 'label' | 'predicted' | number | null;
  };
  estimate(
    images: Float32Array,
    shape: [number, number, number, number],
    labels?: ArrayLike<number>,
  ): Promise<{ maps: Float32Array; std?: Float32Array }>;
  /** See Explainer.fusedClassifierHash: estimate() without labels uses this classifier's prediction. */
  readonly fusedClassifierHash?: string;
}

/** The map metrics: the registry's (metrics/compare.ts), so every client reports the same. */
export const MAP_METRICS = METRIC_NAMES;
export const FAITH_METRICS = ['deletion', 'insertion', 'deletionGap', 'insertionGap'] as const;
export type MetricName = (typeof METRIC_NAMES)[number] | (typeof FAITH_METRICS)[number];

/** exactMap: the reference row of deletion / insertion (the exact map's own AUCs). */
export type MethodName = 'explainer' | 'meanMap' | 'snrSaliency' | 'exactMap';

export interface MethodResult {
  name: MethodName;
  /** Per evaluated map, aligned with EvaluationResult.indices. */
  perMap: Partial<Record<MetricName, number[]>>;
  summary: Partial<Record<MetricName, Summary>>;
  /** Summaries per dataset label (key = label value). */
  byClass: Record<string, Partial<Record<MetricName, Summary>>>;
}

export interface EvaluationResult {
  split: 'val' | 'all';
  /** Dataset indices evaluated, in order. */
  indices: number[];
  labels?: number[];
  /** Distinct object ids among the evaluated maps (= maps when the data has no ids). */
  objects: number;
  /** Maps on the training side of the card's split (the mean map's source). */
  trainingMaps: number;
  /** Evaluated objects that also have stamps on the training side (0 for a group split). */
  sharedObjects?: number;
  score: Score;
  /** How the value metrics' maps were obtained. */
  normalisation: { data: string; comparison: string };
  fraction: number;
  steps?: number;
  snrChannel?: number;
  snrCentre?: SnrCentre;
  /** Class each exact map explains (faithfulness target), when a classifier was given. */
  targets?: number[];
  methods: MethodResult[];
  /** Deletion / insertion AUCs of the exact maps: the reference. */
  exact?: MethodResult;
  uncertainty?: { perMap: number[]; summary: Summary; pooled: number; byClass: Record<string, Summary> };
  /**
   * Where a conditioned explainer's classes came from: 'label' (the data's labels), 'card' (the
   * classes training recorded for its held-out rows, split.valTargets), 'predicted' (the
   * classifier's argmax, computed here), 'fixed' (one class for all).
   */
  conditionLabels?: 'label' | 'card' | 'predicted' | 'fixed';
  notes: string[];
}

export type EvaluatePhase = 'estimate' | 'faithfulness';

export interface EvaluateOptions {
  explainer: EvaluableExplainer;
  /** A maps dataset: images, maps (required), labels and ids when known, meta.occlusion. */
  data: Dataset;
  /** File name of the data, for error messages. */
  dataFile?: string;
  /** Needed for deletion / insertion (and for conditioning on predicted classes). */
  classifier?: Predictor;
  /** 'val': the card's held-out indices (default); 'all': every map. */
  split?: 'val' | 'all';
  baselines?: boolean;
  faithfulness?: boolean;
  /** Where |SNR| is measured from: 'zero' (default, |x|) or 'median' (the stamp's sky level). */
  snrCentre?: SnrCentre;
  /** Top fraction of pixels for IoU (default 0.1). */
  fraction?: number;
  /** Overrides meta.occlusion.score (prob when neither says). */
  score?: Score;
  /** Deletion / insertion steps (curve points = steps + 1). Default 20. */
  steps?: number;
  /** Evaluate only the first n maps of the split. */
  limit?: number;
  /** Images per explainer call and (about) per classifier call. */
  batchSize?: number;
  /** `inferencesPerMap`: classifier inferences each map costs in this phase (0 for estimate). */
  onProgress?: (phase: EvaluatePhase, done: number, total: number, inferencesPerMap: number) => void;
}

// importanceOf is the metrics registry's (pure, shared with the browser viewer).
export { importanceOf } from '../metrics/compare.js';

/**
 * |channel ch - centre| of one HWC image: the SNR-difference saliency (high = important).
 * centre 'zero': |x|; 'median': from the channel's median over the stamp (its sky level).
 */
export function absChannel(image: ArrayLike<number>, hw: number, c: number, ch: number, centre: SnrCentre = 'zero'): Float64Array {
  const v = new Float64Array(hw);
  for (let p = 0; p < hw; p++) v[p] = image[p * c + ch];
  let m = 0;
  if (centre === 'median') {
    const s = Float64Array.from(v).sort();
    m = hw % 2 === 1 ? s[(hw - 1) / 2] : (s[hw / 2 - 1] + s[hw / 2]) / 2;
  }
  for (let p = 0; p < hw; p++) v[p] = Math.abs(v[p] - m);
  return v;
}

/**
 * The |SNR| saliency as a map in seed-normalised units and the data's orientation: prob maps
 * are low where important, so -|SNR| is normalised; drop maps use +|SNR|.
 */
export function saliencyAsMap(saliency: ArrayLike<number>, score: Score): Float64Array {
  return normalizeSeed(score === 'prob' ? Array.from(saliency, (v) => -v) : saliency);
}

/** Pixel-wise mean of the maps at `indices` ((N, hw) row-major). */
export function meanMap(maps: Float32Array, hw: number, indices: readonly number[]): Float64Array {
  if (indices.length === 0) throw new Error('no maps to average');
  const out = new Float64Array(hw);
  for (const i of indices) for (let p = 0; p < hw; p++) out[p] += maps[i * hw + p];
  for (let p = 0; p < hw; p++) out[p] /= indices.length;
  return out;
}

/**
 * Which data channel holds the SNR difference: the one named so in meta.channels, else the
 * single channel the classifier (or the explainer) reads, else the only channel. Undefined
 * when none of these says.
 */
export function snrChannelOf(
  c: number,
  metaChannels?: readonly string[],
  classifierChannels?: readonly number[],
  explainerChannels?: readonly number[],
): number | undefined {
  const named = metaChannels?.findIndex((n) => /snr/i.test(n)) ?? -1;
  if (named >= 0 && named < c) return named;
  if (classifierChannels?.length === 1) return classifierChannels[0];
  if (explainerChannels?.length === 1) return explainerChannels[0];
  if (c === 1) return 0;
  return undefined;
}

/**
 * Spearman correlation of predicted std and actual absolute error, per map and pooled over
 * all pixels. `std`, `est`, `exact`: (n, hw).
 */
export function stdErrorCorrelation(
  std: ArrayLike<number>,
  est: ArrayLike<number>,
  exact: ArrayLike<number>,
  n: number,
  hw: number,
): { perMap: number[]; pooled: number } {
  const err = new Float64Array(n * hw);
  for (let i = 0; i < n * hw; i++) err[i] = Math.abs(est[i] - exact[i]);
  const s = Float64Array.from({ length: n * hw }, (_, i) => std[i]);
  const perMap: number[] = [];
  for (let i = 0; i < n; i++) perMap.push(spearman(s.subarray(i * hw, (i + 1) * hw), err.subarray(i * hw, (i + 1) * hw)));
  return { perMap, pooled: spearman(s, err) };
}

function summaries(perMap: Partial<Record<MetricName, number[]>>, labels: number[] | undefined): Pick<MethodResult, 'summary' | 'byClass'> {
  const summary: MethodResult['summary'] = {};
  const byClass: MethodResult['byClass'] = {};
  for (const [k, v] of Object.entries(perMap) as [MetricName, number[]][]) summary[k] = summarize(v);
  if (labels) {
    for (const lab of [...new Set(labels)].sort((a, b) => a - b)) {
      const sel = labels.map((l, i) => (l === lab ? i : -1)).filter((i) => i >= 0);
      const s: Partial<Record<MetricName, Summary>> = {};
      for (const [k, v] of Object.entries(perMap) as [MetricName, number[]][]) s[k] = summarize(sel.map((i) => v[i]));
      byClass[String(lab)] = s;
    }
  }
  return { summary, byClass };
}

function scoreOf(opts: EvaluateOptions, notes: string[]): Score {
  const occ = opts.data.meta.occlusion ?? {};
  const metaScore = occ.score;
  if (opts.score) {
    if (metaScore !== undefined && metaScore !== opts.score) notes.push(`score ${opts.score} given, but the maps were made with score ${String(metaScore)}`);
    return opts.score;
  }
  if (metaScore === 'prob' || metaScore === 'drop') return metaScore;
  notes.push('the data does not say how its maps were scored (meta.occlusion.score); assumed prob (the seed: low = important)');
  return 'prob';
}

/** The dataset indices to evaluate and those the explainer trained on. */
function splitOf(opts: EvaluateOptions, n: number, file: string, notes: string[]): { evalIdx: number[]; trainIdx: number[] } {
  const split = opts.explainer.card.split;
  const val = split?.valIndices;
  if (!Array.isArray(val)) throw new UserError(`the explainer's card has no split.valIndices: cannot tell which maps it never trained on`);
  const bad = val.find((i) => !(Number.isInteger(i) && i >= 0 && i < n));
  if (bad !== undefined) {
    throw new UserError(`${file}: the explainer's held-out index ${bad} is outside this dataset's ${n} maps: it was trained on another maps file (${opts.explainer.card.data})`);
  }
  const valSet = new Set(val);
  let trainIdx: number[] = [];
  if (Array.isArray(split.trainIndices)) {
    // A subset: the training side is exactly the rows it trained on (the mean map's source too).
    trainIdx = (split.trainIndices as number[]).filter((i) => Number.isInteger(i) && i >= 0 && i < n);
  } else {
    if (split.limit !== undefined && split.limit !== null) {
      notes.push(`the explainer trained on a random subset of rows (limit ${String(split.limit)}, a card from before subsets were recorded) the card does not list: the mean map averages every row outside its held-out split`);
    }
    for (let i = 0; i < n; i++) if (!valSet.has(i)) trainIdx.push(i);
  }
  let evalIdx = opts.split === 'all' ? Array.from({ length: n }, (_, i) => i) : [...val].sort((a, b) => a - b);
  if (opts.limit !== undefined) evalIdx = evalIdx.slice(0, opts.limit);
  if (evalIdx.length === 0) throw new UserError(`${file}: no maps to evaluate (the explainer's held-out split is empty; try --split all)`);
  return { evalIdx, trainIdx };
}

function gather(src: Float32Array, per: number, idx: readonly number[]): Float32Array;
function gather(src: Float32Array | Float64Array, per: number, idx: readonly number[]): Float32Array | Float64Array;
function gather(src: Float32Array | Float64Array, per: number, idx: readonly number[]): Float32Array | Float64Array {
  const out = src instanceof Float64Array ? new Float64Array(idx.length * per) : new Float32Array(idx.length * per);
  idx.forEach((i, k) => out.set(src.subarray(i * per, (i + 1) * per), k * per));
  return out;
}

/** The data's geometry and the rows evaluated, as every step below needs them. */
interface Held {
  file: string;
  h: number;
  w: number;
  c: number;
  hw: number;
  m: number;
  evalIdx: number[];
  trainIdx: number[];
  labels: number[] | undefined;
  /** The held-out images, all channels of the data. */
  images: Float32Array;
  batch: number;
  notes: string[];
}

type Method = { name: MethodName; cmp: (i: number) => ArrayLike<number>; imp: (i: number) => ArrayLike<number> };

export async function evaluateExplainer(opts: EvaluateOptions): Promise<EvaluationResult> {
  const ds = opts.data;
  const file = opts.dataFile ?? 'data';
  if (!ds.maps) throw new UserError(`${file}: has no maps (an 'occmap occlude' output is needed)`);
  const notes: string[] = [];
  const score = scoreOf(opts, notes);
  const fraction = opts.fraction ?? 0.1;
  if (!(fraction > 0 && fraction <= 1)) throw new UserError(`fraction must be in (0, 1], got ${fraction}`);
  const steps = opts.steps ?? 20;
  if (!(Number.isInteger(steps) && steps >= 1)) throw new UserError(`steps must be a positive integer, got ${steps}`);
  const held = heldOutOf(opts, file, notes);
  const { h, w, hw, m, evalIdx, trainIdx, labels } = held;
  const objects = ds.ids ? new Set(evalIdx.map((i) => ds.ids![i])).size : m;
  const sharedObjects = sharedObjectsOf(opts, held, objects);
  if (opts.split !== 'all') notes.push(...holdoutWarnings({ train: trainIdx, val: evalIdx, by: opts.explainer.card.split.by }, ds.ids));
  const exactRaw = gather(ds.maps, hw, evalIdx);

  const cls = await classesOf(opts, held);
  const { condLabels, conditionLabels } = conditionOf(opts, held, cls?.predicted);
  // For the classifier's predicted class, the explainer's fused graph (which holds this
  // classifier) draws class and map in one call.
  const oneCall = conditionLabels === 'predicted' && !!opts.classifier && opts.explainer.fusedClassifierHash === opts.classifier.hash;
  const { est, std } = await estimatesOf(opts, held, condLabels && !oneCall ? condLabels : undefined);

  const { normalisation, toCmp } = comparisonUnits(opts, held);
  const { methods, snrChannel, snrCentre } = methodsOf(opts, held, est, score, toCmp);
  const exactImp = exactImportances(opts, held, exactRaw, score);
  const perMethod = mapMetrics(held, methods, exactRaw, exactImp, toCmp, fraction);

  let exact: MethodResult | undefined;
  const doFaith = opts.faithfulness !== false;
  if (doFaith && !opts.classifier) notes.push('no classifier: deletion / insertion skipped (give --model, or the card\'s classifier)');
  if (doFaith && cls) exact = await faithfulness(opts, held, cls, methods, exactImp, perMethod, steps);

  return {
    split: opts.split ?? 'val',
    indices: evalIdx,
    labels,
    objects,
    trainingMaps: trainIdx.length,
    sharedObjects,
    score,
    normalisation,
    fraction,
    steps: exact ? steps : undefined,
    snrChannel,
    snrCentre: snrChannel === undefined ? undefined : snrCentre,
    targets: cls ? Array.from(cls.targets) : undefined,
    methods: methods.map((meth, j) => ({ name: meth.name, perMap: perMethod[j], ...summaries(perMethod[j], labels) })),
    exact,
    uncertainty: std ? uncertaintyOf(std, est, exactRaw, m, hw, labels) : undefined,
    conditionLabels,
    notes,
  };
}

function heldOutOf(opts: EvaluateOptions, file: string, notes: string[]): Held {
  const ds = opts.data;
  const [n, h, w, c] = ds.shape;
  const card = opts.explainer.card;
  if (card.inputSize < h || card.inputSize < w) throw new UserError(`${file}: images are ${h}x${w}, larger than the explainer's ${card.inputSize}x${card.inputSize} input`);
  const { evalIdx, trainIdx } = splitOf(opts, n, file, notes);
  const labels = ds.labels ? evalIdx.map((i) => ds.labels![i]) : undefined;
  const images = gather(ds.images, h * w * c, evalIdx);
  return { file, h, w, c, hw: h * w, m: evalIdx.length, evalIdx, trainIdx, labels, images, batch: opts.batchSize ?? 256, notes };
}

/** How many held-out objects also have stamps on the training side (near-duplicates). */
function sharedObjectsOf(opts: EvaluateOptions, held: Held, objects: number): number | undefined {
  const ids = opts.data.ids;
  if (!ids || opts.split === 'all') return undefined;
  const trainObjects = new Set(held.trainIdx.map((i) => ids[i]));
  const shared = new Set(held.evalIdx.map((i) => ids[i]).filter((g) => trainObjects.has(g))).size;
  if (shared > 0) {
    held.notes.push(`${shared} of the ${objects} held-out objects also have stamps the explainer trained on (split by ${opts.explainer.card.split.by}): near-duplicate epochs inflate the figures`);
  }
  return shared;
}

interface Classes {
  clf: Predictor;
  /** The held-out images in the classifier's channels. */
  clfImages: Float32Array;
  predicted: Int32Array;
  /** The class each exact map explains, as the occlusion did (meta.occlusion.target). */
  targets: Int32Array;
}

async function classesOf(opts: EvaluateOptions, held: Held): Promise<Classes | undefined> {
  const clf = opts.classifier;
  if (!clf) return undefined;
  const { file, h, w, c, hw, m, batch, labels } = held;
  const occ = opts.data.meta.occlusion ?? {};
  const mismatch = inputMismatch(clf, opts.data.shape);
  if (mismatch) throw new UserError(`classifier: ${mismatch} (data ${file})`);
  if (typeof occ.modelHash === 'string' && occ.modelHash !== clf.hash) {
    held.notes.push(`the classifier (${clf.hash.slice(0, 12)}) is not the one the exact maps were made with (${occ.modelHash.slice(0, 12)}): deletion / insertion use the given one`);
  }
  const clfImages = selectChannels(held.images, m, h, w, c, clf.channels);
  const k = clf.numClasses;
  const cm = clf.inputShape[2];
  const predicted = new Int32Array(m);
  for (let s = 0; s < m; s += batch) {
    const e = Math.min(m, s + batch);
    const p = await clf.predict(clfImages.subarray(s * hw * cm, e * hw * cm), e - s);
    for (let i = s; i < e; i++) predicted[i] = argmax(p, (i - s) * k, k);
  }
  const t = occ.target ?? 'predicted';
  let targets = predicted;
  if (t === 'label') {
    if (!labels) throw new UserError(`${file}: the maps explain each stamp's label (meta.occlusion.target) but the data has no labels`);
    targets = Int32Array.from(labels);
  } else if (typeof t === 'number') targets = new Int32Array(m).fill(t);
  for (const v of targets) if (v >= k) throw new UserError(`${file}: target class ${v} is not a class of the ${k}-class classifier`);
  return { clf, clfImages, predicted, targets };
}

/**
 * Conditioned explainers are told the class each map is drawn for, as in training
 * (card.conditionOn); for held-out rows the card records the classes training used.
 */
function conditionOf(opts: EvaluateOptions, held: Held, predicted: Int32Array | undefined): { condLabels?: number[]; conditionLabels?: EvaluationResult['conditionLabels'] } {
  const card = opts.explainer.card;
  if (card.condition === 'none') return {};
  const { file, labels, evalIdx, m } = held;
  const on = card.conditionOn ?? opts.data.meta.occlusion?.target ?? 'predicted';
  if (on === 'label') {
    if (!labels) throw new UserError(`${file}: the explainer is conditioned on the stamps' labels and the data has none`);
    return { condLabels: labels, conditionLabels: 'label' };
  }
  if (typeof on === 'number') return { condLabels: new Array(m).fill(on), conditionLabels: 'fixed' };
  const vt = card.split.valTargets;
  const known = new Map<number, number>();
  if (Array.isArray(vt) && vt.length === card.split.valIndices.length) card.split.valIndices.forEach((r, k) => known.set(r, vt[k]));
  if (evalIdx.every((i) => known.has(i))) return { condLabels: evalIdx.map((i) => known.get(i)!), conditionLabels: 'card' };
  if (predicted) return { condLabels: Array.from(predicted), conditionLabels: 'predicted' };
  throw new UserError(
    `${file}: the explainer is conditioned on the classifier's predicted class, which the card records for its held-out rows only: give the classifier (--model) to evaluate others`,
  );
}

async function estimatesOf(opts: EvaluateOptions, held: Held, condLabels: number[] | undefined): Promise<{ est: Float32Array; std?: Float32Array }> {
  const { h, w, c, hw, m, batch, images } = held;
  const est = new Float32Array(m * hw);
  let std: Float32Array | undefined;
  opts.onProgress?.('estimate', 0, m, 0);
  for (let s = 0; s < m; s += batch) {
    const e = Math.min(m, s + batch);
    const r = await opts.explainer.estimate(images.subarray(s * hw * c, e * hw * c), [e - s, h, w, c], condLabels?.slice(s, e));
    if (r.maps.length !== (e - s) * hw) throw new Error(`explainer returned ${r.maps.length} values for ${e - s} maps of ${h}x${w}`);
    est.set(r.maps, s * hw);
    if (r.std) {
      std ??= new Float32Array(m * hw);
      std.set(r.std, s * hw);
    }
    opts.onProgress?.('estimate', e, m, 0);
  }
  return { est, std };
}

/** Comparison maps in seed units: as stored when the data is seed-normalised, else normalised here. */
function comparisonUnits(opts: EvaluateOptions, held: Held): { normalisation: EvaluationResult['normalisation']; toCmp: (mp: ArrayLike<number>) => ArrayLike<number> } {
  const occ = opts.data.meta.occlusion ?? {};
  const dataSeed = occ.normalize === 'seed';
  const normalisation = {
    data: dataSeed ? 'seed-normalised (meta.occlusion.normalize = seed)' : `not seed-normalised (meta.occlusion.normalize = ${String(occ.normalize ?? 'unknown')})`,
    comparison: dataSeed
      ? 'exact and estimated maps as stored (already in seed units)'
      : 'exact and estimated maps each seed-normalised here before MSE / MAE / SSIM / correlations',
  };
  if (!dataSeed) held.notes.push(`MSE, MAE, SSIM and correlations on maps seed-normalised here: the data's maps are ${normalisation.data}`);
  const win = ssimWindow(held.h, held.w);
  if (win === 0) held.notes.push(`SSIM undefined: the ${held.h}x${held.w} maps are smaller than a 3x3 window`);
  else if (win !== 7) held.notes.push(`SSIM window ${win}x${win}: the maps are smaller than scikit-image's 7x7`);
  return { normalisation, toCmp: (mp) => (dataSeed ? mp : normalizeSeed(mp)) };
}

/** The explainer and the baselines (mean training map, |SNR difference|), as maps and importances. */
function methodsOf(opts: EvaluateOptions, held: Held, est: Float32Array, score: Score, toCmp: (mp: ArrayLike<number>) => ArrayLike<number>): { methods: Method[]; snrChannel?: number; snrCentre: SnrCentre } {
  const { hw, c, images, trainIdx, notes } = held;
  const ds = opts.data;
  const snrCentre = opts.snrCentre ?? 'zero';
  const estAt = (i: number) => est.subarray(i * hw, (i + 1) * hw);
  const methods: Method[] = [{ name: 'explainer', cmp: (i) => toCmp(estAt(i)), imp: (i) => importanceOf(estAt(i), score) }];
  if (opts.baselines === false) return { methods, snrCentre };
  if (trainIdx.length === 0) notes.push('no training-side maps in the card\'s split: mean-map baseline skipped');
  else {
    const mean = meanMap(ds.maps!, hw, trainIdx);
    const meanCmp = toCmp(mean);
    const meanImp = importanceOf(mean, score);
    methods.push({ name: 'meanMap', cmp: () => meanCmp, imp: () => meanImp });
  }
  const snrChannel = snrChannelOf(c, ds.meta.channels, opts.classifier?.channels, opts.explainer.card.channels);
  if (snrChannel === undefined) notes.push(`cannot tell which of the ${c} data channels is the SNR difference: |SNR| baseline skipped`);
  else {
    const sal = (i: number) => absChannel(images.subarray(i * hw * c, (i + 1) * hw * c), hw, c, snrChannel, snrCentre);
    methods.push({ name: 'snrSaliency', cmp: (i) => saliencyAsMap(sal(i), score), imp: sal });
  }
  return { methods, snrChannel, snrCentre };
}

/**
 * The exact map's own order of importance: from the maps before normalisation when the data
 * keeps them (the seed's clip makes the most important pixels tie at 0, which would leave the
 * top-fraction metrics and the exact map's deletion order to index order).
 */
function exactImportances(opts: EvaluateOptions, held: Held, exactRaw: Float32Array, score: Score): ArrayLike<number>[] {
  const { hw, m, evalIdx } = held;
  const raw = opts.data.mapsRaw ? gather(opts.data.mapsRaw, hw, evalIdx) : exactRaw;
  if (opts.data.mapsRaw) held.notes.push("exact importances (top-fraction IoU and Spearman, the exact map's deletion / insertion order) from maps_raw, the maps before the seed's clip");
  return Array.from({ length: m }, (_, i) => importanceOf(raw.subarray(i * hw, (i + 1) * hw), score));
}

function mapMetrics(held: Held, methods: Method[], exactRaw: Float32Array, exactImp: ArrayLike<number>[], toCmp: (mp: ArrayLike<number>) => ArrayLike<number>, fraction: number): Record<MetricName, number[]>[] {
  const { h, w, hw, m } = held;
  const perMethod = methods.map(() => Object.fromEntries(MAP_METRICS.map((k) => [k, [] as number[]])) as Record<MetricName, number[]>);
  for (let i = 0; i < m; i++) {
    const exact = { values: toCmp(exactRaw.subarray(i * hw, (i + 1) * hw)), importance: exactImp[i], h, w };
    methods.forEach((meth, j) => {
      const r = compareMap({ values: meth.cmp(i), importance: meth.imp(i), h, w }, exact, { fraction });
      for (const k of MAP_METRICS) perMethod[j][k].push(r[k]);
    });
  }
  return perMethod;
}

/** Deletion / insertion AUCs of every method and of the exact map; the gaps go into perMethod. */
async function faithfulness(opts: EvaluateOptions, held: Held, cls: Classes, methods: Method[], exactImp: ArrayLike<number>[], perMethod: Record<MetricName, number[]>[], steps: number): Promise<MethodResult> {
  const { clf, clfImages, targets } = cls;
  const { hw, m, batch, labels } = held;
  const cm = clf.inputShape[2];
  const k = clf.numClasses;
  const points = steps + 1;
  const curves = methods.length + 1; // + the exact map
  const perMap = 2 * points * curves;
  const mapsPerCall = Math.max(1, Math.floor(Math.max(batch * 8, perMap) / perMap));
  const aucs = Array.from({ length: curves }, () => ({ deletion: [] as number[], insertion: [] as number[] }));
  const buf = new Float32Array(mapsPerCall * perMap * hw * cm);
  opts.onProgress?.('faithfulness', 0, m, perMap);
  for (let s = 0; s < m; s += mapsPerCall) {
    const e = Math.min(m, s + mapsPerCall);
    let off = 0;
    for (let i = s; i < e; i++) {
      const img = clfImages.subarray(i * hw * cm, (i + 1) * hw * cm);
      for (const imp of [exactImp[i], ...methods.map((meth) => meth.imp(i))]) {
        const order = importanceOrder(imp);
        for (const mode of ['deletion', 'insertion'] as const) {
          const x = curveImages(img, hw, cm, order, mode, { steps, baseline: 0 });
          buf.set(x, off);
          off += x.length;
        }
      }
    }
    const probs = await clf.predict(buf.subarray(0, off), off / (hw * cm));
    let row = 0;
    for (let i = s; i < e; i++) {
      for (let q = 0; q < curves; q++) {
        for (const mode of ['deletion', 'insertion'] as const) {
          aucs[q][mode].push(aucUniform(Array.from({ length: points }, (_, p) => probs[(row + p) * k + targets[i]])));
          row += points;
        }
      }
    }
    opts.onProgress?.('faithfulness', e, m, perMap);
  }
  const exact: MethodResult = { name: 'exactMap', perMap: { deletion: aucs[0].deletion, insertion: aucs[0].insertion }, summary: {}, byClass: {} };
  Object.assign(exact, summaries(exact.perMap, labels));
  methods.forEach((_, j) => {
    const a = aucs[j + 1];
    perMethod[j].deletion = a.deletion;
    perMethod[j].insertion = a.insertion;
    perMethod[j].deletionGap = a.deletion.map((v, i) => v - aucs[0].deletion[i]);
    perMethod[j].insertionGap = a.insertion.map((v, i) => v - aucs[0].insertion[i]);
  });
  return exact;
}

function uncertaintyOf(std: Float32Array, est: Float32Array, exactRaw: Float32Array, m: number, hw: number, labels: number[] | undefined): EvaluationResult['uncertainty'] {
  const r = stdErrorCorrelation(std, est, exactRaw, m, hw);
  const byClass: Record<string, Summary> = {};
  if (labels) for (const lab of [...new Set(labels)].sort((a, b) => a - b)) byClass[String(lab)] = summarize(r.perMap.filter((_, i) => labels[i] === lab));
  return { perMap: r.perMap, summary: summarize(r.perMap), pooled: r.pooled, byClass };
}
