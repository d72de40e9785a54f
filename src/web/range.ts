/**
 * Is an uploaded stamp like the training data? Pure: compares each channel's values with the
 * training data's range for that channel, so the page can warn before anyone trusts a map of a
 * stamp the classifier and explainer never saw the like of (raw counts instead of [0,1], say).
 */
import type { ChannelRange } from './manifest.js';

export interface RangeCheck {
  /** One line per channel outside the training range. */
  warnings: string[];
}

/**
 * `image`: h*w*c HWC; `dataChannels`: the training data channel each of the stamp's c channels
 * is (all of them for a full stamp, the classifier's for a model-channel stamp). A channel is
 * out of range when some value lies beyond the training min/max by more than `tolerance` of the
 * training span, or more than 1% of its pixels lie outside the 0.1-99.9 percentile range.
 */
export function checkRange(image: ArrayLike<number>, c: number, dataChannels: readonly number[], ranges: readonly ChannelRange[], tolerance = 0.05): RangeCheck {
  const warnings: string[] = [];
  const px = image.length / c;
  for (let k = 0; k < c; k++) {
    const r = ranges[dataChannels[k]];
    if (!r) continue;
    let lo = Infinity;
    let hi = -Infinity;
    let outside = 0;
    for (let p = 0; p < px; p++) {
      const v = image[p * c + k];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
      if (v < r.p001 || v > r.p999) outside++;
    }
    const span = Math.max(r.max - r.min, 1e-12);
    const beyond = lo < r.min - tolerance * span || hi > r.max + tolerance * span;
    const share = outside / px;
    if (beyond || share > 0.01) {
      const f = (v: number): string => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(3));
      const why = beyond ? `values ${f(lo)} … ${f(hi)}, training data ${f(r.min)} … ${f(r.max)}` : `${(100 * share).toFixed(0)}% of pixels outside the training data's 0.1–99.9 percentiles (${f(r.p001)} … ${f(r.p999)})`;
      warnings.push(`${r.name}: ${why}`);
    }
  }
  return { warnings };
}
