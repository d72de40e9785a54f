/**
 * The one stamp reader of occmap: bytes of a .npy, .npz, PNG, FITS (optionally gzipped) or
 * JSON nested arrays -> float32 stamps (N,H,W,C) with the same interpretation everywhere (CLI,
 * server, library, browser viewer). Pure functions over Uint8Array, no node: imports, so the
 * browser bundle uses exactly this code; file access lives in stamp-file.ts.
 *
 * What cannot be right is refused (StampError, one line, the caller prefixes the file name):
 * empty dimensions, NaN/Inf, a shape the model cannot take, labels outside its classes, a PNG
 * whose header promises more pixels than allowed (checked before decoding). What may be right
 * is read with a warning saying what was assumed: values outside the training data's range
 * (-9999 sentinels, raw counts, unscaled 0-255), a channel-first stamp transposed to
 * channel-last, an (a,b,c) array that could be one stamp or a stack.
 */
import { gunzipSync } from 'fflate';
import { decode as decodePngBytes } from 'fast-png';
import { parseNpy, toFloat32, numel, type NpyArray } from './npy.js';

export class StampError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StampError';
  }
}

export type StampFormat = 'npy' | 'npz' | 'png' | 'fits' | 'json' | 'pickle';

/** What the consumer of the stamps (a classifier, an explainer) takes. All optional. */
export interface StampExpect {
  /** Image height and width the model takes. */
  h?: number;
  w?: number;
  /** Channel counts accepted (e.g. the data's 4 and the model's own 1). */
  channels?: number[];
  /** Also accepted: any count above this (a model reading data channel k takes any C > k). */
  channelsAbove?: number;
  numClasses?: number;
  classes?: string[];
  /** Value range of the training data, e.g. [0, 1] for per-stamp min-max scaled stamps. */
  range?: [number, number];
  /** Names the model in messages: "the classifier clf". */
  who?: string;
}

export interface StampReadOptions {
  expect?: StampExpect;
  /**
   * 'minmax': scale each channel of each stamp to [0,1] as occmap's datasets are (docs/data.md,
   * step 8), for raw stamps (counts, uint8). 'none' (default): values as stored.
   */
  scale?: 'none' | 'minmax';
  /** Largest image (H*W) a PNG or FITS may declare; checked on the header, before decoding. */
  maxPixels?: number;
}

export interface Stamps {
  images: Float32Array;
  /** [N, H, W, C] */
  shape: [number, number, number, number];
  labels?: Int32Array;
  /** The input was one stamp (a PNG, FITS image, 2-D array, one (H,W,C)). */
  single: boolean;
  format: StampFormat;
  /** What was assumed, one sentence each; callers print them (CLI) or return them (server). */
  warnings: string[];
}

