/**
 * The amortized explainer family (docs/seed.md "Autoencoder"): one builder, variants as options.
 *
 *   input 24x24xC (the stamp padded top/left 2, bottom/right 1)
 *   encoder  = the classifier's convs: conv1 32 4x4, conv2 32 3x3, pool1, conv3..5 64 3x3, pool2
 *   bottleneck: flatten -> Dense(36 - label units) softmax [-> concat label] -> reshape 6x6x1
 *   decoder  = the encoder mirrored: conv 64 3x3 x3, up 2, conv 32 3x3, conv 32 4x4, up 2,
 *              conv 1 3x3 sigmoid -> 24x24x1
 *
 * Cuts (Exp. 3) remove encoder blocks at the max-pool layers and the mirrored decoder blocks:
 * cut 1 keeps conv1, conv2, pool1; cut 2 keeps conv1 only (no pooling), so the bottleneck sees
 * a larger feature map. The decoder then upsamples 6x6 -> 24x24 with what is left.
 * Encoder layers carry the classifier's layer names (conv1..conv5) so the frozen variant can
 * copy their weights by name.
 *
 * U-Net (`unet: true`, beyond the seed): the Dense-36 softmax bottleneck keeps 36 numbers of a
 * 24x24 map, so fine spatial detail cannot come back out of it. The U-Net keeps the same
 * encoder but no dense bottleneck: a 6x6x64 convolutional bottom, and the decoder concatenates
 * the encoder's features at 12x12 (after conv5) and 24x24 (after conv2) to its upsampled ones:
 *
 *   e1 = conv2(conv1(x))                    24x24x32
 *   e2 = conv5(conv4(conv3(pool1(e1))))     12x12x64
 *   b  = dec_conv2(dec_conv1(pool2(e2) [+ label plane]))            6x6x64
 *   d2 = dec_conv4(dec_conv3(concat(up1(b), e2)))                   12x12 -> 64, 32
 *   map = map(dec_conv5(concat(up2(d2), e1)))                       24x24x1 sigmoid
 *
 * Conditioning: the label goes through Dense(6x6) to one extra 6x6 plane at the bottom.
 */
import { tfl } from '../runtime/tfjs.js';
import { labelUnits, type Condition } from './condition.js';

export { labelUnits, type Condition } from './condition.js';

export interface AutoencoderOptions {
  /** Input side (square), default 24. */
  size?: number;
  channels?: number;
  activation?: 'relu' | 'linear';
  /** Bottleneck units including label units (seed: 36 = 6x6). Must be a square. */
  bottleneck?: number;
  condition?: Condition;
  /** Number of classes for one-hot conditioning. */
  numClasses?: number;
  cut?: 0 | 1 | 2;
  /** Encoder convs not trainable (weights to be copied from a classifier). */
  frozen?: boolean;
  /** U-Net decoder with skip connections instead of the dense bottleneck (cut must be 0). */
  unet?: boolean;
  /**
   * Side of a fixed (not trained) box filter applied before the output sigmoid; 0 or 1: none.
   * An exact map is a box filter (the patch) over per-position scores, so its fine structure
   * is smooth; the filter keeps pixel noise of the input (which skip connections carry) out.
   */
  smooth?: number;
  /**
   * Output activation: 'sigmoid' (the seed: a map in [0, 1]) or 'linear' (for targets beyond
   * [0, 1], e.g. the unclipped z-score; the saved explainer clips, see explainer/train.ts).
   */
  output?: 'sigmoid' | 'linear';
  seed?: number;
}

interface ConvSpec {
  name: string;
  filters: number;
  kernel: number;
}

const ENCODER_BLOCKS: ConvSpec[][] = [
  [
    { name: 'conv1', filters: 32, kernel: 4 },
    { name: 'conv2', filters: 32, kernel: 3 },
  ],
  [
    { name: 'conv3', filters: 64, kernel: 3 },
    { name: 'conv4', filters: 64, kernel: 3 },
    { name: 'conv5', filters: 64, kernel: 3 },
  ],
];

export const ENCODER_LAYER_NAMES = ENCODER_BLOCKS.flat().map((c) => c.name);


