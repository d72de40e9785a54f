/**
 * occludeDataset: exact occlusion maps of a dataset as one library call, resumable (shards
 * beside the output), on worker threads or through a BullMQ queue. It returns the maps dataset
 * and writes the output file only when asked (`out`); progress and notes go to callbacks.
 * `occmap occlude` and the study are clients of it.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { readDataset, subsetDataset, writeDataset, type Dataset } from '../data/dataset.js';
import { expectFromCard, valueWarnings } from '../data/stamps.js';
import { CARD_JSON, readCard } from '../models/model-dir.js';
import { fitToStamps, inputMargin, loadPredictor, type LoadOptions } from '../models/load.js';
import type { Predictor } from '../models/predictor.js';
import { assertWritable } from '../util/atomic.js';
import { refuseOutputOverInput } from '../util/paths.js';
import { fileError, OptionError } from '../util/errors.js';
import { ProgressReporter, type ProgressCallback } from '../util/progress.js';
import { approximationError, type ApproximationError } from './approx.js';
import { DEFAULT_BATCH_SIZE, SEED_PARAMS, exactMaps, geometryOf, inferencesPerMap, inputMismatch, isOcclusionScorer, mapsPerGroup, type OcclusionParams, type RawMaps } from './exact.js';
import { geometryProblem } from './geometry.js';
import { ShardStore, shardDirFor } from './shards.js';
import { runOcclusionJob, type JobResult, type PredictorSource } from './workers.js';
import { incrementalNote, noteFallback } from './incremental-load.js';
import { engineWithoutThreads, INCREMENTAL_ENGINE } from './incremental-engine-name.js';
import { DEFAULT_ATTEMPTS, DEFAULT_QUEUE_NAME, jobDataHash, probeRedis, redactUrl, runQueueCoordinator } from './queue.js';

export const DEFAULT_SHARD_SIZE = 256;

export interface OccludeQueueOptions {
  /** redis://HOST:PORT/N that the `occmap worker` processes listen on. */
  url: string;
  name?: string;
  /** Tries per shard before the job fails with its error. */
  attempts?: number;
  /** How often the shard directory is looked at while waiting (ms). */
  pollMs?: number;
}

export interface OccludeDatasetOptions {
  /** The classifier: a model directory or an .onnx file (worker threads and queue workers load it from this path). */
  model: string;
  /** A dataset file, or a dataset in memory (not with `queue`: queue workers read the file). */
  data: string | Dataset;
  /**
   * Output .npz, written whole or not at all; shards go to `<out>.shards/` as maps finish, so
   * an interrupted job resumes (`resume`). Without it the maps are only returned.
   */
  out?: string;
  /** Occlusion parameters; missing ones are the seed's (SEED_PARAMS). */
  params?: Partial<OcclusionParams>;
  /** Images per classifier call. */
  batchSize?: number;
  /** Map only the first `limit` images. */
  limit?: number;
  /** Worker threads, each with its own copy of the model. */
  workers?: number;
  /** Finish an interrupted job from its shards (needs `out`). */
  resume?: boolean;
  /** Maps per shard file (rounded up to whole batches). */
  shardSize?: number;
  engine?: NonNullable<LoadOptions['engine']>;
  /** Engine threads per model copy (ONNX Runtime); default: cores / workers. */
  threads?: number;
  /** Approximate maps (incremental engine, Krypton's projective-field threshold in (0, 1]); off by default. */
  approx?: number;
  /** Shards computed by `occmap worker` processes through BullMQ (needs `out` and a data file). */
  queue?: OccludeQueueOptions;
  /** Recorded in meta.command. */
  command?: string;
  onProgress?: ProgressCallback;
  /** Notes ('info': e.g. maps found in earlier shards) and warnings (e.g. Redis down) as one line each. */
  log?: (line: string, level: 'info' | 'warning') => void;
}

export interface OccludeSummary {
  maps: number;
  reused: number;
  computed: number;
  seconds: number;
  mapsPerSecond: number;
  inferencesPerSecond: number;
  engine: string;
  workers: number;
  /** Computed by queue workers, not here. */
  queued?: boolean;
}

