/**
 * Building the batched inputs of the incremental engine, pure: for each item (one patch
 * position of one map), the block of a stage's padded input it needs, taken from the
 * unoccluded activations of its map with the item's own changed values written over them.
 * Activations are NHWC, so one block row of w cells is one contiguous run of w * c floats
 * and a block costs one typed-array copy per row.
 */
import { overlap, type Interval } from './windows.js';

/**
 * A stage's stored inputs: padded activations of its maps, back to back, each `groups` images
 * of h x w x c (NHWC: one group of all channels; NCHWc: channel blocks, net-layout.ts). Blocks
 * are gathered in the same layout.
 */
export interface Plane {
  data: Float32Array;
  h: number;
  w: number;
  c: number;
  /** Default 1. */
  groups?: number;
  /** Channels that are real (the rest of the last group pads to a block; fills apply to these); default groups x c. */
  channels?: number;
}

/** Where each item's block sits in its map's padded input (block size is fixed per call). */
export interface Blocks {
  /** Map of each item (index into the plane). */
  map: Int32Array;
  y0: Int32Array;
  x0: Int32Array;
  bh: number;
  bw: number;
}

/**
 * Each item's overlay, in the block's coordinates (the stage's padded input): a window of
 * oh x ow x c values at (y0, x0), stored at data[item] from element off[item] (NHWC).
 */
export interface Overlay {
  data: Float32Array[];
  off: Int32Array;
  y0: Int32Array;
  x0: Int32Array;
  oh: Int32Array;
  ow: Int32Array;
}

/**
 * Runs shorter than this are copied element by element: set(subarray(...)) allocates a view
 * per row (~0.1-0.4 us and garbage), more than a short loop costs (measured with node 20:
 * break-even near 32 floats). Rows of one-channel blocks are a few floats long.
 */
const SHORT_RUN = 32;

let wholeOf: { buffer: ArrayBufferLike; view: Float32Array } | null = null;

/** A view of all of `a`'s buffer (cached for the last buffer asked for). */
function whole(a: Float32Array): Float32Array {
  if (wholeOf?.buffer !== a.buffer) wholeOf = { buffer: a.buffer, view: new Float32Array(a.buffer) };
  return wholeOf.view;
}

/**
 * Copy `rows` rows of `run` floats from src (row stride sStride) to dst (row stride dStride).
 * Views of one buffer (the incremental engine keeps all it gathers from and into in one) copy
 * with copyWithin: no view per row, measured 1.5-3x faster per row than set(subarray).
 */
function copyRows(dst: Float32Array, d: number, dStride: number, src: Float32Array, s: number, sStride: number, rows: number, run: number): void {
  if (run <= 0 || rows <= 0) return;
  // rows back to back on both sides (a block as wide as its plane): one copy
  if (rows > 1 && run === dStride && run === sStride) {
    run *= rows;
    rows = 1;
  }
  if (run >= SHORT_RUN && dst.buffer === src.buffer) {
    const all = whole(dst);
    const dd = dst.byteOffset / 4 + d;
    const ss = src.byteOffset / 4 + s;
    for (let r = 0; r < rows; r++) all.copyWithin(dd + r * dStride, ss + r * sStride, ss + r * sStride + run);
    return;
  }
  if (run < SHORT_RUN) {
    for (let r = 0; r < rows; r++) {
      const a = s + r * sStride;
      const b = d + r * dStride;
      for (let k = 0; k < run; k++) dst[b + k] = src[a + k];
    }
    return;
  }
  for (let r = 0; r < rows; r++) dst.set(src.subarray(s + r * sStride, s + r * sStride + run), d + r * dStride);
}

/** Element strides of a plane (per map, per group, per row) and of its blocks (per row, per group, per block): once per call, not per item. */
function strides(plane: Plane, b: Blocks): { c: number; groups: number; mapSize: number; groupIn: number; rowIn: number; bRow: number; groupBlock: number; blockSize: number } {
  const c = plane.c;
  const groups = plane.groups ?? 1;
  const bRow = b.bw * c;
  const groupIn = plane.h * plane.w * c;
  const groupBlock = b.bh * bRow;
  return { c, groups, mapSize: groups * groupIn, groupIn, rowIn: plane.w * c, bRow, groupBlock, blockSize: groups * groupBlock };
}

