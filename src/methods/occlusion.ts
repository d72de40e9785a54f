/**
 * Exact occlusion as an attribution method: `new Occlusion(model, options)`, then
 * `attribute(images, { target })`. A thin, checked front of the one exact engine
 * (occlusion/exact.ts), which batches every perturbed image.
 *
 * Presets:
 *   - 'seed' (default, as the CLI): patch 3, stride 1, pad 3, fill 0, score 'prob' (low =
 *     important), overlapping positions summed, seed normalisation.
 *   - 'captum': Captum's Occlusion with baseline 0 — score 'drop' (p(x) - p(x occluded):
 *     positive = important), aggregate 'mean' (the mean over the windows covering a pixel),
 *     normalize 'none', pad 0 (windows start at the image's corner). Its maps equal Captum's
 *     `Occlusion(f).attribute(x, sliding_window_shapes=(C, ph, pw), strides=(1, s, s),
 *     baselines=0, target=t)` for a forward f that returns probabilities, whenever the stride
 *     divides (size - patch) on both axes (always with stride 1). Otherwise Captum adds a last
 *     window cut off at the border, which occmap's geometry has not: refused with a message.
 * Options given next to a preset override it.
 */
import type { ImagesInput } from '../data/images.js';
import { toImageBatch } from '../data/images.js';
import type { Predictor } from '../models/predictor.js';
import { DEFAULT_BATCH_SIZE, exactMaps, inferencesPerMap, SEED_PARAMS, type OcclusionParams } from '../occlusion/exact.js';
import { geometryProblem } from '../occlusion/geometry.js';
import { UserError } from '../util/errors.js';
import { fixedTargets, type Attribution, type AttributeOptions, type AttributionMethod } from './attribution.js';

export type OcclusionPreset = 'seed' | 'captum';
export type OcclusionSettings = Omit<OcclusionParams, 'target'>;

export const OCCLUSION_PRESETS: Record<OcclusionPreset, OcclusionSettings> = {
  seed: { patch: SEED_PARAMS.patch, stride: SEED_PARAMS.stride, pad: SEED_PARAMS.pad, fill: SEED_PARAMS.fill, score: SEED_PARAMS.score, aggregate: SEED_PARAMS.aggregate, normalize: SEED_PARAMS.normalize },
  captum: { patch: [3, 3], stride: 1, pad: 0, fill: 0, score: 'drop', aggregate: 'mean', normalize: 'none' },
};

export interface OcclusionOptions {
  preset?: OcclusionPreset;
  /** Side, or [height, width]. */
  patch?: number | readonly [number, number];
  stride?: number;
  /** Zero padding around the image inside which the patch slides (the map is cropped back). */
  pad?: number;
  /** The occluding value for every model channel, or 'mean': each image's own channel means. */
  fill?: number | 'mean';
  score?: OcclusionParams['score'];
  aggregate?: OcclusionParams['aggregate'];
  normalize?: OcclusionParams['normalize'];
  /** Images per model call (occluded images plus the originals). */
  batchSize?: number;
}

const choice = <T extends string>(name: string, v: unknown, allowed: readonly T[]): T => {
  if (!allowed.includes(v as T)) throw new UserError(`Occlusion: ${name} must be ${allowed.map((a) => `'${a}'`).join(' or ')}, got ${JSON.stringify(v)}`);
  return v as T;
};

