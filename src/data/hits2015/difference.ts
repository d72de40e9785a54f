/**
 * Image differencing of one epoch against its template: exposures with propagated variance,
 * Lanczos sub-pixel shifts and least-squares registration, Gaussian PSF matching, the
 * difference and SNR-difference images, and the central detection that labels supernovae.
 */
import { convolveSeparable, gaussianKernel1d, reflectTable, skyStats } from './stamp-math.js';

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
export const MIN_KERNEL_SIGMA = 0.25;

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

