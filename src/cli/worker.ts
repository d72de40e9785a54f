/**
 * `occmap worker`: compute shards of `occlude --queue` jobs from a BullMQ queue, on any
 * machine that sees the jobs' data, model and shard directory at the same absolute paths.
 * Runs until SIGINT/SIGTERM (finishing the shards in hand) or, with --idle-exit, until the
 * queue has been empty that long (batch systems).
 */
import type { Command } from 'commander';
import { availableParallelism } from 'node:os';
import { Queue } from 'bullmq';
import { UserError } from '../util/errors.js';
import { DEFAULT_QUEUE_NAME, DEFAULT_STALLED_MS, checkQueueUrl, redactUrl, startQueueWorker } from '../occlusion/queue.js';
import { int } from './options.js';

interface RawWorkerOptions {
  queue: string;
  queueName: string;
  threads?: string;
  concurrency: string;
  stalledMs: string;
  idleExit?: string;
  quiet?: boolean;
}


export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description("compute shards of 'occlude --queue' jobs from a BullMQ queue (run one or more per machine)")
    .requiredOption('--queue <redis://HOST:PORT/N>', 'the Redis the coordinator enqueued on')
    .option('--queue-name <name>', 'BullMQ queue name, as given to occlude', DEFAULT_QUEUE_NAME)
    .option('--threads <n>', 'ONNX Runtime threads for the model (default: cores / concurrency)')
    .option('--concurrency <n>', 'shards computed at once, each in a thread with its own model copy', '1')
    .option('--stalled-ms <n>', "lock time: a dead worker's shard goes to another after at most about twice this", String(DEFAULT_STALLED_MS))
    .option('--idle-exit <seconds>', 'exit after the queue has had nothing waiting or running this long')
    .option('--quiet', 'no line per shard')
    .addHelpText(
      'after',
      `
Each shard is computed with the job's engine and options, written atomically into the job's
<out>.shards/ directory (shared storage), and only then marked done. A worker killed mid-shard
(even kill -9) loses its lock; after --stalled-ms another worker takes the shard over.

Examples:
  occmap worker --queue redis://head:6379/0
  occmap worker --queue redis://head:6379/0 --threads 4 --concurrency 2
  occmap worker --queue redis://head:6379/0 --idle-exit 60     # in a batch job`,
    )
    .action(async (raw: RawWorkerOptions) => {
      const url = checkQueueUrl(raw.queue);
      if (!/^[A-Za-z0-9._-]+$/.test(raw.queueName)) throw new UserError(`--queue-name: letters, digits, '.', '_' and '-' only, got '${raw.queueName}'`);
      const concurrency = int('concurrency', raw.concurrency, 1);
      const threads = raw.threads === undefined ? Math.max(1, Math.floor(availableParallelism() / concurrency)) : int('threads', raw.threads, 1);
      const stalledMs = int('stalled-ms', raw.stalledMs, 100);
      const idleExit = raw.idleExit === undefined ? undefined : int('idle-exit', raw.idleExit, 1);
      // --quiet drops the line per finished shard, never a failure.
      const log = (line: string): void => {
        if (!raw.quiet || !/( maps in [\d.]+ s| already on disk)$/.test(line)) process.stderr.write(`${line}\n`);
      };
      const worker = await startQueueWorker({ url, queueName: raw.queueName, threads, concurrency, stalledMs, log });
      process.stderr.write(`worker: listening on queue ${raw.queueName} at ${redactUrl(url)} (${threads} thread${threads > 1 ? 's' : ''}, concurrency ${concurrency})\n`);

      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (why: string): void => {
          if (stopping) return;
          stopping = true;
          process.stderr.write(`worker: ${why}; finishing the shards in hand\n`);
          clearInterval(timer);
          worker.close().then(resolve, resolve);
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
        let timer: NodeJS.Timeout | undefined;
        if (idleExit !== undefined) {
          const queue = new Queue(raw.queueName, { connection: { url } });
          queue.on('error', () => undefined);
          let idleSince = performance.now();
          timer = setInterval(() => {
            queue
              .getJobCounts('waiting', 'active', 'delayed', 'prioritized')
              .then((c) => {
                if (Object.values(c).some((v) => v > 0)) idleSince = performance.now();
                else if (performance.now() - idleSince > idleExit * 1000) {
                  stop(`queue idle for ${idleExit} s`);
                  void queue.close();
                }
              })
              .catch(() => undefined);
          }, 1000);
        }
      });
    });
}
