/**
 * The per-position scores of one map from the probabilities of its images (pure).
 *
 * Near 1 a float32 probability moves in steps of 6e-8, so the map of a confidently classified
 * stamp read straight from p_t is flat or rounding noise (on the HiTS 2015 maps, 15% of the
 * non-supernova maps held out were exactly flat). The other classes' probabilities hold the
 * lost digits: a softmax writes small probabilities with full relative precision. So when the
 * unoccluded image gives p_t > 0.5, every score of that map is computed from the rest,
 * p_t = 1 - sum_{j != t} p_j, in float64; below 0.5, p_t itself is the precise one. One choice
 * per map, so the scores of one map never mix the two roundings. This assumes each row sums
 * to 1 (a softmax, or one sigmoid unit expanded to [1 - p, p]), which the predictor checks.
 */
import type { Score } from './exact.js';

/**
 * probs: (1 + nPos) x k rows from `off`, row 0 the unoccluded image, row 1 + j the patch at
 * position j. Writes nPos scores of class t into `out`: 'prob' the class probability with the
 * patch, 'drop' the unoccluded minus the occluded one.
 */
export function classScores(probs: ArrayLike<number>, off: number, k: number, t: number, nPos: number, score: Score, out: Float64Array): Float64Array {
  const viaRest = k > 1 && probs[off + t] > 0.5;
  const p = (row: number): number => {
    const o = off + row * k;
    if (!viaRest) return probs[o + t];
    let rest = 0;
    for (let j = 0; j < k; j++) if (j !== t) rest += probs[o + j];
    return 1 - rest;
  };
  const base = p(0);
  for (let j = 0; j < nPos; j++) out[j] = score === 'drop' ? base - p(j + 1) : p(j + 1);
  return out;
}
