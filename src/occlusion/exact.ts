/**
 * Exact occlusion maps: one classifier inference per patch position (plus one for the
 * unoccluded image), batched. Engine-agnostic: anything implementing Predictor works; tfjs
 * and ONNX Runtime differ only in how they run a batch.
 */
import { argmax, selectChannels, type Predictor } from '../models/predictor.js';
import { UserError } from '../util/errors.js';
import { classScores } from './class-scores.js';
import { incrementalNote } from './incremental-engine-name.js';
import {
  accumulate,
  channelMeans,
  geometryProblem,
  normalizeSeed,
  occludeInto,
  positions,
  type Aggregate,
  type Geometry,
} from './geometry.js';

export type Target = 'predicted' | 'label' | number;
export type Score = 'prob' | 'drop';
export type Normalize = 'none' | 'seed';
/** Maps before normalisation: float64, or the float32 maps themselves for normalize 'none'. */
export type RawMaps = Float32Array | Float64Array;

export interface OcclusionParams {
  /** [height, width]. */
  patch: [number, number];
  stride: number;
  pad: number;
  /** A value for every model channel, or each image's own per-channel mean. */
  fill: number | 'mean';
  /** predicted = argmax of the unoccluded probabilities. */
  target: Target;
  /** prob: target probability with the patch; drop: unoccluded minus occluded probability. */
  score: Score;
  aggregate: Aggregate;
  normalize: Normalize;
}

/** The seed's settings (Occlusion_map.ipynb). */
export const SEED_PARAMS: OcclusionParams = {
  patch: [3, 3],
  stride: 1,
  pad: 3,
  fill: 0,
  target: 'predicted',
  score: 'prob',
  aggregate: 'sum',
  normalize: 'seed',
};

export const DEFAULT_BATCH_SIZE = 2048;

export interface ExactOptions extends OcclusionParams {
  /** Images per predict call (occluded images plus the unoccluded ones). */
  batchSize?: number;
  /** Needed for target 'label'; indexed like the images. */
  labels?: Int32Array;
  /**
   * The images already hold the model's input channels (the caller ran selectChannels, e.g.
   * once for all workers), so predictor.channels is not applied again.
   */
  modelChannels?: boolean;
  /**
   * 'incremental': recompute only what each patch changes (incremental.ts), on a predictor
   * that offers it (loadPredictor engine 'incremental', or incrementalPredictorFor on a tfjs
   * model); otherwise 'full' runs, with the reason in the result's note.
   * 'full': one whole inference per position. Default 'auto': incremental when the predictor offers it.
   */
  engine?: 'auto' | 'full' | 'incremental';
  /**
   * Approximate maps on the incremental engine (Krypton's projective-field threshold tau in
   * (0, 1]: each layer recomputes at most tau of its output per axis around the change's centre,
   * the rest is taken as unchanged). Off by default; ignored by the full engine. Check the
   * error against exact maps with approximationError.
   */
  approx?: number;
}

export interface ExactResult {
  /** (N, H, W), normalised as `normalize` says. */
  maps: Float32Array;
  /**
   * (N, H, W): the accumulated scores before normalisation (equal to `maps` for normalize
   * 'none'). The seed normalisation clips the z-score to [-1, 1], which flattens the ranking
   * inside the most important region; these keep it (and the probabilities' own scale).
   * Float64 when normalised: summed probabilities near 9 differ in the 9th digit
   * (class-scores.ts); float32 only for 'none', where they are the maps themselves.
   */
  raw: RawMaps;
  /** Class each map explains. */
  targets: Int32Array;
  /** (N, numClasses) probabilities of the unoccluded images. */
  baseProbs: Float32Array;
  /** Classifier inferences run (images predicted), or their equivalent on the incremental engine. */
  inferences: number;
  /** Which engine computed the maps. */
  engine?: 'full' | 'incremental';
  /** Why 'incremental' was asked for and 'full' ran. */
  note?: string;
}

export interface ExactProgress {
  /** Maps finished by this call so far. */
  stamps: number;
  inferences: number;
}

