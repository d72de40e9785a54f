/**
 * One stamp from an HTTP request body (.npy bytes, a greyscale PNG, or JSON nested arrays), and
 * the checks that it fits the loaded models. Every problem is an HttpError with a 4xx status
 * and a one-line message; nothing here touches a model.
 */
import { parseNpy, toFloat32 } from '../data/npy.js';

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

function finiteCheck(a: Float32Array, what: string): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) throw bad(`${what} holds a NaN/Inf value at element ${i}`);
  }
}

/**
 * A single stamp from an array shape: (H,W), (H,W,C), (1,H,W) or (1,H,W,C). (1,H,W) and
 * (H,W,C) differ only when the first axis is 1, so a leading 1 followed by the expected
 * image size reads as (1,H,W).
 */
export function stampFromArray(data: Float32Array, shape: readonly number[], spec: Pick<StampSpec, 'h' | 'w'>, what = 'the stamp'): Stamp {
  const s = shape;
  let dims: [number, number, number];
  if (s.length === 2) dims = [s[0], s[1], 1];
  else if (s.length === 3 && s[0] === 1 && s[1] === spec.h && s[2] === spec.w) dims = [s[1], s[2], 1];
  else if (s.length === 3) dims = [s[0], s[1], s[2]];
  else if (s.length === 4 && s[0] === 1) dims = [s[1], s[2], s[3]];
  else if (s.length === 4) throw bad(`${what} has shape (${s.join(',')}): one stamp per request, expected (H,W), (H,W,C) or (1,H,W,C)`);
  else throw bad(`${what} has shape (${s.join(',')}); expected (H,W), (H,W,C) or (1,H,W,C)`);
  if (dims.some((d) => d === 0)) throw bad(`${what} has an empty shape (${s.join(',')})`);
  if (data.length !== dims[0] * dims[1] * dims[2]) throw new Error(`stampFromArray: ${data.length} values for shape (${s.join(',')})`);
  finiteCheck(data, what);
  return { image: data, h: dims[0], w: dims[1], c: dims[2] };
}

export function stampFromNpy(bytes: Uint8Array, spec: Pick<StampSpec, 'h' | 'w'>): Stamp {
  let a;
  try {
    a = parseNpy(bytes);
  } catch (err) {
    throw bad(`body is not a readable .npy array (${(err as Error).message})`);
  }
  let data: Float32Array;
  try {
    data = toFloat32(a);
  } catch {
    throw bad(`the .npy array has non-numeric dtype ${a.dtype}`);
  }
  return stampFromArray(data, a.shape, spec, 'the .npy array');
}

/** Nested JSON arrays -> flat float32 and shape; rectangular, numbers only. */
export function flattenNested(v: unknown, what: string): { data: Float32Array; shape: number[] } {
  const shape: number[] = [];
  let probe: unknown = v;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    if (probe.length === 0) break;
    probe = probe[0];
  }
  if (shape.length < 2 || shape.length > 4) throw bad(`${what} must be a 2-D [[...]] or 3-D [[[...]]] array of numbers`);
  const total = shape.reduce((a, b) => a * b, 1);
  if (total > 1 << 22) throw bad(`${what} is too large (${shape.join('x')})`);
  const data = new Float32Array(total);
  let k = 0;
  const walk = (node: unknown, depth: number, at: string): void => {
    if (depth === shape.length) {
      if (typeof node !== 'number') throw bad(`${what}${at} is ${node === null ? 'null' : typeof node}, expected a number`);
      if (!Number.isFinite(node)) throw bad(`${what}${at} is not finite`);
      data[k++] = node;
      return;
    }
    if (!Array.isArray(node) || node.length !== shape[depth]) {
      throw bad(`${what}${at} is not a list of ${shape[depth]} (the array must be rectangular, shape ${shape.join('x')})`);
    }
    for (let i = 0; i < node.length; i++) walk(node[i], depth + 1, `${at}[${i}]`);
  };
  walk(v, 0, '');
  return { data, shape };
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
    ...(nc !== undefined && nc !== mc ? [`${h}x${w}x${nc} (the dataset's channels)`] : []),
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
