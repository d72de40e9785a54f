/**
 * Multiply-add work of a model's forward pass, counted as 2 FLOPs per multiply-add over
 * convolutions and dense layers (pooling, activations and additions are a rounding error
 * here). Benchmarks divide measured throughput by this to report achieved GFLOP/s.
 */
import type { tfl } from '../runtime/tfjs.js';

interface LayerLike {
  getClassName(): string;
  getConfig(): Record<string, unknown>;
  inputSpec?: unknown;
  input: { shape: (number | null)[] } | { shape: (number | null)[] }[];
  outputShape: (number | null)[] | (number | null)[][];
}

function shapeOf(x: LayerLike['input']): (number | null)[] {
  return Array.isArray(x) ? x[0].shape : x.shape;
}

export function layerFlops(layer: LayerLike): number {
  const cls = layer.getClassName();
  if (cls === 'Conv2D') {
    const out = layer.outputShape as number[];
    const inShape = shapeOf(layer.input) as number[];
    const k = layer.getConfig().kernelSize as number[] | number;
    const [kh, kw] = Array.isArray(k) ? k : [k, k];
    return 2 * kh * kw * inShape[3] * out[1] * out[2] * out[3];
  }
  if (cls === 'Dense') {
    const inShape = shapeOf(layer.input) as number[];
    const out = layer.outputShape as number[];
    return 2 * inShape[inShape.length - 1] * out[out.length - 1];
  }
  return 0;
}

/** FLOPs of one forward pass for one input item. */
export function modelFlops(model: tfl.LayersModel): number {
  return (model.layers as unknown as LayerLike[]).reduce((s, l) => s + layerFlops(l), 0);
}
