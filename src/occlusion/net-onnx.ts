/**
 * ONNX graphs of the incremental engine, built from a Net (net.ts): the unoccluded pass that
 * also outputs every stage's padded input, one graph per stage that recomputes windows, and
 * the tail that finishes in full. Every graph takes and gives NHWC tensors (the engine's
 * gathering copies whole rows of w x c floats); convolutions and poolings run in NCHW inside,
 * and ONNX Runtime folds the Transposes into its NCHWc reorders.
 *
 * Not the exporter (models/to-onnx.ts): that one translates any tfjs graph with Keras padding
 * semantics; here stages read blocks that are already padded (pads 0), and the layer set is
 * the engine's small one.
 */
import {
  encodeOnnxModel,
  type AttributeValue,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
  type OnnxValueInfo,
} from '../models/onnx-proto.js';
import { ONNX_IR_VERSION, ONNX_OPSET, permute } from '../models/to-onnx.js';
import { netShapes, padValue, type Net, type Pads, type Pointwise, type Stage, type TailLayer } from './net.js';

const ints = (value: number[]): AttributeValue => ({ type: 'ints', value });
const int = (value: number): AttributeValue => ({ type: 'int', value });
const float = (value: number): AttributeValue => ({ type: 'float', value });

type Layout = 'nhwc' | 'nchw' | 'flat';

/** A value of the graph being built and its layout. */
interface V {
  name: string;
  layout: Layout;
}

class Graph {
  readonly nodes: OnnxNode[] = [];
  readonly inits: OnnxTensor[] = [];
  private n = 0;

  fresh(base: string): string {
    return `${base}_${this.n++}`;
  }

  op(type: string, inputs: string[], attrs: Record<string, AttributeValue> = {}, out?: string): string {
    const o = out ?? this.fresh(type.toLowerCase());
    this.nodes.push({ opType: type, inputs, outputs: [o], name: this.fresh(`n_${type}`), attributes: Object.entries(attrs).map(([name, value]) => ({ name, value })) });
    return o;
  }

  floats(dims: number[], data: Float32Array): string {
    const name = this.fresh('w');
    this.inits.push({ name, dims, data });
    return name;
  }

  int64s(values: number[]): string {
    const name = this.fresh('i');
    this.inits.push({ name, dims: [values.length], data: BigInt64Array.from(values.map((v) => BigInt(v))) });
    return name;
  }

  nchw(v: V): V {
    if (v.layout === 'nchw') return v;
    if (v.layout !== 'nhwc') throw new Error('internal: NCHW of a flat value');
    return { name: this.op('Transpose', [v.name], { perm: ints([0, 3, 1, 2]) }), layout: 'nchw' };
  }

  nhwc(v: V): V {
    if (v.layout !== 'nchw') return v;
    return { name: this.op('Transpose', [v.name], { perm: ints([0, 2, 3, 1]) }), layout: 'nhwc' };
  }

  /** Constant padding of the two spatial axes. */
  pad(v: V, p: Pads, value: number): V {
    if (p.every((x) => x === 0)) return v;
    const [t, b, l, r] = p;
    const pads = v.layout === 'nchw' ? [0, 0, t, l, 0, 0, b, r] : [0, t, l, 0, 0, b, r, 0];
    return { name: this.op('Pad', [v.name, this.int64s(pads), this.floats([], Float32Array.of(value))], { mode: { type: 'string', value: 'constant' } }), layout: v.layout };
  }

  model(name: string, inputs: OnnxValueInfo[], outputs: OnnxValueInfo[]): Uint8Array {
    const m: OnnxModel = {
      irVersion: ONNX_IR_VERSION,
      opsetVersion: ONNX_OPSET,
      producerName: 'occmap-incremental',
      producerVersion: '1',
      graph: { name, nodes: this.nodes, initializers: this.inits, inputs, outputs },
    };
    return encodeOnnxModel(m);
  }
}

