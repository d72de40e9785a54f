/**
 * Data-parallel training over worker threads, the main-thread side. The main thread is
 * rank 0 and computes a shard like every worker; per step:
 *
 *   main: post {step, apply previous update?} to each worker -> apply the previous summed
 *         gradient -> own shard's gradient
 *   each worker: apply the previous summed gradient (shared `avg`) -> shard gradient into its
 *                shared slot -> 'done' with its shard loss
 *   main: sum own gradient + worker slots (fixed rank order: deterministic) -> `avg`.
 *
 * Only indices and a few numbers travel by message; the data, the epoch's order, the gradient
 * slots and the summed gradient are SharedArrayBuffers, so nothing of model size is copied
 * between threads except through shared memory (about 1 MB per replica per step for our
 * models, < 1 ms next to the 50-500 ms of a step's convolutions). Every replica, the main one
 * included, applies an update when the next step starts, so the updates run side by side and
 * nobody waits while another applies (applying at the end of the step on the main thread put
 * one update, 13 ms for the U-Net, on every step's critical path).
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { tf, tfl, type BackendChoice } from '../runtime/tfjs.js';
import { Batcher, type TrainSet } from './batcher.js';
import type { ShardWindow } from './dropout.js';
import type { LossName, OptimizerName } from './objective.js';
import { applyFlat, evalSums, flatWeights, gradLayout, shardGradient, shardRange } from './replica.js';
import type { FromReplica, ReplicaInit, ToReplica } from './replica-worker.js';
import { threadTime, threadTimeSince } from './thread-time.js';

/** Logical cores Node may use (the default worker count). */
export function availableCores(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/** Why a model cannot train data-parallel (null: it can). */
export function parallelBlocker(model: tfl.LayersModel, backend: string): string | null {
  if (backend !== 'wasm' && backend !== 'cpu') return `the ${backend} backend runs its own threads`;
  const bn = model.layers.find((l) => /BatchNormalization/.test(l.getClassName()));
  if (bn) return `layer ${bn.name} normalises over the batch, so shards would see other statistics`;
  return null;
}

function sharedFloat(src: Float32Array): Float32Array {
  const out = new Float32Array(new SharedArrayBuffer(src.byteLength));
  out.set(src);
  return out;
}

function sharedInt(src: ArrayLike<number>): Int32Array {
  const out = new Int32Array(new SharedArrayBuffer(src.length * 4));
  out.set(src);
  return out;
}

export interface MainContext {
  loss: LossName;
  net: tfl.LayersModel;
  fromLogits: boolean;
  vars: tf.Variable[];
  optimizer: tf.Optimizer;
  dropWindow: ShardWindow;
  drops: { seed?: number }[];
}

export interface PoolOptions {
  workers: number;
  loss: LossName;
  optimizer: OptimizerName;
  lr?: number;
  backend: BackendChoice;
}

/** A worker with a queue of waiters for its replies (each request gets exactly one reply). */
class Replica {
  private readonly waiting: { resolve: (m: FromReplica) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | null = null;
  constructor(readonly worker: Worker, readonly rank: number) {
    worker.on('message', (m: FromReplica) => {
      if (m.t === 'error') this.fail(new Error(`training replica ${rank} failed: ${m.message}`));
      else this.waiting.shift()?.resolve(m);
    });
    worker.on('error', (e) => this.fail(e instanceof Error ? e : new Error(String(e))));
    worker.on('exit', (code) => {
      if (this.waiting.length) this.fail(new Error(`training replica ${rank} exited (code ${code})`));
    });
  }
  private fail(e: Error): void {
    this.failure ??= e;
    for (const w of this.waiting.splice(0)) w.reject(this.failure);
  }
  next(): Promise<FromReplica> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }
  send(m: ToReplica): void {
    this.worker.postMessage(m);
  }
}

/** One replica's work in steps, summed over steps (ms). */
export interface ShardTiming {
  /** Wall time of its update (of the step before) and shard: batch copy, forward, backward, gradient readout. */
  wallMs: number;
  /** Of which the thread was on a CPU (0 where the OS does not say). */
  cpuMs: number;
  /** Of which the thread was runnable but waiting for a CPU. */
  queuedMs: number;
}

/**
 * Where data-parallel steps' wall time went, summed over the steps of the current epoch (ms):
 * the main thread's phases, and every replica's shard (main first).
 */
export interface StepTiming {
  steps: number;
  /** The main thread's own shard: batch copy, forward, backward, gradient readout. */
  computeMs: number;
  /** Waiting for the slowest worker after the own shard was done. */
  waitMs: number;
  /** Summing the workers' gradient slots into the update. */
  reduceMs: number;
  /** The optimiser update on the main replica, at the start of the next step (as the workers do theirs). */
  applyMs: number;
  /** Per replica (rank order, main thread first): its shard's wall, on-CPU and queued time. */
  shards: ShardTiming[];
}

export function emptyTiming(replicas: number): StepTiming {
  return {
    steps: 0,
    computeMs: 0,
    waitMs: 0,
    reduceMs: 0,
    applyMs: 0,
    shards: Array.from({ length: replicas }, () => ({ wallMs: 0, cpuMs: 0, queuedMs: 0 })),
  };
}

export class ReplicaPool {
  /** The workers have not applied the last summed gradient yet (they do when told next). */
  private pendingApply = false;
  /** Nor has the main replica: it applies it when the next step starts, alongside the workers. */
  private mainPending = false;
  private timingNow: StepTiming;
  private readonly mainGrad: Float32Array;
  private constructor(
    private readonly ctx: MainContext,
    private readonly batcher: Batcher,
    private readonly replicas: Replica[],
    readonly order: Int32Array,
    private readonly val: Int32Array,
    private readonly slots: Float32Array[],
    private readonly avg: Float32Array,
    readonly workers: number,
  ) {
    this.mainGrad = new Float32Array(avg.length);
    this.timingNow = emptyTiming(workers);
  }

  /** Step timing since the last setOrder (i.e. of the current epoch). */
  get timing(): StepTiming {
    return this.timingNow;
  }

  /** Start `o.workers - 1` worker replicas of `model` (the main thread is the first replica). */
  static async start(model: tfl.LayersModel, data: TrainSet, trainCount: number, val: readonly number[], ctx: MainContext, o: PoolOptions): Promise<ReplicaPool> {
    const layout = gradLayout(ctx.vars);
    const shared: Omit<TrainSet, 'groups'> = {
      x: sharedFloat(data.x),
      shape: data.shape,
      y: data.y instanceof Int32Array ? sharedInt(data.y) : sharedFloat(data.y),
      yShape: data.yShape,
      extra: data.extra?.map((e) => ({ data: sharedFloat(e.data), shape: e.shape })),
    };
    const order = new Int32Array(new SharedArrayBuffer(trainCount * 4));
    const valIdx = sharedInt(val);
    const avg = new Float32Array(new SharedArrayBuffer(layout.total * 4));
    const modelJson = JSON.stringify(model.toJSON(null, false));
    const weights = model.getWeights().map((w) => ({ data: w.dataSync() as Float32Array, shape: w.shape }));
    const slots: Float32Array[] = [];
    const replicas: Replica[] = [];
    try {
      for (let rank = 1; rank < o.workers; rank++) {
        const slot = new Float32Array(new SharedArrayBuffer(layout.total * 4));
        const init: ReplicaInit = {
          occmapReplica: true,
          rank,
          workers: o.workers,
          backend: o.backend,
          modelJson,
          weights,
          varShapes: ctx.vars.map((v) => v.shape),
          loss: o.loss,
          optimizer: o.optimizer,
          lr: o.lr,
          data: shared,
          order,
          val: valIdx,
          slot,
          avg,
        };
        const worker = new Worker(new URL('./replica-worker.js', import.meta.url), { workerData: init });
        slots.push(slot);
        replicas.push(new Replica(worker, rank));
      }
      await Promise.all(replicas.map((r) => r.next()));
    } catch (err) {
      await Promise.all(replicas.map((r) => r.worker.terminate()));
      throw err;
    }
    return new ReplicaPool(ctx, new Batcher(data), replicas, order, valIdx, slots, avg, o.workers);
  }

  /**
   * The main replica's share of the last update. Deferred from the end of a step to the start
   * of the next (or to an evaluation) so that it runs while the workers apply theirs, instead
   * of while they wait: one optimiser update less on every step's critical path.
   */
  private applyMain(): void {
    if (!this.mainPending) return;
    applyFlat(this.ctx.optimizer, this.ctx.vars, this.avg);
    this.mainPending = false;
  }

  /** Set the item order of the next epoch (indices into the TrainSet). */
  setOrder(order: ArrayLike<number>): void {
    this.order.set(order);
    this.timingNow = emptyTiming(this.workers);
  }

  /** One optimiser step over `order[from..to)`: returns the batch's loss sum and correct count. */
  async step(from: number, to: number, seeds: number[]): Promise<{ lossSum: number; correct: number }> {
    const apply = this.pendingApply;
    const replies = this.replicas.map((r) => r.next());
    for (const r of this.replicas) r.send({ t: 'step', apply, from, to, seeds });
    const { ctx, timing } = this;
    const ta = performance.now();
    const tt0 = threadTime();
    this.applyMain();
    const t0 = performance.now();
    timing.applyMs += t0 - ta;
    const [a, b] = shardRange(from, to, 0, this.workers);
    let scaledLoss = 0;
    let correct = 0;
    const sum = this.mainGrad;
    if (a < b) {
      ctx.drops.forEach((d, i) => (d.seed = seeds[i]));
      ctx.dropWindow.offset = 0;
      ctx.dropWindow.total = to - from;
      const batch = this.batcher.batch(this.order, a, b);
      try {
        ({ scaledLoss, correct } = shardGradient(ctx.net, ctx.fromLogits, ctx.loss, batch, (b - a) / (to - from), ctx.vars, sum));
      } finally {
        batch.dispose();
      }
    } else sum.fill(0);
    const t1 = performance.now();
    const own = threadTimeSince(tt0);
    const got = await Promise.all(replies);
    const t2 = performance.now();
    got.forEach((m, k) => {
      if (m.t !== 'done') throw new Error(`training replica ${k + 1} answered '${m.t}' to a step`);
      const sh = timing.shards[k + 1];
      sh.wallMs += m.wallMs;
      sh.cpuMs += m.cpuMs;
      sh.queuedMs += m.queuedMs;
      if (m.empty) return;
      scaledLoss += m.scaledLoss;
      correct += m.correct;
      const slot = this.slots[k];
      for (let j = 0; j < sum.length; j++) sum[j] += slot[j];
    });
    this.avg.set(sum);
    const t3 = performance.now();
    this.pendingApply = true;
    this.mainPending = true;
    timing.steps++;
    timing.computeMs += t1 - t0;
    timing.shards[0].wallMs += t1 - ta;
    timing.shards[0].cpuMs += own.cpuMs;
    timing.shards[0].queuedMs += own.queuedMs;
    timing.waitMs += t2 - t1;
    timing.reduceMs += t3 - t2;
    return { lossSum: scaledLoss * (to - from), correct };
  }

  /**
   * Validation loss (and accuracy) of the current weights, the validation items shared out
   * like a step's batch (workers first apply the last update).
   */
  async evaluate(): Promise<{ loss: number; acc?: number }> {
    const apply = this.pendingApply;
    this.applyMain();
    const replies = this.replicas.map((r) => r.next());
    for (const r of this.replicas) r.send({ t: 'eval', apply });
    this.pendingApply = false;
    const n = this.val.length;
    const [a, b] = shardRange(0, n, 0, this.workers);
    let { lossSum, correct } = evalSums(this.ctx.net, this.ctx.fromLogits, this.ctx.loss, this.batcher, this.val, a, b);
    for (const m of await Promise.all(replies)) {
      if (m.t !== 'evaluated') throw new Error(`training replica answered '${m.t}' to an evaluation`);
      lossSum += m.lossSum;
      correct += m.correct;
    }
    return this.ctx.loss === 'sparse_categorical_crossentropy' ? { loss: lossSum / n, acc: correct / n } : { loss: lossSum / n };
  }

  /** Every replica's weights (main first), after applying any pending update: for tests. */
  async replicaWeights(model: tfl.LayersModel): Promise<Float32Array[]> {
    this.applyMain();
    if (this.pendingApply) {
      const done = this.replicas.map((r) => r.next());
      this.replicas.forEach((r) => r.send({ t: 'apply' }));
      await Promise.all(done);
      this.pendingApply = false;
    }
    const replies = this.replicas.map((r) => r.next());
    this.replicas.forEach((r) => r.send({ t: 'weights' }));
    const got = await Promise.all(replies);
    return [flatWeights(model), ...got.map((m) => (m as { flat: Float32Array }).flat)];
  }

  async close(): Promise<void> {
    for (const r of this.replicas) r.send({ t: 'exit' });
    await Promise.all(this.replicas.map((r) => r.worker.terminate()));
  }
}
