/**
 * Running an occlusion job: the maps not yet in the shard store are cut into pieces, computed
 * in this thread (1 worker) or by N worker threads that each load the model themselves, and
 * written shard by shard. Pieces start at multiples of `mapsPerGroup`, so every image is
 * predicted in the same batch whatever the worker count or resume point: the maps are
 * bit-identical to an uninterrupted single-worker run.
 */
import { Worker } from 'node:worker_threads';
import { stopWorker } from '../runtime/threads.js';
import { selectChannels, type Predictor } from '../models/predictor.js';
import type { LoadOptions } from '../models/load.js';
import { UserError } from '../util/errors.js';
import { exactMaps, mapsPerGroup, type ExactOptions, type ExactResult, type RawMaps } from './exact.js';
import type { ShardData, ShardStore } from './shards.js';

/**
 * How a worker obtains its own predictor: a model path for loadPredictor, or a module
 * exporting an async factory (tests, and engines not loadable from a path).
 */
export type PredictorSource =
  | { kind: 'model'; path: string; load?: LoadOptions }
  | { kind: 'module'; url: string; exportName: string; arg?: unknown };

export async function openPredictor(src: PredictorSource): Promise<Predictor> {
  if (src.kind === 'model') {
    const { loadPredictor } = await import('../models/load.js');
    return loadPredictor(src.path, src.load);
  }
  const mod = await import(src.url);
  const factory = mod[src.exportName] as ((arg: unknown) => Promise<Predictor> | Predictor) | undefined;
  if (typeof factory !== 'function') throw new Error(`${src.url} exports no function ${src.exportName}`);
  return factory(src.arg);
}

export interface JobInput {
  /** Loaded in this thread: gives shapes and classes, and computes when workers <= 1. */
  predictor: Predictor;
  /** How each worker thread loads its own copy; required when workers > 1. */
  source?: PredictorSource;
  /** Dataset images (N,H,W,C), all channels; only the first `n` are mapped. */
  images: Float32Array;
  shape: readonly [number, number, number, number];
  labels?: Int32Array;
  n: number;
  opts: ExactOptions;
  store: ShardStore;
  workers: number;
  /** Called as maps finish (counts for this run only). */
  onProgress?: (maps: number, inferences: number) => void;
  /** Called once, before computing, with the number of maps found in finished shards. */
  onReused?: (maps: number) => void;
}

export interface JobResult extends Omit<ExactResult, 'inferences'> {
  /** Maps taken from shards of an earlier run, and computed now. */
  reused: number;
  computed: number;
  inferences: number;
}

interface Piece {
  shard: number;
  start: number;
  count: number;
}

interface PieceResult extends ShardData {
  inferences: number;
}

/** Messages between this module and worker-entry.ts. */
export type ToWorker = { type: 'piece'; id: number; start: number; count: number } | { type: 'stop' };
export type FromWorker =
  | { type: 'ready' }
  | { type: 'progress'; maps: number; inferences: number }
  | { type: 'done'; id: number; maps: Float32Array; raw: RawMaps; targets: Int32Array; baseProbs: Float32Array; inferences: number }
  | { type: 'error'; message: string; user: boolean };

export interface WorkerData {
  source: PredictorSource;
  /** Model-channel images (n,H,W,Cm) on a SharedArrayBuffer: one copy for all workers. */
  images: Float32Array;
  shape: [number, number, number, number];
  labels?: Int32Array;
  opts: ExactOptions;
}

function roundUp(x: number, m: number): number {
  return Math.ceil(x / m) * m;
}

/**
 * Compute every map of the job that is not already in the store, write the shards, and
 * return all `n` maps in order.
 */
export async function runOcclusionJob(input: JobInput): Promise<JobResult> {
  const { predictor, store, n } = input;
  const [, h, w] = input.shape;
  const k = predictor.numClasses;
  const m = h * w;
  const group = mapsPerGroup(input.opts, h, w, input.opts.batchSize);
  if (store.job.shardSize % group !== 0) {
    throw new Error(`shard size ${store.job.shardSize} is not a multiple of ${group} maps per batch group`);
  }

  const maps = new Float32Array(n * m);
  const raw: RawMaps = input.opts.normalize === 'none' ? maps : new Float64Array(n * m);
  const targets = new Int32Array(n);
  const baseProbs = new Float32Array(n * k);
  const place = (start: number, d: ShardData): void => {
    maps.set(d.maps, start * m);
    if (raw !== maps) raw.set(d.raw, start * m);
    targets.set(d.targets, start);
    baseProbs.set(d.baseProbs, start * k);
  };

  const missing: number[] = [];
  let reused = 0;
  for (let s = 0; s < store.count(n); s++) {
    const [start, count] = store.range(s, n);
    const d = store.read(s, start, count, m, k);
    if (d) {
      place(start, d);
      reused += count;
    } else missing.push(s);
  }
  input.onReused?.(reused);
  const todo = missing.reduce((a, s) => a + store.range(s, n)[1], 0);

  const workers = Math.max(1, Math.min(input.workers, Math.ceil(todo / group)));
  // Several pieces per worker keep both busy to the end; one shard each when alone.
  const pieceSize = workers <= 1 ? store.job.shardSize : Math.min(store.job.shardSize, Math.max(group, roundUp(Math.ceil(todo / (workers * 4)), group)));
  const pieces: Piece[] = [];
  for (const s of missing) {
    const [start, count] = store.range(s, n);
    for (let off = 0; off < count; off += pieceSize) pieces.push({ shard: s, start: start + off, count: Math.min(pieceSize, count - off) });
  }

  // Shards complete when all their pieces have arrived, in any order; written one at a time.
  const remaining = new Map<number, number>();
  for (const p of pieces) remaining.set(p.shard, (remaining.get(p.shard) ?? 0) + p.count);
  let writes: Promise<void> = Promise.resolve();
  let writeError: Error | undefined;
  let inferences = 0;
  let computed = 0;
  const accept = (p: Piece, r: PieceResult): void => {
    place(p.start, r);
    inferences += r.inferences;
    computed += p.count;
    const left = remaining.get(p.shard)! - p.count;
    remaining.set(p.shard, left);
    if (left === 0) {
      const [start, count] = store.range(p.shard, n);
      const mapsPart = maps.slice(start * m, (start + count) * m);
      const d: ShardData = {
        maps: mapsPart,
        raw: raw === maps ? mapsPart : raw.slice(start * m, (start + count) * m),
        targets: targets.slice(start, start + count),
        baseProbs: baseProbs.slice(start * k, (start + count) * k),
      };
      writes = writes.then(() => store.write(p.shard, start, count, h, w, d));
      // Handled here so a failed write (disk full) stops the job cleanly instead of
      // surfacing as an unhandled rejection while pieces are still running.
      writes.catch((err) => {
        writeError ??= err as Error;
      });
    }
    if (writeError) throw writeError;
  };

  if (pieces.length > 0) {
    if (workers <= 1) await runHere(input, pieces, accept);
    else await runInWorkers(input, pieces, workers, accept);
  }
  await writes;
  return { maps, raw, targets, baseProbs, reused, computed, inferences };
}

