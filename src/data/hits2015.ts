/**
 * The HiTS 2015 stamp dataset: from the shipped science-stamp time series (data/hits2015)
 * derive, per epoch, the seed's four image types (template, science, difference, SNR
 * difference) and a supernova / not-supernova label. docs/data.md explains every choice.
 *
 * The processing is blind to the object class: every object goes through the same sky
 * subtraction, reference epochs, photometric scaling and PSF matching, so a classifier
 * trained on the result cannot learn the processing instead of the sky. Only the label uses
 * the class (a supernova epoch with a central detection is label 1).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseNpz } from './npz.js';
import { toFloat32, type NpyArray } from './npy.js';
import type { Dataset } from './dataset.js';
import { fileError, UserError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { Rng } from '../util/rng.js';

export const HITS_CLASSES = ['supernova', 'constant', 'eclipsing_binary', 'rr_lyrae'] as const;
export type HitsClass = (typeof HITS_CLASSES)[number];
export const CHANNELS = ['template', 'science', 'difference', 'snr_difference'];
export const LABEL_NAMES = ['not_supernova', 'supernova'];
export const DROP_REASONS = ['bad_pixels', 'no_calibration', 'no_template', 'sn_no_detection'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** Pixel values at or beyond these mark bad data in the archive (-9999, 9.998e7). */
const SENTINEL_LOW = -999;
const SENTINEL_HIGH = 1e7;

// ---------------------------------------------------------------------------------------
// Pure stamp math (also used by the simulator, so simulated and real stamps share it).
// ---------------------------------------------------------------------------------------

/** Flat indices of the outer `width`-pixel frame of an h x w stamp: the sky region. */
export function framePixels(h: number, w: number, width = 2): Int32Array {
  const out: number[] = [];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (y < width || y >= h - width || x < width || x >= w - width) out.push(y * w + x);
    }
  }
  return Int32Array.from(out);
}

export function median(values: ArrayLike<number>): number {
  const n = values.length;
  if (n === 0) return NaN;
  const a = Float64Array.from(values).sort();
  const m = n >> 1;
  return n % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

/** 1.4826 x median absolute deviation: the Gaussian sigma, robust to stars in the sample. */
export function robustSigma(values: ArrayLike<number>, center = median(values)): number {
  const d = new Float64Array(values.length);
  for (let i = 0; i < d.length; i++) d[i] = Math.abs(values[i] - center);
  return 1.4826 * median(d);
}

/** Sky level (median) and sky noise (robust sigma) of a stamp, from its frame pixels. */
export function skyStats(stamp: ArrayLike<number>, frame: Int32Array): { sky: number; sigma: number } {
  const v = new Float64Array(frame.length);
  for (let i = 0; i < frame.length; i++) v[i] = stamp[frame[i]];
  const sky = median(v);
  return { sky, sigma: robustSigma(v, sky) };
}

/** True when a stamp holds a non-finite value or an archive sentinel: never use it as flux. */
export function hasBadPixels(stamp: ArrayLike<number>): boolean {
  for (let i = 0; i < stamp.length; i++) {
    const v = stamp[i];
    if (!Number.isFinite(v) || v <= SENTINEL_LOW || v >= SENTINEL_HIGH) return true;
  }
  return false;
}

/** Normalised 1-D Gaussian, radius ceil(3 sigma) capped at `maxRadius`. */
export function gaussianKernel1d(sigma: number, maxRadius = 10): Float64Array {
  if (!(sigma > 0)) return Float64Array.of(1);
  const r = Math.min(maxRadius, Math.max(1, Math.ceil(3 * sigma)));
  const k = new Float64Array(2 * r + 1);
  let s = 0;
  for (let i = -r; i <= r; i++) s += k[i + r] = Math.exp(-(i * i) / (2 * sigma * sigma));
  for (let i = 0; i < k.length; i++) k[i] /= s;
  return k;
}

function reflect(i: number, n: number): number {
  // numpy 'reflect' (edge pixel not repeated); kernels never exceed the stamp size.
  if (i < 0) i = -i;
  if (i >= n) i = 2 * (n - 1) - i;
  return Math.min(n - 1, Math.max(0, i));
}

/**
 * Convolve an h x w image with the separable kernel k (x) k, reflecting at the edges so
 * the noise level near the border stays that of the interior.
 */
export function convolveSeparable(img: ArrayLike<number>, h: number, w: number, k: Float64Array): Float64Array {
  const r = (k.length - 1) >> 1;
  const kn = k.length;
  const tmp = new Float64Array(h * w);
  const out = new Float64Array(h * w);
  const ix = reflectTable(w, r, kn);
  const iy = reflectTable(h, r, kn);
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < w; x++) {
      let s = 0;
      const base = x * kn;
      for (let j = 0; j < kn; j++) s += k[j] * img[row + ix[base + j]];
      tmp[row + x] = s;
    }
  }
  for (let y = 0; y < h; y++) {
    const base = y * kn;
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let j = 0; j < kn; j++) s += k[j] * tmp[iy[base + j] * w + x];
      out[y * w + x] = s;
    }
  }
  return out;
}