/** A pointwise layer on any layout (channels on axis 1 for NCHW and flat, 3 for NHWC). */
function pointwise(g: Graph, v: V, p: Pointwise): V {
  const chAxis = v.layout === 'nhwc' ? 3 : 1;
  const one = (type: string, attrs: Record<string, AttributeValue> = {}): V => ({ name: g.op(type, [v.name], attrs), layout: v.layout });
  switch (p.op) {
    case 'leakyRelu':
      return one('LeakyRelu', { alpha: float(p.alpha) });
    case 'elu':
      return one('Elu', { alpha: float(p.alpha) });
    case 'clip':
      return { name: g.op('Clip', [v.name, g.floats([], Float32Array.of(p.min)), g.floats([], Float32Array.of(p.max))]), layout: v.layout };
    case 'affine': {
      const c = p.scale.length;
      const dims = v.layout === 'nchw' ? [c, 1, 1] : [c];
      const y = g.op('Mul', [v.name, g.floats(dims, p.scale)]);
      return { name: g.op('Add', [y, g.floats(dims, p.shift)]), layout: v.layout };
    }
    case 'act':
      switch (p.fn) {
        case 'linear':
          return v;
        case 'relu':
          return one('Relu');
        case 'relu6':
          return pointwise(g, v, { op: 'clip', min: 0, max: 6 });
        case 'elu':
          return one('Elu', { alpha: float(1) });
        case 'selu':
          return one('Selu');
        case 'sigmoid':
          return one('Sigmoid');
        case 'hardSigmoid':
          return one('HardSigmoid', { alpha: float(0.2), beta: float(0.5) });
        case 'softplus':
          return one('Softplus');
        case 'softsign':
          return one('Softsign');
        case 'tanh':
          return one('Tanh');
        case 'swish':
          return { name: g.op('Mul', [v.name, g.op('Sigmoid', [v.name])]), layout: v.layout };
        case 'softmax':
          return one('Softmax', { axis: int(chAxis) });
      }
  }
}

/** The stage's layer on `v`, with `pads` applied by the operator itself (0 for pre-padded blocks). */
function stageOp(g: Graph, s: Stage, v: V, pads: Pads): V {
  const x = g.nchw(v);
  const [t, b, l, r] = pads;
  const attrs: Record<string, AttributeValue> = { kernel_shape: ints(s.kernel), strides: ints(s.strides), pads: ints([t, l, b, r]) };
  let y: string;
  if (s.kind === 'conv') {
    const [kh, kw, ci, co] = [s.kernel[0], s.kernel[1], s.cin, s.cout];
    const w = g.floats([co, ci, kh, kw], permute(s.kernelHWIO!, [kh, kw, ci, co], [3, 2, 0, 1]));
    const inputs = [x.name, w];
    if (s.bias) inputs.push(g.floats([co], s.bias));
    y = g.op('Conv', inputs, { ...attrs, dilations: ints(s.dilation) });
  } else {
    // AveragePool's count_include_pad = 0 is TF's 'same': padded cells are not counted.
    y = g.op(s.kind === 'maxpool' ? 'MaxPool' : 'AveragePool', [x.name], attrs);
  }
  let out: V = { name: y, layout: 'nchw' };
  for (const p of s.post) out = pointwise(g, out, p);
  return out;
}

function tailOps(g: Graph, v: V, tail: TailLayer[]): V {
  let x = v;
  for (const t of tail) {
    if (t.op === 'flatten') {
      // Keras flattens in NHWC order: the Dense weights after it were trained on that order.
      x = { name: g.op('Flatten', [g.nhwc(x).name], { axis: int(1) }), layout: 'flat' };
    } else if (t.op === 'dense') {
      if (x.layout !== 'flat') throw new Error(`internal: dense ${t.name} on a rank-4 value`);
      const w = g.floats([t.inputs, t.units], t.kernel);
      x = { name: g.op('Gemm', t.bias ? [x.name, w, g.floats([t.units], t.bias)] : [x.name, w]), layout: 'flat' };
    } else x = pointwise(g, x, t);
  }
  return x;
}