export function geometryOf(params: Pick<OcclusionParams, 'patch' | 'stride' | 'pad'>, h: number, w: number): Geometry {
  return { h, w, ph: params.patch[0], pw: params.patch[1], stride: params.stride, pad: params.pad };
}

/** Inferences per map: every position plus the unoccluded image. */
export function inferencesPerMap(params: OcclusionParams, h: number, w: number): number {
  return positions(geometryOf(params, h, w)).ys.length + 1;
}

/**
 * How many maps share one predict call. exactMaps batches maps in groups of this many,
 * counted from the first image it is given; callers that split a job (shards, workers) cut
 * at multiples of it so every image is predicted in the same batch composition whatever the
 * split, and the maps stay bit-identical even on engines whose results depend on the batch.
 */
export function mapsPerGroup(params: OcclusionParams, h: number, w: number, batchSize = DEFAULT_BATCH_SIZE): number {
  return Math.max(1, Math.floor(batchSize / inferencesPerMap(params, h, w)));
}

/**
 * Why `predictor` cannot read images of `shape` (N,H,W,C dataset channels), or null.
 */
export function inputMismatch(predictor: Predictor, shape: readonly number[]): string | null {
  const [, h, w, c] = shape;
  const [mh, mw, mc] = predictor.inputShape;
  const ch = predictor.channels;
  if (ch) {
    const bad = ch.find((k) => !Number.isInteger(k) || k < 0 || k >= c);
    if (bad !== undefined) return `model reads data channel ${bad} but the data has ${c} channel(s)`;
    if (ch.length !== mc) return `model input has ${mc} channel(s) but reads data channels [${ch.join(',')}]`;
  } else if (c !== mc) {
    return `model input is ${mh}x${mw}x${mc} but the data images are ${h}x${w}x${c}`;
  }
  if (h !== mh || w !== mw) {
    return `model input is ${mh}x${mw}x${mc} but the data images are ${h}x${w} (x${c} channels)`;
  }
  return null;
}

/**
 * Groups 0..nGroups-1 through `call`, each result to `done` in order. The next group is asked
 * for before this one is awaited: an engine with lanes in other threads starts it while they
 * finish this one (IncrementalEngine.occlusionProbs). A failure is thrown once the call asked
 * for ahead has settled too, so none is left running.
 */
async function scoreGroups(nGroups: number, call: (gi: number) => Promise<Float32Array>, done: (gi: number, probs: Float32Array) => void): Promise<void> {
  let next = nGroups > 0 ? call(0) : null;
  for (let gi = 0; gi < nGroups; gi++) {
    const now = next!;
    next = gi + 1 < nGroups ? call(gi + 1) : null;
    next?.catch(() => undefined);
    try {
      done(gi, await now);
    } catch (e) {
      await next?.catch(() => undefined);
      throw e;
    }
  }
}

interface Chunk {
  group: number;
  /** First flattened item of the group in this chunk, and how many. */
  from: number;
  count: number;
}

/** A predictor that scores every position of a group of maps itself (the incremental engine). */
export interface OcclusionScorer {
  /** Maps it scores best in one call: exactMaps groups at least this many (memory grows with it). */
  readonly mapsPerCall?: number;
  /** Probabilities (n, positions + 1, classes) in the layout of one predict call per group. */
  occlusionProbs(images: Float32Array, n: number, g: Geometry, fills: Float32Array, approx?: number): Promise<Float32Array>;
}

export function isOcclusionScorer(p: unknown): p is OcclusionScorer {
  return typeof (p as Partial<OcclusionScorer>)?.occlusionProbs === 'function';
}

/**
 * The incremental scorer exactMaps uses for `engine`: the predictor's own (loadPredictor engine
 * 'incremental', or incrementalPredictorFor), otherwise none and, when it was asked for, why not.
 * Nothing is loaded here: this module is part of the browser bundle.
 */
