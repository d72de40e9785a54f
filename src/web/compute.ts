/**
 * What the viewer computes for a stamp, in the page or on the server, with one result shape:
 * probabilities and the estimated map (classifier, then the explainer conditioned as it was
 * trained), then the exact map and the metrics between the two. The in-page path runs the
 * library's own functions (conditionClass, exactTarget, exactMaps in a worker, compareMaps),
 * the server path asks POST /explain, which runs the same functions in Node.
 */
import { conditionClass, exactTarget, type ClassChoice } from '../explainer/condition.js';
import { compareMaps, type MapComparison } from '../metrics/compare.js';
import type { RunnerExplainer } from '../explainer/runner.js';
import { argmax, selectChannels } from '../models/predictor.js';
import { explainerProblem } from '../serve/fit.js';
import { toNested, type ChannelKind } from '../serve/stamp.js';
import type { ExactClient } from './exact-client.js';
import type { WebPredictor } from './engine.js';
import type { Manifest } from './manifest.js';

export interface PageStamp {
  /** h*w*c, HWC. */
  image: Float32Array;
  h: number;
  w: number;
  c: number;
  /** All the data's channels, or only the classifier's. */
  kind: ChannelKind;
  label?: number;
}

export interface Estimate {
  probabilities: Float32Array;
  predicted: number;
  label: number | null;
  condition: ClassChoice | null;
  map: Float32Array;
  std?: Float32Array;
  timings: { classifyMs: number; estimateMs: number; totalMs: number };
  where: 'page' | 'server';
  engine: string;
}

export interface Exact {
  map: Float32Array;
  target: { class: number; source: ClassChoice['source'] };
  inferences: number;
  metrics: MapComparison;
  timings: { exactMs: number; totalMs: number; queueMs?: number };
  where: 'page' | 'server';
  engine: string;
}

export interface Backend {
  readonly where: 'page' | 'server';
  estimate(s: PageStamp): Promise<Estimate>;
  exact(s: PageStamp, est: Estimate, onProgress?: (done: number, total: number) => void, signal?: AbortSignal): Promise<Exact>;
}

/** The metrics registry's comparison, called as the server calls it (same numbers). */
export function metricsOf(m: Manifest, est: Float32Array, exact: Float32Array, h: number, w: number): MapComparison {
  const { score, normalize } = m.exact.params;
  return compareMaps({ data: est, shape: [h, w] }, { data: exact, shape: [h, w] }, { score, normalize }).mean;
}

/** The browser's own models: estimates on the page's thread, exact maps in the worker. */
export class PageBackend implements Backend {
  readonly where = 'page';
  // One model call at a time on this thread: the list's background scoring and a stamp's
  // estimate share the sessions, and onnxruntime-web runs one call per session at once.
  private lock: Promise<unknown> = Promise.resolve();
  constructor(
    private readonly m: Manifest,
    readonly predictor: WebPredictor,
    readonly explainer: RunnerExplainer,
    private readonly exactClient: ExactClient,
  ) {}

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const next = this.lock.then(f, f);
    this.lock = next.catch(() => undefined);
    return next;
  }

  private modelInput(s: PageStamp, n = 1): Float32Array {
    return s.kind === 'data' ? selectChannels(s.image, n, s.h, s.w, s.c, this.predictor.channels) : s.image;
  }

  async estimate(s: PageStamp): Promise<Estimate> {
    const problem = explainerProblem(this.explainer, this.predictor, s.kind, s.c);
    if (problem) throw new Error(problem);
    return this.serial(() => this.estimateNow(s));
  }

  private async estimateNow(s: PageStamp): Promise<Estimate> {
    const t0 = performance.now();
    const probs = await this.predictor.predict(this.modelInput(s), 1);
    const t1 = performance.now();
    const predicted = argmax(probs);
    const cond = conditionClass(this.explainer.card, s.label, predicted);
    const est = await this.explainer.estimate(s.image, [1, s.h, s.w, s.c], cond ? [cond.class] : undefined);
    const t2 = performance.now();
    return {
      probabilities: probs,
      predicted,
      label: s.label ?? null,
      condition: cond ?? null,
      map: est.maps,
      std: est.std,
      timings: { classifyMs: t1 - t0, estimateMs: t2 - t1, totalMs: t2 - t0 },
      where: 'page',
      engine: this.explainer.engine,
    };
  }

  async exact(s: PageStamp, est: Estimate, onProgress?: (done: number, total: number) => void, signal?: AbortSignal): Promise<Exact> {
    const t0 = performance.now();
    const target = exactTarget(this.m.exact.params, est.condition ?? undefined, s.label, est.predicted);
    const r = await this.exactClient.run(s.image, [1, s.h, s.w, s.c], { ...this.m.exact.params, ...target.opts, modelChannels: s.kind === 'model' }, onProgress, signal);
    return {
      map: r.maps,
      target: { class: r.targets[0], source: target.source },
      inferences: r.inferences,
      metrics: metricsOf(this.m, est.map, r.maps, s.h, s.w),
      timings: { exactMs: r.ms, totalMs: performance.now() - t0 },
      where: 'page',
      engine: this.predictor.engine,
    };
  }

  /**
   * Probabilities and estimates of many stamps (the dataset, for the list's P and disagreement
   * columns), in chunks that let the page breathe between them.
   */
  async scoreAll(
    images: Float32Array,
    shape: [number, number, number, number],
    labels: Int32Array | undefined,
    onChunk: (from: number, to: number, probs: Float32Array, maps: Float32Array) => void,
    signal?: AbortSignal,
    chunk = 64,
  ): Promise<void> {
    const [n, h, w, c] = shape;
    const k = this.predictor.numClasses;
    for (let from = 0; from < n; from += chunk) {
      if (signal?.aborted) return;
      const to = Math.min(n, from + chunk);
      const m = to - from;
      const x = images.subarray(from * h * w * c, to * h * w * c);
      const [probs, maps] = await this.serial(async () => {
        const p = await this.predictor.predict(selectChannels(x, m, h, w, c, this.predictor.channels), m);
        const conds: number[] = [];
        for (let j = 0; j < m; j++) {
          const cc = conditionClass(this.explainer.card, labels?.[from + j], argmax(p, j * k, k));
          if (cc) conds.push(cc.class);
        }
        return [p, (await this.explainer.estimate(x, [m, h, w, c], conds.length ? conds : undefined)).maps] as const;
      });
      onChunk(from, to, probs, maps);
      await new Promise((r) => setTimeout(r, 0));
    }
  }
}

