/**
 * ONNX graphs of the incremental engine, built from a Net (net.ts): the unoccluded pass that
 * also outputs every stage's padded input, one graph per stage that recomputes windows, and
 * the tail that finishes in full. Every graph takes and gives NHWC tensors (the engine's
 * gathering copies whole rows of w x c floats); convolutions and poolings run in NCHW inside,
 * and ONNX Runtime folds the Transposes into its NCHWc reorders. Where the runtime has NCHWc
 * kernels, windows and tails use net-onnx-nchwc.ts's graphs instead (no reorders); the
 * unoccluded pass is always this one.
 *
 * Not the exporter (models/to-onnx.ts): that one translates any tfjs graph with Keras padding
 * semantics; here stages read blocks that are already padded (pads 0), and the layer set is
 * the engine's small one.
 */
import { encodeOnnxModel, type AttributeValue, type OnnxModel, type OnnxValueInfo } from '../models/onnx-proto.js';
import { ONNX_IR_VERSION, ONNX_OPSET, permute } from '../models/to-onnx.js';
import { Builder, float, int, ints, str, type Val } from '../models/onnx-export/graph.js';
import { activation } from '../models/onnx-export/activations.js';
import { netShapes, paddedInput, padValue, type Net, type Pads, type Pointwise, type Stage, type TailLayer } from './net.js';

/** Rank-4 values carry [N, H, W, C] (shape sizes are not needed, only the rank); flat ones [N, K]. */
export const R4 = [null, null, null, null];
const R2 = [null, null];

function unsupported(why: string): never {
  throw new Error(`internal: the incremental engine built a graph with ${why}`);
}

/** The value in NHWC (or flat) order, as a Val. */
function nhwc(b: Builder, v: Val): Val {
  return v.nchw ? { name: b.keras(v), shape: v.shape, nchw: false } : v;
}

function nchw(b: Builder, v: Val): Val {
  return v.nchw ? v : { name: b.nchw(v), shape: v.shape, nchw: true };
}

/** Constant padding of the two spatial axes. */
export function pad(b: Builder, v: Val, p: Pads, value: number): Val {
  if (p.every((x) => x === 0)) return v;
  const [t, bt, l, r] = p;
  const pads = v.nchw ? [0, 0, t, l, 0, 0, bt, r] : [0, t, l, 0, 0, bt, r, 0];
  return { name: b.op('Pad', [v.name, b.int64s('pads', pads), b.scalar(value)], 'pad', { mode: str('constant') }), shape: v.shape, nchw: v.nchw };
}

export function model(b: Builder, name: string, inputs: OnnxValueInfo[], outputs: OnnxValueInfo[], opsets?: OnnxModel['opsets']): Uint8Array {
  const m: OnnxModel = {
    irVersion: ONNX_IR_VERSION,
    opsetVersion: ONNX_OPSET,
    ...(opsets ? { opsets } : {}),
    producerName: 'occmap-incremental',
    producerVersion: '1',
    graph: { name, nodes: b.nodes, initializers: b.initializers, inputs, outputs },
  };
  return encodeOnnxModel(m);
}

/** A pointwise layer, in whichever layout `v` is; activations by the exporter's table. */
export function pointwise(b: Builder, v: Val, p: Pointwise): Val {
  const one = (type: string, attrs: Record<string, AttributeValue> = {}): Val => ({ name: b.op(type, [v.name], type.toLowerCase(), attrs), shape: v.shape, nchw: v.nchw });
  switch (p.op) {
    case 'act':
      return activation(b, v, p.fn, p.fn, unsupported);
    case 'leakyRelu':
      return one('LeakyRelu', { alpha: float(p.alpha) });
    case 'elu':
      return one('Elu', { alpha: float(p.alpha) });
    case 'clip':
      return { name: b.op('Clip', [v.name, b.scalar(p.min), b.scalar(p.max)], 'clip'), shape: v.shape, nchw: v.nchw };
    case 'affine': {
      // channels on axis 1 (NCHW) or last (NHWC, flat)
      const c = p.scale.length;
      const dims = v.nchw ? [c, 1, 1] : [c];
      const y = b.op('Mul', [v.name, b.floats('scale', dims, p.scale)], 'bn');
      return { name: b.op('Add', [y, b.floats('shift', dims, p.shift)], 'bn'), shape: v.shape, nchw: v.nchw };
    }
  }
}