/** Default bound of a PNG/FITS image: far above any survey stamp, far below a memory problem. */
export const DEFAULT_MAX_PIXELS = 4096 * 4096;

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function startsWith(b: Uint8Array, magic: ArrayLike<number>): boolean {
  if (b.length < magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (b[i] !== magic[i]) return false;
  return true;
}

function isFitsText(b: Uint8Array): boolean {
  return startsWith(b, [0x53, 0x49, 0x4d, 0x50, 0x4c, 0x45, 0x20, 0x20, 0x3d]); // "SIMPLE  ="
}

/** The format of `bytes` by content (magic bytes), the file name's extension breaking ties. */
export function sniffFormat(bytes: Uint8Array, name = ''): StampFormat {
  if (startsWith(bytes, PNG_MAGIC)) return 'png';
  if (bytes[0] === 0x93 && startsWith(bytes.subarray(1), [0x4e, 0x55, 0x4d, 0x50, 0x59])) return 'npy';
  if (startsWith(bytes, [0x50, 0x4b])) return 'npz';
  // gzip: FITS is the one gzipped stamp format read (parseFits checks what is inside).
  if (isFitsText(bytes) || startsWith(bytes, [0x1f, 0x8b])) return 'fits';
  if (bytes[0] === 0x80) return 'pickle';
  const first = bytes.find((c) => c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09);
  if (first === 0x5b || first === 0x7b) return 'json';
  const ext = /\.([a-z0-9]+)$/i.exec(name)?.[1]?.toLowerCase();
  if (ext === 'pkl' || ext === 'pickle') return 'pickle';
  if (ext === 'png') return 'png';
  if (ext === 'npy') return 'npy';
  if (ext === 'fits' || ext === 'fit' || ext === 'fts') return 'fits';
  if (ext === 'json') return 'json';
  return 'npz';
}

// ------------------------------------------------------------------------------ shapes

export interface ShapeReading {
  shape: [number, number, number, number];
  single: boolean;
  /** 'chw' / 'nchw': the data is channel-first and must be transposed to channel-last. */
  transpose?: 'chw' | 'nchw';
  warning?: string;
}

const fits = (e: StampExpect | undefined, h: number, w: number): boolean => !e || e.h === undefined || (e.h === h && (e.w ?? h) === w);
const takes = (e: StampExpect | undefined, c: number): boolean =>
  !e?.channels || e.channels.includes(c) || (e.channelsAbove !== undefined && c > e.channelsAbove);
const knowsChannels = (e: StampExpect | undefined): boolean => !!e?.channels && e.h !== undefined;

/**
 * How an array shape reads as stamps, one rule for every client:
 * (H,W) one stamp; (N,H,W,C) a stack; (a,b,c) one (H,W,C) stamp when c is a channel count
 * (<= 4, or one the model takes) and the image fits, else a stack (N,H,W). With a model to fit,
 * a channel-first (C,H,W) / (N,C,H,W) array is transposed (with a warning) when only that
 * reading fits; without one it is read channel-last and flagged when it looks channel-first.
 */
export function interpretShape(dims: readonly number[], expect?: StampExpect): ShapeReading {
  const s = [...dims];
  if (s.some((d) => d === 0)) throw new StampError(`has an empty dimension: shape (${s.join(',')})`);
  if (s.length === 2) return { shape: [1, s[0], s[1], 1], single: true };
  if (s.length === 3) {
    const [a, b, c] = s;
    if (!knowsChannels(expect)) {
      if (c <= 4 && c < b && fits(expect, a, b)) return { shape: [1, a, b, c], single: true };
      if (fits(expect, b, c)) {
        const looksChw = a <= 4 && b === c && b > 4;
        const warning = looksChw ? `shape (${s.join(',')}) read as ${a} single-channel stamps of ${b}x${c}; if it is one channel-first stamp, store it as (${b},${c},${a})` : undefined;
        return { shape: [a, b, c, 1], single: false, warning };
      }
      throw new StampError(`has shape (${s.join(',')}): ${expectText(expect)}`);
    }
    const hwc = fits(expect, a, b) && takes(expect, c);
    const nhw = fits(expect, b, c) && takes(expect, 1);
    const chw = fits(expect, b, c) && takes(expect, a) && a > 1;
    if (hwc) return { shape: [1, a, b, c], single: true };
    if (nhw && chw) {
      throw new StampError(
        `has shape (${s.join(',')}), which could be ${a} single-channel stamps or one channel-first ${a}-channel stamp: store one stamp as (${b},${c},${a}), several as (${a},${b},${c},1)`,
      );
    }
    if (nhw) return { shape: [a, b, c, 1], single: false };
    if (chw) return { shape: [1, b, c, a], single: true, transpose: 'chw', warning: `shape (${s.join(',')}) read as one channel-first stamp (C,H,W) and transposed to (${b},${c},${a})` };
    throw new StampError(`has shape (${s.join(',')}): ${expectText(expect)}`);
  }
  if (s.length === 4) {
    const [n, a, b, c] = s;
    if (fits(expect, a, b) && takes(expect, c)) return { shape: [n, a, b, c], single: false };
    if (knowsChannels(expect) && fits(expect, b, c) && takes(expect, a)) {
      return { shape: [n, b, c, a], single: false, transpose: 'nchw', warning: `shape (${s.join(',')}) read as channel-first stamps (N,C,H,W) and transposed to (${n},${b},${c},${a})` };
    }
    throw new StampError(`has shape (${s.join(',')}): ${expectText(expect)}`);
  }
  throw new StampError(`has shape (${s.join(',')}): expected (H,W), (H,W,C), (N,H,W) or (N,H,W,C)`);
}

function expectText(e: StampExpect | undefined): string {
  if (!e || e.h === undefined) return 'expected (H,W), (H,W,C), (N,H,W) or (N,H,W,C)';
  const c = e.channels ?? [];
  const size = `${e.h}x${e.w ?? e.h}`;
  const above = e.channelsAbove !== undefined ? [`more than ${e.channelsAbove} (it reads data channel ${e.channelsAbove})`] : [];
  const ch = c.length ? ` with ${[...c.map(String), ...above].join(' or ')} channel(s)` : '';
  return `${e.who ?? 'the model'} takes ${size} stamps${ch}: (${e.h},${e.w ?? e.h}${c.length ? `,${c[0]}` : ''}) for one, (N,${e.h},${e.w ?? e.h}${c.length ? `,${c[0]}` : ''}) for several`;
}

/** Channel-first data (C,H,W) or (N,C,H,W) -> channel-last (N,H,W,C). */
export function toChannelLast(data: Float32Array, n: number, h: number, w: number, c: number): Float32Array {
  const out = new Float32Array(data.length);
  const hw = h * w;
  for (let i = 0; i < n; i++) {
    const base = i * hw * c;
    for (let k = 0; k < c; k++) for (let p = 0; p < hw; p++) out[base + p * c + k] = data[base + k * hw + p];
  }
  return out;
}

/** Apply a shape reading to flat data. */
export function applyReading(data: Float32Array, r: ShapeReading): Float32Array {
  if (!r.transpose) return data;
  const [n, h, w, c] = r.shape;
  return toChannelLast(data, n, h, w, c);
}

// ------------------------------------------------------------------------------ values

/**
 * Each channel of each stamp min-max scaled to [0,1] (a flat channel becomes 0): the
 * normalisation of occmap's HiTS 2015 and simulated datasets (docs/data.md step 8, the seed's).
 */
export function minMaxPerStamp(images: Float32Array, shape: readonly [number, number, number, number]): Float32Array {
  const [n, h, w, c] = shape;
  const hw = h * w;
  const out = new Float32Array(images.length);
  for (let i = 0; i < n; i++) {
    const base = i * hw * c;
    for (let k = 0; k < c; k++) {
      let lo = Infinity;
      let hi = -Infinity;
      for (let p = 0; p < hw; p++) {
        const v = images[base + p * c + k];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const span = hi - lo;
      if (span > 0) for (let p = 0; p < hw; p++) out[base + p * c + k] = Math.min(1, Math.max(0, (images[base + p * c + k] - lo) / span));
    }
  }
  return out;
}

const SENTINELS = [-9999, -999, -99, 9999, -32768, 65535, 1e20, -1e20, 1e30, -1e30];

/** One-sentence warnings about values the model was not trained on (none when all fit). */
export function valueWarnings(images: Float32Array, expect: StampExpect | undefined, dtype?: string): string[] {
  const out: string[] = [];
  let lo = Infinity;
  let hi = -Infinity;
  const sentinel = new Map<number, number>();
  for (let i = 0; i < images.length; i++) {
    const v = images[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    if (v <= -99 || v >= 9999) for (const s of SENTINELS) if (v === Math.fround(s)) sentinel.set(s, (sentinel.get(s) ?? 0) + 1);
  }
  for (const [s, count] of sentinel) {
    out.push(`${count} value(s) equal ${s}, which looks like a missing-data sentinel: they were used as pixel values; mask or replace them`);
  }
  const r = expect?.range;
  if (r && images.length > 0) {
    const span = Math.max(r[1] - r[0], 1e-6);
    const tol = 0.1 * span;
    if (lo < r[0] - tol || hi > r[1] + tol) {
      const hint = dtype && /u1|i1/.test(dtype) && hi > 1 ? ' (8-bit values 0-255: divide by 255, or --scale minmax)' : ' (raw values? --scale minmax applies the datasets\' per-stamp scaling)';
      out.push(`values run from ${fmt(lo)} to ${fmt(hi)}, outside the training data's ${fmt(r[0])}..${fmt(r[1])}: read as given, so the model's outputs may be meaningless${hint}`);
    }
  }
  return out;
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toPrecision(4);
}

/** Refuse labels the model cannot have: negative, non-integer or not one of its classes. */
export function checkLabels(labels: ArrayLike<number>, expect: Pick<StampExpect, 'numClasses' | 'classes' | 'who'>): void {
  const k = expect.numClasses ?? expect.classes?.length;
  if (k === undefined) return;
  for (let i = 0; i < labels.length; i++) {
    const v = labels[i];
    if (!(Number.isInteger(v) && v >= 0 && v < k)) {
      const names = expect.classes ? ` (${expect.classes.map((c, j) => `${j} ${c}`).join(', ')})` : '';
      throw new StampError(`label ${v} of stamp ${i} is not a class of ${expect.who ?? 'the model'}: it has ${k} classes, 0..${k - 1}${names}`);
    }
  }
}

function finiteOrThrow(a: Float32Array): void {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) throw new StampError(`holds a NaN/Inf value at element ${i}`);
}

// ------------------------------------------------------------------------------ PNG

export interface PngHeader {
  width: number;
  height: number;
  bitDepth: number;
  colorType: number;
}

/** The IHDR fields of a PNG (first 33 bytes): read before anything is inflated. */
export function pngHeader(bytes: Uint8Array): PngHeader {
  if (!startsWith(bytes, PNG_MAGIC) || bytes.length < 33) throw new StampError('is not a readable PNG (bad signature or truncated header)');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = String.fromCharCode(bytes[12], bytes[13], bytes[14], bytes[15]);
  if (type !== 'IHDR') throw new StampError('is not a readable PNG (no IHDR chunk first)');
  return { width: v.getUint32(16), height: v.getUint32(20), bitDepth: bytes[24], colorType: bytes[25] };
}

/**
 * A greyscale PNG as one (1,H,W,1) stamp, grey / (2^depth - 1). The header's dimensions are
 * checked against `maxPixels` (and the model's size when known) before decoding: a small file
 * can declare a 20000x20000 image that would take gigabytes to inflate.
 */
export function decodePngStamp(bytes: Uint8Array, o: StampReadOptions = {}): Stamps {
  const hd = pngHeader(bytes);
  const max = o.maxPixels ?? DEFAULT_MAX_PIXELS;
  const e = o.expect;
  if (hd.width === 0 || hd.height === 0) throw new StampError(`is an empty ${hd.width}x${hd.height} PNG`);
  if (e?.h !== undefined && (hd.height !== e.h || hd.width !== (e.w ?? e.h))) {
    throw new StampError(`is a ${hd.width}x${hd.height} PNG (width x height); ${e.who ?? 'the model'} takes ${e.w ?? e.h}x${e.h} stamps (not decoded)`);
  }
  if (hd.width * hd.height > max) throw new StampError(`is a ${hd.width}x${hd.height} PNG: more than the ${max} pixels allowed (not decoded)`);
  let png;
  try {
    png = decodePngBytes(bytes);
  } catch (err) {
    throw new StampError(`is not a readable PNG (${(err as Error).message})`);
  }
  const { width: w, height: h, channels } = png;
  const data = png.data as ArrayLike<number>;
  const depth = png.depth ?? hd.bitDepth;
  const palette = png.palette as number[][] | undefined;
  const scale = palette ? 255 : 2 ** depth - 1;
  const images = new Float32Array(h * w);
  for (let p = 0; p < h * w; p++) {
    let grey: number;
    if (palette) {
      const [r, g, b] = palette[data[p]] ?? [0, 0, 0];
      if (r !== g || g !== b) throw new StampError(`is a colour PNG (pixel ${p % w},${Math.floor(p / w)}); stamps are single-channel (greyscale) PNGs`);
      grey = r;
    } else if (channels >= 3) {
      const [r, g, b] = [data[p * channels], data[p * channels + 1], data[p * channels + 2]];
      if (r !== g || g !== b) throw new StampError(`is a colour PNG (pixel ${p % w},${Math.floor(p / w)}); stamps are single-channel (greyscale) PNGs`);
      grey = r;
    } else grey = data[p * channels];
    images[p] = grey / scale;
  }
  return { images, shape: [1, h, w, 1], single: true, format: 'png', warnings: [] };
}

// ------------------------------------------------------------------------------ FITS

const FITS_BLOCK = 2880;

function fitsCards(bytes: Uint8Array): { cards: Map<string, string>; dataStart: number } {
  const cards = new Map<string, string>();
  for (let off = 0; off + 80 <= bytes.length; off += 80) {
    let card = '';
    for (let i = 0; i < 80; i++) card += String.fromCharCode(bytes[off + i]);
    const key = card.slice(0, 8).trim();
    if (key === 'END') return { cards, dataStart: Math.ceil((off + 80) / FITS_BLOCK) * FITS_BLOCK };
    if (card.slice(8, 10) === '= ') {
      let value = card.slice(10);
      const quoted = /^\s*'((?:[^']|'')*)'/.exec(value);
      value = quoted ? quoted[1].replace(/''/g, "'").trim() : value.split('/')[0].trim();
      if (!cards.has(key)) cards.set(key, value);
    }
    if (off > 2880 * 100) break;
  }
  throw new StampError('is not a readable FITS file (no END card in the primary header)');
}

