/**
 * The per-epoch derivation of the HiTS 2015 dataset (the slow part): sky and bad stamps,
 * calibration, templates from each object's first good epochs, differences, detections and
 * labels, with counts per class and the parameters recorded in meta.json.
 */
import { OptionError, UserError } from '../../util/errors.js';
import { ProgressReporter } from '../../util/progress.js';
import { defaultArchivePath, readHits2015Archive, type Hits2015Archive } from './archive.js';
import { Calibration, type ExposureConditions } from './calibration.js';
import { DROP_REASONS, parseClasses } from './classes.js';
import {
  centralDetection,
  registrationShift,
  scienceExposure,
  shiftImage,
  subtract,
  templateExposure,
  MIN_KERNEL_SIGMA,
  type Exposure,
  type RegistrationOptions,
} from './difference.js';
import {
  convolveSeparable,
  framePixels,
  gaussianKernel1d,
  hasBadPixels,
  median,
  medianStack,
  packChannels,
  skyStats,
  SENTINEL_HIGH,
  SENTINEL_LOW,
} from './stamp-math.js';
import type { ClassCounts, Hits2015Derived, Hits2015Options } from './types.js';

function emptyCounts(): ClassCounts {
  return { objects: 0, epochs: 0, kept: 0, dropped: { bad_pixels: 0, no_calibration: 0, no_template: 0, sn_no_detection: 0 }, label0: 0, label1: 0 };
}

/** Effective gain (counts -> Poisson variance) of sky-limited stamps: sky / sigma_sky^2. */
function effectiveGain(archive: Hits2015Archive, good: Uint8Array, sky: Float64Array, sigma: Float64Array): number {
  const g: number[] = [];
  for (let i = 0; i < archive.n; i++) if (good[i] && sigma[i] > 0 && sky[i] > 0) g.push(sky[i] / (sigma[i] * sigma[i]));
  return median(g);
}

interface Template {
  exposure: Exposure;
  epochs: number;
}

/** What every object's derivation shares: the archive, its pass-1 statistics and the options. */
export interface DeriveCtx {
  archive: Hits2015Archive;
  h: number;
  w: number;
  frame: Int32Array;
  good: Uint8Array;
  gain: number;
  cal: Calibration;
  /** Template epochs (K), detection threshold, undetected-supernova rule, registration. */
  K: number;
  threshold: number;
  undetected: 'drop' | 'negative';
  register: RegistrationOptions | false;
}

/** The growing output of the derivation, in archive order. */
export interface DeriveOut {
  images: Float32Array[];
  labels: number[];
  info: Hits2015Derived['info'];
  counts: Record<string, ClassCounts>;
  dtByClass: Record<string, number[]>;
}

/**
 * Pass 1: bad stamps and sky of every stamp (the calibration and gain use all classes'
 * stamps independently of --classes, so a subset is processed exactly like the whole).
 */
function skyPass(archive: Hits2015Archive, frame: Int32Array): { good: Uint8Array; sky: Float64Array; skySigma: Float64Array } {
  const { n } = archive;
  const s = archive.h * archive.w;
  const good = new Uint8Array(n);
  const sky = new Float64Array(n);
  const skySigma = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const st = archive.stamps.subarray(i * s, (i + 1) * s);
    if (hasBadPixels(st)) continue;
    good[i] = 1;
    const k = skyStats(st, frame);
    sky[i] = k.sky;
    skySigma[i] = k.sigma;
  }
  return { good, sky, skySigma };
}

/** The epochs of object `o` that have good pixels and a calibration, with their conditions. */
function calibratedEpochs(ctx: DeriveCtx, o: number, epochs: number[], cc: ClassCounts, onDt: (dtMinutes: number) => void): Map<number, ExposureConditions> {
  const cond = new Map<number, ExposureConditions>();
  for (const i of epochs) {
    if (!ctx.good[i]) {
      cc.dropped.bad_pixels++;
      continue;
    }
    const c = ctx.cal.lookup(ctx.archive.mjd[i], o);
    if (!c) {
      cc.dropped.no_calibration++;
      continue;
    }
    cond.set(i, c);
    onDt(c.dtMinutes);
  }
  return cond;
}

