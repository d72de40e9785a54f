/**
 * Reader for the seed's HiTS 2013 data: a Python pickle of a dict with `images` (N,21,21,4)
 * and `labels` (N,). A small pickle virtual machine for exactly what such files hold: the
 * opcodes of protocols 0-5 for built-in values, and NumPy arrays and scalars (pickled through
 * numpy.core / numpy._core `_reconstruct` + `__setstate__`, `_frombuffer` (protocol 5,
 * in-band) and `scalar`), from Python 2 (byte `str` payloads) and Python 3 (`bytes`, or
 * `_codecs.encode(str, 'latin1')` under protocol 2). Nothing else is ever called: a pickle
 * naming any other Python object is refused, so reading a pickle cannot run code.
 */
import { numel, parseNpy, type NpyArray, type NumericArray } from './npy.js';

export class PickleError extends Error {}

/**
 * What reading one pickle may allocate, in units of about 8 bytes (a reference, a number):
 * a constant plus a multiple of the file size. A real pickle costs about its own size; a
 * crafted one (shared or self-referencing lists expanded again and again, copies of copies)
 * could otherwise grow without bound from a few hundred bytes until the heap runs out.
 */
const BUDGET_PER_BYTE = 64;
const BUDGET_BASE = 1 << 22;

class Budget {
  private left: number;
  constructor(readonly fileBytes: number) {
    this.left = BUDGET_BASE + BUDGET_PER_BYTE * fileBytes;
  }
  spend(units: number): void {
    this.left -= units;
    if (this.left < 0) {
      throw new PickleError(
        `the pickle expands to far more than its ${this.fileBytes} bytes (shared or recursive lists rebuilt over and over): a malformed or malicious file, not read`,
      );
    }
  }
}

/** The budget of the pickle being read (reading is synchronous: one at a time). */
let budget = new Budget(0);

/** A NumPy dtype as far as arrays need it: kind+size ('f4') and byte order. */
class Dtype {
  order: '<' | '>' | '|' = '<';
  constructor(readonly code: string) {
    // 'f4', 'float32', '<f4': the constructor gets numpy's own short code in pickles.
    const m = /^([<>|=])?([a-zA-Z])(\d+)$/.exec(code);
    if (!m) throw new PickleError(`unsupported NumPy dtype '${code}'`);
    if (m[1] === '>') this.order = '>';
    else if (m[1] === '|') this.order = '|';
    this.kind = m[2];
    this.size = Number(m[3]);
  }
  kind: string;
  size: number;
  descr(): string {
    return `${this.order === '|' ? '|' : this.order}${this.kind}${this.size}`;
  }
}

/** An ndarray under construction: _reconstruct makes it, BUILD (__setstate__) fills it. */
class ArrayBuilder {
  value: NpyArray | null = null;
}

/** A Python 2 `str` (bytes), kept as bytes: array payloads can exceed JS string limits. */
class ByteStr {
  constructor(readonly bytes: Uint8Array) {}
  toString(): string {
    let s = '';
    for (let i = 0; i < this.bytes.length; i += 8192) s += String.fromCharCode(...this.bytes.subarray(i, i + 8192));
    return s;
  }
}

/** A long Python 3 `str` kept as its UTF-8 bytes until it is needed (large latin1 payloads). */
class LazyUnicode {
  constructor(readonly utf8: Uint8Array) {}
  toString(): string {
    return new TextDecoder().decode(this.utf8);
  }
}

class Global {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

class Mark {}
const MARK = new Mark();

type Value = unknown;

const LAZY_UNICODE_BYTES = 1 << 16;

function asKey(k: Value): unknown {
  if (k instanceof ByteStr || k instanceof LazyUnicode) return k.toString();
  if (typeof k === 'bigint' && k >= BigInt(Number.MIN_SAFE_INTEGER) && k <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(k);
  if (Array.isArray(k)) {
    // Tuple keys of plain values only: a nested key could stringify to any size.
    if (k.length > 64 || k.some((x) => Array.isArray(x) || x instanceof Map)) throw new PickleError('unsupported dict key (a nested tuple)');
    budget.spend(k.length);
    return JSON.stringify(k.map((x) => String(asKey(x))));
  }
  return k;
}

function asBytes(v: Value, what: string): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ByteStr) return v.bytes;
  if (typeof v === 'string') return latin1(v, what);
  if (v instanceof LazyUnicode) return utf8ToLatin1(v.utf8, what);
  throw new PickleError(`${what}: expected bytes, found ${describe(v)}`);
}

