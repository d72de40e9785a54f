/**
 * Exact occlusion maps of the seed classifier (21x21x1, padded to 27x27 inside, seed
 * occlusion: 3x3 patch, stride 1, pad 3 = 625 positions) on the full engine (ONNX Runtime, one
 * inference per position) and on the incremental engine, side by side in one run: maps/s of
 * each and their ratio, FLOPs per map of each (the incremental one counted from the windows it
 * computes), achieved GFLOP/s, where the incremental engine's time goes (per stage: ONNX
 * Runtime, gathering; unoccluded pass; scatter) and, with `sweep`, maps/s for every stage the
 * switch to full computation could start at (Krypton's rule, measured).
 *
 *   node dist/bench/incremental-speed.js [--seconds S] [--threads T] [--stamps N (48)] [--sweep] [--json FILE]
 *
 * Weights are random (seeded): speed does not depend on them. The two engines alternate in
 * rounds so a change of machine load hits both alike.
 */
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { initTf } from '../src/runtime/tfjs.js';
import { buildClassifier } from '../src/models/classifier.js';
import { modelFlops } from '../src/models/flops.js';
import { modelToOnnx } from '../src/models/to-onnx.js';
import { loadModel } from '../src/models/load.js';
import { exactMaps, geometryOf, inferencesPerMap, SEED_PARAMS, type ExactOptions, type OcclusionParams } from '../src/occlusion/exact.js';
import { IncrementalPredictor } from '../src/occlusion/incremental-predictor.js';
import { netFromModel } from '../src/occlusion/net-from-tfjs.js';
import { DEFAULT_CALL_FLOATS, DEFAULT_FULL_THRESHOLD, type IncrementalOptions, type StageProfile } from '../src/occlusion/incremental.js';
import type { Net } from '../src/occlusion/net.js';
import { approximationError, type ApproximationError } from '../src/occlusion/approx.js';
import type { Geometry } from '../src/occlusion/geometry.js';
import type { Predictor } from '../src/models/predictor.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { Rng } from '../src/util/rng.js';
import type { LayoutChoice } from '../src/occlusion/net-layout.js';

export interface IncrementalBenchOptions {
  /** Seconds of timed maps per engine (split over rounds). */
  seconds?: number;
  threads?: number;
  /**
   * Maps per timed exactMaps call (a multiple of maps per batch group is fairest). Default 48,
   * 8 incremental engine calls: consecutive calls overlap (exactMaps asks for the next group
   * first), as over an occlude shard of 256 maps; with a single call (6 maps) every call ends
   * with one lane waiting for the other.
   */
  stamps?: number;
  /** Also time every switch point to full computation. */
  sweep?: boolean;
  activation?: 'relu' | 'linear';
  /** The incremental engine's activation layout (default auto: NCHWc where it runs). */
  layout?: LayoutChoice;
  params?: OcclusionParams;
  log?: (line: string) => void;
}

function layoutArg(v: string | undefined): LayoutChoice | undefined {
  if (v === undefined || v === 'auto' || v === 'nhwc' || v === 'nchwc') return v;
  throw new Error(`--layout must be auto, nhwc or nchwc, got '${v}'`);
}

export interface EngineFigures {
  mapsPerSec: number;
  flopsPerMap: number;
  gflops: number;
}

export interface IncrementalBenchResult {
  machine: { cpus: number; model: string; loadavg: number[] };
  threads: number;
  stamps: number;
  full: EngineFigures & { engine: string };
  /** calls: block sizes summed over the steps (executor calls per chunk of maps). */
  incremental: EngineFigures & { engine: string; fullFrom: string; threshold: number; calls: number };
  ratio: number;
  flopRatio: number;
  maxAbsDiff: number;
  /** The incremental engine with NHWC activations between steps, raced in the same run (when it runs NCHWc). */
  nhwc?: { mapsPerSec: number; ratio: number };
  /** Share of the incremental engine's wall time, and milliseconds per map. */
  profile: { part: string; msPerMap: number; share: number; gflops?: number }[];
  /** sweep: each variant's maps/s and its ratio to the full engine raced alongside. */
  sweep?: { kind: 'switch' | 'groups' | 'approx' | 'other'; label: string; mapsPerSec: number; ratio: number; flopsPerMap: number; calls: number; coverage?: number; ssim?: number; maxAbsError?: number }[];
}

