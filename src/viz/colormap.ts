/**
 * Colour scales, pure (no I/O, no DOM): the one definition shared by the PNG figures
 * (src/viz/heatmap.ts) and the browser viewer (src/web/), so a map looks the same in both.
 */

export type Rgb = [number, number, number];

/** viridis: perceptual, for maps and std; gray: for stamp channels; diverging: for differences. */
export type Colormap = 'viridis' | 'gray' | 'diverging';

/**
 * Viridis (matplotlib's default perceptual colormap) at t in [0,1], 0-255 per channel. A
 * degree-6 polynomial fit of the matplotlib table (Matt Zucker's, public domain), within ~2/255
 * of it; t outside [0,1] is clamped, NaN maps to 0.
 */
export function viridis(t: number): Rgb {
  const x = Number.isNaN(t) ? 0 : Math.min(1, Math.max(0, t));
  const c: number[][] = [
    [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
    [0.1050930431085774, 1.404613529898575, 1.384590162594685],
    [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
    [-4.634230498983486, -5.799100973351585, -19.33244095627987],
    [6.228269936347081, 14.17993336680509, 56.69055260068105],
    [4.776384997670288, -13.74514537774601, -65.35303263337234],
    [-5.435455855934631, 4.645852612178535, 26.3124352495832],
  ];
  const out: number[] = [];
  for (let k = 0; k < 3; k++) {
    let v = c[6][k];
    for (let d = 5; d >= 0; d--) v = v * x + c[d][k];
    out.push(Math.round(255 * Math.min(1, Math.max(0, v))));
  }
  return out as Rgb;
}

/**
 * Diverging with a dark centre (t = 0.5 is near black, so a zero difference disappears on a
 * dark page): cyan-blue below the middle, orange-red above; linear between the stops.
 */
const DIVERGING_STOPS: [number, Rgb][] = [
  [0, [120, 214, 255]],
  [0.25, [38, 110, 190]],
  [0.5, [18, 20, 26]],
  [0.75, [196, 64, 48]],
  [1, [255, 190, 110]],
];

export function diverging(t: number): Rgb {
  const x = Number.isNaN(t) ? 0.5 : Math.min(1, Math.max(0, t));
  for (let i = 1; i < DIVERGING_STOPS.length; i++) {
    const [t1, c1] = DIVERGING_STOPS[i];
    if (x <= t1) {
      const [t0, c0] = DIVERGING_STOPS[i - 1];
      const f = (x - t0) / (t1 - t0);
      return c0.map((v, k) => Math.round(v + f * (c1[k] - v))) as Rgb;
    }
  }
  return DIVERGING_STOPS[DIVERGING_STOPS.length - 1][1];
}

export function gray(t: number): Rgb {
  const v = Math.round(255 * (Number.isNaN(t) ? 0 : Math.min(1, Math.max(0, t))));
  return [v, v, v];
}

const LUTS = new Map<Colormap, Rgb[]>();

/** The colormap sampled at 256 evenly spaced points of [0,1] (index i = t i/255). */
export function colormapTable(cmap: Colormap): Rgb[] {
  let lut = LUTS.get(cmap);
  if (!lut) {
    const f = cmap === 'viridis' ? viridis : cmap === 'diverging' ? diverging : gray;
    lut = Array.from({ length: 256 }, (_, i) => f(i / 255));
    LUTS.set(cmap, lut);
  }
  return lut;
}

/** Colour of value v on a scale [lo, hi] (a flat scale maps everything to its middle). */
export function colorOf(v: number, lo: number, hi: number, cmap: Colormap): Rgb {
  const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
  const i = Math.round(255 * Math.min(1, Math.max(0, Number.isNaN(t) ? 0 : t)));
  return colormapTable(cmap)[i];
}

/** min and max ignoring NaN (0, 0 when there is no finite value). */
export function finiteRange(values: ArrayLike<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return lo <= hi ? [lo, hi] : [0, 0];
}
