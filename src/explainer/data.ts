/**
 * Explainer inputs and targets. The seed pads 21x21 stamps and maps to 24x24 (top/left 2,
 * bottom/right 1) so two 2x poolings divide evenly, and crops estimates back to 21x21.
 */

export interface Pad {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/** Padding from hxw to size x size, the extra pixel going top/left as in the seed (2/1). */
export function padFor(h: number, w: number, size: number): Pad {
  if (h > size || w > size) throw new Error(`image ${h}x${w} is larger than the explainer input ${size}x${size}`);
  const dh = size - h;
  const dw = size - w;
  return { top: Math.ceil(dh / 2), bottom: Math.floor(dh / 2), left: Math.ceil(dw / 2), right: Math.floor(dw / 2) };
}

/** Zero-pad n NHWC images (n,h,w,c) -> (n, h+top+bottom, w+left+right, c). */
export function padImages(x: Float32Array, n: number, h: number, w: number, c: number, p: Pad): Float32Array {
  const H = h + p.top + p.bottom;
  const W = w + p.left + p.right;
  const out = new Float32Array(n * H * W * c);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < h; y++) {
      const src = ((i * h + y) * w) * c;
      const dst = ((i * H + y + p.top) * W + p.left) * c;
      out.set(x.subarray(src, src + w * c), dst);
    }
  }
  return out;
}

/** Crop n padded maps (n,H,W) back to (n,h,w). */
export function cropMaps(m: Float32Array, n: number, H: number, W: number, p: Pad): Float32Array {
  const h = H - p.top - p.bottom;
  const w = W - p.left - p.right;
  const out = new Float32Array(n * h * w);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < h; y++) {
      const src = (i * H + y + p.top) * W + p.left;
      out.set(m.subarray(src, src + w), (i * h + y) * w);
    }
  }
  return out;
}

import type { Condition } from '../models/condition.js';
export type { Condition };

/** The label part of a conditioned explainer's bottleneck: (n, units). */
export function conditionVectors(labels: ArrayLike<number>, mode: Condition, numClasses: number): Float32Array | undefined {
  if (mode === 'none') return undefined;
  const n = labels.length;
  if (mode === 'numeral') return Float32Array.from(labels);
  const out = new Float32Array(n * numClasses);
  for (let i = 0; i < n; i++) {
    const l = labels[i];
    if (!(l >= 0 && l < numClasses)) throw new Error(`label ${l} out of range for ${numClasses} classes`);
    out[i * numClasses + l] = 1;
  }
  return out;
}
