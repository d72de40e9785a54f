/**
 * One converter per Keras layer class (tf2onnx / onnx2torch style): a converter gets the
 * layer's context and its input values and returns one value per output tensor.
 * `LAYER_CONVERTERS` is the table the exporter looks layer classes up in.
 */
import type { AttributeValue } from '../onnx-proto.js';
import { FLAT_STD } from '../map-head.js';
import { AXIS_IN_NCHW, float, int, ints, permute, str, type Shape, type Val } from './graph.js';
import { activation, activationName } from './activations.js';
import {
  channelsLast,
  conv,
  convPads,
  like,
  needWeight,
  oneAxis,
  onnxAxis,
  padPairs,
  pair,
  rank4,
  weight,
  type LayerCtx,
} from './context.js';

export type LayerConverter = (ctx: LayerCtx, inputs: Val[]) => Val[];

/** The layer's own activation (from its config) applied to `v`. */
const act = (ctx: LayerCtx, v: Val): Val => activation(ctx.b, v, activationName(ctx.cfg), ctx.layer.name, ctx.unsupported);

/** Spatial layers: rank-4 input in channelsLast. */
function spatial(ctx: LayerCtx, x: Val): void {
  rank4(ctx, x);
  channelsLast(ctx);
}

const convertConv2D: LayerConverter = (ctx, [x]) => {
  const { b, cfg } = ctx;
  const base = ctx.layer.name;
  spatial(ctx, x);
  if (cfg.groups !== undefined && cfg.groups !== 1) ctx.unsupported('groups != 1');
  const k = needWeight(ctx, 'kernel'); // [kh, kw, in, out]
  const [kh, kw, ci, co] = k.shape;
  const w = b.floats(`${base}/kernel`, [co, ci, kh, kw], permute(k.data, k.shape, [3, 2, 0, 1]));
  const bias = cfg.useBias === false ? undefined : weight(ctx, 'bias');
  const bn = bias ? b.floats(`${base}/bias`, [co], bias.data) : undefined;
  const strides = pair(cfg.strides ?? 1, 'strides', ctx);
  const dil = pair(cfg.dilationRate ?? 1, 'dilationRate', ctx);
  if ((dil[0] > 1 || dil[1] > 1) && (strides[0] > 1 || strides[1] > 1)) ctx.unsupported('dilation with stride > 1');
  if (x.concatParts && !x.concatParts.every((p) => (p.shape[3] ?? 0) % 16 === 0)) {
    return [act(ctx, convOverParts(ctx, x.concatParts, k, bn, strides, dil))];
  }
  if (co === 1 && ci > 1) return [act(ctx, singleOutputConv(ctx, x, k, bn, strides, dil))];
  return [act(ctx, conv(ctx, x, w, bn, [kh, kw], 1, strides, dil, ctx.outShapes[0]))];
};

/**
 * A Conv with one output channel (the explainer's map) as a depthwise Conv and a sum over the
 * channels: the same products. ONNX Runtime's blocked (NCHWc) kernels pad output channels to
 * a block of 16, so a one-channel Conv did 16x its arithmetic (5.5% of the fused estimate's
 * time for 0.24% of its FLOPs); the depthwise form has no padding.
 */
function singleOutputConv(ctx: LayerCtx, x: Val, k: { data: Float32Array; shape: number[] }, bias: string | undefined, strides: [number, number], dil: [number, number]): Val {
  const [kh, kw, ci] = k.shape;
  const base = ctx.layer.name;
  const w = ctx.b.floats(`${base}/depthwise`, [ci, 1, kh, kw], permute(k.data, k.shape, [2, 3, 0, 1]));
  const out = ctx.outShapes[0];
  const y = conv(ctx, x, w, undefined, [kh, kw], ci, strides, dil, [out[0], out[1], out[2], ci]);
  let name = ctx.b.op('ReduceSum', [y.name, ctx.b.int64s(`${base}/channel_axis`, [1])], base, { keepdims: int(1) });
  if (bias) name = ctx.b.op('Add', [name, bias], base);
  return { name, shape: out, nchw: true };
}

