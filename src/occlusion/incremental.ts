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
import { gatherBlocks, gatherHeap, gatherPatched, type Blocks, type Overlay, type Plane } from './gather.js';
import { flopsPerCell, netFlops, netShapes, paddedInput, tailFlops, type Net } from './net.js';
import { planWindows, type Interval, type WindowPlan } from './windows.js';
import { cellFloats, inputLayout, layoutName, nhwcLayout, packLayout, type ActLayout, type LayoutChoice, type NetLayout } from './net-layout.js';

/** Runs the pieces of a Net on batches (NHWC in, NHWC out). */
export interface NetExecutor {
  /** n unoccluded images: each stage's padded input, the tail's padded input, the model outputs. */
  base(x: Float32Array, n: number): Promise<{ inputs: Float32Array[]; tail: Float32Array; probs: Float32Array }>;
  /**
   * Stages `stage`..`last` (default: just `stage`) on n pre-padded blocks of bh x bw, one after
   * the other, without padding. With `out` (exactly the output's size), written there and returned.
   */
  window(stage: number, blocks: Float32Array, n: number, bh: number, bw: number, last?: number, out?: Float32Array): Promise<Float32Array>;
  /** Stages from `from` on, in full, then the tail, on n whole padded inputs of stage `from` (or the tail). */
  tail(from: number, x: Float32Array, n: number): Promise<Float32Array>;
  /**
   * How window and tail calls take and give activations (net-layout.ts; default NHWC); base()
   * always gives NHWC, which the engine packs into this layout.
   */
  netLayout?(): Promise<NetLayout>;
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

/** Items (patch positions of maps) per executor call at most (callFloats binds first for all but tiny blocks). */
export const DEFAULT_CHUNK = 2048;

/**
 * Floats of gathered input, and of output, per executor call at most (1 MB each): a call's
 * input, its NCHWc copy and output stay in a core's L2 between the gathering and the convolution. Measured
 * with 2 lanes (`occmap bench --only-incremental --sweep`): 1.05-1.2x the maps/s of 64 MB
 * calls, which stream every block through memory twice.
 */
export const DEFAULT_CALL_FLOATS = 1 << 18;

/**
 * Window sizes per axis and stage (see PlanOptions.groups). Measured (sweep, 2 lanes): 4 beats
 * 3 (fewer wasted FLOPs at the borders, 6.9 instead of 7.3 GFLOP/map) and 6 (more, smaller calls).
 */
export const DEFAULT_GROUPS = 4;

/** Compute a pooling without padding in one step with the convolution before it (PlanOptions.fuse). */
export const DEFAULT_FUSE_POOLS = true;

export interface IncrementalOptions {
  fullThreshold?: number;
  fusePools?: boolean;
  groups?: number;
  chunk?: number;
  /** Floats of gathered input, and of window output, per executor call at most. */
  callFloats?: number;
  /** Activation layout between steps, for executors that offer a choice (net-layout.ts); default auto. */
  layout?: LayoutChoice;
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
  /** Threads running items at once; stage times are summed over them (thread milliseconds). */
  lanes: number;
  /** Time this thread waited for the other lanes after finishing its own share. */
  laneWaitMs: number;
  /** Activation layout between steps (NHWC, or NCHWc and its block size). */
  layout: string;
  stages: StageProfile[];
}

/** What a lane gives back: its items' probabilities (laneItems order), its own times and compute time. */
export interface LaneResult {
  probs: Float32Array;
  stages: StageProfile[];
  ms: number;
}

/** One lane's work: the items of n maps whose active position `laneOf` gives to `lane`, on the stored unoccluded inputs. */
export interface LaneRequest {
  g: Geometry;
  tau?: number;
  n: number;
  /** Each stage's padded input, then the tail's, of the n maps (the unoccluded pass). */
  planes: Float32Array[];
  fills: Float32Array;
  lane: number;
  /** The lane of each active position (the same for every map). */
  laneOf: Uint8Array;
}

/** Another thread running the same engine on its share of the items (incremental-lanes.ts). */
export interface RemoteLane {
  run(req: LaneRequest): Promise<LaneResult>;
  dispose(): void;
}

/**
 * The lane of each of nActive positions, interleaved (neighbouring positions cost alike) in
 * proportion to `shares` (one per lane, summing to 1): each position goes to the lane with the
 * most unspent share.
 */
export function assignLanes(nActive: number, shares: ArrayLike<number>): Uint8Array {
  const laneOf = new Uint8Array(nActive);
  const credit = new Float64Array(shares.length);
  for (let a = 0; a < nActive; a++) {
    let best = 0;
    for (let j = 0; j < shares.length; j++) {
      credit[j] += shares[j];
      if (credit[j] > credit[best]) best = j;
    }
    laneOf[a] = best;
    credit[best] -= 1;
  }
  return laneOf;
}

/** Items (map * nActive + active position) of n maps whose position `laneOf` gives to `lane`, ascending. */
export function laneItems(n: number, laneOf: Uint8Array, lane: number): Int32Array {
  const nActive = laneOf.length;
  let per = 0;
  for (let a = 0; a < nActive; a++) if (laneOf[a] === lane) per++;
  const ids = new Int32Array(n * per);
  for (let i = 0, t = 0; i < n; i++) for (let a = 0; a < nActive; a++) if (laneOf[a] === lane) ids[t++] = i * nActive + a;
  return ids;
}

/** Windowed stages first..last computed by one executor call (a convolution and the pooling fused into it). */
export interface Step {
  first: number;
  last: number;
}

/** What one step of a geometry's plan needs, per active position, computed once. */
interface StepLayout extends Step {
  /** Block (first stage's padded input) size and origin per position. */
  bh: Int32Array;
  bw: Int32Array;
  y0: Int32Array;
  x0: Int32Array;
  /** The step's output window per position, in the next stage's padded-input coordinates. */
  oy: Int32Array;
  ox: Int32Array;
  oh: Int32Array;
  ow: Int32Array;
  /** Positions of one block size, batched together: [bh, bw, members]. */
  buckets: { bh: number; bw: number; members: Int32Array }[];
  /** FLOPs per position. */
  flops: Float64Array;
}

export interface Layout {
  plan: WindowPlan;
  steps: StepLayout[];
  /** Patch rectangle of each active position in stage 0's padded input (or the tail's). */
  patchY: Interval[];
  patchX: Interval[];
  /** FLOPs per item of the stages computed in full and the tail. */
  fullFlops: number;
}

/** Per item (map x active position), where its latest recomputed window is. */
interface ItemState {
  data: Float32Array[];
  off: Int32Array;
}

export class IncrementalEngine {
  readonly shapes: ReturnType<typeof netShapes>;
  private readonly layouts = new Map<string, Layout>();
  private readonly threshold: number;
  private readonly groups: number;
  private readonly chunk: number;
  private readonly fusePools: boolean;
  private readonly callFloats: number;
  private running: Promise<unknown> = Promise.resolve();
  /** When each remote lane's last results came back. */
  private readonly laneFreeAt: number[] = [];
  /** Calls started and not yet returned. */
  private inFlight = 0;
  /** Since when this thread has had no share to compute while a call waits for other lanes (laneWaitMs). */
  private idleSince: number | null = null;
  private calls = 0;
  /** Share of each call's positions per lane (this thread first), following measured speed. */
  private readonly shares: Float64Array;
  /**
   * One reused ArrayBuffer for everything a lane call copies between: the stored unoccluded
   * inputs, the two arenas and the gather buffer. Fresh multi-megabyte arrays per call cost
   * page faults and GC; and in this thread's gathering memory (gather.ts) the gathering queues
   * its row copies and runs them in one WebAssembly call. Carved per call by carveHeap.
   */
  private heap: Float32Array = new Float32Array(0);
  /** The gather buffer: the blocks of one executor call. */
  private buffer: Float32Array = new Float32Array(0);
  /**
   * The steps' window outputs: step s writes into arena s % 2 while its blocks are gathered
   * from step s - 1's outputs in the other one, which step s + 1 then overwrites.
   */
  private readonly arenas: Float32Array[] = [new Float32Array(0), new Float32Array(0)];
  private arenaUsed = 0;
  /** The executor's activation layout (NHWC until it has said). */
  private lay: NetLayout;
  private layAsked: Promise<void> | null = null;
  stats: IncrementalStats;