function latin1(s: string, what: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255) throw new PickleError(`${what}: character U+${c.toString(16)} is not latin1`);
    out[i] = c;
  }
  return out;
}

/** UTF-8 bytes of a string of code points <= 255 -> those code points as bytes. */
function utf8ToLatin1(u: Uint8Array, what: string): Uint8Array {
  const out = new Uint8Array(u.length);
  let n = 0;
  for (let i = 0; i < u.length; i++) {
    const b = u[i];
    if (b < 0x80) out[n++] = b;
    else if ((b & 0xe0) === 0xc0 && i + 1 < u.length && b <= 0xc3) out[n++] = ((b & 0x1f) << 6) | (u[++i] & 0x3f);
    else throw new PickleError(`${what}: text is not latin1`);
  }
  return out.subarray(0, n);
}

function describe(v: Value): string {
  if (v === null) return 'None';
  if (v instanceof Global) return v.qualified;
  if (v instanceof Map) return 'dict';
  if (Array.isArray(v)) return 'list/tuple';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof ArrayBuilder) return 'ndarray';
  return typeof v;
}

const NUMERIC_KINDS = new Set(['f', 'i', 'u', 'b']);

const TYPED: Record<string, new (b: ArrayBuffer) => NumericArray> = {
  f4: Float32Array,
  f8: Float64Array,
  i1: Int8Array,
  u1: Uint8Array,
  b1: Uint8Array,
  i2: Int16Array,
  u2: Uint16Array,
  i4: Int32Array,
  u4: Uint32Array,
  i8: BigInt64Array,
  u8: BigUint64Array,
};