function exposureOf(ctx: DeriveCtx, cond: Map<number, ExposureConditions>, i: number): Exposure {
  const s = ctx.h * ctx.w;
  return scienceExposure(ctx.archive.stamps.subarray(i * s, (i + 1) * s), ctx.frame, ctx.gain, cond.get(i)!.seeing);
}

/**
 * The template stacked from reference epochs `ref`: each blurred to the worst seeing among
 * them, divided by its flux scale, registered on the first (as the science epochs are
 * registered on the template, under the same condition: a significant central source).
 */
function stackTemplate(ctx: DeriveCtx, cond: Map<number, ExposureConditions>, ref: number[]): Template {
  const { h, w, register } = ctx;
  const seeing = Math.max(...ref.map((j) => cond.get(j)!.seeing));
  const imgs: Float64Array[] = [];
  const vars: Float64Array[] = [];
  for (const j of ref) {
    const e = exposureOf(ctx, cond, j);
    const c = cond.get(j)!;
    const ks = Math.sqrt(Math.max(0, seeing ** 2 - c.seeing ** 2));
    const k = gaussianKernel1d(ks);
    let img = ks >= MIN_KERNEL_SIGMA ? convolveSeparable(e.image, h, w, k) : e.image;
    let v = ks >= MIN_KERNEL_SIGMA ? convolveSeparable(e.variance, h, w, k.map((x) => x * x)) : e.variance;
    img = img.map((x) => x / c.scale);
    v = v.map((x) => x / (c.scale * c.scale));
    if (register && imgs.length > 0) {
      const sh = registrationShift(h, w, imgs[0], img, v.map((x, p) => x + vars[0][p]), register);
      if (sh) img = shiftImage(img, h, w, sh.dx, sh.dy);
    }
    imgs.push(img);
    vars.push(v);
  }
  return { exposure: templateExposure(medianStack(imgs), ctx.frame, ctx.gain, ref.length, seeing), epochs: ref.length };
}

/** Derive every kept epoch of object `o` into `out`. */
function deriveObject(ctx: DeriveCtx, o: number, epochs: number[], out: DeriveOut): void {
  const { archive, h, w } = ctx;
  const cls = archive.classes[o];
  const cc = out.counts[cls];
  cc.objects++;
  cc.epochs += epochs.length;
  const cond = calibratedEpochs(ctx, o, epochs, cc, (dt) => (out.dtByClass[cls] ??= []).push(dt));
  const goodEpochs = [...cond.keys()];
  // Reference epochs: the first K good epochs, leaving the epoch itself out so its noise
  // is independent of the template's (for those epochs the (K+1)-th takes its place).
  const templates = new Map<string, Template>();
  const templateFor = (i: number): Template | null => {
    const ref = goodEpochs.filter((j) => j !== i).slice(0, ctx.K);
    if (ref.length < Math.min(3, ctx.K)) return null;
    const key = ref.join(',');
    let t = templates.get(key);
    if (!t) templates.set(key, (t = stackTemplate(ctx, cond, ref)));
    return t;
  };
  for (const i of goodEpochs) {
    const tmpl = templateFor(i);
    if (!tmpl) {
      cc.dropped.no_template++;
      continue;
    }
    const sci = exposureOf(ctx, cond, i);
    const c = cond.get(i)!;
    const diff = subtract(h, w, sci, tmpl.exposure, c.scale, ctx.register);
    const det = centralDetection(h, w, diff);
    let label = 0;
    if (cls === 'supernova') {
      if (det.snr >= ctx.threshold) label = 1;
      else if (ctx.undetected === 'drop') {
        cc.dropped.sn_no_detection++;
        continue;
      }
    }
    const shownTemplate = tmpl.exposure.image.map((v) => v * c.scale);
    out.images.push(packChannels([shownTemplate, sci.image, diff.difference, diff.snr], h, w));
    out.labels.push(label);
    cc.kept++;
    if (label) cc.label1++;
    else cc.label0++;
    const info = out.info;
    info.object.push(archive.names[o]);
    info.objectClass.push(cls);
    info.mjd.push(archive.mjd[i]);
    info.snr.push(det.snr);
    info.scale.push(c.scale);
    info.seeing.push(c.seeing);
    info.templateSeeing.push(tmpl.exposure.seeing);
  }
}

