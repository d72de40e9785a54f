/**
 * `occlude --queue` + `occmap worker` against a real Redis (OCCMAP_TEST_REDIS, default
 * redis://127.0.0.1:6390/0, started by .ci/start-redis.sh): kill -9 of a worker mid-shard,
 * a coordinator restart, a shard failing every attempt. Skipped, with the reason, when no
 * Redis answers. Only this file's queues' keys are deleted afterwards.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { readDataset, writeDataset } from '../src/data/dataset.js';
import { buildClassifier } from '../src/models/classifier.js';
import { exportModelToOnnx } from '../src/models/to-onnx.js';
import { initTf } from '../src/runtime/tfjs.js';
import { checkQueueUrl, jobNamespace, probeRedis, shardJobId, shardOfJobId } from '../src/occlusion/queue.js';
import { randomImages } from './occlusion-fixtures.js';

const url = process.env.OCCMAP_TEST_REDIS ?? 'redis://127.0.0.1:6390/0';
let skip: string | false = false;
try {
  await probeRedis(url, 2000);
} catch (err) {
  skip = `no Redis at ${url} (${(err as Error).message}); start one with .ci/start-redis.sh or set OCCMAP_TEST_REDIS`;
}

const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'occ-queue-'));
const base = `occmap-test-${process.pid}-${Date.now().toString(36)}`;
const model = path.join(tmp, 'clf.onnx');
const data = path.join(tmp, 'data.npz');
const N = 24;
// One map per predict call (170 inferences per 9x9 map) so shards can hold 2 maps.
const common = ['--model', model, '--batch-size', '170', '--shard-size', '2', '--threads', '1'];

interface Proc {
  child: ChildProcess;
  err: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(args: string[]): Proc {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, err: () => err, exited };
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 40_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const worker = (queue: string, extra: string[] = []): Proc => start(['worker', '--queue', url, '--queue-name', queue, '--threads', '1', '--stalled-ms', '1500', ...extra]);
const procs: Proc[] = [];
const stopAll = async (): Promise<void> => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
};

let reference: Awaited<ReturnType<typeof readDataset>> | undefined;
async function referenceRun(): Promise<NonNullable<typeof reference>> {
  if (reference) return reference;
  await initTf('cpu');
  // The seed classifier's layers on 9x9 stamps, random weights, exported to ONNX.
  const m = buildClassifier({ inputShape: [9, 9, 1], numClasses: 2, seed: 3 });
  await exportModelToOnnx(m, model);
  m.dispose();
  const labels = Int32Array.from({ length: N }, (_, i) => i % 2);
  await writeDataset(data, { images: randomImages(5, N, 9, 9, 1), shape: [N, 9, 9, 1], labels, meta: { source: 'test' } });
  const out = path.join(tmp, 'local.npz');
  const p = start(['occlude', ...common, '--data', data, '--out', out, '--quiet']);
  const r = await p.exited;
  assert.equal(r.code, 0, p.err());
  reference = await readDataset(out);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of reference.maps!) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  assert.ok(hi - lo > 0.1, `maps vary (${lo}..${hi}), so equality below means something`);
  return reference;
}

async function assertSameAsLocal(out: string): Promise<void> {
  const ref = await referenceRun();
  const got = await readDataset(out);
  assert.deepEqual(got.maps, ref.maps);
  assert.deepEqual(got.images, ref.images);
  assert.deepEqual(got.labels, ref.labels);
  assert.deepEqual(got.meta.occlusion, ref.meta.occlusion);
  assert.ok(!existsSync(`${out}.shards`), 'shard directory removed after assembly');
}

after(async () => {
  await stopAll();
  if (skip) return;
  // Only this file's queues: bull:<base>-*:*
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `bull:${base}-*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await r.del(...keys);
  } while (cursor !== '0');
  r.disconnect();
});

test('job ids: one namespace per (job fingerprint, shard directory, map count), shard index recoverable', () => {
  const fp = 'ab'.repeat(32);
  const a = jobNamespace(fp, '/data/out.npz.shards', 100);
  assert.match(a, /^[0-9a-f]{32}$/);
  assert.equal(jobNamespace(fp, '/data/out.npz.shards', 100), a);
  const others = [jobNamespace('cd'.repeat(32), '/data/out.npz.shards', 100), jobNamespace(fp, '/data/other.npz.shards', 100), jobNamespace(fp, '/data/out.npz.shards', 99)];
  for (const b of others) {
    assert.notEqual(b, a);
    assert.equal(shardOfJobId(b, shardJobId(a, 7)), -1);
  }
  assert.equal(shardJobId(a, 7), `${a}-7`);
  assert.equal(shardOfJobId(a, shardJobId(a, 7)), 7);
  assert.equal(shardOfJobId(a, `${shardJobId(a, 7)}x`), -1);
  assert.equal(shardOfJobId(a, undefined), -1);
  assert.ok(!shardJobId(a, 3).includes(':'));
  assert.equal(checkQueueUrl('redis://h:6379/2'), 'redis://h:6379/2');
  assert.throws(() => checkQueueUrl('http://h:6379'), /OptionError: queue: expected a redis:\/\//);
  assert.throws(() => checkQueueUrl('redis://h:6379/x'), /must be a number/);
});

test('bad --queue: one-line error, exit 2, no output', async () => {
  await writeDataset(path.join(tmp, 'tiny.npz'), { images: randomImages(1, 2, 9, 9, 1), shape: [2, 9, 9, 1], meta: {} });
  if (!existsSync(model)) {
    await initTf('cpu');
    const m = buildClassifier({ inputShape: [9, 9, 1], numClasses: 2, seed: 3 });
    await exportModelToOnnx(m, model);
    m.dispose();
  }
  const out = path.join(tmp, 'bad.npz');
  const cases: [string, RegExp][] = [
    ['http://127.0.0.1:6390', /^occmap: --queue: expected a redis:\/\/ or rediss:\/\/ URL/],
    ['redis://127.0.0.1:1/0', /^occmap: --queue redis:\/\/127\.0\.0\.1:1\/0: cannot reach Redis \(ECONNREFUSED\)$/],
  ];
  const runs = cases.map(([q]) => start(['occlude', ...common, '--data', path.join(tmp, 'tiny.npz'), '--out', out, '--queue', q, '--quiet']));
  const w = start(['worker', '--queue', 'redis://127.0.0.1:1/0']);
  for (const [i, [, re]] of cases.entries()) {
    const p = runs[i];
    const r = await p.exited;
    assert.equal(r.code, 2, p.err());
    assert.equal(p.err().trimEnd().split('\n').length, 1, p.err());
    assert.match(p.err().trimEnd(), re);
  }
  assert.ok(!existsSync(out) && !existsSync(`${out}.shards`));
  assert.equal((await w.exited).code, 2);
  assert.match(w.err(), /^occmap: --queue redis:\/\/127\.0\.0\.1:1\/0: cannot reach Redis \(ECONNREFUSED\)$/m);
});

test('coordinator + 2 workers, one killed (SIGKILL) mid-shard: its shard is retried, the file equals a local occlude; a second run on the same queue does not mix', { skip, timeout: 90_000 }, async () => {
  const ref = await referenceRun();
  const queueName = `${base}-kill`;
  const out = path.join(tmp, 'queued.npz');
  const coord = start(['occlude', ...common, '--data', data, '--out', out, '--queue', url, '--queue-name', queueName, '--poll-ms', '50']);
  // A second run on the same queue, of the same job fingerprint (--limit is not part of it)
  // into another output: its shards must not be taken for the first run's.
  const out10 = path.join(tmp, 'queued10.npz');
  const coord10 = start(['occlude', ...common, '--data', data, '--out', out10, '--limit', '10', '--queue', url, '--queue-name', queueName, '--poll-ms', '50', '--quiet']);
  procs.push(coord, coord10);
  const a = worker(queueName);
  const b = worker(queueName);
  procs.push(a, b);
  // Kill worker a while it holds a shard (BullMQ records the holder as host:pid).
  const q = new Queue(queueName, { connection: { url } });
  let killed = -1;
  try {
    await until('worker a to hold a shard', async () => {
      for (const j of await q.getActive()) {
        if (j?.processedBy?.endsWith(`:${a.child.pid}`)) {
          a.child.kill('SIGKILL');
          killed = j.data.index;
          return true;
        }
      }
      return false;
    });
  } finally {
    await q.close();
  }
  assert.equal((await a.exited).signal, 'SIGKILL');
  const [r, r10] = await Promise.all([coord.exited, coord10.exited]);
  assert.equal(r.code, 0, coord.err());
  assert.equal(r10.code, 0, coord10.err());
  // Each run found its own jobs: none had to be re-added after another run's took their ids.
  assert.doesNotMatch(coord10.err(), /enqueued again/);
  assert.doesNotMatch(coord.err(), /enqueued again/);
  b.child.kill('SIGTERM');
  await b.exited;
  // Worker b finished the shard a was killed on (or found it written, if a died just after).
  assert.match(b.err(), new RegExp(`worker: shard ${killed} (\\(maps ${2 * killed}-${2 * killed + 1}\\) of job|of job \\w+ was already on disk)`), b.err());
  assert.match(coord.err(), /occlude: 12 shards on queue .*: 0 on disk \(0 maps\), 0 already queued, 12 enqueued/);
  assert.match(coord.err(), /occlude via queue \(170 inferences\/map\): 24\/24 maps, [\d.]+ maps\/s, ETA/);
  assert.match(coord.err(), /wrote 24 maps to .*queued\.npz; 24 computed in .* maps\/s/);
  await assertSameAsLocal(out);
  assert.equal(ref.maps!.length, N * 81);
  // One map per predict call, so the first 10 maps of the full run are the 10-map run's.
  const ten = await readDataset(out10);
  assert.deepEqual(ten.maps, ref.maps!.slice(0, 10 * 81));
  assert.equal(ten.meta.occlusion!.maps, 10);
});

test('coordinator restart: finished shards are not enqueued again, queued ones not duplicated', { skip, timeout: 90_000 }, async () => {
  await referenceRun();
  const queueName = `${base}-restart`;
  const out = path.join(tmp, 'restart.npz');
  const args = ['occlude', ...common, '--data', data, '--out', out, '--queue', url, '--queue-name', queueName, '--poll-ms', '50'];
  const c1 = start(args);
  procs.push(c1);
  await until('the first coordinator to enqueue', () => /12 enqueued/.test(c1.err()));
  const w1 = worker(queueName);
  procs.push(w1);
  const shards = `${out}.shards`;
  const onDisk = () => (existsSync(shards) ? readdirSync(shards).filter((f) => /^shard-\d+\.npz$/.test(f)).length : 0);
  await until('3 shards on disk', () => onDisk() >= 3);
  // Both die: the worker's active shard stays 'active' until another worker's stalled check.
  w1.child.kill('SIGKILL');
  c1.child.kill('SIGKILL');
  await Promise.all([w1.exited, c1.exited]);
  const done = onDisk();
  assert.ok(done >= 3 && done < 12, `${done} shards on disk`);

  const c2 = start([...args, '--resume']);
  procs.push(c2);
  await until('the restarted coordinator to enqueue', () => /enqueued/.test(c2.err()));
  const m = c2.err().match(/12 shards on queue .*: (\d+) on disk \((\d+) maps\), (\d+) already queued, (\d+) enqueued/);
  assert.ok(m, c2.err());
  assert.equal(Number(m[1]), done);
  assert.equal(Number(m[2]), 2 * done);
  assert.equal(Number(m[3]), 12 - done);
  assert.equal(Number(m[4]), 0);
  const w2 = worker(queueName);
  procs.push(w2);
  const r = await c2.exited;
  assert.equal(r.code, 0, c2.err());
  w2.child.kill('SIGTERM');
  await w2.exited;
  // No shard was computed twice by the new worker: it only did what was not on disk.
  const computed = [...w2.err().matchAll(/worker: shard (\d+) \(maps/g)].map((x) => Number(x[1]));
  assert.equal(computed.length, 12 - done, w2.err());
  await assertSameAsLocal(out);
});

test('a shard failing every attempt stops the coordinator: exit 2, one line naming the shard and the error', { skip, timeout: 90_000 }, async () => {
  await referenceRun();
  const queueName = `${base}-fail`;
  const changing = path.join(tmp, 'changing.npz');
  copyFileSync(data, changing);
  const out = path.join(tmp, 'failed.npz');
  const c = start(['occlude', ...common, '--data', changing, '--out', out, '--queue', url, '--queue-name', queueName, '--attempts', '2', '--poll-ms', '50', '--quiet']);
  procs.push(c);
  await until('the shards on the queue', async () => {
    const q = new Queue(queueName, { connection: { url } });
    try {
      return (await q.getWaitingCount()) === 12;
    } finally {
      await q.close();
    }
  });
  // The data changes under the queued job: every worker refuses every shard.
  await writeDataset(changing, { images: randomImages(6, N, 9, 9, 1), shape: [N, 9, 9, 1], meta: {} });
  const w = worker(queueName);
  procs.push(w);
  const r = await c.exited;
  w.child.kill('SIGTERM');
  await w.exited;
  assert.equal(r.code, 2, c.err());
  const lines = c.err().trimEnd().split('\n');
  assert.equal(lines.length, 1, c.err());
  assert.match(
    lines[0],
    /^occmap: shard \d+ \(maps \d+-\d+\) failed after 2 attempt\(s\): .*changing\.npz on worker host .* differs from the data the job was enqueued with \(job [0-9a-f]{32}-\d+ on queue .*-fail; fix the cause and rerun with --resume to retry it\)$/,
  );
  assert.ok(!existsSync(out));
  assert.match(w.err(), /failed \(attempt 1\): .*differs from the data/);
});

test('worker --idle-exit: leaves once the queue has had nothing to do that long', { skip, timeout: 90_000 }, async () => {
  const w = worker(`${base}-idle`, ['--idle-exit', '1']);
  procs.push(w);
  const r = await w.exited;
  assert.equal(r.code, 0, w.err());
  assert.match(w.err(), /worker: queue idle for 1 s; finishing the shards in hand/);
});
