/**
 * One ONNX graph from a classifier and the conditioned explainer(s) that read its class:
 *
 *   image (the explainer's padded input, N x S x S x C)
 *     -> Slice to the stamp (and Gather the classifier's channels) -> classifier -> probs
 *     -> ArgMax -> OneHot (one-hot conditioning) | Cast + Unsqueeze (numeral) -> label
 *     -> every explainer member (image, label) -> map (one member) | map0..mapK-1 (ensemble)
 *
 * so an estimate for the predicted class costs one session call instead of a classifier call,
 * a round trip through JS and an explainer call per member.
 *
 * Built by splicing the two exported graphs at the protobuf level: every node, initializer and
 * value name gets a per-graph prefix (the explainer's 'image' input and the classifier's input
 * are wired to the new tensors instead), and each node's attributes are copied byte for byte,
 * so any operator either exporter writes survives unchanged. Hand-written for the same reason
 * as src/models/onnx-proto.ts (whose writers it uses): a few dozen lines of wire format, no
 * ONNX library for JS that edits graphs.
 */
import {
  DATA_TYPE_FLOAT,
  ProtoWriter,
  readProtoFields,
  writeNode,
  writeTensor,
  writeValueInfo,
  type OnnxNode,
  type OnnxTensor,
  type OnnxValueInfo,
  type ProtoField,
} from './onnx-proto.js';

const utf8d = new TextDecoder('utf-8', { fatal: true });
const str = (f: ProtoField): string => utf8d.decode(f.value as Uint8Array);
const LEN = 2;

/** A graph input/output as the fuser needs it. */
export interface WireValue {
  name: string;
  /** TensorProto.DataType of a tensor value (1 = float). */
  elemType: number;
  shape: (number | string)[];
}

/** A model read at the wire level: nodes and initializers stay raw messages. */
export interface WireModel {
  irVersion: number;
  opsets: { domain: string; version: number }[];
  nodes: Uint8Array[];
  initializers: Uint8Array[];
  inputs: WireValue[];
  outputs: WireValue[];
}

function readValue(bytes: Uint8Array): WireValue {
  const v: WireValue = { name: '', elemType: 0, shape: [] };
  for (const f of readProtoFields(bytes)) {
    if (f.field === 1 && f.wire === LEN) v.name = str(f);
    if (f.field !== 2 || f.wire !== LEN) continue;
    for (const t of readProtoFields(f.value as Uint8Array)) {
      if (t.field !== 1 || t.wire !== LEN) continue; // tensor_type
      for (const tt of readProtoFields(t.value as Uint8Array)) {
        if (tt.field === 1) v.elemType = Number(tt.value);
        if (tt.field !== 2 || tt.wire !== LEN) continue;
        for (const d of readProtoFields(tt.value as Uint8Array)) {
          if (d.field !== 1) continue;
          let dim: number | string = '?';
          for (const x of readProtoFields(d.value as Uint8Array)) {
            if (x.field === 1) dim = Number(x.value);
            if (x.field === 2 && x.wire === LEN) dim = str(x);
          }
          v.shape.push(dim);
        }
      }
    }
  }
  return v;
}

/** Parse what fusing needs; throws a plain Error naming what is not supported. */
export function readWireModel(bytes: Uint8Array): WireModel {
  const m: WireModel = { irVersion: 0, opsets: [], nodes: [], initializers: [], inputs: [], outputs: [] };
  let graph: Uint8Array | undefined;
  for (const f of readProtoFields(bytes)) {
    if (f.field === 1) m.irVersion = Number(f.value);
    else if (f.field === 7 && f.wire === LEN) graph = f.value as Uint8Array;
    else if (f.field === 8 && f.wire === LEN) {
      const o = { domain: '', version: 0 };
      for (const g of readProtoFields(f.value as Uint8Array)) {
        if (g.field === 1 && g.wire === LEN) o.domain = str(g);
        if (g.field === 2) o.version = Number(g.value);
      }
      m.opsets.push(o);
    } else if (f.field === 25) throw new Error('model-local functions are not supported');
  }
  if (!graph) throw new Error('no graph in the ONNX model');
  const inits = new Set<string>();
  for (const f of readProtoFields(graph)) {
    if (f.field === 1) m.nodes.push(f.value as Uint8Array);
    else if (f.field === 5) {
      m.initializers.push(f.value as Uint8Array);
      for (const t of readProtoFields(f.value as Uint8Array)) if (t.field === 8 && t.wire === LEN) inits.add(str(t));
    } else if (f.field === 15) throw new Error('sparse initializers are not supported');
    else if (f.field === 11) m.inputs.push(readValue(f.value as Uint8Array));
    else if (f.field === 12) m.outputs.push(readValue(f.value as Uint8Array));
  }
  // IR < 4 lists initializers among the inputs too: they are not fed.
  m.inputs = m.inputs.filter((v) => !inits.has(v.name));
  return m;
}

