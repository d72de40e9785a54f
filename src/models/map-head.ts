/**
 * The last layer of an explainer trained in log-rest units (train-explainer --target-units
 * log-rest): from the network's log-rest map to the seed-normalised map, so the saved
 * explainer's output is in the exact maps' units. occlusion/geometry.ts seedFromLogRest is the
 * same function on one map; the ONNX exporter has its converter (onnx-export/layers.ts).
 *
 * A layer of its own because tfjs-layers has no serialisable Lambda: the saved model.json names
 * this class, and loading it needs this module imported (model-dir.ts does).
 */
import { tf, tfl } from '../runtime/tfjs.js';

export type Crop = [[number, number], [number, number]];

export interface SeedMapFromLogRestArgs {
  /** [[top, bottom], [left, right]]: the padding around the stamp in the model's output. */
  crop: Crop;
  name?: string;
  trainable?: boolean;
}

/** Smallest std the z-score divides by: a flat map (std 0) has e - mean = 0, so it maps to 0.5. */
export const FLAT_STD = 1e-30;

export class SeedMapFromLogRest extends tfl.layers.Layer {
  static readonly className = 'SeedMapFromLogRest';
  readonly crop: Crop;

  constructor(args: SeedMapFromLogRestArgs) {
    super(args);
    this.crop = args.crop;
  }

  override computeOutputShape(inputShape: tfl.Shape | tfl.Shape[]): tfl.Shape | tfl.Shape[] {
    return inputShape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      const [, H, W] = x.shape;
      const [[t, b], [l, r]] = this.crop;
      const inner = tf.slice(x, [0, t, l, 0], [-1, H - t - b, W - l - r, -1]);
      const e = tf.exp(tf.sub(inner, tf.max(inner, [1, 2], true)));
      const d = tf.sub(e, tf.mean(e, [1, 2], true));
      const std = tf.maximum(tf.sqrt(tf.mean(tf.mul(d, d), [1, 2], true)), FLAT_STD);
      const seed = tf.clipByValue(tf.mul(tf.sub(1, tf.div(d, std)), 0.5), 0, 1);
      return tf.pad(seed, [[0, 0], [t, b], [l, r], [0, 0]]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), crop: this.crop };
  }
}

tf.serialization.registerClass(SeedMapFromLogRest);

/** `model` followed by the head (shared layers): what a log-rest explainer saves and exports. */
export function withLogRestHead(model: tfl.LayersModel, crop: Crop): tfl.LayersModel {
  const head = new SeedMapFromLogRest({ name: 'map_from_log_rest', crop });
  return tfl.model({ inputs: model.inputs, outputs: head.apply(model.outputs[0]) as tfl.SymbolicTensor, name: model.name });
}