  constructor(
    readonly net: Net,
    readonly exec: NetExecutor,
    opts: IncrementalOptions = {},
    /** Other threads sharing each call's items (none: this thread does all). */
    private readonly lanes: RemoteLane[] = [],
  ) {
    this.shapes = netShapes(net);
    this.threshold = opts.fullThreshold ?? DEFAULT_FULL_THRESHOLD;
    this.groups = opts.groups ?? DEFAULT_GROUPS;
    this.chunk = Math.max(1, opts.chunk ?? DEFAULT_CHUNK);
    this.fusePools = opts.fusePools ?? DEFAULT_FUSE_POOLS;
    this.callFloats = Math.max(1, opts.callFloats ?? DEFAULT_CALL_FLOATS);
    this.shares = new Float64Array(lanes.length + 1).fill(1 / (lanes.length + 1));
    this.lay = nhwcLayout(net);
    this.stats = this.emptyStats();
  }

  private async ready(): Promise<void> {
    this.layAsked ??= (async () => {
      if (this.exec.netLayout) this.lay = await this.exec.netLayout();
    })();
    await this.layAsked;
    this.stats.layout = layoutName(this.lay);
  }

  /** Stored activation i (stage i's padded input; the tail's for i = number of stages): NHWC shape and layout. */
  private storedShape(i: number): { h: number; w: number; channels: number; lay: ActLayout } {
    const [h, w, channels] = paddedInput(this.shapes, i);
    return { h, w, channels, lay: inputLayout(this.lay, i) };
  }