/**
 * The primary HDU image of a FITS file (or a gzipped one): BITPIX 8/16/32/-32/-64 (64 too),
 * BSCALE/BZERO applied, BLANK pixels of integer images refused. NAXIS1 is the fastest axis
 * (x), so (NAXIS2, NAXIS1) = (H, W); a third axis is read as channels or a stack, by the same
 * rule as arrays (a FITS cube is usually (NAXIS3, H, W), i.e. channel- or stamp-first).
 */
export function parseFits(raw: Uint8Array, o: StampReadOptions = {}): { array: Float32Array; dims: number[]; dtype: string } {
  let bytes = raw;
  if (startsWith(raw, [0x1f, 0x8b])) {
    try {
      bytes = gunzipSync(raw);
    } catch (err) {
      throw new StampError(`is a corrupt gzip file (${(err as Error).message})`);
    }
    if (!isFitsText(bytes)) throw new StampError('is gzip-compressed but not a FITS file inside');
  }
  if (!isFitsText(bytes)) throw new StampError('is not a FITS file (no SIMPLE card)');
  const { cards, dataStart } = fitsCards(bytes);
  const int = (k: string): number => {
    const v = Number(cards.get(k));
    if (!Number.isInteger(v)) throw new StampError(`FITS header: ${k} missing or not an integer`);
    return v;
  };
  const bitpix = int('BITPIX');
  const naxis = int('NAXIS');
  if (naxis === 0) throw new StampError('has no image in its primary HDU (NAXIS = 0); images in extensions are not read');
  if (naxis > 4) throw new StampError(`FITS image with NAXIS = ${naxis}: at most 4 axes are read`);
  const axes = Array.from({ length: naxis }, (_, i) => int(`NAXIS${i + 1}`));
  const dims = [...axes].reverse(); // C order: slowest axis first
  // Drop trailing degenerate axes beyond 2 (e.g. NAXIS3 = 1).
  while (dims.length > 2 && dims[0] === 1) dims.shift();
  if (dims.some((d) => d <= 0)) throw new StampError(`has an empty dimension: FITS axes (${axes.join(',')})`);
  const n = numel(dims);
  const h = dims[dims.length - 2];
  const w = dims[dims.length - 1];
  if (h * w > (o.maxPixels ?? DEFAULT_MAX_PIXELS)) throw new StampError(`is a ${w}x${h} FITS image: more than the ${o.maxPixels ?? DEFAULT_MAX_PIXELS} pixels allowed (not read)`);
  const size = Math.abs(bitpix) / 8;
  if (![8, 16, 32, 64, -32, -64].includes(bitpix)) throw new StampError(`FITS BITPIX ${bitpix} is not a valid value`);
  if (dataStart + n * size > bytes.length) throw new StampError(`FITS data truncated: ${n * size} bytes expected after the header, ${Math.max(0, bytes.length - dataStart)} found`);
  const bscale = cards.has('BSCALE') ? Number(cards.get('BSCALE')) : 1;
  const bzero = cards.has('BZERO') ? Number(cards.get('BZERO')) : 0;
  if (!Number.isFinite(bscale) || !Number.isFinite(bzero)) throw new StampError('FITS BSCALE/BZERO are not numbers');
  const blank = bitpix > 0 && cards.has('BLANK') ? Number(cards.get('BLANK')) : undefined;
  const v = new DataView(bytes.buffer, bytes.byteOffset + dataStart, n * size);
  const out = new Float32Array(n);
  let blanks = 0;
  for (let i = 0; i < n; i++) {
    const off = i * size;
    let x: number;
    switch (bitpix) {
      case 8: x = v.getUint8(off); break;
      case 16: x = v.getInt16(off); break; // FITS is big-endian
      case 32: x = v.getInt32(off); break;
      case 64: x = Number(v.getBigInt64(off)); break;
      case -32: x = v.getFloat32(off); break;
      default: x = v.getFloat64(off);
    }
    if (blank !== undefined && x === blank) blanks++;
    out[i] = bzero + bscale * x;
  }
  if (blanks > 0) throw new StampError(`holds ${blanks} BLANK (undefined) pixel(s): replace them before explaining`);
  return { array: out, dims, dtype: bitpix === 8 ? '|u1' : bitpix > 0 ? `>i${size}` : `>f${size}` };
}

