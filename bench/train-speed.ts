/**
 * Training speed of the seed models on the default (wasm) backend: samples/s of the seed
 * autoencoder (24x24x1) and classifier (21x21x1 padded to 27x27) at batch 10 and 64, with
 * occmap's gradient kernels ('fast') and with the naive baseline ('naive': a plain JS filter
 * gradient and the backend's original Conv2DBackpropInput / BatchMatMul), as ratios in one run.
 * The models are built here directly with tfjs layers so the figure does not move when the
 * model modules change. Random data: speed does not depend on the values.
 *
 *   node dist/bench/train-speed.js [--steps N] [--batch 10,64] [--models autoencoder,classifier]
 *        [--modes fast,naive] [--activation relu|linear] [--profile] [--json FILE]
 *
 * Threads (1 vs all cores, data-parallel through the product's training loop): bench/train-parallel.ts.
 */
import { buildClassifier as buildSeedClassifier } from '../src/models/classifier.js';
import { buildAutoencoder as buildSeedAutoencoder } from '../src/models/autoencoder.js';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { tf, tfl, initTf } from '../src/runtime/tfjs.js';
import { registerWasmGradKernels, wasmGradKernelMode, type GradKernelMode } from '../src/runtime/wasm-kernels.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { Rng } from '../src/util/rng.js';

export type BenchModel = 'autoencoder' | 'classifier';

export interface TrainBenchOptions {
  models?: BenchModel[];
  batchSizes?: number[];
  modes?: GradKernelMode[];
  /** Timed optimiser steps per (model, batch, mode), after `warmup` untimed ones. */
  steps?: number;
  warmup?: number;
  activation?: 'relu' | 'linear';
  /** Also record a per-kernel profile of one step (fast and naive). */
  profile?: boolean;
  seed?: number;
  log?: (line: string) => void;
}

export interface TrainBenchFigure {
  model: BenchModel;
  batchSize: number;
  mode: GradKernelMode;
  /** 1: this thread; more: data-parallel over worker threads. */
  workers: number;
  steps: number;
  msPerStep: number;
  samplesPerSec: number;
  /**
   * The same from this process's CPU time: the kernels run on one thread, so this is the
   * rate on an idle core, and it moves much less than wall time when the machine is shared.
   */
  cpuMsPerStep: number;
  samplesPerCpuSec: number;
}

export interface KernelShare {
  kernel: string;
  ms: number;
  calls: number;
  share: number;
}

export interface StepProfile {
  model: BenchModel;
  batchSize: number;
  mode: GradKernelMode;
  /** Sum of kernel times of one step, ms. */
  kernelMs: number;
  wallMs: number;
  kernels: KernelShare[];
}

export interface TrainBenchResult {
  backend: string;
  node: string;
  cpus: number;
  cpuModel: string;
  loadAverage: number[];
  note: string;
  figures: TrainBenchFigure[];
  /** fast over naive samples/s per (model, batch), from wall and from CPU time. */
  ratios: { model: BenchModel; batchSize: number; fastOverNaive: number; fastOverNaiveCpu: number }[];
  profiles: StepProfile[];
  targets: { autoencoderBatch64: number; autoencoderBatch10: number };
}

type Act = 'relu' | 'linear';

/** The seed models, from the same builders the product trains (random weights). */
export function buildClassifier(act: Act = 'relu'): tfl.LayersModel {
  return buildSeedClassifier({ inputShape: [21, 21, 1], numClasses: 2, activation: act, seed: 1 });
}

export function buildAutoencoder(act: Act = 'relu'): tfl.LayersModel {
  return buildSeedAutoencoder({ activation: act, seed: 1 });
}

const EPS = 1e-7;

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** The seed's losses: sparse categorical CE (classifier), binary CE (autoencoder). */
function loss(model: BenchModel, y: tf.Tensor, out: tf.Tensor): tf.Scalar {
  if (model === 'classifier') {
    const logp = tf.log(tf.clipByValue(out, EPS, 1 - EPS));
    return tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(y as tf.Tensor1D, 2), logp), -1))) as tf.Scalar;
  }
  const p = tf.clipByValue(out, EPS, 1 - EPS);
  return tf.neg(tf.mean(tf.add(tf.mul(y, tf.log(p)), tf.mul(tf.sub(1, y), tf.log(tf.sub(1, p)))))) as tf.Scalar;
}

