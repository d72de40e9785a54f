/**
 * Occlusion geometry, pure: where the patch goes, what it hides, and how the per-position
 * scores become a map. No model, no I/O: every engine (tfjs, ONNX, incremental) shares these.
 *
 * Coordinates: positions are top-left corners on the image zero-padded by `pad` on each side
 * (Hp = H + 2 pad, Wp = W + 2 pad); the patch is placed wherever it fits inside that padded
 * image, stepping by `stride`, row-major. The map is accumulated on the padded grid and
 * cropped back to H x W, as the seed did (27x27 accumulator, crop [3:24, 3:24]).
 */

export interface Geometry {
  /** Image height and width (the map's size). */
  h: number;
  w: number;
  /** Patch height and width. */
  ph: number;
  pw: number;
  stride: number;
  pad: number;
}

export type Aggregate = 'sum' | 'mean';

/** `"3"` -> [3, 3]; `"3x5"` -> [3, 5] (height x width). Null when malformed. */
export function parsePatch(text: string): [number, number] | null {
  const m = /^\s*(\d+)\s*(?:[xX*]\s*(\d+))?\s*$/.exec(text);
  if (!m) return null;
  const ph = Number(m[1]);
  const pw = m[2] === undefined ? ph : Number(m[2]);
  if (ph < 1 || pw < 1) return null;
  return [ph, pw];
}

/** Number of patch offsets along one axis of length `size` padded by `pad`. */
export function axisPositions(size: number, patch: number, stride: number, pad: number): number {
  const span = size + 2 * pad - patch;
  return span < 0 ? 0 : Math.floor(span / stride) + 1;
}

export interface Positions {
  ny: number;
  nx: number;
  /** Top-left corners on the padded grid, row-major, length ny * nx. */
  ys: Int32Array;
  xs: Int32Array;
}

export function positions(g: Geometry): Positions {
  const ny = axisPositions(g.h, g.ph, g.stride, g.pad);
  const nx = axisPositions(g.w, g.pw, g.stride, g.pad);
  const ys = new Int32Array(ny * nx);
  const xs = new Int32Array(ny * nx);
  for (let i = 0; i < ny; i++) {
    for (let j = 0; j < nx; j++) {
      ys[i * nx + j] = i * g.stride;
      xs[i * nx + j] = j * g.stride;
    }
  }
  return { ny, nx, ys, xs };
}

/** Why a geometry cannot produce a map, or null when it can. */
export function geometryProblem(g: Geometry): string | null {
  for (const [k, v] of Object.entries({ patch: Math.min(g.ph, g.pw), stride: g.stride })) {
    if (!Number.isInteger(v) || v < 1) return `${k} must be a positive integer`;
  }
  if (!Number.isInteger(g.pad) || g.pad < 0) return 'pad must be a non-negative integer';
  const p = positions(g);
  if (p.ys.length === 0) {
    return `patch ${g.ph}x${g.pw} does not fit in the ${g.h}x${g.w} image padded by ${g.pad}`;
  }
  const cov = coverage(g, p);
  let uncovered = 0;
  for (let i = 0; i < cov.length; i++) if (cov[i] === 0) uncovered++;
  // A pixel no position touches would get an arbitrary value (0, or 0/0 for mean).
  if (uncovered > 0) {
    return `${uncovered} image pixel(s) are covered by no patch position (stride ${g.stride} > patch, or the last positions stop short); use a smaller stride or more padding`;
  }
  return null;
}

/** Add `value` over the patch at (y, x) of a padded-grid accumulator (row length wp). */
function addPatch(acc: Float64Array, wp: number, y: number, x: number, ph: number, pw: number, value: number): void {
  for (let r = y; r < y + ph; r++) {
    const row = r * wp;
    for (let c = x; c < x + pw; c++) acc[row + c] += value;
  }
}

/** Crop the H x W window at (pad, pad) out of an Hp x Wp grid. */
export function cropPadded(padded: ArrayLike<number>, wp: number, pad: number, h: number, w: number): Float64Array {
  const out = new Float64Array(h * w);
  for (let r = 0; r < h; r++) {
    const src = (r + pad) * wp + pad;
    for (let c = 0; c < w; c++) out[r * w + c] = padded[src + c];
  }
  return out;
}

/** Per image pixel: how many patch positions cover it. */
export function coverage(g: Geometry, p: Positions = positions(g)): Float64Array {
  const hp = g.h + 2 * g.pad;
  const wp = g.w + 2 * g.pad;
  const acc = new Float64Array(hp * wp);
  for (let k = 0; k < p.ys.length; k++) addPatch(acc, wp, p.ys[k], p.xs[k], g.ph, g.pw, 1);
  return cropPadded(acc, wp, g.pad, g.h, g.w);
}

/**
 * The map from one score per position: each position adds its score to every pixel its patch
 * covers (on the padded grid), cropped to the image. `mean` divides by the number of
 * covering positions, so the map is in the scores' own units.
 */
export function accumulate(
  g: Geometry,
  scores: ArrayLike<number>,
  aggregate: Aggregate = 'sum',
  p: Positions = positions(g),
): Float64Array {
  if (scores.length !== p.ys.length) throw new Error(`expected ${p.ys.length} scores, got ${scores.length}`);
  const hp = g.h + 2 * g.pad;
  const wp = g.w + 2 * g.pad;
  const acc = new Float64Array(hp * wp);
  for (let k = 0; k < p.ys.length; k++) addPatch(acc, wp, p.ys[k], p.xs[k], g.ph, g.pw, scores[k]);
  const map = cropPadded(acc, wp, g.pad, g.h, g.w);
  if (aggregate === 'mean') {
    const cov = coverage(g, p);
    for (let i = 0; i < map.length; i++) map[i] = cov[i] > 0 ? map[i] / cov[i] : 0;
  }
  return map;
}

