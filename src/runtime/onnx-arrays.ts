/**
 * Array helpers around ONNX classifiers, pure (no runtime, no I/O): layouts, softmax, and raw
 * outputs to probabilities. Shared by the Node predictor (onnx.ts) and the browser viewer.
 */

/** Row-wise softmax of an n x k matrix (max-subtracted, so large logits do not overflow). */
export function softmaxRows(x: Float32Array, n: number, k: number): Float32Array {
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    const o = r * k;
    let max = -Infinity;
    for (let j = 0; j < k; j++) max = Math.max(max, x[o + j]);
    let sum = 0;
    for (let j = 0; j < k; j++) {
      const e = Math.exp(x[o + j] - max);
      out[o + j] = e;
      sum += e;
    }
    for (let j = 0; j < k; j++) out[o + j] /= sum;
  }
  return out;
}

/** (n,h,w,c) -> (n,c,h,w). */
export function nhwcToNchw(x: Float32Array, n: number, h: number, w: number, c: number): Float32Array {
  const out = new Float32Array(x.length);
  const hw = h * w;
  for (let i = 0; i < n; i++) {
    const base = i * hw * c;
    for (let p = 0; p < hw; p++) {
      for (let k = 0; k < c; k++) out[base + k * hw + p] = x[base + p * c + k];
    }
  }
  return out;
}

export type InputLayout = 'NHWC' | 'NCHW';

/**
 * Guess the layout of a rank-4 image input from its dims [N, d1, d2, d3]: the channel axis is
 * the small one (<= 4). Undefined when both ends (or neither) look like channels.
 */
export function guessLayout(dims: readonly (number | string)[]): InputLayout | undefined {
  const small = (d: number | string): boolean => typeof d === 'number' && d >= 1 && d <= 4;
  const [, d1, , d3] = dims;
  if (small(d3) && !small(d1)) return 'NHWC';
  if (small(d1) && !small(d3)) return 'NCHW';
  return undefined;
}

/** Do all rows look like probability vectors (in [0,1], summing to 1)? */
export function looksLikeProbabilities(x: Float32Array, n: number, k: number): boolean {
  for (let r = 0; r < n; r++) {
    let sum = 0;
    for (let j = 0; j < k; j++) {
      const v = x[r * k + j];
      if (!(v >= 0 && v <= 1)) return false;
      sum += v;
    }
    if (Math.abs(sum - 1) > 1e-3) return false;
  }
  return true;
}

/**
 * Class probabilities from a classifier's raw output (n x units): a softmax when it gives
 * logits; one unit is P(class 1), expanded to two classes (a sigmoid first for a logit).
 */
export function probabilitiesFrom(raw: Float32Array, n: number, units: number, outputs: 'probs' | 'logits'): Float32Array {
  if (units === 1) {
    const p = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) {
      const v = outputs === 'logits' ? 1 / (1 + Math.exp(-raw[i])) : raw[i];
      p[2 * i] = 1 - v;
      p[2 * i + 1] = v;
    }
    return p;
  }
  return outputs === 'logits' ? softmaxRows(raw, n, units) : raw;
}