interface Contender {
  name: string;
  p: Predictor;
  maps: number;
  secs: number;
}

/**
 * Time the contenders in turn, in rounds of about a third of `seconds` each (at least one
 * exactMaps call), three rounds or more: a change of machine load during the run hits all of
 * them alike, so their ratios hold. Not call by call: each engine leaves work behind that lands
 * in the next one's time (ONNX Runtime's intra-op threads spin after a run, garbage to collect),
 * and with single calls in turn that cost the incremental engine ~17% and the full one ~7%
 * (scratch measurement, 20:35 UTC, 6 stamps: 11.76 / 5.69 maps/s call by call against
 * 14.24 / 6.13 in 4-second rounds; each engine alone: 14.1-14.6 / 6.1-7.2).
 */
async function race(
  cs: Contender[],
  images: Float32Array,
  n: number,
  params: OcclusionParams,
  seconds: number,
  afterWarmup?: () => void,
  /** Per contender after the first (which always runs `params`). */
  own?: ExactOptions[],
): Promise<void> {
  const paramsOf = (i: number): ExactOptions => (i > 0 && own ? own[i - 1] : params);
  for (const [i, c] of cs.entries()) await exactMaps(c.p, images, [n, 21, 21, 1], paramsOf(i)); // warm-up: sessions, JIT
  afterWarmup?.();
  const t0 = performance.now();
  const roundMs = (seconds * 1000) / 3;
  let rounds = 0;
  while (rounds < 3 || performance.now() - t0 < seconds * 1000 * cs.length) {
    for (const [i, c] of cs.entries()) {
      const t = performance.now();
      do {
        await exactMaps(c.p, images, [n, 21, 21, 1], paramsOf(i));
        c.maps += n;
      } while (performance.now() - t < roundMs);
      c.secs += (performance.now() - t) / 1000;
    }
    rounds++;
  }
}

/** Block sizes summed over the windowed steps: executor calls per group of maps, before chunking. */
function callsOf(p: IncrementalPredictor, g: Geometry, tau?: number): number {
  return p.engineCore.layout(g, tau).steps.reduce((a, s) => a + s.buckets.length, 0);
}

const rate = (c: Contender): number => c.maps / c.secs;

/**
 * Wall milliseconds per map by part. Lanes run the stages at once, each on its share of the
 * items: a stage's time is its thread time over the lanes (its share of the wall time when
 * the lanes stay busy alike), its GFLOP/s the rate of one lane's thread.
 */
function profileOf(stages: StageProfile[], base: number, scatter: number, wait: number, maps: number, totalMs: number, lanes: number): IncrementalBenchResult['profile'] {
  const rows: IncrementalBenchResult['profile'] = [];
  const add = (part: string, ms: number, flops?: number): void => {
    rows.push({ part, msPerMap: ms / maps, share: ms / totalMs, ...(flops ? { gflops: flops / lanes / (ms / 1000) / 1e9 } : {}) });
  };
  add('unoccluded pass (ORT)', base);
  for (const s of stages) {
    add(`${s.name} ${s.mode} (ORT)`, s.runMs / lanes, s.flops);
    add(`${s.name} gather (JS)`, s.gatherMs / lanes);
  }
  add('scatter (JS)', scatter);
  if (lanes > 1) add('waiting for the other lanes', wait);
  const known = rows.reduce((a, r) => a + r.msPerMap * maps, 0);
  add('rest (maps, scores, calls)', Math.max(0, totalMs - known));
  return rows;
}

