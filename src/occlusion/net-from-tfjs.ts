/**
 * Read a tfjs LayersModel into a Net (net.ts) for the incremental engine, or say in one line
 * why it cannot: the engine runs chains of Conv2D / pooling / ZeroPadding2D / pointwise layers
 * followed by Flatten / Dense / pointwise layers; anything else runs on the full engine.
 */
import { tfl } from '../runtime/tfjs.js';
import { samePadding } from '../models/to-onnx.js';
import { ACTIVATIONS, activationName } from '../models/onnx-export/activations.js';
import { type Net, type Pads, type Pointwise, type Stage, type TailLayer } from './net.js';

type Layer = InstanceType<typeof tfl.layers.Layer>;
type Cfg = Record<string, unknown>;

/** Layers that are the identity at inference time. */
const IDENTITY = new Set(['Dropout', 'SpatialDropout1D', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout', 'ActivityRegularization']);

class Unsupported extends Error {}

function fail(why: string): never {
  throw new Unsupported(why);
}

/** The model's layers from input to output, when it is one chain. */
function chain(model: InstanceType<typeof tfl.LayersModel>): Layer[] {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) fail(`the model has ${model.inputs.length} inputs and ${model.outputs.length} outputs`);
  const out: Layer[] = [];
  let layer: Layer | undefined = model.outputs[0].sourceLayer as Layer;
  while (layer && layer.getClassName() !== 'InputLayer') {
    if (layer instanceof tfl.LayersModel) fail(`layer '${layer.name}' is a nested model`);
    const nodes: { inboundLayers: Layer[] }[] = (layer as unknown as { inboundNodes: { inboundLayers: Layer[] }[] }).inboundNodes;
    if (nodes.length !== 1) fail(`layer '${layer.name}' is called ${nodes.length} times`);
    if (nodes[0].inboundLayers.length !== 1) fail(`layer '${layer.name}' has ${nodes[0].inboundLayers.length} inputs (not a sequential chain)`);
    out.push(layer);
    layer = nodes[0].inboundLayers[0];
    if (out.length > 10000) fail('the layer graph has a cycle');
  }
  return out.reverse();
}

function pair(v: unknown, what: string, layer: Layer): [number, number] {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number')) return [v[0], v[1]];
  fail(`layer '${layer.name}': cannot read ${what} ${JSON.stringify(v)}`);
}

function weight(layer: Layer, suffix: string): Float32Array | undefined {
  const vars = layer.weights;
  const values = layer.getWeights();
  for (let i = 0; i < vars.length; i++) {
    const n = vars[i].originalName ?? vars[i].name;
    if (n === suffix || n.endsWith(`/${suffix}`)) return Float32Array.from(values[i].dataSync() as Float32Array);
  }
  return undefined;
}

function activation(name: string, layer: Layer): Pointwise[] {
  if (!Object.hasOwn(ACTIVATIONS, name)) fail(`layer '${layer.name}': activation '${name}'`);
  return name === 'linear' ? [] : [{ op: 'act', fn: name }];
}

/** The layer as pointwise ops, or undefined when it is not a pointwise layer. */
function pointwiseOf(layer: Layer, cls: string, cfg: Cfg, rank: number): Pointwise[] | undefined {
  if (IDENTITY.has(cls)) return [];
  switch (cls) {
    case 'Activation':
      return activation(activationName(cfg), layer);
    case 'ReLU': {
      const max = cfg.maxValue as number | null | undefined;
      return max === null || max === undefined ? [{ op: 'act', fn: 'relu' }] : [{ op: 'clip', min: 0, max }];
    }
    case 'LeakyReLU':
      return [{ op: 'leakyRelu', alpha: (cfg.alpha as number | undefined) ?? 0.3 }];
    case 'ELU':
      return [{ op: 'elu', alpha: (cfg.alpha as number | undefined) ?? 1 }];
    case 'Softmax': {
      const ax = cfg.axis as number | number[] | undefined;
      const axis = Array.isArray(ax) && ax.length === 1 ? ax[0] : (ax ?? -1);
      if (axis !== -1 && axis !== rank - 1) fail(`layer '${layer.name}': softmax over axis ${JSON.stringify(ax)}`);
      return [{ op: 'act', fn: 'softmax' }];
    }
    case 'BatchNormalization': {
      const ax = cfg.axis as number | number[];
      const axis = Array.isArray(ax) ? (ax.length === 1 ? ax[0] : fail(`layer '${layer.name}': batch normalization over several axes`)) : ax;
      if (axis !== -1 && axis !== rank - 1) fail(`layer '${layer.name}': batch normalization over axis ${axis}`);
      const mean = weight(layer, 'moving_mean');
      const variance = weight(layer, 'moving_variance');
      if (!mean || !variance) fail(`layer '${layer.name}': moving statistics not found`);
      const gamma = cfg.scale === false ? undefined : weight(layer, 'gamma');
      const beta = cfg.center === false ? undefined : weight(layer, 'beta');
      const eps = (cfg.epsilon as number | undefined) ?? 1e-3;
      const scale = new Float32Array(mean.length);
      const shift = new Float32Array(mean.length);
      for (let i = 0; i < mean.length; i++) {
        const s = (gamma ? gamma[i] : 1) / Math.sqrt(variance[i] + eps);
        scale[i] = s;
        shift[i] = (beta ? beta[i] : 0) - mean[i] * s;
      }
      return [{ op: 'affine', scale, shift }];
    }
  }
  return undefined;
}

function channelsLast(layer: Layer, cfg: Cfg): void {
  const df = cfg.dataFormat;
  if (df !== undefined && df !== null && df !== 'channelsLast') fail(`layer '${layer.name}': dataFormat ${String(df)}`);
}

/** [top, bottom, left, right] of 'same' / 'valid' padding on an input of h x w. */
function ownPads(layer: Layer, cfg: Cfg, h: number, w: number, k: [number, number], s: [number, number], d: [number, number]): Pads {
  const padding = cfg.padding ?? 'valid';
  if (padding === 'valid') return [0, 0, 0, 0];
  if (padding !== 'same') fail(`layer '${layer.name}': padding '${String(padding)}'`);
  const [t, b] = samePadding(h, k[0], s[0], d[0]);
  const [l, r] = samePadding(w, k[1], s[1], d[1]);
  return [t, b, l, r];
}

function zeroPadding(layer: Layer, cfg: Cfg): Pads {
  const v = cfg.padding ?? 1;
  if (typeof v === 'number') return [v, v, v, v];
  if (Array.isArray(v) && v.length === 2) {
    if (v.every((x) => typeof x === 'number')) return [v[0], v[0], v[1], v[1]];
    const [a, b] = [pair(v[0], 'padding', layer), pair(v[1], 'padding', layer)];
    return [a[0], a[1], b[0], b[1]];
  }
  fail(`layer '${layer.name}': cannot read padding ${JSON.stringify(v)}`);
}

function spatialStage(layer: Layer, cls: string, cfg: Cfg, inShape: number[], zeroPads: Pads, outShape: number[]): Stage {
  channelsLast(layer, cfg);
  // The layer's input already includes the ZeroPadding2D layers before it.
  const [h, w] = [inShape[1], inShape[2]];
  const cin = inShape[3];
  const cout = outShape[3];
  if (cls === 'Conv2D') {
    if (cfg.groups !== undefined && cfg.groups !== 1) fail(`layer '${layer.name}': grouped convolution`);
    const kernel = pair(cfg.kernelSize, 'kernelSize', layer);
    const strides = pair(cfg.strides ?? 1, 'strides', layer);
    const dilation = pair(cfg.dilationRate ?? 1, 'dilationRate', layer);
    if ((dilation[0] > 1 || dilation[1] > 1) && (strides[0] > 1 || strides[1] > 1)) fail(`layer '${layer.name}': dilation with stride > 1`);
    const kernelHWIO = weight(layer, 'kernel');
    if (!kernelHWIO) fail(`layer '${layer.name}': kernel not found`);
    const bias = cfg.useBias === false ? undefined : weight(layer, 'bias');
    const pads = ownPads(layer, cfg, h, w, kernel, strides, dilation);
    return { name: layer.name, kind: 'conv', kernel, strides, dilation, pads, zeroPads, cin, cout, kernelHWIO, bias, post: activation(activationName(cfg), layer) };
  }
  const kernel = pair(cfg.poolSize ?? 2, 'poolSize', layer);
  const strides = pair(cfg.strides ?? kernel, 'strides', layer);
  const pads = ownPads(layer, cfg, h, w, kernel, strides, [1, 1]);
  const kind = cls === 'MaxPooling2D' ? 'maxpool' : 'avgpool';
  // A pre-padded window would count the padded cells, which TF's 'same' average leaves out.
  if (kind === 'avgpool' && pads.some((p) => p > 0)) fail(`layer '${layer.name}': AveragePooling2D with 'same' padding that pads`);
  return { name: layer.name, kind, kernel, strides, dilation: [1, 1], pads, zeroPads, cin, cout, post: [] };
}

/** The Net of `model`, or the reason the incremental engine cannot run it. */
export function netFromModel(model: InstanceType<typeof tfl.LayersModel>): { net: Net } | { unsupported: string } {
  try {
    return { net: read(model) };
  } catch (err) {
    if (err instanceof Unsupported) return { unsupported: err.message };
    throw err;
  }
}

function read(model: InstanceType<typeof tfl.LayersModel>): Net {
  const inShape = model.inputs[0].shape;
  if (inShape.length !== 4 || inShape.slice(1).some((d) => d === null)) fail(`the input shape is (${inShape.join(',')}), not (N,H,W,C)`);
  const input = inShape.slice(1) as [number, number, number];
  const stages: Stage[] = [];
  const tail: TailLayer[] = [];
  let zeroPads: Pads = [0, 0, 0, 0];
  let flat = false;
  for (const layer of chain(model)) {
    const cls = layer.getClassName();
    const cfg = layer.getConfig() as Cfg;
    const li = (layer.input as { shape: number[] }).shape;
    const lo = layer.outputShape as number[];
    const rank = li.length;
    if (!flat && rank === 4) {
      if (cls === 'ZeroPadding2D') {
        channelsLast(layer, cfg);
        const p = zeroPadding(layer, cfg);
        zeroPads = [zeroPads[0] + p[0], zeroPads[1] + p[1], zeroPads[2] + p[2], zeroPads[3] + p[3]];
        continue;
      }
      if (cls === 'Conv2D' || cls === 'MaxPooling2D' || cls === 'AveragePooling2D') {
        stages.push(spatialStage(layer, cls, cfg, li, zeroPads, lo));
        zeroPads = [0, 0, 0, 0];
        continue;
      }
      const pw = pointwiseOf(layer, cls, cfg, rank);
      if (pw) {
        if (stages.length === 0 && pw.length > 0) fail(`layer '${layer.name}' (${cls}) comes before the first convolution`);
        if (pw.length > 0 && zeroPads.some((p) => p > 0)) fail(`layer '${layer.name}' (${cls}) follows a ZeroPadding2D`);
        stages[stages.length - 1]?.post.push(...pw);
        continue;
      }
      if (cls !== 'Flatten') fail(`layer '${layer.name}' (${cls}) is not supported`);
    }
    if (cls === 'Flatten') {
      if (flat) fail(`layer '${layer.name}': a second Flatten`);
      channelsLast(layer, cfg);
      flat = true;
      tail.push({ op: 'flatten' });
      continue;
    }
    if (!flat) fail(`layer '${layer.name}' (${cls}) on a rank-${rank} input before any Flatten`);
    if (cls === 'Dense') {
      const kernel = weight(layer, 'kernel');
      if (!kernel) fail(`layer '${layer.name}': kernel not found`);
      const units = lo[lo.length - 1];
      const bias = cfg.useBias === false ? undefined : weight(layer, 'bias');
      tail.push({ op: 'dense', name: layer.name, units, inputs: li[li.length - 1], kernel, bias });
      tail.push(...activation(activationName(cfg), layer));
      continue;
    }
    const pw = pointwiseOf(layer, cls, cfg, rank);
    if (!pw) fail(`layer '${layer.name}' (${cls}) is not supported after Flatten`);
    tail.push(...pw);
  }
  if (!flat) fail('the model has no Flatten (its output is not a class vector)');
  const outShape = model.outputs[0].shape;
  if (outShape.length !== 2 || typeof outShape[1] !== 'number') fail(`the output shape is (${outShape.join(',')}), not (N,K)`);
  if (outShape[1] < 2) fail('the model has one output unit');
  return { input, stages, tailZeroPads: zeroPads, tail, numClasses: outShape[1] };
}
