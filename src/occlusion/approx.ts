/**
 * How far approximate maps (exactMaps' `approx`, Krypton's projective-field threshold) are
 * from exact ones: SSIM through the metrics registry (the numbers every client reports) and
 * the largest absolute difference.
 */
import { compareMaps, type MapNormalize, type MapScore } from '../metrics/compare.js';

export interface ApproximationError {
  /** Maps compared. */
  maps: number;
  /** Mean SSIM over the maps (seed units, see metrics/compare.ts). */
  ssim: number;
  /** Largest |approximate - exact| over all pixels, in the maps' own units. */
  maxAbsError: number;
}

export function approximationError(
  approx: Float32Array | Float64Array,
  exact: Float32Array | Float64Array,
  shape: readonly [number, number, number],
  score: MapScore,
  normalize: MapNormalize,
): ApproximationError {
  const [n, h, w] = shape;
  const size = n * h * w;
  if (approx.length < size || exact.length < size) throw new RangeError(`approximationError: ${size} values needed`);
  let maxAbsError = 0;
  for (let i = 0; i < size; i++) maxAbsError = Math.max(maxAbsError, Math.abs(approx[i] - exact[i]));
  const c = compareMaps(
    { data: approx.subarray(0, size), shape: [n, h, w], score, normalize },
    { data: exact.subarray(0, size), shape: [n, h, w], score, normalize },
  );
  return { maps: n, ssim: c.mean.ssim, maxAbsError };
}
