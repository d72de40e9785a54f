/** The HiTS 2015 dataset: derivation, then seeded balance and rotation/flip augmentation; the summary table. */
import type { Dataset } from '../dataset.js';
import { OptionError, UserError } from '../../util/errors.js';
import { Rng } from '../../util/rng.js';
import { CHANNELS, DROP_REASONS, LABEL_NAMES } from './classes.js';
import { deriveHits2015 } from './derive.js';
import { dihedral } from './stamp-math.js';
import type { ClassCounts, Hits2015Derived, Hits2015Options, Hits2015Result, Hits2015Summary, StampInfo } from './types.js';

/** Balance (seeded undersampling) and rotation/flip augmentation of a derivation. */
export function assembleHits2015(
  derived: Hits2015Derived,
  opts: Pick<Hits2015Options, 'balance' | 'augment' | 'augmentLabels' | 'seed' | 'command'> = {},
): Hits2015Result {
  const { h, w, images, labels, info, byClass: counts, total } = derived;
  const s = h * w;
  const augment = opts.augment ?? 'none';
  const balance = opts.balance ?? 'none';
  const seed = opts.seed ?? 1;

  // Balance by undersampling the majority label (seeded), keeping the archive order.
  let order = images.map((_, i) => i);
  let balanced: Hits2015Summary['balanced'] = null;
  if (balance === 'undersample') {
    const pos = order.filter((i) => labels[i] === 1);
    const neg = order.filter((i) => labels[i] === 0);
    if (pos.length === 0 || neg.length === 0) {
      throw new OptionError(['balance'], `undersample needs both labels, found ${neg.length} not-supernova and ${pos.length} supernova stamps`);
    }
    const rng = new Rng(seed);
    const m = Math.min(pos.length, neg.length);
    const keep = [...rng.shuffle(pos.slice()).slice(0, m), ...rng.shuffle(neg.slice()).slice(0, m)];
    order = keep.sort((a, b) => a - b);
    balanced = { label0: m, label1: m };
  }
  const factor = augment === 'dihedral' ? 8 : augment === 'rot' ? 4 : 1;
  if (h !== w && factor > 1) throw new UserError('rotation augmentation needs square stamps');
  const C = CHANNELS.length;
  const augLabels = opts.augmentLabels;
  const copies = (i: number): number => (augLabels && !augLabels.includes(labels[i]) ? 1 : factor);
  const N = order.reduce((a, i) => a + copies(i), 0);
  const out = new Float32Array(N * s * C);
  const outLabels = new Int32Array(N);
  const ids: string[] = new Array(N);
  const stampInfo: StampInfo = {
    object: new Array(N),
    objectClass: new Array(N),
    mjd: new Float64Array(N),
    detectionSnr: new Float32Array(N),
    scale: new Float32Array(N),
    seeing: new Float32Array(N),
    templateSeeing: new Float32Array(N),
  };
  let k = 0;
  for (const i of order) {
    for (let t = 0; t < copies(i); t++) {
      // Augmented copies sit next to their original and keep its object id, so a group
      // split never puts a rotated copy of a training stamp in validation.
      out.set(t === 0 ? images[i] : dihedral(images[i], h, C, t), k * s * C);
      outLabels[k] = labels[i];
      ids[k] = info.object[i];
      stampInfo.object[k] = info.object[i];
      stampInfo.objectClass[k] = info.objectClass[i];
      stampInfo.mjd[k] = info.mjd[i];
      stampInfo.detectionSnr[k] = info.snr[i];
      stampInfo.scale[k] = info.scale[i];
      stampInfo.seeing[k] = info.seeing[i];
      stampInfo.templateSeeing[k] = info.templateSeeing[i];
      k++;
    }
  }
  let label1 = 0;
  for (const l of outLabels) label1 += l;
  const summary: Hits2015Summary = {
    byClass: counts,
    total,
    balanced,
    augmentFactor: factor,
    ...(augLabels && factor > 1 ? { augmentLabels: augLabels } : {}),
    final: { n: N, label0: N - label1, label1, objects: new Set(ids).size },
  };
  const dataset: Dataset = {
    images: out,
    shape: [N, h, w, C],
    labels: outLabels,
    ids,
    meta: {
      source: 'hits2015',
      archive: 'data/hits2015/stamps.npz (HiTS 2015 DECam g-band stamps, rodrigcd/HiTS_simulations, MIT)',
      channels: CHANNELS,
      classes: LABEL_NAMES,
      normalisation: 'each channel of each stamp min-max scaled to [0,1]',
      derivation: { ...derived.derivation, balance, augment, ...(augLabels ? { augmentLabels: augLabels } : {}), seed },
      counts: summary,
      ...(opts.command ? { command: opts.command } : {}),
    },
  };
  return { dataset, summary, stamps: stampInfo };
}