const integer = (name: string, v: unknown, min: number): number => {
  if (!(typeof v === 'number' && Number.isInteger(v) && v >= min)) throw new UserError(`Occlusion: ${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return v;
};

/** Options -> checked settings; every error names the option and the value. */
export function occlusionSettings(o: OcclusionOptions = {}): { settings: OcclusionSettings; preset: OcclusionPreset; batchSize: number } {
  const preset = choice('preset', o.preset ?? 'seed', ['seed', 'captum'] as const);
  const base = OCCLUSION_PRESETS[preset];
  const p = o.patch ?? base.patch;
  const patch: [number, number] = typeof p === 'number' ? [p, p] : Array.isArray(p) && p.length === 2 ? [p[0], p[1]] : [NaN, NaN];
  if (!patch.every((v) => Number.isInteger(v) && v >= 1)) throw new UserError(`Occlusion: patch must be a positive integer or [height, width], got ${JSON.stringify(p)}`);
  const fill = o.fill ?? base.fill;
  if (!(fill === 'mean' || (typeof fill === 'number' && Number.isFinite(fill)))) throw new UserError(`Occlusion: fill must be a finite number or 'mean', got ${JSON.stringify(fill)}`);
  const settings: OcclusionSettings = {
    patch,
    stride: integer('stride', o.stride ?? base.stride, 1),
    pad: integer('pad', o.pad ?? base.pad, 0),
    fill,
    score: choice('score', o.score ?? base.score, ['prob', 'drop'] as const),
    aggregate: choice('aggregate', o.aggregate ?? base.aggregate, ['sum', 'mean'] as const),
    normalize: choice('normalize', o.normalize ?? base.normalize, ['none', 'seed'] as const),
  };
  return { settings, preset, batchSize: integer('batchSize', o.batchSize ?? DEFAULT_BATCH_SIZE, 1) };
}

/**
 * Why Captum's windows would differ from occmap's for an h x w image, or null. Captum slides
 * from the corner with ceil((size - patch) / stride) + 1 windows per axis, the last one cut off
 * at the border when the stride does not divide (size - patch).
 */
export function captumMismatch(s: OcclusionSettings, h: number, w: number): string | null {
  if (s.pad !== 0) return `pad ${s.pad}: Captum's windows never leave the image (use pad 0)`;
  for (const [axis, size, k] of [['height', h, s.patch[0]], ['width', w, s.patch[1]]] as const) {
    if ((size - k) % s.stride !== 0) {
      return `stride ${s.stride} does not divide the image ${axis} ${size} minus the patch ${k}: Captum would add a last window cut off at the border, which occmap's geometry has not; use a stride that divides ${size - k}`;
    }
  }
  return null;
}

export class Occlusion implements AttributionMethod {
  readonly name = 'occlusion';
  readonly params: OcclusionSettings;
  readonly preset: OcclusionPreset;
  private readonly batchSize: number;

  constructor(
    readonly model: Predictor,
    options: OcclusionOptions = {},
  ) {
    if (!model || typeof model.predict !== 'function') throw new UserError('Occlusion: the model must be a Predictor (see loadModel)');
    const { settings, preset, batchSize } = occlusionSettings(options);
    this.params = settings;
    this.preset = preset;
    this.batchSize = batchSize;
  }

  /** Classifier inferences one map of an h x w image costs (every position + the original). */
  inferencesPerMap(h: number, w: number): number {
    return inferencesPerMap({ ...this.params, target: 'predicted' }, h, w);
  }

  async attribute(images: ImagesInput, opts: AttributeOptions = {}): Promise<Attribution> {
    const batch = toImageBatch(images);
    const [n, h, w] = batch.shape;
    const g = { h, w, ph: this.params.patch[0], pw: this.params.patch[1], stride: this.params.stride, pad: this.params.pad };
    if (this.preset === 'captum') {
      const why = captumMismatch(this.params, h, w);
      if (why) throw new UserError(`Occlusion (captum preset): ${why}`);
    }
    const problem = geometryProblem(g);
    if (problem) throw new UserError(`Occlusion: ${problem}`);
    const fixed = fixedTargets(opts.target ?? 'predicted', n, this.model.numClasses);
    const r = await exactMaps(
      this.model,
      batch.data,
      batch.shape,
      { ...this.params, target: fixed === 'predicted' ? 'predicted' : 'label', labels: fixed === 'predicted' ? undefined : fixed, batchSize: this.batchSize },
      opts.onProgress ? (p) => opts.onProgress!(p.stamps, n) : undefined,
    );
    return {
      data: r.maps,
      shape: [n, h, w],
      score: this.params.score,
      normalize: this.params.normalize,
      targets: r.targets,
      probabilities: r.baseProbs,
      numClasses: this.model.numClasses,
      method: this.name,
    };
  }
}