  /** Floats per cell of stage i's input (the tail's for i = number of stages), as stored. */
  private inCell(i: number): number {
    return cellFloats(inputLayout(this.lay, i));
  }

  private scratch(size: number): Float32Array {
    if (this.buffer.length < size) throw new Error(`internal: a gather of ${size} floats overflows its buffer of ${this.buffer.length}`);
    return this.buffer;
  }

  /**
   * Lay out the heap for one lane call: copies of the stored planes, then the arenas and the
   * gather buffer at the sizes this call needs (growing the heap, never shrinking it).
   */
  private carveHeap(stored: Float32Array[], n: number, arenaFloats: [number, number], gatherFloats: number): Float32Array[] {
    const sizes = stored.map((_, i) => {
      const sh = this.storedShape(i);
      return n * sh.h * sh.w * cellFloats(sh.lay);
    });
    const total = sizes.reduce((a, b) => a + b, 0) + arenaFloats[0] + arenaFloats[1] + gatherFloats;
    // a little headroom: the lanes' shares, and so the sizes, change from call to call
    if (this.heap.length < total) this.heap = gatherHeap(Math.ceil(total * 1.25));
    let at = 0;
    const take = (f: number): Float32Array => this.heap.subarray(at, (at += f));
    const planes = stored.map((p, i) => {
      const sh = this.storedShape(i);
      return packLayout(take(sizes[i]), p, n, sh.h, sh.w, sh.channels, sh.lay);
    });
    this.arenas[0] = take(arenaFloats[0]);
    this.arenas[1] = take(arenaFloats[1]);
    this.buffer = take(gatherFloats);
    return planes;
  }

  /** Heap sizes of one lane call: each arena's largest step, and the largest gather of one executor call. */
  private laneSizes(l: Layout, n: number, laneOf: Uint8Array, lane: number, laneItemCount: number): { arenas: [number, number]; gather: number } {
    const arenas: [number, number] = [0, 0];
    let gather = 0;
    for (const [s, sp] of l.steps.entries()) {
      arenas[s % 2] = Math.max(arenas[s % 2], this.stepOutFloats(sp, n, laneOf, lane));
      const c = this.inCell(sp.first);
      for (const bk of sp.buckets) {
        let mine = 0;
        for (const a of bk.members) if (laneOf[a] === lane) mine++;
        const f = bk.bh * bk.bw * c;
        if (mine > 0) gather = Math.max(gather, Math.min(this.bucketPerCall(sp, bk), n * mine) * f);
      }
    }
    const [h, w] = paddedInput(this.shapes, l.plan.fullFrom);
    const f = h * w * this.inCell(l.plan.fullFrom);
    if (laneItemCount > 0) gather = Math.max(gather, Math.min(this.perCall(f), laneItemCount) * f);
    return { arenas, gather };
  }

  /**
   * Items per window call of one block size: its input and its output each within callFloats
   * (a one-channel conv1 block of 9x9 gives 6x6x32 outputs, 14x its input: capped by the input
   * alone, 2,048 blocks made 9 MB of outputs, and ONNX Runtime's layout conversion of them took
   * 60% of the step).
   */
  private bucketPerCall(sp: StepLayout, bk: { bh: number; bw: number; members: Int32Array }): number {
    const a = bk.members[0];
    return this.perCall(Math.max(bk.bh * bk.bw * this.inCell(sp.first), sp.oh[a] * sp.ow[a] * this.inCell(sp.last + 1)));
  }

