/**
 * Simulated difference-imaging stamps, for tests and for any N: the same four channels,
 * subtraction and normalisation as the HiTS 2015 dataset (the pipeline functions are shared),
 * applied to synthetic science and template images with DECam-like seeing, sky and noise.
 *
 * real (label 1): a point source (Moffat PSF) new in the science image, with or without a
 * host galaxy present in both images. bogus (label 0): cosmic ray, hot pixel, bad column,
 * subtraction dipole (misaligned template) or noise only. docs/data.md lists the ranges.
 */
import type { Dataset } from './dataset.js';
import {
  CHANNELS,
  LABEL_NAMES,
  convolveSeparable,
  framePixels,
  gaussianKernel1d,
  packChannels,
  scienceExposure,
  subtract,
  templateExposure,
} from './hits2015.js';
import { Rng } from '../util/rng.js';
import { ProgressReporter, type ProgressCallback } from '../util/progress.js';
import { OptionError, UserError } from '../util/errors.js';

export const BOGUS_KINDS = ['cosmic_ray', 'hot_pixel', 'bad_column', 'dipole', 'noise_only'] as const;
export type StampKind = 'real' | 'real_host' | (typeof BOGUS_KINDS)[number];

/** Counts -> electrons (the HiTS 2015 stamps' effective value is ~3.1) and read noise (counts). */
const GAIN = 3.1;
const READ_NOISE = 2;
/** Epochs in the simulated template stack. */
const TEMPLATE_EPOCHS = 5;
const FWHM_PER_SIGMA = 2 * Math.sqrt(2 * Math.LN2);

export interface SimulateOptions {
  n: number;
  seed?: number;
  /** Fraction of real (label 1) stamps; exactly floor(n * f) of them. */
  realFraction?: number;
  /** Stamp side, pixels (21 as HiTS). */
  size?: number;
  /** The command line, recorded in meta.json. */
  command?: string;
  /** Progress (stamps); nothing is printed. */
  onProgress?: ProgressCallback;
  /** Kept for old callers; progress only goes to onProgress. */
  quiet?: boolean;
}

export interface SimulateResult {
  dataset: Dataset;
  /** What each stamp holds. */
  kinds: StampKind[];
  counts: Record<string, number>;
}

function logUniform(rng: Rng, lo: number, hi: number): number {
  return Math.exp(rng.uniform(Math.log(lo), Math.log(hi)));
}

/** Moffat profile (beta 3, the usual ground-based seeing shape) of unit total flux. */
export function addMoffat(img: Float64Array, size: number, x0: number, y0: number, fwhm: number, flux: number, beta = 3): void {
  const alpha = fwhm / (2 * Math.sqrt(2 ** (1 / beta) - 1));
  const norm = (beta - 1) / (Math.PI * alpha * alpha);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const r2 = ((x - x0) ** 2 + (y - y0) ** 2) / (alpha * alpha);
      img[y * size + x] += flux * norm * (1 + r2) ** -beta;
    }
  }
}

interface Galaxy {
  x: number;
  y: number;
  /** Exponential scale length along the major axis, pixels. */
  scale: number;
  axisRatio: number;
  angle: number;
  flux: number;
}

/** An exponential disk seen through a Gaussian PSF of the given FWHM. */
function galaxyImage(size: number, g: Galaxy, fwhm: number): Float64Array {
  const img = new Float64Array(size * size);
  const c = Math.cos(g.angle);
  const s = Math.sin(g.angle);
  let sum = 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = x - g.x;
      const dy = y - g.y;
      const u = dx * c + dy * s;
      const v = (-dx * s + dy * c) / g.axisRatio;
      sum += img[y * size + x] = Math.exp(-Math.sqrt(u * u + v * v) / g.scale);
    }
  }
  for (let p = 0; p < img.length; p++) img[p] *= g.flux / sum;
  return convolveSeparable(img, size, size, gaussianKernel1d(fwhm / FWHM_PER_SIGMA));
}

function addNoise(rng: Rng, img: Float64Array, skyVar: number, sourceVarScale: number): void {
  for (let p = 0; p < img.length; p++) {
    img[p] += Math.sqrt(skyVar + Math.max(img[p], 0) * sourceVarScale) * rng.normal();
  }
}

/** A per-stamp generator: stamp i depends only on (seed, i), so a smaller N is a prefix. */
function stampRng(seed: number, i: number): Rng {
  return new Rng((Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b)) >>> 0);
}