/** The stage's layer on `v`, with `pads` applied by the operator itself (0 for pre-padded blocks). */
function stageOp(b: Builder, s: Stage, v: Val, pads: Pads): Val {
  const x = nchw(b, v);
  const [t, bt, l, r] = pads;
  const attrs: Record<string, AttributeValue> = { kernel_shape: ints(s.kernel), strides: ints(s.strides), pads: ints([t, l, bt, r]) };
  let y: string;
  if (s.kind === 'conv') {
    const [kh, kw, ci, co] = [s.kernel[0], s.kernel[1], s.cin, s.cout];
    const inputs = [x.name, b.floats(`${s.name}/kernel`, [co, ci, kh, kw], permute(s.kernelHWIO!, [kh, kw, ci, co], [3, 2, 0, 1]))];
    if (s.bias) inputs.push(b.floats(`${s.name}/bias`, [co], s.bias));
    y = b.op('Conv', inputs, s.name, { ...attrs, dilations: ints(s.dilation) });
  } else {
    // AveragePool's count_include_pad = 0 is TF's 'same': padded cells are not counted.
    y = b.op(s.kind === 'maxpool' ? 'MaxPool' : 'AveragePool', [x.name], s.name, attrs);
  }
  let out: Val = { name: y, shape: R4, nchw: true };
  for (const p of s.post) out = pointwise(b, out, p);
  return out;
}

export function tailOps(b: Builder, v: Val, tail: TailLayer[]): Val {
  let x = v;
  for (const t of tail) {
    if (t.op === 'flatten') {
      // Keras flattens in NHWC order: the Dense weights after it were trained on that order.
      x = { name: b.op('Flatten', [nhwc(b, x).name], 'flatten', { axis: int(1) }), shape: R2, nchw: false };
    } else if (t.op === 'dense') {
      if (x.shape.length !== 2) throw new Error(`internal: dense ${t.name} on a rank-4 value`);
      const w = b.floats(`${t.name}/kernel`, [t.inputs, t.units], t.kernel);
      const inputs = t.bias ? [x.name, w, b.floats(`${t.name}/bias`, [t.units], t.bias)] : [x.name, w];
      x = { name: b.op('Gemm', inputs, t.name), shape: R2, nchw: false };
    } else x = pointwise(b, x, t);
  }
  return x;
}

const nhwcInfo = (name: string, h: number, w: number, c: number): OnnxValueInfo => ({ name, shape: ['N', h, w, c] });

/** Run the stages from `from` on (the first reads a pre-padded input), then the tail, to the probabilities. */
function finish(b: Builder, net: Net, x0: Val, from: number): string {
  let x = x0;
  for (let i = from; i < net.stages.length; i++) {
    const s = net.stages[i];
    if (i === from) x = stageOp(b, s, x, [0, 0, 0, 0]);
    else x = stageOp(b, s, pad(b, x, s.zeroPads, 0), s.pads);
  }
  // A tail input given as is (from = number of stages) is already padded.
  if (from < net.stages.length) x = pad(b, x, net.tailZeroPads, 0);
  return tailOps(b, x, net.tail).name;
}

/**
 * The unoccluded pass: input `x` (N,H,W,C); outputs `in0`..`in{S-1}` (each stage's padded input,
 * NHWC), `tail` (the tail's padded input) and `probs` (N, classes).
 */