/** Bytes of an array payload -> NpyArray, via the .npy reader (byte order, Fortran order). */
function arrayFromBytes(dtype: Dtype, shape: number[], fortran: boolean, data: Uint8Array): NpyArray {
  if (dtype.kind === 'O') throw new PickleError('object arrays (dtype=object) are not supported');
  if (!NUMERIC_KINDS.has(dtype.kind) && dtype.kind !== 'U' && dtype.kind !== 'S') {
    throw new PickleError(`unsupported NumPy dtype '${dtype.code}'`);
  }
  const itemBytes = dtype.kind === 'U' ? dtype.size * 4 : dtype.size;
  const expected = numel(shape) * itemBytes;
  // Each array copies its payload: the same payload reused many times is paid each time.
  budget.spend(Math.ceil(data.length / 8) + numel(shape) * (dtype.kind === 'U' || dtype.kind === 'S' ? 2 : 0));
  if (data.length !== expected) {
    throw new PickleError(`array data has ${data.length} bytes, expected ${expected} for shape (${shape.join(',')}) ${dtype.descr()}`);
  }
  // Fast path (the usual case, and the one that matters for a 700 MB pickle): little-endian
  // C-order numbers, one copy into an aligned buffer.
  const ctor = TYPED[`${dtype.kind}${dtype.size}`];
  if (ctor && (dtype.order === '<' || dtype.size === 1) && (!fortran || shape.length < 2)) {
    const buf = new ArrayBuffer(data.length);
    new Uint8Array(buf).set(data);
    return { dtype: `${dtype.size === 1 ? '|' : '<'}${dtype.kind}${dtype.size}`, shape, data: new ctor(buf) };
  }
  // Otherwise a .npy header in front of the payload lets one reader own byte-order and
  // Fortran-order conversion.
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '${dtype.descr()}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': (${dims}), }`;
  header = header.padEnd(Math.ceil((header.length + 11) / 64) * 64 - 11) + '\n';
  if (header.length > 65535) throw new PickleError('array header too long');
  const buf = new Uint8Array(10 + header.length + data.length);
  buf.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  buf[8] = header.length & 0xff;
  buf[9] = header.length >> 8;
  for (let i = 0; i < header.length; i++) buf[10 + i] = header.charCodeAt(i);
  buf.set(data, 10 + header.length);
  try {
    return parseNpy(buf);
  } catch (err) {
    throw new PickleError((err as Error).message);
  }
}

function toShape(v: Value, what: string): number[] {
  const items = Array.isArray(v) ? v : [v];
  return items.map((x) => {
    const n = typeof x === 'bigint' ? Number(x) : x;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new PickleError(`${what}: bad shape element ${String(x)}`);
    return n;
  });
}

function dtypeArg(v: Value, what: string): Dtype {
  if (v instanceof Dtype) return v;
  if (typeof v === 'string') return new Dtype(v);
  throw new PickleError(`${what}: expected a dtype, found ${describe(v)}`);
}

const RECONSTRUCT = new Set(['numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct']);
const SCALAR = new Set(['numpy.core.multiarray.scalar', 'numpy._core.multiarray.scalar']);
const FROMBUFFER = new Set(['numpy.core.numeric._frombuffer', 'numpy._core.numeric._frombuffer']);
const NDARRAY = new Set(['numpy.ndarray']);
const DTYPE = new Set(['numpy.dtype']);
const ENCODE = new Set(['_codecs.encode']);
const BYTEARRAY = new Set(['builtins.bytearray', '__builtin__.bytearray']);
const DICTS = new Set(['collections.OrderedDict', 'builtins.dict', '__builtin__.dict']);
const LISTS = new Set(['builtins.list', '__builtin__.list', 'builtins.tuple', '__builtin__.tuple']);

function call(fn: Value, args: Value): Value {
  if (!(fn instanceof Global)) throw new PickleError(`cannot call ${describe(fn)}`);
  const a = Array.isArray(args) ? args : [];
  const q = fn.qualified;
  if (RECONSTRUCT.has(q)) return new ArrayBuilder();
  if (DTYPE.has(q)) return new Dtype(String(a[0]));
  if (SCALAR.has(q)) {
    const dt = dtypeArg(a[0], 'numpy scalar');
    const arr = arrayFromBytes(dt, [], false, asBytes(a[1], 'numpy scalar'));
    const x = (arr.data as ArrayLike<number | bigint>)[0];
    return typeof x === 'bigint' ? Number(x) : x;
  }
  if (FROMBUFFER.has(q)) {
    const [buf, dt, shape, order] = a;
    return arrayFromBytes(dtypeArg(dt, '_frombuffer'), toShape(shape, '_frombuffer'), String(order) === 'F', asBytes(buf, '_frombuffer'));
  }
  if (ENCODE.has(q)) {
    const enc = String(a[1] ?? 'utf-8').toLowerCase().replace(/[-_]/g, '');
    if (enc !== 'latin1' && enc !== 'iso88591') throw new PickleError(`_codecs.encode with encoding '${a[1]}' is not supported`);
    return asBytes(a[0], '_codecs.encode');
  }
  if (BYTEARRAY.has(q)) return a.length === 0 ? new Uint8Array(0) : asBytes(a[0], 'bytearray');
  if (DICTS.has(q)) return new Map();
  if (LISTS.has(q)) {
    if (a.length === 0) return [];
    if (!Array.isArray(a[0])) throw new PickleError(`${q} of ${describe(a[0])} is not supported`);
    budget.spend(a[0].length);
    return [...a[0]];
  }
  if (NDARRAY.has(q)) return new ArrayBuilder();
  throw new PickleError(`refusing to call Python object ${q} (only NumPy arrays and built-in values are read)`);
}

/** ndarray.__setstate__((version, shape, dtype, is_fortran, rawdata)) and dtype.__setstate__. */
function build(obj: Value, state: Value): void {
  if (obj instanceof ArrayBuilder) {
    if (!Array.isArray(state)) throw new PickleError('ndarray state is not a tuple');
    const st = state.length === 5 ? state.slice(1) : state;
    if (st.length !== 4) throw new PickleError(`ndarray state has ${state.length} items`);
    const [shape, dt, fortran, raw] = st;
    const dtype = dtypeArg(dt, 'ndarray');
    if (Array.isArray(raw)) throw new PickleError('object arrays (dtype=object) are not supported');
    obj.value = arrayFromBytes(dtype, toShape(shape, 'ndarray'), Boolean(fortran), asBytes(raw, 'ndarray data'));
    return;
  }
  if (obj instanceof Dtype) {
    // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
    if (Array.isArray(state) && state.length >= 2) {
      const order = String(state[1]);
      if (state[2] != null || state[3] != null) {
        throw new PickleError('structured or sub-array dtypes are not supported');
      }
      obj.order = order === '>' ? '>' : order === '|' ? '|' : '<';
    }
    return;
  }
  if (obj instanceof Map && state instanceof Map) {
    for (const [k, v] of state) obj.set(k, v);
    return;
  }
  if (state === null || state === undefined) return;
  throw new PickleError(`cannot set the state of ${describe(obj)}`);
}

/**
 * Replace array builders by their arrays, recursively. Shared sub-structures stay shared (a
 * DAG is not expanded into a tree); a structure that contains itself is refused.
 */
function finish(v: Value, done = new Map<unknown, Value>(), open = new Set<unknown>()): Value {
  if (v instanceof ArrayBuilder) {
    if (!v.value) throw new PickleError('ndarray without data');
    return v.value;
  }
  if (!Array.isArray(v) && !(v instanceof Map)) return v;
  const seen = done.get(v);
  if (seen !== undefined) return seen;
  if (open.has(v)) throw new PickleError('the pickle holds a list or dict that contains itself: not an array file');
  open.add(v);
  budget.spend(Array.isArray(v) ? v.length : 2 * v.size);
  let out: Value;
  if (Array.isArray(v)) out = v.map((x) => finish(x, done, open));
  else {
    const m = new Map();
    for (const [k, x] of v) m.set(k, finish(x, done, open));
    out = m;
  }
  open.delete(v);
  done.set(v, out);
  return out;
}

/** Opcodes occmap refuses by name (they load or call arbitrary objects). */
const OPNAMES: Record<number, string> = { 0x50: 'PERSID', 0x51: 'BINPERSID', 0x69: 'INST', 0x6f: 'OBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4' };

/** Run the pickle and return the unpickled value (dicts as Map, lists/tuples as arrays). */
export function unpickle(bytes: Uint8Array): Value {
  budget = new Budget(bytes.length);
  try {
    return run(bytes);
  } catch (err) {
    // Protocol 2+ pickles start with PROTO; anything else that fails is most likely not a
    // pickle at all (text that happens to start with a protocol 0 opcode).
    if (err instanceof PickleError && bytes.length > 0 && bytes[0] !== 0x80 && !/^not a Python pickle/.test(err.message)) {
      throw new PickleError(`not a Python pickle, or a corrupt protocol 0/1 pickle (${err.message})`);
    }
    throw err;
  }
}

/** The pickle machine: its input, stack, marks and memo, and the operand readers opcodes use. */
class Machine {
  pos = 0;
  stack: Value[] = [];
  readonly marks: Value[][] = [];
  readonly memo = new Map<number, Value>();
  readonly view: DataView;
  /** The opcode being run and its byte offset, for error messages. */
  op = 0;
  at = 0;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(n: number): void {
    if (this.pos + n > this.bytes.length) {
      throw new PickleError(`truncated pickle: ended at byte ${this.bytes.length} inside opcode 0x${this.op.toString(16)}`);
    }
  }
  u8(): number {
    this.need(1);
    return this.bytes[this.pos++];
  }
  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  f64be(): number {
    this.need(8);
    const v = this.view.getFloat64(this.pos, false);
    this.pos += 8;
    return v;
  }
  u64(): number {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(this.bytes.length)) throw new PickleError(`truncated pickle: length ${v} beyond the end of the file`);
    return Number(v);
  }
  take(n: number): Uint8Array {
    this.need(n);
    const s = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) throw new PickleError(`truncated pickle: unterminated line in opcode 0x${this.op.toString(16)}`);
    const s = new TextDecoder('latin1').decode(this.bytes.subarray(this.pos, end));
    this.pos = end + 1;
    return s;
  }
  push(v: Value): void {
    this.stack.push(v);
  }
  pop(): Value {
    if (this.stack.length === 0) throw new PickleError(`corrupt pickle: stack underflow at byte ${this.pos}`);
    return this.stack.pop();
  }
  /** The top n values, bottom first. */
  popN(n: number): Value[] {
    if (this.stack.length < n) throw new PickleError(`corrupt pickle: stack underflow at byte ${this.pos}`);
    return this.stack.splice(-n);
  }
  top(): Value {
    if (this.stack.length === 0) throw new PickleError(`corrupt pickle: stack underflow at byte ${this.pos}`);
    return this.stack[this.stack.length - 1];
  }
  /** The items since the last MARK; the stack below it becomes the stack again. */
  popMark(): Value[] {
    const items = this.stack;
    budget.spend(items.length);
    const prev = this.marks.pop();
    if (!prev) throw new PickleError(`corrupt pickle: no MARK before byte ${this.pos}`);
    this.stack = prev;
    return items;
  }
}

type Op = (m: Machine) => void;

const STOP = 0x2e;

function run(bytes: Uint8Array): Value {
  if (bytes.length === 0) throw new PickleError('empty file, expected a Python pickle');
  const m = new Machine(bytes);
  while (true) {
    if (m.pos >= bytes.length) throw new PickleError(`truncated pickle: no STOP opcode before byte ${bytes.length}`);
    m.at = m.pos;
    m.op = bytes[m.pos++];
    budget.spend(1);
    if (m.op === STOP) return finish(m.pop());
    const handler = OPS[m.op];
    if (!handler) throw unknownOpcode(m.op, m.at);
    handler(m);
  }
}

function unknownOpcode(op: number, at: number): PickleError {
  const hex = op.toString(16).padStart(2, '0');
  if (at === 0) return new PickleError(`not a Python pickle (first byte 0x${hex})`);
  return new PickleError(`${OPNAMES[op] ?? 'unknown or unsupported'} opcode 0x${hex} at byte ${at}`);
}

const FRAMING_OPS: Record<number, Op> = {
  0x80: (m) => { // PROTO
    if (m.u8() > 5) throw new PickleError(`unsupported pickle protocol ${m.bytes[m.pos - 1]}`);
  },
  0x95: (m) => void m.u64(), // FRAME: the frame's bytes follow inline
  0x28: (m) => { // MARK
    m.marks.push(m.stack);
    m.stack = [];
  },
  0x30: (m) => void (m.stack.length === 0 ? m.popMark() : m.pop()), // POP
  0x31: (m) => void m.popMark(), // POP_MARK
  0x32: (m) => m.push(m.top()), // DUP
  0x97: () => { // NEXT_BUFFER
    throw new PickleError('out-of-band buffers (pickle protocol 5 buffer_callback) are not supported');
  },
  0x98: () => {}, // READONLY_BUFFER
};

function signedLong(b: Uint8Array, pos: number): number | bigint {
  if (b.length === 0) return 0;
  // Array files hold small integers; a huge one costs quadratic time to decode.
  if (b.length > 1024) throw new PickleError(`an integer of ${b.length} bytes at byte ${pos}: not an array file`);
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return safeNumber(v);
}

function safeNumber(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function decimalLong(s: string, at: number): number | bigint {
  if (s.length > 2500) throw new PickleError(`an integer of ${s.length} digits at byte ${at}: not an array file`);
  try {
    return safeNumber(BigInt(s));
  } catch {
    throw new PickleError(`bad LONG at byte ${at}`);
  }
}

const NUMBER_OPS: Record<number, Op> = {
  0x46: (m) => { // FLOAT
    const v = Number(m.line());
    if (Number.isNaN(v) && !/nan/i.test(String(v))) throw new PickleError(`bad FLOAT at byte ${m.at}`);
    m.push(v);
  },
  0x49: (m) => { // INT
    const s = m.line();
    m.push(s === '01' ? true : s === '00' ? false : Number(s));
  },
  0x4c: (m) => m.push(decimalLong(m.line().replace(/L$/, ''), m.at)), // LONG
  0x4a: (m) => m.push(m.i32()), // BININT
  0x4b: (m) => m.push(m.u8()), // BININT1
  0x4d: (m) => m.push(m.u16()), // BININT2
  0x8a: (m) => m.push(signedLong(m.take(m.u8()), m.pos)), // LONG1
  0x8b: (m) => m.push(signedLong(m.take(m.u32()), m.pos)), // LONG4
  0x47: (m) => m.push(m.f64be()), // BINFLOAT (big-endian)
  0x4e: (m) => m.push(null), // NONE
  0x88: (m) => m.push(true), // NEWTRUE
  0x89: (m) => m.push(false), // NEWFALSE
};

const unicode = (b: Uint8Array): Value => (b.length > LAZY_UNICODE_BYTES ? new LazyUnicode(b) : new TextDecoder().decode(b));

/** A protocol 0 STRING: a Python repr, 'abc' or "abc". */
function reprString(s: string, at: number): ByteStr {
  const m = /^(['"])(.*)\1$/s.exec(s);
  if (!m) throw new PickleError(`bad STRING at byte ${at}`);
  const body = m[2].replace(/\\x([0-9a-fA-F]{2})|\\(['"\\nrt])/g, (_, hex: string, c: string) =>
    hex ? String.fromCharCode(parseInt(hex, 16)) : ({ n: '\n', r: '\r', t: '\t' } as Record<string, string>)[c] ?? c,
  );
  return new ByteStr(latin1(body, 'STRING'));
}

const STRING_OPS: Record<number, Op> = {
  0x53: (m) => m.push(reprString(m.line(), m.at)), // STRING
  0x54: (m) => m.push(new ByteStr(m.take(m.u32()))), // BINSTRING
  0x55: (m) => m.push(new ByteStr(m.take(m.u8()))), // SHORT_BINSTRING
  0x56: (m) => // UNICODE (raw-unicode-escape)
    m.push(m.line().replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a: string, b: string) => String.fromCodePoint(parseInt(a ?? b, 16)))),
  0x58: (m) => m.push(unicode(m.take(m.u32()))), // BINUNICODE
  0x8c: (m) => m.push(unicode(m.take(m.u8()))), // SHORT_BINUNICODE
  0x8d: (m) => m.push(unicode(m.take(m.u64()))), // BINUNICODE8
  0x42: (m) => m.push(m.take(m.u32())), // BINBYTES
  0x43: (m) => m.push(m.take(m.u8())), // SHORT_BINBYTES
  0x8e: (m) => m.push(m.take(m.u64())), // BINBYTES8
  0x96: (m) => m.push(m.take(m.u64())), // BYTEARRAY8
};

function setItems(d: Value, items: Value[]): void {
  if (!(d instanceof Map)) throw new PickleError(`corrupt pickle: SETITEM on ${describe(d)}`);
  for (let i = 0; i + 1 < items.length; i += 2) d.set(asKey(items[i]), items[i + 1]);
}

function appendItems(l: Value, items: Value[]): void {
  if (!Array.isArray(l)) throw new PickleError(`corrupt pickle: APPEND on ${describe(l)}`);
  for (const x of items) l.push(x);
}

/** Pop first: popMark() replaces the stack, so pushing must come after it. */
const markedList: Op = (m) => {
  const items = m.popMark();
  m.push(items);
};

const CONTAINER_OPS: Record<number, Op> = {
  0x29: (m) => m.push([]), // EMPTY_TUPLE
  0x74: markedList, // TUPLE
  0x6c: markedList, // LIST
  0x91: markedList, // FROZENSET
  0x85: (m) => m.push([m.pop()]), // TUPLE1
  0x86: (m) => m.push(m.popN(2)), // TUPLE2
  0x87: (m) => m.push(m.popN(3)), // TUPLE3
  0x5d: (m) => m.push([]), // EMPTY_LIST
  0x61: (m) => { // APPEND
    const x = m.pop();
    appendItems(m.top(), [x]);
  },
  0x65: (m) => { // APPENDS
    const items = m.popMark();
    appendItems(m.top(), items);
  },
  0x7d: (m) => m.push(new Map()), // EMPTY_DICT
  0x64: (m) => { // DICT
    const items = m.popMark();
    const d = new Map();
    setItems(d, items);
    m.push(d);
  },
  0x73: (m) => { // SETITEM
    const v = m.pop();
    const k = m.pop();
    setItems(m.top(), [k, v]);
  },
  0x75: (m) => { // SETITEMS
    const items = m.popMark();
    setItems(m.top(), items);
  },
  0x8f: (m) => m.push([]), // EMPTY_SET
  0x90: (m) => { // ADDITEMS
    const items = m.popMark();
    appendItems(m.top(), items);
  },
};

/** REDUCE, NEWOBJ: pop the arguments, then the callable, push the result of calling it. */
const callOp: Op = (m) => {
  const args = m.pop();
  const fn = m.pop();
  m.push(call(fn, args));
};

const OBJECT_OPS: Record<number, Op> = {
  0x63: (m) => { // GLOBAL
    const module = m.line();
    const name = m.line();
    m.push(new Global(module, name));
  },
  0x93: (m) => { // STACK_GLOBAL
    const name = m.pop();
    const module = m.pop();
    if (typeof name !== 'string' || typeof module !== 'string') throw new PickleError(`corrupt pickle: STACK_GLOBAL names must be strings (byte ${m.at})`);
    m.push(new Global(module, name));
  },
  0x52: callOp, // REDUCE
  0x81: callOp, // NEWOBJ: cls.__new__(cls, *args)
  0x92: (m) => { // NEWOBJ_EX: the keyword arguments are dropped
    m.pop();
    callOp(m);
  },
  0x62: (m) => { // BUILD
    const state = m.pop();
    build(m.top(), state);
  },
};

function memoGet(m: Machine, k: number): void {
  if (!m.memo.has(k)) throw new PickleError(`corrupt pickle: memo key ${k} missing at byte ${m.at}`);
  m.push(m.memo.get(k));
}

const MEMO_OPS: Record<number, Op> = {
  0x94: (m) => void m.memo.set(m.memo.size, m.top()), // MEMOIZE
  0x71: (m) => void m.memo.set(m.u8(), m.top()), // BINPUT
  0x72: (m) => void m.memo.set(m.u32(), m.top()), // LONG_BINPUT
  0x70: (m) => void m.memo.set(Number(m.line()), m.top()), // PUT
  0x68: (m) => memoGet(m, m.u8()), // BINGET
  0x6a: (m) => memoGet(m, m.u32()), // LONG_BINGET
  0x67: (m) => memoGet(m, Number(m.line())), // GET
};

/** Every opcode occmap runs; anything else is refused (see unknownOpcode). */
const OPS: Record<number, Op> = { ...FRAMING_OPS, ...NUMBER_OPS, ...STRING_OPS, ...CONTAINER_OPS, ...OBJECT_OPS, ...MEMO_OPS };

function isNumeric(v: Value): v is number | boolean | bigint {
  return typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint';
}

/** A (possibly nested, rectangular) list of numbers -> float64 or int32 NpyArray. */
function listToArray(v: Value[], what: string): NpyArray {
  const shape: number[] = [];
  let cur: Value = v;
  while (Array.isArray(cur)) {
    if (shape.length >= 32) throw new PickleError(`${what}: lists nested more than 32 deep (or containing themselves)`);
    shape.push(cur.length);
    cur = cur[0];
  }
  // The nested lists may share rows: the expanded array is paid for before it is built.
  budget.spend(numel(shape));
  const flat: number[] = [];
  const walk = (x: Value, d: number) => {
    if (d === shape.length) {
      if (!isNumeric(x)) throw new PickleError(`${what}: list holds ${describe(x)}, expected numbers`);
      flat.push(Number(x));
      return;
    }
    if (!Array.isArray(x) || x.length !== shape[d]) throw new PickleError(`${what}: ragged nested list`);
    for (const y of x) walk(y, d + 1);
  };
  walk(v, 0);
  const ints = flat.every((x) => Number.isInteger(x) && Math.abs(x) < 2 ** 31);
  const data: NumericArray = ints ? Int32Array.from(flat) : Float64Array.from(flat);
  return { dtype: ints ? '<i4' : '<f8', shape, data };
}

function toArray(v: Value, what: string): NpyArray | null {
  if (v && typeof v === 'object' && 'dtype' in v && 'shape' in v && 'data' in v) return v as NpyArray;
  if (Array.isArray(v)) return listToArray(v, what);
  return null;
}

/**
 * The arrays of a HiTS 2013 style pickle: a dict of arrays (every entry that is an array or
 * a list of numbers, by key), or a bare (images, labels) tuple/list, or a single array.
 */
export function readHits2013Pickle(bytes: Uint8Array): Map<string, NpyArray> {
  const root = unpickle(bytes);
  const out = new Map<string, NpyArray>();
  if (root instanceof Map) {
    for (const [k, v] of root) {
      const a = toArray(v, `entry '${String(k)}'`);
      if (a) out.set(String(k), a);
    }
    if (out.size === 0) throw new PickleError(`the pickled dict holds no arrays (keys: ${[...root.keys()].map(String).join(', ')})`);
    return out;
  }
  if (Array.isArray(root) && root.length === 2 && toArray(root[0], 'item 0')?.shape.length) {
    out.set('images', toArray(root[0], 'item 0')!);
    const labels = toArray(root[1], 'item 1');
    if (labels) out.set('labels', labels);
    return out;
  }
  const single = toArray(root, 'pickle');
  if (single) {
    out.set('images', single);
    return out;
  }
  throw new PickleError(`expected a dict of arrays, found ${describe(root)}`);
}