/**
 * A Conv over concatenated channels as the sum of one Conv per part (the same arithmetic in
 * another order). Worth it when a part is thin: the U-Net's one-channel condition plane beside
 * 64 feature channels makes 65, which ONNX Runtime's blocked (NCHWc) kernels cannot take, so
 * the whole Conv ran on the slow path (6.6% of the fused estimate's time for 2% of its FLOPs).
 * Parts whose channels fill 16-wide blocks keep their Concat.
 */
function convOverParts(ctx: LayerCtx, parts: Val[], k: { data: Float32Array; shape: number[] }, bias: string | undefined, strides: [number, number], dil: [number, number]): Val {
  const [kh, kw, ci, co] = k.shape;
  const full = permute(k.data, k.shape, [3, 2, 0, 1]); // [co, ci, kh, kw]
  let from = 0;
  let sum: Val | undefined;
  parts.forEach((p, i) => {
    const c = p.shape[3] as number;
    const w = new Float32Array(co * c * kh * kw);
    for (let o = 0; o < co; o++) w.set(full.subarray((o * ci + from) * kh * kw, (o * ci + from + c) * kh * kw), o * c * kh * kw);
    const y = conv(ctx, p, ctx.b.floats(`${ctx.layer.name}/kernel_part${i}`, [co, c, kh, kw], w), i === 0 ? bias : undefined, [kh, kw], 1, strides, dil, ctx.outShapes[0]);
    sum = sum ? { name: ctx.b.op('Add', [sum.name, y.name], ctx.layer.name), shape: y.shape, nchw: true } : y;
    from += c;
  });
  if (from !== ci) ctx.unsupported(`the kernel reads ${ci} channels, the concatenated parts hold ${from}`);
  return sum!;
}

/** DepthwiseConv2D, and the depthwise half of SeparableConv2D (which adds a 1x1 pointwise Conv). */
const convertDepthwise: LayerConverter = (ctx, [x]) => {
  const { b, cfg, cls } = ctx;
  const base = ctx.layer.name;
  const out = ctx.outShapes[0];
  spatial(ctx, x);
  const dk = needWeight(ctx, 'depthwise_kernel'); // [kh, kw, in, mult]
  const [kh, kw, ci, mult] = dk.shape;
  // ONNX grouped conv: output channel c*mult+m reads input channel c, as TF orders them
  const w = b.floats(`${base}/depthwise_kernel`, [ci * mult, 1, kh, kw], permute(dk.data, dk.shape, [2, 3, 0, 1]));
  const strides = pair(cfg.strides ?? 1, 'strides', ctx);
  const dil = pair(cfg.dilationRate ?? 1, 'dilationRate', ctx);
  const bias = cfg.useBias === false ? undefined : weight(ctx, 'bias');
  if (cls === 'DepthwiseConv2D') {
    const bn = bias ? b.floats(`${base}/bias`, [ci * mult], bias.data) : undefined;
    return [act(ctx, conv(ctx, x, w, bn, [kh, kw], ci, strides, dil, out))];
  }
  const mid: Shape = [out[0], out[1], out[2], ci * mult];
  const d = conv(ctx, x, w, undefined, [kh, kw], ci, strides, dil, mid);
  const pk = needWeight(ctx, 'pointwise_kernel'); // [1, 1, in*mult, out]
  const co = pk.shape[3];
  const pw = b.floats(`${base}/pointwise_kernel`, [co, ci * mult, 1, 1], permute(pk.data, pk.shape, [3, 2, 0, 1]));
  const inputs = [d.name, pw];
  if (bias) inputs.push(b.floats(`${base}/bias`, [co], bias.data));
  const name = b.op('Conv', inputs, `${base}_pointwise`, { kernel_shape: ints([1, 1]) });
  return [act(ctx, { name, shape: out, nchw: true })];
};

const convertDense: LayerConverter = (ctx, [x]) => {
  const { b, cfg } = ctx;
  const base = ctx.layer.name;
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
  return [act(ctx, { name, shape: ctx.outShapes[0], nchw: false })];
};

