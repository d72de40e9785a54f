/**
 * The one place every loaded classifier's inputs and outputs pass through, whatever runs it
 * (ONNX Runtime, tfjs, a user's function):
 *
 *   dataset-size NHWC images -> zero-padded when the model's input is the padded stamp
 *   -> the engine (a ModelCore: raw values, 1 or K units per image)
 *   -> K class probabilities (softmax of logits; [1-p, p] for one unit)
 *   -> checked: a value that is not a finite probability (or a non-finite logit) is an error,
 *      never a map or an HTTP 200.
 *
 * The check is one pass over n*K numbers, nothing next to the inference it follows.
 */
import type { Predictor } from './predictor.js';
import { probabilitiesFrom } from '../runtime/onnx-arrays.js';
import { UserError } from '../util/errors.js';

export type OutputKind = 'probs' | 'logits';

/** An engine's view of a classifier: n NHWC images of `inputShape` in, n*units raw values out. */
export interface ModelCore {
  readonly inputShape: [number, number, number];
  /** Values per image in the raw output (1: a binary probability or logit). */
  readonly units: number;
  /** Engine name for reports, e.g. 'onnxruntime (2 threads)', 'tfjs-wasm'. */
  readonly engine: string;
  run(images: Float32Array, n: number): Promise<Float32Array>;
  dispose(): void;
}

/** A model's outputs are not finite probabilities: the model (or its weights) is broken. */
export class ModelOutputError extends UserError {
  /** Served as an internal error: the request was fine, the model is not. */
  readonly statusCode = 500;
  constructor(message: string) {
    super(message);
    this.name = 'ModelOutputError';
  }
}

// ---------------------------------------------------------------- pure helpers

// softmax, the probability test and raw -> probabilities are shared with the browser viewer.
export { looksLikeProbabilities, softmaxRows, probabilitiesFrom as toProbabilities } from '../runtime/onnx-arrays.js';

/** Float rounding a probability may carry past [0, 1] (a float32 softmax, 1 - p). */
const PROB_SLACK = 1e-5;

/** The first value that is not a finite probability (or not finite, for logits), or -1. */
export function firstBadOutput(values: Float32Array, kind: OutputKind): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (kind === 'logits' ? !Number.isFinite(v) : !(v >= -PROB_SLACK && v <= 1 + PROB_SLACK)) return i;
  }
  return -1;
}

/** Zero-pad n NHWC images by `pad` on every side: (n,h,w,c) -> (n,h+2pad,w+2pad,c). */
export function padNhwc(x: Float32Array, n: number, h: number, w: number, c: number, pad: number): Float32Array {
  if (pad === 0) return x;
  const H = h + 2 * pad;
  const W = w + 2 * pad;
  const out = new Float32Array(n * H * W * c);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < h; y++) {
      const src = (i * h + y) * w * c;
      out.set(x.subarray(src, src + w * c), ((i * H + y + pad) * W + pad) * c);
    }
  }
  return out;
}

/** Two varied probe images (ramps, no constant image a per-image normalisation would divide by 0). */
export function probeImages([h, w, c]: readonly [number, number, number]): Float32Array {
  const per = h * w * c;
  const x = new Float32Array(2 * per);
  for (let i = 0; i < per; i++) {
    x[i] = (i % 7) / 7;
    x[per + i] = ((i * 3) % 5) / 5;
  }
  return x;
}

// ---------------------------------------------------------------- the predictor

export interface HeadOptions {
  /** What the core's output holds. */
  outputs: OutputKind;
  /** Provenance hash (content of the model files, or what identifies an in-memory model). */
  hash: string;
  /** Dataset channels the model reads (undefined: all, as given). */
  channels?: number[];
  /** The model's input is the stamp zero-padded by `pad` on each side: pad before running it. */
  pad?: number;
  /** Where the model came from, for messages. */
  source: string;
}

/** A Predictor over any ModelCore: padding, probabilities, and the output check. */
export class ModelPredictor implements Predictor {
  readonly inputShape: [number, number, number];
  readonly numClasses: number;
  readonly channels?: number[];
  readonly engine: string;
  readonly hash: string;
  readonly outputs: OutputKind;
  /** Zero padding added on each side before the model (0: the model takes the stamp as is). */
  readonly pad: number;
  readonly source: string;
  private disposed = false;

  constructor(
    readonly core: ModelCore,
    o: HeadOptions,
  ) {
    const pad = o.pad ?? 0;
    const [mh, mw, mc] = core.inputShape;
    if (!(Number.isInteger(pad) && pad >= 0)) throw new UserError(`pad must be a non-negative integer, got ${pad}`);
    if (mh - 2 * pad < 1 || mw - 2 * pad < 1) {
      throw new UserError(`${o.source}: pad ${pad} leaves nothing of the model's ${mh}x${mw} input (the stamp would be ${mh - 2 * pad}x${mw - 2 * pad})`);
    }
    if (!(Number.isInteger(core.units) && core.units >= 1)) throw new UserError(`${o.source}: the model outputs ${core.units} values per image`);
    if (o.channels && o.channels.length !== mc) {
      throw new UserError(`${o.source}: reads ${o.channels.length} data channel(s) [${o.channels.join(',')}] but the model takes ${mc}`);
    }
    this.inputShape = [mh - 2 * pad, mw - 2 * pad, mc];
    this.numClasses = core.units === 1 ? 2 : core.units;
    this.channels = o.channels;
    this.engine = core.engine;
    this.hash = o.hash;
    this.outputs = o.outputs;
    this.pad = pad;
    this.source = o.source;
  }

  /** `images`: n x H x W x C (the stamp size, NHWC). Returns n x numClasses probabilities. */
  async predict(images: Float32Array, n: number): Promise<Float32Array> {
    if (this.disposed) throw new Error(`${this.source}: predictor used after dispose()`);
    const [h, w, c] = this.inputShape;
    if (images.length !== n * h * w * c) {
      throw new UserError(`${this.source}: model input is ${h}x${w}x${c} (${h * w * c} values per image), got ${images.length} values for ${n} image(s)`);
    }
    const raw = await this.core.run(padNhwc(images, n, h, w, c, this.pad), n);
    const units = this.core.units;
    if (raw.length !== n * units) throw new ModelOutputError(`${this.source}: the model returned ${raw.length} values for ${n} image(s), expected ${units} per image`);
    if (this.outputs === 'logits') this.check(raw, units, 'logits');
    const probs = probabilitiesFrom(raw, n, units, this.outputs);
    this.check(probs, this.numClasses, 'probs');
    return probs;
  }

  private check(values: Float32Array, k: number, kind: OutputKind): void {
    const bad = firstBadOutput(values, kind);
    if (bad < 0) return;
    const what = kind === 'logits' ? 'a finite logit' : 'a finite probability';
    throw new ModelOutputError(
      `${this.source}: the model gave ${values[bad]} for image ${Math.floor(bad / k)} (class ${bad % k}), not ${what}: its weights are broken or the input is far outside what it was trained on`,
    );
  }

  /**
   * The same model fed stamps zero-padded by `pad` (its input is the padded stamp). The new
   * predictor takes over the model: this one is unusable afterwards, dispose the new one.
   */
  withPad(pad: number): ModelPredictor {
    if (this.disposed) throw new Error(`${this.source}: predictor used after dispose()`);
    const next = new ModelPredictor(this.core, { outputs: this.outputs, hash: this.hash, channels: this.channels, pad: this.pad + pad, source: this.source });
    this.disposed = true;
    return next;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.core.dispose();
  }
}
