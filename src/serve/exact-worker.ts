/**
 * The server's exact-map thread: holds its own copy of the classifier and computes one exact
 * map at a time, so the 600-odd inferences of a map never hold up the main thread (tfjs
 * inference is synchronous) while estimates are being served.
 */
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { Predictor } from '../models/predictor.js';
import { exactMaps } from '../occlusion/exact.js';
import { loadClassifier } from './models.js';
import type { ExactJob, FromExactWorker, ExactWorkerData } from './exact-pool.js';
import { ThreadLifecycle } from '../runtime/threads.js';

const port = parentPort;
if (port) {
  const data = workerData as ExactWorkerData;
  // ONNX Runtime (and tfjs) run synchronously on the calling thread. On Linux a nice value is
  // per thread, and threads the engine starts later inherit it: raising this thread's nice
  // value before loading the model makes the scheduler prefer the main thread, which serves
  // the estimates, whenever both want a core.
  if (data.nice) {
    try {
      setPriority(data.nice);
    } catch {
      // not permitted here: maps run at normal priority
    }
  }
  const post = (m: FromExactWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);
  // Stop = finish the batch in hand, release the sessions, end by itself (runtime/threads.ts:
  // terminating a thread inside ONNX Runtime aborts the process).
  const life = new ThreadLifecycle();
  let predictor: Predictor | null = null;

  port.on('message', async (msg: ExactJob | { type: 'stop' }) => {
    if (msg.type === 'stop') {
      await life.stop(port, () => predictor?.dispose());
      return;
    }
    try {
      const t0 = performance.now();
      const r = await life.track(() => exactMaps(life.guard(predictor!), msg.images, msg.shape, msg.opts));
      const ms = performance.now() - t0;
      post(
        { type: 'done', id: msg.id, maps: r.maps, raw: r.raw !== r.maps ? r.raw : undefined, targets: r.targets, baseProbs: r.baseProbs, inferences: r.inferences, ms },
        [r.maps.buffer as ArrayBuffer, ...(r.raw !== r.maps ? [r.raw.buffer as ArrayBuffer] : []), r.targets.buffer as ArrayBuffer, r.baseProbs.buffer as ArrayBuffer],
      );
    } catch (err) {
      if (life.isStopping) return; // the pool has failed this map already
      const e = err as Error;
      post({ type: 'error', id: msg.id, message: e?.message ?? String(err), user: e?.name === 'UserError' });
    }
  });

  life
    .track(() => loadClassifier(data.classifier, { engine: data.engine, threads: data.threads, pad: data.pad }))
    .then(
      (p) => {
        predictor = p;
        if (!life.isStopping) post({ type: 'ready', engine: p.engine, hash: p.hash });
      },
      (err: Error) => {
        if (life.isStopping) return;
        post({ type: 'error', id: -1, message: err?.message ?? String(err), user: err?.name === 'UserError' });
        port.close(); // the thread ends; the pool reports it and starts a new one when asked
      },
    );
}