export function simulateStamp(seed: number, i: number, real: boolean, size = 21): { channels: Float32Array; kind: StampKind } {
  const rng = stampRng(seed, i);
  const c = (size - 1) / 2;
  const frame = framePixels(size, size);
  // Observing conditions: DECam 0.27"/px, seeing 0.8-1.6" (FWHM 3-6 px); templates are
  // stacks of better-seeing nights.
  const fwhmSci = rng.uniform(3, 6);
  const fwhmTmpl = rng.uniform(3, 4.5);
  const sky = logUniform(rng, 90, 800);
  const skyVar = sky / GAIN + READ_NOISE ** 2;
  const skySigma = Math.sqrt(skyVar);
  const tmplSkyVar = ((Math.PI / 2) * (120 / GAIN + READ_NOISE ** 2)) / TEMPLATE_EPOCHS;

  const sci = new Float64Array(size * size);
  const tmpl = new Float64Array(size * size);
  // Field stars, in both images (sub-pixel registration error in the template).
  const nStars = rng.poisson(0.7);
  for (let k = 0; k < nStars; k++) {
    let x: number;
    let y: number;
    do {
      x = rng.uniform(-1, size);
      y = rng.uniform(-1, size);
    } while (Math.hypot(x - c, y - c) < 5);
    const flux = logUniform(rng, 300, 30000);
    addMoffat(sci, size, x, y, fwhmSci, flux);
    addMoffat(tmpl, size, x + 0.15 * rng.normal(), y + 0.15 * rng.normal(), fwhmTmpl, flux);
  }
  // A candidate is centred on its detection to the nearest pixel.
  const x0 = c + rng.uniform(-0.5, 0.5);
  const y0 = c + rng.uniform(-0.5, 0.5);
  const addHost = (offsetLo: number, offsetHi: number) => {
    const r = rng.uniform(offsetLo, offsetHi);
    const t = rng.uniform(0, 2 * Math.PI);
    const g: Galaxy = {
      x: x0 + r * Math.cos(t),
      y: y0 + r * Math.sin(t),
      scale: rng.uniform(1, 3),
      axisRatio: rng.uniform(0.3, 1),
      angle: rng.uniform(0, Math.PI),
      flux: logUniform(rng, 60, 1200) * skySigma,
    };
    const gs = galaxyImage(size, g, fwhmSci);
    const gt = galaxyImage(size, g, fwhmTmpl);
    for (let p = 0; p < sci.length; p++) {
      sci[p] += gs[p];
      tmpl[p] += gt[p];
    }
  };

  let kind: StampKind;
  if (real) {
    const withHost = rng.next() < 0.5;
    kind = withHost ? 'real_host' : 'real';
    if (withHost) addHost(0.5, 4);
    // Flux for a PSF-optimal SNR of 5-100: noise-equivalent area 4 pi sigma^2.
    const snr = logUniform(rng, 5, 100);
    const sigmaPsf = fwhmSci / FWHM_PER_SIGMA;
    addMoffat(sci, size, x0, y0, fwhmSci, snr * skySigma * Math.sqrt(4 * Math.PI) * sigmaPsf);
  } else {
    kind = BOGUS_KINDS[rng.int(BOGUS_KINDS.length)];
    const px = Math.round(x0);
    const py = Math.round(y0);
    switch (kind) {
      case 'cosmic_ray': {
        // 1-3 connected pixels, sharper than any PSF, in the science image only.
        const len = 1 + rng.int(3);
        const dir = [[1, 0], [0, 1], [1, 1], [1, -1]][rng.int(4)];
        for (let k = 0; k < len; k++) {
          const x = px + dir[0] * k - (len > 2 ? dir[0] : 0);
          const y = py + dir[1] * k - (len > 2 ? dir[1] : 0);
          if (x >= 0 && x < size && y >= 0 && y < size) sci[y * size + x] += logUniform(rng, 8, 150) * skySigma;
        }
        break;
      }
      case 'hot_pixel':
        sci[py * size + px] += logUniform(rng, 10, 300) * skySigma;
        break;
      case 'bad_column': {
        // A column through the candidate, part or all of the stamp, hot or dead.
        const x = px + rng.int(3) - 1;
        const len = 5 + rng.int(size - 4);
        const start = Math.max(0, Math.min(size - len, py - rng.int(len)));
        const level = (rng.next() < 0.7 ? 1 : -1) * logUniform(rng, 3, 60) * skySigma;
        for (let y = start; y < start + len; y++) sci[y * size + x] += level;
        break;
      }
      case 'dipole': {
        // A source present in both images, the template misregistered by 0.5-1.5 px.
        const flux = logUniform(rng, 20, 500) * skySigma * Math.sqrt(4 * Math.PI) * (fwhmSci / FWHM_PER_SIGMA);
        const d = rng.uniform(0.5, 1.5);
        const t = rng.uniform(0, 2 * Math.PI);
        addMoffat(sci, size, x0, y0, fwhmSci, flux);
        addMoffat(tmpl, size, x0 + d * Math.cos(t), y0 + d * Math.sin(t), fwhmTmpl, flux);
        break;
      }
      case 'noise_only':
        // Sometimes an unchanged galaxy: present, subtracted away, nothing new.
        if (rng.next() < 0.3) addHost(0, 3);
        break;
    }
  }
  // Science: read noise + Poisson noise of sky and sources (Gaussian approximation).
  const sciRaw = sci.map((v) => v + sky);
  addNoise(rng, sciRaw, READ_NOISE ** 2, 1 / GAIN);
  // Template: a sky-subtracted median stack of TEMPLATE_EPOCHS exposures at a typical sky.
  addNoise(rng, tmpl, tmplSkyVar, Math.PI / 2 / (GAIN * TEMPLATE_EPOCHS));
  const science = scienceExposure(sciRaw, frame, GAIN, fwhmSci / FWHM_PER_SIGMA);
  const template = templateExposure(tmpl, frame, GAIN, TEMPLATE_EPOCHS, fwhmTmpl / FWHM_PER_SIGMA);
  const diff = subtract(size, size, science, template, 1);
  return { channels: packChannels([template.image, science.image, diff.difference, diff.snr], size, size), kind };
}

