/**
 * The incremental engine as a Predictor: predict() runs whole images (the unoccluded pass's
 * graph), and occlusionProbs() gives exactMaps every position's probabilities of a group of
 * maps incrementally. Built from a tfjs LayersModel; a model the engine cannot run is left to
 * the full engine, with the one-line reason.
 */
import type { tfl } from '../runtime/tfjs.js';
import type { Predictor } from '../models/predictor.js';
import { defaultThreads } from '../runtime/onnx.js';
import { softmaxRows } from '../runtime/onnx-arrays.js';
import type { Geometry } from './geometry.js';
import type { OcclusionScorer } from './exact.js';
import { IncrementalEngine, type IncrementalOptions, type IncrementalStats } from './incremental.js';
import { OrtNetExecutor } from './incremental-ort.js';
import { lanesAvailable, WorkerLane } from './incremental-lanes.js';
import { netFromModel } from './net-from-tfjs.js';
import { INCREMENTAL_ENGINE } from './incremental-engine-name.js';
import type { Net } from './net.js';
import type { NetLayout } from './net-layout.js';

export { INCREMENTAL_ENGINE };

export interface IncrementalPredictorOptions extends IncrementalOptions {
  /** Threads in all; default: the machine's cores. */
  threads?: number;
  /**
   * Threads computing a share of each call's items at once, each on single-threaded sessions
   * (of `threads`; incremental-lanes.ts). Default: all of them where onnxruntime-node runs,
   * else 1 (one lane on `threads` intra-op threads).
   */
  lanes?: number;
  /** Images per predict() call. */
  batchSize?: number;
  hash: string;
  channels?: number[];
  /** The model outputs logits: probabilities by a softmax (card.json 'outputs'). */
  logits?: boolean;
}

export const DEFAULT_MAPS_PER_CALL = 6;

export class IncrementalPredictor implements Predictor, OcclusionScorer {
  readonly inputShape: [number, number, number];
  readonly numClasses: number;
  readonly engine: string;
  readonly hash: string;
  readonly channels?: number[];
  readonly engineCore: IncrementalEngine;
  /**
   * Maps per engine call at least (exactMaps groups them): more items per block size and call,
   * fewer waits for the lanes. Measured (2 lanes): 6 maps 1.2-1.3x the maps/s of 3 (the
   * default 2,048-inference batch); the windows of one call's items peak at ~21 MB per map (two steps' outputs).
   */
  readonly mapsPerCall = DEFAULT_MAPS_PER_CALL;
  private readonly exec: OrtNetExecutor;
  private readonly lanes: WorkerLane[];

  constructor(
    readonly net: Net,
    private readonly opts: IncrementalPredictorOptions,
  ) {
    const threads = opts.threads ?? defaultThreads();
    const lanes = Math.max(1, Math.min(threads, opts.lanes ?? (lanesAvailable() ? threads : 1)));
    const perLane = Math.max(1, Math.floor(threads / lanes));
    const engineOpts: IncrementalOptions = { fullThreshold: opts.fullThreshold, fusePools: opts.fusePools, groups: opts.groups, chunk: opts.chunk, callFloats: opts.callFloats, layout: opts.layout };
    this.exec = new OrtNetExecutor(net, perLane, threads, opts.layout);
    this.lanes = Array.from({ length: lanes - 1 }, () => new WorkerLane({ net, opts: engineOpts, threads: perLane }));
    this.engineCore = new IncrementalEngine(net, this.exec, engineOpts, this.lanes);
    this.inputShape = net.input;
    this.numClasses = net.numClasses;
    this.hash = opts.hash;
    this.channels = opts.channels;
    const th = (t: number): string => `${t} thread${t === 1 ? '' : 's'}`;
    this.engine = `${INCREMENTAL_ENGINE} (${lanes > 1 ? `${lanes} lanes x ${th(perLane)}` : th(threads)})`;
  }

  private finish(raw: Float32Array, n: number): Float32Array {
    return this.opts.logits ? softmaxRows(raw, n, this.numClasses) : raw;
  }

  async predict(images: Float32Array, n: number): Promise<Float32Array> {
    const [h, w, c] = this.inputShape;
    if (images.length !== n * h * w * c) throw new RangeError(`predict: ${images.length} values for ${n} images of ${h}x${w}x${c}`);
    return this.finish(await this.exec.probs(images, n, this.opts.batchSize ?? 1024), n);
  }

  async occlusionProbs(images: Float32Array, n: number, g: Geometry, fills: Float32Array, approx?: number): Promise<Float32Array> {
    const raw = await this.engineCore.occlusionProbs(images, n, g, fills, approx);
    return this.finish(raw, raw.length / this.numClasses);
  }

  /** FLOPs per map for geometry g, counted from the windows the plan computes. */
  flopsPerMap(g: Geometry, approx?: number): number {
    return this.engineCore.flopsPerMap(g, approx);
  }

  /** The activation layout its window calls use (net-layout.ts). */
  netLayout(): Promise<NetLayout> {
    return this.exec.netLayout();
  }

  get stats(): IncrementalStats {
    return this.engineCore.stats;
  }

  dispose(): void {
    for (const l of this.lanes) l.dispose();
    this.exec.dispose();
  }
}

/**
 * An IncrementalPredictor for a tfjs model (its weights are copied: the model may be disposed
 * afterwards), or why the engine cannot run it.
 */
export function incrementalPredictorFor(
  model: tfl.LayersModel,
  opts: IncrementalPredictorOptions,
): { predictor: IncrementalPredictor } | { unsupported: string } {
  const r = netFromModel(model);
  if ('unsupported' in r) return r;
  return { predictor: new IncrementalPredictor(r.net, opts) };
}