/** For each output position i, the reflected source indices i - r + j, j < taps. */
function reflectTable(n: number, r: number, taps: number): Int32Array {
  const t = new Int32Array(n * taps);
  for (let i = 0; i < n; i++) for (let j = 0; j < taps; j++) t[i * taps + j] = reflect(i - r + j, n);
  return t;
}

export interface PsfFit {
  /** Gaussian sigma in pixels (FWHM = 2.3548 sigma). */
  sigma: number;
  /** Total flux of the fitted Gaussian (amplitude x 2 pi sigma^2). */
  flux: number;
  x0: number;
  y0: number;
}

/**
 * Fit a circular Gaussian to the sky-subtracted source at the centre of a stamp: centroid
 * from first moments, amplitude by linear least squares, sigma by golden-section search of
 * the chi-square over pixels within `radius` of the centroid. Null when there is no source.
 */
export function fitGaussianPsf(t: ArrayLike<number>, h: number, w: number, radius = 6): PsfFit | null {
  let x0 = (w - 1) / 2;
  let y0 = (h - 1) / 2;
  for (let it = 0; it < 3; it++) {
    let sw = 0;
    let sx = 0;
    let sy = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = t[y * w + x];
        if (v <= 0 || (x - x0) ** 2 + (y - y0) ** 2 > 16) continue;
        sw += v;
        sx += v * x;
        sy += v * y;
      }
    }
    if (!(sw > 0)) return null;
    x0 = sx / sw;
    y0 = sy / sw;
  }
  const px: number[] = [];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) if ((x - x0) ** 2 + (y - y0) ** 2 <= radius * radius) px.push(y * w + x);
  }
  const fit = (sigma: number) => {
    let tg = 0;
    let gg = 0;
    for (const p of px) {
      const dx = (p % w) - x0;
      const dy = Math.floor(p / w) - y0;
      const g = Math.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma));
      tg += t[p] * g;
      gg += g * g;
    }
    // chi2 = sum t^2 - (sum t g)^2 / sum g^2: minimising it maximises the second term.
    return { amp: tg / gg, score: -(tg * tg) / gg, tg };
  };
  let a = 0.5;
  let b = 6;
  const phi = (Math.sqrt(5) - 1) / 2;
  let c = b - phi * (b - a);
  let d = a + phi * (b - a);
  let fc = fit(c).score;
  let fd = fit(d).score;
  for (let i = 0; i < 40; i++) {
    if (fc < fd) {
      b = d;
      d = c;
      fd = fc;
      c = b - phi * (b - a);
      fc = fit(c).score;
    } else {
      a = c;
      c = d;
      fc = fd;
      d = a + phi * (b - a);
      fd = fit(d).score;
    }
  }
  const sigma = (a + b) / 2;
  const { amp } = fit(sigma);
  if (!(amp > 0)) return null;
  return { sigma, flux: amp * 2 * Math.PI * sigma * sigma, x0, y0 };
}

/** Per-pixel median of equally sized images. */
export function medianStack(images: Float64Array[]): Float64Array {
  const n = images.length;
  const out = new Float64Array(images[0].length);
  const col = new Float64Array(n);
  for (let p = 0; p < out.length; p++) {
    for (let k = 0; k < n; k++) col[k] = images[k][p];
    col.sort();
    out[p] = n % 2 ? col[n >> 1] : (col[(n >> 1) - 1] + col[n >> 1]) / 2;
  }
  return out;
}

/** One exposure ready for subtraction: sky-subtracted counts, their variance, PSF width. */
export interface Exposure {
  image: Float64Array;
  variance: Float64Array;
  /** Gaussian PSF sigma, pixels. */
  seeing: number;
}

export interface Difference {
  difference: Float64Array;
  variance: Float64Array;
  snr: Float64Array;
  /** Which image was blurred to match the other's PSF, and by what Gaussian sigma. */
  matched: 'template' | 'science' | 'none';
  kernelSigma: number;
  /** Sub-pixel shift applied to the template (null: not registered). */
  shift: { dx: number; dy: number } | null;
  /** Inputs to the noise of aperture sums (pixels are correlated after convolution). */
  noise: { sciVar: Float64Array; sciKernel: Float64Array; tmplVar: Float64Array; tmplKernel: Float64Array };
}

/**
 * A single exposure from its raw stamp: sky (frame median) subtracted; variance = sky noise
 * (frame robust sigma, squared) + Poisson noise of the sources at the effective gain.
 */
export function scienceExposure(raw: ArrayLike<number>, frame: Int32Array, gain: number, seeing: number): Exposure {
  const { sky, sigma } = skyStats(raw, frame);
  const n = raw.length;
  const image = new Float64Array(n);
  const variance = new Float64Array(n);
  for (let p = 0; p < n; p++) {
    image[p] = raw[p] - sky;
    variance[p] = sigma * sigma + Math.max(image[p], 0) / gain;
  }
  return { image, variance, seeing };
}

