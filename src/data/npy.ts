/**
 * NumPy `.npy` arrays (format versions 1.0-3.0), read and written without Python.
 * Only C-contiguous output is written; Fortran-ordered and big-endian input is converted.
 */

export type NumericArray =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

export interface NpyArray {
  /** numpy dtype string as written in the header, normalised to little-endian, e.g. '<f4', '<U9'. */
  dtype: string;
  shape: number[];
  /** Numbers for numeric dtypes, strings for unicode ('<U') and byte-string ('|S') dtypes. */
  data: NumericArray | string[];
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

interface NumericKind {
  size: number;
  make: (buf: ArrayBuffer, offset: number, length: number) => NumericArray;
}

const NUMERIC: Record<string, NumericKind> = {
  f4: { size: 4, make: (b, o, n) => new Float32Array(b, o, n) },
  f8: { size: 8, make: (b, o, n) => new Float64Array(b, o, n) },
  i1: { size: 1, make: (b, o, n) => new Int8Array(b, o, n) },
  u1: { size: 1, make: (b, o, n) => new Uint8Array(b, o, n) },
  b1: { size: 1, make: (b, o, n) => new Uint8Array(b, o, n) },
  i2: { size: 2, make: (b, o, n) => new Int16Array(b, o, n) },
  u2: { size: 2, make: (b, o, n) => new Uint16Array(b, o, n) },
  i4: { size: 4, make: (b, o, n) => new Int32Array(b, o, n) },
  u4: { size: 4, make: (b, o, n) => new Uint32Array(b, o, n) },
  i8: { size: 8, make: (b, o, n) => new BigInt64Array(b, o, n) },
  u8: { size: 8, make: (b, o, n) => new BigUint64Array(b, o, n) },
};

export class NpyFormatError extends Error {}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function parseHeader(text: string): { descr: string; fortran: boolean; shape: number[] } {
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(text);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) {
    if (/'descr'\s*:\s*\[/.test(text)) throw new NpyFormatError('structured dtypes are not supported');
    throw new NpyFormatError(`malformed .npy header ${JSON.stringify(text.slice(0, 80))}`);
  }
  const dims = shape[1]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => Number(s.replace(/L$/, '')));
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) throw new NpyFormatError(`bad shape (${shape[1]})`);
  return { descr: descr[1], fortran: fortran[1] === 'True', shape: dims };
}

