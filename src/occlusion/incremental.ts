/**
 * The incremental exact occlusion engine (Krypton): run each unoccluded image once keeping
 * every stage's (padded) input, then for every patch position recompute only the window of
 * each stage's output that the patch changes, batched over all positions of a group of maps,
 * stage by stage; from the stage where windows stop paying (planWindows), finish in full.
 *
 * The arithmetic runs on a NetExecutor (ONNX Runtime sessions in production, see
 * incremental-ort.ts); this module only plans, gathers and scatters, and counts what it did.
 */
import type { Geometry } from './geometry.js';
import { gatherBlocks, gatherPatched, type Blocks, type Overlay, type Plane } from './gather.js';
import { flopsPerCell, netFlops, netShapes, tailFlops, type Net } from './net.js';
import { inputSpan, planWindows, type Interval, type StageWindows, type WindowPlan } from './windows.js';

/** Runs the pieces of a Net on batches (NHWC in, NHWC out). */
export interface NetExecutor {
  /** n unoccluded images: each stage's padded input, the tail's padded input, the model outputs. */
  base(x: Float32Array, n: number): Promise<{ inputs: Float32Array[]; tail: Float32Array; probs: Float32Array }>;
  /** Stages `stage`..`last` (default: just `stage`) on n pre-padded blocks of bh x bw, one after the other, without padding. */
  window(stage: number, blocks: Float32Array, n: number, bh: number, bw: number, last?: number): Promise<Float32Array>;
  /** Stages from `from` on, in full, then the tail, on n whole padded inputs of stage `from` (or the tail). */
  tail(from: number, x: Float32Array, n: number): Promise<Float32Array>;
  dispose(): void;
}

/**
 * Share of a stage's output at which its window is computed in full instead (Krypton's rule,
 * planWindows). Measured with `node dist/bench/incremental-threshold.js` (ONNX Runtime, 2
 * threads, 64->64 3x3 convolution on a 13x13 output, the seed classifier's conv4/conv5): a
 * window plus its gathering costs as much as the full layer plus its gathering at about this
 * share; see that benchmark's output in the issue 13 report.
 */
export const DEFAULT_FULL_THRESHOLD = 0.9;

/** Items (patch positions of maps) per executor call: large enough to amortise a call. */
export const DEFAULT_CHUNK = 512;

/** Window-size classes per axis (see PlanOptions.groups). */
export const DEFAULT_GROUPS = 3;

/** Compute a pooling without padding in one step with the convolution before it (PlanOptions.fuse). */
export const DEFAULT_FUSE_POOLS = true;

export interface IncrementalOptions {
  fullThreshold?: number;
  fusePools?: boolean;
  groups?: number;
  chunk?: number;
}

export interface StageProfile {
  name: string;
  /** 'window hxw' or 'full'. */
  mode: string;
  /** Window share of the output. */
  coverage: number;
  runMs: number;
  gatherMs: number;
  flops: number;
}

/** What the engine did since it was created (or since resetStats). */
export interface IncrementalStats {
  maps: number;
  /** Items recomputed (positions whose change reaches the output). */
  items: number;
  baseMs: number;
  scatterMs: number;
  /** FLOPs actually computed: unoccluded passes, windows and full stages. */
  flops: number;
  stages: StageProfile[];
}

/** One window-size class of a geometry: the arrays its gathering needs, computed once. */
interface ClassLayout {
  /** Positions (indices into positions()). */
  positions: Int32Array;
  /** Per step: the window of its last stage (what the next step reads). */
  windows: StageWindows[];
  /** Per step: block size and each member's block origin in its first stage's padded input. */
  blocks: { bh: number; bw: number; y0: Int32Array; x0: Int32Array }[];
  /** Patch rectangle of each member in stage 0's padded input (or the tail's). */
  patchY: Interval[];
  patchX: Interval[];
  /** FLOPs per item of each step. */
  windowFlops: number[];
}

/** Windowed stages first..last computed by one executor call (a convolution and the pooling fused into it). */
export interface Step {
  first: number;
  last: number;
}

interface Layout {
  plan: WindowPlan;
  steps: Step[];
  classes: ClassLayout[];
  /** FLOPs per item of the stages computed in full and the tail. */
  fullFlops: number;
}

export class IncrementalEngine {
  readonly shapes: ReturnType<typeof netShapes>;
  private readonly layouts = new Map<string, Layout>();
  private readonly threshold: number;
  private readonly groups: number;
  private readonly chunk: number;
  private readonly fusePools: boolean;
  /** Reused input buffers, one per stage: fresh multi-megabyte arrays per call cost page faults and GC. */
  private readonly buffers: Float32Array[] = [];
  stats: IncrementalStats;

  constructor(
    readonly net: Net,
    readonly exec: NetExecutor,
    opts: IncrementalOptions = {},
  ) {
    this.shapes = netShapes(net);
    this.threshold = opts.fullThreshold ?? DEFAULT_FULL_THRESHOLD;
    this.groups = opts.groups ?? DEFAULT_GROUPS;
    this.chunk = Math.max(1, opts.chunk ?? DEFAULT_CHUNK);
    this.fusePools = opts.fusePools ?? DEFAULT_FUSE_POOLS;
    this.stats = this.emptyStats();
  }

