/**
 * Krypton's rule, measured: at what share of a layer's output does recomputing a window (plus
 * gathering its block, plus gathering the next input around it) stop beating computing the
 * whole layer (plus gathering its whole input)? A 64->64 3x3 'same' convolution on 13x13x64
 * (the seed classifier's conv4/conv5), then Flatten and Dense, on the incremental engine with
 * one window size (groups 1); patch p x p at stride 1 makes the conv window (p+2) x (p+2).
 * For each p the two plans are raced (alternating rounds) and timed per recomputed position.
 *
 *   node dist/bench/incremental-threshold.js [--seconds S] [--threads T]
 */
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { exactMaps, SEED_PARAMS, type OcclusionParams } from '../src/occlusion/exact.js';
import { IncrementalPredictor } from '../src/occlusion/incremental-predictor.js';
import type { Net } from '../src/occlusion/net.js';
import { samePadding } from '../src/models/to-onnx.js';
import { Rng } from '../src/util/rng.js';

function convNet(rng: Rng, size: number, c: number): Net {
  const u = (n: number, s: number): Float32Array => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * s);
  const [t, b] = samePadding(size, 3, 1);
  const flat = size * size * c;
  return {
    input: [size, size, c],
    stages: [{ name: 'conv', kind: 'conv', kernel: [3, 3], strides: [1, 1], dilation: [1, 1], pads: [t, b, t, b], zeroPads: [0, 0, 0, 0], cin: c, cout: c, kernelHWIO: u(9 * c * c, 1 / Math.sqrt(9 * c)), bias: u(c, 0.1), post: [{ op: 'act', fn: 'relu' }] }],
    tailZeroPads: [0, 0, 0, 0],
    tail: [{ op: 'flatten' }, { op: 'dense', name: 'out', units: 2, inputs: flat, kernel: u(flat * 2, 1 / Math.sqrt(flat)) }, { op: 'act', fn: 'softmax' }],
    numClasses: 2,
  };
}

export interface ThresholdRow {
  patch: number;
  window: number;
  share: number;
  windowUsPerPosition: number;
  fullUsPerPosition: number;
  /** window time / full time: < 1 means windows pay. */
  ratio: number;
}

export async function runThresholdBench(o: { seconds?: number; threads?: number; log?: (l: string) => void } = {}): Promise<ThresholdRow[]> {
  const seconds = o.seconds ?? 2;
  const threads = o.threads ?? 2;
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const size = 13;
  const c = 64;
  const rng = new Rng(3);
  const net = convNet(rng, size, c);
  const n = 2;
  const images = Float32Array.from({ length: n * size * size * c }, () => rng.next());
  const rows: ThresholdRow[] = [];
  log(`Krypton's rule: ${c}->${c} 3x3 conv on ${size}x${size}, ${threads} thread(s); per recomputed position, window plan vs full plan`);
  for (let p = 1; p <= 11; p += 2) {
    const params: OcclusionParams = { ...SEED_PARAMS, patch: [p, p], stride: 1, pad: 0, normalize: 'none' };
    const win = new IncrementalPredictor(net, { hash: 'b', threads, groups: 1, fullThreshold: 2 });
    const full = new IncrementalPredictor(net, { hash: 'b', threads, groups: 1, fullThreshold: 0 });
    const shape: [number, number, number, number] = [n, size, size, c];
    await exactMaps(win, images, shape, params);
    await exactMaps(full, images, shape, params);
    const ms = [0, 0];
    const items = [0, 0];
    for (let r = 0; r < 4; r++) {
      for (const [i, pr] of [win, full].entries()) {
        const t0 = performance.now();
        do {
          await exactMaps(pr, images, shape, params);
          items[i] += n * pr.engineCore.layout({ h: size, w: size, ph: p, pw: p, stride: 1, pad: 0 }).plan.active.length;
        } while (performance.now() - t0 < (seconds * 1000) / 4);
        ms[i] += performance.now() - t0;
      }
    }
    const w = Math.min(size, p + 2);
    const row: ThresholdRow = {
      patch: p,
      window: w,
      share: (w * w) / (size * size),
      windowUsPerPosition: (ms[0] * 1000) / items[0],
      fullUsPerPosition: (ms[1] * 1000) / items[1],
      ratio: ms[0] / items[0] / (ms[1] / items[1]),
    };
    rows.push(row);
    log(`  window ${String(w).padStart(2)}x${String(w).padEnd(2)} share ${row.share.toFixed(2)}: window plan ${row.windowUsPerPosition.toFixed(1).padStart(7)} us, full plan ${row.fullUsPerPosition.toFixed(1).padStart(7)} us per position -> ${row.ratio.toFixed(2)}`);
    win.dispose();
    full.dispose();
  }
  log(`  machine: ${os.cpus().length} cpus, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const arg = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  await runThresholdBench({ seconds: Number(arg('--seconds') ?? 2), threads: Number(arg('--threads') ?? 2) });
}
