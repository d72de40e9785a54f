/**
 * The page's exact-map Web Worker: its own onnxruntime-web session of the classifier, and the
 * library's exactMaps (the engine `occmap occlude` runs: same geometry, fill, target and
 * scoring, same normalisation), so the map equals the CLI's up to the runtimes' float rounding.
 * Progress after every classifier call; a cancelled map stops at the next call.
 */
import { exactMaps, inferencesPerMap } from '../occlusion/exact.js';
import type { Predictor } from '../models/predictor.js';
import { configureOrt, WebPredictor } from './engine.js';
import { PAGE_EXACT_BATCH, type FromExactWorker, type ToExactWorker } from './exact-protocol.js';

// The DOM typings describe a window; a dedicated worker's global has the Worker-like half.
const scope = self as unknown as { postMessage(m: unknown, transfer?: Transferable[]): void; addEventListener(t: 'message', f: (e: MessageEvent) => void): void };
const post = (m: FromExactWorker, transfer: Transferable[] = []): void => scope.postMessage(m, transfer);

let predictor: Promise<WebPredictor> | null = null;
const cancelled = new Set<number>();
// One map at a time: onnxruntime-web runs one call per session at once.
let queue: Promise<void> = Promise.resolve();

class Cancelled extends Error {
  override name = 'AbortError';
}

/** The predictor, counting inferences for progress and stopping a cancelled map between calls. */
function counting(p: Predictor, id: number, total: number): Predictor {
  let done = 0;
  return {
    inputShape: p.inputShape,
    numClasses: p.numClasses,
    channels: p.channels,
    engine: p.engine,
    hash: p.hash,
    dispose: () => undefined,
    predict: async (x, n) => {
      if (cancelled.has(id)) throw new Cancelled('cancelled');
      const out = await p.predict(x, n);
      done += n;
      post({ type: 'progress', id, inferences: done, total });
      return out;
    },
  };
}

async function run(msg: Extract<ToExactWorker, { type: 'run' }>): Promise<void> {
  try {
    const p = await predictor!;
    const [n, h, w] = msg.shape;
    const total = n * inferencesPerMap(msg.opts, h, w);
    const t0 = performance.now();
    const r = await exactMaps(counting(p, msg.id, total), msg.images, msg.shape, { batchSize: PAGE_EXACT_BATCH, ...msg.opts });
    const ms = performance.now() - t0;
    post({ type: 'done', id: msg.id, maps: r.maps, targets: r.targets, baseProbs: r.baseProbs, inferences: r.inferences, ms }, [
      r.maps.buffer as ArrayBuffer,
      r.targets.buffer as ArrayBuffer,
      r.baseProbs.buffer as ArrayBuffer,
    ]);
  } catch (err) {
    post({ type: 'error', id: msg.id, message: (err as Error)?.name === 'AbortError' ? 'cancelled' : String((err as Error)?.message ?? err) });
  } finally {
    cancelled.delete(msg.id);
  }
}

scope.addEventListener('message', (e: MessageEvent) => {
  const msg = e.data as ToExactWorker;
  if (msg.type === 'init') {
    configureOrt(msg.ortBase, msg.threads);
    const t0 = performance.now();
    predictor = WebPredictor.load(msg.classifier, msg.url, msg.threads, PAGE_EXACT_BATCH);
    predictor.then(
      (p) => post({ type: 'ready', engine: p.engine, loadMs: performance.now() - t0 }),
      (err: Error) => post({ type: 'error', id: -1, message: err?.message ?? String(err) }),
    );
  } else if (msg.type === 'cancel') {
    cancelled.add(msg.id);
  } else if (msg.type === 'run') {
    queue = queue.then(() => run(msg));
  }
});
