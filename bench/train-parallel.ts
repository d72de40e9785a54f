/**
 * Training throughput through THE training loop (src/train/loop.ts), with 1 thread and with
 * data-parallel worker threads, side by side in one run: the seed classifier (21x21x1, sparse
 * cross-entropy), the seed autoencoder (24x24x1, mse) and the U-Net explainer with one-hot
 * conditioning (24x24x1 + label, mse), Adam, random data (speed does not depend on values).
 * Each figure is the second of two epochs (the first warms kernels, workers and allocations).
 *
 *   node dist/bench/train-parallel.js [--batch 64] [--steps 12] [--workers 1,2] [--models classifier,autoencoder,unet] [--json FILE]
 */
import { pathToFileURL } from 'node:url';
import os from 'node:os';
import { buildClassifier } from '../src/models/classifier.js';
import { buildAutoencoder } from '../src/models/autoencoder.js';
import { initTf, tfl } from '../src/runtime/tfjs.js';
import { trainModel, type LoopOptions, type TrainSet } from '../src/train/loop.js';
import { availableCores, type StepTiming } from '../src/train/parallel.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { Rng } from '../src/util/rng.js';

export type ParallelBenchModel = 'classifier' | 'autoencoder' | 'unet';

export interface ParallelFigure {
  model: ParallelBenchModel;
  batchSize: number;
  workers: number;
  samplesPerSec: number;
  msPerStep: number;
  /** CPU time of all threads of the process per step (ms): the work parallelism adds. */
  cpuMsPerStep: number;
  stepTiming?: StepTiming;
}

export interface ParallelBenchResult {
  backend: string;
  cpus: number;
  loadAverage: number[];
  figures: ParallelFigure[];
  /**
   * samples/s with the most workers over 1 worker, per model; and `onCpu`: the 1-thread step's
   * on-CPU time over the slowest replica's shard on-CPU time (Linux), i.e. the speed-up the
   * threads' own work allows. On a shared machine the wall-clock ratio is lower when other
   * sessions keep the cores busy (with autogroup scheduling a process gets its group's share
   * of the CPU however many threads it runs); the on-CPU ratio does not depend on that.
   */
  speedups: { model: ParallelBenchModel; workers: number; speedup: number; onCpu?: number }[];
}

function buildModel(which: ParallelBenchModel): tfl.LayersModel {
  if (which === 'classifier') return buildClassifier({ inputShape: [21, 21, 1], numClasses: 2, seed: 1 });
  if (which === 'autoencoder') return buildAutoencoder({ seed: 1 });
  return buildAutoencoder({ unet: true, condition: 'onehot', numClasses: 2, seed: 1 });
}

function randomSet(which: ParallelBenchModel, n: number): TrainSet {
  const rng = new Rng(5);
  const side = which === 'classifier' ? 21 : 24;
  const x = new Float32Array(n * side * side);
  for (let i = 0; i < x.length; i++) x[i] = rng.next();
  if (which === 'classifier') return { x, shape: [n, side, side, 1], y: Int32Array.from({ length: n }, () => rng.int(2)) };
  const y = new Float32Array(n * side * side);
  for (let i = 0; i < y.length; i++) y[i] = rng.next();
  const set: TrainSet = { x, shape: [n, side, side, 1], y, yShape: [side, side, 1] };
  if (which === 'unet') {
    const label = new Float32Array(n * 2);
    for (let i = 0; i < n; i++) label[i * 2 + rng.int(2)] = 1;
    set.extra = [{ data: label, shape: [2] }];
  }
  return set;
}

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function figure(which: ParallelBenchModel, batchSize: number, steps: number, workers: number): Promise<ParallelFigure> {
  const n = batchSize * steps;
  const set = randomSet(which, n + batchSize);
  const train = Array.from({ length: n }, (_, i) => i);
  const val = Array.from({ length: batchSize }, (_, i) => n + i);
  const model = buildModel(which);
  const epochs: { sps: number; cpu: number }[] = [];
  let c0 = cpuMs();
  const o: LoopOptions = {
    loss: which === 'classifier' ? 'sparse_categorical_crossentropy' : 'mse',
    epochs: 2,
    batchSize,
    patience: 5,
    split: { train, val, by: 'item' },
    workers,
    quiet: true,
    log: () => {},
    onEpoch: (e) => {
      const c = cpuMs();
      epochs.push({ sps: e.samplesPerSec, cpu: c - c0 });
      c0 = c;
    },
  };
  try {
    const r = await trainModel(model, set, o);
    const last = epochs[epochs.length - 1];
    return {
      model: which,
      batchSize,
      workers: r.workers,
      samplesPerSec: last.sps,
      msPerStep: (1000 * batchSize) / last.sps,
      cpuMsPerStep: last.cpu / steps, // includes the epoch's validation pass (one batch)
      ...(r.stepTiming ? { stepTiming: r.stepTiming } : {}),
    };
  } finally {
    model.dispose();
  }
}

