/**
 * Building the batched inputs of the incremental engine, pure: for each item (one patch
 * position of one map), the block of a stage's padded input it needs, taken from the
 * unoccluded activations of its map with the item's own changed values written over them.
 * Activations are NHWC or NCHWc (net-layout.ts), so one block row of w cells is one
 * contiguous run of w * c floats per channel group, and a block costs one copy per row and group.
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
 * Row copies within one WebAssembly memory, queued and run by one call: an NCHWc block is
 * `groups` x more rows than an NHWC one, each 16 channels short (64-256 floats), and per row
 * copyWithin's call cost as much as the bytes (one-off races: gathers of blocked layouts took
 * 1.3-1.5x NHWC's time). Hand-written because nothing on npm batches memmoves: a WebAssembly function
 * of 40 bytes running memory.copy over (dst, src, bytes) triples.
 */
const COPY_RUNS_WASM = (() => {
  const body = [0x01, 0x01, 0x7f, // one i32 local: the end of the triples
    0x20, 0x00, 0x20, 0x01, 0x41, 0x0c, 0x6c, 0x6a, 0x21, 0x02, // end = p + 12 n
    0x02, 0x40, 0x03, 0x40, // block loop
    0x20, 0x00, 0x20, 0x02, 0x4f, 0x0d, 0x01, // p >= end: out
    0x20, 0x00, 0x28, 0x02, 0x00, 0x20, 0x00, 0x28, 0x02, 0x04, 0x20, 0x00, 0x28, 0x02, 0x08, // dst, src, bytes
    0xfc, 0x0a, 0x00, 0x00, // memory.copy
    0x20, 0x00, 0x41, 0x0c, 0x6a, 0x21, 0x00, 0x0c, 0x00, // p += 12; again
    0x0b, 0x0b, 0x0b];
  const section = (id: number, bytes: number[]): number[] => [id, bytes.length, ...bytes];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [0x01, 0x60, 0x02, 0x7f, 0x7f, 0x00]), // type (i32, i32) -> ()
    ...section(2, [0x01, 0x01, 0x65, 0x01, 0x6d, 0x02, 0x00, 0x01]), // import e.m: memory, at least 1 page
    ...section(3, [0x01, 0x00]),
    ...section(7, [0x01, 0x01, 0x63, 0x00, 0x00]), // export c
    ...section(10, [0x01, body.length, ...body]),
  ]);
})();

/** Triples queued before a flush (the first bytes of the memory hold them). */
const QUEUE_RUNS = 16384;
const QUEUE_BYTES = QUEUE_RUNS * 12;

interface RunQueue {
  memory: WebAssembly.Memory;
  run: (p: number, n: number) => void;
  triples: Int32Array;
  count: number;
}

let queue: RunQueue | null = null;

function runQueue(): RunQueue {
  if (!queue) {
    const memory = new WebAssembly.Memory({ initial: Math.ceil(QUEUE_BYTES / 65536) + 1 });
    const inst = new WebAssembly.Instance(new WebAssembly.Module(COPY_RUNS_WASM), { e: { m: memory } });
    queue = { memory, run: inst.exports.c as (p: number, n: number) => void, triples: new Int32Array(memory.buffer, 0, QUEUE_RUNS * 3), count: 0 };
  }
  return queue;
}

/**
 * `floats` zeroed floats in this thread's gathering memory, where gatherBlocks and
 * gatherPatched copy rows in bulk (earlier views of it are invalid after a call that grows it).
 */
export function gatherHeap(floats: number): Float32Array {
  const q = runQueue();
  flushRuns();
  const need = QUEUE_BYTES + floats * 4;
  if (q.memory.buffer.byteLength < need) {
    q.memory.grow(Math.ceil((need - q.memory.buffer.byteLength) / 65536));
    q.triples = new Int32Array(q.memory.buffer, 0, QUEUE_RUNS * 3);
  }
  return new Float32Array(q.memory.buffer, QUEUE_BYTES, floats);
}

function flushRuns(): void {
  if (queue && queue.count > 0) {
    queue.run(0, queue.count);
    queue.count = 0;
  }
}

/** Queue the copies if dst and src are views of the gathering memory; false if not. */
function queueRows(dst: Float32Array, d: number, dStride: number, src: Float32Array, s: number, sStride: number, rows: number, run: number): boolean {
  const q = queue;
  if (!q || dst.buffer !== q.memory.buffer || src.buffer !== dst.buffer) return false;
  let db = dst.byteOffset + d * 4;
  let sb = src.byteOffset + s * 4;
  for (let r = 0; r < rows; r++, db += dStride * 4, sb += sStride * 4) {
    if (q.count === QUEUE_RUNS) flushRuns();
    const t = q.count++ * 3;
    q.triples[t] = db;
    q.triples[t + 1] = sb;
    q.triples[t + 2] = run * 4;
  }
  return true;
}

/**
 * Copy `rows` rows of `run` floats from src (row stride sStride) to dst (row stride dStride):
 * queued when both are in the gathering memory (where the engine keeps everything it gathers
 * from and into), else row by row.
 */
function copyRows(dst: Float32Array, d: number, dStride: number, src: Float32Array, s: number, sStride: number, rows: number, run: number): void {
  if (run <= 0 || rows <= 0) return;
  // rows back to back on both sides (a block as wide as its plane): one copy
  if (rows > 1 && run === dStride && run === sStride) {
    run *= rows;
    rows = 1;
  }
  if (queueRows(dst, d, dStride, src, s, sStride, rows, run)) return;
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
  flushRuns();
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
    for (let gi = 0; gi < groups; gi++) copyRows(dst, t * blockSize + gi * groupBlock, bRow, plane.data, m * mapSize + gi * groupIn + by * rowIn + bx * c, rowIn, b.bh, bRow);
  }
  // the fills go over the copied blocks: the queued copies first
  flushRuns();
  for (let t = 0; t < count; t++) {
    const i = from + t;
    const m = b.map[i];
    const by = b.y0[i];
    const bx = b.x0[i];
    const ys = overlap({ lo: by, hi: by + b.bh }, patch.y[i]);
    const xs = overlap({ lo: bx, hi: bx + b.bw }, patch.x[i]);
    for (let gi = 0; gi < groups; gi++) {
      const d = t * blockSize + gi * groupBlock;
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
