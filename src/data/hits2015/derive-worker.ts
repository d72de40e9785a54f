/** Worker-thread side of deriveHits2015Parallel: the archive passes, then its range of objects. */
import { parentPort, workerData } from 'node:worker_threads';
import { deriveObjects, deriveSetup } from './derive.js';
import type { DeriveWorkerInit, DeriveWorkerReply } from './derive-parallel.js';

const init = workerData as DeriveWorkerInit | undefined;
if (parentPort && init?.occmapHits2015) {
  try {
    const out = deriveObjects(deriveSetup(init.opts), init.from, init.to, () => Atomics.add(init.done, init.slot, 1));
    parentPort.postMessage({ t: 'done', out } satisfies DeriveWorkerReply);
  } catch (err) {
    parentPort.postMessage({ t: 'error', message: err instanceof Error ? err.message : String(err) } satisfies DeriveWorkerReply);
  }
}
