/**
 * Window arithmetic of the incremental occlusion engine (Krypton, SIGMOD 2019), pure: which
 * part of every layer's output a patch changes, which input block (changed window plus the
 * halo its kernel reads) recomputing that part needs, and from which layer on recomputing
 * windows stops paying.
 *
 * Coordinates, per axis. A "stage" is a layer that reads a sliding window of its input
 * (convolution or pooling). Its input is stored padded: the previous stage's output, then any
 * ZeroPadding layers in between, then the stage's own padding ('same', or 0 for 'valid'), so
 * that every output o reads padded input cells [o * stride, o * stride + kernel) and never
 * needs a border test. `offset` is where coordinate 0 of the previous output sits in that
 * padded input. Intervals are half-open [lo, hi); empty when lo >= hi.
 */
import { positions, type Geometry } from './geometry.js';

export interface Interval {
  lo: number;
  hi: number;
}

export const EMPTY: Interval = { lo: 0, hi: 0 };

export function isEmpty(r: Interval): boolean {
  return r.hi <= r.lo;
}

export function length(r: Interval): number {
  return Math.max(0, r.hi - r.lo);
}

export interface AxisMap {
  /** Length of the stored (padded) input. */
  size: number;
  /** Position of the previous output's coordinate 0 in the padded input. */
  offset: number;
  /** Extent one output reads: (kernel - 1) * dilation + 1. */
  kernel: number;
  stride: number;
  /** Output length: floor((size - kernel) / stride) + 1. */
  out: number;
}

/**
 * One axis of a stage whose input (the previous output) has length `prevOut`, padded by
 * `before` / `after` cells in total (ZeroPadding plus the stage's own padding).
 */
export function axisMap(prevOut: number, before: number, after: number, kernel: number, stride: number, dilation = 1): AxisMap {
  const size = prevOut + before + after;
  const k = (kernel - 1) * dilation + 1;
  if (!(stride >= 1 && k >= 1)) throw new RangeError(`bad kernel ${kernel} / stride ${stride} / dilation ${dilation}`);
  if (size < k) throw new RangeError(`kernel extent ${k} does not fit in the padded input of ${size}`);
  return { size, offset: before, kernel: k, stride, out: Math.floor((size - k) / stride) + 1 };
}

/**
 * Outputs that read any cell of `changed` (in previous-output coordinates). With dilation > 1
 * this is the hull of the affected outputs (a superset: some outputs inside may skip the change).
 */
export function changedOut(a: AxisMap, changed: Interval): Interval {
  if (isEmpty(changed)) return EMPTY;
  const lo = changed.lo + a.offset;
  const hi = changed.hi + a.offset;
  // o reads [o s, o s + k): it meets [lo, hi) iff o s < hi and o s + k > lo.
  const first = Math.max(0, Math.floor((lo - a.kernel) / a.stride) + 1);
  const last = Math.min(a.out, Math.ceil(hi / a.stride));
  return first < last ? { lo: first, hi: last } : EMPTY;
}

/** Padded-input cells read by outputs [o0, o0 + n): the block a window of n outputs needs. */
export function inputSpan(a: AxisMap, o0: number, n: number): Interval {
  return { lo: o0 * a.stride, hi: (o0 + n - 1) * a.stride + a.kernel };
}

/**
 * Origin of a fixed-size window of n outputs that contains `changed` and stays inside [0, out):
 * windows are one size for every position so that all positions batch into one tensor; near the
 * border the window slides inward (recomputing some unchanged outputs) instead of shrinking.
 */
export function placeWindow(changed: Interval, n: number, out: number): number {
  if (n > out) throw new RangeError(`window ${n} larger than the output ${out}`);
  if (length(changed) > n) throw new RangeError(`changed span ${length(changed)} larger than the window ${n}`);
  return Math.max(0, Math.min(changed.lo, out - n));
}

export interface Rect {
  y: Interval;
  x: Interval;
}

export function rectEmpty(r: Rect): boolean {
  return isEmpty(r.y) || isEmpty(r.x);
}

export interface StageAxes {
  y: AxisMap;
  x: AxisMap;
}

/**
 * Image pixels the patch at padded-grid position (py, px) paints (the classifier pads
 * internally, so the part over the padding changes nothing; see occludeInto).
 */
export function patchRegion(g: Geometry, py: number, px: number): Rect {
  const clip = (start: number, len: number, size: number): Interval => {
    const lo = Math.max(0, start);
    const hi = Math.min(size, start + len);
    return lo < hi ? { lo, hi } : EMPTY;
  };
  return { y: clip(py - g.pad, g.ph, g.h), x: clip(px - g.pad, g.pw, g.w) };
}

/**
 * At most `cap` cells of `r`, around its centre: Krypton's projective-field threshold keeps
 * only the middle of a growing change (where the patch's effect is largest) and treats the rest
 * as unchanged, an approximation.
 */