/** `n` simulated stamps, deterministic for a seed; real stamps are exactly floor(n * realFraction). */
export function simulateDataset(opts: SimulateOptions): SimulateResult {
  const n = opts.n;
  const seed = opts.seed ?? 1;
  const f = opts.realFraction ?? 0.5;
  const size = opts.size ?? 21;
  if (!(Number.isInteger(n) && n > 0)) throw new OptionError(['n'], `must be a positive integer, got ${n}`);
  if (!(f >= 0 && f <= 1)) throw new OptionError(['realFraction'], `must be in [0,1], got ${f}`);
  if (!(Number.isInteger(size) && size >= 9)) throw new UserError(`stamp size must be an integer >= 9, got ${size}`);
  const C = CHANNELS.length;
  const s = size * size * C;
  const images = new Float32Array(n * s);
  const labels = new Int32Array(n);
  const ids: string[] = new Array(n);
  const kinds: StampKind[] = new Array(n);
  const counts: Record<string, number> = {};
  const progress = new ProgressReporter(opts.onProgress, { label: 'simulate', unit: 'stamps', total: n });
  for (let i = 0; i < n; i++) {
    // Interleaved so that any prefix keeps the fraction: stamp i is real when
    // floor((i+1) f) > floor(i f).
    const real = Math.floor((i + 1) * f) > Math.floor(i * f);
    const st = simulateStamp(seed, i, real, size);
    images.set(st.channels, i * s);
    labels[i] = real ? 1 : 0;
    ids[i] = `sim${seed}-${i}`;
    kinds[i] = st.kind;
    counts[st.kind] = (counts[st.kind] ?? 0) + 1;
    progress.tick();
  }
  progress.stop();
  const dataset: Dataset = {
    images,
    shape: [n, size, size, C],
    labels,
    ids,
    meta: {
      source: 'simulate',
      channels: CHANNELS,
      classes: LABEL_NAMES,
      normalisation: 'each channel of each stamp min-max scaled to [0,1]',
      simulation: {
        seed,
        realFraction: f,
        pixelScale: '0.27 arcsec (DECam)',
        seeingFwhmPx: { science: [3, 6], template: [3, 4.5] },
        psf: 'Moffat beta=3 (matched with a Gaussian, as for the real data)',
        skyCounts: [90, 800],
        gain: GAIN,
        readNoise: READ_NOISE,
        templateEpochs: TEMPLATE_EPOCHS,
        realSnr: [5, 100],
        hostFraction: 0.5,
        hostFluxSkySigmas: [60, 1200],
        bogusKinds: [...BOGUS_KINDS],
        idsPerStamp: 'one simulated object per stamp',
      },
      counts,
      ...(opts.command ? { command: opts.command } : {}),
    },
  };
  return { dataset, kinds, counts };
}
