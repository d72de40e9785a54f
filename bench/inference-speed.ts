/**
 * Inference benchmark (issue 3): the seed classifier and the seed explainer on this machine,
 * every figure measured in this one run so the ratios compare like with like.
 *
 *   classifier inferences/s: one image per call (tfjs, ONNX), tfjs batched, ONNX batched at
 *   1 and 2 threads; exact maps/s and estimated maps/s (throughput, large batches); exact vs
 *   estimated latency for ONE stamp (what a service answering one alert sees); achieved
 *   GFLOP/s from the models' FLOP counts; the machine's cores.
 *
 * Weights are random: speed does not depend on them.
 */
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { tf, initTf } from '../src/runtime/tfjs.js';
import { buildClassifier } from '../src/models/classifier.js';
import { buildAutoencoder } from '../src/models/autoencoder.js';
import { modelFlops } from '../src/models/flops.js';
import { exportModelToOnnx } from '../src/models/to-onnx.js';
import { createOnnxSession, runOnnxBatched, releaseOnnxSession } from '../src/runtime/onnx.js';
import { loadModel } from '../src/models/load.js';
import { TfjsPredictor } from '../src/models/tfjs-predictor.js';
import { exactMaps, SEED_PARAMS } from '../src/occlusion/exact.js';
import type { Predictor } from '../src/models/predictor.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { Rng } from '../src/util/rng.js';

export interface InferenceBenchOptions {
  /** Seconds spent on each throughput measurement (after a warm-up call). */
  seconds?: number;
  /** Stamps for the exact-map throughput figures. */
  stamps?: number;
  log?: (line: string) => void;
}

export interface Rate {
  what: string;
  perSec: number;
  unit: string;
  calls: number;
  /** Achieved GFLOP/s where a FLOP count applies. */
  gflops?: number;
}

export interface InferenceBenchResult {
  machine: { cpus: number; model: string; loadavg: number[]; node: string; backend: string };
  flops: { classifier: number; explainer: number; exactMap: number; ratio: number };
  classifier: Rate[];
  maps: Rate[];
  latency: { exactMs: number; estimatedMs: number; speedup: number; exactEngine: string; estimatedEngine: string };
  throughput: { exactMapsPerSec: number; estimatedMapsPerSec: number; speedup: number };
  targets: { onnx2VsTfjsBatched: number; estimatedVsExactThroughput: number; estimatedVsExactLatency: number };
}

/** Call `fn` repeatedly for about `seconds` (at least twice) after one warm-up call. */
async function timeLoop(seconds: number, fn: () => Promise<unknown>): Promise<{ calls: number; secs: number }> {
  await fn();
  let calls = 0;
  const t0 = performance.now();
  let dt = 0;
  while (calls < 2 || dt < seconds * 1000) {
    await fn();
    calls++;
    dt = performance.now() - t0;
  }
  return { calls, secs: dt / 1000 };
}