interface Session {
  model: tfl.LayersModel;
  vars: tf.Variable[];
  optimizer: tf.Optimizer;
  x: tf.Tensor;
  y: tf.Tensor;
  step: () => void;
}

function session(which: BenchModel, batch: number, act: Act, seed: number): Session {
  const rng = new Rng(seed);
  const model = which === 'classifier' ? buildClassifier(act) : buildAutoencoder(act);
  const side = which === 'classifier' ? 21 : 24;
  const xv = new Float32Array(batch * side * side);
  for (let i = 0; i < xv.length; i++) xv[i] = rng.next();
  const x = tf.tensor4d(xv, [batch, side, side, 1]);
  let y: tf.Tensor;
  if (which === 'classifier') {
    y = tf.tensor1d(Int32Array.from({ length: batch }, () => rng.int(2)), 'int32');
  } else {
    const yv = new Float32Array(batch * 24 * 24);
    for (let i = 0; i < yv.length; i++) yv[i] = rng.next();
    y = tf.tensor4d(yv, [batch, 24, 24, 1]);
  }
  // The seed's optimisers: Adam 1e-3 (classifier), Adadelta (autoencoder code).
  const optimizer = which === 'classifier' ? tf.train.adam(1e-3, 0.9, 0.999, 1e-7) : tf.train.adadelta(1.0, 0.95, 1e-7);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const step = () => {
    const cost = optimizer.minimize(() => loss(which, y, model.apply(x, { training: true }) as tf.Tensor), true, vars)!;
    cost.dataSync();
    cost.dispose();
  };
  return { model, vars, optimizer, x, y, step };
}

function endSession(s: Session): void {
  s.x.dispose();
  s.y.dispose();
  s.optimizer.dispose();
  s.model.dispose();
}

async function profileStep(s: Session, which: BenchModel, batch: number, mode: GradKernelMode): Promise<StepProfile> {
  const t0 = performance.now();
  const info = await tf.profile(() => {
    s.step();
    return [];
  });
  const wallMs = performance.now() - t0;
  const by = new Map<string, { ms: number; calls: number }>();
  let kernelMs = 0;
  for (const k of info.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    const e = by.get(k.name) ?? { ms: 0, calls: 0 };
    e.ms += ms;
    e.calls += 1;
    by.set(k.name, e);
    kernelMs += ms;
  }
  const kernels = [...by.entries()]
    .map(([kernel, e]) => ({ kernel, ms: e.ms, calls: e.calls, share: kernelMs > 0 ? e.ms / kernelMs : 0 }))
    .sort((a, b) => b.ms - a.ms);
  return { model: which, batchSize: batch, mode, kernelMs, wallMs, kernels };
}