/** Copy one field unchanged. */
function copyField(w: ProtoWriter, f: ProtoField): void {
  if (f.wire === LEN) w.bytes(f.field, f.value as Uint8Array);
  else if (f.wire === 0) w.varint(f.field, f.value as bigint);
  else if (f.wire === 5) {
    const dv = new DataView(new ArrayBuffer(4));
    dv.setUint32(0, Number(f.value), true);
    w.float(f.field, dv.getFloat32(0, true));
  } else throw new Error(`cannot copy a field of wire type ${f.wire}`);
}

type Rename = (name: string) => string;

/** NodeProto with inputs, outputs and node name renamed; attributes copied byte for byte. */
function renameNode(raw: Uint8Array, rename: Rename, prefix: string): Uint8Array {
  const w = new ProtoWriter();
  for (const f of readProtoFields(raw)) {
    if ((f.field === 1 || f.field === 2) && f.wire === LEN) w.string(f.field, rename(str(f)));
    else if (f.field === 3 && f.wire === LEN) w.string(3, prefix + str(f));
    else {
      if (f.field === 5) {
        for (const a of readProtoFields(f.value as Uint8Array)) {
          if (a.field === 6 || a.field === 11) throw new Error('operators with subgraphs (If, Loop, Scan) are not supported');
        }
      }
      copyField(w, f);
    }
  }
  return w.finish();
}

function renameTensor(raw: Uint8Array, rename: Rename): Uint8Array {
  const w = new ProtoWriter();
  for (const f of readProtoFields(raw)) {
    if (f.field === 14 && Number(f.value) === 1) throw new Error('initializers stored in external files are not supported');
    if (f.field === 8 && f.wire === LEN) w.string(8, rename(str(f)));
    else copyField(w, f);
  }
  return w.finish();
}

/** Renamer: names in `wire` map as given, every other non-empty name gets `prefix`. */
function renamer(prefix: string, wire: Record<string, string>): Rename {
  return (name) => (name === '' ? '' : (wire[name] ?? prefix + name));
}

const int64 = (name: string, values: number[]): OnnxTensor => ({ name, dims: [values.length], data: BigInt64Array.from(values.map(BigInt)) });

export interface FuseSpec {
  /** The classifier: NHWC input (N, h, w, Cc), one output of class probabilities (N, K). */
  classifier: Uint8Array;
  /** Explainer members, each with inputs image (N, S, S, C) and label (N, L), one map output. */
  members: Uint8Array[];
  condition: 'numeral' | 'onehot';
  numClasses: number;
  /** Where the classifier's stamp lies in the explainer's input. */
  crop: { top: number; left: number; height: number; width: number };
  /** For each classifier input channel, its index among the explainer's input channels. */
  classifierChannels: number[];
  metadata?: Record<string, string>;
  docString?: string;
}

