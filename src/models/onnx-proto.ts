/**
 * The protobuf wire encoding of the ONNX ModelProto subset occmap writes (onnx/onnx.proto,
 * proto2), plus a shallow reader for a model's top-level fields. Hand-written because the
 * exporter needs only nine messages and the encoding is a few dozen lines; a schema library
 * would add a dependency for no gain. Field numbers below are those of onnx.proto.
 */

/** occmap's metadata_props key for the graph's input layout ('NHWC' for exported tfjs models). */
export const META_LAYOUT = 'occmap.layout';
/**
 * metadata_props key for the hash of the tfjs model a file was exported from (card.json's
 * `hash`): tells whether a model directory's model.onnx is stale, and lets both engines report
 * the same provenance hash.
 */
export const META_SOURCE_HASH = 'occmap.source_hash';

// ---------------------------------------------------------------- the model, as plain data

export type AttributeValue =
  | { type: 'int'; value: number }
  | { type: 'float'; value: number }
  | { type: 'string'; value: string }
  | { type: 'ints'; value: number[] }
  | { type: 'floats'; value: number[] };

export interface OnnxAttribute {
  name: string;
  value: AttributeValue;
}

export interface OnnxNode {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  attributes?: OnnxAttribute[];
  /** Operator set domain ('' or absent: the default ai.onnx); the model must import it (OnnxModel.opsets). */
  domain?: string;
}

export interface OnnxTensor {
  name: string;
  dims: number[];
  /** float32 weights, or int64 values (shapes, pads, axes). */
  data: Float32Array | BigInt64Array;
}

/** A graph input or output: float32 tensor; a string dim is symbolic (e.g. the batch). */
export interface OnnxValueInfo {
  name: string;
  shape: (number | string)[];
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  opsetVersion: number;
  /** Further operator sets the nodes use, beside the default domain's opsetVersion. */
  opsets?: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  docString?: string;
  graph: OnnxGraph;
  metadata?: Record<string, string>;
}

/** TensorProto.DataType values used here. */
export const DATA_TYPE_FLOAT = 1;
export const DATA_TYPE_INT64 = 7;

const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_FLOATS = 6;
const ATTR_INTS = 7;

// ---------------------------------------------------------------- wire-format writer

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

const utf8 = new TextEncoder();

