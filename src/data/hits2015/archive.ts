/** Reading the shipped HiTS 2015 archive (data/hits2015/stamps.npz): stamps, times, objects, classes. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseNpz } from '../npz.js';
import { toFloat32, type NpyArray } from '../npy.js';
import { fileError } from '../../util/errors.js';
import { HITS_CLASSES } from './classes.js';

export interface Hits2015Archive {
  file: string;
  /** (n, h, w) counts. */
  stamps: Float32Array;
  n: number;
  h: number;
  w: number;
  mjd: Float64Array;
  object: Int32Array;
  names: string[];
  classes: string[];
}

/** data/hits2015/stamps.npz inside the installed package (this file is dist/src/data/hits2015/). */
export function defaultArchivePath(): string {
  return fileURLToPath(new URL('../../../../data/hits2015/stamps.npz', import.meta.url));
}

export function readHits2015Archive(file = defaultArchivePath()): Hits2015Archive {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw fileError(file, `cannot read the HiTS 2015 archive (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let arrays: Map<string, NpyArray>;
  try {
    arrays = parseNpz(bytes).arrays;
  } catch (err) {
    throw fileError(file, (err as Error).message);
  }
  const need = (k: string) => {
    const a = arrays.get(k);
    if (!a) throw fileError(file, `not a HiTS 2015 archive: member '${k}' missing`);
    return a;
  };
  const st = need('stamps');
  if (st.shape.length !== 3) throw fileError(file, `stamps must be (N,H,W), found (${st.shape.join(',')})`);
  const [n, h, w] = st.shape;
  const names = need('names').data;
  const classes = need('classes').data;
  if (!Array.isArray(names) || !Array.isArray(classes) || names.length !== classes.length) {
    throw fileError(file, 'names and classes must be string arrays of equal length');
  }
  const unknown = classes.find((c) => !(HITS_CLASSES as readonly string[]).includes(c));
  if (unknown !== undefined) throw fileError(file, `unknown object class '${unknown}'`);
  const mjdA = need('mjd');
  const objA = need('object');
  if (mjdA.shape[0] !== n || objA.shape[0] !== n) throw fileError(file, 'mjd and object must have one value per stamp');
  const mjd = Float64Array.from(mjdA.data as ArrayLike<number>, Number);
  const object = Int32Array.from(objA.data as ArrayLike<number>, Number);
  if (object.some((o) => o < 0 || o >= names.length)) throw fileError(file, 'object index out of range');
  return { file, stamps: toFloat32(st), n, h, w, mjd, object, names, classes };
}
