/**
 * Exact maps across machines on BullMQ (Redis): the coordinator (`occlude --queue URL`) puts
 * each shard of a job on a queue as one BullMQ job and waits; workers (`occmap worker`) on any
 * machine compute shards with the same per-piece code as a local run (computePiece) and write
 * them atomically into the job's shard directory, which every machine must see (shared
 * storage). The shard files are the results: BullMQ only carries the work and its failures,
 * so a coordinator restart trusts the directory, and the assembled file equals a local run.
 *
 * Job ids are `<namespace>-<shard index>`, the namespace a hash of the job fingerprint, shard
 * directory and map count: re-adding a queued shard is a no-op in BullMQ (a coordinator
 * restart finds its jobs), and two different jobs on one Redis (even one queue) never share
 * an id.
 */
import { engineWithoutThreads } from './incremental-engine-name.js';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { readDataset, type Dataset } from '../data/dataset.js';
import { loadPredictor, type LoadOptions } from '../models/load.js';
import type { Predictor } from '../models/predictor.js';
import { OptionError, UserError } from '../util/errors.js';
import { inputMismatch, type ExactOptions, type OcclusionParams } from './exact.js';
import { ShardStore, hashArrays, type JobIdentity } from './shards.js';
import { computePiece } from './workers.js';

export const DEFAULT_QUEUE_NAME = 'occmap';
export const DEFAULT_ATTEMPTS = 3;
export const DEFAULT_STALLED_MS = 30_000;

/** What one BullMQ job carries: everything a worker on another machine needs, by absolute path. */
export interface ShardJobData {
  version: 1;
  fingerprint: string;
  identity: JobIdentity;
  index: number;
  start: number;
  count: number;
  /** Dataset file, model path and the job's shard directory, as every machine sees them. */
  data: string;
  model: string;
  shardDir: string;
  engine: NonNullable<LoadOptions['engine']>;
  /** The model's input is the stamp zero-padded by this much (models/load.ts fitToStamps); 0 or absent: none. */
  modelPad?: number;
  /** Occlusion parameters and batch size (labels come from the dataset file). */
  opts: OcclusionParams & { batchSize: number };
}

export interface ShardJobResult {
  maps: number;
  inferences: number;
  seconds: number;
  /** The shard was already on disk (a duplicate delivery): nothing computed. */
  skipped: boolean;
  host: string;
}

/**
 * The job-id namespace of one run: its fingerprint, shard directory and map count. The
 * fingerprint alone is not enough: the same job written to two outputs (or with two
 * --limit values, which the fingerprint leaves out) has two shard directories to fill.
 */
export function jobNamespace(fingerprint: string, shardDir: string, n: number): string {
  return createHash('sha256').update(`${fingerprint}\0${path.resolve(shardDir)}\0${n}`).digest('hex').slice(0, 32);
}

/** The BullMQ job id of shard `index` (no ':' allowed, not an integer). */
export function shardJobId(namespace: string, index: number): string {
  return `${namespace}-${index}`;
}

/** The shard index of a job id in this namespace, or -1 (another run's id). */
export function shardOfJobId(namespace: string, id: string | undefined): number {
  const prefix = `${namespace}-`;
  return id?.startsWith(prefix) && /^\d+$/.test(id.slice(prefix.length)) ? Number(id.slice(prefix.length)) : -1;
}

/** The data part of a job's identity: the images, their shape, and the labels when the target uses them. */
export function jobDataHash(ds: Dataset, target: OcclusionParams['target']): string {
  return hashArrays(ds.images, new Int32Array(ds.shape), target === 'label' ? ds.labels : undefined);
}

function firstLine(s: unknown): string {
  return String(s ?? '').split('\n')[0].trim();
}

/** A redis:// or rediss:// URL, or a UserError naming the option. */
export function checkQueueUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new OptionError(['queue'], `: expected redis://HOST:PORT/DB, got '${url}'`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new OptionError(['queue'], `: expected a redis:// or rediss:// URL, got '${url}'`);
  if (u.pathname && u.pathname !== '/' && !/^\/\d+$/.test(u.pathname)) throw new OptionError(['queue'], `: the database in '${url}' must be a number (redis://HOST:PORT/N)`);
  return url;
}

