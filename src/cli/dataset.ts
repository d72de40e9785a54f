/** `occmap dataset hits2015 | simulate | import`: build or convert a stamp dataset (.npz). */
import { refuseOutputOverInput } from '../util/paths.js';
import type { Command } from 'commander';
import { statSync } from 'node:fs';
import { readDataset, writeDataset, type Dataset } from '../data/dataset.js';
import { buildHits2015, defaultArchivePath, formatSummary, parseClasses, CHANNELS, LABEL_NAMES } from '../data/hits2015.js';
import { simulateDataset } from '../data/simulate.js';
import { assertWritable } from '../util/atomic.js';
import { ProgressPrinter } from '../util/progress.js';
import { int, num, choice } from './options.js';
import { UserError } from '../util/errors.js';




function commandLine(): string {
  return ['occmap', ...process.argv.slice(2)].join(' ');
}

function describeWritten(file: string, d: Dataset): string {
  const [n, h, w, c] = d.shape;
  let size = '';
  try {
    size = `, ${(statSync(file).size / 1e6).toFixed(1)} MB`;
  } catch {
    /* size is cosmetic */
  }
  return `wrote ${file}: ${n} stamps ${h}x${w}x${c}${size}`;
}

const HITS_EXAMPLES = `
Examples:
  $ occmap dataset hits2015 --out hits.npz
      all four object classes, balanced by undersampling the stars, no augmentation
  $ occmap dataset hits2015 --out hits-all.npz --balance none
      every kept epoch (about 18,000 not-supernova and 480 supernova stamps)
  $ occmap dataset hits2015 --out hits-aug.npz --augment
      x8 with the rotations and flips of each stamp (same object ids)
  $ occmap dataset hits2015 --out hits-scale.npz --balance none --augment --augment-labels supernova
      every kept epoch, the rare supernova stamps x8 (about 17,800 + 3,900 stamps)
  $ occmap dataset hits2015 --out sn-const.npz --classes supernova,constant --detection-snr 7

Derivation (docs/data.md): per epoch, sky = median of the 2-pixel frame; template = median of
the object's first 5 good epochs (the epoch itself left out), flux-scaled and PSF-matched with
exposure conditions measured on constant stars; difference = science - template; SNR
difference = difference / propagated noise; each channel min-max scaled to [0,1].
Label 1 = a supernova epoch with a >= 5 sigma detection within 2 px of the centre; label 0 =
every epoch of constant stars, eclipsing binaries and RR Lyrae. ids = the object name.`;

const SIM_EXAMPLES = `
Examples:
  $ occmap dataset simulate --n 2000 --out sim.npz
  $ occmap dataset simulate --n 100000 --out sim-big.npz --seed 7 --real-fraction 0.3

real (label 1): a Moffat point source, FWHM 3-6 px, SNR 5-100, half of them on a host galaxy;
bogus (label 0): cosmic ray, hot pixel, bad column, subtraction dipole, or noise only.
Same four channels, subtraction and normalisation as 'dataset hits2015'.`;

const IMPORT_EXAMPLES = `
Examples:
  $ occmap dataset import HiTS2013.pkl --out hits2013.npz
      the seed's pickle (dict with images (N,21,21,4) and labels (N,))
  $ occmap dataset import stamps.npy --out stamps.npz
  $ occmap dataset import other.npz --out mine.npz --compress

Inputs: a Python pickle (.pkl/.pickle; NumPy arrays, protocols 0-5, Python 2 or 3), a .npy
of images, or an .npz with images/x/X (+ labels/y/Y, optional maps, ids).`;

/** `all` -> undefined (every label); else label names (LABEL_NAMES) or indices. */
function parseLabels(spec: string): number[] | undefined {
  if (spec.trim() === 'all') return undefined;
  const out = spec.split(',').map((t) => t.trim()).filter(Boolean).map((t) => {
    const k = /^\d+$/.test(t) ? Number(t) : LABEL_NAMES.indexOf(t);
    if (k < 0 || k >= LABEL_NAMES.length) {
      throw new UserError(`--augment-labels: '${t}' is not a label (${LABEL_NAMES.map((n, i) => `${i}=${n}`).join(', ')}, or all)`);
    }
    return k;
  });
  if (out.length === 0) throw new UserError(`--augment-labels '${spec}' names no label`);
  return out;
}

