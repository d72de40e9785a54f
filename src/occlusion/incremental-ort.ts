/**
 * The incremental engine's executor on ONNX Runtime: one session for the unoccluded pass
 * (all stage inputs as outputs), one per (stage, block size) for windows, one per switch
 * point for the full tail; sessions are built on first use from net-onnx.ts graphs.
 */
import type * as ort from 'onnxruntime-common';
import { createOnnxSession, releaseOnnxSession, runOnnxBatched, runOnnxInto, runOnnxOutputs } from '../runtime/onnx.js';
import type { NetExecutor } from './incremental.js';
import { netShapes, type Net } from './net.js';
import { baseGraph, tailGraph, windowGraph, windowOutShape } from './net-onnx.js';

/** onnxruntime-node rejects tensors on a SharedArrayBuffer (worker threads share the images). */
function own(x: Float32Array): Float32Array {
  return x.buffer instanceof SharedArrayBuffer ? x.slice() : x;
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
  ) {
    this.shapes = netShapes(net);
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
    const s = await this.session(`window ${stage}-${last} ${bh}x${bw}`, () => windowGraph(this.net, stage, bh, bw, last));
    if (out) return runOnnxInto(s, [{ name: 'x', data: blocks, shape: [bh, bw, this.net.stages[stage].cin] }], n, 'y', out, windowOutShape(this.net, stage, bh, bw, last));
    return (await runOnnxBatched(s, [{ name: 'x', data: blocks, shape: [bh, bw, this.net.stages[stage].cin] }], n, { batchSize: n })).data;
  }

  async tail(from: number, x: Float32Array, n: number): Promise<Float32Array> {
    const s = await this.session(`tail ${from}`, () => tailGraph(this.net, from));
    const sh = from < this.net.stages.length ? this.shapes.stages[from].inShape : [this.shapes.tailInput.h, this.shapes.tailInput.w, this.shapes.tailInput.c];
    return (await runOnnxBatched(s, [{ name: 'x', data: x, shape: [...sh] }], n, { batchSize: n })).data;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const s of this.sessions.values()) void s.then((x) => releaseOnnxSession(x)).catch(() => undefined);
    this.sessions.clear();
  }
}
