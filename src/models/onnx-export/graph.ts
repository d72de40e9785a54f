/**
 * The ONNX graph under construction while a tfjs model is exported: the Builder (nodes,
 * initialisers, unique names, layout transposes made once per value), the value type that
 * carries a Keras tensor's shape and ONNX layout, and the pure helpers (permute, samePadding).
 */
import type { tfl } from '../../runtime/tfjs.js';
import { UserError } from '../../util/errors.js';
import type { AttributeValue, OnnxAttribute, OnnxNode, OnnxTensor } from '../onnx-proto.js';

export type Layer = InstanceType<typeof tfl.layers.Layer>;
export type Shape = (number | null)[];

/** A tensor of the ONNX graph standing for a Keras tensor of shape `shape` (NHWC when rank 4). */
export interface Val {
  name: string;
  shape: Shape;
  /** Rank 4 only: the ONNX tensor holds the NCHW transpose of the Keras tensor. */
  nchw: boolean;
  /** The same value in the other layout, once a Transpose has made it. */
  other?: string;
  /** Rank 4 made by concatenating channels: the parts, for a Conv to read one by one. */
  concatParts?: Val[];
}

/**
 * The nodes that feed `outputs`, in their order, and the initializers they read: a Conv that
 * read a Concat's parts (layers.ts) leaves the Concat without a reader.
 */
export function pruneDead(nodes: OnnxNode[], initializers: OnnxTensor[], outputs: string[]): { nodes: OnnxNode[]; initializers: OnnxTensor[] } {
  const needed = new Set(outputs);
  const keep = new Array<boolean>(nodes.length).fill(false);
  for (let i = nodes.length - 1; i >= 0; i--) {
    if (!nodes[i].outputs.some((o) => needed.has(o))) continue;
    keep[i] = true;
    for (const x of nodes[i].inputs) needed.add(x);
  }
  return { nodes: nodes.filter((_, i) => keep[i]), initializers: initializers.filter((t) => needed.has(t.name)) };
}

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

export const NHWC_TO_NCHW = [0, 3, 1, 2];
export const NCHW_TO_NHWC = [0, 2, 3, 1];
/** Keras NHWC axis -> the same axis of the NCHW tensor. */
export const AXIS_IN_NCHW = [0, 2, 3, 1];

export const int = (value: number): AttributeValue => ({ type: 'int', value });
export const float = (value: number): AttributeValue => ({ type: 'float', value });
export const ints = (value: number[]): AttributeValue => ({ type: 'ints', value });
export const str = (value: string): AttributeValue => ({ type: 'string', value });

export class Builder {
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

  op(opType: string, inputs: string[], base: string, attrs: Record<string, AttributeValue> = {}, output?: string, domain?: string): string {
    const out = output ?? this.unique(base);
    const attributes: OnnxAttribute[] = Object.entries(attrs).map(([name, value]) => ({ name, value }));
    this.nodes.push({ opType, inputs, outputs: [out], name: this.unique(`${base}/${opType}`), attributes, ...(domain ? { domain } : {}) });
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