export function baseGraph(net: Net): Uint8Array {
  const b = new Builder();
  const sh = netShapes(net);
  const [h, w, c] = net.input;
  const outNames = ['x', ...net.stages.map((_, i) => `in${i}`), 'tail', 'probs'];
  outNames.forEach((n) => b.reserve(n));
  let x: Val = { name: 'x', shape: R4, nchw: false };
  const outputs: OnnxValueInfo[] = [];
  net.stages.forEach((s, i) => {
    x = pad(b, pad(b, x, s.zeroPads, 0), s.pads, padValue(s));
    const [ih, iw, ic] = sh.stages[i].inShape;
    b.op('Identity', [nhwc(b, x).name], `in${i}`, {}, `in${i}`);
    outputs.push(nhwcInfo(`in${i}`, ih, iw, ic));
    x = stageOp(b, s, x, [0, 0, 0, 0]);
  });
  x = pad(b, x, net.tailZeroPads, 0);
  const t = sh.tailInput;
  b.op('Identity', [nhwc(b, x).name], 'tail', {}, 'tail');
  outputs.push(nhwcInfo('tail', t.h, t.w, t.c));
  b.op('Identity', [tailOps(b, x, net.tail).name], 'probs', {}, 'probs');
  outputs.push({ name: 'probs', shape: ['N', net.numClasses] });
  return model(b, 'incremental_base', [nhwcInfo('x', h, w, c)], outputs);
}

/** Output [h, w, c] of stages i..last (no padding) on a block of bh x bw. */
export function windowOutShape(net: Net, i: number, bh: number, bw: number, last = i): [number, number, number] {
  let [oh, ow] = [bh, bw];
  for (let j = i; j <= last; j++) {
    const s = net.stages[j];
    oh = Math.floor((oh - ((s.kernel[0] - 1) * s.dilation[0] + 1)) / s.strides[0]) + 1;
    ow = Math.floor((ow - ((s.kernel[1] - 1) * s.dilation[1] + 1)) / s.strides[1]) + 1;
  }
  return [oh, ow, net.stages[last].cout];
}

/**
 * Stages i..last on pre-padded blocks of bh x bw (the later ones without padding: fused
 * poolings): input `x` (N,bh,bw,cin), output `y` (N,oh,ow,cout), NHWC.
 */
export function windowGraph(net: Net, i: number, bh: number, bw: number, last = i): Uint8Array {
  const b = new Builder();
  ['x', 'y'].forEach((n) => b.reserve(n));
  let y: Val = { name: 'x', shape: R4, nchw: false };
  // One channel: NHWC and NCHW hold the same bytes, a Reshape (free) instead of a Transpose.
  if (net.stages[i].cin === 1) y = { name: b.op('Reshape', ['x', b.int64s('nchw_shape', [-1, 1, bh, bw])], 'x_nchw'), shape: R4, nchw: true };
  for (let j = i; j <= last; j++) y = stageOp(b, net.stages[j], y, [0, 0, 0, 0]);
  const [oh, ow] = windowOutShape(net, i, bh, bw, last);
  b.op('Identity', [nhwc(b, y).name], 'y', {}, 'y');
  const names = net.stages.slice(i, last + 1).map((s) => s.name).join('_');
  return model(b, `incremental_${names}_window`, [nhwcInfo('x', bh, bw, net.stages[i].cin)], [nhwcInfo('y', oh, ow, net.stages[last].cout)]);
}

/**
 * Stages from `from` on in full, then the tail: input `x` is stage `from`'s whole padded input
 * (or the tail's padded input when from = number of stages), output `probs`.
 */
export function tailGraph(net: Net, from: number): Uint8Array {
  const b = new Builder();
  ['x', 'probs'].forEach((n) => b.reserve(n));
  const sh = netShapes(net);
  const [h, w, c] = paddedInput(sh, from);
  const probs = finish(b, net, { name: 'x', shape: R4, nchw: false }, from);
  b.op('Identity', [probs], 'probs', {}, 'probs');
  return model(b, `incremental_tail_${from}`, [nhwcInfo('x', h, w, c)], [{ name: 'probs', shape: ['N', net.numClasses] }]);
}