/**
 * A template stacked (per-pixel median) from `epochs` sky-subtracted exposures: its sky noise
 * is measured on its own frame; the Poisson noise of its sources is that of one exposure
 * reduced by the stack (a median of m samples has ~pi/2m the variance of one).
 */
export function templateExposure(image: Float64Array, frame: Int32Array, gain: number, epochs: number, seeing: number): Exposure {
  const { sigma } = skyStats(image, frame);
  const variance = new Float64Array(image.length);
  for (let p = 0; p < image.length; p++) variance[p] = sigma * sigma + ((Math.PI / 2) * Math.max(image[p], 0)) / (gain * epochs);
  return { image, variance, seeing };
}

function lanczos3(x: number): number {
  if (x === 0) return 1;
  if (Math.abs(x) >= 3) return 0;
  const px = Math.PI * x;
  return (3 * Math.sin(px) * Math.sin(px / 3)) / (px * px);
}

/**
 * Move an image by a sub-pixel (dx, dy) (content at (x, y) goes to (x + dx, y + dy)) with a
 * separable Lanczos-3 kernel, which keeps the PSF shape, unlike bilinear interpolation.
 */
export function shiftImage(img: ArrayLike<number>, h: number, w: number, dx: number, dy: number): Float64Array {
  const pass = (src: ArrayLike<number>, d: number, alongX: boolean) => {
    const out = new Float64Array(h * w);
    // out(x) = sum_j L(j - f) src(x + i0 + j) with -d = i0 + f, j = -2..3.
    const i0 = Math.floor(-d);
    const f = -d - i0;
    const taps = new Float64Array(6);
    let norm = 0;
    for (let j = -2; j <= 3; j++) norm += taps[j + 2] = lanczos3(j - f);
    for (let j = 0; j < 6; j++) taps[j] /= norm;
    const n = alongX ? w : h;
    const idx = reflectTable(n, 2 - i0, 6);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let v = 0;
        if (alongX) {
          const base = x * 6;
          for (let j = 0; j < 6; j++) v += taps[j] * src[y * w + idx[base + j]];
        } else {
          const base = y * 6;
          for (let j = 0; j < 6; j++) v += taps[j] * src[idx[base + j] * w + x];
        }
        out[y * w + x] = v;
      }
    }
    return out;
  };
  return pass(pass(img, dx, true), dy, false);
}

export interface RegistrationOptions {
  /** Register only when the template's central source has at least this SNR. */
  minTemplateSnr?: number;
  /** Largest shift allowed (pixels): stamps are cut at whole pixels, so offsets are < 1 px. */
  maxShift?: number;
  /** Pixels within this radius of the centre are fitted. */
  radius?: number;
}

/**
 * Sub-pixel shift (dx, dy) that best maps the (PSF-matched, scaled) template onto the science
 * image, by weighted Gauss-Newton least squares over the central pixels; null when the
 * template has no significant central source to register on.
 */
export function registrationShift(
  h: number,
  w: number,
  sci: Float64Array,
  tmpl: Float64Array,
  variance: Float64Array,
  opts: RegistrationOptions = {},
): { dx: number; dy: number } | null {
  const minSnr = opts.minTemplateSnr ?? 30;
  const maxShift = opts.maxShift ?? 0.75;
  const radius = opts.radius ?? 5;
  const cx = (w - 1) / 2;
  const cy = (h - 1) / 2;
  const px: number[] = [];
  let flux = 0;
  let fvar = 0;
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      const r2 = (x - cx) ** 2 + (y - cy) ** 2;
      if (r2 > radius * radius) continue;
      px.push(y * w + x);
      if (r2 <= 9) {
        flux += tmpl[y * w + x];
        fvar += variance[y * w + x];
      }
    }
  }
  if (!(fvar > 0) || flux / Math.sqrt(fvar) < minSnr) return null;
  let dx = 0;
  let dy = 0;
  for (let it = 0; it < 4; it++) {
    const t = dx === 0 && dy === 0 ? tmpl : shiftImage(tmpl, h, w, dx, dy);
    let a = 0;
    let b = 0;
    let c = 0;
    let rx = 0;
    let ry = 0;
    for (const p of px) {
      // d t(x - dx) / d dx = -dt/dx: the model's sensitivity to the shift.
      const gx = -(t[p + 1] - t[p - 1]) / 2;
      const gy = -(t[p + w] - t[p - w]) / 2;
      const wt = 1 / variance[p];
      const r = sci[p] - t[p];
      a += wt * gx * gx;
      b += wt * gx * gy;
      c += wt * gy * gy;
      rx += wt * r * gx;
      ry += wt * r * gy;
    }
    const det = a * c - b * b;
    if (!(det > 0)) return null;
    const ux = (c * rx - b * ry) / det;
    const uy = (a * ry - b * rx) / det;
    dx = Math.max(-maxShift, Math.min(maxShift, dx + ux));
    dy = Math.max(-maxShift, Math.min(maxShift, dy + uy));
    if (Math.abs(ux) < 0.005 && Math.abs(uy) < 0.005) break;
  }
  return { dx, dy };
}

