/**
 * Estimate-vs-exact map metrics as one registry (Xplique style): each metric is a small pure
 * function of the two maps, and `compareMap` / `compareMaps` loop over the registry. `evaluate`,
 * `explain --exact`, the server and library users all call these, so the same two maps get the
 * same numbers everywhere.
 *
 * Units. The value metrics (MSE, MAE, SSIM, Pearson, Spearman) compare maps in the seed's units
 * (z-score per map, clipped to [-1, 1], mapped to [0, 1]): a map made with `normalize: 'seed'`
 * is used as it is (re-normalising would hide a scale error of an estimate trained to output
 * those units); any other map is seed-normalised here, each map on its own. The ranking metric
 * (top-fraction IoU) compares importance orderings (higher = more important): -map for
 * probability maps (score 'prob': low = important), +map for drop maps (score 'drop').
 */
import { normalizeSeed } from '../occlusion/geometry.js';
import { UserError } from '../util/errors.js';
import { mae, mse, pearson, spearman, ssim, summarize, topIndices, topKIoU } from './maps.js';

/** One map of a pair, as the metrics see it. */
export interface MetricMap {
  /** h*w values, row-major, in the units both maps of the pair share (seed units). */
  values: ArrayLike<number>;
  /** h*w importances: higher = more important (the ranking metrics). */
  importance: ArrayLike<number>;
  h: number;
  w: number;
}

export interface MetricParams {
  /** Top fraction of pixels the IoU compares (default 0.1). */
  fraction: number;
}

/** A metric: pure, (estimate, exact) -> number. NaN when undefined for these maps. */
export type MapMetric = (estimate: MetricMap, exact: MetricMap, params: MetricParams) => number;

export interface MetricInfo {
  fn: MapMetric;
  /** Which way is better. */
  better: 'lower' | 'higher';
  description: string;
}

/**
 * SSIM window for an h x w map: scikit-image's 7x7, or the largest odd window that fits a
 * smaller map; 0 when not even 3x3 fits (SSIM is then undefined: NaN). One definition for
 * every client, so small maps get the same SSIM everywhere.
 */
export function ssimWindow(h: number, w: number): number {
  const m = Math.min(7, h, w);
  const win = m % 2 === 1 ? m : m - 1;
  return win >= 3 ? win : 0;
}

/**
 * Spearman correlation of two importance maps restricted to the exact map's top `fraction`
 * pixels: does the estimate order the pixels that matter most the way the exact map does?
 * NaN when the fraction holds fewer than 3 pixels; 0 when either side is constant there (e.g. an estimate clipped flat at the seed's 0): it
 * then tells nothing about that order.
 */
export function spearmanOnTop(estimate: ArrayLike<number>, exact: ArrayLike<number>, fraction: number): number {
  const top = topIndices(exact, fraction);
  if (top.length < 3) return NaN;
  return spearman(top.map((i) => estimate[i]), top.map((i) => exact[i]));
}

export const METRICS = {
  mse: { fn: (e, x) => mse(e.values, x.values), better: 'lower', description: 'mean squared error (seed units)' },
  mae: { fn: (e, x) => mae(e.values, x.values), better: 'lower', description: 'mean absolute error (seed units)' },
  ssim: {
    fn: (e, x) => {
      const win = ssimWindow(e.h, e.w);
      return win ? ssim(e.values, x.values, e.h, e.w, { win, dataRange: 1 }) : NaN;
    },
    better: 'higher',
    description: 'structural similarity (uniform window: 7x7, smaller odd for small maps; data range 1)',
  },
  pearson: { fn: (e, x) => pearson(e.values, x.values), better: 'higher', description: 'Pearson correlation' },
  spearman: { fn: (e, x) => spearman(e.values, x.values), better: 'higher', description: 'Spearman rank correlation' },
  spearmanTop: {
    fn: (e, x, p) => spearmanOnTop(e.importance, x.importance, p.fraction),
    better: 'higher',
    description: "Spearman rank correlation of the importances on the exact map's most important fraction (default 10%) of pixels",
  },
  iou: {
    fn: (e, x, p) => topKIoU(e.importance, x.importance, p.fraction),
    better: 'higher',
    description: 'IoU of the top fraction (default 10%) most important pixels',
  },
} as const satisfies Record<string, MetricInfo>;

export type MetricName = keyof typeof METRICS;
export const METRIC_NAMES = Object.keys(METRICS) as MetricName[];
export type MapComparison = Record<MetricName, number>;

/** Every registered metric of one pair of maps. */
export function compareMap(estimate: MetricMap, exact: MetricMap, params: Partial<MetricParams> = {}): MapComparison {
  if (estimate.h !== exact.h || estimate.w !== exact.w) {
    throw new UserError(`compareMaps: the estimate is ${estimate.h}x${estimate.w} but the exact map is ${exact.h}x${exact.w}`);
  }
  const p: MetricParams = { fraction: params.fraction ?? 0.1 };
  if (!(p.fraction > 0 && p.fraction <= 1)) throw new UserError(`compareMaps: fraction must be in (0, 1], got ${p.fraction}`);
  const out = {} as MapComparison;
  for (const name of METRIC_NAMES) out[name] = METRICS[name].fn(estimate, exact, p);
  return out;
}

