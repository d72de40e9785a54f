/**
 * Pure stamp maths (also used by the simulator, so simulated and real stamps share it): sky
 * statistics on the outer frame, bad-pixel test, Gaussian blur, Gaussian PSF fit, median
 * stacks, and the per-stamp normalisation, channel packing and rotations/flips of the output.
 */

/** Pixel values at or beyond these mark bad data in the archive (-9999, 9.998e7). */
export const SENTINEL_LOW = -999;
export const SENTINEL_HIGH = 1e7;

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
export function reflectTable(n: number, r: number, taps: number): Int32Array {
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
