/**
 * One lane of the incremental engine (incremental-lanes.ts): its own engine on its own
 * sessions, computing the share of items each request names until told to stop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ThreadLifecycle } from '../runtime/threads.js';
import { IncrementalEngine } from './incremental.js';
import { OrtNetExecutor } from './incremental-ort.js';
import type { FromLane, LaneWorkerData, ToLane } from './incremental-lanes.js';

const port = parentPort;
if (port) {
  const data = workerData as LaneWorkerData;
  const exec = new OrtNetExecutor(data.net, data.threads, data.threads, data.opts.layout);
  const engine = new IncrementalEngine(data.net, exec, data.opts);
  const life = new ThreadLifecycle();
  const handle = async (msg: ToLane): Promise<void> => {
    if (msg.type === 'stop') {
      await life.stop(port, () => exec.dispose());
      return;
    }
    try {
      const { g, tau, planes, fills, n, lane, laneOf } = msg.req;
      const result = await life.track(async () => {
        engine.resetStats();
        return engine.runLane(engine.layout(g, tau), planes, fills, n, lane, laneOf);
      });
      port.postMessage({ type: 'done', id: msg.id, result } satisfies FromLane, [result.probs.buffer as ArrayBuffer]);
    } catch (err) {
      port.postMessage({ type: 'error', id: msg.id, message: (err as Error)?.message ?? String(err) } satisfies FromLane);
    }
  };
  // One request at a time, in order: the engine reuses one gather buffer.
  let queue: Promise<unknown> = Promise.resolve();
  port.on('message', (msg: ToLane) => {
    queue = queue.then(() => handle(msg));
  });
}
