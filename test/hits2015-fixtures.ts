/** Test fixture: the shipped HiTS 2015 archive restricted to some objects (renumbered in the given order). */
import type { Hits2015Archive } from '../src/data/hits2015/archive.js';

export function archiveOf(A: Hits2015Archive, objs: number[]): Hits2015Archive {
  const s = A.h * A.w;
  const remap = new Map(objs.map((o, k) => [o, k]));
  const idx: number[] = [];
  for (let i = 0; i < A.n; i++) if (remap.has(A.object[i])) idx.push(i);
  const stamps = new Float32Array(idx.length * s);
  idx.forEach((i, k) => stamps.set(A.stamps.subarray(i * s, (i + 1) * s), k * s));
  return {
    file: A.file,
    stamps,
    n: idx.length,
    h: A.h,
    w: A.w,
    mjd: Float64Array.from(idx, (i) => A.mjd[i]),
    object: Int32Array.from(idx, (i) => remap.get(A.object[i])!),
    names: objs.map((o) => A.names[o]),
    classes: objs.map((o) => A.classes[o]),
  };
}