interface SweepCtx {
  net: Net;
  full: Predictor;
  images: Float32Array;
  stamps: number;
  params: OcclusionParams;
  seconds: number;
  threads: number;
  log: (l: string) => void;
  coverage: number[];
  g: Geometry;
}

const mf = (f: number): string => `${(f / 1e6).toFixed(0)} MFLOP`;

/** Each variant raced against the full engine; figures are ratios to it from the same race. */
async function sweeps(o: IncrementalBenchOptions, result: IncrementalBenchResult, x: SweepCtx): Promise<void> {
  const { net, coverage, log } = x;
  const variants: { kind: 'switch' | 'groups' | 'approx' | 'other'; label: string; opts: IncrementalOptions & { lanes?: number }; coverage?: number; fullFrom?: string; groups?: number; tau?: number }[] = [];
  for (let s = 0; s <= net.stages.length; s++) {
    // a threshold just at stage s's share (or above every share: windows to the end)
    const threshold = s < net.stages.length ? coverage[s] : 2;
    if (s < net.stages.length && coverage.slice(0, s).some((c) => c >= threshold)) continue;
    const name = s < net.stages.length ? net.stages[s].name : 'tail';
    variants.push({ kind: 'switch', label: `full from ${name}`, opts: { fullThreshold: threshold }, coverage: s < net.stages.length ? coverage[s] : 1, fullFrom: name });
  }
  for (const groups of [1, 2, 3, 4, 6]) variants.push({ kind: 'groups', label: `${groups} groups per axis`, opts: { groups }, groups });
  variants.push({ kind: 'other', label: 'no pool fusion', opts: { fusePools: false } });
  for (const mb of [0.25, 1, 4, 64]) variants.push({ kind: 'other', label: `${mb} MB per call`, opts: { callFloats: mb * 2 ** 18 } });
  for (const lanes of [1, 2]) if (lanes <= x.threads) variants.push({ kind: 'other', label: lanes === 1 ? `1 lane x ${x.threads} threads` : `${lanes} lanes x ${Math.floor(x.threads / lanes)} thread`, opts: { lanes } });
  for (const tau of [0.6, 0.4, 0.25]) variants.push({ kind: 'approx', label: `approx tau ${tau}`, opts: {}, tau });
  for (const kind of ['switch', 'groups', 'other', 'approx'] as const) {
    const vs = variants.filter((v) => v.kind === kind);
    const cs: Contender[] = vs.map((v) => ({ name: v.label, p: new IncrementalPredictor(net, { hash: 'bench', threads: x.threads, ...v.opts }), maps: 0, secs: 0 }));
    const cf: Contender = { name: 'full', p: x.full, maps: 0, secs: 0 };
    const paramsOf = (v: (typeof vs)[number]): ExactOptions => (v.tau ? { ...x.params, approx: v.tau } : x.params);
    await race([cf, ...cs], x.images, x.stamps, x.params, x.seconds / 2, undefined, cs.map((_, i) => paramsOf(vs[i])));
    log(
      {
        switch: "  switch to full computation at each stage (Krypton's rule; largest window's share of that stage's output), raced with the full engine:",
        groups: '  window sizes per axis and stage (block sizes over all steps: fewer FLOPs, more and smaller calls), raced with the full engine:',
        approx: '  approximate (projective-field threshold tau), raced with the full engine; error against exact maps of the same stamps:',
        other: `  other settings (default: pool fusion on, ${DEFAULT_CALL_FLOATS / 2 ** 18} MB of input per call, lanes: all threads), raced with the full engine:`,
      }[kind],
    );
    const exact = kind === 'approx' ? await exactMaps(x.full, x.images, [x.stamps, 21, 21, 1], { ...x.params, normalize: 'none' }) : undefined;
    for (const [i, v] of vs.entries()) {
      const p = cs[i].p as IncrementalPredictor;
      const row = { mapsPerSec: rate(cs[i]), ratio: rate(cs[i]) / rate(cf), flopsPerMap: p.flopsPerMap(x.g, v.tau), calls: callsOf(p, x.g, v.tau) };
      let extra = kind === 'switch' ? `(share ${v.coverage!.toFixed(2)})` : kind === 'groups' ? `(${row.calls} sizes)` : '';
      let err: ApproximationError | undefined;
      if (exact && v.tau) {
        const a = await exactMaps(p, x.images, [x.stamps, 21, 21, 1], { ...x.params, normalize: 'none', approx: v.tau });
        err = approximationError(a.raw, exact.raw, [x.stamps, 21, 21], x.params.score, 'none');
        extra = `(SSIM ${err.ssim.toFixed(3)}, max err ${err.maxAbsError.toExponential(1)})`;
      }
      (result.sweep ??= []).push({ kind: v.kind, label: v.label, mapsPerSec: row.mapsPerSec, ratio: row.ratio, flopsPerMap: row.flopsPerMap, calls: row.calls, coverage: v.coverage, ...(err ? { ssim: err.ssim, maxAbsError: err.maxAbsError } : {}) });
      log(`    ${v.label.padEnd(20)} ${extra.padEnd(14)} ${row.mapsPerSec.toFixed(2).padStart(7)} maps/s  ${row.ratio.toFixed(2)}x full  ${mf(row.flopsPerMap).padStart(11)}/map`);
      p.dispose();
    }
  }
}

