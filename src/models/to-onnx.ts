/**
 * Export a tfjs LayersModel (Sequential or functional, nested models inlined) to an ONNX model
 * that ONNX Runtime runs with the same numbers.
 *
 * Layout: Keras tensors are NHWC; ONNX's Conv/Pool/Resize are NCHW. Every rank-4 value is
 * carried in whichever layout its producer made, and converted with a Transpose only where a
 * consumer needs the other one (Conv wants NCHW; Flatten, Dense and Reshape need Keras's NHWC
 * element order, or Dense weights trained after a Flatten would read the wrong pixels). The
 * graph's inputs and outputs keep the tfjs shapes, so callers feed both engines the same arrays.
 */
import { tfl } from '../runtime/tfjs.js';
import { fileError, UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import {
  META_LAYOUT,
  encodeOnnxModel,
  type AttributeValue,
  type OnnxAttribute,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
  type OnnxValueInfo,
} from './onnx-proto.js';

export { META_LAYOUT, META_SOURCE_HASH } from './onnx-proto.js';

/** Opset 13: Softmax on one axis, Pad/Slice/Clip/Resize with tensor inputs; ORT 1.30 reads 7..23. */
export const ONNX_OPSET = 13;
/** IR version 8 (ONNX 1.10), well inside what onnxruntime-node 1.30 accepts. */
export const ONNX_IR_VERSION = 8;
export interface OnnxExportOptions {
  docString?: string;
  /** Extra metadata_props (e.g. { [META_SOURCE_HASH]: card.hash }). */
  metadata?: Record<string, string>;
}

type Layer = InstanceType<typeof tfl.layers.Layer>;
type Shape = (number | null)[];

/** The parts of tfjs's (unexported) Node and SymbolicTensor classes the walk needs. */
interface SymTensor {
  id: number;
  shape: Shape;
  sourceLayer: Layer;
  nodeIndex: number;
  tensorIndex: number;
}
interface TfNode {
  inputTensors: SymTensor[];
  outputTensors: SymTensor[];
}
interface Container {
  inputs: SymTensor[];
  outputs: SymTensor[];
}

/** A tensor of the ONNX graph standing for a Keras tensor of shape `shape` (NHWC when rank 4). */
interface Val {
  name: string;
  shape: Shape;
  /** Rank 4 only: the ONNX tensor holds the NCHW transpose of the Keras tensor. */
  nchw: boolean;
  /** The same value in the other layout, once a Transpose has made it. */
  other?: string;
}

// ---------------------------------------------------------------- pure helpers (unit-tested)

/**
 * Permute a dense row-major array: out has dims `dims[perm[i]]`, and out[j] = x[i] where
 * j's coordinates are i's coordinates reordered by perm (numpy's `transpose(x, perm)`).
 */
export function permute(x: Float32Array, dims: number[], perm: number[]): Float32Array {
  const r = dims.length;
  if (perm.length !== r || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw new RangeError(`bad permutation ${JSON.stringify(perm)} for rank ${r}`);
  }
  const inStrides = new Array<number>(r);
  let s = 1;
  for (let i = r - 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= dims[i];
  }
  if (s !== x.length) throw new RangeError(`dims ${JSON.stringify(dims)} do not match ${x.length} values`);
  const outDims = perm.map((p) => dims[p]);
  const stridesByOut = perm.map((p) => inStrides[p]);
  const out = new Float32Array(x.length);
  const idx = new Array<number>(r).fill(0);
  let src = 0;
  for (let j = 0; j < out.length; j++) {
    out[j] = x[src];
    for (let k = r - 1; k >= 0; k--) {
      idx[k]++;
      src += stridesByOut[k];
      if (idx[k] < outDims[k]) break;
      src -= stridesByOut[k] * outDims[k];
      idx[k] = 0;
    }
  }
  return out;
}

/**
 * tfjs/TensorFlow 'same' padding along one axis: the output has ceil(in / stride) positions and
 * the odd pixel of an even total goes to the end (bottom/right), e.g. a 4x4 kernel at stride 1
 * pads 1 before and 2 after. Returns [before, after].
 */
export function samePadding(size: number, kernel: number, stride: number, dilation = 1): [number, number] {
  const effective = (kernel - 1) * dilation + 1;
  const out = Math.ceil(size / stride);
  const total = Math.max(0, (out - 1) * stride + effective - size);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

// ---------------------------------------------------------------- graph builder

const NHWC_TO_NCHW = [0, 3, 1, 2];
const NCHW_TO_NHWC = [0, 2, 3, 1];
/** Keras NHWC axis -> the same axis of the NCHW tensor. */
const AXIS_IN_NCHW = [0, 2, 3, 1];

const int = (value: number): AttributeValue => ({ type: 'int', value });
const float = (value: number): AttributeValue => ({ type: 'float', value });
const ints = (value: number[]): AttributeValue => ({ type: 'ints', value });
const str = (value: string): AttributeValue => ({ type: 'string', value });

class Builder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private readonly used = new Set<string>();
  private readonly scalars = new Map<number, string>();

  reserve(name: string): void {
    if (this.used.has(name)) throw new UserError(`model has two graph inputs/outputs named ${name}`);
    this.used.add(name);
  }

  unique(base: string): string {
    const clean = base.replace(/[^A-Za-z0-9_./:-]/g, '_');
    let name = clean;
    for (let i = 1; this.used.has(name); i++) name = `${clean}_${i}`;
    this.used.add(name);
    return name;
  }

  op(opType: string, inputs: string[], base: string, attrs: Record<string, AttributeValue> = {}, output?: string): string {
    const out = output ?? this.unique(base);
    const attributes: OnnxAttribute[] = Object.entries(attrs).map(([name, value]) => ({ name, value }));
    this.nodes.push({ opType, inputs, outputs: [out], name: this.unique(`${base}/${opType}`), attributes });
    return out;
  }

  floats(base: string, dims: number[], data: Float32Array): string {
    const name = this.unique(base);
    this.initializers.push({ name, dims, data });
    return name;
  }

  int64s(base: string, values: number[]): string {
    const name = this.unique(base);
    this.initializers.push({ name, dims: [values.length], data: BigInt64Array.from(values.map((v) => BigInt(v))) });
    return name;
  }

  scalar(v: number): string {
    let name = this.scalars.get(v);
    if (!name) {
      name = this.unique(`const_${v}`);
      this.initializers.push({ name, dims: [], data: Float32Array.of(v) });
      this.scalars.set(v, name);
    }
    return name;
  }

  nchw(v: Val): string {
    if (v.shape.length !== 4) throw new Error(`internal: NCHW form of a rank-${v.shape.length} value`);
    if (v.nchw) return v.name;
    v.other ??= this.op('Transpose', [v.name], `${v.name}_nchw`, { perm: ints(NHWC_TO_NCHW) });
    return v.other;
  }

  /** The value in Keras's own element order (NHWC for rank 4; every other rank is as is). */
  keras(v: Val): string {
    if (!v.nchw) return v.name;
    v.other ??= this.op('Transpose', [v.name], `${v.name}_nhwc`, { perm: ints(NCHW_TO_NHWC) });
    return v.other;
  }
}

// ---------------------------------------------------------------- layer translation

interface LayerCtx {
  b: Builder;
  layer: Layer;
  cls: string;
  cfg: Record<string, unknown>;
  /** Keras output shapes of this call. */
  outShapes: Shape[];
  unsupported(why: string): never;
}

function weight(ctx: LayerCtx, suffix: string): { data: Float32Array; shape: number[] } | undefined {
  const vars = ctx.layer.weights;
  const values = ctx.layer.getWeights();
  for (let i = 0; i < vars.length; i++) {
    const n = vars[i].originalName ?? vars[i].name;
    if (n === suffix || n.endsWith(`/${suffix}`)) {
      return { data: Float32Array.from(values[i].dataSync() as Float32Array), shape: values[i].shape };
    }
  }
  return undefined;
}

function needWeight(ctx: LayerCtx, suffix: string): { data: Float32Array; shape: number[] } {
  const w = weight(ctx, suffix);
  if (!w) ctx.unsupported(`weight '${suffix}' not found`);
  return w;
}

function pair(v: unknown, what: string, ctx: LayerCtx): [number, number] {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number')) return [v[0], v[1]];
  ctx.unsupported(`cannot read ${what} ${JSON.stringify(v)}`);
}

/** [[top, bottom], [left, right]] from ZeroPadding2D / Cropping2D configs (int, [h, w] or nested). */
function padPairs(v: unknown, ctx: LayerCtx): [[number, number], [number, number]] {
  if (typeof v === 'number') return [[v, v], [v, v]];
  if (Array.isArray(v) && v.length === 2) {
    if (v.every((x) => typeof x === 'number')) return [[v[0], v[0]], [v[1], v[1]]];
    return [pair(v[0], 'padding', ctx), pair(v[1], 'padding', ctx)];
  }
  ctx.unsupported(`cannot read padding ${JSON.stringify(v)}`);
}

function channelsLast(ctx: LayerCtx): void {
  const df = ctx.cfg.dataFormat;
  if (df !== undefined && df !== null && df !== 'channelsLast') ctx.unsupported(`dataFormat ${String(df)} (only channelsLast)`);
}

/** Same-rank value with the layout of `like`. */
function like(v: Val, name: string, shape: Shape = v.shape): Val {
  return { name, shape, nchw: v.nchw && shape.length === 4 };
}

/** Axis of `v`'s ONNX tensor that holds Keras axis `axis` (negative counts from the end). */
function onnxAxis(v: Val, axis: number): number {
  const r = v.shape.length;
  const a = axis < 0 ? axis + r : axis;
  return v.nchw ? AXIS_IN_NCHW[a] : a;
}

/** Apply a Keras activation (by its serialised name) to `v`; softmax runs over Keras axis -1. */
function activation(b: Builder, v: Val, act: string, base: string, unsupported: (why: string) => never): Val {
  const x = v.name;
  const one = (op: string, attrs: Record<string, AttributeValue> = {}): Val => like(v, b.op(op, [x], `${base}_${act}`, attrs));
  switch (act) {
    case 'linear':
      return v;
    case 'relu':
      return one('Relu');
    case 'relu6':
      return like(v, b.op('Clip', [x, b.scalar(0), b.scalar(6)], `${base}_relu6`));
    case 'elu':
      return one('Elu', { alpha: float(1) });
    case 'selu':
      return one('Selu');
    case 'sigmoid':
      return one('Sigmoid');
    case 'hardSigmoid':
    case 'hard_sigmoid':
      return one('HardSigmoid', { alpha: float(0.2), beta: float(0.5) });
    case 'softplus':
      return one('Softplus');
    case 'softsign':
      return one('Softsign');
    case 'tanh':
      return one('Tanh');
    case 'softmax':
      return one('Softmax', { axis: int(onnxAxis(v, -1)) });
    case 'logSoftmax':
    case 'log_softmax':
      return one('LogSoftmax', { axis: int(onnxAxis(v, -1)) });
    case 'swish': {
      const s = b.op('Sigmoid', [x], `${base}_swish`);
      return like(v, b.op('Mul', [s, x], `${base}_swish`));
    }
    case 'mish': {
      const t = b.op('Tanh', [b.op('Softplus', [x], `${base}_mish`)], `${base}_mish`);
      return like(v, b.op('Mul', [x, t], `${base}_mish`));
    }
    case 'gelu': {
      // 0.5 x (1 + erf(x / sqrt 2)), as tfjs-layers computes it
      const e = b.op('Erf', [b.op('Div', [x, b.scalar(Math.SQRT2)], `${base}_gelu`)], `${base}_gelu`);
      const cdf = b.op('Mul', [b.scalar(0.5), b.op('Add', [b.scalar(1), e], `${base}_gelu`)], `${base}_gelu`);
      return like(v, b.op('Mul', [x, cdf], `${base}_gelu`));
    }
    case 'gelu_new': {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      const x3 = b.op('Mul', [x, b.op('Mul', [x, x], `${base}_gelu`)], `${base}_gelu`);
      const inner = b.op('Add', [x, b.op('Mul', [b.scalar(0.044715), x3], `${base}_gelu`)], `${base}_gelu`);
      const t = b.op('Tanh', [b.op('Mul', [b.scalar(Math.sqrt(2 / Math.PI)), inner], `${base}_gelu`)], `${base}_gelu`);
      const half = b.op('Mul', [b.scalar(0.5), x], `${base}_gelu`);
      return like(v, b.op('Mul', [half, b.op('Add', [b.scalar(1), t], `${base}_gelu`)], `${base}_gelu`));
    }
    default:
      unsupported(`activation '${act}'`);
  }
}

function activationName(cfg: Record<string, unknown>): string {
  const a = cfg.activation;
  if (a === undefined || a === null) return 'linear';
  if (typeof a === 'string') return a;
  // a serialised activation object {className, config}
  const cn = (a as { className?: string; class_name?: string }).className ?? (a as { class_name?: string }).class_name;
  return typeof cn === 'string' ? cn : JSON.stringify(a);
}

/** Explicit [top, left, bottom, right] pads for a conv/pool on a known NHWC input shape. */
function convPads(ctx: LayerCtx, inShape: Shape, kernel: [number, number], strides: [number, number], dil: [number, number]): number[] {
  const padding = ctx.cfg.padding ?? 'valid';
  if (padding === 'valid') return [0, 0, 0, 0];
  if (padding !== 'same') ctx.unsupported(`padding '${String(padding)}'`);
  const [h, w] = [inShape[1], inShape[2]];
  if (h === null || w === null) ctx.unsupported("'same' padding needs a known input height and width");
  const [t, bt] = samePadding(h, kernel[0], strides[0], dil[0]);
  const [l, r] = samePadding(w, kernel[1], strides[1], dil[1]);
  return [t, l, bt, r];
}

function conv(
  ctx: LayerCtx,
  x: Val,
  wName: string,
  bName: string | undefined,
  kernel: [number, number],
  group: number,
  strides: [number, number],
  dil: [number, number],
  outShape: Shape,
): Val {
  const pads = convPads(ctx, x.shape, kernel, strides, dil);
  const inputs = [ctx.b.nchw(x), wName];
  if (bName) inputs.push(bName);
  const name = ctx.b.op('Conv', inputs, ctx.layer.name, {
    kernel_shape: ints(kernel),
    strides: ints(strides),
    dilations: ints(dil),
    pads: ints(pads),
    group: int(group),
  });
  return { name, shape: outShape, nchw: true };
}

/** Translate one call of one layer. Returns its outputs (one Val per output tensor). */
function translateLayer(ctx: LayerCtx, inputs: Val[]): Val[] {
  const { b, cfg, layer, cls } = ctx;
  const x = inputs[0];
  const out = ctx.outShapes[0];
  const base = layer.name;
  const act = (v: Val): Val => activation(b, v, activationName(cfg), base, ctx.unsupported);
  const rank4 = (v: Val): void => {
    if (v.shape.length !== 4) ctx.unsupported(`expects a rank-4 (N,H,W,C) input, got rank ${v.shape.length}`);
  };

  switch (cls) {
    case 'Conv2D': {
      rank4(x);
      channelsLast(ctx);
      if (cfg.groups !== undefined && cfg.groups !== 1) ctx.unsupported('groups != 1');
      const k = needWeight(ctx, 'kernel'); // [kh, kw, in, out]
      const [kh, kw, ci, co] = k.shape;
      const w = b.floats(`${base}/kernel`, [co, ci, kh, kw], permute(k.data, k.shape, [3, 2, 0, 1]));
      const bias = cfg.useBias === false ? undefined : weight(ctx, 'bias');
      const bn = bias ? b.floats(`${base}/bias`, [co], bias.data) : undefined;
      const strides = pair(cfg.strides ?? 1, 'strides', ctx);
      const dil = pair(cfg.dilationRate ?? 1, 'dilationRate', ctx);
      if ((dil[0] > 1 || dil[1] > 1) && (strides[0] > 1 || strides[1] > 1)) ctx.unsupported('dilation with stride > 1');
      return [act(conv(ctx, x, w, bn, [kh, kw], 1, strides, dil, out))];
    }
    case 'DepthwiseConv2D':
    case 'SeparableConv2D': {
      rank4(x);
      channelsLast(ctx);
      const dk = needWeight(ctx, 'depthwise_kernel'); // [kh, kw, in, mult]
      const [kh, kw, ci, mult] = dk.shape;
      // ONNX grouped conv: output channel c*mult+m reads input channel c, as TF orders them
      const w = b.floats(`${base}/depthwise_kernel`, [ci * mult, 1, kh, kw], permute(dk.data, dk.shape, [2, 3, 0, 1]));
      const strides = pair(cfg.strides ?? 1, 'strides', ctx);
      const dil = pair(cfg.dilationRate ?? 1, 'dilationRate', ctx);
      const bias = cfg.useBias === false ? undefined : weight(ctx, 'bias');
      if (cls === 'DepthwiseConv2D') {
        const bn = bias ? b.floats(`${base}/bias`, [ci * mult], bias.data) : undefined;
        return [act(conv(ctx, x, w, bn, [kh, kw], ci, strides, dil, out))];
      }
      const mid: Shape = [out[0], out[1], out[2], ci * mult];
      const d = conv(ctx, x, w, undefined, [kh, kw], ci, strides, dil, mid);
      const pk = needWeight(ctx, 'pointwise_kernel'); // [1, 1, in*mult, out]
      const co = pk.shape[3];
      const pw = b.floats(`${base}/pointwise_kernel`, [co, ci * mult, 1, 1], permute(pk.data, pk.shape, [3, 2, 0, 1]));
      const inputs = [d.name, pw];
      if (bias) inputs.push(b.floats(`${base}/bias`, [co], bias.data));
      const name = b.op('Conv', inputs, `${base}_pointwise`, { kernel_shape: ints([1, 1]) });
      return [act({ name, shape: out, nchw: true })];
    }
    case 'Dense': {
      const k = needWeight(ctx, 'kernel'); // [in, units]
      const wName = b.floats(`${base}/kernel`, k.shape, k.data);
      const bias = cfg.useBias === false ? undefined : weight(ctx, 'bias');
      const bName = bias ? b.floats(`${base}/bias`, [k.shape[1]], bias.data) : undefined;
      const xin = b.keras(x);
      let name: string;
      if (x.shape.length === 2) {
        name = b.op('Gemm', bName ? [xin, wName, bName] : [xin, wName], base);
      } else {
        // Keras applies Dense to the last axis of any rank
        name = b.op('MatMul', [xin, wName], base);
        if (bName) name = b.op('Add', [name, bName], base);
      }
      return [act({ name, shape: out, nchw: false })];
    }
    case 'MaxPooling2D':
    case 'AveragePooling2D': {
      rank4(x);
      channelsLast(ctx);
      const pool = pair(cfg.poolSize ?? 2, 'poolSize', ctx);
      const strides = pair(cfg.strides ?? pool, 'strides', ctx);
      const pads = convPads(ctx, x.shape, pool, strides, [1, 1]);
      // AveragePool's count_include_pad = 0 (default) = TF's 'same': padded cells are not counted
      const name = b.op(cls === 'MaxPooling2D' ? 'MaxPool' : 'AveragePool', [b.nchw(x)], base, {
        kernel_shape: ints(pool),
        strides: ints(strides),
        pads: ints(pads),
      });
      return [{ name, shape: out, nchw: true }];
    }
    case 'GlobalAveragePooling2D':
    case 'GlobalMaxPooling2D': {
      rank4(x);
      channelsLast(ctx);
      if (cfg.keepDims === true) ctx.unsupported('keepDims');
      const g = b.op(cls === 'GlobalMaxPooling2D' ? 'GlobalMaxPool' : 'GlobalAveragePool', [b.nchw(x)], base);
      return [{ name: b.op('Flatten', [g], base, { axis: int(1) }), shape: out, nchw: false }];
    }
    case 'Flatten': {
      channelsLast(ctx);
      if (x.shape.length === 2) return [x];
      // Keras flattens in NHWC order; the following Dense weights were trained on that order.
      return [{ name: b.op('Flatten', [b.keras(x)], base, { axis: int(1) }), shape: out, nchw: false }];
    }
    case 'Reshape': {
      const target = cfg.targetShape as number[];
      // 0 copies the batch dimension; a -1 in the target is resolved by ONNX as by Keras.
      const shapeName = b.int64s(`${base}/shape`, [0, ...target]);
      return [{ name: b.op('Reshape', [b.keras(x), shapeName], base), shape: out, nchw: false }];
    }
    case 'Permute': {
      const dims = cfg.dims as number[];
      return [{ name: b.op('Transpose', [b.keras(x)], base, { perm: ints([0, ...dims]) }), shape: out, nchw: false }];
    }
    case 'UpSampling2D': {
      rank4(x);
      channelsLast(ctx);
      const [sh, sw] = pair(cfg.size ?? 2, 'size', ctx);
      const interp = (cfg.interpolation as string | undefined) ?? 'nearest';
      if (interp !== 'nearest' && interp !== 'bilinear') ctx.unsupported(`interpolation '${interp}'`);
      // tfjs resizes with alignCorners = halfPixelCenters = false: source = dest / scale, floored for nearest
      const scales = b.floats(`${base}/scales`, [4], Float32Array.of(1, 1, sh, sw));
      const attrs: Record<string, AttributeValue> = {
        mode: str(interp === 'nearest' ? 'nearest' : 'linear'),
        coordinate_transformation_mode: str('asymmetric'),
      };
      if (interp === 'nearest') attrs.nearest_mode = str('floor');
      return [{ name: b.op('Resize', [b.nchw(x), '', scales], base, attrs), shape: out, nchw: true }];
    }
    case 'ZeroPadding2D': {
      rank4(x);
      channelsLast(ctx);
      const [[t, bt], [l, r]] = padPairs(cfg.padding ?? 1, ctx);
      const pads = b.int64s(`${base}/pads`, [0, 0, t, l, 0, 0, bt, r]);
      return [{ name: b.op('Pad', [b.nchw(x), pads], base, { mode: str('constant') }), shape: out, nchw: true }];
    }
    case 'Cropping2D': {
      rank4(x);
      channelsLast(ctx);
      const [[t, bt], [l, r]] = padPairs(cfg.cropping ?? 0, ctx);
      const [h, w] = [x.shape[1], x.shape[2]];
      const end = (size: number | null, crop: number): number => (size !== null ? size - crop : crop > 0 ? -crop : 2 ** 53 - 1);
      const starts = b.int64s(`${base}/starts`, [t, l]);
      const ends = b.int64s(`${base}/ends`, [end(h, bt), end(w, r)]);
      const axes = b.int64s(`${base}/axes`, [2, 3]);
      return [{ name: b.op('Slice', [b.nchw(x), starts, ends, axes], base), shape: out, nchw: true }];
    }
    case 'BatchNormalization': {
      const r = x.shape.length;
      const ax = cfg.axis as number | number[];
      const axis = Array.isArray(ax) ? (ax.length === 1 ? ax[0] : ctx.unsupported('several axes')) : ax;
      const a = axis < 0 ? axis + r : axis;
      const mean = needWeight(ctx, 'moving_mean').data;
      const variance = needWeight(ctx, 'moving_variance').data;
      const gamma = cfg.scale === false ? undefined : weight(ctx, 'gamma')?.data;
      const beta = cfg.center === false ? undefined : weight(ctx, 'beta')?.data;
      const eps = (cfg.epsilon as number | undefined) ?? 1e-3;
      const c = mean.length;
      // inference form folded into y = x * scale + shift (float64 arithmetic, then rounded)
      const scale = new Float32Array(c);
      const shift = new Float32Array(c);
      for (let i = 0; i < c; i++) {
        const s = (gamma ? gamma[i] : 1) / Math.sqrt(variance[i] + eps);
        scale[i] = s;
        shift[i] = (beta ? beta[i] : 0) - mean[i] * s;
      }
      const useNchw = r === 4 && a === 3;
      const xin = useNchw ? b.nchw(x) : b.keras(x);
      const pos = useNchw ? 1 : a;
      const dims = [c, ...new Array<number>(r - 1 - pos).fill(1)];
      const y = b.op('Mul', [xin, b.floats(`${base}/scale`, dims, scale)], base);
      const z = b.op('Add', [y, b.floats(`${base}/shift`, dims, shift)], base);
      return [{ name: z, shape: out, nchw: useNchw }];
    }
    case 'Concatenate': {
      const all4 = inputs.every((v) => v.shape.length === 4);
      const axis = (cfg.axis as number | undefined) ?? -1;
      const r = x.shape.length;
      const a = axis < 0 ? axis + r : axis;
      const names = inputs.map((v) => (all4 ? b.nchw(v) : b.keras(v)));
      const name = b.op('Concat', names, base, { axis: int(all4 ? AXIS_IN_NCHW[a] : a) });
      return [{ name, shape: out, nchw: all4 }];
    }
    case 'Add':
    case 'Subtract':
    case 'Multiply':
    case 'Average':
    case 'Maximum':
    case 'Minimum': {
      const all4 = inputs.every((v) => v.shape.length === 4);
      const names = inputs.map((v) => (all4 ? b.nchw(v) : b.keras(v)));
      const op = { Add: 'Sum', Subtract: 'Sub', Multiply: 'Mul', Average: 'Mean', Maximum: 'Max', Minimum: 'Min' }[cls];
      let name: string;
      if (op === 'Mul') {
        name = names[0];
        for (let i = 1; i < names.length; i++) name = b.op('Mul', [name, names[i]], base);
      } else {
        name = b.op(op, names, base);
      }
      return [{ name, shape: out, nchw: all4 }];
    }
    case 'Activation':
      return [act(x)];
    case 'ReLU': {
      const max = cfg.maxValue as number | null | undefined;
      if (max === null || max === undefined) return [like(x, b.op('Relu', [x.name], base))];
      return [like(x, b.op('Clip', [x.name, b.scalar(0), b.scalar(max)], base))];
    }
    case 'LeakyReLU':
      return [like(x, b.op('LeakyRelu', [x.name], base, { alpha: float((cfg.alpha as number | undefined) ?? 0.3) }))];
    case 'ELU':
      return [like(x, b.op('Elu', [x.name], base, { alpha: float((cfg.alpha as number | undefined) ?? 1) }))];
    case 'ThresholdedReLU':
      return [like(x, b.op('ThresholdedRelu', [x.name], base, { alpha: float((cfg.theta as number | undefined) ?? 1) }))];
    case 'Softmax': {
      const ax = (cfg.axis as number | number[] | undefined) ?? -1;
      const axis = Array.isArray(ax) ? (ax.length === 1 ? ax[0] : ctx.unsupported('several axes')) : ax;
      return [like(x, b.op('Softmax', [x.name], base, { axis: int(onnxAxis(x, axis)) }))];
    }
    case 'PReLU': {
      const alpha = needWeight(ctx, 'alpha'); // input shape without batch, shared axes of size 1
      if (x.nchw) {
        const slope = b.floats(`${base}/alpha`, [alpha.shape[2], alpha.shape[0], alpha.shape[1]], permute(alpha.data, alpha.shape, [2, 0, 1]));
        return [like(x, b.op('PRelu', [x.name, slope], base))];
      }
      return [like(x, b.op('PRelu', [x.name, b.floats(`${base}/alpha`, alpha.shape, alpha.data)], base))];
    }
    // Identity at inference time.
    case 'Dropout':
    case 'SpatialDropout1D':
    case 'SpatialDropout2D':
    case 'GaussianNoise':
    case 'GaussianDropout':
    case 'AlphaDropout':
    case 'ActivityRegularization':
      return [x];
    default:
      ctx.unsupported('unsupported layer type');
  }
}

// ---------------------------------------------------------------- graph walk

function isContainer(layer: Layer): boolean {
  return layer instanceof tfl.LayersModel;
}

class Exporter {
  readonly b = new Builder();

  /** Emit the graph for `t` in `scope` (symbolic tensor id -> value), memoised. */
  emit(t: SymTensor, scope: Map<number, Val>, prefix: string): Val {
    const known = scope.get(t.id);
    if (known) return known;
    const layer = t.sourceLayer;
    const cls = layer.getClassName();
    if (cls === 'InputLayer') throw new UserError(`model input ${layer.name} is not connected to the model's inputs`);
    const node = (layer as unknown as { inboundNodes: TfNode[] }).inboundNodes[t.nodeIndex];
    const inputs = node.inputTensors.map((it) => this.emit(it, scope, prefix));
    let outs: Val[];
    if (isContainer(layer)) {
      // A nested model: run its own graph with its inputs bound to this call's inputs.
      const inner = layer as unknown as Container;
      const innerScope = new Map<number, Val>();
      inner.inputs.forEach((it, i) => innerScope.set(it.id, inputs[i]));
      outs = inner.outputs.map((ot) => this.emit(ot, innerScope, `${prefix}${layer.name}/`));
    } else {
      const ctx: LayerCtx = {
        b: this.b,
        layer,
        cls,
        cfg: layer.getConfig() as Record<string, unknown>,
        outShapes: node.outputTensors.map((o) => o.shape),
        unsupported: (why: string): never => {
          throw new UserError(`cannot export layer '${prefix}${layer.name}' (${cls}) to ONNX: ${why}`);
        },
      };
      outs = translateLayer(ctx, inputs);
    }
    node.outputTensors.forEach((o, i) => scope.set(o.id, outs[i]));
    const v = scope.get(t.id);
    if (!v) throw new Error(`internal: layer ${layer.name} did not produce tensor ${t.id}`);
    return v;
  }
}

function dimsOf(shape: Shape, what: string): (number | string)[] {
  return shape.map((d, i) => (d === null ? (i === 0 ? 'N' : `${what}_d${i}`) : d));
}

export interface OnnxExportInfo {
  inputs: { name: string; shape: Shape }[];
  outputs: { name: string; shape: Shape }[];
  nodes: number;
  bytes: number;
}

/** The ONNX encoding of `model` (NHWC inputs and outputs, batch dimension 'N'). */
export function modelToOnnx(model: InstanceType<typeof tfl.LayersModel>, opts: OnnxExportOptions = {}): { bytes: Uint8Array; info: OnnxExportInfo } {
  const ex = new Exporter();
  const b = ex.b;
  const container = model as unknown as Container;
  const scope = new Map<number, Val>();
  const graphInputs: OnnxValueInfo[] = [];
  const inputsInfo: OnnxExportInfo['inputs'] = [];
  for (const t of container.inputs) {
    const name = t.sourceLayer.name;
    b.reserve(name);
    scope.set(t.id, { name, shape: t.shape, nchw: false });
    graphInputs.push({ name, shape: dimsOf(t.shape, name) });
    inputsInfo.push({ name, shape: t.shape });
  }
  const outNames = container.outputs.map((t) => t.sourceLayer.name);
  outNames.forEach((n) => b.reserve(n));
  const graphOutputs: OnnxValueInfo[] = [];
  const outputsInfo: OnnxExportInfo['outputs'] = [];
  container.outputs.forEach((t, i) => {
    const v = ex.emit(t, scope, '');
    // outputs stay in tfjs's layout (NHWC) so both engines return the same arrays
    b.op('Identity', [b.keras(v)], outNames[i], {}, outNames[i]);
    graphOutputs.push({ name: outNames[i], shape: dimsOf(t.shape, outNames[i]) });
    outputsInfo.push({ name: outNames[i], shape: t.shape });
  });
  const onnx: OnnxModel = {
    irVersion: ONNX_IR_VERSION,
    opsetVersion: ONNX_OPSET,
    producerName: 'occmap',
    producerVersion: `tfjs-layers ${tfl.version_layers}`,
    docString: opts.docString,
    graph: {
      name: model.name,
      nodes: b.nodes,
      initializers: b.initializers,
      inputs: graphInputs,
      outputs: graphOutputs,
    },
    metadata: { ...opts.metadata, [META_LAYOUT]: 'NHWC' },
  };
  const bytes = encodeOnnxModel(onnx);
  return { bytes, info: { inputs: inputsInfo, outputs: outputsInfo, nodes: b.nodes.length, bytes: bytes.length } };
}

/** Export `model` to `outFile` (written whole or not at all). Unsupported layers: a UserError naming the file. */
export async function exportModelToOnnx(model: InstanceType<typeof tfl.LayersModel>, outFile: string, opts: OnnxExportOptions = {}): Promise<OnnxExportInfo> {
  let result: ReturnType<typeof modelToOnnx>;
  try {
    result = modelToOnnx(model, opts);
  } catch (err) {
    if (err instanceof UserError) throw fileError(outFile, err.message);
    throw err;
  }
  await writeFileAtomic(outFile, result.bytes);
  return result.info;
}
