/**
 * Is the classifier's exact map of a rotated/flipped stamp the rotated/flipped map of the
 * original? If it were (to float precision), augmented copies' maps could be rotated instead of
 * computed. Reads a maps dataset from `occmap occlude` on `dataset hits2015 --augment dihedral`.
 *
 *   node dist/scripts/check-equivariance.js maps.npz
 */
import { readDataset } from '../src/data/dataset.js';
import { augmentTransforms } from '../src/data/hits2015/build.js';
import { dihedral } from '../src/data/hits2015/stamp-math.js';

async function main(file: string): Promise<void> {
  const ds = await readDataset(file);
  if (!ds.maps || !ds.labels) throw new Error(`${file}: needs maps and labels`);
  const t = augmentTransforms(ds.labels, ds.meta.derivation as { augment?: unknown; augmentLabels?: unknown } | undefined);
  if (!t) throw new Error(`${file}: not an augmented hits2015 dataset`);
  const [, h, w] = ds.shape;
  const hw = h * w;
  let pairs = 0;
  let maxDiff = 0;
  let sumDiff = 0;
  let exactPairs = 0;
  for (let i = 0; i < t.length; i++) {
    if (t[i] === 0) continue;
    const orig = i - t[i];
    const rotated = dihedral(ds.maps.subarray(orig * hw, (orig + 1) * hw), h, 1, t[i]);
    let m = 0;
    for (let p = 0; p < hw; p++) m = Math.max(m, Math.abs(rotated[p] - ds.maps[i * hw + p]));
    pairs++;
    maxDiff = Math.max(maxDiff, m);
    sumDiff += m;
    if (m < 1e-5) exactPairs++;
  }
  process.stdout.write(`${pairs} copies vs their rotated original's map (seed units): max |diff| ${maxDiff.toFixed(4)}, mean per-map max ${(sumDiff / pairs).toFixed(4)}, ${exactPairs} within 1e-5${w !== h ? ' (non-square maps)' : ''}\n`);
}

main(process.argv[2] ?? 'maps.npz').catch((e: unknown) => {
  process.stderr.write(`check-equivariance: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