export async function runParallelTrainBench(o: {
  models?: ParallelBenchModel[];
  batchSize?: number;
  steps?: number;
  workers?: number[];
  log?: (s: string) => void;
} = {}): Promise<ParallelBenchResult> {
  const backend = await initTf();
  const models = o.models ?? ['classifier', 'autoencoder', 'unet'];
  const batchSize = o.batchSize ?? 64;
  // 12: with 6 steps per epoch the 2-thread figures still varied by 30% between runs here.
  const steps = o.steps ?? 12;
  const counts = o.workers ?? [...new Set([1, availableCores()])];
  const log = o.log ?? (() => {});
  const figures: ParallelFigure[] = [];
  const speedups: ParallelBenchResult['speedups'] = [];
  for (const which of models) {
    for (const w of counts) {
      const f = await figure(which, batchSize, steps, w);
      figures.push(f);
      const t = f.stepTiming;
      const split = t
        ? `; main thread per step: own shard ${(t.computeMs / t.steps).toFixed(1)} ms, wait ${(t.waitMs / t.steps).toFixed(1)}, sum ${(t.reduceMs / t.steps).toFixed(1)}, update ${(t.applyMs / t.steps).toFixed(1)}` +
          `; shards (wall/on-cpu/queued ms): ${t.shards.map((s) => `${(s.wallMs / t.steps).toFixed(0)}/${(s.cpuMs / t.steps).toFixed(0)}/${(s.queuedMs / t.steps).toFixed(0)}`).join(', ')}`
        : '';
      log(`${which.padEnd(11)} batch ${batchSize}  ${String(f.workers).padStart(2)} thread(s)  ${f.samplesPerSec.toFixed(1).padStart(7)} samples/s  ${f.msPerStep.toFixed(1)} ms/step  cpu ${f.cpuMsPerStep.toFixed(1)} ms/step${split}`);
    }
    const one = figures.find((f) => f.model === which && f.workers === 1);
    const most = figures.filter((f) => f.model === which).sort((a, b) => b.workers - a.workers)[0];
    if (one && most && most.workers > 1) {
      // Per step: the 1-thread step (update + gradient) against the slowest replica's update +
      // shard plus the main thread's sum of the gradients (the step's critical path).
      const t1 = one.stepTiming;
      const tn = most.stepTiming;
      const oneCpu = t1 && t1.steps ? t1.shards[0].cpuMs / t1.steps : 0;
      const slowest = tn && tn.steps ? (Math.max(...tn.shards.map((sh) => sh.cpuMs)) + tn.reduceMs) / tn.steps : 0;
      const onCpu = oneCpu > 0 && slowest > 0 ? oneCpu / slowest : undefined;
      speedups.push({ model: which, workers: most.workers, speedup: most.samplesPerSec / one.samplesPerSec, ...(onCpu ? { onCpu } : {}) });
      const cpuNote = onCpu ? `; on-CPU (1-thread step / slowest replica + sum): ${onCpu.toFixed(2)}x` : '';
      log(`${which.padEnd(11)} batch ${batchSize}  ${most.workers} threads / 1 thread = ${(most.samplesPerSec / one.samplesPerSec).toFixed(2)}x${cpuNote}`);
    }
  }
  return { backend, cpus: os.cpus().length, loadAverage: os.loadavg(), figures, speedups };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opt = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const r = await runParallelTrainBench({
    batchSize: opt('--batch') ? Number(opt('--batch')) : undefined,
    steps: opt('--steps') ? Number(opt('--steps')) : undefined,
    workers: opt('--workers')?.split(',').map(Number),
    models: opt('--models')?.split(',') as ParallelBenchModel[] | undefined,
    log: (s) => process.stdout.write(s + '\n'),
  });
  process.stdout.write(`backend ${r.backend}, ${r.cpus} cpus, load average ${r.loadAverage.map((v) => v.toFixed(2)).join(' ')}\n`);
  const json = opt('--json');
  if (json) await writeFileAtomic(json, JSON.stringify(r, null, 2) + '\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e) => {
    process.stderr.write(`train-parallel: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
