/**
 * Exact maps for the server: one worker thread (its own classifier copy) computing one map at
 * a time, in arrival order, behind a bounded queue. A full queue is a 503, not a pile-up; a
 * worker that dies fails the maps it held and is started again for the next request.
 */
import { Worker } from 'node:worker_threads';
import { stopWorker } from '../runtime/threads.js';
import type { ExactOptions, RawMaps } from '../occlusion/exact.js';
import { UserError } from '../util/errors.js';
import type { EngineChoice } from './models.js';
import { HttpError } from './stamp.js';

export interface ExactWorkerData {
  classifier: string;
  engine: EngineChoice;
  threads?: number;
  /** The classifier's input is the stamp zero-padded by this much (models/load.ts fitToStamps). */
  pad?: number;
  /** Nice value of the worker thread (Linux: per thread), e.g. 10: estimates come first. */
  nice?: number;
}

export interface ExactJob {
  type: 'job';
  id: number;
  images: Float32Array;
  shape: [number, number, number, number];
  opts: ExactOptions;
}

export type FromExactWorker =
  | { type: 'ready'; engine: string; hash: string }
  | { type: 'done'; id: number; maps: Float32Array; raw?: RawMaps; targets: Int32Array; baseProbs: Float32Array; inferences: number; ms: number }
  | { type: 'error'; id: number; message: string; user: boolean };

export interface ExactOutcome {
  maps: Float32Array;
  /** The maps before normalisation (absent when not normalised): their order is the exact map's importance order. */
  raw?: RawMaps;
  targets: Int32Array;
  baseProbs: Float32Array;
  inferences: number;
  /** Time the worker spent on this map. */
  computeMs: number;
  /** Time it waited behind other maps. */
  queueMs: number;
}

interface Queued {
  job: ExactJob;
  at: number;
  started?: number;
  resolve: (o: ExactOutcome) => void;
  reject: (err: unknown) => void;
}

export type PoolState = 'starting' | 'ready' | 'down' | 'closed';

export class ExactPool {
  private worker: Worker | null = null;
  private queue: Queued[] = [];
  private active: Queued | null = null;
  private nextId = 1;
  private recentMs: number[] = [];
  state: PoolState = 'starting';
  engine = '';
  lastError = '';

  private constructor(
    private readonly data: ExactWorkerData,
    readonly maxQueue: number,
  ) {}

  /** Starts the worker and waits until its classifier is loaded (a UserError if it cannot). */
  static async start(data: ExactWorkerData, o: { maxQueue?: number } = {}): Promise<ExactPool> {
    const pool = new ExactPool(data, o.maxQueue ?? 16);
    await pool.spawn();
    return pool;
  }

  private starting: Promise<void> | null = null;

