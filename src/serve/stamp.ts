/**
 * One stamp from an HTTP request body (.npy bytes, a greyscale PNG, or JSON nested arrays), and
 * the checks that it fits the loaded models. Every problem is an HttpError with a 4xx status
 * and a one-line message; nothing here touches a model.
 */
import { decodePngStamp, flattenNested as flattenNestedCore, readStampBytes, stampsFromArray, StampError, type Stamps } from '../data/stamps.js';

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

const bad = (message: string): HttpError => new HttpError(400, message);
const unfit = (message: string): HttpError => new HttpError(422, message);

export interface Stamp {
  /** H*W*C float32, HWC order. */
  image: Float32Array;
  h: number;
  w: number;
  c: number;
  /** What the reader assumed (data/stamps.ts), returned with the answer. */
  warnings?: string[];
}

/** What the models expect: image size, and the channel counts a stamp may come in. */
export interface StampSpec {
  h: number;
  w: number;
  /** Channels the classifier itself takes (a stamp already reduced to them). */
  modelChannels: number;
  /** Dataset channels the classifier reads, when it reads a subset of the data's channels. */
  dataChannels?: readonly number[];
  /** Channel count of the loaded dataset (--data), when there is one. */
  datasetChannels?: number;
}

/** How a stamp's channels relate to the classifier: all the data's channels, or the model's own. */
export type ChannelKind = 'data' | 'model';

/** A stamps.ts error as an HTTP 400 (unreadable) or 422 (readable, but not for these models). */
function httpOf(err: unknown, what: string): unknown {
  if (!(err instanceof StampError)) return err;
  const m = err.message;
  const status = /takes \d+x\d+ stamps|is a \d+x\d+ PNG/.test(m) ? 422 : 400;
  return new HttpError(status, `${what} ${m}`);
}

/**
 * A single stamp from an array shape, read by the one shape rule of data/stamps.ts (the CLI
 * and the library read files the same way): (H,W), (H,W,C), (1,H,W) or (1,H,W,C).
 */
export function stampFromArray(data: Float32Array, shape: readonly number[], spec: Pick<StampSpec, 'h' | 'w'>, what = 'the stamp'): Stamp {
  let st;
  try {
    // The shape rule first without the models (checkStamp then names what they accept); a
    // reading that fits the models' size wins when the shape allows both.
    st = stampsFromArray(data, shape, 'npy');
    if (st.shape[1] !== spec.h || st.shape[2] !== spec.w) {
      try {
        st = stampsFromArray(data, shape, 'npy', { expect: { h: spec.h, w: spec.w } });
      } catch {
        // keep the first reading: checkStamp explains the mismatch
      }
    }
  } catch (err) {
    throw httpOf(err, what);
  }
  return single(st, shape, what);
}

/**
 * A single stamp from a file's bytes, in every format the CLI reads (.npy, PNG up to 16 bits,
 * FITS and .fits.gz, JSON), told apart by name and magic bytes: the page's uploads.
 */
export function stampFromFile(bytes: Uint8Array, name: string, spec: Pick<StampSpec, 'h' | 'w'>): Stamp {
  let st;
  try {
    st = readStampBytes(bytes, name);
    if (st.shape[1] !== spec.h || st.shape[2] !== spec.w) {
      try {
        st = readStampBytes(bytes, name, { expect: { h: spec.h, w: spec.w } });
      } catch {
        // keep the first reading: checkStamp explains the mismatch
      }
    }
  } catch (err) {
    throw httpOf(err, 'the file');
  }
  return single(st, st.shape, 'the file');
}

function single(st: Stamps, shape: readonly number[], what: string): Stamp {
  const [n, h, w, c] = st.shape;
  if (n !== 1) throw bad(`${what} has shape (${shape.join(',')}): one stamp per request, expected (H,W), (H,W,C) or (1,H,W,C)`);
  return { image: st.images, h, w, c, ...(st.warnings.length ? { warnings: st.warnings } : {}) };
}

export function stampFromNpy(bytes: Uint8Array, spec: Pick<StampSpec, 'h' | 'w'>): Stamp {
  let st;
  try {
    st = readStampBytes(bytes, 'body.npy');
  } catch (err) {
    if (err instanceof StampError && !/has shape|takes/.test(err.message)) throw bad(`body is not a readable .npy array (${err.message})`);
    throw httpOf(err, 'the .npy array');
  }
  if (st.shape[1] !== spec.h || st.shape[2] !== spec.w) {
    try {
      st = readStampBytes(bytes, 'body.npy', { expect: { h: spec.h, w: spec.w } });
    } catch {
      // keep the first reading: checkStamp explains the mismatch
    }
  }
  return single(st, st.shape, 'the .npy array');
}

