/**
 * The page's side of the exact-map worker: one map at a time (a newer request cancels the
 * running one, which stops at its next classifier call), progress callbacks, and the worker's
 * own load time kept apart from the map's.
 */
import type { ExactOptions } from '../occlusion/exact.js';
import type { ClassifierManifest } from './manifest.js';
import type { FromExactWorker, ToExactWorker } from './exact-protocol.js';

export interface PageExactResult {
  maps: Float32Array;
  targets: Int32Array;
  baseProbs: Float32Array;
  inferences: number;
  /** Time the worker spent on this map. */
  ms: number;
}

interface Pending {
  resolve: (r: PageExactResult) => void;
  reject: (e: Error) => void;
  onProgress?: (done: number, total: number) => void;
}

export class ExactClient {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private active = -1;
  readonly ready: Promise<{ engine: string; loadMs: number }>;

  constructor(workerUrl: string, classifier: ClassifierManifest, classifierUrl: string, ortBase: string, threads: number) {
    this.worker = new Worker(workerUrl, { type: 'module', name: 'occmap-exact' });
    let ready!: (v: { engine: string; loadMs: number }) => void;
    let failed!: (e: Error) => void;
    this.ready = new Promise((res, rej) => ((ready = res), (failed = rej)));
    this.worker.addEventListener('message', (e: MessageEvent) => {
      const m = e.data as FromExactWorker;
      if (m.type === 'ready') ready({ engine: m.engine, loadMs: m.loadMs });
      else if (m.type === 'progress') this.pending.get(m.id)?.onProgress?.(m.inferences, m.total);
      else if (m.type === 'done') this.settle(m.id, (p) => p.resolve({ maps: m.maps, targets: m.targets, baseProbs: m.baseProbs, inferences: m.inferences, ms: m.ms }));
      else if (m.type === 'error') {
        if (m.id === -1) failed(new Error(`exact-map worker: ${m.message}`));
        else this.settle(m.id, (p) => p.reject(Object.assign(new Error(m.message), { name: m.message === 'cancelled' ? 'AbortError' : 'Error' })));
      }
    });
    this.worker.addEventListener('error', (e) => failed(new Error(`exact-map worker failed to start: ${e.message ?? 'unknown error'}`)));
    this.post({ type: 'init', classifier, url: classifierUrl, ortBase, threads });
  }

  private post(m: ToExactWorker, transfer: Transferable[] = []): void {
    this.worker.postMessage(m, transfer);
  }

  private settle(id: number, f: (p: Pending) => void): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (this.active === id) this.active = -1;
    f(p);
  }

  /** Exact map(s) of `images` (N,H,W,C, the data's or the model's channels as opts say). */
  async run(
    images: Float32Array,
    shape: [number, number, number, number],
    opts: ExactOptions,
    onProgress?: (done: number, total: number) => void,
    signal?: AbortSignal,
  ): Promise<PageExactResult> {
    await this.ready;
    if (this.active >= 0) this.cancel(this.active);
    const id = this.nextId++;
    this.active = id;
    const copy = images.slice();
    const result = new Promise<PageExactResult>((resolve, reject) => this.pending.set(id, { resolve, reject, onProgress }));
    signal?.addEventListener('abort', () => this.cancel(id), { once: true });
    this.post({ type: 'run', id, images: copy, shape, opts }, [copy.buffer]);
    return result;
  }

  private cancel(id: number): void {
    if (this.pending.has(id)) this.post({ type: 'cancel', id });
  }

  terminate(): void {
    this.worker.terminate();
    for (const [, p] of this.pending) p.reject(Object.assign(new Error('cancelled'), { name: 'AbortError' }));
    this.pending.clear();
  }
}