// ------------------------------------------------------------------------------ JSON

/** Nested JSON arrays -> flat float32 and shape; rectangular, numbers only. */
export function flattenNested(v: unknown, what = 'the array'): { data: Float32Array; shape: number[] } {
  const shape: number[] = [];
  let probe: unknown = v;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    if (probe.length === 0 || shape.length > 4) break;
    probe = probe[0];
  }
  if (shape.length < 2 || shape.length > 4) throw new StampError(`${what} must be a 2-D, 3-D or 4-D nested array of numbers`);
  const total = numel(shape);
  if (total > 1 << 22) throw new StampError(`${what} is too large (${shape.join('x')})`);
  const data = new Float32Array(total);
  let k = 0;
  const walk = (node: unknown, depth: number, at: string): void => {
    if (depth === shape.length) {
      if (typeof node !== 'number') throw new StampError(`${what}${at} is ${node === null ? 'null' : typeof node}, expected a number`);
      if (!Number.isFinite(node)) throw new StampError(`${what}${at} is not finite`);
      data[k++] = node;
      return;
    }
    if (!Array.isArray(node) || node.length !== shape[depth]) {
      throw new StampError(`${what}${at} is not a list of ${shape[depth]} (the array must be rectangular, shape ${shape.join('x')})`);
    }
    for (let i = 0; i < node.length; i++) walk(node[i], depth + 1, `${at}[${i}]`);
  };
  walk(v, 0, '');
  return { data, shape };
}