/** The whole build: derivation, then balance and augmentation. */
export function buildHits2015(opts: Hits2015Options = {}): Hits2015Result {
  return assembleHits2015(deriveHits2015(opts), opts);
}

/** The summary as a fixed-width text table, one row per object class plus totals. */
export function formatSummary(summary: Hits2015Summary): string {
  const head = ['class', 'objects', 'epochs', ...DROP_REASONS, 'kept', 'label0', 'label1'];
  const row = (name: string, c: ClassCounts) => [
    name,
    c.objects,
    c.epochs,
    ...DROP_REASONS.map((r) => c.dropped[r]),
    c.kept,
    c.label0,
    c.label1,
  ].map(String);
  const rows = [head, ...Object.entries(summary.byClass).map(([k, c]) => row(k, c)), row('total', summary.total)];
  const widths = head.map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  const fmt = (r: string[]) => r.map((v, j) => (j === 0 ? v.padEnd(widths[j]) : v.padStart(widths[j]))).join('  ');
  const lines = rows.map(fmt);
  lines.splice(1, 0, widths.map((wd) => '-'.repeat(wd)).join('  '));
  lines.splice(lines.length - 1, 0, widths.map((wd) => '-'.repeat(wd)).join('  '));
  if (summary.balanced) lines.push(`balanced (undersample): ${summary.balanced.label0} not_supernova + ${summary.balanced.label1} supernova`);
  if (summary.augmentFactor > 1) {
    const which = summary.augmentLabels ? ` of ${summary.augmentLabels.map((l) => LABEL_NAMES[l] ?? String(l)).join(', ')} stamps` : '';
    lines.push(`augmented x${summary.augmentFactor}${which} (rotations/flips, same ids)`);
  }
  const f = summary.final;
  lines.push(`dataset: ${f.n} stamps from ${f.objects} objects: ${f.label0} not_supernova (label 0), ${f.label1} supernova (label 1)`);
  return lines.join('\n');
}

/**
 * Which rotation/flip (0 = the original, k = `dihedral(.., k)`) each stamp of an assembled
 * HiTS 2015 dataset is, read from its layout: every stamp of an augmented label is followed by
 * its factor - 1 copies (assembleHits2015). Undefined when the data was not augmented or does
 * not say how (not built by `dataset hits2015`).
 */
export function augmentTransforms(labels: Int32Array, derivation: { augment?: unknown; augmentLabels?: unknown } | undefined): Int8Array | undefined {
  const augment = derivation?.augment;
  const factor = augment === 'dihedral' ? 8 : augment === 'rot' ? 4 : 1;
  if (factor === 1) return undefined;
  const augLabels = Array.isArray(derivation?.augmentLabels) ? (derivation!.augmentLabels as number[]) : undefined;
  const out = new Int8Array(labels.length);
  for (let i = 0; i < labels.length; ) {
    const reps = augLabels && !augLabels.includes(labels[i]) ? 1 : factor;
    for (let t = 0; t < reps && i < labels.length; t++, i++) {
      if (labels[i] !== labels[i - t]) throw new Error(`stamp ${i}: a copy with another label than its original; not a dataset hits2015 layout`);
      out[i] = t;
    }
  }
  return out;
}