export function buildAutoencoder(o: AutoencoderOptions = {}): tfl.LayersModel {
  const size = o.size ?? 24;
  const channels = o.channels ?? 1;
  const activation = o.activation ?? 'relu';
  const bottleneck = o.bottleneck ?? 36;
  const condition = o.condition ?? 'none';
  const numClasses = o.numClasses ?? 2;
  const cut = o.cut ?? 0;
  let seed = o.seed ?? 1;
  const init = () => tfl.initializers.glorotUniform({ seed: seed++ });
  const side = Math.round(Math.sqrt(bottleneck));
  if (side * side !== bottleneck) throw new Error(`bottleneck ${bottleneck} is not a square number`);
  if (size % 4 !== 0) throw new Error(`input size ${size} must be a multiple of 4`);
  const conv = (s: ConvSpec, act: string = activation, trainable = true) =>
    tfl.layers.conv2d({
      name: s.name,
      filters: s.filters,
      kernelSize: s.kernel,
      padding: 'same',
      activation: act as 'relu',
      kernelInitializer: init(),
      trainable,
    });

  if (o.unet) {
    if (cut !== 0) throw new Error('the U-Net variant has no cuts (cut must be 0)');
    return buildUnet(size, channels, condition, numClasses, !!o.frozen, o.smooth ?? 0, conv, init, o.output ?? 'sigmoid');
  }
  const image = tfl.input({ shape: [size, size, channels], name: 'image' });
  let x: tfl.SymbolicTensor = image;
  // Encoder: blocks kept by the cut.
  const blocks = cut === 2 ? [[ENCODER_BLOCKS[0][0]]] : cut === 1 ? [ENCODER_BLOCKS[0]] : ENCODER_BLOCKS;
  blocks.forEach((block, b) => {
    for (const s of block) x = conv(s, activation, !o.frozen).apply(x) as tfl.SymbolicTensor;
    if (cut !== 2) x = tfl.layers.maxPooling2d({ name: `pool${b + 1}`, poolSize: 2 }).apply(x) as tfl.SymbolicTensor;
  });
  x = tfl.layers.flatten({ name: 'flatten' }).apply(x) as tfl.SymbolicTensor;

  const nLabel = labelUnits(condition, numClasses);
  const inputs = [image];
  x = tfl.layers
    .dense({ name: 'bottleneck', units: bottleneck - nLabel, activation: 'softmax', kernelInitializer: init() })
    .apply(x) as tfl.SymbolicTensor;
  if (nLabel > 0) {
    const label = tfl.input({ shape: [nLabel], name: 'label' });
    inputs.push(label);
    x = tfl.layers.concatenate({ name: 'condition' }).apply([x, label]) as tfl.SymbolicTensor;
  }
  x = tfl.layers.reshape({ name: 'unflatten', targetShape: [side, side, 1] }).apply(x) as tfl.SymbolicTensor;

  // Decoder: the kept encoder blocks mirrored, then upsampling to the input size.
  const up = (name: string, factor: number) =>
    tfl.layers.upSampling2d({ name, size: [factor, factor] }).apply(x) as tfl.SymbolicTensor;
  const total = size / side;
  if (cut === 0) {
    for (let k = 1; k <= 3; k++) x = conv({ name: `dec_conv${k}`, filters: 64, kernel: 3 }).apply(x) as tfl.SymbolicTensor;
    x = up('up1', 2);
    x = conv({ name: 'dec_conv4', filters: 32, kernel: 3 }).apply(x) as tfl.SymbolicTensor;
    x = conv({ name: 'dec_conv5', filters: 32, kernel: 4 }).apply(x) as tfl.SymbolicTensor;
    x = up('up2', total / 2);
  } else if (cut === 1) {
    x = up('up1', 2);
    x = conv({ name: 'dec_conv4', filters: 32, kernel: 3 }).apply(x) as tfl.SymbolicTensor;
    x = conv({ name: 'dec_conv5', filters: 32, kernel: 4 }).apply(x) as tfl.SymbolicTensor;
    x = up('up2', total / 2);
  } else {
    x = up('up1', total);
    x = conv({ name: 'dec_conv5', filters: 32, kernel: 4 }).apply(x) as tfl.SymbolicTensor;
  }
  const out = outputHead(x, conv, o.smooth ?? 0, o.output ?? 'sigmoid');
  return tfl.model({ inputs, outputs: out, name: `autoencoder_cut${cut}_${condition}${o.frozen ? '_frozen' : ''}` });
}

type ConvFn = (s: ConvSpec, act?: string, trainable?: boolean) => tfl.layers.Layer;