function checkShapes(clf: WireModel, members: WireModel[], s: FuseSpec): void {
  if (clf.inputs.length !== 1 || clf.outputs.length !== 1) {
    throw new Error(`the classifier graph has ${clf.inputs.length} inputs and ${clf.outputs.length} outputs; fusing needs one of each`);
  }
  const [, h, w, c] = clf.inputs[0].shape;
  const { height, width } = s.crop;
  if (clf.inputs[0].shape.length !== 4 || h !== height || w !== width || c !== s.classifierChannels.length) {
    throw new Error(`the classifier takes (${clf.inputs[0].shape.join(',')}), not (N,${height},${width},${s.classifierChannels.length}) NHWC`);
  }
  const k = clf.outputs[0].shape[1];
  if (clf.outputs[0].elemType !== DATA_TYPE_FLOAT) throw new Error('the classifier output is not float');
  if (clf.outputs[0].shape.length !== 2 || (typeof k === 'number' && k !== s.numClasses)) {
    throw new Error(`the classifier outputs (${clf.outputs[0].shape.join(',')}), not (N,${s.numClasses}) class probabilities`);
  }
  const nLabel = s.condition === 'onehot' ? s.numClasses : 1;
  members.forEach((m, i) => {
    const names = m.inputs.map((v) => v.name).join(',');
    if (names !== 'image,label' || m.outputs.length !== 1) throw new Error(`explainer member ${i} takes [${names}] and has ${m.outputs.length} outputs; expected [image,label] and one map`);
    const label = m.inputs[1].shape;
    if (label.length !== 2 || label[1] !== nLabel) throw new Error(`explainer member ${i} takes a label of shape (${label.join(',')}), not (N,${nLabel}) for ${s.condition}`);
    if (m.inputs[0].shape.slice(1).join() !== members[0].inputs[0].shape.slice(1).join()) throw new Error('explainer members take different image shapes');
  });
  const [, S1, S2, C] = members[0].inputs[0].shape;
  const { top, left } = s.crop;
  if (!(typeof S1 === 'number' && typeof S2 === 'number' && top + height <= S1 && left + width <= S2)) throw new Error(`the crop does not fit the explainer input (${members[0].inputs[0].shape.join(',')})`);
  if (!s.classifierChannels.every((ch) => Number.isInteger(ch) && ch >= 0 && typeof C === 'number' && ch < C)) throw new Error(`classifier channels [${s.classifierChannels.join(',')}] are not among the explainer's ${C}`);
}

/** The glue between the graphs: crop, channel gather, argmax, label encoding. */
function glue(s: FuseSpec, C: number, probs: string): { pre: OnnxNode[]; post: OnnxNode[]; inits: OnnxTensor[]; clfIn: string } {
  const { top, left, height, width } = s.crop;
  const nodes: OnnxNode[] = [];
  const inits: OnnxTensor[] = [int64('fuse/crop_starts', [top, left]), int64('fuse/crop_ends', [top + height, left + width]), int64('fuse/crop_axes', [1, 2])];
  nodes.push({ opType: 'Slice', name: 'fuse/crop', inputs: ['image', 'fuse/crop_starts', 'fuse/crop_ends', 'fuse/crop_axes'], outputs: ['fuse/stamp'] });
  let clfIn = 'fuse/stamp';
  const identity = s.classifierChannels.length === C && s.classifierChannels.every((ch, i) => ch === i);
  if (!identity) {
    inits.push(int64('fuse/channels', s.classifierChannels));
    nodes.push({ opType: 'Gather', name: 'fuse/gather', inputs: ['fuse/stamp', 'fuse/channels'], outputs: ['fuse/clf_in'], attributes: [{ name: 'axis', value: { type: 'int', value: 3 } }] });
    clfIn = 'fuse/clf_in';
  }
  const pre = nodes.splice(0);
  const argmax = { name: 'axis', value: { type: 'int', value: 1 } } as const;
  const keep = { name: 'keepdims', value: { type: 'int', value: 0 } } as const;
  nodes.push({ opType: 'ArgMax', name: 'fuse/argmax', inputs: [probs], outputs: ['fuse/class'], attributes: [argmax, keep] });
  if (s.condition === 'onehot') {
    inits.push(int64('fuse/depth', [s.numClasses]), { name: 'fuse/off_on', dims: [2], data: Float32Array.from([0, 1]) });
    nodes.push({ opType: 'OneHot', name: 'fuse/onehot', inputs: ['fuse/class', 'fuse/depth', 'fuse/off_on'], outputs: ['fuse/label'], attributes: [{ name: 'axis', value: { type: 'int', value: -1 } }] });
  } else {
    inits.push(int64('fuse/unsqueeze_axes', [1]));
    nodes.push({ opType: 'Cast', name: 'fuse/cast', inputs: ['fuse/class'], outputs: ['fuse/class_f'], attributes: [{ name: 'to', value: { type: 'int', value: DATA_TYPE_FLOAT } }] });
    nodes.push({ opType: 'Unsqueeze', name: 'fuse/unsqueeze', inputs: ['fuse/class_f', 'fuse/unsqueeze_axes'], outputs: ['fuse/label'] });
  }
  return { pre, post: nodes, inits, clfIn };
}