export function truncate(r: Interval, cap: number): Interval {
  const n = length(r);
  if (n <= cap) return r;
  const lo = r.lo + Math.floor((n - cap) / 2);
  return { lo, hi: lo + cap };
}

/**
 * Changed region of every stage's output for one changed input region; with `tau` (0, 1], each
 * stage's region is truncated to ceil(tau x output length) per axis (approximate, see truncate).
 */
export function propagate(stages: readonly StageAxes[], input: Rect, tau?: number): Rect[] {
  const out: Rect[] = [];
  let r = input;
  for (const s of stages) {
    r = rectEmpty(r) ? { y: EMPTY, x: EMPTY } : { y: changedOut(s.y, r.y), x: changedOut(s.x, r.x) };
    if (tau !== undefined && !rectEmpty(r)) r = { y: truncate(r.y, Math.max(1, Math.ceil(tau * s.y.out))), x: truncate(r.x, Math.max(1, Math.ceil(tau * s.x.out))) };
    out.push(r);
  }
  return out;
}

/**
 * The windows of one stage: for each active position its size and origin (output
 * coordinates). Sizes come in few values (PlanOptions.groups) so that positions of one size
 * batch into one tensor.
 */
export interface StageWindows {
  h: Int32Array;
  w: Int32Array;
  oy: Int32Array;
  ox: Int32Array;
}

export interface WindowPlan {
  /** Patch positions of the geometry (row-major, as positions()). */
  positions: number;
  /** Positions whose change reaches the classifier's output, increasing; the others score as the unoccluded image. */
  active: Int32Array;
  /** Changed input region of each active position (image coordinates). */
  patch: Rect[];
  /** Stages [0, fullFrom) are recomputed on windows; stages from fullFrom on, in full. */
  fullFrom: number;
  /** Per stage: computed together with the stage before it (PlanOptions.fuse, where it applies). */
  fused: boolean[];
  /** Per stage: the largest window's share of the output (1 = the whole output). */
  coverage: number[];
  /** One entry per windowed stage. */
  windows: StageWindows[];
}

export interface PlanOptions {
  /** Krypton's rule: the first stage whose largest window covers at least this share of its output, and all after it, run in full. */
  threshold: number;
  /**
   * Window sizes per axis and stage. Positions near the border change less (the patch or a
   * window is clipped), so a few sizes cut the FLOPs of one-size windows at the cost of more,
   * smaller executor calls (up to groups^2 per stage). Default 1.
   */
  groups?: number;
  /** Approximate: Krypton's projective-field threshold (see propagate); undefined = exact. */
  tau?: number;
  /**
   * Per stage: compute it in one step with the stage before (a pooling without padding right
   * after a convolution). The earlier stage's window becomes the block the later one's window
   * reads, so the later stage needs no gathering of its own; costs the halo's FLOPs.
   */
  fuse?: boolean[];
}

/**
 * Split lines (e.g. the distinct window lengths of a stage) into at most k groups minimising
 * the cost of giving each group its largest window at every stage, a line standing for
 * counts[line] positions (default 1): lines are ordered by their own cost and cut into
 * contiguous runs (dynamic programming). lens[line][stage]; returns a group index per line.
 */
export function groupLines(lens: number[][], weights: number[], k: number, counts?: number[]): number[] {
  const n = lens.length;
  const count = (t: number): number => counts?.[t] ?? 1;
  if (n === 0) return [];
  const own = lens.map((l) => l.reduce((a, v, s) => a + v * weights[s], 0));
  const order = lens.map((_, i) => i).sort((a, b) => own[a] - own[b] || a - b);
  const cost = (i: number, j: number): number => {
    // lines order[i..j): count x the weighted sum of per-stage maxima
    let c = 0;
    for (let s = 0; s < weights.length; s++) {
      let m = 0;
      for (let t = i; t < j; t++) m = Math.max(m, lens[order[t]][s]);
      c += weights[s] * m;
    }
    let m = 0;
    for (let t = i; t < j; t++) m += count(order[t]);
    return m * c;
  };
  const groups = Math.max(1, Math.min(k, n));
  // best[g][j]: the first j ordered lines in g groups
  const best: number[][] = Array.from({ length: groups + 1 }, () => new Array<number>(n + 1).fill(Infinity));
  const cut: number[][] = Array.from({ length: groups + 1 }, () => new Array<number>(n + 1).fill(0));
  best[0][0] = 0;
  for (let g = 1; g <= groups; g++) {
    for (let j = 1; j <= n; j++) {
      for (let i = g - 1; i < j; i++) {
        const c = best[g - 1][i] + cost(i, j);
        if (c < best[g][j]) {
          best[g][j] = c;
          cut[g][j] = i;
        }
      }
    }
  }
  let g = 1;
  for (let h = 1; h <= groups; h++) if (best[h][n] < best[g][n]) g = h;
  const out = new Array<number>(n).fill(0);
  for (let j = n; g > 0; g--) {
    const i = cut[g][j];
    for (let t = i; t < j; t++) out[order[t]] = g - 1;
    j = i;
  }
  return out;
}

