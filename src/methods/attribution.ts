/**
 * The one call shape of every explanation method (Captum style): exact occlusion, the
 * trained explainer and the baselines all take images and a target and return maps of one
 * shape, `{ data, shape: [N,H,W] }`, plus what the method knows (targets, probabilities,
 * per-pixel std of an ensemble).
 *
 * Sign convention. Every result says which end of its maps is important:
 *   - score 'drop': value = p(target | image) - p(target | image with the patch): POSITIVE =
 *     IMPORTANT (hiding the region lowers the target's probability); negative = hiding it
 *     raises the probability (evidence against the target). Captum's Occlusion convention.
 *   - score 'prob' (the seed's maps): value = p(target | image with the patch): LOW = important.
 * `normalize: 'seed'` maps are z-scored per map, clipped to [-1, 1] and mapped to [0, 1]
 * (orientation unchanged); 'none' keeps the units of the score.
 */
import { argmaxRows, selectChannels, type Predictor } from '../models/predictor.js';
import { toImageBatch, type ImageBatch, type ImagesInput } from '../data/images.js';
import type { MapNormalize, MapScore } from '../metrics/compare.js';
import { UserError } from '../util/errors.js';

/** Which class each map explains: the model's prediction, one class for all, or one per image. */
export type TargetSpec = 'predicted' | number | ArrayLike<number>;

export interface AttributeOptions {
  /** Default 'predicted' (needs the classifier for methods that do not run one anyway). */
  target?: TargetSpec;
  /** Called as maps finish: (maps done, maps in this call). */
  onProgress?: (done: number, total: number) => void;
}

export interface Attribution {
  /** N maps, row-major. */
  data: Float32Array;
  shape: [number, number, number];
  /** Which end of the maps is important (see the sign convention above). */
  score: MapScore;
  normalize: MapNormalize;
  /** The class each map explains, when known. */
  targets?: Int32Array;
  /** (N, numClasses) class probabilities of the unoccluded images, when a classifier ran. */
  probabilities?: Float32Array;
  numClasses?: number;
  /** Per-pixel standard deviation over ensemble members (the trained explainer). */
  std?: Float32Array;
  /** N*H*W importances (higher = more important) when the map's own order is not the ranking. */
  importance?: Float32Array;
  /** 'occlusion', 'explainer', 'meanMap', 'snrSaliency'. */
  method: string;
}

export interface AttributionMethod {
  readonly name: string;
  attribute(images: ImagesInput, opts?: AttributeOptions): Promise<Attribution>;
}

/** Per-image targets from a spec, or 'predicted' when they come from the classifier. */
export function fixedTargets(spec: TargetSpec, n: number, numClasses?: number): Int32Array | 'predicted' {
  if (spec === 'predicted') return 'predicted';
  const check = (t: number, where: string): number => {
    if (!(Number.isInteger(t) && t >= 0)) throw new UserError(`target${where} must be a class index (a non-negative integer), got ${t}`);
    if (numClasses !== undefined && t >= numClasses) throw new UserError(`target${where} ${t} is not a class of the ${numClasses}-class model`);
    return t;
  };
  if (typeof spec === 'number') return new Int32Array(n).fill(check(spec, ''));
  if (typeof spec !== 'object' || spec === null || typeof spec.length !== 'number') {
    throw new UserError(`target must be 'predicted', a class index or one class per image, got ${JSON.stringify(spec)}`);
  }
  if (spec.length !== n) throw new UserError(`target lists ${spec.length} classes for ${n} image(s)`);
  return Int32Array.from({ length: n }, (_, i) => check(spec[i], `[${i}]`));
}

/** Class probabilities of a batch (the model's channels picked from the data's), in chunks. */
export async function predictBatch(model: Predictor, batch: ImageBatch, chunk = 1024): Promise<Float32Array> {
  const [n, h, w, c] = batch.shape;
  const x = selectChannels(batch.data, n, h, w, c, model.channels);
  const cm = model.inputShape[2];
  const k = model.numClasses;
  const out = new Float32Array(n * k);
  for (let s = 0; s < n; s += chunk) {
    const e = Math.min(n, s + chunk);
    out.set(await model.predict(x.subarray(s * h * w * cm, e * h * w * cm), e - s), s * k);
  }
  return out;
}

/**
 * Targets and probabilities for a method that does not run the classifier itself: fixed
 * targets as given, 'predicted' from `model`; no targets when 'predicted' and no model.
 */
export async function targetsFor(
  batch: ImageBatch,
  spec: TargetSpec,
  model: Predictor | undefined,
): Promise<{ targets?: Int32Array; probabilities?: Float32Array; numClasses?: number }> {
  const n = batch.shape[0];
  const fixed = fixedTargets(spec, n, model?.numClasses);
  if (!model) return fixed === 'predicted' ? {} : { targets: fixed };
  const probabilities = await predictBatch(model, batch);
  const targets = fixed === 'predicted' ? argmaxRows(probabilities, n, model.numClasses) : fixed;
  return { targets, probabilities, numClasses: model.numClasses };
}

export { toImageBatch };