/**
 * Maps [start, start+count) of a job: the one per-piece computation, shared by the threads
 * here and the queue workers (queue.ts), so every path gives the same bits for a shard.
 * `start` must be a multiple of mapsPerGroup for batch compositions to match.
 */
export async function computePiece(
  predictor: Predictor,
  images: Float32Array,
  shape: readonly [number, number, number, number],
  labels: Int32Array | undefined,
  opts: ExactOptions,
  start: number,
  count: number,
  onProgress?: (maps: number, inferences: number) => void,
): Promise<ExactResult> {
  const [, h, w, c] = shape;
  const px = h * w * c;
  return exactMaps(
    predictor,
    images.subarray(start * px, (start + count) * px),
    [count, h, w, c],
    { ...opts, labels: labels?.subarray(start, start + count) },
    onProgress && ((q) => onProgress(q.stamps, q.inferences)),
  );
}

async function runHere(input: JobInput, pieces: Piece[], accept: (p: Piece, r: PieceResult) => void): Promise<void> {
  let maps = 0;
  let inf = 0;
  for (const p of pieces) {
    let lastMaps = 0;
    let lastInf = 0;
    const r = await computePiece(input.predictor, input.images, input.shape, input.labels, input.opts, p.start, p.count, (m, i) => {
      maps += m - lastMaps;
      inf += i - lastInf;
      lastMaps = m;
      lastInf = i;
      input.onProgress?.(maps, inf);
    });
    accept(p, r);
  }
}

async function runInWorkers(
  input: JobInput,
  pieces: Piece[],
  nWorkers: number,
  accept: (p: Piece, r: PieceResult) => void,
): Promise<void> {
  if (!input.source) throw new Error('running in worker threads needs a predictor source');
  const [, h, w, cData] = input.shape;
  const n = input.n;
  const cm = input.predictor.inputShape[2];
  // Workers read one shared copy of the model's channels, not the whole dataset.
  const selected = selectChannels(input.images.subarray(0, n * h * w * cData), n, h, w, cData, input.predictor.channels);
  const shared = new Float32Array(new SharedArrayBuffer(selected.length * 4));
  shared.set(selected);
  const data: WorkerData = {
    source: input.source,
    images: shared,
    shape: [n, h, w, cm],
    labels: input.labels?.slice(0, n),
    opts: { ...input.opts, labels: undefined, modelChannels: true },
  };

  let next = 0;
  let maps = 0;
  let inf = 0;
  const threads: Worker[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let stopped = 0;
      let failed = false;
      const fail = (err: Error): void => {
        if (failed) return;
        failed = true;
        reject(err);
      };
      for (let t = 0; t < nWorkers; t++) {
        const worker = new Worker(new URL('./worker-entry.js', import.meta.url), { workerData: data });
        threads.push(worker);
        let done = false;
        const feed = (): void => {
          if (failed) return;
          if (next < pieces.length) {
            const id = next++;
            const p = pieces[id];
            worker.postMessage({ type: 'piece', id, start: p.start, count: p.count } satisfies ToWorker);
          } else {
            done = true;
            worker.postMessage({ type: 'stop' } satisfies ToWorker);
            if (++stopped === nWorkers) resolve();
          }
        };
        worker.on('message', (msg: FromWorker) => {
          if (msg.type === 'ready') feed();
          else if (msg.type === 'progress') {
            maps += msg.maps;
            inf += msg.inferences;
            input.onProgress?.(maps, inf);
          } else if (msg.type === 'done') {
            try {
              accept(pieces[msg.id], { maps: msg.maps, raw: msg.raw, targets: msg.targets, baseProbs: msg.baseProbs, inferences: msg.inferences });
            } catch (err) {
              fail(err as Error);
              return;
            }
            feed();
          } else if (msg.type === 'error') {
            fail(msg.user ? new UserError(msg.message) : new Error(`worker ${t}: ${msg.message}`));
          }
        });
        worker.on('error', (err) => fail(err));
        worker.on('exit', (code) => {
          if (!done) fail(new Error(`worker ${t} exited (code ${code}) before finishing its work`));
        });
      }
    });
  } finally {
    // Never terminate(): a thread stopped inside ONNX Runtime aborts the process. Each one
    // finishes the batch in hand, releases its model and ends (runtime/threads.ts).
    await Promise.all(threads.map((t) => stopWorker(t)));
  }
}