/** The URL without a password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * Fail fast with one line when Redis is unreachable: BullMQ's own connections retry forever,
 * which is right during a long job and wrong at start-up.
 */
export async function probeRedis(url: string, timeoutMs = 5000): Promise<void> {
  const r = new Redis(url, { lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  // connect() rejects with a generic 'Connection is closed'; the cause comes as an event.
  let cause: NodeJS.ErrnoException | undefined;
  r.on('error', (e: NodeJS.ErrnoException) => (cause ??= e));
  try {
    await r.connect();
    await r.ping();
  } catch (err) {
    const e = cause ?? (err as NodeJS.ErrnoException);
    throw new OptionError(['queue'], `${redactUrl(url)}: cannot reach Redis (${e.code ?? firstLine(e.message)})`);
  } finally {
    r.disconnect();
  }
}

// ------------------------------------------------------------------------------ coordinator

export interface CoordinatorInput {
  url: string;
  queueName: string;
  store: ShardStore;
  /** Maps in the job, and their geometry and class count (to validate shard files). */
  n: number;
  h: number;
  w: number;
  numClasses: number;
  data: string;
  model: string;
  engine: ShardJobData['engine'];
  modelPad?: number;
  opts: ShardJobData['opts'];
  attempts: number;
  /** How often the shard directory is looked at. */
  pollMs?: number;
  /** How often every outstanding shard's BullMQ state is checked (lost jobs are re-added). */
  reconcileMs?: number;
  /** Once enqueued: shards found on disk, already queued (a restart), added now. */
  onEnqueued?: (info: { shards: number; onDisk: number; mapsOnDisk: number; queued: number; added: number; retried: number }) => void;
  /** Maps of a shard that just appeared on disk. */
  onShard?: (maps: number) => void;
  /** Shards whose jobs vanished from the queue without their file, just enqueued again. */
  onLost?: (shards: number[]) => void;
  /** Redis stopped answering (up = false, with why) or answers again. */
  onRedis?: (up: boolean, why?: string) => void;
}

export interface CoordinatorResult {
  /** Maps computed by workers during this run, and the wall time spent waiting for them. */
  computed: number;
  seconds: number;
}

const QUEUED_STATES = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'paused', 'wait']);

const JOB_OPTS = {
  backoff: { type: 'exponential', delay: 1000 },
  // The shard file is the result; failed jobs stay, to be reported and retried on --resume.
  removeOnComplete: true,
  removeOnFail: false,
} as const;

/** One coordinator run: the queue, the shard store and the shards still outstanding. */
class Coordinator {
  readonly outstanding = new Set<number>();
  mapsOnDisk = 0;
  computed = 0;
  private readonly m: number;
  private readonly ns: string;
  private lastFailedCount = -1;
  private lastReconcile = performance.now();
  private redisDown = false;

  constructor(
    private readonly input: CoordinatorInput,
    private readonly queue: Queue<ShardJobData, ShardJobResult>,
  ) {
    this.m = input.h * input.w;
    this.ns = jobNamespace(input.store.fingerprint, input.store.dir, input.n);
  }

  private get store(): ShardStore {
    return this.input.store;
  }

  private id(s: number): string {
    return shardJobId(this.ns, s);
  }

  private count(s: number): number {
    return this.store.range(s, this.input.n)[1];
  }

  arrived(s: number): boolean {
    if (!existsSync(this.store.shardPath(s))) return false;
    const [start, count] = this.store.range(s, this.input.n);
    return this.store.read(s, start, count, this.m, this.input.numClasses) !== null;
  }

  private dataFor(s: number): ShardJobData {
    const { store, input } = this;
    const [start, count] = store.range(s, input.n);
    return {
      version: 1,
      fingerprint: store.fingerprint,
      identity: { params: store.job.params, modelHash: store.job.modelHash, engine: store.job.engine, dataHash: store.job.dataHash, shardSize: store.job.shardSize },
      index: s,
      start,
      count,
      data: path.resolve(input.data),
      model: path.resolve(input.model),
      shardDir: path.resolve(store.dir),
      engine: input.engine,
      ...(input.modelPad ? { modelPad: input.modelPad } : {}),
      opts: input.opts,
    };
  }

