/**
 * The viewer's models in the browser: onnxruntime-web (wasm) sessions behind the library's own
 * interfaces, so the page runs the same code as Node: a Predictor for the classifier (what
 * exactMaps and the metrics take) and a RunnerExplainer for the explainer (channel selection,
 * padding, conditioning, cropping and ensemble averaging are the library's). Runs on the page's
 * main thread (estimates) and in the exact-map worker (src/web/exact-worker.ts).
 */
import * as ort from 'onnxruntime-web/wasm';
import { RunnerExplainer, type Runner } from '../explainer/runner.js';
import { labelUnits } from '../models/condition.js';
import type { Predictor } from '../models/predictor.js';
import { nhwcToNchw, probabilitiesFrom } from '../runtime/onnx-arrays.js';
import { runBatchedWith } from '../runtime/onnx-batch.js';
import type { ClassifierManifest, ExplainerManifest } from './manifest.js';

/**
 * Threads onnxruntime-web may use here: several only when SharedArrayBuffer is allowed (the
 * page is cross-origin isolated), at most 4 and the cores; `?threads=N` in the page's URL
 * asks for fewer (to compare).
 */
export function availableThreads(): number {
  const g = globalThis as { crossOriginIsolated?: boolean; navigator?: { hardwareConcurrency?: number }; location?: { search?: string } };
  const cores = g.navigator?.hardwareConcurrency ?? 1;
  const asked = Number(new URLSearchParams(g.location?.search ?? '').get('threads'));
  const cap = Number.isInteger(asked) && asked >= 1 ? asked : 4;
  return g.crossOriginIsolated === true ? Math.max(1, Math.min(cap, cores)) : 1;
}

/**
 * Point onnxruntime-web at its files (`base`: the folder URL holding ort-wasm-simd-threaded.*)
 * and choose its threads; once per JS realm (page, worker), before the first session.
 */
export function configureOrt(base: string, threads: number): void {
  ort.env.wasm.wasmPaths = base.endsWith('/') ? base : `${base}/`;
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = 'error';
}

export function ortVersion(): string {
  return ort.env.versions?.web ?? 'unknown';
}

async function fetchBytes(url: string, what: string): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${what} (${url}): ${res.status} ${res.statusText}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** A session with the options the Node side uses (all graph optimisations). */
export async function createSession(url: string, what: string): Promise<ort.InferenceSession> {
  const bytes = await fetchBytes(url, what);
  try {
    return await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  } catch (err) {
    throw new Error(`${what} (${url}) cannot be loaded by onnxruntime-web: ${(err as Error).message}`);
  }
}

/** The classifier as a Predictor, over an onnxruntime-web session. */
export class WebPredictor implements Predictor {
  readonly inputShape: [number, number, number];
  readonly numClasses: number;
  readonly channels?: number[];
  readonly hash: string;
  readonly engine: string;
  private disposed = false;

  constructor(
    private readonly session: ort.InferenceSession,
    private readonly cfg: ClassifierManifest,
    threads: number,
    private readonly batchSize = 1024,
  ) {
    this.inputShape = cfg.inputShape;
    this.numClasses = cfg.numClasses;
    this.channels = cfg.channels;
    this.hash = cfg.hash;
    this.engine = `onnxruntime-web (wasm, ${threads} thread${threads === 1 ? '' : 's'})`;
  }

  static async load(cfg: ClassifierManifest, url: string, threads: number, batchSize?: number): Promise<WebPredictor> {
    return new WebPredictor(await createSession(url, 'the classifier'), cfg, threads, batchSize);
  }

  async predict(images: Float32Array, n: number): Promise<Float32Array> {
    if (this.disposed) throw new Error('WebPredictor used after dispose()');
    const [h, w, c] = this.inputShape;
    if (images.length !== n * h * w * c) throw new RangeError(`predict: ${images.length} values for ${n} images of ${h}x${w}x${c}`);
    const nchw = this.cfg.layout === 'NCHW';
    const data = nchw ? nhwcToNchw(images, n, h, w, c) : images;
    const shape = nchw ? [c, h, w] : [h, w, c];
    const name = this.session.inputNames[0];
    const out = await runBatchedWith(ort.Tensor, this.session, [{ name, data, shape }], n, {
      batchSize: this.batchSize,
      fixedBatch: this.cfg.fixedBatch,
      output: this.session.outputNames[0],
    });
    return probabilitiesFrom(out.data, n, this.cfg.units, this.cfg.outputs);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    void this.session.release();
  }
}

/** The explainer's members as library Runners over onnxruntime-web sessions. */
export async function loadWebExplainer(cfg: ExplainerManifest, urls: string[], threads: number): Promise<RunnerExplainer> {
  const card = cfg.card;
  const S = card.inputSize;
  const C = card.channels?.length ?? Number((card.inputShape as number[] | undefined)?.[2]);
  if (!(Number.isInteger(C) && C >= 1)) throw new Error("the explainer's card gives neither 'channels' nor 'inputShape'");
  const nLabel = labelUnits(card.condition, card.numClasses);
  const want = nLabel > 0 ? ['image', 'label'] : ['image'];
  const runners: Runner[] = [];
  for (const [k, url] of urls.entries()) {
    const session = await createSession(url, urls.length > 1 ? `explainer member ${k}` : 'the explainer');
    if (session.inputNames.join() !== want.join()) {
      throw new Error(`${url} takes inputs [${session.inputNames.join(', ')}], expected [${want.join(', ')}] for condition '${card.condition}'`);
    }
    runners.push({
      run: async (x, cond, n) => {
        const feeds = [{ name: 'image', data: x, shape: [S, S, C] }];
        if (cond) feeds.push({ name: 'label', data: cond, shape: [nLabel] });
        return (await runBatchedWith(ort.Tensor, session, feeds, n, { batchSize: 256 })).data;
      },
      dispose: () => void session.release(),
    });
  }
  const engine = `onnxruntime-web (wasm, ${threads} thread${threads === 1 ? '' : 's'})`;
  return new RunnerExplainer(card, engine, runners, C, nLabel, cfg.name);
}