/**
 * The fused graph as ONNX bytes. Outputs: 'probs' (N, K), then 'map' (one member) or
 * 'map0'..'map{K-1}' (ensemble members, in order). Input: 'image', the explainer's input.
 */
export function fuseClassifierExplainer(s: FuseSpec): Uint8Array {
  if (s.members.length === 0) throw new Error('no explainer member to fuse');
  const clf = readWireModel(s.classifier);
  const members = s.members.map(readWireModel);
  checkShapes(clf, members, s);
  const C = members[0].inputs[0].shape[3] as number;
  const probs = 'probs';
  const g = glue(s, C, probs);
  const clfRename = renamer('clf/', { [clf.inputs[0].name]: g.clfIn, [clf.outputs[0].name]: probs });
  const mapNames = members.length === 1 ? ['map'] : members.map((_, k) => `map${k}`);

  const w = new ProtoWriter();
  const opsets = new Map<string, number>([['', 13]]);
  for (const m of [clf, ...members]) {
    for (const o of m.opsets) {
      const d = o.domain === 'ai.onnx' ? '' : o.domain;
      opsets.set(d, Math.max(opsets.get(d) ?? 0, o.version));
    }
  }
  w.varint(1, Math.max(8, clf.irVersion, ...members.map((m) => m.irVersion)));
  w.string(2, 'occmap');
  w.string(3, 'fused');
  if (s.docString) w.string(6, s.docString);
  w.message(7, (gw) => {
    // Topological order: crop/gather, classifier, argmax/label, members.
    g.pre.forEach((n) => gw.message(1, (nw) => writeNode(nw, n)));
    for (const n of clf.nodes) gw.bytes(1, renameNode(n, clfRename, 'clf/'));
    g.post.forEach((n) => gw.message(1, (nw) => writeNode(nw, n)));
    members.forEach((m, k) => {
      const rn = renamer(`m${k}/`, { image: 'image', label: 'fuse/label', [m.outputs[0].name]: mapNames[k] });
      for (const n of m.nodes) gw.bytes(1, renameNode(n, rn, `m${k}/`));
    });
    gw.string(2, 'occmap_fused_estimate');
    for (const t of g.inits) gw.message(5, (tw) => writeTensor(tw, t));
    for (const t of clf.initializers) gw.bytes(5, renameTensor(t, clfRename));
    members.forEach((m, k) => {
      const rn = renamer(`m${k}/`, {});
      for (const t of m.initializers) gw.bytes(5, renameTensor(t, rn));
    });
    const image: OnnxValueInfo = { name: 'image', shape: members[0].inputs[0].shape };
    gw.message(11, (vw) => writeValueInfo(vw, image));
    gw.message(12, (vw) => writeValueInfo(vw, { name: probs, shape: clf.outputs[0].shape }));
    members.forEach((m, k) => gw.message(12, (vw) => writeValueInfo(vw, { name: mapNames[k], shape: m.outputs[0].shape })));
  });
  for (const [domain, version] of opsets) {
    w.message(8, (ow) => {
      ow.string(1, domain);
      ow.varint(2, version);
    });
  }
  for (const [key, value] of Object.entries(s.metadata ?? {})) {
    w.message(14, (ew) => {
      ew.string(1, key);
      ew.string(2, value);
    });
  }
  return w.finish();
}
