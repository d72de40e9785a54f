/**
 * Stopping worker threads that hold ONNX Runtime sessions without a native abort.
 *
 * Why: `worker.terminate()` (and a process exiting with workers still running, which
 * terminates them) stops the thread's JavaScript at once. If the thread is inside an
 * onnxruntime-node call at that moment (a session run, a model load, the tensors built from a
 * run's outputs), the binding's next N-API call fails in the terminating environment, it
 * throws a Napi::Error that can no longer become a JavaScript exception, and node-addon-api
 * ends the whole process: "terminate called after throwing an instance of 'Napi::Error'",
 * SIGABRT (see nodejs/node-addon-api#902 and the NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS
 * discussion in Axosoft/nsfw#185; onnxruntime-node is built without that option).
 *
 * So a thread is never terminated while it may be running the engine: the parent asks it to
 * stop (`stopWorker`), the thread lets the batch in hand finish, refuses further batches,
 * releases its sessions while its environment is still whole, closes its port and ends by
 * itself (`ThreadLifecycle`). `terminate()` remains only as a last resort after a long grace.
 */
import type { MessagePort, Worker } from 'node:worker_threads';
import type { Predictor } from '../models/predictor.js';

/** Message asking a thread to stop; every occmap worker entry understands it. */
export const STOP = { type: 'stop' } as const;

/** Thrown inside a thread by a guarded predictor once stopping has begun. */
export class StopRequested extends Error {
  constructor() {
    super('the thread is stopping');
    this.name = 'StopRequested';
  }
}

/**
 * Parent side: ask `worker` to stop and wait until its thread has ended by itself. Only if it
 * has not within `graceMs` (one batch takes far less) is it terminated, with `onForced` told.
 */
export async function stopWorker(worker: Worker, o: { graceMs?: number; onForced?: (why: string) => void } = {}): Promise<void> {
  if (worker.threadId < 0) return; // already ended
  const exited = new Promise<'exit'>((resolve) => worker.once('exit', () => resolve('exit')));
  try {
    worker.postMessage(STOP);
  } catch {
    // the port is closing: the thread is ending anyway
  }
  const graceMs = o.graceMs ?? 120_000;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), graceMs);
  });
  const how = await Promise.race([exited, late]);
  clearTimeout(timer);
  if (how === 'late') {
    o.onForced?.(`a worker thread did not stop within ${graceMs / 1000} s; terminating it`);
    await worker.terminate();
  }
}

/**
 * Thread side: tracks the work in flight (model loads, jobs) so that `stop` can wait for it,
 * and guards predictors so that a job in hand ends at its next batch once stopping began.
 */
export class ThreadLifecycle {
  private stopping = false;
  private stopped: Promise<void> | null = null;
  private readonly busy = new Set<Promise<unknown>>();

  get isStopping(): boolean {
    return this.stopping;
  }

  /** Run `work` as tracked work: `stop` waits for it (its failure is the caller's to handle). */
  track<T>(work: () => Promise<T>): Promise<T> {
    const p = this.stopping ? Promise.reject(new StopRequested()) : work();
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    this.busy.add(settled);
    void settled.then(() => this.busy.delete(settled));
    return p;
  }

  /**
   * `p` whose engine calls (predict, and any other method but dispose) refuse new work once
   * stopping began; the call running finishes.
   */
  guard<P extends Predictor>(p: P): P {
    return new Proxy(p, {
      get: (target, prop) => {
        const v = Reflect.get(target, prop, target) as unknown;
        if (typeof v !== 'function') return v;
        const f = v as (...a: unknown[]) => unknown;
        if (prop === 'dispose') return f.bind(target);
        return (...args: unknown[]) => {
          if (this.stopping) return Promise.reject(new StopRequested());
          return f.apply(target, args);
        };
      },
    });
  }

  /**
   * Stop: refuse new work, wait for the work in flight, `release` the sessions (the
   * environment is still whole), then close `port` so the thread ends. Idempotent.
   */
  stop(port: MessagePort, release: () => void | Promise<void>): Promise<void> {
    this.stopping = true;
    this.stopped ??= (async () => {
      while (this.busy.size > 0) await Promise.all([...this.busy]);
      try {
        await release();
      } finally {
        port.close();
      }
    })();
    return this.stopped;
  }
}