const flat = (rows: number[][]): Float32Array => Float32Array.from(rows.flat());

interface ServerReply {
  probabilities: number[];
  predicted: number;
  label: number | null;
  condition: ClassChoice | null;
  estimate: { map: number[][]; std?: number[][]; engine: string };
  exact: null | { map: number[][]; target: { class: number; source: ClassChoice['source'] }; inferences: number; engine: string };
  metrics?: Record<string, number>;
  timings: Record<string, number>;
}

/** `occmap serve`'s POST /explain: the same computations in Node (the page's former only path). */
export class ServerBackend implements Backend {
  readonly where = 'server';
  constructor(private readonly url: string) {}

  private async post(s: PageStamp, exact: boolean, signal?: AbortSignal): Promise<ServerReply> {
    const body = JSON.stringify({ image: toNested(s.image, s.h, s.w, s.c), ...(s.label !== undefined ? { label: s.label } : {}) });
    const res = await fetch(`${this.url}${exact ? '?exact=1' : ''}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal });
    let reply: unknown;
    try {
      reply = await res.json();
    } catch {
      throw new Error(`the server answered ${res.status} ${res.statusText}`);
    }
    if (!res.ok) throw new Error((reply as { error?: string }).error ?? `${res.status} ${res.statusText}`);
    return reply as ServerReply;
  }

  async estimate(s: PageStamp): Promise<Estimate> {
    const t0 = performance.now();
    const r = await this.post(s, false);
    return {
      probabilities: Float32Array.from(r.probabilities),
      predicted: r.predicted,
      label: r.label,
      condition: r.condition,
      map: flat(r.estimate.map),
      std: r.estimate.std ? flat(r.estimate.std) : undefined,
      timings: { classifyMs: r.timings.classifyMs, estimateMs: r.timings.estimateMs, totalMs: performance.now() - t0 },
      where: 'server',
      engine: r.estimate.engine,
    };
  }

  async exact(s: PageStamp, _est: Estimate, _onProgress?: (done: number, total: number) => void, signal?: AbortSignal): Promise<Exact> {
    const t0 = performance.now();
    const r = await this.post(s, true, signal);
    const m = r.metrics ?? {};
    return {
      map: flat(r.exact!.map),
      target: r.exact!.target,
      inferences: r.exact!.inferences,
      metrics: Object.fromEntries(Object.entries(m).map(([k, v]) => [k === 'iouTop10' ? 'iou' : k, v])) as MapComparison,
      timings: { exactMs: r.timings.exactMs, queueMs: r.timings.exactQueueMs, totalMs: performance.now() - t0 },
      where: 'server',
      engine: r.exact!.engine,
    };
  }
}