// ------------------------------------------------------------------------------ the reader

/** Stamps from a numeric array and its shape, by the one shape rule, checked and warned. */
export function stampsFromArray(data: Float32Array, dims: readonly number[], format: StampFormat, o: StampReadOptions = {}, dtype?: string): Stamps {
  const reading = interpretShape(dims, o.expect);
  if (data.length !== numel(reading.shape)) throw new StampError(`holds ${data.length} values for shape (${dims.join(',')})`);
  finiteOrThrow(data);
  let images = applyReading(data, reading);
  const warnings: string[] = reading.warning ? [reading.warning] : [];
  if (o.scale === 'minmax') images = minMaxPerStamp(images, reading.shape);
  else warnings.push(...valueWarnings(images, o.expect, dtype));
  return { images, shape: reading.shape, single: reading.single, format, warnings };
}

function numericFrom(a: NpyArray): Float32Array {
  try {
    return toFloat32(a);
  } catch {
    throw new StampError(`has non-numeric dtype ${a.dtype}`);
  }
}

/**
 * Read stamps from bytes of any supported single-array format (.npy, PNG, FITS, JSON). .npz
 * and pickles are datasets: stamp-file.ts reads them through the dataset reader and then
 * `checkStamps`. `name` only breaks ties between formats (its extension).
 */
