/** Exposure calibration (photometric scale and seeing) from the archive's constant stars. */
import { UserError } from '../../util/errors.js';
import type { Hits2015Archive } from './archive.js';
import { fitGaussianPsf, median, skyStats } from './stamp-math.js';

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
