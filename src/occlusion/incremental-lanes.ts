/**
 * Lanes of the incremental engine: worker threads, each with its own engine and
 * single-threaded ONNX Runtime sessions, computing a share of every call's items while the
 * calling thread computes its own (IncrementalEngine.occlusionProbs).
 *
 * Why threads and not intra-op threads: onnxruntime-node runs a session on the calling
 * thread, so one thread's JavaScript gathering leaves ONNX Runtime idle, and the engine's
 * many small window convolutions keep two intra-op threads waiting on each other. Two lanes
 * of one thread keep both cores busy all the time (measured: `occmap bench --only-incremental`
 * races 1 lane x 2 threads against 2 lanes x 1 thread).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { stopWorker } from '../runtime/threads.js';
import type { IncrementalOptions, LaneRequest, LaneResult, RemoteLane } from './incremental.js';
import type { Net } from './net.js';

export interface LaneWorkerData {
  net: Net;
  opts: IncrementalOptions;
  /** ONNX Runtime intra-op threads of the lane's sessions. */
  threads: number;
}

export type ToLane = { type: 'run'; id: number; req: LaneRequest } | { type: 'stop' };
export type FromLane = { type: 'done'; id: number; result: LaneResult } | { type: 'error'; id: number; message: string };

/**
 * Whether lanes can run: they load onnxruntime-node in their threads (the wasm fallback
 * brings its own threads).
 */
export function lanesAvailable(): boolean {
  if (process.env.OCCMAP_ORT === 'web') return false;
  try {
    createRequire(import.meta.url).resolve('onnxruntime-node');
    return true;
  } catch {
    return false;
  }
}

/** A lane in a worker thread, started on first use; idle, it does not keep the process alive. */
export class WorkerLane implements RemoteLane {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, { resolve: (r: LaneResult) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private disposed = false;

  constructor(private readonly data: LaneWorkerData) {}

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(new URL('./incremental-lane-worker.js', import.meta.url), { workerData: this.data });
    w.unref();
    w.on('message', (m: FromLane) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0 && !this.disposed) w.unref();
      if (m.type === 'done') p.resolve(m.result);
      else p.reject(new Error(`incremental engine lane: ${m.message}`));
    });
    w.on('error', (err) => {
      this.worker = null;
      this.failAll(err);
    });
    w.on('exit', (code) => {
      if (this.worker === w) this.worker = null;
      this.failAll(new Error(`incremental engine lane thread exited (code ${code})`));
    });
    this.worker = w;
    return w;
  }

  run(req: LaneRequest): Promise<LaneResult> {
    if (this.disposed) return Promise.reject(new Error('incremental engine used after dispose()'));
    const w = this.start();
    const id = this.nextId++;
    return new Promise<LaneResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.ref();
      w.postMessage({ type: 'run', id, req } satisfies ToLane);
    });
  }

  /** Ask the thread to finish what it holds, release its sessions and end (runtime/threads.ts: never terminate it). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const w = this.worker;
    if (!w) return;
    // kept alive until it has ended by itself: exiting under it could abort inside ONNX Runtime
    w.ref();
    void stopWorker(w);
  }
}