  private scratch(stage: number, size: number): Float32Array {
    let b = this.buffers[stage];
    if (!b || b.length < size) {
      b = new Float32Array(size);
      this.buffers[stage] = b;
    }
    return b;
  }

  private emptyStats(): IncrementalStats {
    return { maps: 0, items: 0, baseMs: 0, scatterMs: 0, flops: 0, stages: [] };
  }

  resetStats(): void {
    this.stats = this.emptyStats();
  }

  /** The window plan for a geometry (positions, window classes, where full computation starts). */
  layout(g: Geometry, tau?: number): Layout {
    const key = `${g.h}x${g.w}|${g.ph}x${g.pw}|${g.stride}|${g.pad}|${tau ?? 'exact'}`;
    let l = this.layouts.get(key);
    if (!l) {
      l = this.makeLayout(g, tau);
      this.layouts.set(key, l);
    }
    return l;
  }

  private makeLayout(g: Geometry, tau?: number): Layout {
    if (tau !== undefined && !(tau > 0 && tau <= 1)) throw new RangeError(`projective-field threshold must be in (0, 1], got ${tau}`);
    const [h, w] = this.net.input;
    if (g.h !== h || g.w !== w) throw new RangeError(`geometry ${g.h}x${g.w} on a ${h}x${w} model`);
    const st = this.shapes.stages;
    const cellCost = this.net.stages.map((s) => Math.max(1, flopsPerCell(s)));
    const fuse = this.net.stages.map((s) => this.fusePools && s.kind !== 'conv');
    const plan = planWindows(g, st, { threshold: this.threshold, groups: this.groups, cellCost, tau, fuse });
    const steps: Step[] = [];
    for (let i = 0; i < plan.fullFrom; i++) {
      if (plan.fused[i] && steps.length > 0) steps[steps.length - 1].last = i;
      else steps.push({ first: i, last: i });
    }
    const [offY, offX] = st.length > 0 ? [st[0].y.offset, st[0].x.offset] : [this.shapes.tailInput.offY, this.shapes.tailInput.offX];
    const classes = plan.classes.map((c): ClassLayout => ({
      positions: c.positions,
      windows: steps.map((sp) => c.windows[sp.last]),
      blocks: steps.map(({ first: i }) => {
        const win = c.windows[i];
        const ys = inputSpan(st[i].y, 0, win.h);
        const xs = inputSpan(st[i].x, 0, win.w);
        return { bh: ys.hi - ys.lo, bw: xs.hi - xs.lo, y0: win.oy.map((o) => o * st[i].y.stride), x0: win.ox.map((o) => o * st[i].x.stride) };
      }),
      patchY: c.patch.map((r) => ({ lo: r.y.lo + offY, hi: r.y.hi + offY })),
      patchX: c.patch.map((r) => ({ lo: r.x.lo + offX, hi: r.x.hi + offX })),
      windowFlops: steps.map((sp) => {
        let f = 0;
        for (let i = sp.first; i <= sp.last; i++) f += flopsPerCell(this.net.stages[i]) * c.windows[i].h * c.windows[i].w;
        return f;
      }),
    }));
    let fullFlops = tailFlops(this.net);
    for (let i = plan.fullFrom; i < st.length; i++) fullFlops += flopsPerCell(this.net.stages[i]) * st[i].outShape[0] * st[i].outShape[1];
    return { plan, steps, classes, fullFlops };
  }

  /** FLOPs one map costs on this engine for geometry g, counted from the windows it computes. */
  flopsPerMap(g: Geometry, tau?: number): number {
    const l = this.layout(g, tau);
    let f = netFlops(this.net);
    for (const c of l.classes) f += c.positions.length * (c.windowFlops.reduce((a, b) => a + b, 0) + l.fullFlops);
    return f;
  }

  private profile(l: Layout): StageProfile[] {
    const steps = l.steps;
    if (this.stats.stages.length !== steps.length + 1) {
      this.stats.stages = steps.map((sp, i) => {
        const sizes = new Set(l.classes.map((c) => `${c.windows[i].h}x${c.windows[i].w}`));
        const largest = l.classes.reduce((m, c) => Math.max(m, c.windows[i].h * c.windows[i].w), 0);
        const big = l.classes.find((c) => c.windows[i].h * c.windows[i].w === largest)!.windows[i];
        const names = this.net.stages.slice(sp.first, sp.last + 1).map((s) => s.name);
        return {
          name: names.join('+'),
          mode: `window ${big.h}x${big.w}${sizes.size > 1 ? ` (+${sizes.size - 1} smaller)` : ''}`,
          coverage: l.plan.coverage[sp.last],
          runMs: 0,
          gatherMs: 0,
          flops: 0,
        };
      });
      const names = this.net.stages.slice(l.plan.fullFrom).map((s) => s.name);
      this.stats.stages.push({ name: [...names, 'tail'].join('+'), mode: 'full', coverage: 1, runMs: 0, gatherMs: 0, flops: 0 });
    }
    return this.stats.stages;
  }