function buildUnet(
  size: number,
  channels: number,
  condition: Condition,
  numClasses: number,
  frozen: boolean,
  smooth: number,
  conv: ConvFn,
  init: () => ReturnType<typeof tfl.initializers.glorotUniform>,
  output: 'sigmoid' | 'linear',
): tfl.LayersModel {
  const apply = (l: tfl.layers.Layer, x: tfl.SymbolicTensor | tfl.SymbolicTensor[]) => l.apply(x) as tfl.SymbolicTensor;
  const image = tfl.input({ shape: [size, size, channels], name: 'image' });
  const inputs = [image];
  let x: tfl.SymbolicTensor = image;
  const skips: tfl.SymbolicTensor[] = [];
  ENCODER_BLOCKS.forEach((block, b) => {
    for (const s of block) x = apply(conv(s, undefined, !frozen), x);
    skips.push(x);
    x = apply(tfl.layers.maxPooling2d({ name: `pool${b + 1}`, poolSize: 2 }), x);
  });
  const side = size / 4;
  const nLabel = labelUnits(condition, numClasses);
  if (nLabel > 0) {
    const label = tfl.input({ shape: [nLabel], name: 'label' });
    inputs.push(label);
    let plane = apply(tfl.layers.dense({ name: 'label_plane', units: side * side, kernelInitializer: init() }), label);
    plane = apply(tfl.layers.reshape({ name: 'label_unflatten', targetShape: [side, side, 1] }), plane);
    x = apply(tfl.layers.concatenate({ name: 'condition' }), [x, plane]);
  }
  x = apply(conv({ name: 'dec_conv1', filters: 64, kernel: 3 }), x);
  x = apply(conv({ name: 'dec_conv2', filters: 64, kernel: 3 }), x);
  x = apply(tfl.layers.upSampling2d({ name: 'up1', size: [2, 2] }), x);
  x = apply(tfl.layers.concatenate({ name: 'skip2' }), [x, skips[1]]);
  x = apply(conv({ name: 'dec_conv3', filters: 64, kernel: 3 }), x);
  x = apply(conv({ name: 'dec_conv4', filters: 32, kernel: 3 }), x);
  x = apply(tfl.layers.upSampling2d({ name: 'up2', size: [2, 2] }), x);
  x = apply(tfl.layers.concatenate({ name: 'skip1' }), [x, skips[0]]);
  x = apply(conv({ name: 'dec_conv5', filters: 32, kernel: 3 }), x);
  const out = outputHead(x, conv, smooth, output);
  return tfl.model({ inputs, outputs: out, name: `unet_${condition}${frozen ? '_frozen' : ''}` });
}

/** conv 1 3x3 -> [fixed k x k box filter] -> sigmoid (the map in [0, 1]) or linear. */
function outputHead(x: tfl.SymbolicTensor, conv: ConvFn, smooth: number, output: 'sigmoid' | 'linear'): tfl.SymbolicTensor {
  if (!(Number.isInteger(smooth) && smooth >= 0)) throw new Error(`smooth must be a non-negative integer, got ${smooth}`);
  if (smooth <= 1) return conv({ name: 'map', filters: 1, kernel: 3 }, output).apply(x) as tfl.SymbolicTensor;
  x = conv({ name: 'map_logit', filters: 1, kernel: 3 }, 'linear').apply(x) as tfl.SymbolicTensor;
  x = tfl.layers
    .conv2d({
      name: 'map_smooth',
      filters: 1,
      kernelSize: smooth,
      padding: 'same',
      useBias: false,
      trainable: false,
      kernelInitializer: tfl.initializers.constant({ value: 1 / (smooth * smooth) }),
    })
    .apply(x) as tfl.SymbolicTensor;
  return tfl.layers.activation({ name: 'map', activation: output }).apply(x) as tfl.SymbolicTensor;
}

/** Parameter counts as Keras' summary prints them. */
export function parameterCounts(model: tfl.LayersModel): { total: number; trainable: number; nonTrainable: number } {
  const count = (ws: tfl.LayerVariable[]) => ws.reduce((a, w) => a + w.shape.reduce((p: number, d: number | null) => p * (d ?? 1), 1), 0);
  const trainable = count(model.trainableWeights);
  const nonTrainable = count(model.nonTrainableWeights);
  return { total: trainable + nonTrainable, trainable, nonTrainable };
}

/**
 * Copy conv1..conv5 weights from a trained classifier (matched by layer name and shape).
 * Returns the names copied; throws when a kept encoder layer has no match.
 */
export function copyEncoderWeights(from: tfl.LayersModel, to: tfl.LayersModel): string[] {
  const copied: string[] = [];
  for (const name of ENCODER_LAYER_NAMES) {
    let dst: tfl.layers.Layer;
    try {
      dst = to.getLayer(name);
    } catch {
      continue; // removed by a cut
    }
    let src: tfl.layers.Layer;
    try {
      src = from.getLayer(name);
    } catch {
      throw new Error(`classifier has no layer '${name}' to copy into the explainer's encoder`);
    }
    const sw = src.getWeights();
    const dw = dst.getWeights();
    if (sw.length !== dw.length || sw.some((w, i) => w.shape.join() !== dw[i].shape.join())) {
      throw new Error(`layer '${name}': classifier weights ${sw.map((w) => w.shape.join('x'))} do not fit the explainer's ${dw.map((w) => w.shape.join('x'))} (channels or kernel differ)`);
    }
    dst.setWeights(sw);
    copied.push(name);
  }
  return copied;
}
