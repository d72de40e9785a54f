/**
 * The one image-batch type of the public API, and the conversion every method applies to
 * what users pass: `{ data, shape: [N,H,W,C] }` (NHWC, float32), nested arrays, or a tfjs
 * tensor. Pure; errors name the argument and the problem.
 */
import { UserError } from '../util/errors.js';

/** N images, NHWC, row-major float32: the layout every occmap engine takes. */
export interface ImageBatch {
  data: Float32Array;
  shape: [number, number, number, number];
}

/** Nested arrays: [N][H][W][C], one image [H][W][C], or one single-channel image [H][W]. */
export type NestedImages = number[][][][] | number[][][] | number[][];

/** What a tfjs tensor offers (structurally, so this module does not load tfjs). */
export interface TensorLike {
  readonly shape: number[];
  dataSync(): ArrayLike<number>;
}

/** Anything `attribute()` and the other API calls accept as images. */
export type ImagesInput = ImageBatch | { data: ArrayLike<number>; shape: readonly number[] } | NestedImages | TensorLike;

function isTensorLike(x: unknown): x is TensorLike {
  return typeof x === 'object' && x !== null && typeof (x as TensorLike).dataSync === 'function' && Array.isArray((x as TensorLike).shape);
}

/** (H,W) -> one single-channel image; (H,W,C) -> one image; (N,H,W,C) as is. */
function batchShape(shape: readonly number[], what: string): [number, number, number, number] {
  let s: number[];
  if (shape.length === 4) s = [...shape];
  else if (shape.length === 3) s = [1, ...shape];
  else if (shape.length === 2) s = [1, shape[0], shape[1], 1];
  else throw new UserError(`${what}: shape [${shape.join(',')}] has ${shape.length} dimension(s); expected [N,H,W,C], [H,W,C] or [H,W]`);
  const bad = s.find((d) => !(Number.isInteger(d) && d >= 1));
  if (bad !== undefined) throw new UserError(`${what}: shape [${shape.join(',')}] has a dimension ${bad}; every dimension must be a positive integer`);
  return s as [number, number, number, number];
}

function checkFinite(data: Float32Array, what: string): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new UserError(`${what}: value ${data[i]} at element ${i} is not a finite number`);
  }
}

/** Shape of a rectangular nested array, checking every row has the same length. */
function nestedShape(x: unknown, what: string): number[] {
  const shape: number[] = [];
  let cur: unknown = x;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    if (cur.length === 0) throw new UserError(`${what}: an empty array at depth ${shape.length}`);
    cur = cur[0];
  }
  const fill = (a: unknown, depth: number, out: number[]): void => {
    if (depth === shape.length) {
      if (typeof a !== 'number') throw new UserError(`${what}: expected a number at depth ${depth}, got ${Array.isArray(a) ? 'an array' : typeof a}`);
      out.push(a);
      return;
    }
    if (!Array.isArray(a) || a.length !== shape[depth]) {
      throw new UserError(`${what}: ragged nested array (a row at depth ${depth + 1} has ${Array.isArray(a) ? a.length : 'no'} elements, expected ${shape[depth]})`);
    }
    for (const v of a) fill(v, depth + 1, out);
  };
  fill(x, 0, []);
  return shape;
}

function flatten(x: unknown, n: number): Float32Array {
  const out = new Float32Array(n);
  let k = 0;
  const walk = (a: unknown): void => {
    if (Array.isArray(a)) for (const v of a) walk(v);
    else out[k++] = a as number;
  };
  walk(x);
  return out;
}

/**
 * Any accepted images -> one ImageBatch (NHWC float32). A batch that already is one is
 * returned as is (no copy); other inputs are copied. `what` names the argument in errors.
 */
export function toImageBatch(x: ImagesInput, what = 'images'): ImageBatch {
  if (Array.isArray(x)) {
    const shape = nestedShape(x, what);
    const s = batchShape(shape, what);
    const data = flatten(x, s.reduce((a, b) => a * b, 1));
    checkFinite(data, what);
    return { data, shape: s };
  }
  if (isTensorLike(x)) {
    const s = batchShape(x.shape, what);
    const raw = x.dataSync();
    const data = raw instanceof Float32Array ? Float32Array.from(raw) : Float32Array.from(raw);
    checkFinite(data, what);
    return { data, shape: s };
  }
  if (typeof x === 'object' && x !== null && 'data' in x && 'shape' in x && Array.isArray(x.shape)) {
    const s = batchShape(x.shape, what);
    const len = s.reduce((a, b) => a * b, 1);
    if (x.data.length !== len) throw new UserError(`${what}: ${x.data.length} values for shape [${x.shape.join(',')}] (${len} expected)`);
    const data = x.data instanceof Float32Array ? x.data : Float32Array.from(x.data);
    checkFinite(data, what);
    return { data, shape: s };
  }
  throw new UserError(`${what}: expected { data, shape: [N,H,W,C] }, nested number arrays or a tfjs tensor`);
}