function scorerFor(predictor: Predictor, engine: NonNullable<ExactOptions['engine']>): { scorer?: OcclusionScorer; note?: string } {
  if (engine === 'full') return {};
  if (isOcclusionScorer(predictor)) return { scorer: predictor };
  if (engine === 'auto') return {};
  return {
    note:
      incrementalNote(predictor) ??
      `the ${predictor.engine} predictor does not run the incremental engine (load the model with engine 'incremental', or build the engine with incrementalPredictorFor)`,
  };
}

/** Every check of exactMaps' arguments, before any work: the geometry and the batch size. */
function checkExact(predictor: Predictor, shape: readonly [number, number, number, number], opts: ExactOptions): { g: ReturnType<typeof geometryOf>; batchSize: number } {
  const [n, h, w] = shape;
  const mismatch = opts.modelChannels
    ? inputMismatch({ inputShape: predictor.inputShape } as Predictor, shape)
    : inputMismatch(predictor, shape);
  if (mismatch) throw new UserError(mismatch);
  const g = geometryOf(opts, h, w);
  const problem = geometryProblem(g);
  if (problem) throw new UserError(problem);
  const k = predictor.numClasses;
  if (typeof opts.target === 'number' && !(Number.isInteger(opts.target) && opts.target >= 0 && opts.target < k)) {
    throw new UserError(`target class ${opts.target} is out of range: the model has ${k} classes`);
  }
  if (opts.target === 'label') {
    if (!opts.labels) throw new UserError('target "label" needs labels, and the data has none');
    for (let i = 0; i < n; i++) {
      if (opts.labels[i] >= k) throw new UserError(`label ${opts.labels[i]} of image ${i} is not a class of the ${k}-class model`);
    }
  }
  if (opts.approx !== undefined && !(opts.approx > 0 && opts.approx <= 1)) throw new UserError(`approx (projective-field threshold) must be in (0, 1], got ${opts.approx}`);
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new UserError(`batch size must be a positive integer, got ${batchSize}`);
  return { g, batchSize };
}

/** The patch's fill per image and channel: a constant, or each image's channel means. */
function fillsOf(x: Float32Array, n: number, h: number, w: number, c: number, fill: ExactOptions['fill']): Float32Array {
  const px = h * w * c;
  const fills = new Float32Array(n * c);
  for (let i = 0; i < n; i++) {
    const img = x.subarray(i * px, (i + 1) * px);
    fills.set(fill === 'mean' ? channelMeans(img, h, w, c) : new Float32Array(c).fill(fill), i * c);
  }
  return fills;
}

/**
 * Exact maps for every image. `images` are dataset images (N,H,W,C) as `shape` says; the
 * predictor's channels are picked here, and the patch fills every model channel.
 * Each map costs positions + 1 inferences; items of `mapsPerGroup` maps are predicted
 * together in calls of at most `batchSize` images, and the next call's images are built
 * while the engine runs the current one (engines with their own threads overlap the two).
 */