export interface OccludeDatasetResult {
  /** The dataset (its first `limit` images) plus `maps` and meta.occlusion. */
  dataset: Dataset;
  summary: OccludeSummary;
}

/** The options with every default filled in and checked. */
interface Job {
  model: string;
  dataName: string;
  params: OcclusionParams;
  batchSize: number;
  limit?: number;
  workers: number;
  shardSize: number;
  engine: NonNullable<LoadOptions['engine']>;
  threads: number;
  approx?: number;
  queue?: Required<Omit<OccludeQueueOptions, 'pollMs'>> & { pollMs?: number };
}

function positiveInt(field: string, v: number | undefined, dflt: number, min = 1): number {
  const x = v ?? dflt;
  if (!(Number.isSafeInteger(x) && x >= min)) throw new OptionError([field], `must be an integer >= ${min}, got ${String(v)}`);
  return x;
}

function resolveJob(o: OccludeDatasetOptions): Job {
  if (o.resume && !o.out) throw new OptionError(['resume'], 'needs out: the shards of an interrupted job live beside the output file');
  if (o.queue && (!o.out || typeof o.data !== 'string')) throw new OptionError(['queue'], 'needs out and a data file that every queue worker reads');
  const workers = positiveInt('workers', o.workers, 1);
  return {
    model: o.model,
    dataName: typeof o.data === 'string' ? o.data : 'the dataset',
    params: { ...SEED_PARAMS, ...o.params },
    batchSize: positiveInt('batchSize', o.batchSize, DEFAULT_BATCH_SIZE),
    limit: o.limit === undefined ? undefined : positiveInt('limit', o.limit, 1),
    workers,
    shardSize: positiveInt('shardSize', o.shardSize, DEFAULT_SHARD_SIZE),
    engine: o.engine ?? 'auto',
    // Each worker holds its own model copy: split the cores between them, not multiply.
    threads: o.threads ?? Math.max(1, Math.floor(availableParallelism() / workers)),
    approx: o.approx === undefined ? undefined : fraction('approx', o.approx),
    queue: o.queue && {
      url: o.queue.url,
      name: o.queue.name ?? DEFAULT_QUEUE_NAME,
      attempts: positiveInt('attempts', o.queue.attempts, DEFAULT_ATTEMPTS),
      pollMs: o.queue.pollMs,
    },
  };
}

/** Every check that needs the data and the model, before any work. */
function checkJob(job: Job, ds: Dataset, predictor: Predictor, n: number): void {
  const [, h, w] = ds.shape;
  const mismatch = inputMismatch(predictor, ds.shape);
  if (mismatch) {
    const m = inputMargin(predictor, h, w);
    if (m) throw new OptionError(['model'], `${job.model}: ${mismatch} (data ${job.dataName}); if the model takes the stamps zero-padded by ${m}, use {pad} ${m}`);
    throw fileError(job.model, `${mismatch} (data ${job.dataName})`);
  }
  const problem = geometryProblem(geometryOf(job.params, h, w));
  if (problem) throw new OptionError(['patch', 'stride', 'pad'], `on ${h}x${w} images: ${problem}`);
  const k = predictor.numClasses;
  const t = job.params.target;
  if (typeof t === 'number' && t >= k) throw new OptionError(['target'], `${t}: the model ${job.model} has ${k} classes (0..${k - 1})`);
  if (t === 'label') {
    if (!ds.labels) throw fileError(job.dataName, "has no labels, which target 'label' needs");
    for (let i = 0; i < n; i++) {
      if (ds.labels[i] >= k) throw fileError(job.dataName, `label ${ds.labels[i]} of item ${i} is not a class of the ${k}-class model ${job.model}`);
    }
  }
}

function fraction(field: string, v: number): number {
  if (!(v > 0 && v <= 1)) throw new OptionError([field], `must be a number in (0, 1], got ${String(v)}`);
  return v;
}

/** Maps checked against exact ones when approx is used (the first ones of the job). */
const APPROX_CHECK_MAPS = 8;

