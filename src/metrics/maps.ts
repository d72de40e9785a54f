/**
 * How close an estimated map is to the exact one. Small pure functions over flat
 * row-major arrays, each unit-tested on hand-computed cases (test/metrics.test.ts).
 */

function assertSameLength(a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  if (a.length === 0) throw new Error('empty maps');
}

export function mse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertSameLength(a, b);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s / a.length;
}

export function mae(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertSameLength(a, b);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

/** Pearson correlation; 0 when either map is constant (no linear relation can be measured). */
export function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertSameLength(a, b);
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i];
    mb += b[i];
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i] - ma;
    const db = b[i] - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  if (saa === 0 || sbb === 0) return 0;
  return sab / Math.sqrt(saa * sbb);
}

/** Ranks 1..n with ties given their average rank (as scipy.stats.rankdata 'average'). */
export function ranks(a: ArrayLike<number>): Float64Array {
  const n = a.length;
  const idx = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[i] - a[j]);
  const r = new Float64Array(n);
  let i = 0;
  while (i < n) {
    let j = i;
    while (j + 1 < n && a[idx[j + 1]] === a[idx[i]]) j++;
    const avg = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}

/** Spearman rank correlation = Pearson correlation of average ranks. */
export function spearman(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertSameLength(a, b);
  return pearson(ranks(a), ranks(b));
}

export interface SsimOptions {
  /** Side of the square uniform window (odd). scikit-image's default is 7. */
  win?: number;
  /** Value range of the maps; seed-normalised maps lie in [0, 1]. */
  dataRange?: number;
  k1?: number;
  k2?: number;
}

/**
 * Mean structural similarity, computed as scikit-image's `structural_similarity` does by
 * default (uniform 7x7 window, sample covariance, mean over windows fully inside the map),
 * so figures compare with Python references.
 */
export function ssim(a: ArrayLike<number>, b: ArrayLike<number>, h: number, w: number, opts: SsimOptions = {}): number {
  assertSameLength(a, b);
  if (a.length !== h * w) throw new Error(`maps hold ${a.length} values, expected ${h}x${w}`);
  const win = opts.win ?? 7;
  const L = opts.dataRange ?? 1;
  const c1 = ((opts.k1 ?? 0.01) * L) ** 2;
  const c2 = ((opts.k2 ?? 0.03) * L) ** 2;
  if (win > h || win > w) throw new Error(`SSIM window ${win} larger than the map ${h}x${w}`);
  const np = win * win;
  const cov = np / (np - 1);
  let total = 0;
  let count = 0;
  for (let y = 0; y + win <= h; y++) {
    for (let x = 0; x + win <= w; x++) {
      let sa = 0;
      let sb = 0;
      let saa = 0;
      let sbb = 0;
      let sab = 0;
      for (let dy = 0; dy < win; dy++) {
        const row = (y + dy) * w + x;
        for (let dx = 0; dx < win; dx++) {
          const va = a[row + dx];
          const vb = b[row + dx];
          sa += va;
          sb += vb;
          saa += va * va;
          sbb += vb * vb;
          sab += va * vb;
        }
      }
      const ua = sa / np;
      const ub = sb / np;
      const vaa = cov * (saa / np - ua * ua);
      const vbb = cov * (sbb / np - ub * ub);
      const vab = cov * (sab / np - ua * ub);
      total += ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua * ua + ub * ub + c1) * (vaa + vbb + c2));
      count++;
    }
  }
  return total / count;
}

/**
 * Indices of the `fraction` most important pixels. `importance` is higher = more important;
 * ties break by index so the set is deterministic.
 */
export function topIndices(importance: ArrayLike<number>, fraction: number): number[] {
  const n = importance.length;
  const k = Math.max(1, Math.round(n * fraction));
  return Array.from({ length: n }, (_, i) => i)
    .sort((i, j) => importance[j] - importance[i] || i - j)
    .slice(0, k);
}

/**
 * Intersection over union of the most important `fraction` of pixels of two maps.
 * With probability maps (score prob) the important pixels are the LOWEST values: pass
 * `lowest = true`.
 */
export function topKIoU(a: ArrayLike<number>, b: ArrayLike<number>, fraction = 0.1, lowest = false): number {
  assertSameLength(a, b);
  const sign = lowest ? -1 : 1;
  const ia = new Set(topIndices(Array.from(a, (v) => sign * v), fraction));
  const ib = topIndices(Array.from(b, (v) => sign * v), fraction);
  let inter = 0;
  for (const i of ib) if (ia.has(i)) inter++;
  return inter / (ia.size + ib.length - inter);
}

/** Trapezoid area under y sampled at evenly spaced x in [0, 1]. */
export function aucUniform(y: ArrayLike<number>): number {
  if (y.length < 2) throw new Error('need at least 2 points for an AUC');
  let s = 0;
  for (let i = 1; i < y.length; i++) s += (y[i - 1] + y[i]) / 2;
  return s / (y.length - 1);
}

export interface Summary {
  mean: number;
  std: number;
  n: number;
}

/** Mean and (population) standard deviation, ignoring NaN entries. */
export function summarize(values: ArrayLike<number>): Summary {
  const v = Array.from(values).filter((x) => Number.isFinite(x));
  const n = v.length;
  if (n === 0) return { mean: NaN, std: NaN, n: 0 };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / n);
  return { mean, std, n };
}