  /** Items per call for blocks of `floats` values. */
  private perCall(floats: number): number {
    return Math.max(1, Math.min(this.chunk, Math.floor(this.callFloats / floats)));
  }

  private emptyStats(): IncrementalStats {
    return { maps: 0, items: 0, baseMs: 0, scatterMs: 0, laneWaitMs: 0, flops: 0, lanes: this.lanes.length + 1, layout: layoutName(this.lay), stages: [] };
  }

  resetStats(): void {
    this.stats = this.emptyStats();
    this.idleSince = null;
  }

  /** The window plan for a geometry (positions, windows, where full computation starts). */
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
    const fuse = this.net.stages.map((s) => this.fusePools && s.kind !== 'conv');
    const plan = planWindows(g, st, { threshold: this.threshold, groups: this.groups, tau, fuse });
    const ranges: Step[] = [];
    for (let i = 0; i < plan.fullFrom; i++) {
      if (plan.fused[i] && ranges.length > 0) ranges[ranges.length - 1].last = i;
      else ranges.push({ first: i, last: i });
    }
    const steps = ranges.map((r) => this.stepLayout(plan, r));
    const [offY, offX] = st.length > 0 ? [st[0].y.offset, st[0].x.offset] : [this.shapes.tailInput.offY, this.shapes.tailInput.offX];
    let fullFlops = tailFlops(this.net);
    for (let i = plan.fullFrom; i < st.length; i++) fullFlops += flopsPerCell(this.net.stages[i]) * st[i].outShape[0] * st[i].outShape[1];
    return {
      plan,
      steps,
      patchY: plan.patch.map((r) => ({ lo: r.y.lo + offY, hi: r.y.hi + offY })),
      patchX: plan.patch.map((r) => ({ lo: r.x.lo + offX, hi: r.x.hi + offX })),
      fullFlops,
    };
  }

  private stepLayout(plan: WindowPlan, r: Step): StepLayout {
    const st = this.shapes.stages;
    const win = plan.windows[r.first];
    const [ay, ax] = [st[r.first].y, st[r.first].x];
    const bh = win.h.map((v) => (v - 1) * ay.stride + ay.kernel);
    const bw = win.w.map((v) => (v - 1) * ax.stride + ax.kernel);
    const out = plan.windows[r.last];
    const next = r.last + 1 < st.length ? { y: st[r.last + 1].y.offset, x: st[r.last + 1].x.offset } : { y: this.shapes.tailInput.offY, x: this.shapes.tailInput.offX };
    const bySize = new Map<string, number[]>();
    bh.forEach((v, a) => {
      const key = `${v}x${bw[a]}`;
      const list = bySize.get(key) ?? [];
      list.push(a);
      bySize.set(key, list);
    });
    const buckets = [...bySize.values()].map((ms) => ({ bh: bh[ms[0]], bw: bw[ms[0]], members: Int32Array.from(ms) }));
    const flops = new Float64Array(bh.length);
    for (let i = r.first; i <= r.last; i++) {
      const wi = plan.windows[i];
      const f = flopsPerCell(this.net.stages[i]);
      for (let a = 0; a < flops.length; a++) flops[a] += f * wi.h[a] * wi.w[a];
    }
    return {
      ...r,
      bh,
      bw,
      y0: win.oy.map((o) => o * ay.stride),
      x0: win.ox.map((o) => o * ax.stride),
      oy: out.oy.map((o) => o + next.y),
      ox: out.ox.map((o) => o + next.x),
      oh: out.h,
      ow: out.w,
      buckets,
      flops,
    };
  }

  /** FLOPs one map costs on this engine for geometry g, counted from the windows it computes. */
  flopsPerMap(g: Geometry, tau?: number): number {
    const l = this.layout(g, tau);
    let f = netFlops(this.net) + l.plan.active.length * l.fullFlops;
    for (const sp of l.steps) f += sp.flops.reduce((a, b) => a + b, 0);
    return f;
  }

