/**
 * Deletion / insertion curves (Petsiuk et al., RISE): remove (or insert) pixels in order of
 * a map's importance and follow the classifier's probability for the target class. A map
 * that ranks the truly important pixels first makes the deletion curve fall fast (low AUC)
 * and the insertion curve rise fast (high AUC). The ranking is what is compared, so the
 * estimated and the exact map are scored by the same classifier and baseline.
 */
import { aucUniform } from './maps.js';

export interface CurveOptions {
  /** Number of steps from 0 to all pixels (curve has steps + 1 points). */
  steps?: number;
  /** Value of removed pixels (deletion) and of the starting canvas (insertion). */
  baseline?: number;
}

/**
 * The images along a deletion or insertion path for one HxWxC image, all channels of a
 * pixel together. `order`: pixel indices (y*w+x), most important first.
 */
export function curveImages(
  image: Float32Array,
  hw: number,
  c: number,
  order: readonly number[],
  mode: 'deletion' | 'insertion',
  opts: CurveOptions = {},
): Float32Array {
  const steps = opts.steps ?? 20;
  const base = opts.baseline ?? 0;
  const out = new Float32Array((steps + 1) * hw * c);
  for (let s = 0; s <= steps; s++) {
    const k = Math.round((s / steps) * hw);
    const img = out.subarray(s * hw * c, (s + 1) * hw * c);
    if (mode === 'deletion') {
      img.set(image);
      for (let j = 0; j < k; j++) for (let ch = 0; ch < c; ch++) img[order[j] * c + ch] = base;
    } else {
      img.fill(base);
      for (let j = 0; j < k; j++) for (let ch = 0; ch < c; ch++) img[order[j] * c + ch] = image[order[j] * c + ch];
    }
  }
  return out;
}

/** Pixel order by importance (higher first); ties by index for determinism. */
export function importanceOrder(importance: ArrayLike<number>): number[] {
  return Array.from({ length: importance.length }, (_, i) => i).sort(
    (i, j) => importance[j] - importance[i] || i - j,
  );
}

export type ProbFn = (images: Float32Array, n: number) => Promise<Float32Array>;

/**
 * Deletion and insertion AUC of one map for one image. `importance`: per pixel, higher =
 * more important (for probability maps pass the negated map).
 */
export async function deletionInsertion(
  predict: ProbFn,
  numClasses: number,
  image: Float32Array,
  hw: number,
  c: number,
  importance: ArrayLike<number>,
  target: number,
  opts: CurveOptions = {},
): Promise<{ deletion: number; insertion: number; deletionCurve: number[]; insertionCurve: number[] }> {
  const steps = opts.steps ?? 20;
  const order = importanceOrder(importance);
  const del = curveImages(image, hw, c, order, 'deletion', opts);
  const ins = curveImages(image, hw, c, order, 'insertion', opts);
  const both = new Float32Array(del.length + ins.length);
  both.set(del);
  both.set(ins, del.length);
  const probs = await predict(both, 2 * (steps + 1));
  const curve = (offset: number) => Array.from({ length: steps + 1 }, (_, s) => probs[(offset + s) * numClasses + target]);
  const deletionCurve = curve(0);
  const insertionCurve = curve(steps + 1);
  return { deletion: aucUniform(deletionCurve), insertion: aucUniform(insertionCurve), deletionCurve, insertionCurve };
}