/** Which end of a map is important: score 'prob' maps are low there, 'drop' maps high. */
export type MapScore = 'prob' | 'drop';
/** How a map was normalised: 'seed' (already in seed units) or 'none'. */
export type MapNormalize = 'seed' | 'none';

/** N maps (or one): what `attribute()` returns, or plain arrays with their shape. */
export interface MapsLike {
  data: ArrayLike<number>;
  /** [N,H,W] or [H,W]. */
  shape: readonly number[];
  score?: MapScore;
  normalize?: MapNormalize;
  /** N*H*W importances (higher = more important) when the map's own order is not it. */
  importance?: ArrayLike<number>;
}

export interface CompareOptions {
  /** Orientation of both maps; default: what the maps say (they must agree). */
  score?: MapScore;
  /** Normalisation of both maps; default: what each map says, else 'none'. */
  normalize?: MapNormalize;
  fraction?: number;
}

export interface Comparison {
  n: number;
  h: number;
  w: number;
  score: MapScore;
  /** Per map, in order. */
  perMap: Record<MetricName, number[]>;
  /** Mean over the maps where the metric is defined (NaN entries ignored). */
  mean: MapComparison;
}

function mapsShape(m: MapsLike, what: string): [number, number, number] {
  const s = m.shape;
  const shape: [number, number, number] | undefined =
    s.length === 3 ? [s[0], s[1], s[2]] : s.length === 2 ? [1, s[0], s[1]] : undefined;
  if (!shape || shape.some((d) => !(Number.isInteger(d) && d >= 1))) {
    throw new UserError(`compareMaps: ${what} shape [${s.join(',')}] is not [N,H,W] or [H,W]`);
  }
  if (m.data.length !== shape[0] * shape[1] * shape[2]) {
    throw new UserError(`compareMaps: ${what} holds ${m.data.length} values for shape [${s.join(',')}]`);
  }
  return shape;
}

function scoreOf(estimate: MapsLike, exact: MapsLike, given?: MapScore): MapScore {
  const said = [given, exact.score, estimate.score].filter((s): s is MapScore => s !== undefined);
  if (said.length === 0) {
    throw new UserError("compareMaps: say which end of the maps is important: { score: 'prob' } (low = important, the seed's maps) or { score: 'drop' } (high = important)");
  }
  if (!given && estimate.score && exact.score && estimate.score !== exact.score) {
    throw new UserError(`compareMaps: the estimate has score '${estimate.score}' but the exact maps '${exact.score}': they do not mean the same thing`);
  }
  const s = said[0];
  if (s !== 'prob' && s !== 'drop') throw new UserError(`compareMaps: score must be 'prob' or 'drop', got '${String(s)}'`);
  return s;
}

/** Importance (higher = more important) of a map in the data's orientation: prob maps are low where important. */
export function importanceOf(map: ArrayLike<number>, score: MapScore): Float64Array {
  const out = new Float64Array(map.length);
  for (let i = 0; i < map.length; i++) out[i] = score === 'prob' ? -map[i] : map[i];
  return out;
}

/** One map of a MapsLike as the metrics see it. */
function metricMap(m: MapsLike, i: number, h: number, w: number, score: MapScore, normalize: MapNormalize | undefined): MetricMap {
  const hw = h * w;
  const raw = Array.prototype.slice.call(m.data, i * hw, (i + 1) * hw) as number[];
  const seed = (normalize ?? m.normalize ?? 'none') === 'seed';
  const importance = m.importance
    ? (Array.prototype.slice.call(m.importance, i * hw, (i + 1) * hw) as number[])
    : Array.from(importanceOf(raw, score));
  return { values: seed ? raw : normalizeSeed(raw), importance, h, w };
}

/**
 * Every registered metric between estimated and exact maps, per map and as means. Both are
 * [N,H,W] (or one [H,W] map); orientation and normalisation come from the options or from
 * what the maps carry (attribute() results carry both).
 */
export function compareMaps(estimate: MapsLike, exact: MapsLike, opts: CompareOptions = {}): Comparison {
  const [n, h, w] = mapsShape(exact, 'exact');
  const [ne, he, we] = mapsShape(estimate, 'estimate');
  if (ne !== n || he !== h || we !== w) throw new UserError(`compareMaps: ${ne} estimate(s) of ${he}x${we} for ${n} exact map(s) of ${h}x${w}`);
  const score = scoreOf(estimate, exact, opts.score);
  const perMap = Object.fromEntries(METRIC_NAMES.map((k) => [k, [] as number[]])) as Record<MetricName, number[]>;
  for (let i = 0; i < n; i++) {
    const r = compareMap(metricMap(estimate, i, h, w, score, opts.normalize), metricMap(exact, i, h, w, score, opts.normalize), { fraction: opts.fraction });
    for (const k of METRIC_NAMES) perMap[k].push(r[k]);
  }
  const mean = Object.fromEntries(METRIC_NAMES.map((k) => [k, summarize(perMap[k]).mean])) as MapComparison;
  return { n, h, w, score, perMap, mean };
}
