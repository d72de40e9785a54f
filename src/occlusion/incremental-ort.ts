/**
 * The incremental engine's executor on ONNX Runtime: one session for the unoccluded pass
 * (all stage inputs as outputs), one per (stage, block size) for windows, one per switch
 * point for the full tail; sessions are built on first use from net-onnx.ts graphs.
 */
import type * as ort from 'onnxruntime-common';
import { createOnnxSession, releaseOnnxSession, runOnnxBatched, runOnnxInto, runOnnxOutputs } from '../runtime/onnx.js';
import type { NetExecutor } from './incremental.js';
import { netShapes, paddedInput, type Net } from './net.js';
import { baseGraph, tailGraph, windowGraph, windowOutShape } from './net-onnx.js';
import { blockProbeGraph, tailGraphNchwc, windowGraphNchwc } from './net-onnx-nchwc.js';
import { cellFloats, chooseLayout, inputLayout, outputLayout, type LayoutChoice, type NetLayout } from './net-layout.js';
import { loadOrt } from '../runtime/ort.js';

/** onnxruntime-node rejects tensors on a SharedArrayBuffer (worker threads share the images). */
function own(x: Float32Array): Float32Array {
  return x.buffer instanceof SharedArrayBuffer ? x.slice() : x;
}

let blockSize: Promise<number> | null = null;

/**
 * This runtime's NCHWc block size (16 with AVX-512, 8 with AVX2), or 0 where it has no NCHWc
 * kernels (its com.microsoft.nchwc operators are registered only then: the probe fails).
 */
export function nchwcBlockSize(): Promise<number> {
  blockSize ??= (async () => {
    let s: ort.InferenceSession | null = null;
    try {
      s = await createOnnxSession(blockProbeGraph(), { threads: 1, cache: false, source: 'NCHWc block probe' });
      const { Tensor } = await loadOrt();
      const out = await s.run({ x: new Tensor('float32', new Float32Array(4), [1, 4, 1, 1]) });
      return Number(out.y.dims[1]);
    } catch {
      return 0;
    } finally {
      if (s) await releaseOnnxSession(s);
    }
  })();
  return blockSize;
}

export class OrtNetExecutor implements NetExecutor {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();
  private readonly shapes: ReturnType<typeof netShapes>;
  private disposed = false;

  constructor(
    readonly net: Net,
    readonly threads: number,
    /** Threads of the whole-image session (unoccluded pass, predict): the other lanes wait for it. */
    readonly baseThreads = threads,
    /** Activation layout between window calls (net-layout.ts); auto: NCHWc where it runs and pays. */
    readonly layoutChoice: LayoutChoice = 'auto',
  ) {
    this.shapes = netShapes(net);
  }

  private layout: Promise<NetLayout> | null = null;

  netLayout(): Promise<NetLayout> {
    this.layout ??= nchwcBlockSize().then((b) => chooseLayout(this.net, b, this.layoutChoice));
    return this.layout;
  }

  private session(key: string, build: () => Uint8Array, threads = this.threads): Promise<ort.InferenceSession> {
    if (this.disposed) throw new Error('incremental engine used after dispose()');
    let s = this.sessions.get(key);
    if (!s) {
      s = createOnnxSession(build(), { threads, cache: false, spinning: false, source: `incremental engine graph ${key}` });
      this.sessions.set(key, s);
    }
    return s;
  }

  async base(x: Float32Array, n: number): Promise<{ inputs: Float32Array[]; tail: Float32Array; probs: Float32Array }> {
    const s = await this.session('base', () => baseGraph(this.net), this.baseThreads);
    const out = await runOnnxOutputs(s, [{ name: 'x', data: own(x), shape: [...this.net.input] }], n);
    return { inputs: this.net.stages.map((_, i) => out[`in${i}`]), tail: out.tail, probs: out.probs };
  }

  /** Just the model outputs of n images (the Predictor's predict). */
  async probs(x: Float32Array, n: number, batchSize: number): Promise<Float32Array> {
    const s = await this.session('base', () => baseGraph(this.net), this.baseThreads);
    return (await runOnnxBatched(s, [{ name: 'x', data: own(x), shape: [...this.net.input] }], n, { batchSize, output: 'probs' })).data;
  }

  async window(stage: number, blocks: Float32Array, n: number, bh: number, bw: number, last = stage, out?: Float32Array): Promise<Float32Array> {
    const lay = await this.netLayout();
    const [oh, ow, oc] = windowOutShape(this.net, stage, bh, bw, last);
    let s: ort.InferenceSession;
    let inShape: number[];
    let outShape: number[];
    if (lay.block > 0) {
      s = await this.session(`window nchwc ${stage}-${last} ${bh}x${bw}`, () => windowGraphNchwc(this.net, lay, stage, bh, bw, last));
      inShape = [cellFloats(lay.inputs[stage]), bh, bw];
      outShape = [cellFloats(outputLayout(lay, last)), oh, ow];
    } else {
      s = await this.session(`window ${stage}-${last} ${bh}x${bw}`, () => windowGraph(this.net, stage, bh, bw, last));
      inShape = [bh, bw, this.net.stages[stage].cin];
      outShape = [oh, ow, oc];
    }
    const feeds = [{ name: 'x', data: blocks, shape: inShape }];
    if (out) return runOnnxInto(s, feeds, n, 'y', out, outShape);
    return (await runOnnxBatched(s, feeds, n, { batchSize: n })).data;
  }

  async tail(from: number, x: Float32Array, n: number): Promise<Float32Array> {
    const lay = await this.netLayout();
    const [h, w, c] = paddedInput(this.shapes, from);
    if (lay.block > 0) {
      const s = await this.session(`tail nchwc ${from}`, () => tailGraphNchwc(this.net, lay, from));
      const shape = [cellFloats(inputLayout(lay, from)), h, w];
      return (await runOnnxBatched(s, [{ name: 'x', data: x, shape }], n, { batchSize: n })).data;
    }
    const s = await this.session(`tail ${from}`, () => tailGraph(this.net, from));
    return (await runOnnxBatched(s, [{ name: 'x', data: x, shape: [h, w, c] }], n, { batchSize: n })).data;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const s of this.sessions.values()) void s.then((x) => releaseOnnxSession(x)).catch(() => undefined);
    this.sessions.clear();
  }
}
