/**
 * One `occlude --workers N` thread: loads its own predictor (engines are not shareable across
 * threads), then computes the pieces the main thread hands it until told to stop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Predictor } from '../models/predictor.js';
import { exactMaps } from './exact.js';
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
  const [, h, w, c] = data.shape;
  const px = h * w * c;

  port.on('message', async (msg: ToWorker) => {
    if (msg.type === 'stop') {
      predictor?.dispose();
      port.close();
      return;
    }
    try {
      let lastMaps = 0;
      let lastInf = 0;
      const r = await exactMaps(
        predictor!,
        data.images.subarray(msg.start * px, (msg.start + msg.count) * px),
        [msg.count, h, w, c],
        { ...data.opts, labels: data.labels?.subarray(msg.start, msg.start + msg.count) },
        (q) => {
          post({ type: 'progress', maps: q.stamps - lastMaps, inferences: q.inferences - lastInf });
          lastMaps = q.stamps;
          lastInf = q.inferences;
        },
      );
      post(
        { type: 'done', id: msg.id, maps: r.maps, raw: r.raw, targets: r.targets, baseProbs: r.baseProbs, inferences: r.inferences },
        [r.maps.buffer as ArrayBuffer, ...(r.raw !== r.maps ? [r.raw.buffer as ArrayBuffer] : []), r.targets.buffer as ArrayBuffer, r.baseProbs.buffer as ArrayBuffer],
      );
    } catch (err) {
      report(err);
    }
  });

  openPredictor(data.source).then(
    (p) => {
      predictor = p;
      post({ type: 'ready' });
    },
    report,
  );
}
