/**
 * A sequential conv net as plain data, the form the incremental engine works on: spatial
 * stages (a convolution or pooling plus the pointwise layers after it), then a tail (Flatten,
 * Dense, pointwise) that always runs in full. No tfjs here: the tfjs reader is net-from-tfjs.ts,
 * and tests build nets directly.
 */
import { axisMap, type StageAxes } from './windows.js';

/** A layer that maps each spatial cell on its own (so it changes exactly the cells that changed). */
export type Pointwise =
  /** A Keras activation by its serialised name (one the ONNX exporter's table knows). */
  | { op: 'act'; fn: string }
  | { op: 'leakyRelu'; alpha: number }
  | { op: 'elu'; alpha: number }
  | { op: 'clip'; min: number; max: number }
  /** Inference-time BatchNormalization over channels: x * scale + shift. */
  | { op: 'affine'; scale: Float32Array; shift: Float32Array };

/** [top, bottom, left, right] */
export type Pads = [number, number, number, number];

export interface Stage {
  name: string;
  kind: 'conv' | 'maxpool' | 'avgpool';
  kernel: [number, number];
  strides: [number, number];
  dilation: [number, number];
  /** The layer's own padding ('same' as TF computes it, or zeros). */
  pads: Pads;
  /** ZeroPadding2D layers between the previous stage and this one, summed. */
  zeroPads: Pads;
  cin: number;
  cout: number;
  /** conv: Keras kernel layout [kh, kw, cin, cout], and the bias. */
  kernelHWIO?: Float32Array;
  bias?: Float32Array;
  post: Pointwise[];
}

export type TailLayer = { op: 'flatten' } | { op: 'dense'; name: string; units: number; inputs: number; kernel: Float32Array; bias?: Float32Array } | Pointwise;

export interface Net {
  /** Model input [H, W, C]. */
  input: [number, number, number];
  stages: Stage[];
  /** ZeroPadding2D after the last stage. */
  tailZeroPads: Pads;
  tail: TailLayer[];
  numClasses: number;
}

/** Value stored outside the image in a stage's padded input: what its own padding means. */
export function padValue(s: Stage): number {
  return s.kind === 'maxpool' ? -Infinity : 0;
}

export interface StageShape extends StageAxes {
  /** Padded input [h, w, c] and output [h, w, c]. */
  inShape: [number, number, number];
  outShape: [number, number, number];
}

/** Per stage: its axes and padded input / output shapes; plus the tail's padded input. */
export function netShapes(net: Net): { stages: StageShape[]; tailInput: { h: number; w: number; c: number; offY: number; offX: number } } {
  let [h, w, c] = net.input;
  const stages: StageShape[] = [];
  for (const s of net.stages) {
    const [zt, zb, zl, zr] = s.zeroPads;
    const [pt, pb, pl, pr] = s.pads;
    const y = axisMap(h, zt + pt, zb + pb, s.kernel[0], s.strides[0], s.dilation[0]);
    const x = axisMap(w, zl + pl, zr + pr, s.kernel[1], s.strides[1], s.dilation[1]);
    if (s.cin !== c) throw new RangeError(`stage ${s.name} reads ${s.cin} channels, its input has ${c}`);
    stages.push({ y, x, inShape: [y.size, x.size, c], outShape: [y.out, x.out, s.cout] });
    [h, w, c] = [y.out, x.out, s.cout];
  }
  const [zt, zb, zl, zr] = net.tailZeroPads;
  return { stages, tailInput: { h: h + zt + zb, w: w + zl + zr, c, offY: zt, offX: zl } };
}

/** Padded input [h, w, c] of stage i, or of the tail for i = number of stages. */
export function paddedInput(shapes: ReturnType<typeof netShapes>, i: number): [number, number, number] {
  const t = shapes.tailInput;
  return i < shapes.stages.length ? shapes.stages[i].inShape : [t.h, t.w, t.c];
}

/** FLOPs (2 per multiply-add) of one output cell (all its channels) of a stage. */
export function flopsPerCell(s: Stage): number {
  return s.kind === 'conv' ? 2 * s.kernel[0] * s.kernel[1] * s.cin * s.cout : 0;
}

/** FLOPs of the dense layers of the tail, per item. */
export function tailFlops(net: Net): number {
  let f = 0;
  for (const t of net.tail) if (t.op === 'dense') f += 2 * t.inputs * t.units;
  return f;
}

/** FLOPs of a whole forward pass (as models/flops.ts counts them: convolutions and dense layers). */
export function netFlops(net: Net): number {
  const shapes = netShapes(net).stages;
  return net.stages.reduce((a, s, i) => a + flopsPerCell(s) * shapes[i].outShape[0] * shapes[i].outShape[1], 0) + tailFlops(net);
}