  private async add(shards: number[]): Promise<void> {
    for (let i = 0; i < shards.length; i += 1000) {
      await this.queue.addBulk(
        shards.slice(i, i + 1000).map((s) => ({ name: 'shard', data: this.dataFor(s), opts: { ...JOB_OPTS, attempts: this.input.attempts, jobId: this.id(s) } })),
      );
    }
  }

  /**
   * Read the directory, then enqueue what is missing. A restart finds its shards still queued
   * (kept), or failed / finished without a file (removed and added again: rerunning is how a
   * user retries a failed shard).
   */
  async enqueueMissing(): Promise<void> {
    const total = this.store.count(this.input.n);
    for (let s = 0; s < total; s++) {
      if (this.arrived(s)) this.mapsOnDisk += this.count(s);
      else this.outstanding.add(s);
    }
    const ids = [...this.outstanding];
    const states = await Promise.all(ids.map((s) => this.queue.getJobState(this.id(s))));
    const toAdd: number[] = [];
    let queued = 0;
    let retried = 0;
    for (const [i, s] of ids.entries()) {
      const state = states[i];
      if (QUEUED_STATES.has(state)) queued++;
      else if (state === 'unknown' && this.arrived(s)) {
        // finished by a worker of an earlier run since the directory was read above
        this.outstanding.delete(s);
        this.mapsOnDisk += this.count(s);
      } else {
        if (state !== 'unknown') {
          await this.queue.remove(this.id(s));
          retried++;
        }
        toAdd.push(s);
      }
    }
    await this.add(toAdd);
    this.input.onEnqueued?.({ shards: total, onDisk: total - this.outstanding.size, mapsOnDisk: this.mapsOnDisk, queued, added: toAdd.length, retried });
  }

  /** Shards that appeared since the last look: one directory listing, not a stat per shard (shared filesystems). */
  collectArrivals(): void {
    const listed = new Set(readdirSync(this.store.dir));
    for (const s of this.outstanding) {
      if (listed.has(path.basename(this.store.shardPath(s))) && this.arrived(s)) {
        this.outstanding.delete(s);
        const c = this.count(s);
        this.computed += c;
        this.input.onShard?.(c);
      }
    }
  }

  private failure(s: number, job: Job | undefined): UserError {
    const [start, count] = this.store.range(s, this.input.n);
    const reason = firstLine(job?.failedReason) || 'failed';
    return new UserError(
      `shard ${s} (maps ${start}-${start + count - 1}) failed after ${job?.attemptsMade ?? '?'} attempt(s): ${reason} ` +
        `(job ${this.id(s)} on queue ${this.input.queueName}; fix the cause and rerun with --resume to retry it)`,
    );
  }

  /** A shard that failed all its attempts stops the job. The count is one round trip; the list only when it changed. */
  private async checkFailures(): Promise<void> {
    const fc = await this.queue.getFailedCount();
    if (fc === this.lastFailedCount) return;
    this.lastFailedCount = fc;
    if (fc === 0) return;
    for (const job of await this.queue.getFailed(0, -1)) {
      const s = shardOfJobId(this.ns, job?.id);
      if (this.outstanding.has(s) && !this.arrived(s)) throw this.failure(s, job);
    }
  }

  /**
   * A job gone without its file (removed by hand, Redis flushed or restarted without
   * persistence) would be waited for forever: add it again. State first, file second: a worker
   * writes the file before its job completes and disappears.
   */
  private async reconcile(): Promise<void> {
    if (performance.now() - this.lastReconcile <= (this.input.reconcileMs ?? 15_000)) return;
    this.lastReconcile = performance.now();
    const ids = [...this.outstanding];
    const st = await Promise.all(ids.map((s) => this.queue.getJobState(this.id(s))));
    const lost: number[] = [];
    for (const [i, s] of ids.entries()) {
      if ((st[i] !== 'unknown' && st[i] !== 'completed') || this.arrived(s)) continue;
      if (st[i] === 'completed') await this.queue.remove(this.id(s));
      lost.push(s);
    }
    if (lost.length > 0) {
      await this.add(lost);
      this.input.onLost?.(lost);
    }
  }