/**
 * dst (items x bh x bw x c) = for every item, its block of the plane with the overlay written
 * over the part they share. Rows the overlay covers across the whole block width are not
 * copied from the plane first.
 */
export function gatherBlocks(dst: Float32Array, plane: Plane, b: Blocks, ov: Overlay, from = 0, count = b.map.length): Float32Array {
  const { c, groups, mapSize, groupIn, rowIn, bRow, groupBlock, blockSize } = strides(plane, b);
  for (let t = 0; t < count; t++) {
    const i = from + t;
    const by = b.y0[i];
    const bx = b.x0[i];
    const [oy, ox, oh, ow] = [ov.y0[i], ov.x0[i], ov.oh[i], ov.ow[i]];
    const ys = overlap({ lo: by, hi: by + b.bh }, { lo: oy, hi: oy + oh });
    const xs = overlap({ lo: bx, hi: bx + b.bw }, { lo: ox, hi: ox + ow });
    const full = xs.lo === bx && xs.hi === bx + b.bw && ys.hi > ys.lo;
    for (let gi = 0; gi < groups; gi++) {
      const d = t * blockSize + gi * groupBlock;
      const base = b.map[i] * mapSize + gi * groupIn + by * rowIn + bx * c;
      if (full) {
        copyRows(dst, d, bRow, plane.data, base, rowIn, ys.lo - by, bRow);
        const after = by + b.bh - ys.hi;
        copyRows(dst, d + (ys.hi - by) * bRow, bRow, plane.data, base + (ys.hi - by) * rowIn, rowIn, after, bRow);
      } else {
        copyRows(dst, d, bRow, plane.data, base, rowIn, b.bh, bRow);
      }
      if (ys.hi > ys.lo && xs.hi > xs.lo) {
        // the overlay is laid out like the plane: group gi's oh x ow x c cells after the earlier groups'
        const s = ov.off[i] + gi * oh * ow * c + ((ys.lo - oy) * ow + (xs.lo - ox)) * c;
        copyRows(dst, d + ((ys.lo - by) * b.bw + (xs.lo - bx)) * c, bRow, ov.data[i], s, ow * c, ys.hi - ys.lo, (xs.hi - xs.lo) * c);
      }
    }
  }
  return dst.subarray(0, count * blockSize);
}

/**
 * The first stage's blocks: the padded image of each item's map with the item's patch
 * rectangle (padded-input coordinates, any size, possibly partly outside the block) set to the
 * map's fill values (one per channel).
 */
export function gatherPatched(
  dst: Float32Array,
  plane: Plane,
  b: Blocks,
  patch: { y: Interval[]; x: Interval[] },
  fills: Float32Array,
  from = 0,
  count = b.map.length,
): Float32Array {
  const { c, groups, mapSize, groupIn, rowIn, bRow, groupBlock, blockSize } = strides(plane, b);
  const channels = plane.channels ?? groups * c;
  for (let t = 0; t < count; t++) {
    const i = from + t;
    const m = b.map[i];
    const by = b.y0[i];
    const bx = b.x0[i];
    const ys = overlap({ lo: by, hi: by + b.bh }, patch.y[i]);
    const xs = overlap({ lo: bx, hi: bx + b.bw }, patch.x[i]);
    for (let gi = 0; gi < groups; gi++) {
      const d = t * blockSize + gi * groupBlock;
      copyRows(dst, d, bRow, plane.data, m * mapSize + gi * groupIn + by * rowIn + bx * c, rowIn, b.bh, bRow);
      for (let y = ys.lo; y < ys.hi; y++) {
        for (let x = xs.lo; x < xs.hi; x++) {
          const o = d + ((y - by) * b.bw + (x - bx)) * c;
          // channels padding the last block stay 0 (their weights are 0 too)
          for (let k = 0; k < c; k++) dst[o + k] = gi * c + k < channels ? fills[m * channels + gi * c + k] : 0;
        }
      }
    }
  }
  return dst.subarray(0, count * blockSize);
}