export function readStampBytes(bytes: Uint8Array, name: string, o: StampReadOptions = {}): Stamps {
  const format = sniffFormat(bytes, name);
  switch (format) {
    case 'png':
      return checked(decodePngStamp(bytes, o), o);
    case 'npy': {
      let a: NpyArray;
      try {
        a = parseNpy(bytes);
      } catch (err) {
        throw new StampError((err as Error).message);
      }
      return checked(stampsFromArray(numericFrom(a), a.shape, 'npy', o, a.dtype), o);
    }
    case 'fits': {
      const f = parseFits(bytes, o);
      return checked(stampsFromArray(f.array, f.dims, 'fits', o, f.dtype), o);
    }
    case 'json': {
      let v: unknown;
      try {
        v = JSON.parse(new TextDecoder().decode(bytes));
      } catch (err) {
        throw new StampError(`is not valid JSON (${(err as Error).message})`);
      }
      const body = v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : { image: v };
      const { data, shape } = flattenNested(body.image ?? body.images, '"image"');
      const st = stampsFromArray(data, shape, 'json', o);
      if (body.label !== undefined || body.labels !== undefined) {
        const raw = body.labels ?? body.label;
        const list = Array.isArray(raw) ? raw : [raw];
        if (!list.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) throw new StampError('"label(s)" must be non-negative integers');
        if (list.length !== st.shape[0]) throw new StampError(`has ${list.length} label(s) for ${st.shape[0]} stamp(s)`);
        st.labels = Int32Array.from(list as number[]);
      }
      return checked(st, o);
    }
    default:
      throw new StampError(`is a ${format === 'npz' ? '.npz archive' : 'pickle'}: read it with the dataset reader`);
  }
}