/** Permute a Fortran-ordered flat array into C order. */
function fortranToC<T extends { length: number; [i: number]: any }>(src: T, dst: T, shape: number[]): T {
  const nd = shape.length;
  const n = numel(shape);
  const fStride = new Array(nd);
  let s = 1;
  for (let d = 0; d < nd; d++) {
    fStride[d] = s;
    s *= shape[d];
  }
  const idx = new Array(nd).fill(0);
  for (let i = 0; i < n; i++) {
    let f = 0;
    for (let d = 0; d < nd; d++) f += idx[d] * fStride[d];
    dst[i] = src[f];
    for (let d = nd - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return dst;
}

export function parseNpy(bytes: Uint8Array): NpyArray {
  if (bytes.length < 10 || !MAGIC.every((m, i) => bytes[i] === m)) {
    throw new NpyFormatError('not a .npy file (bad magic bytes)');
  }
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let headerStart: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new NpyFormatError('truncated .npy header');
    headerLen = view.getUint32(8, true);
    headerStart = 12;
  } else {
    throw new NpyFormatError(`unsupported .npy format version ${major}`);
  }
  if (headerStart + headerLen > bytes.length) throw new NpyFormatError('truncated .npy header');
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(
    bytes.subarray(headerStart, headerStart + headerLen),
  );
  const { descr, fortran, shape } = parseHeader(header);
  const n = numel(shape);
  const dataStart = headerStart + headerLen;
  if (/^[<>|=]?O/.test(descr)) throw new NpyFormatError('object arrays (pickled) are not supported');
  const m = /^([<>|=])([a-zA-Z])(\d+)$/.exec(descr);
  if (!m) throw new NpyFormatError(`unsupported dtype '${descr}'`);
  const [, order, kindChar, sizeStr] = m;
  const bigEndian = order === '>';
  const itemSize = Number(sizeStr);

  if (kindChar === 'U' || kindChar === 'S') {
    const charBytes = kindChar === 'U' ? 4 : 1;
    const width = itemSize * charBytes;
    if (dataStart + n * width > bytes.length) throw new NpyFormatError(`truncated data: expected ${n * width} bytes`);
    const out: string[] = new Array(n);
    for (let i = 0; i < n; i++) {
      let s = '';
      for (let c = 0; c < itemSize; c++) {
        const off = dataStart + i * width + c * charBytes;
        const code = charBytes === 4 ? view.getUint32(off, !bigEndian) : bytes[off];
        if (code === 0) break;
        s += String.fromCodePoint(code);
      }
      out[i] = s;
    }
    const data = fortran && shape.length > 1 ? fortranToC(out, new Array(n), shape) : out;
    return { dtype: `<${kindChar}${itemSize}`, shape, data };
  }

  const key = `${kindChar}${itemSize}`;
  const kind = NUMERIC[key];
  if (!kind) {
    if (kindChar === 'O') throw new NpyFormatError('object arrays (pickled) are not supported');
    throw new NpyFormatError(`unsupported dtype '${descr}'`);
  }
  const nbytes = n * kind.size;
  if (dataStart + nbytes > bytes.length) {
    throw new NpyFormatError(`truncated data: expected ${nbytes} bytes, found ${bytes.length - dataStart}`);
  }
  // Copy into a fresh aligned buffer: the source may sit at any offset inside a zip.
  const buf = new ArrayBuffer(nbytes);
  const raw = new Uint8Array(buf);
  raw.set(bytes.subarray(dataStart, dataStart + nbytes));
  if (bigEndian && kind.size > 1) {
    for (let i = 0; i < nbytes; i += kind.size) raw.subarray(i, i + kind.size).reverse();
  }
  let data = kind.make(buf, 0, n);
  if (fortran && shape.length > 1) {
    data = fortranToC(data, kind.make(new ArrayBuffer(nbytes), 0, n), shape);
  }
  return { dtype: `${kind.size === 1 ? '|' : '<'}${key}`, shape, data };
}

function dtypeOf(data: NumericArray | string[]): string {
  if (Array.isArray(data)) {
    const width = Math.max(1, ...data.map((s) => [...s].length));
    return `<U${width}`;
  }
  if (data instanceof Float32Array) return '<f4';
  if (data instanceof Float64Array) return '<f8';
  if (data instanceof Int32Array) return '<i4';
  if (data instanceof Uint32Array) return '<u4';
  if (data instanceof Int16Array) return '<i2';
  if (data instanceof Uint16Array) return '<u2';
  if (data instanceof Int8Array) return '|i1';
  if (data instanceof Uint8Array) return '|u1';
  if (data instanceof BigInt64Array) return '<i8';
  if (data instanceof BigUint64Array) return '<u8';
  throw new Error('unsupported array type');
}

/** Serialise an array as a version 1.0 `.npy` (header padded so data starts 64-byte aligned). */
export function serializeNpy(data: NumericArray | string[], shape: readonly number[]): Uint8Array {
  if (numel(shape) !== data.length) {
    throw new Error(`shape (${shape.join(',')}) does not match ${data.length} elements`);
  }
  const dtype = dtypeOf(data);
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${dtype}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  let body: Uint8Array;
  if (Array.isArray(data)) {
    const width = Number(dtype.slice(2));
    body = new Uint8Array(data.length * width * 4);
    const dv = new DataView(body.buffer);
    data.forEach((s, i) => {
      [...s].forEach((ch, c) => dv.setUint32((i * width + c) * 4, ch.codePointAt(0)!, true));
    });
  } else {
    body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  const out = new Uint8Array(10 + header.length + body.length);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(body, 10 + header.length);
  return out;
}

/** Any numeric array as float32 (the dtype every model here consumes). */
export function toFloat32(a: NpyArray): Float32Array {
  if (a.data instanceof Float32Array) return a.data;
  if (Array.isArray(a.data)) throw new NpyFormatError(`dtype ${a.dtype} is not numeric`);
  const out = new Float32Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = Number(a.data[i]);
  return out;
}