function totalCounts(counts: Record<string, ClassCounts>): ClassCounts {
  const total = emptyCounts();
  for (const c of Object.values(counts)) {
    total.objects += c.objects;
    total.epochs += c.epochs;
    total.kept += c.kept;
    total.label0 += c.label0;
    total.label1 += c.label1;
    for (const r of DROP_REASONS) total.dropped[r] += c.dropped[r];
  }
  return total;
}

/** Parameters and calibration statistics of the derivation, for meta.json. */
function derivationRecord(ctx: DeriveCtx, classes: string[], dtByClass: Record<string, number[]>): Record<string, unknown> {
  const { cal, K } = ctx;
  const calibrationStats: Record<string, unknown> = {
    calibratorStars: cal.calibrators,
    calibratorEpochs: cal.calibratorEpochs,
    exposures: cal.exposures,
  };
  for (const [c, dts] of Object.entries(dtByClass)) {
    calibrationStats[`dtMinutes_${c}`] = { median: +median(dts).toFixed(2), max: +Math.max(...dts).toFixed(2) };
  }
  return {
    sky: 'median of the 2-pixel outer frame, per stamp; sky noise = 1.4826 MAD of the frame',
    badValues: `stamp dropped if any pixel is non-finite, <= ${SENTINEL_LOW} or >= ${SENTINEL_HIGH}`,
    template: `median of the object's first ${K} good epochs (the epoch itself left out), each sky-subtracted, divided by its exposure flux scale and blurred to the worst seeing among them`,
    calibration: 'exposure flux scale and Gaussian seeing from bright constant stars observed at the nearest time (object itself left out)',
    psfMatching: 'the sharper of science/template blurred by a Gaussian of sigma sqrt(|s_sci^2 - s_tmpl^2|)',
    registration: ctx.register
      ? 'template shifted (Lanczos-3, |shift| <= 0.75 px) onto the science by least squares when the template has a central source of SNR >= 30; reference epochs registered on the first the same way'
      : 'none',
    difference: 'science - flux scale x template (PSF matched)',
    snrDifference: 'difference / sqrt(propagated variance: sky noise + Poisson of sources at the effective gain, science and template)',
    detection: 'peak of the SNR difference within 2 px of the centre; SNR of the flux in a 3x3 box there, noise propagated through the matching kernel',
    detectionSnr: ctx.threshold,
    snUndetected: ctx.undetected,
    templateEpochs: K,
    effectiveGain: +ctx.gain.toFixed(4),
    calibrationStats,
    classesUsed: classes,
  };
}

/** What every share of the per-object work needs: the archive passes, done once per thread. */
export interface DeriveSetup {
  ctx: DeriveCtx;
  classes: string[];
  /** Epochs of each object, in time order. */
  byObject: number[][];
  /** The objects of the selected classes, in archive order. */
  selected: number[];
}

export function deriveSetup(opts: Hits2015Options): DeriveSetup {
  const archive = opts.archive ?? readHits2015Archive(opts.source ?? defaultArchivePath());
  const classes = parseClasses(opts.classes);
  const K = opts.templateEpochs ?? 5;
  const threshold = opts.detectionSnr ?? 5;
  if (!(Number.isInteger(K) && K >= 2)) throw new OptionError(['templateEpochs'], `must be an integer >= 2, got ${K}`);
  if (!Number.isFinite(threshold)) throw new OptionError(['detectionSnr'], `must be a number, got ${threshold}`);
  const { h, w } = archive;
  const frame = framePixels(h, w);
  const { good, sky, skySigma } = skyPass(archive, frame);
  const gain = effectiveGain(archive, good, sky, skySigma);
  const cal = new Calibration(archive, good, frame);
  const register: RegistrationOptions | false = opts.register === false ? false : {};
  const ctx: DeriveCtx = { archive, h, w, frame, good, gain, cal, K, threshold, undetected: opts.snUndetected ?? 'drop', register };
  return { ctx, classes, ...objectsOf(archive, classes) };
}

