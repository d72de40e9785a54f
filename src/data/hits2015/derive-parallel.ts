/**
 * The HiTS 2015 derivation over worker threads: the objects are shared out in consecutive
 * ranges of about equal epoch counts, each thread (the calling one included) runs the archive
 * passes itself (skies, gain, calibration: about a quarter of the work) and derives its range;
 * the ranges are joined in order, so the result is the one deriveHits2015 gives.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { ProgressReporter } from '../../util/progress.js';
import { defaultArchivePath, readHits2015Archive } from './archive.js';
import { assembleHits2015 } from './build.js';
import { parseClasses } from './classes.js';
import { deriveHits2015, deriveObjects, deriveResult, deriveSetup, joinDeriveOuts, objectsOf, type DeriveOut } from './derive.js';
import type { Hits2015Derived, Hits2015Options, Hits2015Result } from './types.js';

/** What a derivation thread gets: the options without callbacks, its range, a progress counter. */
export interface DeriveWorkerInit {
  occmapHits2015: true;
  opts: Omit<Hits2015Options, 'onProgress'>;
  from: number;
  to: number;
  /** Objects done, per thread (Atomics). */
  done: Int32Array;
  slot: number;
}

export type DeriveWorkerReply = { t: 'done'; out: DeriveOut } | { t: 'error'; message: string };

/** Consecutive ranges of `weights` (epochs per object), `parts` of them, of about equal sums. */
export function balancedRanges(weights: readonly number[], parts: number): [number, number][] {
  const total = weights.reduce((a, b) => a + b, 0);
  const out: [number, number][] = [];
  let from = 0;
  let acc = 0;
  for (let p = 1; p < parts; p++) {
    let to = from;
    while (to < weights.length && acc + weights[to] <= (total * p) / parts) acc += weights[to++];
    out.push([from, to]);
    from = to;
  }
  out.push([from, weights.length]);
  return out;
}

export async function deriveHits2015Parallel(opts: Hits2015Options = {}, threads = os.availableParallelism()): Promise<Hits2015Derived> {
  if (threads <= 1) return deriveHits2015(opts);
  const { onProgress, ...rest } = opts;
  const base = { ...rest, archive: opts.archive ?? readHits2015Archive(opts.source ?? defaultArchivePath()) };
  // Ranges from the object lists alone, so the threads start before this one's archive passes.
  const { byObject, selected } = objectsOf(base.archive, parseClasses(base.classes));
  const ranges = balancedRanges(selected.map((o) => byObject[o].length), threads);
  const done = new Int32Array(new SharedArrayBuffer(4 * threads));
  const workers = ranges.slice(1).map(([from, to], k) => {
    const init: DeriveWorkerInit = { occmapHits2015: true, opts: base, from, to, done, slot: k + 1 };
    const worker = new Worker(new URL('./derive-worker.js', import.meta.url), { workerData: init });
    const result = new Promise<DeriveOut>((resolve, reject) => {
      worker.once('message', (m: DeriveWorkerReply) => (m.t === 'done' ? resolve(m.out) : reject(new Error(`HiTS 2015 derivation thread: ${m.message}`))));
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`HiTS 2015 derivation thread exited (code ${code})`)));
    });
    result.catch(() => {}); // awaited below, unless this thread fails first
    return { worker, result };
  });
  try {
    const setup = deriveSetup(base);
    const progress = new ProgressReporter(onProgress, { label: 'hits2015', unit: 'objects', total: setup.selected.length });
    let shown = 0;
    const report = () => {
      const now = done.reduce((a, b) => a + b, 0);
      if (now > shown) progress.tick(now - shown);
      shown = now;
    };
    const own = deriveObjects(setup, ranges[0][0], ranges[0][1], () => {
      done[0]++;
      report();
    });
    const timer = setInterval(report, 500);
    let parts: DeriveOut[];
    try {
      parts = [own, ...(await Promise.all(workers.map((w) => w.result)))];
    } finally {
      clearInterval(timer);
    }
    report();
    progress.stop();
    return deriveResult(setup, joinDeriveOuts(parts));
  } finally {
    await Promise.all(workers.map((w) => w.worker.terminate()));
  }
}

/** buildHits2015 with the derivation over `threads` threads (same result). */
export async function buildHits2015Parallel(opts: Hits2015Options = {}, threads?: number): Promise<Hits2015Result> {
  return assembleHits2015(await deriveHits2015Parallel(opts, threads), opts);
}
