/**
 * What every inference engine (tfjs, ONNX Runtime) offers the rest of occmap: a batch of
 * model-input images in, class probabilities out. Engines differ only in how they run it.
 */

export interface Predictor {
  /** Model input shape [H, W, C] (NHWC), without the batch dimension. */
  readonly inputShape: [number, number, number];
  readonly numClasses: number;
  /**
   * Dataset channels the model reads, in order (e.g. [3] = SNR difference of a 4-channel
   * HiTS dataset). Undefined: the model takes every channel of the data as is.
   */
  readonly channels?: number[];
  /** Engine name for reports, e.g. 'tfjs-wasm', 'onnxruntime (2 threads)'. */
  readonly engine: string;
  /** Content hash of the model files, recorded in outputs for provenance. */
  readonly hash: string;
  /** `images`: n x H x W x C float32, NHWC. Returns n x numClasses probabilities. */
  predict(images: Float32Array, n: number): Promise<Float32Array>;
  dispose(): void;
}

/**
 * Pick the model's channels out of dataset images (N,H,W,Cdata) -> (N,H,W,Cmodel).
 */
export function selectChannels(
  images: Float32Array,
  n: number,
  h: number,
  w: number,
  cData: number,
  channels: readonly number[] | undefined,
): Float32Array {
  if (!channels) return images;
  const cm = channels.length;
  if (cm === cData && channels.every((c, i) => c === i)) return images;
  const out = new Float32Array(n * h * w * cm);
  const px = n * h * w;
  for (let p = 0; p < px; p++) {
    for (let k = 0; k < cm; k++) out[p * cm + k] = images[p * cData + channels[k]];
  }
  return out;
}

/** Index of the largest of `k` values starting at `off` (first on ties, as numpy.argmax). */
export function argmax(a: ArrayLike<number>, off = 0, k = a.length - off): number {
  let best = 0;
  for (let j = 1; j < k; j++) if (a[off + j] > a[off + best]) best = j;
  return best;
}

/** Predicted class of each row of an n x k probability matrix. */
export function argmaxRows(p: ArrayLike<number>, n: number, k: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = argmax(p, i * k, k);
  return out;
}