/**
 * A greyscale PNG stamp. Its header's size is checked against the models' before anything is
 * inflated: a small body can declare a 20000x20000 image (gigabytes once decoded).
 */
export function stampFromPng(bytes: Uint8Array, spec?: Pick<StampSpec, 'h' | 'w'>): Stamp {
  try {
    const st = decodePngStamp(bytes, { expect: spec ? { h: spec.h, w: spec.w } : undefined, maxPixels: spec ? spec.h * spec.w : undefined });
    return single(st, st.shape, 'the PNG');
  } catch (err) {
    throw httpOf(err, 'the PNG');
  }
}

/** Nested JSON arrays -> flat float32 and shape; rectangular, numbers only. */
export function flattenNested(v: unknown, what: string): { data: Float32Array; shape: number[] } {
  try {
    return flattenNestedCore(v, what);
  } catch (err) {
    if (err instanceof StampError) throw bad(err.message);
    throw err;
  }
}

export interface JsonStamp {
  stamp: Stamp;
  label?: number;
}

export function stampFromJson(body: unknown, spec: Pick<StampSpec, 'h' | 'w'>): JsonStamp {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw bad('JSON body must be an object {"image": [[...]], "label"?: k}');
  const o = body as Record<string, unknown>;
  if (!('image' in o)) throw bad('JSON body has no "image"');
  const { data, shape } = flattenNested(o.image, '"image"');
  const stamp = stampFromArray(data, shape, spec, '"image"');
  const label = o.label === undefined || o.label === null ? undefined : parseLabel(o.label, '"label"');
  return { stamp, label };
}

/** A class index from JSON or a query string (range checked later against the model). */
export function parseLabel(v: unknown, what: string): number {
  const n = typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw bad(`${what} must be a non-negative integer class, got ${JSON.stringify(v)}`);
  return n;
}

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47];

export type BodyKind = 'npy' | 'png';

/** Which binary parser a request body gets: the content type, or PNG's magic bytes. */
export function binaryKind(contentType: string, bytes: Uint8Array): BodyKind {
  const isPng = bytes.length >= 4 && PNG_MAGIC.every((m, i) => bytes[i] === m);
  if (contentType.startsWith('image/png')) return 'png';
  return isPng ? 'png' : 'npy';
}

/**
 * Whether the stamp holds the data's channels or the classifier's own; a 422 naming both
 * acceptable shapes when neither fits.
 */
export function checkStamp(s: Stamp, spec: StampSpec): ChannelKind {
  const { h, w, modelChannels: mc, dataChannels: dc, datasetChannels: nc } = spec;
  const accepted = [
    `${h}x${w}x${mc} (the classifier's channel${mc === 1 ? '' : 's'})`,
    ...(nc !== undefined && nc !== mc && (!dc || dc.every((k) => k < nc)) ? [`${h}x${w}x${nc} (the dataset's channels)`] : []),
    ...(nc === undefined && dc ? [`${h}x${w}xC with C > ${Math.max(...dc)} (data channels; the classifier reads [${dc.join(',')}])`] : []),
  ];
  const expected = `expected ${accepted.join(' or ')}`;
  if (s.h !== h || s.w !== w) throw unfit(`the stamp is ${s.h}x${s.w}x${s.c}; ${expected}`);
  if (nc !== undefined && s.c === nc && (!dc || dc.every((k) => k < nc))) return 'data';
  if (s.c === mc) return 'model';
  if (nc === undefined && dc && dc.every((k) => k < s.c)) return 'data';
  throw unfit(`the stamp has ${s.c} channel(s) (${s.h}x${s.w}x${s.c}); ${expected}`);
}

/** (H*W) row-major -> H rows of W numbers, for JSON. */
export function toRows(a: ArrayLike<number>, h: number, w: number): number[][] {
  const out: number[][] = [];
  for (let y = 0; y < h; y++) out.push(Array.from({ length: w }, (_, x) => a[y * w + x]));
  return out;
}

/** (H*W*C) HWC -> H x W x C nested lists, for JSON. */
export function toNested(a: ArrayLike<number>, h: number, w: number, c: number): number[][][] {
  const out: number[][][] = [];
  for (let y = 0; y < h; y++) {
    const row: number[][] = [];
    for (let x = 0; x < w; x++) row.push(Array.from({ length: c }, (_, k) => a[(y * w + x) * c + k]));
    out.push(row);
  }
  return out;
}