const nhwcInfo = (name: string, h: number, w: number, c: number): OnnxValueInfo => ({ name, shape: ['N', h, w, c] });

/** Run the stages from `from` on (the first reads a pre-padded input), then the tail, to the probabilities. */
function finish(g: Graph, net: Net, x0: V, from: number): string {
  let x = x0;
  for (let i = from; i < net.stages.length; i++) {
    const s = net.stages[i];
    if (i === from) x = stageOp(g, s, x, [0, 0, 0, 0]);
    else x = stageOp(g, s, g.pad(x, s.zeroPads, 0), s.pads);
  }
  // A tail input given as is (from = number of stages) is already padded.
  if (from < net.stages.length) x = g.pad(x, net.tailZeroPads, 0);
  return tailOps(g, x, net.tail).name;
}

/**
 * The unoccluded pass: input `x` (N,H,W,C); outputs `in0`..`in{S-1}` (each stage's padded input,
 * NHWC), `tail` (the tail's padded input) and `probs` (N, classes).
 */
export function baseGraph(net: Net): Uint8Array {
  const g = new Graph();
  const sh = netShapes(net);
  const [h, w, c] = net.input;
  let x: V = { name: 'x', layout: 'nhwc' };
  const outputs: OnnxValueInfo[] = [];
  net.stages.forEach((s, i) => {
    x = g.pad(g.pad(x, s.zeroPads, 0), s.pads, padValue(s));
    const [ih, iw, ic] = sh.stages[i].inShape;
    g.op('Identity', [g.nhwc(x).name], {}, `in${i}`);
    outputs.push(nhwcInfo(`in${i}`, ih, iw, ic));
    x = stageOp(g, s, x, [0, 0, 0, 0]);
  });
  x = g.pad(x, net.tailZeroPads, 0);
  const t = sh.tailInput;
  g.op('Identity', [g.nhwc(x).name], {}, 'tail');
  outputs.push(nhwcInfo('tail', t.h, t.w, t.c));
  g.op('Identity', [tailOps(g, x, net.tail).name], {}, 'probs');
  outputs.push({ name: 'probs', shape: ['N', net.numClasses] });
  return g.model('incremental_base', [nhwcInfo('x', h, w, c)], outputs);
}

/** Stage `i` on pre-padded blocks of bh x bw: input `x` (N,bh,bw,cin), output `y` (N,oh,ow,cout), NHWC. */
export function windowGraph(net: Net, i: number, bh: number, bw: number): Uint8Array {
  const g = new Graph();
  const s = net.stages[i];
  const oh = Math.floor((bh - ((s.kernel[0] - 1) * s.dilation[0] + 1)) / s.strides[0]) + 1;
  const ow = Math.floor((bw - ((s.kernel[1] - 1) * s.dilation[1] + 1)) / s.strides[1]) + 1;
  const y = stageOp(g, s, { name: 'x', layout: 'nhwc' }, [0, 0, 0, 0]);
  g.op('Identity', [g.nhwc(y).name], {}, 'y');
  return g.model(`incremental_${s.name}_window`, [nhwcInfo('x', bh, bw, s.cin)], [nhwcInfo('y', oh, ow, s.cout)]);
}

/**
 * Stages from `from` on in full, then the tail: input `x` is stage `from`'s whole padded input
 * (or the tail's padded input when from = number of stages), output `probs`.
 */
export function tailGraph(net: Net, from: number): Uint8Array {
  const g = new Graph();
  const sh = netShapes(net);
  const [h, w, c] = from < net.stages.length ? sh.stages[from].inShape : [sh.tailInput.h, sh.tailInput.w, sh.tailInput.c];
  const probs = finish(g, net, { name: 'x', layout: 'nhwc' }, from);
  g.op('Identity', [probs], {}, 'probs');
  return g.model(`incremental_tail_${from}`, [nhwcInfo('x', h, w, c)], [{ name: 'probs', shape: ['N', net.numClasses] }]);
}