export async function runIncrementalBench(o: IncrementalBenchOptions = {}): Promise<IncrementalBenchResult> {
  const seconds = o.seconds ?? 6;
  const threads = o.threads ?? 2;
  const params = o.params ?? SEED_PARAMS;
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  await initTf('cpu');
  const clf = buildClassifier({ inputShape: [21, 21, 1], numClasses: 2, seed: 1, activation: o.activation });
  const g = geometryOf(params, 21, 21);
  const perMap = inferencesPerMap(params, 21, 21);
  const stamps = o.stamps ?? 48;
  const rng = new Rng(1);
  const images = Float32Array.from({ length: stamps * 441 }, () => rng.next());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'occmap-incr-bench-'));
  const read = netFromModel(clf);
  if ('unsupported' in read) throw new Error(`seed classifier: ${read.unsupported}`);
  const net = read.net;
  try {
    writeFileSync(path.join(dir, 'c.onnx'), modelToOnnx(clf).bytes);
    const full = await loadModel(path.join(dir, 'c.onnx'), { threads, outputs: 'probs', layout: 'NHWC', batchSize: 4096 });
    const inc = new IncrementalPredictor(net, { hash: 'bench', threads, layout: o.layout });
    // warm-up (sessions, JIT) and the equality check
    const a = await exactMaps(full, images, [stamps, 21, 21, 1], params);
    const b = await exactMaps(inc, images, [stamps, 21, 21, 1], params);
    let maxAbsDiff = 0;
    for (let i = 0; i < a.maps.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(a.maps[i] - b.maps[i]));

    const cf: Contender = { name: 'full', p: full, maps: 0, secs: 0 };
    const ci: Contender = { name: 'incremental', p: inc, maps: 0, secs: 0 };
    // what NCHWc between steps gives, in the same run: the engine with NHWC activations raced beside it
    const nhwc = o.layout === undefined && (await inc.netLayout()).block > 0 ? new IncrementalPredictor(net, { hash: 'bench', threads, layout: 'nhwc' }) : null;
    const cn: Contender[] = nhwc ? [{ name: 'incremental NHWC', p: nhwc, maps: 0, secs: 0 }] : [];
    await race([cf, ci, ...cn], images, stamps, params, seconds, () => inc.engineCore.resetStats());
    nhwc?.dispose();
    const tf = cf;
    const ti = ci;
    const st = inc.stats;
    const fullFlops = perMap * modelFlops(clf);
    const incFlops = inc.flopsPerMap(g);
    const layout = inc.engineCore.layout(g);
    const fullFrom = layout.plan.fullFrom < net.stages.length ? net.stages[layout.plan.fullFrom].name : 'tail';
    const fr: EngineFigures & { engine: string } = { engine: full.engine, mapsPerSec: tf.maps / tf.secs, flopsPerMap: fullFlops, gflops: (tf.maps / tf.secs) * fullFlops / 1e9 };
    const ir = { engine: inc.engine, mapsPerSec: ti.maps / ti.secs, flopsPerMap: incFlops, gflops: (ti.maps / ti.secs) * incFlops / 1e9, fullFrom, threshold: DEFAULT_FULL_THRESHOLD, calls: callsOf(inc, g) };
    const result: IncrementalBenchResult = {
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? '?', loadavg: os.loadavg() },
      threads,
      stamps,
      full: fr,
      incremental: ir,
      ratio: ir.mapsPerSec / fr.mapsPerSec,
      flopRatio: fullFlops / incFlops,
      maxAbsDiff,
      ...(cn.length > 0 ? { nhwc: { mapsPerSec: cn[0].maps / cn[0].secs, ratio: cn[0].maps / cn[0].secs / fr.mapsPerSec } } : {}),
      profile: profileOf(st.stages, st.baseMs, st.scatterMs, st.laneWaitMs, st.maps, ti.secs * 1000, st.lanes),
    };
    log(`exact maps, seed classifier ${o.activation ?? 'relu'}, ${perMap - 1} positions, ${threads} thread(s), ${stamps} maps per exactMaps call`);
    log(`  full engine        ${fr.mapsPerSec.toFixed(2).padStart(8)} maps/s  ${mf(fr.flopsPerMap).padStart(11)}/map  ${fr.gflops.toFixed(1)} GFLOP/s  (${fr.engine})`);
    log(`  incremental engine ${ir.mapsPerSec.toFixed(2).padStart(8)} maps/s  ${mf(ir.flopsPerMap).padStart(11)}/map  ${ir.gflops.toFixed(1)} GFLOP/s  (windows to ${fullFrom}, then full; ${ir.calls} block sizes over all steps; ${st.layout})`);
    log(`  incremental / full: ${result.ratio.toFixed(2)}x maps/s (FLOP ratio ${result.flopRatio.toFixed(2)}x); max |map difference| ${maxAbsDiff.toExponential(1)}`);
    if (result.nhwc) log(`  the same engine with NHWC activations between steps: ${result.nhwc.mapsPerSec.toFixed(2)} maps/s, ${result.nhwc.ratio.toFixed(2)}x the full engine (raced in this run)`);
    log(`  where the incremental engine's time goes (ms per map, share${st.lanes > 1 ? `; stages: thread time / ${st.lanes} lanes running at once, GFLOP/s per lane thread` : ''}):`);
    for (const p of result.profile) log(`    ${p.part.padEnd(34)} ${p.msPerMap.toFixed(2).padStart(7)} ms  ${(100 * p.share).toFixed(1).padStart(5)}%${p.gflops ? `  ${p.gflops.toFixed(0)} GFLOP/s` : ''}`);
    inc.dispose();

    if (o.sweep) await sweeps(o, result, { net, full, images, stamps, params, seconds, threads, log, coverage: layout.plan.coverage, g });
    log(`  machine: ${result.machine.cpus} cpus (${result.machine.model}), load average ${result.machine.loadavg.map((x) => x.toFixed(2)).join(' ')}`);
    full.dispose();
    return result;
  } finally {
    clf.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const arg = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const r = await runIncrementalBench({
    seconds: Number(arg('--seconds') ?? 6),
    threads: Number(arg('--threads') ?? 2),
    stamps: Number(arg('--stamps') ?? 48),
    sweep: args.includes('--sweep'),
    activation: arg('--activation') === 'linear' ? 'linear' : 'relu',
    layout: layoutArg(arg('--layout')),
  });
  const json = arg('--json');
  if (json) await writeFileAtomic(json, JSON.stringify(r, null, 2));
}