/** Median wall time of `reps` calls, after a warm-up: latency, not throughput. */
async function medianMs(reps: number, fn: () => Promise<unknown>): Promise<number> {
  await fn();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

export async function runInferenceBench(o: InferenceBenchOptions = {}): Promise<InferenceBenchResult> {
  const seconds = o.seconds ?? 3;
  const stamps = o.stamps ?? 8;
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const backend = await initTf('auto');
  const rng = new Rng(1);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'occmap-bench-'));
  const clf = buildClassifier({ inputShape: [21, 21, 1], numClasses: 2, seed: 1 });
  const ae = buildAutoencoder({ seed: 1 });
  const fClf = modelFlops(clf);
  const fAe = modelFlops(ae);
  const positions = 625;
  const result: InferenceBenchResult = {
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? '?', loadavg: os.loadavg(), node: process.version, backend },
    flops: { classifier: fClf, explainer: fAe, exactMap: (positions + 1) * fClf, ratio: ((positions + 1) * fClf) / fAe },
    classifier: [],
    maps: [],
    latency: { exactMs: 0, estimatedMs: 0, speedup: 0, exactEngine: '', estimatedEngine: '' },
    throughput: { exactMapsPerSec: 0, estimatedMapsPerSec: 0, speedup: 0 },
    targets: { onnx2VsTfjsBatched: 0, estimatedVsExactThroughput: 0, estimatedVsExactLatency: 0 },
  };
  try {
    const clfOnnx = path.join(dir, 'classifier.onnx');
    const aeOnnx = path.join(dir, 'explainer.onnx');
    await exportModelToOnnx(clf, clfOnnx);
    await exportModelToOnnx(ae, aeOnnx);
    const images = Float32Array.from({ length: (positions + 1) * 441 }, () => rng.next());
    const one = images.subarray(0, 441);
    const addRate = (list: Rate[], what: string, items: number, r: { calls: number; secs: number }, unit: string, flops?: number) => {
      const perSec = (items * r.calls) / r.secs;
      const rate: Rate = { what, perSec, unit, calls: r.calls, ...(flops ? { gflops: (perSec * flops) / 1e9 } : {}) };
      list.push(rate);
      log(`${what.padEnd(44)} ${perSec.toFixed(1).padStart(10)} ${unit}${rate.gflops ? `  (${rate.gflops.toFixed(1)} GFLOP/s)` : ''}`);
      return perSec;
    };

    // Classifier inferences/s.
    const tfjs = new TfjsPredictor(clf, { hash: 'bench', batchSize: 1024 });
    addRate(result.classifier, `tfjs-${backend}, one image per call`, 1, await timeLoop(seconds, () => tfjs.predict(one, 1)), 'inferences/s', fClf);
    const tfjsBatched = addRate(result.classifier, `tfjs-${backend}, batch ${positions + 1}`, positions + 1, await timeLoop(seconds, () => tfjs.predict(images, positions + 1)), 'inferences/s', fClf);
    const onnx: Record<number, Predictor> = {};
    let onnx2 = 0;
    for (const threads of [1, 2]) {
      onnx[threads] = await loadModel(clfOnnx, { threads, batchSize: 1024, outputs: 'probs', layout: 'NHWC' });
      if (threads === 1) {
        addRate(result.classifier, 'onnxruntime 1 thread, one image per call', 1, await timeLoop(seconds, () => onnx[1].predict(one, 1)), 'inferences/s', fClf);
      }
      const r = addRate(result.classifier, `onnxruntime ${threads} thread(s), batch ${positions + 1}`, positions + 1, await timeLoop(seconds, () => onnx[threads].predict(images, positions + 1)), 'inferences/s', fClf);
      if (threads === 2) onnx2 = r;
    }

    // Exact maps (throughput over several stamps, and one stamp's latency).
    const batch = images.subarray(0, stamps * 441);
    const shape: [number, number, number, number] = [stamps, 21, 21, 1];
    let bestExact = 0;
    let bestEngine = '';
    for (const p of [tfjs, onnx[1], onnx[2]]) {
      const r = addRate(result.maps, `exact maps, ${p.engine}`, stamps, await timeLoop(seconds, () => exactMaps(p, batch, shape, SEED_PARAMS)), 'maps/s', result.flops.exactMap);
      if (r > bestExact) {
        bestExact = r;
        bestEngine = p.engine;
      }
    }
    const exactP = Object.values(onnx).find((p) => p.engine === bestEngine) ?? tfjs;
    const oneShape: [number, number, number, number] = [1, 21, 21, 1];
    result.latency.exactMs = await medianMs(5, () => exactMaps(exactP, one, oneShape, SEED_PARAMS));
    result.latency.exactEngine = exactP.engine;

    // Estimated maps: the explainer, one inference per map, at 1 and 2 threads like the exact
    // engine; each side is compared at its best setting.
    const big = 256;
    const aeImages = Float32Array.from({ length: big * 576 }, () => rng.next());
    const aeOne = aeImages.subarray(0, 576);
    let estPerSec = 0;
    let bestLatency = Infinity;
    let latencyEngine = '';
    for (const threads of [1, 2]) {
      const aeSession = await createOnnxSession(aeOnnx, { threads, cache: false });
      const inputName = aeSession.inputNames[0];
      const feed = (data: Float32Array) => [{ name: inputName, data, shape: [24, 24, 1] }];
      estPerSec = Math.max(estPerSec, addRate(result.maps, `estimated maps, onnxruntime ${threads} thread(s), batch ${big}`, big, await timeLoop(seconds, () => runOnnxBatched(aeSession, feed(aeImages), big, { batchSize: big })), 'maps/s', fAe));
      const ms = await medianMs(50, () => runOnnxBatched(aeSession, feed(aeOne), 1));
      if (ms < bestLatency) {
        bestLatency = ms;
        latencyEngine = `onnxruntime (${threads} thread${threads > 1 ? 's' : ''})`;
      }
      await releaseOnnxSession(aeSession);
    }
    result.latency.estimatedMs = bestLatency;
    result.latency.estimatedEngine = latencyEngine;
    const aeTf = ae;
    addRate(result.maps, `estimated maps, tfjs-${backend}, batch ${big}`, big, await timeLoop(seconds, async () => {
      const t = tf.tidy(() => aeTf.predict(tf.tensor4d(aeImages, [big, 24, 24, 1])) as tf.Tensor);
      await t.data();
      t.dispose();
    }), 'maps/s', fAe);

    result.latency.speedup = result.latency.exactMs / result.latency.estimatedMs;
    result.throughput = { exactMapsPerSec: bestExact, estimatedMapsPerSec: estPerSec, speedup: estPerSec / bestExact };
    result.targets = {
      onnx2VsTfjsBatched: onnx2 / tfjsBatched,
      estimatedVsExactThroughput: result.throughput.speedup,
      estimatedVsExactLatency: result.latency.speedup,
    };
    log(`one stamp: exact ${result.latency.exactMs.toFixed(1)} ms (${exactP.engine}), estimated ${result.latency.estimatedMs.toFixed(3)} ms (${latencyEngine}) -> ${result.latency.speedup.toFixed(0)}x`);
    log(`throughput: exact ${bestExact.toFixed(1)} maps/s, estimated ${estPerSec.toFixed(0)} maps/s -> ${result.throughput.speedup.toFixed(0)}x (FLOP ratio ${result.flops.ratio.toFixed(0)}x)`);
    log(`onnxruntime 2 threads vs tfjs batched: ${result.targets.onnx2VsTfjsBatched.toFixed(1)}x`);
    log(`machine: ${result.machine.cpus} cpus (${result.machine.model}), load average ${result.machine.loadavg.map((x) => x.toFixed(2)).join(' ')}`);
    for (const p of Object.values(onnx)) p.dispose();
  } finally {
    // The tfjs predictor owns `clf` from here on; disposing the predictor would dispose it twice.
    ae.dispose();
    clf.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const arg = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const r = await runInferenceBench({ seconds: Number(arg('--seconds') ?? 3) });
  const json = arg('--json');
  if (json) await writeFileAtomic(json, JSON.stringify(r, null, 2));
}
