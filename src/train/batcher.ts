/**
 * Batches of a TrainSet as tensors: the items at `idx[from..to)` copied into contiguous model
 * inputs and targets. Shared by the training loop and its data-parallel replicas
 * (src/train/replica.ts), which read the same TrainSet through SharedArrayBuffer views.
 */
import { tf } from '../runtime/tfjs.js';

export interface TrainSet {
  /** Model inputs, NHWC float32. */
  x: Float32Array;
  /** [N, H, W, C] */
  shape: [number, number, number, number];
  /** Class labels (sparse CE) or targets (n * prod(yShape) floats) for mse / bce. */
  y: Int32Array | Float32Array;
  /** Per-item target shape for float targets, e.g. [24, 24, 1]; [] for labels. */
  yShape?: number[];
  /** Group (object) id per item: the split keeps each group on one side. */
  groups?: readonly string[];
  /**
   * Further model inputs after `x`, in the model's input order (e.g. the label of a conditioned
   * autoencoder): n * prod(shape) floats each, `shape` per item.
   */
  extra?: { data: Float32Array; shape: number[] }[];
}

export interface Batch {
  x: tf.Tensor | tf.Tensor[];
  y: tf.Tensor;
  dispose(): void;
}

/** Copies the items at `idx` into contiguous batch tensors. */
export class Batcher {
  private readonly yItem: number;
  private readonly yShape: number[];
  /** Every model input: [data, per-item shape, per-item size]. */
  private readonly inputs: { data: Float32Array; shape: number[]; size: number }[];
  constructor(private readonly data: TrainSet) {
    const [n, h, w, c] = data.shape;
    this.inputs = [{ data: data.x, shape: [h, w, c], size: h * w * c }];
    for (const e of data.extra ?? []) {
      const size = e.shape.reduce((a, b) => a * b, 1);
      if (e.data.length !== n * size) throw new Error(`extra input of shape (${e.shape.join(',')}) has ${e.data.length} values for ${n} items`);
      this.inputs.push({ data: e.data, shape: e.shape, size });
    }
    this.yShape = data.yShape ?? [];
    this.yItem = this.yShape.reduce((a, b) => a * b, 1);
  }
  batch(idx: ArrayLike<number>, from: number, to: number): Batch {
    const n = to - from;
    const xs = this.inputs.map((inp) => {
      const buf = new Float32Array(n * inp.size);
      for (let k = 0; k < n; k++) {
        const i = idx[from + k];
        buf.set(inp.data.subarray(i * inp.size, (i + 1) * inp.size), k * inp.size);
      }
      return tf.tensor(buf, [n, ...inp.shape]);
    });
    let y: tf.Tensor;
    if (this.data.y instanceof Int32Array) {
      const yb = new Int32Array(n);
      for (let k = 0; k < n; k++) yb[k] = this.data.y[idx[from + k]];
      y = tf.tensor1d(yb, 'int32');
    } else {
      const yb = new Float32Array(n * this.yItem);
      for (let k = 0; k < n; k++) {
        const i = idx[from + k];
        yb.set(this.data.y.subarray(i * this.yItem, (i + 1) * this.yItem), k * this.yItem);
      }
      y = tf.tensor(yb, [n, ...this.yShape]);
    }
    return {
      x: xs.length === 1 ? xs[0] : xs,
      y,
      dispose: () => {
        xs.forEach((t) => t.dispose());
        y.dispose();
      },
    };
  }
}