/** The approximation's error on the run: exact maps of the first images, compared with the approximate ones. */
async function checkApproximation(r: Run, approxRaw: RawMaps): Promise<ApproximationError> {
  const k = Math.min(r.n, APPROX_CHECK_MAPS);
  const [, h, w, c] = r.ds.shape;
  const exact = await exactMaps(r.predictor, r.ds.images.subarray(0, k * h * w * c), [k, h, w, c], {
    ...r.job.params,
    normalize: 'none',
    batchSize: r.job.batchSize,
    labels: r.ds.labels?.subarray(0, k),
  });
  return approximationError(approxRaw, exact.raw, [k, h, w], r.job.params.score, 'none');
}

function roundUp(x: number, m: number): number {
  return Math.ceil(x / m) * m;
}

interface Run {
  job: Job;
  ds: Dataset;
  n: number;
  predictor: Predictor;
  store: ShardStore;
  /** The engine without its thread count (part of the shard identity). */
  engine: string;
  perMap: number;
  load: LoadOptions;
  /** The stamps are zero-padded by this much before the model (its input is the padded stamp); 0: none. */
  modelPad: number;
  o: OccludeDatasetOptions;
}

/** Wait while queue workers fill the shard directory; returns what they computed. */
async function viaQueue(r: Run): Promise<{ computed: number; seconds: number }> {
  const q = r.job.queue!;
  const log = r.o.log;
  let progress: ProgressReporter | undefined;
  const [, h, w] = r.ds.shape;
  const done = await runQueueCoordinator({
    url: q.url,
    queueName: q.name,
    store: r.store,
    n: r.n,
    h,
    w,
    numClasses: r.predictor.numClasses,
    data: r.o.data as string,
    model: r.job.model,
    engine: r.load.engine!,
    modelPad: r.modelPad,
    opts: { ...r.job.params, batchSize: r.job.batchSize },
    attempts: q.attempts,
    pollMs: q.pollMs,
    onEnqueued: (i) => {
      log?.(
        `${i.shards} shards on queue ${q.name} at ${redactUrl(q.url)}: ${i.onDisk} on disk (${i.mapsOnDisk} maps), ` +
          `${i.queued} already queued, ${i.added} enqueued${i.retried ? ` (${i.retried} failed before, retried)` : ''}; waiting for 'occmap worker' processes`,
        'info',
      );
      progress = new ProgressReporter(r.o.onProgress, { label: `occlude via queue (${r.perMap} inferences/map)`, unit: 'maps', total: r.n, start: i.mapsOnDisk });
    },
    onShard: (maps) => progress?.tick(maps),
    onLost: (lost) =>
      log?.(`${lost.length} shard job(s) had left the queue without their file (shards ${lost.slice(0, 5).join(', ')}${lost.length > 5 ? ', ...' : ''}); enqueued again`, 'warning'),
    onRedis: (up, why) => log?.(up ? 'Redis answers again' : `Redis does not answer (${why}); still waiting for shards on disk`, 'warning'),
  });
  progress?.stop();
  return done;
}

/** Compute (or, after the queue, only assemble) every missing shard here. */
async function locally(r: Run, queued: boolean): Promise<{ result: JobResult; seconds: number }> {
  let progress: ProgressReporter | undefined;
  let shown = 0;
  let t0 = performance.now();
  const source: PredictorSource = { kind: 'model', path: r.job.model, load: r.load };
  const result = await runOcclusionJob({
    predictor: r.predictor,
    source,
    images: r.ds.images,
    shape: r.ds.shape,
    labels: r.ds.labels,
    n: r.n,
    opts: { ...r.job.params, batchSize: r.job.batchSize, approx: r.job.approx },
    store: r.store,
    workers: r.job.workers,
    onReused: (reused) => {
      t0 = performance.now();
      if (queued) return;
      if (reused > 0 && r.o.out) r.o.log?.(`${reused} of ${r.n} maps found in ${r.store.dir}`, 'info');
      progress = new ProgressReporter(r.o.onProgress, { label: `occlude (${r.perMap} inferences/map)`, unit: 'maps', total: r.n, start: reused });
      t0 = performance.now();
    },
    onProgress: (maps) => {
      progress?.tick(maps - shown);
      shown = maps;
    },
  });
  progress?.stop();
  return { result, seconds: (performance.now() - t0) / 1000 };
}