const convertPool: LayerConverter = (ctx, [x]) => {
  const { b, cfg } = ctx;
  spatial(ctx, x);
  const pool = pair(cfg.poolSize ?? 2, 'poolSize', ctx);
  const strides = pair(cfg.strides ?? pool, 'strides', ctx);
  const pads = convPads(ctx, x.shape, pool, strides, [1, 1]);
  // AveragePool's count_include_pad = 0 (default) = TF's 'same': padded cells are not counted
  const name = b.op(ctx.cls === 'MaxPooling2D' ? 'MaxPool' : 'AveragePool', [b.nchw(x)], ctx.layer.name, {
    kernel_shape: ints(pool),
    strides: ints(strides),
    pads: ints(pads),
  });
  return [{ name, shape: ctx.outShapes[0], nchw: true }];
};

const convertGlobalPool: LayerConverter = (ctx, [x]) => {
  const { b } = ctx;
  const base = ctx.layer.name;
  spatial(ctx, x);
  if (ctx.cfg.keepDims === true) ctx.unsupported('keepDims');
  const g = b.op(ctx.cls === 'GlobalMaxPooling2D' ? 'GlobalMaxPool' : 'GlobalAveragePool', [b.nchw(x)], base);
  return [{ name: b.op('Flatten', [g], base, { axis: int(1) }), shape: ctx.outShapes[0], nchw: false }];
};

const convertFlatten: LayerConverter = (ctx, [x]) => {
  channelsLast(ctx);
  if (x.shape.length === 2) return [x];
  // Keras flattens in NHWC order; the following Dense weights were trained on that order.
  return [{ name: ctx.b.op('Flatten', [ctx.b.keras(x)], ctx.layer.name, { axis: int(1) }), shape: ctx.outShapes[0], nchw: false }];
};

const convertReshape: LayerConverter = (ctx, [x]) => {
  const { b } = ctx;
  const base = ctx.layer.name;
  const target = ctx.cfg.targetShape as number[];
  // 0 copies the batch dimension; a -1 in the target is resolved by ONNX as by Keras.
  const shapeName = b.int64s(`${base}/shape`, [0, ...target]);
  return [{ name: b.op('Reshape', [b.keras(x), shapeName], base), shape: ctx.outShapes[0], nchw: false }];
};

const convertPermute: LayerConverter = (ctx, [x]) => {
  const dims = ctx.cfg.dims as number[];
  const name = ctx.b.op('Transpose', [ctx.b.keras(x)], ctx.layer.name, { perm: ints([0, ...dims]) });
  return [{ name, shape: ctx.outShapes[0], nchw: false }];
};

const convertUpSampling: LayerConverter = (ctx, [x]) => {
  const { b, cfg } = ctx;
  const base = ctx.layer.name;
  spatial(ctx, x);
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
  return [{ name: b.op('Resize', [b.nchw(x), '', scales], base, attrs), shape: ctx.outShapes[0], nchw: true }];
};

const convertZeroPadding: LayerConverter = (ctx, [x]) => {
  const { b } = ctx;
  const base = ctx.layer.name;
  spatial(ctx, x);
  const [[t, bt], [l, r]] = padPairs(ctx.cfg.padding ?? 1, ctx);
  const pads = b.int64s(`${base}/pads`, [0, 0, t, l, 0, 0, bt, r]);
  return [{ name: b.op('Pad', [b.nchw(x), pads], base, { mode: str('constant') }), shape: ctx.outShapes[0], nchw: true }];
};

const convertCropping: LayerConverter = (ctx, [x]) => {
  const { b } = ctx;
  const base = ctx.layer.name;
  spatial(ctx, x);
  const [[t, bt], [l, r]] = padPairs(ctx.cfg.cropping ?? 0, ctx);
  const [h, w] = [x.shape[1], x.shape[2]];
  const end = (size: number | null, crop: number): number => (size !== null ? size - crop : crop > 0 ? -crop : 2 ** 53 - 1);
  const starts = b.int64s(`${base}/starts`, [t, l]);
  const ends = b.int64s(`${base}/ends`, [end(h, bt), end(w, r)]);
  const axes = b.int64s(`${base}/axes`, [2, 3]);
  return [{ name: b.op('Slice', [b.nchw(x), starts, ends, axes], base), shape: ctx.outShapes[0], nchw: true }];
};