  /** Talk to Redis once per poll; while it is away, shards keep arriving on disk: say so once and keep waiting. */
  async checkQueue(): Promise<void> {
    try {
      await this.checkFailures();
      await this.reconcile();
      if (this.redisDown) this.input.onRedis?.(true);
      this.redisDown = false;
    } catch (err) {
      if (err instanceof UserError) throw err;
      if (!this.redisDown) this.input.onRedis?.(false, firstLine((err as Error).message));
      this.redisDown = true;
    }
  }
}

/**
 * Enqueue the shards of `store` not yet on disk and wait until all are: returns when every
 * shard file is present and valid, throws a UserError naming the first shard that failed
 * all its attempts (BullMQ keeps it in the failed set; a rerun with --resume retries it).
 */
export async function runQueueCoordinator(input: CoordinatorInput): Promise<CoordinatorResult> {
  const pollMs = input.pollMs ?? 500;
  await probeRedis(input.url);
  const queue = new Queue<ShardJobData, ShardJobResult>(input.queueName, { connection: { url: input.url } });
  queue.on('error', () => undefined); // transient connection errors: ioredis reconnects
  try {
    const c = new Coordinator(input, queue);
    await c.enqueueMissing();
    const t0 = performance.now();
    while (c.outstanding.size > 0) {
      c.collectArrivals();
      if (c.outstanding.size === 0) break;
      await c.checkQueue();
      await new Promise((r) => setTimeout(r, pollMs));
    }
    return { computed: c.computed, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await queue.close();
  }
}

// ---------------------------------------------------------------------------------- worker

export interface QueueWorkerOptions {
  url: string;
  queueName: string;
  /** Engine threads per model copy (ONNX Runtime); default: cores / concurrency. */
  threads?: number;
  /** Shards computed at once by this process (each in its own thread with its own model copy). */
  concurrency: number;
  /** Lock duration = stalled-check interval: how soon a dead worker's shard goes to another. */
  stalledMs: number;
  /** How many times a shard may be lost with a dead worker before it counts as failed. */
  maxStalled?: number;
  log?: (line: string) => void;
}

/**
 * Loaded things (a dataset, a model) by key, shared by the shards in hand; when a shard of
 * another job arrives, the ones no shard uses any more are dropped.
 */
class Cache<T> {
  private readonly entries = new Map<string, { value: Promise<T>; users: number }>();
  constructor(private readonly drop: (v: T) => void) {}

  async use<R>(key: string, load: () => Promise<T>, fn: (v: T) => Promise<R>): Promise<R> {
    let e = this.entries.get(key);
    if (!e) {
      for (const [k, old] of this.entries) {
        if (old.users > 0) continue;
        this.entries.delete(k);
        old.value.then(this.drop, () => undefined);
      }
      e = { value: load(), users: 0 };
      this.entries.set(key, e);
    }
    e.users++;
    try {
      return await fn(await e.value);
    } catch (err) {
      // A failed load is not kept: the next shard tries again (the file may be fixed by then).
      if (this.entries.get(key) === e && (await e.value.then(() => false, () => true))) this.entries.delete(key);
      throw err;
    } finally {
      e.users--;
    }
  }
}

/**
 * The processor of shard jobs, with the dataset and model of the latest job kept loaded
 * (consecutive shards of one job reuse them); queue-processor.ts runs it in a worker thread.
 */
export function shardProcessor(o: { threads?: number }) {
  const host = hostname();
  const datasets = new Cache<{ ds: Dataset; hash: string }>(() => undefined);
  const models = new Cache<Predictor>((p) => p.dispose());

  return async (job: Job<ShardJobData, ShardJobResult>): Promise<ShardJobResult> => {
    const d = job.data;
    const t0 = performance.now();
    if (d.version !== 1) throw new Error(`job ${job.id}: unknown job format version ${d.version}; update occmap on this worker`);
    if (!existsSync(path.join(d.shardDir, 'job.json'))) {
      throw new Error(`${d.shardDir}/job.json is not visible on worker host ${host}: the shard directory must be on storage every machine sees`);
    }
    const store = await ShardStore.open(d.shardDir, d.identity, { resume: true });
    if (store.fingerprint !== d.fingerprint) throw new Error(`${d.shardDir}: holds another job than the one queued (fingerprint differs)`);

    const st = statSync(d.data);
    const dataKey = `${d.data}|${st.size}|${st.mtimeMs}|${d.opts.target === 'label'}`;
    const loadData = async () => {
      const ds = await readDataset(d.data);
      return { ds, hash: jobDataHash(ds, d.opts.target) };
    };
    return datasets.use(dataKey, loadData, ({ ds: dataset, hash }) => {
      if (hash !== d.identity.dataHash) throw new Error(`${d.data} on worker host ${host} differs from the data the job was enqueued with`);
      const modelKey = `${d.model}|${d.engine}|${o.threads}|${d.modelPad ?? 0}`;
      return models.use(modelKey, () => loadPredictor(d.model, { engine: d.engine, threads: o.threads, pad: d.modelPad }), async (predictor) => {
        if (predictor.hash !== d.identity.modelHash) throw new Error(`${d.model} on worker host ${host} differs from the model the job was enqueued with`);
        const engine = engineWithoutThreads(predictor.engine);
        if (engine !== d.identity.engine) throw new Error(`worker host ${host} runs ${d.model} on ${engine}, the job needs ${d.identity.engine} (same engine, same bits)`);
        const mismatch = inputMismatch(predictor, dataset.shape);
        if (mismatch) throw new Error(`${d.model}: ${mismatch}`);
        const [, h, w] = dataset.shape;
        if (store.read(d.index, d.start, d.count, h * w, predictor.numClasses)) {
          return { maps: d.count, inferences: 0, seconds: (performance.now() - t0) / 1000, skipped: true, host };
        }
        let lastReport = 0;
        const r = await computePiece(predictor, dataset.images, dataset.shape, dataset.labels, d.opts, d.start, d.count, (maps) => {
          const now = performance.now();
          if (now - lastReport > 1000) {
            lastReport = now;
            void job.updateProgress(maps).catch(() => undefined);
          }
        });
        await store.write(d.index, d.start, d.count, h, w, r);
        return { maps: d.count, inferences: r.inferences, seconds: (performance.now() - t0) / 1000, skipped: false, host };
      });
    });
  };
}

export interface RunningWorker {
  /** Stop taking shards, finish the ones in hand, disconnect. */
  close(): Promise<void>;
}

export async function startQueueWorker(o: QueueWorkerOptions): Promise<RunningWorker> {
  await probeRedis(o.url);
  const worker = new Worker<ShardJobData, ShardJobResult>(o.queueName, fileURLToPath(new URL('./queue-processor.js', import.meta.url)), {
    connection: { url: o.url },
    concurrency: o.concurrency,
    lockDuration: o.stalledMs,
    stalledInterval: o.stalledMs,
    maxStalledCount: o.maxStalled ?? DEFAULT_ATTEMPTS,
    // Shown on each active job (processedBy): which machine and process holds a shard.
    name: `${hostname()}:${process.pid}`,
    useWorkerThreads: true,
    workerThreadsOptions: { workerData: { threads: o.threads } },
  });
  worker.on('completed', (job, r) => {
    const d = job.data;
    if (r?.skipped) o.log?.(`worker: shard ${d.index} of job ${d.fingerprint.slice(0, 8)} was already on disk`);
    else o.log?.(`worker: shard ${d.index} (maps ${d.start}-${d.start + d.count - 1}) of job ${d.fingerprint.slice(0, 8)}: ${d.count} maps in ${r?.seconds?.toFixed(1)} s`);
  });
  worker.on('failed', (job, err) => {
    o.log?.(`worker: shard ${job?.data?.index ?? '?'} of job ${job?.data?.fingerprint?.slice(0, 8) ?? '?'} failed (attempt ${job?.attemptsMade ?? '?'}): ${firstLine(err?.message)}`);
  });
  worker.on('error', (err) => o.log?.(`worker: ${firstLine(err?.message)}`));
  await worker.waitUntilReady();
  return { close: () => worker.close() };
}