/**
 * The plan for every patch position of `g` through `stages`: which positions matter, from
 * which stage on everything is computed in full (Krypton's rule: a window that large costs as
 * much as the whole layer plus the gathering; threshold > 1 never switches, <= 0 computes all
 * in full), and every position's window at every windowed stage.
 */
export function planWindows(g: Geometry, stages: readonly StageAxes[], opts: PlanOptions | number): WindowPlan {
  const o: PlanOptions = typeof opts === 'number' ? { threshold: opts } : opts;
  const pos = positions(g);
  const active: number[] = [];
  const patch: Rect[] = [];
  const regions: Rect[][] = [];
  for (let p = 0; p < pos.ys.length; p++) {
    const r0 = patchRegion(g, pos.ys[p], pos.xs[p]);
    if (rectEmpty(r0)) continue;
    const rs = propagate(stages, r0, o.tau);
    if (rs.length > 0 && rectEmpty(rs[rs.length - 1])) continue;
    active.push(p);
    patch.push(r0);
    regions.push(rs);
  }
  const max = (axis: 'y' | 'x', i: number): number => regions.reduce((m, rs) => Math.max(m, length(rs[i][axis])), 0);
  const coverage = stages.map((s, i) => (max('y', i) * max('x', i)) / (s.y.out * s.x.out));
  let fullFrom = stages.length;
  for (let i = 0; i < stages.length; i++) {
    if (coverage[i] >= o.threshold) {
      fullFrom = i;
      break;
    }
  }
  // A fusable stage at the switch point is computed with the stage before instead.
  const fused = stages.map((st, i) => {
    if (!o.fuse?.[i] || i === 0) return false;
    const prev = stages[i - 1];
    return st.y.offset === 0 && st.x.offset === 0 && st.y.size === prev.y.out && st.x.size === prev.x.out;
  });
  if (fullFrom < stages.length && fused[fullFrom]) fullFrom++;
  for (let i = fullFrom; i < stages.length; i++) fused[i] = false;
  const windows: StageWindows[] = [];
  for (let i = 0; i < fullFrom; i++) {
    // Window lengths depend on one axis only: group the lines' lengths per axis.
    const sizes = (axis: 'y' | 'x'): Int32Array => {
      const lens = regions.map((rs) => length(rs[i][axis]));
      const distinct = [...new Set(lens)].sort((a, b) => a - b);
      const counts = distinct.map((l) => lens.filter((v) => v === l).length);
      const gid = groupLines(distinct.map((l) => [l]), [1], o.groups ?? 1, counts);
      const top = new Map<number, number>();
      distinct.forEach((l, j) => top.set(gid[j], Math.max(top.get(gid[j]) ?? 0, l)));
      return Int32Array.from(lens, (l) => top.get(gid[distinct.indexOf(l)])!);
    };
    const h = sizes('y');
    const w = sizes('x');
    const oy = Int32Array.from(regions, (rs, a) => placeWindow(rs[i].y, h[a], stages[i].y.out));
    const ox = Int32Array.from(regions, (rs, a) => placeWindow(rs[i].x, w[a], stages[i].x.out));
    windows.push({ h, w, oy, ox });
  }
  // A fused stage's window fixes the window of the stage before: the block it reads.
  for (let i = fullFrom - 1; i >= 1; i--) {
    if (!fused[i]) continue;
    const wi = windows[i];
    const [sy, sx] = [stages[i].y, stages[i].x];
    windows[i - 1] = {
      h: wi.h.map((v) => (v - 1) * sy.stride + sy.kernel),
      w: wi.w.map((v) => (v - 1) * sx.stride + sx.kernel),
      oy: wi.oy.map((v) => v * sy.stride),
      ox: wi.ox.map((v) => v * sx.stride),
    };
  }
  return { positions: pos.ys.length, active: Int32Array.from(active), patch, fullFrom, fused, coverage, windows };
}

/**
 * Where one item's overlay (the previous stage's recomputed window, or the patch for the first
 * stage) meets the block gathered for a stage, both in the stage's padded-input coordinates:
 * the part of the block to take from the overlay instead of the unoccluded activations.
 */
export function overlap(block: Interval, overlay: Interval): Interval {
  const lo = Math.max(block.lo, overlay.lo);
  const hi = Math.min(block.hi, overlay.hi);
  return lo < hi ? { lo, hi } : EMPTY;
}
