/**
 * `occmap occlude`: exact occlusion maps for a dataset, written as the dataset plus `maps`.
 * A thin client of occludeDataset (occlusion/job.ts): option parsing, progress bars, messages.
 */
import type { Command } from 'commander';
import { DEFAULT_BATCH_SIZE, SEED_PARAMS, type OcclusionParams } from '../occlusion/exact.js';
import { parsePatch } from '../occlusion/geometry.js';
import { DEFAULT_SHARD_SIZE, occludeDataset, type OccludeDatasetOptions, type OccludeDatasetResult } from '../occlusion/job.js';
import { DEFAULT_ATTEMPTS, DEFAULT_QUEUE_NAME, checkQueueUrl } from '../occlusion/queue.js';
import { UserError } from '../util/errors.js';
import { ProgressPrinter } from '../util/progress.js';
import { int } from './options.js';

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
  approx?: string;
}

/** The parsed command line: occludeDataset's options with the output file required. */
export type OccludeJob = OccludeDatasetOptions & { data: string; out: string; params: OcclusionParams; quiet?: boolean };

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
    engine: oneOf('engine', o.engine, ['auto', 'incremental', 'onnx', 'tfjs'] as const),
    threads: o.threads === undefined ? undefined : int('threads', o.threads, 1),
    approx: o.approx === undefined ? undefined : fraction('approx', o.approx),
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

function fraction(name: string, text: string): number {
  const v = Number(text);
  if (text.trim() === '' || !(v > 0 && v <= 1)) throw new UserError(`--${name}: expected a number in (0, 1], got '${text}'`);
  return v;
}

function queueName(name: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new UserError(`--queue-name: letters, digits, '.', '_' and '-' only, got '${name}'`);
  return name;
}

/** Run the job with progress bars and one-line notes on stderr (warnings even with --quiet). */
export async function runOcclude(job: OccludeJob): Promise<OccludeDatasetResult> {
  const printer = new ProgressPrinter({ quiet: job.quiet });
  try {
    return await occludeDataset({
      ...job,
      onProgress: printer.callback,
      log: (line, level) => {
        if (level === 'warning' || !job.quiet) process.stderr.write(`occlude: ${level === 'warning' ? 'warning: ' : ''}${line}\n`);
      },
    });
  } finally {
    printer.stop();
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
    .option('--engine <auto|incremental|onnx|tfjs>', 'incremental: recompute only what each patch changes (sequential conv nets in a tfjs model directory; same maps); onnx / tfjs: one whole inference per position; auto: incremental where it can run, else onnx, else tfjs', 'auto')
    .option('--threads <n>', 'threads per model copy for ONNX Runtime (default: cores / workers)')
    .option('--approx <tau>', 'approximate maps on the incremental engine: each layer recomputes at most tau (0..1] of its output per axis around the change (Krypton); SSIM and max error against exact maps of the first images are printed and stored in meta.occlusion')
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
      const { summary: s } = await runOcclude(job);
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
