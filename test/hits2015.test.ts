import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  assembleHits2015,
  deriveHits2015,
  buildHits2015,
  centralDetection,
  convolveSeparable,
  defaultArchivePath,
  dihedral,
  fitGaussianPsf,
  formatSummary,
  augmentTransforms,
  framePixels,
  gaussianKernel1d,
  hasBadPixels,
  median,
  minMaxNormalise,
  readHits2015Archive,
  registrationShift,
  robustSigma,
  shiftImage,
  subtract,
  DROP_REASONS,
  type Hits2015Archive,
  type Hits2015Derived,
  type Hits2015Options,
} from '../src/data/hits2015.js';
import { splitIndices, leakedGroups } from '../src/data/split.js';
import { readDataset } from '../src/data/dataset.js';
import { archiveOf } from './hits2015-fixtures.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'bin/occmap.js');

function gaussian(size: number, x0: number, y0: number, sigma: number, flux: number): Float64Array {
  const img = new Float64Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      img[y * size + x] = (flux / (2 * Math.PI * sigma * sigma)) * Math.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma * sigma));
    }
  }
  return img;
}

// ---- pure functions on hand-computed cases ----

test('median, robust sigma and the sky frame', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  // |x - 3| = [2,1,0,1,97] -> MAD 1: the outlier does not move it.
  assert.equal(robustSigma([1, 2, 3, 4, 100]), 1.4826);
  assert.equal(framePixels(21, 21).length, 21 * 21 - 17 * 17);
  assert.deepEqual(Array.from(framePixels(3, 3, 1)), [0, 1, 2, 3, 5, 6, 7, 8]);
});

test('bad pixels: sentinels and non-finite values', () => {
  assert.equal(hasBadPixels([1, 2, 3]), false);
  assert.equal(hasBadPixels([1, -9999, 3]), true);
  assert.equal(hasBadPixels([1, 9.998e7, 3]), true);
  assert.equal(hasBadPixels([1, NaN, 3]), true);
  assert.equal(hasBadPixels([1, Infinity]), true);
  assert.equal(hasBadPixels([-998, 9.9e6]), false);
});