export async function exactMaps(
  predictor: Predictor,
  images: Float32Array,
  shape: readonly [number, number, number, number],
  opts: ExactOptions,
  onProgress?: (p: ExactProgress) => void,
): Promise<ExactResult> {
  const [n, h, w, cData] = shape;
  const { g, batchSize } = checkExact(predictor, shape, opts);
  const k = predictor.numClasses;

  const c = predictor.inputShape[2];
  const x = opts.modelChannels ? images : selectChannels(images, n, h, w, cData, predictor.channels);
  const px = h * w * c;
  const pos = positions(g);
  const nPos = pos.ys.length;
  const perMap = nPos + 1;
  const inc = scorerFor(predictor, opts.engine ?? 'auto');
  const group = Math.max(mapsPerGroup(opts, h, w, batchSize), inc.scorer?.mapsPerCall ?? 1);
  const nGroups = Math.ceil(n / group);

  const maps = new Float32Array(n * h * w);
  // float64: a confident classifier's summed probabilities differ past float32's 7 digits
  const raw: RawMaps = opts.normalize === 'none' ? maps : new Float64Array(n * h * w);
  const targets = new Int32Array(n);
  const baseProbs = new Float32Array(n * k);
  const fills = fillsOf(x, n, h, w, c, opts.fill);

  function* chunks(): Generator<Chunk> {
    for (let gi = 0; gi < nGroups; gi++) {
      const items = (Math.min(n, (gi + 1) * group) - gi * group) * perMap;
      for (let from = 0; from < items; from += batchSize) yield { group: gi, from, count: Math.min(batchSize, items - from) };
    }
  }

  // Item j of map i: j = 0 the unoccluded image, j >= 1 the patch at position j - 1.
  const build = (buf: Float32Array, ch: Chunk): Float32Array => {
    for (let t = 0; t < ch.count; t++) {
      const item = ch.from + t;
      const i = ch.group * group + Math.floor(item / perMap);
      const j = item % perMap;
      const img = x.subarray(i * px, (i + 1) * px);
      if (j === 0) buf.set(img, t * px);
      else occludeInto(buf, t * px, img, g, c, pos.ys[j - 1], pos.xs[j - 1], fills.subarray(i * c, (i + 1) * c));
    }
    return buf.subarray(0, ch.count * px);
  };

  const groupProbs = new Float32Array(group * perMap * k);
  let done = 0;
  let inferences = 0;
  const finishGroup = (gi: number): void => {
    const i0 = gi * group;
    const i1 = Math.min(n, i0 + group);
    const scores = new Float64Array(nPos);
    for (let i = i0; i < i1; i++) {
      const off = (i - i0) * perMap * k;
      baseProbs.set(groupProbs.subarray(off, off + k), i * k);
      const t = opts.target === 'predicted' ? argmax(groupProbs, off, k) : opts.target === 'label' ? opts.labels![i] : opts.target;
      targets[i] = t;
      classScores(groupProbs, off, k, t, nPos, opts.score, scores);
      const m = accumulate(g, scores, opts.aggregate, pos);
      if (raw !== maps) raw.set(m, i * h * w);
      maps.set(opts.normalize === 'seed' ? normalizeSeed(m) : m, i * h * w);
    }
    done += i1 - i0;
    onProgress?.({ stamps: done, inferences });
  };

  if (inc.scorer) {
    const scorer = inc.scorer;
    await scoreGroups(nGroups, (gi) => {
      const i0 = gi * group;
      const i1 = Math.min(n, i0 + group);
      return scorer.occlusionProbs(x.subarray(i0 * px, i1 * px), i1 - i0, g, fills.subarray(i0 * c, i1 * c), opts.approx);
    }, (gi, probs) => {
      groupProbs.set(probs);
      inferences += (Math.min(n, (gi + 1) * group) - gi * group) * perMap;
      finishGroup(gi);
    });
    return { maps, raw, targets, baseProbs, inferences, engine: 'incremental' };
  }

  const cap = Math.min(batchSize, group * perMap);
  const buffers = [new Float32Array(cap * px), new Float32Array(cap * px)];
  let pending: { chunk: Chunk; result: Promise<Float32Array> } | null = null;
  const collect = async (): Promise<void> => {
    if (!pending) return;
    const { chunk, result } = pending;
    pending = null;
    const probs = await result;
    if (probs.length !== chunk.count * k) {
      throw new Error(`predictor returned ${probs.length} values for ${chunk.count} images x ${k} classes`);
    }
    groupProbs.set(probs, chunk.from * k);
    inferences += chunk.count;
    const items = (Math.min(n, (chunk.group + 1) * group) - chunk.group * group) * perMap;
    if (chunk.from + chunk.count === items) finishGroup(chunk.group);
  };
  let b = 0;
  for (const ch of chunks()) {
    const batch = build(buffers[b], ch);
    b ^= 1;
    // The previous call must finish before its group buffer slot is reused; collecting it
    // after building this batch lets an engine with its own threads overlap the two.
    await collect();
    pending = { chunk: ch, result: predictor.predict(batch, ch.count) };
  }
  await collect();
  return { maps, raw, targets, baseProbs, inferences, engine: 'full', ...(inc.note ? { note: inc.note } : {}) };
}