/** The output dataset: the mapped images plus maps and the occlusion provenance. */
function outputDataset(r: Run, maps: Float32Array, raw: RawMaps, targets: Iterable<number>): Dataset {
  const total = r.ds.shape[0];
  const out: Dataset = r.n === total ? { ...r.ds } : subsetDataset(r.ds, Array.from({ length: r.n }, (_, i) => i));
  out.maps = maps;
  // the maps before normalisation, when normalising changed them (train-explainer --target-units unclipped)
  if (raw !== maps) out.mapsRaw = raw;
  else delete out.mapsRaw;
  const targetCounts: Record<string, number> = {};
  for (const t of targets) targetCounts[t] = (targetCounts[t] ?? 0) + 1;
  out.meta = {
    ...r.ds.meta,
    occlusion: {
      method: 'exact',
      ...r.job.params,
      fillNote: r.modelPad
        ? `the patch fills every model channel inside the image only; the stamps are zero-padded by ${r.modelPad} before the model (its input is the padded stamp), and the padding stays 0`
        : 'the patch fills every model channel inside the image only; the model pads internally, so the part of the patch over the padding has no effect',
      modelPad: r.modelPad,
      positions: r.perMap - 1,
      inferencesPerMap: r.perMap,
      maps: r.n,
      model: r.job.model,
      modelHash: r.predictor.hash,
      engine: r.engine,
      modelChannels: r.predictor.channels ?? null,
      data: r.job.dataName,
      targetCounts,
    },
    command: r.store.job.command ?? r.o.command,
    // The job's first start: the same whether or not the run was interrupted and resumed.
    createdAt: r.store.job.createdAt,
  };
  return out;
}

async function openStore(job: Job, ds: Dataset, predictor: Predictor, o: OccludeDatasetOptions, shardDir: string): Promise<{ store: ShardStore; engine: string }> {
  const [, h, w] = ds.shape;
  const group = mapsPerGroup(job.params, h, w, job.batchSize);
  const engine = engineWithoutThreads(predictor.engine);
  const store = await ShardStore.open(
    shardDir,
    {
      params: { ...job.params, batchSize: job.batchSize, ...(job.approx ? { approx: job.approx } : {}) },
      modelHash: predictor.hash,
      engine,
      dataHash: jobDataHash(ds, job.params.target),
      shardSize: roundUp(job.shardSize, group),
    },
    { resume: !!o.resume, command: o.command },
  );
  return { store, engine };
}

/**
 * The predictor for `load`; the incremental engine only for a model that takes h x w stamps as
 * they are (one taking padded stamps runs on the full engine, fed them padded, with a note).
 */
async function loadFitting(model: string, load: LoadOptions, h: number, w: number): Promise<Predictor> {
  const p = await loadPredictor(model, load);
  if (!isOcclusionScorer(p) || inputMargin(p, h, w) === 0) return p;
  p.dispose();
  load.engine = 'auto';
  return noteFallback(await loadPredictor(model, load), `it takes ${p.inputShape[0]}x${p.inputShape[1]} images for ${h}x${w} stamps: the incremental engine runs models that take the stamps as they are`);
}

/**
 * Exact occlusion maps of `data` by `model`: read, check, compute (resuming shards, on worker
 * threads or queue workers), and write `out` when given.
 */
