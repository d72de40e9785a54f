/**
 * The incremental engine's window and tail graphs in NCHWc (net-layout.ts): ONNX Runtime's
 * own com.microsoft.nchwc Conv / MaxPool / AveragePool nodes, with the filters already in
 * MLAS's blocked order, so a window call runs its convolutions on the gathered blocks as they
 * are. ONNX Runtime builds these nodes itself from NCHW graphs (its NchwcTransformer), but then
 * converts every input and output; written here, a graph's tensors are NCHWc end to end. The
 * unoccluded pass stays net-onnx.ts's NHWC graph (the engine packs its planes once per call).
 */
import { Builder, int, ints, str, type Val } from '../models/onnx-export/graph.js';
import type { AttributeValue } from '../models/onnx-proto.js';
import { netShapes, paddedInput, type Net, type Pads, type Stage } from './net.js';
import { cellFloats, inputLayout, nchwcFilter, outputLayout, type ActLayout, type NetLayout } from './net-layout.js';
import { model, pad, pointwise, R4, tailOps, windowOutShape } from './net-onnx.js';

export const NCHWC_DOMAIN = 'com.microsoft.nchwc';
const OPSETS = [{ domain: NCHWC_DOMAIN, version: 1 }];

const info = (name: string, c: number, h: number, w: number): { name: string; shape: (number | string)[] } => ({ name, shape: ['N', c, h, w] });

/** Stage `s` on NCHWc value `x` (input layout `lay`), its own padding [t, b, l, r] applied by the node. */
function stageOp(b: Builder, s: Stage, x: string, lay: ActLayout, block: number, pads: Pads): string {
  const [t, bt, l, r] = pads;
  const attrs: Record<string, AttributeValue> = { kernel_shape: ints(s.kernel), strides: ints(s.strides), pads: ints([t, l, bt, r]) };
  let post = s.post;
  let y: string;
  if (s.kind === 'conv') {
    const f = nchwcFilter(s.kernelHWIO!, s.kernel[0], s.kernel[1], s.cin, s.cout, block, lay.c === 1);
    const inputs = [x, b.floats(`${s.name}/kernel`, f.dims, f.data)];
    if (s.bias) {
      const bias = new Float32Array(f.dims[0]);
      bias.set(s.bias);
      inputs.push(b.floats(`${s.name}/bias`, [bias.length], bias));
    }
    // MLAS applies a ReLU as it writes the output
    const relu = post[0]?.op === 'act' && post[0].fn === 'relu';
    if (relu) post = post.slice(1);
    y = b.op('Conv', inputs, s.name, { ...attrs, dilations: ints(s.dilation), ...(relu ? { activation: str('Relu') } : {}) }, undefined, NCHWC_DOMAIN);
  } else {
    y = b.op(s.kind === 'maxpool' ? 'MaxPool' : 'AveragePool', [x], s.name, attrs, undefined, NCHWC_DOMAIN);
  }
  // the pointwise layers left are elementwise (nchwcUnsupported): any layout will do
  let v: Val = { name: y, shape: R4, nchw: true };
  for (const p of post) v = pointwise(b, v, p);
  return v.name;
}

/** Stages i..last on NCHWc blocks of bh x bw (pre-padded, no padding): `x` (N, C, bh, bw) -> `y` (N, C', oh, ow). */
export function windowGraphNchwc(net: Net, lay: NetLayout, i: number, bh: number, bw: number, last = i): Uint8Array {
  const b = new Builder();
  ['x', 'y'].forEach((n) => b.reserve(n));
  let y = 'x';
  for (let j = i; j <= last; j++) y = stageOp(b, net.stages[j], y, lay.inputs[j], lay.block, [0, 0, 0, 0]);
  b.op('Identity', [y], 'y', {}, 'y');
  const [oh, ow] = windowOutShape(net, i, bh, bw, last);
  const names = net.stages.slice(i, last + 1).map((s) => s.name).join('_');
  return model(b, `incremental_${names}_window_nchwc`, [info('x', cellFloats(lay.inputs[i]), bh, bw)], [info('y', cellFloats(outputLayout(lay, last)), oh, ow)], OPSETS);
}

/**
 * Stages from `from` on in full on NCHWc inputs (stage `from`'s whole padded input, or the
 * tail's when from = number of stages), back to NHWC for the tail, to `probs`.
 */
export function tailGraphNchwc(net: Net, lay: NetLayout, from: number): Uint8Array {
  const b = new Builder();
  ['x', 'probs'].forEach((n) => b.reserve(n));
  const sh = netShapes(net);
  const S = net.stages.length;
  let x = 'x';
  for (let j = from; j < S; j++) {
    const s = net.stages[j];
    // ZeroPadding2D before a convolution adds zeros like the convolution's own padding
    const pads = j === from ? ([0, 0, 0, 0] as Pads) : (s.pads.map((p, k) => p + (s.kind === 'conv' ? s.zeroPads[k] : 0)) as Pads);
    x = stageOp(b, s, x, lay.inputs[j], lay.block, pads);
  }
  const channels = S > 0 ? net.stages[S - 1].cout : net.input[2];
  // Back to NHWC for the tail. Flattening the blocks as they are with the dense rows reordered
  // instead sums the dense layer in another order: maps then differed from the full engine's
  // by 1.1e-5 after the seed normalisation (over the 1e-5 the tests hold), for no measurable gain.
  const back = b.op('ReorderOutput', [x], 'to_nhwc', { channels: int(channels), channels_last: int(1) }, undefined, NCHWC_DOMAIN);
  let v: Val = { name: back, shape: R4, nchw: false };
  if (from < S) v = pad(b, v, net.tailZeroPads, 0);
  const out = tailOps(b, v, net.tail).name;
  b.op('Identity', [out], 'probs', {}, 'probs');
  const [h, w] = paddedInput(sh, from);
  const c = cellFloats(inputLayout(lay, from));
  return model(b, `incremental_tail_${from}_nchwc`, [info('x', c, h, w)], [{ name: 'probs', shape: ['N', net.numClasses] }], OPSETS);
}

/** One ReorderInput of 4 channels: its output's channel count is this runtime's NCHWc block size. */
export function blockProbeGraph(): Uint8Array {
  const b = new Builder();
  ['x', 'y'].forEach((n) => b.reserve(n));
  b.op('ReorderInput', ['x'], 'probe', {}, 'y', NCHWC_DOMAIN);
  return model(b, 'nchwc_block_probe', [{ name: 'x', shape: [1, 4, 1, 1] }], [{ name: 'y', shape: [1, 'C', 1, 1] }], OPSETS);
}