/** Blurs below this sigma (pixels) are skipped: the kernel would be a delta function. */
const MIN_KERNEL_SIGMA = 0.25;

/**
 * Science minus scaled template after Gaussian PSF matching (the sharper image is blurred to
 * the broader one, Alard-Lupton style with a single Gaussian), and the per-pixel SNR using
 * the propagated variance of both inputs.
 */
export function subtract(
  h: number,
  w: number,
  science: Exposure,
  template: Exposure,
  scale: number,
  register: RegistrationOptions | false = false,
): Difference {
  const dsq = science.seeing ** 2 - template.seeing ** 2;
  const ks = Math.sqrt(Math.abs(dsq));
  const delta: Float64Array = Float64Array.of(1);
  let sci: Float64Array = science.image;
  let sciVar: Float64Array = science.variance;
  let tmpl: Float64Array = template.image;
  let tmplVar: Float64Array = template.variance;
  let sciKernel: Float64Array = delta;
  let tmplKernel: Float64Array = delta;
  let matched: Difference['matched'] = 'none';
  if (ks >= MIN_KERNEL_SIGMA) {
    const k = gaussianKernel1d(ks);
    const k2 = k.map((v) => v * v);
    if (dsq > 0) {
      tmpl = convolveSeparable(tmpl, h, w, k);
      tmplVar = convolveSeparable(tmplVar, h, w, k2);
      tmplKernel = k;
      matched = 'template';
    } else {
      sci = convolveSeparable(sci, h, w, k);
      sciVar = convolveSeparable(sciVar, h, w, k2);
      sciKernel = k;
      matched = 'science';
    }
  }
  const n = h * w;
  let shift: { dx: number; dy: number } | null = null;
  if (register) {
    const scaled = tmpl.map((v) => v * scale);
    const v = sciVar.map((x, p) => x + scale * scale * tmplVar[p]);
    shift = registrationShift(h, w, sci, scaled, v, register);
    if (shift) {
      tmpl = shiftImage(tmpl, h, w, shift.dx, shift.dy);
      tmplVar = shiftImage(tmplVar, h, w, shift.dx, shift.dy);
    }
  }
  const difference = new Float64Array(n);
  const variance = new Float64Array(n);
  const snr = new Float64Array(n);
  for (let p = 0; p < n; p++) {
    difference[p] = sci[p] - scale * tmpl[p];
    variance[p] = sciVar[p] + scale * scale * tmplVar[p];
    snr[p] = variance[p] > 0 ? difference[p] / Math.sqrt(variance[p]) : 0;
  }
  return {
    difference,
    variance,
    snr,
    matched,
    kernelSigma: matched === 'none' ? 0 : ks,
    shift,
    noise: {
      sciVar: science.variance,
      sciKernel,
      tmplVar: template.variance.map((v) => v * scale * scale),
      tmplKernel,
    },
  };
}

/** Variance of the sum of a (2 half + 1)^2 box of a convolved image of independent pixels. */
function boxSumVariance(h: number, w: number, cx: number, cy: number, half: number, v: Float64Array, k: Float64Array): number {
  const box = new Float64Array(h * w);
  for (let y = cy - half; y <= cy + half; y++) {
    for (let x = cx - half; x <= cx + half; x++) if (y >= 0 && y < h && x >= 0 && x < w) box[y * w + x] = 1;
  }
  // The box sum of k*x is sum_q (box (x) k)(q) x(q): the kernel is symmetric.
  const wts = k.length > 1 ? convolveSeparable(box, h, w, k) : box;
  let s = 0;
  for (let p = 0; p < h * w; p++) s += wts[p] * wts[p] * v[p];
  return s;
}

export interface Detection {
  /** Box-aperture SNR of the difference at the peak. */
  snr: number;
  x: number;
  y: number;
}

/**
 * Is there a source at the centre of the difference? Peak of the SNR image within
 * `searchRadius` pixels of the centre, then the SNR of the flux in a 3x3 box there, with the
 * noise of the box sum propagated through the PSF-matching kernel.
 */
export function centralDetection(h: number, w: number, d: Difference, searchRadius = 2, half = 1): Detection {
  const cx = (w - 1) >> 1;
  const cy = (h - 1) >> 1;
  let best = -Infinity;
  let bx = cx;
  let by = cy;
  for (let y = cy - searchRadius; y <= cy + searchRadius; y++) {
    for (let x = cx - searchRadius; x <= cx + searchRadius; x++) {
      if ((x - cx) ** 2 + (y - cy) ** 2 > searchRadius * searchRadius) continue;
      const v = d.snr[y * w + x];
      if (v > best) {
        best = v;
        bx = x;
        by = y;
      }
    }
  }
  let sum = 0;
  for (let y = by - half; y <= by + half; y++) {
    for (let x = bx - half; x <= bx + half; x++) if (y >= 0 && y < h && x >= 0 && x < w) sum += d.difference[y * w + x];
  }
  const varSum =
    boxSumVariance(h, w, bx, by, half, d.noise.sciVar, d.noise.sciKernel) +
    boxSumVariance(h, w, bx, by, half, d.noise.tmplVar, d.noise.tmplKernel);
  return { snr: varSum > 0 ? sum / Math.sqrt(varSum) : 0, x: bx, y: by };
}