/** Each object's epochs in time order, and the objects of `classes` in archive order. */
export function objectsOf(archive: Hits2015Archive, classes: readonly string[]): { byObject: number[][]; selected: number[] } {
  const byObject: number[][] = archive.names.map(() => []);
  for (let i = 0; i < archive.n; i++) byObject[archive.object[i]].push(i);
  for (const list of byObject) list.sort((a, b) => archive.mjd[a] - archive.mjd[b]);
  const selected = byObject.map((_, o) => o).filter((o) => classes.includes(archive.classes[o]));
  return { byObject, selected };
}

/** Derive the objects `selected[from..to)` (every kept epoch, in archive order). */
export function deriveObjects(setup: DeriveSetup, from: number, to: number, onObject: () => void = () => {}): DeriveOut {
  const out: DeriveOut = {
    images: [],
    labels: [],
    info: { object: [], objectClass: [], mjd: [], snr: [], scale: [], seeing: [], templateSeeing: [] },
    counts: Object.fromEntries(setup.classes.map((c) => [c, emptyCounts()])),
    dtByClass: {},
  };
  for (let k = from; k < to; k++) {
    const o = setup.selected[k];
    deriveObject(setup.ctx, o, setup.byObject[o], out);
    onObject();
  }
  return out;
}

/** Consecutive shares of the objects, joined in order: the same output as one pass over all. */
export function joinDeriveOuts(parts: DeriveOut[]): DeriveOut {
  const [first, ...rest] = parts;
  for (const p of rest) {
    first.images.push(...p.images);
    first.labels.push(...p.labels);
    for (const k of Object.keys(first.info) as (keyof DeriveOut['info'])[]) (first.info[k] as unknown[]).push(...(p.info[k] as unknown[]));
    for (const [c, cc] of Object.entries(p.counts)) {
      const t = (first.counts[c] ??= emptyCounts());
      t.objects += cc.objects;
      t.epochs += cc.epochs;
      t.kept += cc.kept;
      t.label0 += cc.label0;
      t.label1 += cc.label1;
      for (const r of DROP_REASONS) t.dropped[r] += cc.dropped[r];
    }
    for (const [c, dts] of Object.entries(p.dtByClass)) (first.dtByClass[c] ??= []).push(...dts);
  }
  return first;
}

export function deriveResult(setup: DeriveSetup, out: DeriveOut): Hits2015Derived {
  const { ctx, classes } = setup;
  if (out.images.length === 0) throw new UserError(`no stamps left for classes ${classes.join(',')}`);
  return {
    h: ctx.h,
    w: ctx.w,
    images: out.images,
    labels: out.labels,
    info: out.info,
    byClass: out.counts,
    total: totalCounts(out.counts),
    derivation: derivationRecord(ctx, classes, out.dtByClass),
  };
}

/**
 * The per-epoch derivation (the slow part): every kept stamp of the selected classes, in
 * archive order, with its label, provenance and the counts. Balance and augmentation come
 * after, in assembleHits2015. deriveHits2015Parallel (derive-parallel.ts) shares the objects
 * out over worker threads with the same result.
 */
export function deriveHits2015(opts: Hits2015Options = {}): Hits2015Derived {
  const setup = deriveSetup(opts);
  const progress = new ProgressReporter(opts.onProgress, { label: 'hits2015', unit: 'objects', total: setup.selected.length });
  const out = deriveObjects(setup, 0, setup.selected.length, () => progress.tick());
  progress.stop();
  return deriveResult(setup, out);
}
