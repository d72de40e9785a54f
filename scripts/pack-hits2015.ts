/**
 * Packs the HiTS 2015 stamp time series (one .npy per object, as laid out in the team's
 * shared data folder) into the single compressed archive shipped in data/hits2015/.
 * Run once by maintainers: node dist/scripts/pack-hits2015.js SRC_DIR OUT.npz
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseNpy } from '../src/data/npy.js';
import { serializeNpz } from '../src/data/npz.js';
import { writeFileAtomicSync } from '../src/util/atomic.js';

const [src, out] = process.argv.slice(2);
if (!src || !out) throw new Error('usage: pack-hits2015 SRC_DIR OUT.npz');
const index: { cls: string; name: string; epochs: number }[] = JSON.parse(readFileSync(path.join(src, 'index.json'), 'utf8'));
const total = index.reduce((a, o) => a + o.epochs, 0);
const stamps = new Float32Array(total * 441);
const mjd = new Float64Array(total);
const object = new Int32Array(total);
let k = 0;
index.forEach((o, j) => {
  const a = parseNpy(readFileSync(path.join(src, o.cls, `${o.name}.npy`)));
  const t = parseNpy(readFileSync(path.join(src, o.cls, `${o.name}.mjd.npy`)));
  if (a.shape[0] !== o.epochs || a.shape[1] !== 21 || a.shape[2] !== 21) throw new Error(`${o.name}: shape ${a.shape}`);
  stamps.set(a.data as Float32Array, k * 441);
  mjd.set(t.data as Float64Array, k);
  object.fill(j, k, k + o.epochs);
  k += o.epochs;
});
const bytes = serializeNpz(
  {
    stamps: { data: stamps, shape: [total, 21, 21] },
    mjd: { data: mjd, shape: [total] },
    object: { data: object, shape: [total] },
    names: { data: index.map((o) => o.name), shape: [index.length] },
    classes: { data: index.map((o) => o.cls), shape: [index.length] },
  },
  {},
  9,
);
writeFileAtomicSync(out, bytes);
console.log(`${index.length} objects, ${total} stamps -> ${out} (${(bytes.length / 1e6).toFixed(1)} MB)`);
