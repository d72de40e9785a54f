/**
 * What a per-layer converter sees (the layer, its config, its output shapes, the builder) and
 * the small readers every converter shares: weights by name, int-or-pair configs, 'same'
 * padding, layout-preserving values, and the one Conv node.
 */
import { samePadding, int, ints, type Builder, type Layer, type Shape, type Val, AXIS_IN_NCHW } from './graph.js';

export interface LayerCtx {
  b: Builder;
  layer: Layer;
  cls: string;
  cfg: Record<string, unknown>;
  /** Keras output shapes of this call. */
  outShapes: Shape[];
  unsupported(why: string): never;
}

export function weight(ctx: LayerCtx, suffix: string): { data: Float32Array; shape: number[] } | undefined {
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

export function needWeight(ctx: LayerCtx, suffix: string): { data: Float32Array; shape: number[] } {
  const w = weight(ctx, suffix);
  if (!w) ctx.unsupported(`weight '${suffix}' not found`);
  return w;
}

export function pair(v: unknown, what: string, ctx: LayerCtx): [number, number] {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number')) return [v[0], v[1]];
  ctx.unsupported(`cannot read ${what} ${JSON.stringify(v)}`);
}

/** [[top, bottom], [left, right]] from ZeroPadding2D / Cropping2D configs (int, [h, w] or nested). */
export function padPairs(v: unknown, ctx: LayerCtx): [[number, number], [number, number]] {
  if (typeof v === 'number') return [[v, v], [v, v]];
  if (Array.isArray(v) && v.length === 2) {
    if (v.every((x) => typeof x === 'number')) return [[v[0], v[0]], [v[1], v[1]]];
    return [pair(v[0], 'padding', ctx), pair(v[1], 'padding', ctx)];
  }
  ctx.unsupported(`cannot read padding ${JSON.stringify(v)}`);
}

export function channelsLast(ctx: LayerCtx): void {
  const df = ctx.cfg.dataFormat;
  if (df !== undefined && df !== null && df !== 'channelsLast') ctx.unsupported(`dataFormat ${String(df)} (only channelsLast)`);
}

/** Same-rank value with the layout of `like`. */
export function like(v: Val, name: string, shape: Shape = v.shape): Val {
  return { name, shape, nchw: v.nchw && shape.length === 4 };
}

/** Axis of `v`'s ONNX tensor that holds Keras axis `axis` (negative counts from the end). */
export function onnxAxis(v: Val, axis: number): number {
  const r = v.shape.length;
  const a = axis < 0 ? axis + r : axis;
  return v.nchw ? AXIS_IN_NCHW[a] : a;
}


/** Explicit [top, left, bottom, right] pads for a conv/pool on a known NHWC input shape. */
export function convPads(ctx: LayerCtx, inShape: Shape, kernel: [number, number], strides: [number, number], dil: [number, number]): number[] {
  const padding = ctx.cfg.padding ?? 'valid';
  if (padding === 'valid') return [0, 0, 0, 0];
  if (padding !== 'same') ctx.unsupported(`padding '${String(padding)}'`);
  const [h, w] = [inShape[1], inShape[2]];
  if (h === null || w === null) ctx.unsupported("'same' padding needs a known input height and width");
  const [t, bt] = samePadding(h, kernel[0], strides[0], dil[0]);
  const [l, r] = samePadding(w, kernel[1], strides[1], dil[1]);
  return [t, l, bt, r];
}

export function conv(
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


/** Refuse anything but a rank-4 (N,H,W,C) input. */
export function rank4(ctx: LayerCtx, v: Val): void {
  if (v.shape.length !== 4) ctx.unsupported(`expects a rank-4 (N,H,W,C) input, got rank ${v.shape.length}`);
}

/** A single axis from a config that may hold [axis]. */
export function oneAxis(ctx: LayerCtx, ax: number | number[]): number {
  return Array.isArray(ax) ? (ax.length === 1 ? ax[0] : ctx.unsupported('several axes')) : ax;
}