export function registerDataset(program: Command): void {
  const ds = program
    .command('dataset')
    .description('build or convert a stamp dataset (.npz): hits2015 | simulate | import');

  ds.command('hits2015')
    .description('the real HiTS 2015 stamps -> template/science/difference/SNR-difference stamps with supernova labels')
    .requiredOption('--out <file>', 'output dataset .npz')
    .option('--source <file>', 'HiTS 2015 archive (default: data/hits2015/stamps.npz in the package)')
    .option('--classes <list>', 'object classes to use: supernova,constant,eclipsing_binary,rr_lyrae', 'supernova,constant,eclipsing_binary,rr_lyrae')
    .option('--balance <mode>', 'none | undersample (the majority label down to the minority count, seeded)', 'undersample')
    .option('--augment [mode]', 'none | rot (x4 quarter turns) | dihedral (x8, turns and flips; the default when given alone)', 'none')
    .option('--augment-labels <list>', 'labels that get the copies: all, or a comma list of names/indices (e.g. supernova)', 'all')
    .option('--seed <n>', 'random seed (balancing)', '1')
    .option('--detection-snr <x>', 'SNR a supernova epoch needs at the centre of the difference for label 1', '5')
    .option('--sn-undetected <rule>', 'supernova epochs below the threshold: drop | negative (label 0)', 'drop')
    .option('--template-epochs <k>', "how many of the object's first good epochs make its template", '5')
    .option('--no-register', 'skip the sub-pixel registration of template and science')
    .option('--compress', 'deflate the .npz members (smaller, slower to read)')
    .option('--quiet', 'no progress output')
    .addHelpText('after', HITS_EXAMPLES)
    .action(async (o) => {
      const augment = o.augment === true ? 'dihedral' : choice('--augment', String(o.augment), ['none', 'rot', 'dihedral'] as const);
      const opts = {
        source: o.source as string | undefined,
        classes: parseClasses(String(o.classes)),
        balance: choice('--balance', String(o.balance), ['none', 'undersample'] as const),
        augment,
        augmentLabels: parseLabels(String(o.augmentLabels)),
        seed: int('--seed', String(o.seed), 0),
        detectionSnr: num('--detection-snr', String(o.detectionSnr), (x) => x > 0, 'a positive number'),
        snUndetected: choice('--sn-undetected', String(o.snUndetected), ['drop', 'negative'] as const),
        templateEpochs: int('--template-epochs', String(o.templateEpochs), 2),
        register: o.register !== false,
        onProgress: o.quiet ? undefined : new ProgressPrinter().callback,
        command: commandLine(),
      };
      refuseOutputOverInput([{ flag: o.source ? '--source' : 'the shipped HiTS 2015 stamps', path: o.source ?? defaultArchivePath() }], [{ flag: '--out', path: o.out }]);
      await assertWritable(o.out);
      const { dataset, summary } = buildHits2015(opts);
      process.stdout.write(formatSummary(summary) + '\n');
      await writeDataset(o.out, dataset, { compress: Boolean(o.compress) });
      process.stdout.write(describeWritten(o.out, dataset) + '\n');
    });

  ds.command('simulate')
    .description('simulated real/bogus difference-imaging stamps (21x21x4), any number, deterministic per seed')
    .requiredOption('--n <count>', 'number of stamps')
    .requiredOption('--out <file>', 'output dataset .npz')
    .option('--seed <n>', 'random seed', '1')
    .option('--real-fraction <f>', 'fraction of real (label 1) stamps', '0.5')
    .option('--size <px>', 'stamp side in pixels', '21')
    .option('--compress', 'deflate the .npz members')
    .option('--quiet', 'no progress output')
    .addHelpText('after', SIM_EXAMPLES)
    .action(async (o) => {
      const opts = {
        n: int('--n', String(o.n), 1),
        seed: int('--seed', String(o.seed), 0),
        realFraction: num('--real-fraction', String(o.realFraction), (x) => x >= 0 && x <= 1, 'between 0 and 1'),
        size: int('--size', String(o.size), 9),
        onProgress: o.quiet ? undefined : new ProgressPrinter().callback,
        command: commandLine(),
      };
      await assertWritable(o.out);
      const { dataset, counts } = simulateDataset(opts);
      const parts = Object.entries(counts)
        .sort()
        .map(([k, v]) => `${k} ${v}`);
      process.stdout.write(`simulated ${opts.n} stamps: ${parts.join(', ')}\n`);
      await writeDataset(o.out, dataset, { compress: Boolean(o.compress) });
      process.stdout.write(describeWritten(o.out, dataset) + '\n');
    });

  ds.command('import')
    .description('convert a dataset from another tool (HiTS 2013 pickle, .npy, .npz) to an occmap .npz')
    .argument('<input>', 'input file (.pkl/.pickle, .npy, .npz)')
    .requiredOption('--out <file>', 'output dataset .npz')
    .option('--compress', 'deflate the .npz members')
    .addHelpText('after', IMPORT_EXAMPLES)
    .action(async (input: string, o) => {
      refuseOutputOverInput([{ flag: 'input', path: input }], [{ flag: '--out', path: o.out }]);
      await assertWritable(o.out);
      const d = await readDataset(input);
      const [n, h, w, c] = d.shape;
      const meta = { ...d.meta };
      meta.importedFrom = input;
      meta.command = commandLine();
      delete meta.createdAt;
      // The seed's pickle holds the HiTS channels in this order (docs/seed.md).
      if (meta.source === 'hits2013-pickle' && c === 4 && !meta.channels) meta.channels = CHANNELS;
      if (meta.source === 'hits2013-pickle' && !meta.classes) meta.classes = LABEL_NAMES;
      await writeDataset(o.out, { ...d, meta }, { compress: Boolean(o.compress) });
      const lines = [`read ${input}: ${n} images ${h}x${w}x${c}`];
      if (d.labels) {
        const counts = new Map<number, number>();
        for (const l of d.labels) counts.set(l, (counts.get(l) ?? 0) + 1);
        lines.push(`labels: ${[...counts].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}: ${v}`).join(', ')}`);
      } else {
        lines.push('no labels');
      }
      if (!d.ids) lines.push('no ids: splits will go by stamp; if stamps of one object repeat, held-out figures are inflated');
      lines.push(describeWritten(o.out, d));
      process.stdout.write(lines.join('\n') + '\n');
    });
}
