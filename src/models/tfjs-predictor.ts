/**
 * Predictor over a tfjs LayersModel: inference in chunks (bounded memory for any n), each
 * chunk in tf.tidy so no tensor outlives the call.
 */
import { tf, type tfl } from '../runtime/tfjs.js';
import type { Predictor } from './predictor.js';
import { UserError } from '../util/errors.js';

export interface TfjsPredictorOptions {
  channels?: number[];
  hash: string;
  /** Images per inference call (default 256). */
  batchSize?: number;
  /** Where the model came from, for error messages. */
  source?: string;
}

export class TfjsPredictor implements Predictor {
  readonly inputShape: [number, number, number];
  readonly numClasses: number;
  readonly channels?: number[];
  readonly engine: string;
  readonly hash: string;
  private readonly batchSize: number;
  private readonly source: string;

  constructor(readonly model: tfl.LayersModel, o: TfjsPredictorOptions) {
    const inShape = model.inputs[0].shape;
    const outShape = model.outputs[0].shape;
    this.source = o.source ?? 'model';
    if (inShape.length !== 4 || inShape.slice(1).some((d) => d == null) || outShape.length !== 2 || outShape[1] == null) {
      throw new UserError(
        `${this.source}: expected an image classifier with input (N,H,W,C) and output (N,K), found input (${inShape.join(',')}) and output (${outShape.join(',')})`,
      );
    }
    this.inputShape = inShape.slice(1) as [number, number, number];
    this.numClasses = outShape[1] as number;
    this.channels = o.channels;
    this.hash = o.hash;
    this.batchSize = o.batchSize ?? 256;
    this.engine = `tfjs-${tf.getBackend()}`;
  }

  async predict(images: Float32Array, n: number): Promise<Float32Array> {
    const [h, w, c] = this.inputShape;
    const item = h * w * c;
    if (images.length !== n * item) {
      throw new UserError(`${this.source}: model input is ${h}x${w}x${c} (${item} values per image), got ${images.length} values for ${n} image(s)`);
    }
    const k = this.numClasses;
    const out = new Float32Array(n * k);
    for (let from = 0; from < n; from += this.batchSize) {
      const to = Math.min(n, from + this.batchSize);
      const probs = tf.tidy(() => {
        const x = tf.tensor4d(images.subarray(from * item, to * item), [to - from, h, w, c]);
        return (this.model.predict(x) as tf.Tensor).dataSync() as Float32Array;
      });
      out.set(probs, from * k);
    }
    return out;
  }

  dispose(): void {
    this.model.dispose();
  }
}
