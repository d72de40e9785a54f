/**
 * Exact maps of the seed classifier through the job runner (runOcclusionJob: shards, worker
 * threads, as `occmap occlude` runs them), full engine vs incremental engine, at 1 worker x 2
 * threads and 2 workers x 1 thread: on 2 cores, two single-threaded workers keep both cores
 * busy through the incremental engine's JavaScript gathering, which one process leaves serial.
 * Jobs alternate between the settings in rounds; each rate counts from the first finished piece
 * to the last (worker start-up and model loading left out).
 *
 *   node dist/bench/incremental-workers.js [--maps N] [--rounds R]
 */
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { initTf } from '../src/runtime/tfjs.js';
import { buildClassifier } from '../src/models/classifier.js';
import { modelToOnnx } from '../src/models/to-onnx.js';
import { loadModel } from '../src/models/load.js';
import { SEED_PARAMS } from '../src/occlusion/exact.js';
import { incrementalPredictorFor } from '../src/occlusion/incremental-predictor.js';
import { ShardStore } from '../src/occlusion/shards.js';
import { runOcclusionJob } from '../src/occlusion/workers.js';
import type { Predictor } from '../src/models/predictor.js';
import { Rng } from '../src/util/rng.js';

export interface BenchPredictorArg {
  engine: 'full' | 'incremental';
  threads: number;
  /** The seed classifier exported to ONNX (full engine). */
  onnx: string;
}

/** Worker-side factory (PredictorSource 'module'): the seed classifier (seed 1) on either engine. */
export async function benchPredictor(arg: BenchPredictorArg): Promise<Predictor> {
  if (arg.engine === 'full') return loadModel(arg.onnx, { threads: arg.threads, outputs: 'probs', layout: 'NHWC', batchSize: 4096 });
  await initTf('cpu');
  const clf = buildClassifier({ inputShape: [21, 21, 1], numClasses: 2, seed: 1 });
  const r = incrementalPredictorFor(clf, { hash: 'bench', threads: arg.threads });
  clf.dispose();
  if ('unsupported' in r) throw new Error(r.unsupported);
  return r.predictor;
}

export interface WorkerRate {
  engine: 'full' | 'incremental';
  workers: number;
  threads: number;
  mapsPerSec: number;
}

export async function runWorkerBench(o: { maps?: number; rounds?: number; log?: (l: string) => void } = {}): Promise<WorkerRate[]> {
  const maps = o.maps ?? 24;
  const rounds = o.rounds ?? 2;
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'occmap-incr-workers-'));
  try {
    await initTf('cpu');
    const clf = buildClassifier({ inputShape: [21, 21, 1], numClasses: 2, seed: 1 });
    const onnx = path.join(dir, 'c.onnx');
    writeFileSync(onnx, modelToOnnx(clf).bytes);
    clf.dispose();
    const rng = new Rng(4);
    const images = Float32Array.from({ length: maps * 441 }, () => rng.next());
    const url = pathToFileURL(fileURLToPath(import.meta.url)).href;
    const settings: { engine: 'full' | 'incremental'; workers: number; threads: number; maps: number; secs: number }[] = [];
    for (const engine of ['full', 'incremental'] as const) for (const [workers, threads] of [[1, 2], [2, 1]]) settings.push({ engine, workers, threads, maps: 0, secs: 0 });
    const local = { full: await benchPredictor({ engine: 'full', threads: 1, onnx }), incremental: await benchPredictor({ engine: 'incremental', threads: 1, onnx }) };
    for (let r = 0; r < rounds; r++) {
      for (const [si, s] of settings.entries()) {
        const arg: BenchPredictorArg = { engine: s.engine, threads: s.threads, onnx };
        const store = await ShardStore.open(
          path.join(dir, `job-${r}-${si}`),
          { params: { ...SEED_PARAMS }, modelHash: 'bench', engine: s.engine, dataHash: 'bench', shardSize: 3 },
          { resume: false },
        );
        let first: { t: number; maps: number } | undefined;
        let last = { t: 0, maps: 0 };
        // a predictor in this thread for shapes; with 1 worker the job also computes with it
        const here = s.workers === 1 ? await benchPredictor(arg) : local[s.engine];
        await runOcclusionJob({
          predictor: here,
          source: { kind: 'module', url, exportName: 'benchPredictor', arg },
          images,
          shape: [maps, 21, 21, 1],
          n: maps,
          opts: { ...SEED_PARAMS },
          store,
          workers: s.workers,
          onProgress: (m) => {
            const t = performance.now();
            first ??= { t, maps: m };
            last = { t, maps: m };
          },
        });
        if (s.workers === 1) here.dispose();
        store.remove();
        if (first && last.maps > first.maps) {
          s.maps += last.maps - first.maps;
          s.secs += (last.t - first.t) / 1000;
        }
      }
    }
    local.full.dispose();
    local.incremental.dispose();
    const out = settings.map((s) => ({ engine: s.engine, workers: s.workers, threads: s.threads, mapsPerSec: s.maps / s.secs }));
    const best = (e: string): number => Math.max(...out.filter((x) => x.engine === e).map((x) => x.mapsPerSec));
    log(`exact maps through the job runner (${maps} maps per job, ${rounds} rounds, shards of 3 maps):`);
    for (const x of out) log(`  ${x.engine.padEnd(12)} ${x.workers} worker(s) x ${x.threads} thread(s)  ${x.mapsPerSec.toFixed(2).padStart(7)} maps/s`);
    log(`  best incremental / best full: ${(best('incremental') / best('full')).toFixed(2)}x; load average ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`);
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const arg = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  await runWorkerBench({ maps: Number(arg('--maps') ?? 24), rounds: Number(arg('--rounds') ?? 2) });
}