/** Min-max to [0,1] (the seed's per-stamp normalisation); a flat image becomes all zeros. */
export function minMaxNormalise(img: ArrayLike<number>): Float32Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < img.length; i++) {
    if (img[i] < lo) lo = img[i];
    if (img[i] > hi) hi = img[i];
  }
  const out = new Float32Array(img.length);
  const span = hi - lo;
  if (span > 0) for (let i = 0; i < img.length; i++) out[i] = Math.min(1, Math.max(0, (img[i] - lo) / span));
  return out;
}

/** Interleave per-channel h x w images into one HWC stamp, each channel min-max normalised. */
export function packChannels(channels: ArrayLike<number>[], h: number, w: number): Float32Array {
  const c = channels.length;
  const out = new Float32Array(h * w * c);
  channels.forEach((ch, k) => {
    const norm = minMaxNormalise(ch);
    for (let p = 0; p < h * w; p++) out[p * c + k] = norm[p];
  });
  return out;
}

/**
 * One of the 8 symmetries of a square (the dihedral group D4) applied to an HWC stamp:
 * `k & 3` quarter turns counter-clockwise (as numpy.rot90), after a left-right flip when `k & 4`.
 */
export function dihedral(src: ArrayLike<number>, n: number, c: number, k: number): Float32Array {
  const out = new Float32Array(n * n * c);
  const turns = k & 3;
  const flip = (k & 4) !== 0;
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      // Source pixel of output (y, x): undo the rotation, then the flip.
      let sy = y;
      let sx = x;
      for (let t = 0; t < turns; t++) {
        const ny = sx;
        const nx = n - 1 - sy;
        sy = ny;
        sx = nx;
      }
      if (flip) sx = n - 1 - sx;
      const s = (sy * n + sx) * c;
      const o = (y * n + x) * c;
      for (let ch = 0; ch < c; ch++) out[o + ch] = src[s + ch];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The archive.
// ---------------------------------------------------------------------------------------

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

/** data/hits2015/stamps.npz inside the installed package (this file is dist/src/data/). */
export function defaultArchivePath(): string {
  return fileURLToPath(new URL('../../../data/hits2015/stamps.npz', import.meta.url));
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

// ---------------------------------------------------------------------------------------
// Exposure calibration from the constant stars.
// ---------------------------------------------------------------------------------------

export interface CalibrationOptions {
  /** Calibrator stars need this median Gaussian-fit flux (counts). */
  minFlux?: number;
  /** Epochs whose brightest sky-subtracted pixel exceeds this are skipped (non-linearity). */
  saturation?: number;
  /** A bucket is used only with at least this many calibrators other than the object. */
  minStars?: number;
  /** Calibrators observed further away in time than this (minutes) are not used. */
  maxDtMinutes?: number;
}

interface CalPoint {
  obj: number;
  ratio: number;
  seeing: number;
}

export interface ExposureConditions {
  /** Flux of this exposure relative to the calibrators' median exposure. */
  scale: number;
  /** Gaussian PSF sigma, pixels. */
  seeing: number;
  /** |time difference| to the calibrator exposure used, minutes. */
  dtMinutes: number;
  stars: number;
}

/**
 * Photometric scale and seeing of every exposure, measured on bright constant stars: stars
 * observed at the same time (MJD equal in float32, as the archive stores star times) form a
 * bucket; an epoch takes the median of the nearest bucket in time, leaving its own object
 * out so a star never calibrates itself.
 */
export class Calibration {
  private readonly keys: number[];
  private readonly buckets: CalPoint[][];
  readonly calibrators: number;
  readonly calibratorEpochs: number;
  private readonly minStars: number;
  private readonly maxDtMinutes: number;

  constructor(archive: Hits2015Archive, good: Uint8Array, frame: Int32Array, opts: CalibrationOptions = {}) {
    const minFlux = opts.minFlux ?? 2000;
    const saturation = opts.saturation ?? 25000;
    this.minStars = opts.minStars ?? 1;
    this.maxDtMinutes = opts.maxDtMinutes ?? 60;
    const { h, w } = archive;
    const s = h * w;
    const byObject = new Map<number, number[]>();
    for (let i = 0; i < archive.n; i++) {
      if (!good[i] || archive.classes[archive.object[i]] !== 'constant') continue;
      const list = byObject.get(archive.object[i]);
      if (list) list.push(i);
      else byObject.set(archive.object[i], [i]);
    }
    const map = new Map<number, CalPoint[]>();
    let stars = 0;
    let epochs = 0;
    const t = new Float64Array(s);
    for (const [obj, idx] of byObject) {
      const fits: { i: number; flux: number; seeing: number }[] = [];
      for (const i of idx) {
        const st = archive.stamps.subarray(i * s, (i + 1) * s);
        const { sky } = skyStats(st, frame);
        let peak = -Infinity;
        for (let p = 0; p < s; p++) {
          t[p] = st[p] - sky;
          if (t[p] > peak) peak = t[p];
        }
        if (peak > saturation) continue;
        const f = fitGaussianPsf(t, h, w);
        if (f && f.sigma > 0.6 && f.sigma < 5.5 && Math.hypot(f.x0 - (w - 1) / 2, f.y0 - (h - 1) / 2) < 2) {
          fits.push({ i, flux: f.flux, seeing: f.sigma });
        }
      }
      if (fits.length < 10) continue;
      const ref = median(fits.map((f) => f.flux));
      if (!(ref >= minFlux)) continue;
      stars++;
      for (const f of fits) {
        const key = Math.fround(archive.mjd[f.i]);
        const list = map.get(key) ?? [];
        list.push({ obj, ratio: f.flux / ref, seeing: f.seeing });
        map.set(key, list);
        epochs++;
      }
    }
    this.keys = [...map.keys()].sort((a, b) => a - b);
    this.buckets = this.keys.map((k) => map.get(k)!);
    this.calibrators = stars;
    this.calibratorEpochs = epochs;
  }

  get exposures(): number {
    return this.keys.length;
  }

  /**
   * Conditions of the exposure at `mjd` for object `obj` (excluded from its own
   * calibration); null when no calibrator was observed within `maxDtMinutes`.
   */
  lookup(mjd: number, obj: number): ExposureConditions | null {
    const keys = this.keys;
    if (keys.length === 0) throw new UserError('no calibrator stars: the exposure calibration needs the constant stars of the archive');
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (keys[mid] < mjd) lo = mid + 1;
      else hi = mid;
    }
    // Walk outward from the insertion point, nearest bucket first.
    let a = lo - 1;
    let b = lo;
    while (a >= 0 || b < keys.length) {
      const takeB = a < 0 || (b < keys.length && keys[b] - mjd <= mjd - keys[a]);
      const j = takeB ? b++ : a--;
      if (Math.abs(keys[j] - mjd) * 1440 > this.maxDtMinutes) break;
      const pts = this.buckets[j].filter((p) => p.obj !== obj);
      if (pts.length < this.minStars) continue;
      return {
        scale: median(pts.map((p) => p.ratio)),
        seeing: median(pts.map((p) => p.seeing)),
        dtMinutes: Math.abs(keys[j] - mjd) * 1440,
        stars: pts.length,
      };
    }
    return null;
  }
}

// ---------------------------------------------------------------------------------------
// The dataset builder.
// ---------------------------------------------------------------------------------------

export interface Hits2015Options {
  /** Path of stamps.npz (default: the copy shipped in the package). */
  source?: string;
  /** A preloaded archive (tests; overrides `source`). */
  archive?: Hits2015Archive;
  /** Object classes to use (default all four). */
  classes?: string[];
  balance?: 'none' | 'undersample';
  /** Rotation/flip copies: none, rot (x4 quarter turns), dihedral (x8 with flips). */
  augment?: 'none' | 'rot' | 'dihedral';
  /**
   * Labels whose stamps get the rotation/flip copies (default: every label). [1] augments
   * only the rare supernova class: more of it to learn from without repeating the majority.
   */
  augmentLabels?: number[];
  seed?: number;
  /** Detection threshold: box-aperture SNR of the difference at the centre. */
  detectionSnr?: number;
  /** Supernova epochs without a detection: dropped (default) or labelled not-supernova. */
  snUndetected?: 'drop' | 'negative';
  /** How many of the object's first good epochs make its template. */
  templateEpochs?: number;
  /** The command line, recorded in meta.json. */
  command?: string;
  quiet?: boolean;
  /** Sub-pixel registration of the template on a significant central source (default on). */
  register?: boolean;
}

export interface ClassCounts {
  objects: number;
  epochs: number;
  kept: number;
  dropped: Record<DropReason, number>;
  label0: number;
  label1: number;
}

export interface Hits2015Summary {
  byClass: Record<string, ClassCounts>;
  total: ClassCounts;
  /** After --balance: stamps per label (null when not balanced). */
  balanced: { label0: number; label1: number } | null;
  augmentFactor: number;
  /** Labels that got the copies (undefined: all). */
  augmentLabels?: number[];
  final: { n: number; label0: number; label1: number; objects: number };
}

/** Per-stamp provenance, aligned with the output dataset. */
export interface StampInfo {
  object: string[];
  objectClass: string[];
  mjd: Float64Array;
  detectionSnr: Float32Array;
  /** Exposure flux scale and seeing (Gaussian sigma, px) used, and the template's seeing. */
  scale: Float32Array;
  seeing: Float32Array;
  templateSeeing: Float32Array;
}

export interface Hits2015Result {
  dataset: Dataset;
  summary: Hits2015Summary;
  stamps: StampInfo;
}

export interface Hits2015Derived {
  h: number;
  w: number;
  /** One HWC stamp (4 channels, normalised) per kept epoch, archive order. */
  images: Float32Array[];
  labels: number[];
  info: {
    object: string[];
    objectClass: string[];
    mjd: number[];
    snr: number[];
    scale: number[];
    seeing: number[];
    templateSeeing: number[];
  };
  byClass: Record<string, ClassCounts>;
  total: ClassCounts;
  /** Parameters and calibration statistics, for meta.json. */
  derivation: Record<string, unknown>;
}

function emptyCounts(): ClassCounts {
  return { objects: 0, epochs: 0, kept: 0, dropped: { bad_pixels: 0, no_calibration: 0, no_template: 0, sn_no_detection: 0 }, label0: 0, label1: 0 };
}

export function parseClasses(list: string | string[] | undefined): HitsClass[] {
  if (list === undefined) return [...HITS_CLASSES];
  const items = (Array.isArray(list) ? list : list.split(',')).map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new UserError('--classes is empty');
  for (const c of items) {
    if (!(HITS_CLASSES as readonly string[]).includes(c)) {
      throw new UserError(`unknown class '${c}' (choose from ${HITS_CLASSES.join(', ')})`);
    }
  }
  return [...new Set(items)] as HitsClass[];
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

/**
 * The per-epoch derivation (the slow part): every kept stamp of the selected classes, in
 * archive order, with its label, provenance and the counts. Balance and augmentation come
 * after, in assembleHits2015.
 */
export function deriveHits2015(opts: Hits2015Options = {}): Hits2015Derived {
  const archive = opts.archive ?? readHits2015Archive(opts.source ?? defaultArchivePath());
  const classes = parseClasses(opts.classes);
  const K = opts.templateEpochs ?? 5;
  const threshold = opts.detectionSnr ?? 5;
  const undetected = opts.snUndetected ?? 'drop';
  if (!(Number.isInteger(K) && K >= 2)) throw new UserError(`--template-epochs must be an integer >= 2, got ${K}`);
  if (!Number.isFinite(threshold)) throw new UserError(`--detection-snr must be a number, got ${threshold}`);
  const { h, w, n } = archive;
  const s = h * w;
  const frame = framePixels(h, w);
  const register: RegistrationOptions | false = opts.register === false ? false : {};

  // Pass 1: bad stamps and sky of every stamp (the calibration and gain use all classes'
  // stamps independently of --classes, so a subset is processed exactly like the whole).
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
  const gain = effectiveGain(archive, good, sky, skySigma);
  const cal = new Calibration(archive, good, frame);

  const byObject: number[][] = archive.names.map(() => []);
  for (let i = 0; i < n; i++) byObject[archive.object[i]].push(i);
  for (const list of byObject) list.sort((a, b) => archive.mjd[a] - archive.mjd[b]);
  const selected = byObject.map((_, o) => o).filter((o) => (classes as string[]).includes(archive.classes[o]));

  const counts: Record<string, ClassCounts> = {};
  for (const c of classes) counts[c] = emptyCounts();
  const images: Float32Array[] = [];
  const labels: number[] = [];
  const info = {
    object: [] as string[],
    objectClass: [] as string[],
    mjd: [] as number[],
    snr: [] as number[],
    scale: [] as number[],
    seeing: [] as number[],
    templateSeeing: [] as number[],
  };
  const dtByClass: Record<string, number[]> = {};

  const progress = new Progress({ label: 'hits2015', unit: 'objects', total: selected.length, quiet: opts.quiet });
  for (const o of selected) {
    const cls = archive.classes[o];
    const cc = counts[cls];
    cc.objects++;
    const epochs = byObject[o];
    cc.epochs += epochs.length;
    const cond = new Map<number, ExposureConditions>();
    const goodEpochs: number[] = [];
    for (const i of epochs) {
      if (!good[i]) {
        cc.dropped.bad_pixels++;
        continue;
      }
      const c = cal.lookup(archive.mjd[i], o);
      if (!c) {
        cc.dropped.no_calibration++;
        continue;
      }
      cond.set(i, c);
      goodEpochs.push(i);
      (dtByClass[cls] ??= []).push(c.dtMinutes);
    }
    const exposureOf = (i: number): Exposure =>
      scienceExposure(archive.stamps.subarray(i * s, (i + 1) * s), frame, gain, cond.get(i)!.seeing);
    // Reference epochs: the first K good epochs, leaving the epoch itself out so its noise
    // is independent of the template's (for those epochs the (K+1)-th takes its place).
    const templates = new Map<string, Template>();
    const templateFor = (i: number): Template | null => {
      const ref = goodEpochs.filter((j) => j !== i).slice(0, K);
      if (ref.length < Math.min(3, K)) return null;
      const key = ref.join(',');
      const cached = templates.get(key);
      if (cached) return cached;
      const seeing = Math.max(...ref.map((j) => cond.get(j)!.seeing));
      const imgs: Float64Array[] = [];
      const vars: Float64Array[] = [];
      for (const j of ref) {
        const e = exposureOf(j);
        const c = cond.get(j)!;
        const ks = Math.sqrt(Math.max(0, seeing ** 2 - c.seeing ** 2));
        const k = gaussianKernel1d(ks);
        let img = ks >= MIN_KERNEL_SIGMA ? convolveSeparable(e.image, h, w, k) : e.image;
        let v = ks >= MIN_KERNEL_SIGMA ? convolveSeparable(e.variance, h, w, k.map((x) => x * x)) : e.variance;
        img = img.map((x) => x / c.scale);
        v = v.map((x) => x / (c.scale * c.scale));
        // Register each reference epoch on the first, as the science epochs are registered
        // on the template (and under the same condition: a significant central source).
        if (register && imgs.length > 0) {
          const sh = registrationShift(h, w, imgs[0], img, v.map((x, p) => x + vars[0][p]), register);
          if (sh) img = shiftImage(img, h, w, sh.dx, sh.dy);
        }
        imgs.push(img);
        vars.push(v);
      }
      const t = { exposure: templateExposure(medianStack(imgs), frame, gain, ref.length, seeing), epochs: ref.length };
      templates.set(key, t);
      return t;
    };
    for (const i of goodEpochs) {
      const tmpl = templateFor(i);
      if (!tmpl) {
        cc.dropped.no_template++;
        continue;
      }
      const sci = exposureOf(i);
      const c = cond.get(i)!;
      const diff = subtract(h, w, sci, tmpl.exposure, c.scale, register);
      const det = centralDetection(h, w, diff);
      let label = 0;
      if (cls === 'supernova') {
        if (det.snr >= threshold) label = 1;
        else if (undetected === 'drop') {
          cc.dropped.sn_no_detection++;
          continue;
        }
      }
      const shownTemplate = tmpl.exposure.image.map((v) => v * c.scale);
      images.push(packChannels([shownTemplate, sci.image, diff.difference, diff.snr], h, w));
      labels.push(label);
      cc.kept++;
      if (label) cc.label1++;
      else cc.label0++;
      info.object.push(archive.names[o]);
      info.objectClass.push(cls);
      info.mjd.push(archive.mjd[i]);
      info.snr.push(det.snr);
      info.scale.push(c.scale);
      info.seeing.push(c.seeing);
      info.templateSeeing.push(tmpl.exposure.seeing);
    }
    progress.tick();
  }
  progress.stop();

  const total = emptyCounts();
  for (const c of Object.values(counts)) {
    total.objects += c.objects;
    total.epochs += c.epochs;
    total.kept += c.kept;
    total.label0 += c.label0;
    total.label1 += c.label1;
    for (const r of DROP_REASONS) total.dropped[r] += c.dropped[r];
  }
  if (images.length === 0) throw new UserError(`no stamps left for classes ${classes.join(',')}`);
  const calibrationStats: Record<string, unknown> = {
    calibratorStars: cal.calibrators,
    calibratorEpochs: cal.calibratorEpochs,
    exposures: cal.exposures,
  };
  for (const [c, dts] of Object.entries(dtByClass)) {
    calibrationStats[`dtMinutes_${c}`] = { median: +median(dts).toFixed(2), max: +Math.max(...dts).toFixed(2) };
  }
  return {
    h,
    w,
    images,
    labels,
    info,
    byClass: counts,
    total,
    derivation: {
      sky: 'median of the 2-pixel outer frame, per stamp; sky noise = 1.4826 MAD of the frame',
      badValues: `stamp dropped if any pixel is non-finite, <= ${SENTINEL_LOW} or >= ${SENTINEL_HIGH}`,
      template: `median of the object's first ${K} good epochs (the epoch itself left out), each sky-subtracted, divided by its exposure flux scale and blurred to the worst seeing among them`,
      calibration: 'exposure flux scale and Gaussian seeing from bright constant stars observed at the nearest time (object itself left out)',
      psfMatching: 'the sharper of science/template blurred by a Gaussian of sigma sqrt(|s_sci^2 - s_tmpl^2|)',
      registration: register
        ? 'template shifted (Lanczos-3, |shift| <= 0.75 px) onto the science by least squares when the template has a central source of SNR >= 30; reference epochs registered on the first the same way'
        : 'none',
      difference: 'science - flux scale x template (PSF matched)',
      snrDifference: 'difference / sqrt(propagated variance: sky noise + Poisson of sources at the effective gain, science and template)',
      detection: 'peak of the SNR difference within 2 px of the centre; SNR of the flux in a 3x3 box there, noise propagated through the matching kernel',
      detectionSnr: threshold,
      snUndetected: undetected,
      templateEpochs: K,
      effectiveGain: +gain.toFixed(4),
      calibrationStats,
      classesUsed: classes,
    },
  };
}

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
      throw new UserError(`--balance undersample needs both labels, found ${neg.length} not-supernova and ${pos.length} supernova stamps`);
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