  private spawn(): Promise<void> {
    // Concurrent restarts share one worker.
    this.starting ??= this.spawnWorker().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  private spawnWorker(): Promise<void> {
    this.state = 'starting';
    const worker = new Worker(new URL('./exact-worker.js', import.meta.url), { workerData: this.data });
    this.worker = worker;
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      worker.on('message', (m: FromExactWorker) => {
        if (m.type === 'ready') {
          ready = true;
          this.state = 'ready';
          this.engine = m.engine;
          resolve();
          this.pump();
        } else if (m.type === 'error' && m.id === -1) {
          this.lastError = m.message;
          reject(m.user ? new UserError(m.message) : new Error(m.message));
        } else {
          this.finish(m);
        }
      });
      worker.on('error', (err) => {
        this.lastError = err.message;
        if (!ready) reject(err);
      });
      worker.on('exit', (code) => {
        const why = new HttpError(503, `the exact-map worker stopped (exit code ${code}${this.lastError ? `: ${this.lastError}` : ''}); retry`);
        if (!ready) reject(this.state === 'closed' ? new HttpError(503, 'the server is shutting down') : why);
        if (this.worker !== worker) return;
        this.worker = null;
        if (this.state === 'closed') return;
        this.state = 'down';
        this.failAll(why);
      });
    });
  }

  private failAll(err: unknown): void {
    const all = [...(this.active ? [this.active] : []), ...this.queue];
    this.active = null;
    this.queue = [];
    all.forEach((q) => q.reject(err));
  }

  private finish(m: Exclude<FromExactWorker, { type: 'ready' }>): void {
    const q = this.active;
    if (!q || q.job.id !== m.id) return;
    this.active = null;
    if (m.type === 'done') {
      const computeMs = m.ms;
      this.recentMs = [...this.recentMs.slice(-7), computeMs];
      q.resolve({ maps: m.maps, raw: m.raw, targets: m.targets, baseProbs: m.baseProbs, inferences: m.inferences, computeMs, queueMs: (q.started ?? q.at) - q.at });
    } else {
      q.reject(m.user ? new HttpError(422, m.message) : new Error(m.message));
    }
    this.pump();
  }

  private pump(): void {
    if (this.active || this.state !== 'ready' || !this.worker) return;
    const q = this.queue.shift();
    if (!q) return;
    this.active = q;
    q.started = performance.now();
    this.worker.postMessage(q.job);
  }

  /** Maps waiting or being computed. */
  get pending(): number {
    return this.queue.length + (this.active ? 1 : 0);
  }

  /** Typical time of one map here (mean of the last few), 0 before the first. */
  get typicalMs(): number {
    return this.recentMs.length ? this.recentMs.reduce((a, b) => a + b, 0) / this.recentMs.length : 0;
  }

  /**
   * `signal`: the client went away; a map still waiting is dropped from the queue (one already
   * running finishes, the worker cannot be interrupted mid-batch).
   */
  async run(images: Float32Array, shape: [number, number, number, number], opts: ExactOptions, signal?: AbortSignal): Promise<ExactOutcome> {
    if (this.state === 'closed') throw new HttpError(503, 'the server is shutting down');
    if (this.pending >= this.maxQueue) {
      throw new HttpError(503, `the exact-map queue is full (${this.pending} maps waiting or running); retry later`);
    }
    if (this.state === 'down') {
      // Restart for this request; a failing restart fails it (and the next request tries again).
      await this.spawn().catch((err: Error) => {
        throw new HttpError(503, `the exact-map worker cannot start: ${err.message}`);
      });
      // Other requests may have queued while the worker started: the bound holds for them too.
      if ((this.state as PoolState) === 'closed') throw new HttpError(503, 'the server is shutting down');
      if (this.pending >= this.maxQueue) {
        throw new HttpError(503, `the exact-map queue is full (${this.pending} maps waiting or running); retry later`);
      }
    }
    return new Promise<ExactOutcome>((resolve, reject) => {
      // Copies: the caller keeps its arrays; the job's buffers move to the worker.
      const job: ExactJob = { type: 'job', id: this.nextId++, images: images.slice(), shape, opts: { ...opts, labels: opts.labels?.slice() } };
      const q: Queued = { job, at: performance.now(), resolve, reject };
      this.queue.push(q);
      signal?.addEventListener(
        'abort',
        () => {
          const i = this.queue.indexOf(q);
          if (i < 0) return;
          this.queue.splice(i, 1);
          reject(new HttpError(499, 'the client closed the request'));
        },
        { once: true },
      );
      this.pump();
    });
  }

  async close(): Promise<void> {
    this.state = 'closed';
    this.failAll(new HttpError(503, 'the server is shutting down'));
    const w = this.worker;
    this.worker = null;
    // Never terminate(): a thread stopped inside ONNX Runtime aborts the process. It finishes
    // the batch in hand, releases its session and ends (runtime/threads.ts).
    if (w) await stopWorker(w, { onForced: (why) => process.stderr.write(`serve: ${why}\n`) });
  }
}
