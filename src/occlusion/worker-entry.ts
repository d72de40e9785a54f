/**
 * One `occlude --workers N` thread: loads its own predictor (engines are not shareable across
 * threads), then computes the pieces the main thread hands it until told to stop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Predictor } from '../models/predictor.js';
import { exactMaps } from './exact.js';
import { ThreadLifecycle } from '../runtime/threads.js';
import { openPredictor, type FromWorker, type ToWorker, type WorkerData } from './workers.js';

const port = parentPort;
if (port) {
  const data = workerData as WorkerData;
  const post = (m: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);
  const report = (err: unknown): void => {
    const e = err as Error;
    post({ type: 'error', message: e?.message ?? String(err), user: e?.name === 'UserError' });
  };
  let predictor: Predictor | null = null;
  // Stop = finish the batch in hand, release the sessions, end by itself (runtime/threads.ts:
  // terminating a thread inside ONNX Runtime aborts the process).
  const life = new ThreadLifecycle();
  const [, h, w, c] = data.shape;
  const px = h * w * c;

  port.on('message', async (msg: ToWorker) => {
    if (msg.type === 'stop') {
      await life.stop(port, () => predictor?.dispose());
      return;
    }
    try {
      let lastMaps = 0;
      let lastInf = 0;
      const r = await life.track(() => exactMaps(
        life.guard(predictor!),
        data.images.subarray(msg.start * px, (msg.start + msg.count) * px),
        [msg.count, h, w, c],
        { ...data.opts, labels: data.labels?.subarray(msg.start, msg.start + msg.count) },
        (q) => {
          post({ type: 'progress', maps: q.stamps - lastMaps, inferences: q.inferences - lastInf });
          lastMaps = q.stamps;
          lastInf = q.inferences;
        },
      ));
      post(
        { type: 'done', id: msg.id, maps: r.maps, raw: r.raw, targets: r.targets, baseProbs: r.baseProbs, inferences: r.inferences },
        [r.maps.buffer as ArrayBuffer, ...(r.raw !== r.maps ? [r.raw.buffer as ArrayBuffer] : []), r.targets.buffer as ArrayBuffer, r.baseProbs.buffer as ArrayBuffer],
      );
    } catch (err) {
      if (!life.isStopping) report(err);
    }
  });

  life.track(() => openPredictor(data.source)).then(
    (p) => {
      predictor = p;
      if (!life.isStopping) post({ type: 'ready' });
    },
    (err) => {
      if (!life.isStopping) report(err);
    },
  );
}
