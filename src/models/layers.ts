/**
 * Small layer builders so model definitions read like the architecture tables in docs/seed.md:
 * `conv(32, 4, ...)`, `maxPool(...)`, `dense(64, ...)`. Every weighted layer takes an explicit
 * name (weights are copied between models by layer name, e.g. classifier conv1..conv5 into the
 * frozen autoencoder) and a seed for its initialiser, so a run with the same seed is repeatable.
 */
import { tfl } from '../runtime/tfjs.js';

export type Activation = 'relu' | 'linear' | 'softmax' | 'sigmoid' | 'tanh';

export interface LayerOpts {
  name: string;
  activation?: Activation;
  /** Kernel initialiser seed; biases start at zero (the Keras defaults, seeded). */
  seed?: number;
  trainable?: boolean;
}

/** tfjs-layers' Layer class (not exported by name from the package root). */
export type Layer = Parameters<tfl.Sequential['add']>[0];

function kernelInit(seed: number | undefined) {
  // Keras' default kernel initialiser is glorot_uniform; tfjs accepts a seed for it.
  return tfl.initializers.glorotUniform({ seed });
}

/** 2-D convolution, stride 1, 'same' padding (as every conv in the seed). */
export function conv(filters: number, kernel: number, o: LayerOpts): Layer {
  return tfl.layers.conv2d({
    filters,
    kernelSize: kernel,
    padding: 'same',
    activation: o.activation ?? 'linear',
    kernelInitializer: kernelInit(o.seed),
    biasInitializer: 'zeros',
    name: o.name,
    trainable: o.trainable ?? true,
  });
}

/** Max pooling, window = stride = `size`, 'valid' (Keras default: 27 -> 13 -> 6). */
export function maxPool(o: { name: string; size?: number }): Layer {
  const size = o.size ?? 2;
  return tfl.layers.maxPooling2d({ poolSize: size, strides: size, padding: 'valid', name: o.name });
}

export function dense(units: number, o: LayerOpts): Layer {
  return tfl.layers.dense({
    units,
    activation: o.activation ?? 'linear',
    kernelInitializer: kernelInit(o.seed),
    biasInitializer: 'zeros',
    name: o.name,
    trainable: o.trainable ?? true,
  });
}

/**
 * Dropout. The training loop (src/train/loop.ts) gives it a fresh seed every step, so masks
 * differ between steps yet the whole run repeats exactly with the same --seed.
 */
export function dropout(rate: number, o: { name: string }): Layer {
  return tfl.layers.dropout({ rate, name: o.name });
}

/** Zero padding on every side (the seed pads 21x21 stamps to 27x27 inside the model). */
export function zeroPad(pad: number | [[number, number], [number, number]], o: { name: string }): Layer {
  const padding: [[number, number], [number, number]] = typeof pad === 'number' ? [[pad, pad], [pad, pad]] : pad;
  return tfl.layers.zeroPadding2d({ padding, name: o.name });
}

/**
 * A separate activation layer. Classifiers end in `dense(K, linear)` + `activation('softmax')`
 * so the training loop can take the cross-entropy from the logits (see src/train/loop.ts).
 */
export function activation(fn: Activation, o: { name: string }): Layer {
  return tfl.layers.activation({ activation: fn, name: o.name });
}

export function flatten(o: { name: string }): Layer {
  return tfl.layers.flatten({ name: o.name });
}

export function upSample(size: number, o: { name: string }): Layer {
  return tfl.layers.upSampling2d({ size: [size, size], name: o.name });
}

export function reshape(targetShape: number[], o: { name: string }): Layer {
  return tfl.layers.reshape({ targetShape, name: o.name });
}

export function cropping(crop: [[number, number], [number, number]], o: { name: string }): Layer {
  return tfl.layers.cropping2D({ cropping: crop, name: o.name });
}

/** A sequential model from an input shape (H, W, C) and a list of layers. */
export function stack(name: string, inputShape: [number, number, number], layers: Layer[]): ReturnType<typeof tfl.sequential> {
  const model = tfl.sequential({ name });
  model.add(tfl.layers.inputLayer({ inputShape, name: 'input' }));
  for (const l of layers) model.add(l);
  return model;
}

/** Number of weights (trainable and not), as Keras' model.summary() counts them. */
export function countParams(model: { weights: { shape: (number | null)[] }[] }): number {
  let total = 0;
  for (const w of model.weights) total += w.shape.reduce<number>((a, b) => a * (b ?? 1), 1);
  return total;
}

/** Distinct, reproducible initialiser seeds for the layers of one model. */
export function layerSeeds(seed: number): () => number {
  let k = 0;
  // Spread over the 31-bit range so seeds of nearby runs (0, 1, 2...) never share a layer seed.
  return () => ((Math.imul(Math.floor(seed) + 1, 0x9e3779b1) + 7919 * ++k) >>> 1);
}