/** Inference-form batch norm folded into y = x * scale + shift (float64 arithmetic, then rounded). */
const convertBatchNorm: LayerConverter = (ctx, [x]) => {
  const { b, cfg } = ctx;
  const base = ctx.layer.name;
  const r = x.shape.length;
  const axis = oneAxis(ctx, cfg.axis as number | number[]);
  const a = axis < 0 ? axis + r : axis;
  const mean = needWeight(ctx, 'moving_mean').data;
  const variance = needWeight(ctx, 'moving_variance').data;
  const gamma = cfg.scale === false ? undefined : weight(ctx, 'gamma')?.data;
  const beta = cfg.center === false ? undefined : weight(ctx, 'beta')?.data;
  const eps = (cfg.epsilon as number | undefined) ?? 1e-3;
  const c = mean.length;
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
  return [{ name: z, shape: ctx.outShapes[0], nchw: useNchw }];
};

const convertConcatenate: LayerConverter = (ctx, inputs) => {
  const { b } = ctx;
  const all4 = inputs.every((v) => v.shape.length === 4);
  const axis = (ctx.cfg.axis as number | undefined) ?? -1;
  const r = inputs[0].shape.length;
  const a = axis < 0 ? axis + r : axis;
  const names = inputs.map((v) => (all4 ? b.nchw(v) : b.keras(v)));
  const name = b.op('Concat', names, ctx.layer.name, { axis: int(all4 ? AXIS_IN_NCHW[a] : a) });
  return [{ name, shape: ctx.outShapes[0], nchw: all4, ...(all4 && a === 3 ? { concatParts: inputs } : {}) }];
};

const MERGE_OPS: Record<string, string> = { Add: 'Sum', Subtract: 'Sub', Multiply: 'Mul', Average: 'Mean', Maximum: 'Max', Minimum: 'Min' };

/** Element-wise merges; ONNX Mul takes two inputs, so Multiply chains them. */
const convertMerge: LayerConverter = (ctx, inputs) => {
  const { b } = ctx;
  const base = ctx.layer.name;
  const all4 = inputs.every((v) => v.shape.length === 4);
  const names = inputs.map((v) => (all4 ? b.nchw(v) : b.keras(v)));
  const op = MERGE_OPS[ctx.cls];
  let name: string;
  if (op === 'Mul') {
    name = names[0];
    for (let i = 1; i < names.length; i++) name = b.op('Mul', [name, names[i]], base);
  } else {
    name = b.op(op, names, base);
  }
  return [{ name, shape: ctx.outShapes[0], nchw: all4 }];
};

const convertReLU: LayerConverter = (ctx, [x]) => {
  const max = ctx.cfg.maxValue as number | null | undefined;
  const base = ctx.layer.name;
  if (max === null || max === undefined) return [like(x, ctx.b.op('Relu', [x.name], base))];
  return [like(x, ctx.b.op('Clip', [x.name, ctx.b.scalar(0), ctx.b.scalar(max)], base))];
};

/** A unary op with a float `alpha` attribute read from config key `key` (default `dflt`). */
const alphaOp =
  (op: string, key: string, dflt: number): LayerConverter =>
  (ctx, [x]) => [like(x, ctx.b.op(op, [x.name], ctx.layer.name, { alpha: float((ctx.cfg[key] as number | undefined) ?? dflt) }))];

const convertSoftmax: LayerConverter = (ctx, [x]) => {
  const axis = oneAxis(ctx, (ctx.cfg.axis as number | number[] | undefined) ?? -1);
  return [like(x, ctx.b.op('Softmax', [x.name], ctx.layer.name, { axis: int(onnxAxis(x, axis)) }))];
};

const convertPReLU: LayerConverter = (ctx, [x]) => {
  const { b } = ctx;
  const base = ctx.layer.name;
  const alpha = needWeight(ctx, 'alpha'); // input shape without batch, shared axes of size 1
  if (x.nchw) {
    const slope = b.floats(`${base}/alpha`, [alpha.shape[2], alpha.shape[0], alpha.shape[1]], permute(alpha.data, alpha.shape, [2, 0, 1]));
    return [like(x, b.op('PRelu', [x.name, slope], base))];
  }
  return [like(x, b.op('PRelu', [x.name, b.floats(`${base}/alpha`, alpha.shape, alpha.data)], base))];
};