  /**
   * Probabilities for n maps in exactMaps' group layout: (n, positions + 1, classes), item 0
   * of each map the unoccluded image, item j the patch at position j - 1. `x` holds n model
   * input images (NHWC), `fills` n x C fill values. `tau`: approximate (planWindows).
   */
  async occlusionProbs(x: Float32Array, n: number, g: Geometry, fills: Float32Array, tau?: number): Promise<Float32Array> {
    const l = this.layout(g, tau);
    const k = this.net.numClasses;
    const perMap = l.plan.positions + 1;
    let t0 = performance.now();
    const base = await this.exec.base(x, n);
    this.stats.baseMs += performance.now() - t0;
    t0 = performance.now();
    const out = new Float32Array(n * perMap * k);
    // Positions whose change never reaches the output score as the unoccluded image.
    for (let i = 0; i < n; i++) {
      const b = base.probs.subarray(i * k, (i + 1) * k);
      for (let j = 0; j < perMap; j++) out.set(b, (i * perMap + j) * k);
    }
    this.stats.scatterMs += performance.now() - t0;
    const planes: Plane[] = this.shapes.stages.map((s, i) => ({ data: base.inputs[i], h: s.inShape[0], w: s.inShape[1], c: s.inShape[2] }));
    const ti = this.shapes.tailInput;
    planes.push({ data: base.tail, h: ti.h, w: ti.w, c: ti.c });
    const prof = this.profile(l);
    for (const cl of l.classes) {
      const size = cl.positions.length;
      const items = n * size;
      for (let from = 0; from < items; from += this.chunk) {
        const m = Math.min(this.chunk, items - from);
        const probs = await this.runChunk(l, cl, planes, fills, from, m, prof);
        t0 = performance.now();
        for (let t = 0; t < m; t++) {
          const item = from + t;
          const i = Math.floor(item / size);
          out.set(probs.subarray(t * k, (t + 1) * k), (i * perMap + cl.positions[item % size] + 1) * k);
        }
        this.stats.scatterMs += performance.now() - t0;
      }
      this.stats.flops += items * (cl.windowFlops.reduce((a, b) => a + b, 0) + l.fullFlops);
      this.stats.items += items;
    }
    this.stats.maps += n;
    this.stats.flops += n * netFlops(this.net);
    return out;
  }

  /** Items [from, from + m) of one class (item = map * class size + member) through every stage. */
  private async runChunk(l: Layout, cl: ClassLayout, planes: Plane[], fills: Float32Array, from: number, m: number, prof: StageProfile[]): Promise<Float32Array> {
    const size = cl.positions.length;
    const map = new Int32Array(m);
    const mem = new Int32Array(m);
    for (let t = 0; t < m; t++) {
      map[t] = Math.floor((from + t) / size);
      mem[t] = (from + t) % size;
    }
    const pick = (a: Int32Array, add = 0): Int32Array => mem.map((p) => a[p] + add);
    const patch = { y: Array.from(mem, (p) => cl.patchY[p]), x: Array.from(mem, (p) => cl.patchX[p]) };
    const F = l.plan.fullFrom;
    const st = this.shapes.stages;
    let ov: Overlay | null = null;
    for (let k = 0; k <= l.steps.length; k++) {
      const full = k === l.steps.length;
      const first = full ? F : l.steps[k].first;
      const plane = planes[first];
      const blk = cl.blocks[k];
      const b: Blocks = full
        ? { map, y0: new Int32Array(m), x0: new Int32Array(m), bh: plane.h, bw: plane.w }
        : { map, y0: pick(blk.y0), x0: pick(blk.x0), bh: blk.bh, bw: blk.bw };
      let t0 = performance.now();
      const buf = this.scratch(k, m * b.bh * b.bw * plane.c);
      const input = ov ? gatherBlocks(buf, plane, b, ov) : gatherPatched(buf, plane, b, patch, fills);
      prof[k].gatherMs += performance.now() - t0;
      t0 = performance.now();
      if (full) {
        const probs = await this.exec.tail(F, input, m);
        prof[k].runMs += performance.now() - t0;
        prof[k].flops += m * l.fullFlops;
        return probs;
      }
      const last = l.steps[k].last;
      const y = await this.exec.window(first, input, m, b.bh, b.bw, last);
      prof[k].runMs += performance.now() - t0;
      prof[k].flops += m * cl.windowFlops[k];
      const win = cl.windows[k];
      const next = last + 1 < st.length ? { y: st[last + 1].y.offset, x: st[last + 1].x.offset } : { y: this.shapes.tailInput.offY, x: this.shapes.tailInput.offX };
      ov = { data: y, y0: pick(win.oy, next.y), x0: pick(win.ox, next.x), oh: win.h, ow: win.w };
    }
    throw new Error('internal: no full stage');
  }
}
