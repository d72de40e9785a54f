/**
 * Classifiers on tfjs: a ModelCore over a LayersModel (inference in chunks, so memory is
 * bounded for any n, each chunk in tf.tidy so no tensor outlives the call), and TfjsPredictor,
 * the Predictor over a softmax-output LayersModel (occmap's own classifiers).
 */
import { tf, type tfl } from '../runtime/tfjs.js';
import { ModelPredictor, type ModelCore, type OutputKind } from './predictor-head.js';
import { UserError } from '../util/errors.js';

export class TfjsCore implements ModelCore {
  readonly inputShape: [number, number, number];
  readonly units: number;
  readonly engine: string;
  private readonly batchSize: number;
  private readonly keepModel: boolean;

  constructor(
    readonly model: tfl.LayersModel,
    o: { batchSize?: number; source?: string; keepModel?: boolean } = {},
  ) {
    const source = o.source ?? 'model';
    if (model.inputs.length !== 1 || model.outputs.length !== 1) {
      throw new UserError(`${source}: expected an image classifier with one input and one output, found ${model.inputs.length} input(s) and ${model.outputs.length} output(s)`);
    }
    const inShape = model.inputs[0].shape;
    const outShape = model.outputs[0].shape;
    if (inShape.length !== 4 || inShape.slice(1).some((d) => d == null) || outShape.length !== 2 || outShape[1] == null) {
      throw new UserError(
        `${source}: expected an image classifier with input (N,H,W,C) and output (N,K), found input (${inShape.join(',')}) and output (${outShape.join(',')})`,
      );
    }
    this.inputShape = inShape.slice(1) as [number, number, number];
    this.units = outShape[1] as number;
    this.batchSize = o.batchSize ?? 256;
    this.keepModel = o.keepModel ?? false;
    this.engine = `tfjs-${tf.getBackend()}`;
  }

  async run(images: Float32Array, n: number): Promise<Float32Array> {
    const [h, w, c] = this.inputShape;
    const item = h * w * c;
    const k = this.units;
    const out = new Float32Array(n * k);
    for (let from = 0; from < n; from += this.batchSize) {
      const to = Math.min(n, from + this.batchSize);
      const y = tf.tidy(() => {
        const x = tf.tensor4d(images.subarray(from * item, to * item), [to - from, h, w, c]);
        return (this.model.predict(x) as tf.Tensor).dataSync() as Float32Array;
      });
      out.set(y, from * k);
    }
    return out;
  }

  /** Disposes the model, unless it belongs to the caller (keepModel). */
  dispose(): void {
    if (!this.keepModel) this.model.dispose();
  }
}

export interface TfjsPredictorOptions {
  channels?: number[];
  hash: string;
  /** Images per inference call (default 256). */
  batchSize?: number;
  /** Where the model came from, for error messages. */
  source?: string;
  /** What the output holds (default probabilities, as occmap's classifiers end in a softmax). */
  outputs?: OutputKind;
  /** The model's input is the stamp padded by `pad` on each side. */
  pad?: number;
}

/** A tfjs LayersModel as a Predictor; dispose() disposes the model. */
export class TfjsPredictor extends ModelPredictor {
  constructor(model: tfl.LayersModel, o: TfjsPredictorOptions) {
    const source = o.source ?? 'model';
    super(new TfjsCore(model, { batchSize: o.batchSize, source }), { outputs: o.outputs ?? 'probs', hash: o.hash, channels: o.channels, pad: o.pad, source });
  }
}

/** Shape-only layers an output activation can sit behind. */
const PASS_THROUGH = new Set(['Dropout', 'Flatten', 'Reshape', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout', 'SpatialDropout1D']);

/** 'probs'/'logits' from the model's output layer, undefined when it cannot tell. */
export function outputKind(model: tfl.LayersModel): 'probs' | 'logits' | undefined {
  // outputs[0].sourceLayer, not outputLayers: a Sequential model leaves outputLayers empty.
  let layer: tfl.layers.Layer | undefined = model.outputs[0]?.sourceLayer;
  for (let hops = 0; hops < 100 && layer; hops++) {
    const cls = layer.getClassName();
    if (cls === 'Softmax') return 'probs';
    const act = (layer.getConfig() as Record<string, unknown>).activation;
    if (act === 'softmax' || act === 'sigmoid') return 'probs';
    if (act === 'linear') return 'logits';
    if (typeof act === 'string' || !PASS_THROUGH.has(cls)) return undefined;
    const inbound: tfl.layers.Layer[] | undefined = layer.inboundNodes[0]?.inboundLayers;
    if (!inbound || inbound.length !== 1) return undefined;
    layer = inbound[0];
  }
  return undefined;
}
