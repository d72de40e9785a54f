/**
 * `occmap occlude`: exact occlusion maps for a dataset, written as the dataset plus `maps`.
 * A thin shell over exactMaps / runOcclusionJob: option parsing, file checks, shards,
 * progress, and the output file.
 */
import type { Command } from 'commander';
import { availableParallelism } from 'node:os';
import { readDataset, subsetDataset, writeDataset, type Dataset } from '../data/dataset.js';
import { loadPredictor, type LoadOptions } from '../models/load.js';
import type { Predictor } from '../models/predictor.js';
import { assertWritable } from '../util/atomic.js';
import { fileError, UserError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import {
  DEFAULT_BATCH_SIZE,
  SEED_PARAMS,
  geometryOf,
  inferencesPerMap,
  inputMismatch,
  mapsPerGroup,
  type OcclusionParams,
} from '../occlusion/exact.js';
import { geometryProblem, parsePatch } from '../occlusion/geometry.js';
import { ShardStore, shardDirFor } from '../occlusion/shards.js';
import { runOcclusionJob, type PredictorSource } from '../occlusion/workers.js';
import { DEFAULT_ATTEMPTS, DEFAULT_QUEUE_NAME, checkQueueUrl, jobDataHash, probeRedis, redactUrl, runQueueCoordinator } from '../occlusion/queue.js';
import { int } from './options.js';

export const DEFAULT_SHARD_SIZE = 256;

export interface OccludeJob {
  model: string;
  data: string;
  out: string;
  params: OcclusionParams;
  batchSize: number;
  limit?: number;
  workers: number;
  resume: boolean;
  shardSize: number;
  engine: NonNullable<LoadOptions['engine']>;
  /** Engine threads per model copy (ONNX Runtime); default: cores / workers. */
  threads?: number;
  quiet?: boolean;
  /** Recorded in meta.command. */
  command?: string;
  /** Shards computed by `occmap worker` processes through BullMQ on this Redis URL. */
  queue?: { url: string; name: string; attempts: number; pollMs?: number };
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

export interface RawOccludeOptions {
  model: string;
  data: string;
  out: string;
  patch: string;
  stride: string;
  pad: string;
  fill: string;
  target: string;
  score: string;
  aggregate: string;
  normalize: string;
  limit?: string;
  workers: string;
  resume?: boolean;
  batchSize: string;
  shardSize: string;
  engine: string;
  threads?: string;
  quiet?: boolean;
  queue?: string;
  queueName?: string;
  attempts?: string;
  pollMs?: string;
}


function oneOf<T extends string>(name: string, text: string, values: readonly T[]): T {
  if (!(values as readonly string[]).includes(text)) throw new UserError(`--${name}: expected one of ${values.join('|')}, got '${text}'`);
  return text as T;
}

export function parseOccludeOptions(o: RawOccludeOptions): OccludeJob {
  const patch = parsePatch(o.patch);
  if (!patch) throw new UserError(`--patch: expected N or HxW (positive integers), got '${o.patch}'`);
  let fill: number | 'mean';
  if (o.fill === 'mean') fill = 'mean';
  else {
    fill = Number(o.fill);
    if (o.fill.trim() === '' || !Number.isFinite(fill)) throw new UserError(`--fill: expected a number or 'mean', got '${o.fill}'`);
  }
  let target: OcclusionParams['target'];
  if (o.target === 'predicted' || o.target === 'label') target = o.target;
  else if (/^\d+$/.test(o.target)) target = Number(o.target);
  else throw new UserError(`--target: expected predicted, label or a class index, got '${o.target}'`);
  return {
    model: o.model,
    data: o.data,
    out: o.out,
    params: {
      patch,
      stride: int('stride', o.stride, 1),
      pad: int('pad', o.pad, 0),
      fill,
      target,
      score: oneOf('score', o.score, ['prob', 'drop'] as const),
      aggregate: oneOf('aggregate', o.aggregate, ['sum', 'mean'] as const),
      normalize: oneOf('normalize', o.normalize, ['none', 'seed'] as const),
    },
    batchSize: int('batch-size', o.batchSize, 1),
    limit: o.limit === undefined ? undefined : int('limit', o.limit, 1),
    workers: int('workers', o.workers, 1),
    resume: !!o.resume,
    shardSize: int('shard-size', o.shardSize, 1),
    engine: oneOf('engine', o.engine, ['auto', 'tfjs', 'onnx'] as const),
    threads: o.threads === undefined ? undefined : int('threads', o.threads, 1),
    quiet: o.quiet,
    queue:
      o.queue === undefined
        ? undefined
        : {
            url: checkQueueUrl(o.queue),
            name: queueName(o.queueName ?? DEFAULT_QUEUE_NAME),
            attempts: int('attempts', o.attempts ?? String(DEFAULT_ATTEMPTS), 1),
            pollMs: o.pollMs === undefined ? undefined : int('poll-ms', o.pollMs, 10),
          },
  };
}

function queueName(name: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new UserError(`--queue-name: letters, digits, '.', '_' and '-' only, got '${name}'`);
  return name;
}

/** Every check that needs the data and the model, before any work. */
function checkJob(job: OccludeJob, ds: Dataset, predictor: Predictor, n: number): void {
  const [, h, w] = ds.shape;
  const mismatch = inputMismatch(predictor, ds.shape);
  if (mismatch) throw fileError(job.model, `${mismatch} (data ${job.data})`);
  const problem = geometryProblem(geometryOf(job.params, h, w));
  if (problem) throw new UserError(`--patch/--stride/--pad on ${h}x${w} images: ${problem}`);
  const k = predictor.numClasses;
  const t = job.params.target;
  if (typeof t === 'number' && t >= k) throw new UserError(`--target ${t}: the model ${job.model} has ${k} classes (0..${k - 1})`);
  if (t === 'label') {
    if (!ds.labels) throw fileError(job.data, 'has no labels, which --target label needs');
    for (let i = 0; i < n; i++) {
      if (ds.labels[i] >= k) throw fileError(job.data, `label ${ds.labels[i]} of item ${i} is not a class of the ${k}-class model ${job.model}`);
    }
  }
}

function roundUp(x: number, m: number): number {
  return Math.ceil(x / m) * m;
}

/** Run the whole job: read, check, compute (resuming shards), write the output file. */
export async function runOcclude(job: OccludeJob): Promise<OccludeSummary> {
  await assertWritable(job.out);
  // Before anything is read or created: an unreachable Redis leaves no shard directory.
  if (job.queue) await probeRedis(job.queue.url);
  const ds = await readDataset(job.data);
  const [total, h, w] = ds.shape;
  const n = Math.min(total, job.limit ?? total);
  // Each worker holds its own model copy: split the cores between them, not multiply.
  const threads = job.threads ?? Math.max(1, Math.floor(availableParallelism() / job.workers));
  const load: LoadOptions = { engine: job.engine, threads };
  const predictor = await loadPredictor(job.model, load);
  try {
    checkJob(job, ds, predictor, n);
    const group = mapsPerGroup(job.params, h, w, job.batchSize);
    const shardSize = roundUp(job.shardSize, group);
    // Without the thread count: ORT gave bit-identical maps with 1 and 2 threads, and a resume
    // with another --workers (hence threads per copy) must find its shards.
    const engine = predictor.engine.replace(/\s*\(\d+ threads?\)$/, '');
    const store = await ShardStore.open(
      shardDirFor(job.out),
      {
        params: { ...job.params, batchSize: job.batchSize },
        modelHash: predictor.hash,
        engine,
        dataHash: jobDataHash(ds, job.params.target),
        shardSize,
      },
      { resume: job.resume, command: job.command },
    );
    const source: PredictorSource = { kind: 'model', path: job.model, load };
    const perMap = inferencesPerMap(job.params, h, w);
    let progress: Progress | undefined;
    let shown = 0;
    let t0 = 0;
    const q = job.queue;
    let queued: { computed: number; seconds: number } | undefined;
    if (q) {
      // Workers elsewhere fill the shard directory; the assembly below then only reads it.
      queued = await runQueueCoordinator({
        url: q.url,
        queueName: q.name,
        store,
        n,
        h,
        w,
        numClasses: predictor.numClasses,
        data: job.data,
        model: job.model,
        engine: job.engine,
        opts: { ...job.params, batchSize: job.batchSize },
        attempts: q.attempts,
        pollMs: q.pollMs,
        onEnqueued: (i) => {
          if (!job.quiet) {
            process.stderr.write(
              `occlude: ${i.shards} shards on queue ${q.name} at ${redactUrl(q.url)}: ${i.onDisk} on disk (${i.mapsOnDisk} maps), ` +
                `${i.queued} already queued, ${i.added} enqueued${i.retried ? ` (${i.retried} failed before, retried)` : ''}; waiting for 'occmap worker' processes\n`,
            );
          }
          progress = new Progress({ label: `occlude via queue (${perMap} inferences/map)`, unit: 'maps', total: n, start: i.mapsOnDisk, quiet: job.quiet });
        },
        onShard: (maps) => progress?.tick(maps),
        onLost: (lost) =>
          process.stderr.write(`occlude: ${lost.length} shard job(s) had left the queue without their file (shards ${lost.slice(0, 5).join(', ')}${lost.length > 5 ? ', ...' : ''}); enqueued again\n`),
        onRedis: (up, why) => process.stderr.write(up ? 'occlude: Redis answers again\n' : `occlude: Redis does not answer (${why}); still waiting for shards on disk\n`),
      });
      progress?.stop();
    }
    const r = await runOcclusionJob({
      predictor,
      source,
      images: ds.images,
      shape: ds.shape,
      labels: ds.labels,
      n,
      opts: { ...job.params, batchSize: job.batchSize },
      store,
      workers: job.workers,
      onReused: (reused) => {
        t0 = performance.now();
        if (q) return;
        if (reused > 0 && !job.quiet) process.stderr.write(`occlude: ${reused} of ${n} maps found in ${store.dir}\n`);
        progress = new Progress({ label: `occlude (${perMap} inferences/map)`, unit: 'maps', total: n, start: reused, quiet: job.quiet });
        t0 = performance.now();
      },
      onProgress: (maps) => {
        progress?.tick(maps - shown);
        shown = maps;
      },
    });
    progress?.stop();
    let seconds = (performance.now() - t0) / 1000;
    let computed = r.computed;
    let inferences = r.inferences;
    if (queued) {
      // What the workers did while this process waited (a shard it had to redo itself adds in).
      computed += queued.computed;
      inferences += queued.computed * perMap;
      seconds = queued.seconds + (r.computed > 0 ? seconds : 0);
    }

    const out: Dataset = n === total ? { ...ds } : subsetDataset(ds, Array.from({ length: n }, (_, i) => i));
    out.maps = r.maps;
    if (r.raw !== r.maps) out.mapsRaw = r.raw;
    else delete out.mapsRaw;
    const targetCounts: Record<string, number> = {};
    for (const t of r.targets) targetCounts[t] = (targetCounts[t] ?? 0) + 1;
    out.meta = {
      ...ds.meta,
      occlusion: {
        method: 'exact',
        ...job.params,
        fillNote: 'the patch fills every model channel inside the image only; the model pads internally, so the part of the patch over the padding has no effect',
        positions: perMap - 1,
        inferencesPerMap: perMap,
        maps: n,
        model: job.model,
        modelHash: predictor.hash,
        engine,
        modelChannels: predictor.channels ?? null,
        data: job.data,
        targetCounts,
      },
      command: store.job.command ?? job.command,
      // The job's first start: the same whether or not the run was interrupted and resumed.
      createdAt: store.job.createdAt,
    };
    await writeDataset(job.out, out);
    store.remove();
    const workers = Math.max(1, Math.min(job.workers, r.computed));
    return {
      maps: n,
      reused: r.reused - (queued?.computed ?? 0),
      computed,
      seconds,
      mapsPerSecond: seconds > 0 ? computed / seconds : 0,
      inferencesPerSecond: seconds > 0 ? inferences / seconds : 0,
      engine: q ? engine : predictor.engine,
      workers,
      queued: !!q,
    };
  } finally {
    predictor.dispose();
  }
}

export function registerOcclude(program: Command): void {
  const d = SEED_PARAMS;
  program
    .command('occlude')
    .description('exact occlusion maps: one classifier inference per patch position (defaults reproduce the seed)')
    .requiredOption('--model <path>', 'classifier: a model directory from train-classifier, or an .onnx file')
    .requiredOption('--data <file>', 'dataset .npz (or .npy / HiTS 2013 pickle)')
    .requiredOption('--out <file>', 'output .npz: the dataset plus maps (N,H,W) and meta.occlusion')
    .option('--patch <N|HxW>', 'patch size', String(d.patch[0]))
    .option('--stride <n>', 'step between patch positions', String(d.stride))
    .option('--pad <n>', 'zero padding on each side: positions run over the padded image, the map is cropped back', String(d.pad))
    .option('--fill <value|mean>', "value under the patch (every model channel), or 'mean' = the image's own per-channel mean", String(d.fill))
    .option('--target <predicted|label|k>', 'class explained: argmax of the unoccluded image, its label, or class k', String(d.target))
    .option('--score <prob|drop>', 'per position: target probability with the patch, or its drop from the unoccluded one', d.score)
    .option('--aggregate <sum|mean>', 'overlapping positions per pixel: sum of scores, or their mean', d.aggregate)
    .option('--normalize <none|seed>', 'per map: none, or the seed\'s z-score, clip [-1,1], (x+1)/2', d.normalize)
    .option('--limit <n>', 'map only the first n images')
    .option('--workers <n>', 'worker threads, each with its own copy of the model', '1')
    .option('--resume', 'finish an interrupted run from its shards (<out>.shards/)')
    .option('--batch-size <n>', 'images per classifier call', String(DEFAULT_BATCH_SIZE))
    .option('--shard-size <n>', 'maps per shard file written while running', String(DEFAULT_SHARD_SIZE))
    .option('--engine <auto|tfjs|onnx>', 'inference engine', 'auto')
    .option('--threads <n>', 'threads per model copy for ONNX Runtime (default: cores / workers)')
    .option('--quiet', 'no progress output')
    .option('--queue <redis://HOST:PORT/N>', "put the shards on a BullMQ queue in this Redis and wait while 'occmap worker' processes compute them")
    .option('--queue-name <name>', 'BullMQ queue name (--queue); workers must use the same', DEFAULT_QUEUE_NAME)
    .option('--attempts <n>', 'tries per shard before the job fails with its error (--queue)', String(DEFAULT_ATTEMPTS))
    .option('--poll-ms <n>', 'how often the shard directory is looked at while waiting (--queue)', '500')
    .addHelpText(
      'after',
      `
Every patch position costs one inference (625 per 21x21 map with the defaults), plus one for
the unoccluded image. The classifier takes images at their own size and pads internally, so the
patch only paints pixels inside the image: with --fill 0 this equals occluding the zero-padded
image (the seed); with another fill, unlike the seed, the padding stays 0.
Maps are written in shards to <out>.shards/ as they finish; after a crash or kill, rerun the
same command with --resume. Results do not depend on --workers.
With --queue, this process only enqueues the missing shards and waits: 'occmap worker --queue
URL' processes on any machine compute them into <out>.shards/, which must be on storage every
machine sees (the same absolute paths for --data, --model and --out); then the output is
assembled here, equal to a local run. A shard that fails --attempts times stops the job with
its error; rerun with --resume to retry (shards on disk are never recomputed).

Examples:
  occmap occlude --model clf --data hits.npz --out maps.npz
  occmap occlude --model clf --data hits.npz --out maps.npz --limit 1000 --workers 2
  occmap occlude --model clf --data hits.npz --out maps.npz --resume
  occmap occlude --model /shared/clf --data /shared/hits.npz --out /shared/maps.npz --queue redis://head:6379/0
  occmap occlude --model clf --data hits.npz --out drop.npz --score drop --aggregate mean --normalize none --target label`,
    )
    .action(async (raw: RawOccludeOptions) => {
      const job = parseOccludeOptions(raw);
      job.command = ['occmap', ...process.argv.slice(2)].join(' ');
      const s = await runOcclude(job);
      process.stderr.write(
        `occlude: wrote ${s.maps} maps to ${job.out}` +
          (s.reused > 0 ? ` (${s.reused} from earlier shards)` : '') +
          (s.computed > 0
            ? `; ${s.computed} computed in ${s.seconds.toFixed(1)} s: ${s.mapsPerSecond.toFixed(2)} maps/s, ${s.inferencesPerSecond.toFixed(0)} classifier inferences/s (${s.engine}, ${s.queued ? 'queue workers' : `${s.workers} worker${s.workers > 1 ? 's' : ''}`})`
            : '') +
          '\n',
      );
    });
}