export async function occludeDataset(o: OccludeDatasetOptions): Promise<OccludeDatasetResult> {
  const job = resolveJob(o);
  refuseOutputOverInput(
    [{ flag: '{data}', path: typeof o.data === 'string' ? o.data : undefined }, { flag: '{model}', path: o.model }],
    [{ flag: '{out}', path: o.out }, { flag: '{out} (its shard directory)', path: o.out && shardDirFor(o.out), kind: 'dir' }],
  );
  if (o.out) await assertWritable(o.out);
  // Before anything is read or created: an unreachable Redis leaves no shard directory.
  if (job.queue) await probeRedis(job.queue.url);
  const ds = typeof o.data === 'string' ? await readDataset(o.data) : o.data;
  // What may be wrong with the data is said before hours of work: the reader's warnings, and
  // values far outside what the classifier was trained on (its card's data range).
  const card = existsSync(path.join(job.model, CARD_JSON)) ? readCard(job.model) : undefined;
  const notes = [...(ds.warnings ?? []), ...valueWarnings(ds.images, expectFromCard((card ?? {}) as Record<string, unknown>, `the classifier ${job.model}`))];
  for (const w of notes) o.log?.(`${job.dataName}: ${w}`, 'warning');
  const [total, h, w] = ds.shape;
  const n = Math.min(total, job.limit ?? total);
  // auto: the incremental engine wherever it can run the model (it falls back with a note),
  // except when resuming a run that an older occmap started on the full engine: its shards.
  const recorded = o.resume && o.out ? ShardStore.recordedEngine(shardDirFor(o.out)) : undefined;
  const kept = recorded === undefined || recorded.startsWith(INCREMENTAL_ENGINE) ? 'incremental' : recorded.startsWith('tfjs') ? 'tfjs' : 'auto';
  const load: LoadOptions = { engine: job.engine === 'auto' ? kept : job.engine, threads: job.threads };
  // A model whose input is the stamp padded by `pad` (the seed's Keras classifier: 27x27 for
  // 21x21 stamps, pad 3) is fed the padded stamps; its maps equal an internally padding model's.
  const fitted = fitToStamps(await loadFitting(job.model, load, h, w), h, w, job.params.pad);
  const predictor = fitted.predictor;
  if (fitted.padded) {
    load.pad = fitted.padded;
    o.log?.(`${job.model} takes ${h + 2 * fitted.padded}x${w + 2 * fitted.padded} images: the ${h}x${w} stamps are zero-padded by ${fitted.padded} before it (pad ${fitted.padded})`, 'info');
  }
  const scratch = o.out ? undefined : mkdtempSync(path.join(tmpdir(), 'occmap-occlude-'));
  try {
    const note = incrementalNote(predictor);
    if (note) o.log?.(`full engine: the incremental engine cannot run ${job.model}: ${note}`, 'info');
    checkJob(job, ds, predictor, n);
    const { store, engine } = await openStore(job, ds, predictor, o, o.out ? shardDirFor(o.out) : path.join(scratch!, 'shards'));
    const r: Run = { job, ds, n, predictor, store, engine, perMap: inferencesPerMap(job.params, h, w), load, modelPad: fitted.padded, o };
    const queued = job.queue ? await viaQueue(r) : undefined;
    const { result, seconds: localSeconds } = await locally(r, !!queued);
    let seconds = localSeconds;
    let computed = result.computed;
    let inferences = result.inferences;
    if (queued) {
      // What the workers did while this process waited (a shard it had to redo itself adds in).
      computed += queued.computed;
      inferences += queued.computed * r.perMap;
      seconds = queued.seconds + (result.computed > 0 ? seconds : 0);
    }
    const dataset = outputDataset(r, result.maps, result.raw, result.targets);
    if (job.approx) {
      const check = await checkApproximation(r, result.raw);
      dataset.meta!.occlusion = { ...(dataset.meta!.occlusion as object), method: 'approximate', approx: job.approx, approximation: check };
      o.log?.(
        `approximate maps (projective-field threshold ${job.approx}) against exact ones on the first ${check.maps}: SSIM ${check.ssim.toFixed(4)}, max |error| ${check.maxAbsError.toExponential(2)} (unnormalised units)`,
        'info',
      );
    }
    if (o.out) await writeDataset(o.out, dataset);
    store.remove();
    return {
      dataset,
      summary: {
        maps: n,
        reused: result.reused - (queued?.computed ?? 0),
        computed,
        seconds,
        mapsPerSecond: seconds > 0 ? computed / seconds : 0,
        inferencesPerSecond: seconds > 0 ? inferences / seconds : 0,
        engine: queued ? engine : predictor.engine,
        workers: Math.max(1, Math.min(job.workers, result.computed)),
        queued: !!queued,
      },
    };
  } finally {
    predictor.dispose();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}