function checked(st: Stamps, o: StampReadOptions): Stamps {
  checkStamps(st, o.expect);
  return st;
}

/** The checks every client makes once the stamps are read: size, channels, labels. */
export function checkStamps(st: Pick<Stamps, 'shape' | 'labels'>, expect: StampExpect | undefined): void {
  if (!expect) return;
  const [n, h, w, c] = st.shape;
  if (expect.h !== undefined && (h !== expect.h || w !== (expect.w ?? expect.h))) {
    throw new StampError(`holds ${h}x${w} stamps; ${expectText(expect)}`);
  }
  if (expect.channels && !takes(expect, c)) {
    throw new StampError(`holds stamps with ${c} channel(s) (${n} of ${h}x${w}x${c}); ${expectText(expect)}`);
  }
  if (st.labels) checkLabels(st.labels, expect);
}

/** Value range of a set of images, recorded in model cards (`data.range`) for the checks above. */
export function valueRange(images: ArrayLike<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < images.length; i++) {
    if (images[i] < lo) lo = images[i];
    if (images[i] > hi) hi = images[i];
  }
  return [lo, hi];
}

const SCALED_SOURCES = new Set(['hits2015', 'simulate', 'simulated']);

/**
 * What a classifier or explainer card says its stamps look like: size (the data's, before
 * any padding inside the model), channel counts (its own, and its data's when it reads a
 * subset), classes and the training data's value range (recorded `data.range`, else [0,1]
 * for occmap's own min-max scaled datasets, else unknown).
 */
export function expectFromCard(card: Record<string, unknown>, who: string): StampExpect {
  const arr = (v: unknown): number[] | undefined => (Array.isArray(v) && v.every((x) => typeof x === 'number') ? (v as number[]) : undefined);
  const obj = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
  const data = { ...obj(card.data), ...obj(card.dataInfo) };
  const input = arr(card.inputShape);
  const size = arr(card.imageSize) ?? input;
  const sel = arr(card.channels);
  const modelC = sel?.length ?? input?.[2];
  const dataC = arr(data.shape)?.[3];
  const channels = [...new Set([modelC, sel ? dataC : undefined].filter((c): c is number => typeof c === 'number' && c > 0))];
  // Data channels it reads by index: without the data's channel count, any count holding them.
  const channelsAbove = sel && dataC === undefined ? Math.max(...sel) : undefined;
  const range = arr(data.range);
  const source = typeof data.source === 'string' ? data.source : undefined;
  const classes = Array.isArray(card.classes) ? (card.classes as unknown[]).map(String) : undefined;
  return {
    h: size?.[0],
    w: size?.[1],
    channels: channels.length ? channels : undefined,
    channelsAbove,
    numClasses: typeof card.numClasses === 'number' ? card.numClasses : classes?.length,
    classes,
    range: range?.length === 2 ? [range[0], range[1]] : source && SCALED_SOURCES.has(source) ? [0, 1] : undefined,
    who,
  };
}