/**
 * The seed's per-map normalisation: z-score with the map's own mean and (population) std,
 * clip to [-1, 1], then (x + 1) / 2. A constant map carries no ranking: all 0.5.
 */
export function normalizeSeed(map: ArrayLike<number>): Float64Array {
  const out = seedUnitsUnclipped(map);
  for (let i = 0; i < out.length; i++) out[i] = Math.max(0, Math.min(1, out[i]));
  return out;
}

/**
 * (z + 1) / 2 of the map's z-score (own mean, population std) without the clip: the seed's
 * units, where [0, 1] is what normalizeSeed keeps and values beyond it are the ranking the
 * clip flattens (below 0: more important than the seed map can say). Constant map: all 0.5.
 */
export function seedUnitsUnclipped(map: ArrayLike<number>): Float64Array {
  const n = map.length;
  const out = new Float64Array(n);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += map[i];
  mean /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (map[i] - mean) ** 2;
  const std = Math.sqrt(v / n);
  for (let i = 0; i < n; i++) out[i] = ((std > 0 ? (map[i] - mean) / std : 0) + 1) / 2;
  return out;
}

/** The number of positions covering every image pixel when that number is the same for all, else null. */
export function uniformCoverage(g: Geometry): number | null {
  const cov = coverage(g);
  for (let i = 1; i < cov.length; i++) if (cov[i] !== cov[0]) return null;
  return cov.length > 0 && cov[0] > 0 ? cov[0] : null;
}

/**
 * Log-rest units of a raw map (aggregate 'sum' of the class probability over the `cover`
 * positions covering each pixel, the same for every pixel): log(cover - raw), centred on the
 * map's mean. cover - raw is the summed probability the patches took away, so the most
 * important pixels are the largest values. Why: a confident classifier's raw map differs from
 * `cover` by 1e-12 .. 1e-3, and the seed's z-score of it puts most pixels of such a map at
 * the same value within float32; in log units every order of magnitude gets the same room.
 * The floor cover * 2^-48 (about float64's resolution at cover) stands for differences that
 * rounded to 0. seedFromLogRest inverts this (any additive constant) to the seed's units.
 */
export function logRestUnits(raw: ArrayLike<number>, cover: number): Float64Array {
  const n = raw.length;
  const floor = cover * 2 ** -48;
  const out = new Float64Array(n);
  let mean = 0;
  for (let i = 0; i < n; i++) {
    out[i] = Math.log(Math.max(cover - raw[i], floor));
    mean += out[i];
  }
  mean /= n;
  for (let i = 0; i < n; i++) out[i] -= mean;
  return out;
}

/**
 * The seed-normalised map of a map in log-rest units: with uniform coverage c, raw = c - s e^t
 * for some scale s, and the z-score of raw is minus the z-score of e^t whatever c and s are,
 * so the seed map is clip((1 - z(e^t)) / 2, 0, 1). exp(t - max t) keeps e^t in range. The
 * saved explainer's last layer (models/map-head.ts) computes exactly this.
 */
export function seedFromLogRest(t: ArrayLike<number>): Float64Array {
  const n = t.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, t[i]);
  const e = new Float64Array(n);
  for (let i = 0; i < n; i++) e[i] = Math.exp(t[i] - max);
  const z = seedUnitsUnclipped(e);
  // seedUnitsUnclipped gives (z + 1) / 2; the seed map of raw is (1 - z) / 2 = 1 - that
  for (let i = 0; i < n; i++) z[i] = Math.max(0, Math.min(1, 1 - z[i]));
  return z;
}

/** Per-channel mean of one H x W x C image (HWC): the `--fill mean` value. */
export function channelMeans(image: ArrayLike<number>, h: number, w: number, c: number): Float32Array {
  const sums = new Float64Array(c);
  const px = h * w;
  for (let p = 0; p < px; p++) for (let k = 0; k < c; k++) sums[k] += image[p * c + k];
  const out = new Float32Array(c);
  for (let k = 0; k < c; k++) out[k] = sums[k] / px;
  return out;
}

/**
 * Write into `dst` (at element `offset`) the image with the patch at padded position (y, x)
 * set to `fill` (one value per channel). The classifier pads internally, so only the part of
 * the patch inside the image is written: the part over the padding has no effect. With fill 0
 * this equals the seed (which occluded its zero-padded 27x27 input); with another fill the
 * seed would also have painted the padding.
 */
export function occludeInto(
  dst: Float32Array,
  offset: number,
  image: Float32Array,
  g: Geometry,
  c: number,
  y: number,
  x: number,
  fill: ArrayLike<number>,
): void {
  dst.set(image, offset);
  const r0 = Math.max(0, y - g.pad);
  const r1 = Math.min(g.h, y - g.pad + g.ph);
  const c0 = Math.max(0, x - g.pad);
  const c1 = Math.min(g.w, x - g.pad + g.pw);
  for (let r = r0; r < r1; r++) {
    for (let col = c0; col < c1; col++) {
      const base = offset + (r * g.w + col) * c;
      for (let k = 0; k < c; k++) dst[base + k] = fill[k];
    }
  }
}