/**
 * models/map-head.ts SeedMapFromLogRest: crop the padding, exp(t - max), the map's z-score,
 * clip((1 - z) / 2, 0, 1), zero padding back. Opset 13: the reductions take axes as attributes.
 */
const convertLogRestHead: LayerConverter = (ctx, [x]) => {
  const { b } = ctx;
  const base = ctx.layer.name;
  spatial(ctx, x);
  const [[t, bt], [l, r]] = padPairs(ctx.cfg.crop, ctx);
  const [h, w] = [x.shape[1], x.shape[2]];
  if (h === null || w === null) return ctx.unsupported('needs a known height and width');
  const hw = { axes: ints([2, 3]), keepdims: int(1) };
  const inner = b.op('Slice', [b.nchw(x), b.int64s(`${base}/starts`, [t, l]), b.int64s(`${base}/ends`, [h - bt, w - r]), b.int64s(`${base}/axes`, [2, 3])], base);
  const e = b.op('Exp', [b.op('Sub', [inner, b.op('ReduceMax', [inner], base, hw)], base)], base);
  const d = b.op('Sub', [e, b.op('ReduceMean', [e], base, hw)], base);
  const variance = b.op('ReduceMean', [b.op('Mul', [d, d], base)], base, hw);
  const std = b.op('Max', [b.op('Sqrt', [variance], base), b.scalar(FLAT_STD)], base);
  const half = b.op('Mul', [b.op('Sub', [b.scalar(1), b.op('Div', [d, std], base)], base), b.scalar(0.5)], base);
  const seed = b.op('Clip', [half, b.scalar(0), b.scalar(1)], base);
  const pads = b.int64s(`${base}/pads`, [0, 0, t, l, 0, 0, bt, r]);
  return [{ name: b.op('Pad', [seed, pads], base, { mode: str('constant') }), shape: ctx.outShapes[0], nchw: true }];
};

/** Layers that are the identity at inference time. */
const identity: LayerConverter = (_ctx, [x]) => [x];

export const LAYER_CONVERTERS: Readonly<Record<string, LayerConverter>> = {
  Conv2D: convertConv2D,
  DepthwiseConv2D: convertDepthwise,
  SeparableConv2D: convertDepthwise,
  Dense: convertDense,
  MaxPooling2D: convertPool,
  AveragePooling2D: convertPool,
  GlobalAveragePooling2D: convertGlobalPool,
  GlobalMaxPooling2D: convertGlobalPool,
  Flatten: convertFlatten,
  Reshape: convertReshape,
  Permute: convertPermute,
  UpSampling2D: convertUpSampling,
  ZeroPadding2D: convertZeroPadding,
  Cropping2D: convertCropping,
  BatchNormalization: convertBatchNorm,
  Concatenate: convertConcatenate,
  Add: convertMerge,
  Subtract: convertMerge,
  Multiply: convertMerge,
  Average: convertMerge,
  Maximum: convertMerge,
  Minimum: convertMerge,
  Activation: (ctx, [x]) => [act(ctx, x)],
  ReLU: convertReLU,
  LeakyReLU: alphaOp('LeakyRelu', 'alpha', 0.3),
  ELU: alphaOp('Elu', 'alpha', 1),
  ThresholdedReLU: alphaOp('ThresholdedRelu', 'theta', 1),
  Softmax: convertSoftmax,
  PReLU: convertPReLU,
  Dropout: identity,
  SpatialDropout1D: identity,
  SpatialDropout2D: identity,
  GaussianNoise: identity,
  GaussianDropout: identity,
  AlphaDropout: identity,
  ActivityRegularization: identity,
  SeedMapFromLogRest: convertLogRestHead,
};

/** Translate one call of one layer through the table. */
export function translateLayer(ctx: LayerCtx, inputs: Val[]): Val[] {
  const convert = Object.hasOwn(LAYER_CONVERTERS, ctx.cls) ? LAYER_CONVERTERS[ctx.cls] : undefined;
  if (!convert) ctx.unsupported('unsupported layer type');
  return convert(ctx, inputs);
}