  private profile(l: Layout): StageProfile[] {
    if (this.stats.stages.length !== l.steps.length + 1) {
      this.stats.stages = l.steps.map((sp) => {
        const names = this.net.stages.slice(sp.first, sp.last + 1).map((s) => s.name);
        let big = 0;
        for (let a = 0; a < sp.oh.length; a++) if (sp.oh[a] * sp.ow[a] > sp.oh[big] * sp.ow[big]) big = a;
        const sizes = new Set(Array.from(sp.oh, (v, a) => `${v}x${sp.ow[a]}`)).size;
        return {
          name: names.join('+'),
          mode: `window ${sp.oh[big]}x${sp.ow[big]}${sizes > 1 ? ` (+${sizes - 1} smaller)` : ''}`,
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
   * With lanes, the items are split between this thread and the lanes' threads (each item's
   * windows depend on its own chain only), all running at once.
   */
  occlusionProbs(x: Float32Array, n: number, g: Geometry, fills: Float32Array, tau?: number): Promise<Float32Array> {
    // Calls overlap by one: the next call's unoccluded pass and this thread's share start as
    // soon as this thread's share of the previous call is done (they share its heap), while
    // the other lanes may still be finishing theirs. Waiting for them instead left this thread
    // idle for 6-8% of the time (lanes never finish exactly together).
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const prev = this.running;
    this.running = gate;
    return prev.then(() => this.occlusionProbsNow(x, n, g, fills, tau, release)).finally(release);
  }

  private idle(on: boolean): void {
    const now = performance.now();
    if (on) this.idleSince ??= now;
    else if (this.idleSince !== null) {
      this.stats.laneWaitMs += now - this.idleSince;
      this.idleSince = null;
    }
  }

  private async occlusionProbsNow(x: Float32Array, n: number, g: Geometry, fills: Float32Array, tau: number | undefined, release: () => void): Promise<Float32Array> {
    const l = this.layout(g, tau);
    this.idle(false);
    this.inFlight++;
    try {
      return await this.callNow(l, x, n, g, fills, tau, release);
    } finally {
      // with no call left, the time until the next is the caller's, not waiting for lanes
      if (--this.inFlight === 0) this.idle(false);
    }
  }

  private async callNow(l: Layout, x: Float32Array, n: number, g: Geometry, fills: Float32Array, tau: number | undefined, release: () => void): Promise<Float32Array> {
    const k = this.net.numClasses;
    const perMap = l.plan.positions + 1;
    const nActive = l.plan.active.length;
    let t0 = performance.now();
    const base = await this.exec.base(x, n);
    const baseMs = performance.now() - t0;
    this.stats.baseMs += baseMs;
    const stored = [...base.inputs, base.tail];
    const nLanes = this.lanes.length + 1;
    const laneOf = assignLanes(nActive, this.shares);
    // Remote lanes start first: this thread's own lane blocks its event loop in each session run.
    // A lane's time for this call as seen from here, from when it could start on it (sent, or
    // its previous call's results back) to its results back: that holds receiving the planes
    // and sending the results, which the lane's own compute time leaves out.
    const sent = performance.now();
    const seen = new Float64Array(this.lanes.length);
    const remote = this.lanes.map((lane, j) =>
      lane.run({ g, tau, n, planes: stored, fills, lane: j + 1, laneOf }).then((r) => {
        const now = performance.now();
        seen[j] = now - Math.max(sent, this.laneFreeAt[j] ?? 0);
        this.laneFreeAt[j] = now;
        return r;
      }),
    );
    const own = this.runLane(l, stored, fills, n, 0, laneOf);
    const ownDone = own.then(
      () => {
        this.idle(true);
        release();
      },
      () => undefined,
    );
    // Never leave a lane running behind a failure: wait for all before throwing.
    const parts = await Promise.allSettled([own, ...remote]);
    await ownDone;
    for (const p of parts) if (p.status === 'rejected') throw p.reason;
    const done = parts.map((p) => (p as PromiseFulfilledResult<LaneResult>).value);
    // this thread's time per call also holds the unoccluded pass
    const busy = done.map((r, j) => (j === 0 ? r.ms + baseMs : seen[j - 1]));
    // the first call builds every lane's sessions: its times say nothing about speed
    if (nLanes > 1 && this.calls++ > 0) this.rebalance(busy, laneOf);
    t0 = performance.now();
    const out = new Float32Array(n * perMap * k);
    // Positions whose change never reaches the output score as the unoccluded image.
    for (let i = 0; i < n; i++) {
      const b = base.probs.subarray(i * k, (i + 1) * k);
      for (let j = 0; j < perMap; j++) out.set(b, (i * perMap + j) * k);
    }
    const prof = this.profile(l);
    done.forEach(({ probs, stages }, lane) => {
      const items = laneItems(n, laneOf, lane);
      items.forEach((item, t) => {
        const i = Math.floor(item / nActive);
        out.set(probs.subarray(t * k, (t + 1) * k), (i * perMap + l.plan.active[item % nActive] + 1) * k);
      });
      if (lane > 0) {
        stages.forEach((s, j) => {
          prof[j].runMs += s.runMs;
          prof[j].gatherMs += s.gatherMs;
          prof[j].flops += s.flops;
        });
      }
    });
    this.stats.scatterMs += performance.now() - t0;
    this.stats.maps += n;
    this.stats.items += n * nActive;
    this.stats.flops += n * this.flopsPerMap(g, tau);
    this.stats.lanes = nLanes;
    return out;
  }

  /**
   * One lane's share of n maps' items (laneItems): every windowed step, then the full stages
   * and the tail, on the stored unoccluded inputs `stored` (each stage's, then the tail's).
   * Returns the items' probabilities in laneItems order; adds its times to this engine's stats.
   */
  async runLane(l: Layout, stored: Float32Array[], fills: Float32Array, n: number, lane: number, laneOf: Uint8Array): Promise<LaneResult> {
    await this.ready();
    const t0 = performance.now();
    const k = this.net.numClasses;
    const nActive = l.plan.active.length;
    const all = laneItems(n, laneOf, lane);
    const sizes = this.laneSizes(l, n, laneOf, lane, all.length);
    const copies = this.carveHeap(stored, n, sizes.arenas, sizes.gather);
    const planes: Plane[] = copies.map((data, i) => {
      const sh = this.storedShape(i);
      return { data, h: sh.h, w: sh.w, c: sh.lay.c, groups: sh.lay.groups, channels: sh.channels };
    });
    const prof = this.profile(l);
    // Step by step over the lane's items (item = map * nActive + active position), one call per block size and chunk.
    const state: ItemState = { data: new Array<Float32Array>(n * nActive), off: new Int32Array(n * nActive) };
    for (const [s, sp] of l.steps.entries()) {
      this.startArena(s, this.stepOutFloats(sp, n, laneOf, lane));
      for (const bk of sp.buckets) {
        const mine = bk.members.filter((a) => laneOf[a] === lane);
        if (mine.length === 0) continue;
        const ids = new Int32Array(n * mine.length);
        for (let i = 0, t = 0; i < n; i++) for (const a of mine) ids[t++] = i * nActive + a;
        const per = this.bucketPerCall(sp, bk);
        for (let from = 0; from < ids.length; from += per) {
          await this.runWindows(l, s, bk, ids.subarray(from, Math.min(ids.length, from + per)), nActive, planes, fills, state, prof[s]);
        }
      }
    }
    const probs = new Float32Array(all.length * k);
    const fp = planes[l.plan.fullFrom];
    const per = this.perCall(fp.h * fp.w * this.inCell(l.plan.fullFrom));
    for (let from = 0; from < all.length; from += per) {
      const ids = all.subarray(from, Math.min(all.length, from + per));
      probs.set(await this.runFull(l, ids, nActive, planes, fills, state, prof[l.steps.length]), from * k);
    }
    return { probs, stages: prof, ms: performance.now() - t0 };
  }

  /** Floats of all window outputs of step `sp` for this lane's items of n maps. */
  private stepOutFloats(sp: StepLayout, n: number, laneOf: Uint8Array, lane: number): number {
    const cout = this.inCell(sp.last + 1);
    let f = 0;
    for (let a = 0; a < laneOf.length; a++) if (laneOf[a] === lane) f += sp.oh[a] * sp.ow[a] * cout;
    return f * n;
  }

  /** Step s writes its outputs from the start of arena s % 2 (carveHeap made it at least `floats` long). */
  private startArena(s: number, floats: number): void {
    if (this.arenas[s % 2].length < floats) throw new Error(`internal: step ${s} needs an arena of ${floats} floats, has ${this.arenas[s % 2].length}`);
    this.arenaUsed = 0;
  }

  /** The next `floats` of the current step's arena. */
  private takeArena(s: number, floats: number): Float32Array {
    const out = this.arenas[s % 2].subarray(this.arenaUsed, this.arenaUsed + floats);
    if (out.length !== floats) throw new Error(`internal: step ${s} outputs overflow their arena`);
    this.arenaUsed += floats;
    return out;
  }

  /**
   * Next calls' shares from this one's lane times (this thread's: the unoccluded pass and its
   * share; another lane's: from when it could start to its results back): lanes keep pace
   * when each one's share follows its measured speed (threads of one machine differ under
   * other load, and this thread also runs the event loop). Any split gives the same maps.
   */
  private rebalance(ms: number[], laneOf: Uint8Array): void {
    const counts = new Float64Array(ms.length);
    for (const j of laneOf) counts[j]++;
    const speed = ms.map((t, j) => counts[j] / Math.max(t, 1e-3));
    const total = speed.reduce((a, b) => a + b, 0);
    if (!(total > 0)) return;
    // halfway to the measured split: one slow call does not swing the next
    for (let j = 0; j < ms.length; j++) this.shares[j] = Math.max(0.05, 0.5 * this.shares[j] + (0.5 * speed[j]) / total);
    const sum = this.shares.reduce((a, b) => a + b, 0);
    for (let j = 0; j < ms.length; j++) this.shares[j] /= sum;
  }

  /** Blocks of `ids` for a stage whose padded input is `plane`: the previous step's windows (or the patch) over the unoccluded input. */
  private gather(l: Layout, s: number, ids: Int32Array, nActive: number, plane: Plane, b: Blocks, fills: Float32Array, state: ItemState, buf: Float32Array): Float32Array {
    const pos = ids.map((item) => item % nActive);
    if (s === 0) return gatherPatched(buf, plane, b, { y: Array.from(pos, (a) => l.patchY[a]), x: Array.from(pos, (a) => l.patchX[a]) }, fills);
    const prev = l.steps[s - 1];
    const ov: Overlay = {
      data: Array.from(ids, (item) => state.data[item]),
      off: ids.map((item) => state.off[item]),
      y0: pos.map((a) => prev.oy[a]),
      x0: pos.map((a) => prev.ox[a]),
      oh: pos.map((a) => prev.oh[a]),
      ow: pos.map((a) => prev.ow[a]),
    };
    return gatherBlocks(buf, plane, b, ov);
  }

  /** One executor call: step s on the items `ids` (one block size). */
  private async runWindows(l: Layout, s: number, bk: { bh: number; bw: number }, ids: Int32Array, nActive: number, planes: Plane[], fills: Float32Array, state: ItemState, prof: StageProfile): Promise<void> {
    const sp = l.steps[s];
    const plane = planes[sp.first];
    const m = ids.length;
    const pos = ids.map((item) => item % nActive);
    const b: Blocks = { map: ids.map((item) => Math.floor(item / nActive)), y0: pos.map((a) => sp.y0[a]), x0: pos.map((a) => sp.x0[a]), bh: bk.bh, bw: bk.bw };
    let t0 = performance.now();
    const input = this.gather(l, s, ids, nActive, plane, b, fills, state, this.scratch(m * bk.bh * bk.bw * this.inCell(sp.first)));
    prof.gatherMs += performance.now() - t0;
    t0 = performance.now();
    const size = sp.oh[pos[0]] * sp.ow[pos[0]] * this.inCell(sp.last + 1);
    const y = await this.exec.window(sp.first, input, m, bk.bh, bk.bw, sp.last, this.takeArena(s, m * size));
    prof.runMs += performance.now() - t0;
    ids.forEach((item, t) => {
      state.data[item] = y;
      state.off[item] = t * size;
      prof.flops += sp.flops[pos[t]];
    });
  }

  /** One executor call: the stages from fullFrom and the tail on the items `ids`, whole. */
  private async runFull(l: Layout, ids: Int32Array, nActive: number, planes: Plane[], fills: Float32Array, state: ItemState, prof: StageProfile): Promise<Float32Array> {
    const F = l.plan.fullFrom;
    const plane = planes[F];
    const m = ids.length;
    const b: Blocks = { map: ids.map((item) => Math.floor(item / nActive)), y0: new Int32Array(m), x0: new Int32Array(m), bh: plane.h, bw: plane.w };
    let t0 = performance.now();
    const input = this.gather(l, l.steps.length, ids, nActive, plane, b, fills, state, this.scratch(m * plane.h * plane.w * this.inCell(F)));
    prof.gatherMs += performance.now() - t0;
    t0 = performance.now();
    const probs = await this.exec.tail(F, input, m);
    prof.runMs += performance.now() - t0;
    prof.flops += m * l.fullFlops;
    return probs;
  }
}