export async function runTrainBench(opts: TrainBenchOptions = {}): Promise<TrainBenchResult> {
  const models = opts.models ?? ['autoencoder', 'classifier'];
  const batchSizes = opts.batchSizes ?? [10, 64];
  const modes = opts.modes ?? ['fast', 'naive'];
  const steps = opts.steps ?? 8;
  const warmup = opts.warmup ?? 2;
  const act = opts.activation ?? 'relu';
  const log = opts.log ?? (() => {});
  const backend = await initTf();
  const startMode = wasmGradKernelMode();
  const figures: TrainBenchFigure[] = [];
  const profiles: StepProfile[] = [];
  try {
    for (const which of models) {
      for (const batch of batchSizes) {
        for (const mode of modes) {
          if (backend === 'wasm') registerWasmGradKernels(mode);
          else if (mode !== 'fast') continue; // the naive set only exists on wasm
          const s = session(which, batch, act, opts.seed ?? 1);
          // Naive steps can take seconds; fewer of them keep the run short without changing the rate much.
          const n = mode === 'naive' ? Math.max(2, Math.ceil(steps / 3)) : steps;
          for (let i = 0; i < (mode === 'naive' ? 1 : warmup); i++) s.step();
          const c0 = cpuMs();
          const t0 = performance.now();
          for (let i = 0; i < n; i++) s.step();
          const ms = (performance.now() - t0) / n;
          const cms = (cpuMs() - c0) / n;
          const fig: TrainBenchFigure = {
            model: which,
            batchSize: batch,
            mode,
            workers: 1,
            steps: n,
            msPerStep: ms,
            samplesPerSec: (1000 * batch) / ms,
            cpuMsPerStep: cms,
            samplesPerCpuSec: (1000 * batch) / cms,
          };
          figures.push(fig);
          log(
            `${which.padEnd(11)} batch ${String(batch).padStart(3)}  ${mode.padEnd(5)}  ${fig.samplesPerSec.toFixed(1).padStart(7)} samples/s wall` +
              `  ${fig.samplesPerCpuSec.toFixed(1).padStart(7)} samples/cpu-s  (${ms.toFixed(1)} ms/step, ${n} steps)`,
          );
          if (opts.profile) profiles.push(await profileStep(s, which, batch, mode));
          endSession(s);
        }
      }
    }
  } finally {
    if (backend === 'wasm') registerWasmGradKernels(startMode ?? 'fast');
  }
  const ratios: TrainBenchResult['ratios'] = [];
  for (const which of models) {
    for (const batch of batchSizes) {
      const f = figures.find((g) => g.model === which && g.batchSize === batch && g.mode === 'fast' && g.workers === 1);
      const nv = figures.find((g) => g.model === which && g.batchSize === batch && g.mode === 'naive');
      if (f && nv) {
        ratios.push({
          model: which,
          batchSize: batch,
          fastOverNaive: f.samplesPerSec / nv.samplesPerSec,
          fastOverNaiveCpu: f.samplesPerCpuSec / nv.samplesPerCpuSec,
        });
      }
    }
  }
  const cpus = os.cpus();
  return {
    backend,
    node: process.version,
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    loadAverage: os.loadavg(),
    note: 'wall-clock figures; other processes on the machine (load average above) slow them down',
    figures,
    ratios,
    profiles,
    targets: { autoencoderBatch64: 150, autoencoderBatch10: 100 },
  };
}

/** Human-readable profile table: the kernels that take the most time in one step. */
export function formatProfile(p: StepProfile, top = 14): string {
  const lines = [`${p.model} batch ${p.batchSize} ${p.mode}: kernels ${p.kernelMs.toFixed(1)} ms of ${p.wallMs.toFixed(1)} ms wall (profiled step)`];
  for (const k of p.kernels.slice(0, top)) {
    lines.push(`  ${k.kernel.padEnd(28)} ${k.ms.toFixed(1).padStart(8)} ms ${(100 * k.share).toFixed(1).padStart(5)}%  ${String(k.calls).padStart(4)} calls`);
  }
  return lines.join('\n');
}

function parseArgs(argv: string[]): TrainBenchOptions & { json?: string } {
  const o: TrainBenchOptions & { json?: string } = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--json') o.json = next();
    else if (a === '--steps') o.steps = Number(next());
    else if (a === '--warmup') o.warmup = Number(next());
    else if (a === '--batch') o.batchSizes = next().split(',').map(Number);
    else if (a === '--models') o.models = next().split(',') as BenchModel[];
    else if (a === '--modes') o.modes = next().split(',') as GradKernelMode[];
    else if (a === '--activation') o.activation = next() as 'relu' | 'linear';
    else if (a === '--profile') o.profile = true;
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

/** The summary lines after the per-run lines: machine, fast/naive ratios, step profiles. */
export function printTrainBench(r: TrainBenchResult, log: (s: string) => void): void {
  log(`\nbackend ${r.backend}, ${r.cpus} cpus (${r.cpuModel}), load average ${r.loadAverage.map((v) => v.toFixed(2)).join(' ')}`);
  for (const q of r.ratios) {
    log(`${q.model.padEnd(11)} batch ${String(q.batchSize).padStart(3)}  fast / naive = ${q.fastOverNaive.toFixed(2)}x wall, ${q.fastOverNaiveCpu.toFixed(2)}x cpu`);
  }
  for (const p of r.profiles) log('\n' + formatProfile(p));
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const log = (s: string) => process.stdout.write(s + '\n');
  const r = await runTrainBench({ ...o, log });
  printTrainBench(r, log);
  if (o.json) await writeFileAtomic(o.json, JSON.stringify(r, null, 2) + '\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e) => {
    process.stderr.write(`train-speed: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