test('gaussian kernel and separable convolution', () => {
  const k = gaussianKernel1d(1);
  assert.equal(k.length, 7);
  assert.ok(Math.abs(k.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  assert.ok(Math.abs(k[2] / k[3] - Math.exp(-0.5)) < 1e-12);
  // A delta at the centre becomes the outer product of the kernel.
  const img = new Float64Array(81);
  img[40] = 1;
  const out = convolveSeparable(img, 9, 9, k);
  assert.ok(Math.abs(out[40] - k[3] * k[3]) < 1e-12);
  assert.ok(Math.abs(out[3 * 9 + 5] - k[2] * k[4]) < 1e-12);
  // A flat image stays flat (reflecting edges lose no flux).
  const flat = convolveSeparable(new Float64Array(81).fill(2), 9, 9, k);
  assert.ok(flat.every((v) => Math.abs(v - 2) < 1e-12));
});

test('Gaussian PSF fit recovers sigma, flux and centroid', () => {
  const img = gaussian(21, 10.3, 9.8, 1.7, 5000);
  const f = fitGaussianPsf(img, 21, 21)!;
  assert.ok(Math.abs(f.sigma - 1.7) < 0.02, `sigma ${f.sigma}`);
  assert.ok(Math.abs(f.flux / 5000 - 1) < 0.02, `flux ${f.flux}`);
  assert.ok(Math.abs(f.x0 - 10.3) < 0.05 && Math.abs(f.y0 - 9.8) < 0.05);
  assert.equal(fitGaussianPsf(new Float64Array(441).fill(-1), 21, 21), null);
});

test('subtract: scale, variance and SNR by hand; PSF matching blurs the sharper image', () => {
  // 1x... no blur (equal seeing): d = s - 2 t, var = vs + 4 vt.
  const sci = { image: Float64Array.of(5, 1, 0, 0), variance: Float64Array.of(1, 1, 1, 1), seeing: 1 };
  const tmpl = { image: Float64Array.of(1, 1, 0, 0), variance: Float64Array.of(0.25, 0, 0, 0), seeing: 1 };
  const d = subtract(2, 2, sci, tmpl, 2);
  assert.deepEqual(Array.from(d.difference), [3, -1, 0, 0]);
  assert.deepEqual(Array.from(d.variance), [2, 1, 1, 1]);
  assert.ok(Math.abs(d.snr[0] - 3 / Math.sqrt(2)) < 1e-12);
  assert.equal(d.matched, 'none');
  // Same star, template sharper: the template is blurred to sqrt(2^2 - 1.5^2).
  const star2 = gaussian(21, 10, 10, 2, 1000);
  const star15 = gaussian(21, 10, 10, 1.5, 1000);
  const v = new Float64Array(441).fill(1);
  const m = subtract(21, 21, { image: star2, variance: v, seeing: 2 }, { image: star15, variance: v, seeing: 1.5 }, 1);
  assert.equal(m.matched, 'template');
  assert.ok(Math.abs(m.kernelSigma - Math.sqrt(4 - 2.25)) < 1e-12);
  const peak = Math.max(...star2);
  assert.ok(Math.max(...m.difference.map(Math.abs)) < 0.01 * peak, 'matched PSFs subtract');
  const r = subtract(21, 21, { image: star15, variance: v, seeing: 1.5 }, { image: star2, variance: v, seeing: 2 }, 1);
  assert.equal(r.matched, 'science');
});

test('central detection: box SNR by hand, noise through the kernel', () => {
  const diff = new Float64Array(441);
  for (let y = 9; y <= 11; y++) for (let x = 9; x <= 11; x++) diff[y * 21 + x] = 1;
  diff[10 * 21 + 10] = 2; // the peak, so the box is centred on the stamp centre
  const ones = new Float64Array(441).fill(1);
  const d = {
    difference: diff,
    variance: ones,
    snr: diff,
    matched: 'none' as const,
    kernelSigma: 0,
    shift: null,
    noise: { sciVar: ones, sciKernel: Float64Array.of(1), tmplVar: new Float64Array(441), tmplKernel: Float64Array.of(1) },
  };
  // Box sum 8 x 1 + 2 = 10, variance 1 per pixel: 10 / 3.
  const det = centralDetection(21, 21, d);
  assert.deepEqual([det.x, det.y], [10, 10]);
  assert.ok(Math.abs(det.snr - 10 / 3) < 1e-12);
  // After a 3-tap smoothing [1/4,1/2,1/4] per axis the box sum's variance is
  // sum over pixels of (box (x) k)^2: per axis the weights are 1/4,3/4,1,3/4,1/4 -> sum of
  // squares 1/16+9/16+1+9/16+1/16 = 2.25, squared for two axes = 5.0625.
  const k = Float64Array.of(0.25, 0.5, 0.25);
  const dk = { ...d, noise: { ...d.noise, sciKernel: k } };
  assert.ok(Math.abs(centralDetection(21, 21, dk).snr - 10 / Math.sqrt(5.0625)) < 1e-12);
});

test('min-max normalisation and the 8 rotations/flips', () => {
  assert.deepEqual(Array.from(minMaxNormalise([2, 4, 6])), [0, 0.5, 1]);
  assert.deepEqual(Array.from(minMaxNormalise([3, 3])), [0, 0]);
  // [[a,b],[c,d]] as numpy.rot90 and numpy.fliplr see it.
  const img = [1, 2, 3, 4];
  assert.deepEqual(Array.from(dihedral(img, 2, 1, 0)), [1, 2, 3, 4]);
  assert.deepEqual(Array.from(dihedral(img, 2, 1, 1)), [2, 4, 1, 3]); // rot90
  assert.deepEqual(Array.from(dihedral(img, 2, 1, 2)), [4, 3, 2, 1]); // rot180
  assert.deepEqual(Array.from(dihedral(img, 2, 1, 3)), [3, 1, 4, 2]); // rot270
  assert.deepEqual(Array.from(dihedral(img, 2, 1, 4)), [2, 1, 4, 3]); // fliplr
  assert.deepEqual(Array.from(dihedral(img, 2, 1, 5)), [1, 3, 2, 4]); // rot90(fliplr)
  const x3 = Array.from({ length: 9 }, (_, i) => i);
  const all = new Set([0, 1, 2, 3, 4, 5, 6, 7].map((k) => Array.from(dihedral(x3, 3, 1, k)).join()));
  assert.equal(all.size, 8);
  // Channels move together.
  assert.deepEqual(Array.from(dihedral([1, 10, 2, 20, 3, 30, 4, 40], 2, 2, 1)), [2, 20, 4, 40, 1, 10, 3, 30]);
});

test('sub-pixel shift and registration recover a known offset', () => {
  const star = gaussian(21, 10, 10, 1.8, 5000);
  assert.ok(shiftImage(star, 21, 21, 0, 0).every((v, i) => Math.abs(v - star[i]) < 1e-9), 'zero shift is the identity');
  const moved = shiftImage(star, 21, 21, 0.3, -0.4);
  const f = fitGaussianPsf(moved, 21, 21)!;
  assert.ok(Math.abs(f.x0 - 10.3) < 0.03 && Math.abs(f.y0 - 9.6) < 0.03, `centroid ${f.x0},${f.y0}`);
  const target = gaussian(21, 10.35, 9.75, 1.8, 5000);
  const v = new Float64Array(441).fill(25);
  const sh = registrationShift(21, 21, target, star, v)!;
  assert.ok(Math.abs(sh.dx - 0.35) < 0.03 && Math.abs(sh.dy + 0.25) < 0.03, `shift ${sh.dx},${sh.dy}`);
  // No significant source in the template: nothing to register on.
  assert.equal(registrationShift(21, 21, target, new Float64Array(441), v), null);
});

// ---- the builder on a slice of the real archive ----

let full: Hits2015Archive | undefined;
function archive(): Hits2015Archive {
  return (full ??= readHits2015Archive(defaultArchivePath()));
}

/** A small archive: every object with sentinel values, a few of each class, 60 calibrator stars. */
function sliceArchive(): { a: Hits2015Archive; badStamps: Record<string, number> } {
  const A = archive();
  const s = A.h * A.w;
  const bad = new Set<number>();
  for (let i = 0; i < A.n; i++) {
    const st = A.stamps.subarray(i * s, (i + 1) * s);
    if (st.some((v) => !Number.isFinite(v) || v <= -999 || v >= 1e7)) bad.add(A.object[i]);
  }
  const pick = new Set<number>(bad);
  const quota: Record<string, number> = { supernova: 8, constant: 60, eclipsing_binary: 4, rr_lyrae: 4 };
  const taken: Record<string, number> = {};
  A.classes.forEach((c, o) => {
    if (pick.has(o)) return;
    // Every 8th constant star: several fields, so the calibration covers all epochs.
    if (c === 'constant' && o % 8 !== 0) return;
    if ((taken[c] ?? 0) < quota[c]) {
      pick.add(o);
      taken[c] = (taken[c] ?? 0) + 1;
    }
  });
  const a = archiveOf(A, [...pick].sort((x, y) => x - y));
  const badStamps: Record<string, number> = {};
  for (let k = 0; k < a.n; k++) {
    const st = a.stamps.subarray(k * s, (k + 1) * s);
    if (st.some((v) => !Number.isFinite(v) || v <= -999 || v >= 1e7)) {
      const c = a.classes[a.object[k]];
      badStamps[c] = (badStamps[c] ?? 0) + 1;
    }
  }
  return { a, badStamps };
}

let slice: ReturnType<typeof sliceArchive> | undefined;
const small = () => (slice ??= sliceArchive());

/** Derivations of the slice, cached by options (balance and augmentation reuse them). */
const derived = new Map<string, Hits2015Derived>();
function derive(opts: Hits2015Options = {}): Hits2015Derived {
  const key = JSON.stringify(opts);
  if (!derived.has(key)) derived.set(key, deriveHits2015({ ...opts, archive: small().a, quiet: true }));
  return derived.get(key)!;
}

test('archive: 778 objects, 20365 stamps, the documented classes', () => {
  const A = archive();
  assert.equal(A.n, 20365);
  assert.equal(A.names.length, 778);
  const count = (c: string) => A.classes.filter((x) => x === c).length;
  assert.deepEqual([count('supernova'), count('constant'), count('eclipsing_binary'), count('rr_lyrae')], [91, 500, 76, 111]);
});

test('builder counts add up; sentinel stamps are dropped and counted; labels and values are sane', () => {
  const { a, badStamps } = small();
  const r = assembleHits2015(derive());
  const { summary, dataset: d, stamps } = r;
  let objects = 0;
  for (const [cls, c] of Object.entries(summary.byClass)) {
    const objs = a.classes.filter((x) => x === cls).length;
    assert.equal(c.objects, objs, cls);
    const epochs = Array.from(a.object).filter((o) => a.classes[o] === cls).length;
    assert.equal(c.epochs, epochs, cls);
    const dropped = DROP_REASONS.reduce((s, k) => s + c.dropped[k], 0);
    assert.equal(c.kept + dropped, c.epochs, `${cls}: kept + dropped = epochs`);
    assert.equal(c.label0 + c.label1, c.kept);
    assert.equal(c.dropped.bad_pixels, badStamps[cls] ?? 0, `${cls}: every sentinel stamp dropped`);
    if (cls !== 'supernova') {
      assert.equal(c.label1, 0);
      assert.equal(c.dropped.sn_no_detection, 0);
    }
    objects += objs;
  }
  assert.ok((badStamps.eclipsing_binary ?? 0) + (badStamps.rr_lyrae ?? 0) > 0, 'the slice holds sentinel stamps');
  assert.equal(summary.total.objects, objects);
  assert.equal(summary.total.kept, d.shape[0]);
  assert.equal(summary.byClass.supernova.label1 > 0, true);
  assert.deepEqual(d.shape.slice(1), [21, 21, 4]);
  for (let i = 0; i < d.shape[0]; i++) {
    if (d.labels![i] === 1) assert.equal(stamps.objectClass[i], 'supernova');
    if (stamps.objectClass[i] === 'supernova') assert.equal(d.labels![i], 1, 'undetected SN epochs are dropped');
    assert.equal(d.ids![i], stamps.object[i]);
  }
  // Label 1 means a detection at the threshold.
  for (let i = 0; i < d.shape[0]; i++) if (d.labels![i] === 1) assert.ok(stamps.detectionSnr[i] >= 5);
  // Every channel of every stamp spans [0,1] exactly (min-max), no NaN.
  const s = 21 * 21 * 4;
  for (let i = 0; i < d.shape[0]; i++) {
    for (let ch = 0; ch < 4; ch++) {
      let lo = Infinity;
      let hi = -Infinity;
      for (let p = 0; p < 441; p++) {
        const v = d.images[i * s + p * 4 + ch];
        assert.ok(Number.isFinite(v));
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      assert.equal(lo, 0);
      assert.equal(hi, 1);
    }
  }
  const table = formatSummary(summary);
  assert.match(table, /supernova/);
  assert.match(table, /total/);
  // A group split never puts one object on both sides.
  const split = splitIndices(d.shape[0], 0.25, 3, d.ids);
  assert.equal(split.by, 'group');
  assert.deepEqual(leakedGroups(split, d.ids!), []);
});

test('--classes supernova,constant: only those classes, processed exactly as in the full build', () => {
  const all = assembleHits2015(derive());
  const two = assembleHits2015(derive({ classes: ['supernova', 'constant'] }));
  assert.deepEqual(Object.keys(two.summary.byClass), ['supernova', 'constant']);
  assert.ok(two.stamps.objectClass.every((c) => c === 'supernova' || c === 'constant'));
  assert.deepEqual(two.summary.byClass.supernova, all.summary.byClass.supernova);
  // The same stamp gives the same four channels whatever classes are selected.
  const key = (r: typeof all, i: number) => `${r.stamps.object[i]}@${r.stamps.mjd[i]}`;
  const where = new Map(all.stamps.object.map((_, i) => [key(all, i), i]));
  const s = 21 * 21 * 4;
  for (const i of [0, 5, two.dataset.shape[0] - 1]) {
    const j = where.get(key(two, i))!;
    assert.deepEqual(two.dataset.images.subarray(i * s, (i + 1) * s), all.dataset.images.subarray(j * s, (j + 1) * s));
  }
});

test('undetected supernova epochs: dropped by default, label 0 with snUndetected negative', () => {
  const drop = assembleHits2015(derive({ classes: ['supernova'] }));
  const neg = assembleHits2015(derive({ classes: ['supernova'], snUndetected: 'negative' }));
  const sd = drop.summary.byClass.supernova;
  const sn = neg.summary.byClass.supernova;
  assert.ok(sd.dropped.sn_no_detection > 0);
  assert.equal(sn.dropped.sn_no_detection, 0);
  assert.equal(sn.label0, sd.dropped.sn_no_detection);
  assert.equal(sn.label1, sd.label1);
  // A higher threshold labels fewer epochs.
  const strict = assembleHits2015(derive({ classes: ['supernova'], detectionSnr: 10 }));
  assert.ok(strict.summary.byClass.supernova.label1 < sd.label1);
});

test('balance gives equal labels (seeded); augmentation multiplies and keeps ids', () => {
  const b1 = assembleHits2015(derive(), { balance: 'undersample', seed: 1 });
  const f = b1.summary.final;
  assert.equal(f.label0, f.label1);
  assert.equal(f.n, 2 * b1.summary.byClass.supernova.label1);
  assert.deepEqual(assembleHits2015(derive(), { balance: 'undersample', seed: 1 }).dataset.ids, b1.dataset.ids);
  assert.notDeepEqual(assembleHits2015(derive(), { balance: 'undersample', seed: 2 }).dataset.ids, b1.dataset.ids);

  const aug = assembleHits2015(derive(), { balance: 'undersample', seed: 1, augment: 'dihedral' });
  assert.equal(aug.dataset.shape[0], 8 * f.n);
  const s = 21 * 21 * 4;
  for (let i = 0; i < f.n; i++) {
    for (let k = 0; k < 8; k++) {
      const j = i * 8 + k;
      assert.equal(aug.dataset.ids![j], b1.dataset.ids![i]);
      assert.equal(aug.dataset.labels![j], b1.dataset.labels![i]);
    }
  }
  const orig = b1.dataset.images.subarray(0, s);
  assert.deepEqual(aug.dataset.images.subarray(0, s), orig);
  assert.deepEqual(aug.dataset.images.subarray(3 * s, 4 * s), dihedral(orig, 21, 4, 3));
  const rot = assembleHits2015(derive(), { balance: 'undersample', seed: 1, augment: 'rot' });
  assert.equal(rot.dataset.shape[0], 4 * f.n);
  const split = splitIndices(aug.dataset.shape[0], 0.25, 5, aug.dataset.ids);
  assert.deepEqual(leakedGroups(split, aug.dataset.ids!), [], 'rotated copies stay with their object');

  // Only the rare class copied: supernova stamps x8, the others once, in archive order.
  const all = assembleHits2015(derive());
  const sn = assembleHits2015(derive(), { augment: 'dihedral', augmentLabels: [1] });
  const a = all.summary.final;
  assert.equal(sn.summary.final.label1, 8 * a.label1);
  assert.equal(sn.summary.final.label0, a.label0);
  let j = 0;
  for (let i = 0; i < a.n; i++) {
    const reps = all.dataset.labels![i] === 1 ? 8 : 1;
    for (let k = 0; k < reps; k++, j++) {
      assert.equal(sn.dataset.ids![j], all.dataset.ids![i]);
      assert.equal(sn.dataset.labels![j], all.dataset.labels![i]);
    }
    const first = sn.dataset.images.subarray((j - reps) * s, (j - reps + 1) * s);
    assert.deepEqual(first, all.dataset.images.subarray(i * s, (i + 1) * s));
  }
  assert.equal(j, sn.dataset.shape[0]);
  // The layout tells originals from copies.
  const tr = augmentTransforms(sn.dataset.labels!, sn.dataset.meta.derivation as Record<string, unknown>)!;
  for (let i = 0, r = 0; i < a.n; i++) {
    const reps = all.dataset.labels![i] === 1 ? 8 : 1;
    for (let k = 0; k < reps; k++, r++) assert.equal(tr[r], k);
  }
  assert.equal(augmentTransforms(all.dataset.labels!, all.dataset.meta.derivation as Record<string, unknown>), undefined);
  assert.match(formatSummary(sn.summary), /augmented x8 of supernova stamps/);
});

test('builder input errors', () => {
  const { a } = small();
  assert.throws(() => buildHits2015({ archive: a, quiet: true, classes: ['supernova', 'quasar'] }), /unknown class 'quasar'/);
  assert.throws(() => assembleHits2015(derive({ classes: ['constant'] }), { balance: 'undersample' }), /needs both labels/);
  assert.throws(() => readHits2015Archive('/nonexistent/stamps.npz'), /\/nonexistent\/stamps.npz: cannot read/);
});

// ---- CLI ----

function cli(args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
}

test('CLI: unwritable --out and unknown class give a one-line error, exit 2, no file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'occmap-ds-'));
  const r1 = cli(['dataset', 'hits2015', '--out', path.join(dir, 'missing', 'h.npz'), '--quiet']);
  assert.equal(r1.status, 2);
  assert.match(r1.stderr, /^occmap: .*missing\/h\.npz: directory .* (does not exist|is not writable)/);
  const r3 = cli(['dataset', 'hits2015', '--out', path.join(dir, 'h.npz'), '--classes', 'supernova,quasar']);
  assert.equal(r3.status, 2);
  assert.equal(r3.stderr, "occmap: unknown class 'quasar' (choose from supernova, constant, eclipsing_binary, rr_lyrae)\n");
  const r5 = cli(['dataset', 'hits2015', '--out', path.join(dir, 'h.npz'), '--source', path.join(dir, 'nope.npz')]);
  assert.equal(r5.status, 2);
  assert.match(r5.stderr, /nope\.npz: cannot read the HiTS 2015 archive/);
  assert.deepEqual(readdirSync(dir), [], 'no partial output');
});

test('CLI: dataset simulate writes a dataset numpy can load', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'occmap-ds-'));
  const out = path.join(dir, 'sim.npz');
  const r = cli(['dataset', 'simulate', '--n', '30', '--out', out, '--seed', '4', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /simulated 30 stamps/);
  const d = await readDataset(out);
  assert.deepEqual(d.shape, [30, 21, 21, 4]);
  assert.equal(d.meta.source, 'simulate');
  assert.match(String(d.meta.command), /dataset simulate --n 30/);
  try {
    execFileSync('python3', ['-c', `import numpy as np; z=np.load(${JSON.stringify(out)}); assert z['images'].shape==(30,21,21,4); assert z['labels'].sum()==15`]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && !String((err as Error).message).includes('No module named')) throw err;
  }
  assert.ok(existsSync(out));
});