/** Append-only byte buffer with the protobuf primitive encodings. */
export class ProtoWriter {
  private buf = new Uint8Array(256);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** Unsigned LEB128 of an int64; negative values take ten bytes (two's complement), as protobuf's int64 does. */
  rawVarint(value: number | bigint): void {
    if (typeof value === 'number') {
      if (!Number.isInteger(value)) throw new RangeError(`varint of a non-integer: ${value}`);
      if (value >= 0 && value <= Number.MAX_SAFE_INTEGER) {
        this.reserve(8);
        let v = value;
        while (v >= 0x80) {
          this.buf[this.len++] = (v % 0x80) | 0x80;
          v = Math.floor(v / 0x80);
        }
        this.buf[this.len++] = v;
        return;
      }
      value = BigInt(value);
    }
    let v = BigInt.asUintN(64, value);
    this.reserve(10);
    while (v >= 0x80n) {
      this.buf[this.len++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.len++] = Number(v);
  }

  private tag(field: number, wire: number): void {
    this.rawVarint(field * 8 + wire);
  }

  varint(field: number, value: number | bigint): void {
    this.tag(field, WIRE_VARINT);
    this.rawVarint(value);
  }

  float(field: number, value: number): void {
    this.tag(field, WIRE_FIXED32);
    this.reserve(4);
    new DataView(this.buf.buffer, this.buf.byteOffset + this.len, 4).setFloat32(0, value, true);
    this.len += 4;
  }

  bytes(field: number, data: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.rawVarint(data.length);
    this.reserve(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
  }

  string(field: number, s: string): void {
    this.bytes(field, utf8.encode(s));
  }

  message(field: number, write: (w: ProtoWriter) => void): void {
    const inner = new ProtoWriter();
    write(inner);
    this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

// ---------------------------------------------------------------- ONNX messages

function writeAttribute(w: ProtoWriter, a: OnnxAttribute): void {
  w.string(1, a.name);
  const v = a.value;
  switch (v.type) {
    case 'float':
      w.float(2, v.value);
      w.varint(20, ATTR_FLOAT);
      break;
    case 'int':
      w.varint(3, v.value);
      w.varint(20, ATTR_INT);
      break;
    case 'string':
      w.string(4, v.value);
      w.varint(20, ATTR_STRING);
      break;
    case 'floats':
      for (const f of v.value) w.float(7, f);
      w.varint(20, ATTR_FLOATS);
      break;
    case 'ints':
      for (const i of v.value) w.varint(8, i);
      w.varint(20, ATTR_INTS);
      break;
  }
}

/** The message bodies, for modules that assemble graphs from parts (src/models/onnx-fuse.ts). */
export function writeNode(w: ProtoWriter, n: OnnxNode): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  for (const a of n.attributes ?? []) w.message(5, (aw) => writeAttribute(aw, a));
  if (n.domain) w.string(7, n.domain);
}

export function writeTensor(w: ProtoWriter, t: OnnxTensor): void {
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (count !== t.data.length) {
    throw new RangeError(`tensor ${t.name}: dims ${JSON.stringify(t.dims)} hold ${count} values, data has ${t.data.length}`);
  }
  for (const d of t.dims) w.varint(1, d);
  w.varint(2, t.data instanceof Float32Array ? DATA_TYPE_FLOAT : DATA_TYPE_INT64);
  w.string(8, t.name);
  // raw_data is little-endian by the spec; copy so the bytes do not depend on the host order.
  const raw = new Uint8Array(t.data.length * t.data.BYTES_PER_ELEMENT);
  const dv = new DataView(raw.buffer);
  if (t.data instanceof Float32Array) {
    for (let i = 0; i < t.data.length; i++) dv.setFloat32(i * 4, t.data[i], true);
  } else {
    for (let i = 0; i < t.data.length; i++) dv.setBigInt64(i * 8, t.data[i], true);
  }
  w.bytes(9, raw);
}

export function writeValueInfo(w: ProtoWriter, v: OnnxValueInfo): void {
  w.string(1, v.name);
  // TypeProto { tensor_type: TypeProto.Tensor { elem_type, shape: TensorShapeProto { dim* } } }
  w.message(2, (tw) =>
    tw.message(1, (tt) => {
      tt.varint(1, DATA_TYPE_FLOAT);
      tt.message(2, (sw) => {
        for (const d of v.shape) {
          sw.message(1, (dw) => (typeof d === 'number' ? dw.varint(1, d) : dw.string(2, d)));
        }
      });
    }),
  );
}

function writeGraph(w: ProtoWriter, g: OnnxGraph): void {
  for (const n of g.nodes) w.message(1, (nw) => writeNode(nw, n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, (tw) => writeTensor(tw, t));
  for (const i of g.inputs) w.message(11, (vw) => writeValueInfo(vw, i));
  for (const o of g.outputs) w.message(12, (vw) => writeValueInfo(vw, o));
}

/** Serialise a ModelProto. */
export function encodeOnnxModel(m: OnnxModel): Uint8Array {
  const w = new ProtoWriter();
  w.varint(1, m.irVersion);
  w.string(2, m.producerName);
  w.string(3, m.producerVersion);
  if (m.docString) w.string(6, m.docString);
  w.message(7, (gw) => writeGraph(gw, m.graph));
  // OperatorSetIdProto { domain: '' (the default ai.onnx), version }
  w.message(8, (ow) => {
    ow.string(1, '');
    ow.varint(2, m.opsetVersion);
  });
  for (const o of m.opsets ?? []) {
    w.message(8, (ow) => {
      ow.string(1, o.domain);
      ow.varint(2, o.version);
    });
  }
  for (const [key, value] of Object.entries(m.metadata ?? {})) {
    w.message(14, (ew) => {
      ew.string(1, key);
      ew.string(2, value);
    });
  }
  return w.finish();
}

// ---------------------------------------------------------------- shallow reader

export interface ProtoField {
  field: number;
  wire: number;
  /** varint / fixed values as bigint; length-delimited as a view into the input. */
  value: bigint | Uint8Array;
}

/** Split one message into its fields (no schema: nested messages stay as bytes). */
export function readProtoFields(bytes: Uint8Array): ProtoField[] {
  const out: ProtoField[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= bytes.length) throw new RangeError('truncated varint');
      const b = bytes[pos++];
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return result;
      shift += 7n;
      if (shift > 63n) throw new RangeError('varint longer than 10 bytes');
    }
  };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  while (pos < bytes.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (field === 0) throw new RangeError('field number 0');
    let value: bigint | Uint8Array;
    if (wire === WIRE_VARINT) value = varint();
    else if (wire === WIRE_FIXED64) {
      if (pos + 8 > bytes.length) throw new RangeError('truncated fixed64');
      value = dv.getBigUint64(pos, true);
      pos += 8;
    } else if (wire === WIRE_FIXED32) {
      if (pos + 4 > bytes.length) throw new RangeError('truncated fixed32');
      value = BigInt(dv.getUint32(pos, true));
      pos += 4;
    } else if (wire === WIRE_LEN) {
      const n = Number(varint());
      if (pos + n > bytes.length) throw new RangeError('truncated length-delimited field');
      value = bytes.subarray(pos, pos + n);
      pos += n;
    } else throw new RangeError(`unsupported wire type ${wire}`);
    out.push({ field, wire, value });
  }
  return out;
}

export interface OnnxModelHeader {
  irVersion: number;
  producerName: string;
  opsetVersion?: number;
  metadata: Record<string, string>;
}

const utf8d = new TextDecoder('utf-8', { fatal: false });

/**
 * The top-level facts of any ONNX model file (producer, IR and default-domain opset, metadata
 * properties) without decoding its graph. Throws RangeError on bytes that are not protobuf.
 */
export function readOnnxHeader(bytes: Uint8Array): OnnxModelHeader {
  const h: OnnxModelHeader = { irVersion: 0, producerName: '', metadata: {} };
  let sawGraph = false;
  for (const f of readProtoFields(bytes)) {
    if (f.field === 1 && f.wire === WIRE_VARINT) h.irVersion = Number(f.value);
    else if (f.field === 2 && f.wire === WIRE_LEN) h.producerName = utf8d.decode(f.value as Uint8Array);
    else if (f.field === 7 && f.wire === WIRE_LEN) sawGraph = true;
    else if (f.field === 8 && f.wire === WIRE_LEN) {
      let domain = '';
      let version: number | undefined;
      for (const g of readProtoFields(f.value as Uint8Array)) {
        if (g.field === 1 && g.wire === WIRE_LEN) domain = utf8d.decode(g.value as Uint8Array);
        if (g.field === 2 && g.wire === WIRE_VARINT) version = Number(g.value);
      }
      if ((domain === '' || domain === 'ai.onnx') && version !== undefined) h.opsetVersion = version;
    } else if (f.field === 14 && f.wire === WIRE_LEN) {
      let key = '';
      let value = '';
      for (const g of readProtoFields(f.value as Uint8Array)) {
        if (g.field === 1 && g.wire === WIRE_LEN) key = utf8d.decode(g.value as Uint8Array);
        if (g.field === 2 && g.wire === WIRE_LEN) value = utf8d.decode(g.value as Uint8Array);
      }
      h.metadata[key] = value;
    }
  }
  if (!sawGraph || h.irVersion === 0) throw new RangeError('no ONNX graph or IR version in the file');
  return h;
}
