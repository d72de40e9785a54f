/**
 * Gradient kernels for the tfjs wasm backend. Out of the box that backend has no
 * `Conv2DBackpropFilter` (a conv net cannot train on it at all), a scalar
 * `Conv2DBackpropInput` about 10x slower than its XNNPACK forward convolution, and a scalar
 * `BatchMatMul` whenever an operand is transposed (every dense-layer gradient).
 *
 * The fast kernels below do no arithmetic of their own: they rearrange data in JS (copies and
 * transposes, which cost little next to the multiply-adds) so that the work lands in the
 * backend's XNNPACK forward convolution or its XNNPACK fully connected GEMM, the two fast
 * paths the wasm binary has:
 * - Conv2DBackpropInput = forward convolution of dy (zero-dilated when strided) with the
 *   spatially flipped, in/out-transposed filter, with explicit asymmetric padding.
 * - Conv2DBackpropFilter = im2col^T(x) . dy as one GEMM per chunk of images. For stride 1 the
 *   im2col rows are built with block copies from a zero-padded, channel-major copy of x
 *   (each row of the GEMM is a shifted window of that copy), which is why the GEMM runs over
 *   padded output columns whose dy is zero.
 * - BatchMatMul with a transposed operand = explicit 2-D transpose + the GEMM path.
 * - MaxPoolGrad and ResizeNearestNeighborGrad (integer upsampling) as single JS passes that
 *   scatter dy; the backend's C++ versions search every window around each input pixel and
 *   took 3-4x longer on the seed's shapes (e.g. 19 ms vs 4.8 ms for a 64x24x24x32 pool).
 * - Sum over every axis but the last (each bias gradient) as one pass accumulating rows; the
 *   backend transposes to channel-major first (20 ms for the U-Net's 64x24x24x32 bias
 *   gradient, vs about 1 ms).
 * - SplitV along the last axis (the gradient of every channel concatenation, e.g. U-Net skip
 *   connections) as row copies; the backend's generic strided slice took 21 ms for 64x24x24x64.
 * Anything outside what they handle (NCHW, non-float, unusual explicit pads) goes to a
 * reference kernel or to the backend's original kernel.
 */
import * as tf from '@tensorflow/tfjs-core';
import { backend_util } from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, TensorInfo, NamedAttrMap } from '@tensorflow/tfjs-core';

const BACKEND = 'wasm';

/** The parts of tfjs-backend-wasm's BackendWasm these kernels use. */
interface WasmBackend {
  wasm: { HEAPF32: Float32Array };
  dataIdMap: { get(dataId: object): { id: number; memoryOffset: number } };
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  disposeData(dataId: object): boolean;
  typedArrayFromHeap(info: TensorInfo): Float32Array;
}

interface KernelArgs {
  inputs: Record<string, TensorInfo>;
  backend: WasmBackend;
  attrs: NamedAttrMap;
}
type Kernel = (args: KernelArgs) => TensorInfo;
/** A kernel with several outputs (SplitV). */
type MultiKernel = (args: KernelArgs) => TensorInfo[];

export type GradKernelMode = 'fast' | 'naive';

/** Kernel names this module (re)registers on the wasm backend. */
export const GRAD_KERNEL_NAMES = [
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'BatchMatMul',
  'MaxPoolGrad',
  'ResizeNearestNeighborGrad',
  'Sum',
  'SplitV',
] as const;

const MARK = Symbol.for('occmap.wasmGradKernel');
type MarkedConfig = KernelConfig & { [MARK]?: GradKernelMode };

/** The backend's own kernels, captured before we replace any. */
const originals = new Map<string, KernelConfig | undefined>();
let currentMode: GradKernelMode | null = null;

function captureOriginal(name: string): KernelConfig | undefined {
  if (!originals.has(name)) {
    const k = tf.getKernel(name, BACKEND) as MarkedConfig | undefined;
    originals.set(name, k && k[MARK] ? undefined : k);
  }
  return originals.get(name);
}

function originalKernel(name: string): Kernel {
  const k = originals.get(name) ?? (tf.getKernel(name, BACKEND) as MarkedConfig | undefined);
  if (!k || (k as MarkedConfig)[MARK]) throw new Error(`tfjs wasm backend has no original ${name} kernel`);
  return k.kernelFunc as unknown as Kernel;
}

/**
 * Register occmap's gradient kernels on the wasm backend ('fast'), or the naive set used as
 * the benchmark baseline ('naive': a plain JS filter gradient and the backend's own kernels
 * for the rest). Idempotent; callable before or after the backend is initialised, and again
 * to switch modes.
 */
export function registerWasmGradKernels(mode: GradKernelMode = 'fast'): void {
  if (currentMode === mode) return;
  for (const name of GRAD_KERNEL_NAMES) captureOriginal(name);
  // Make sure the kernels we call internally exist (tfjs-backend-wasm registered them on import).
  for (const name of ['Conv2D', 'Transpose', 'BatchMatMul']) originalKernel(name);

  const choose: Record<(typeof GRAD_KERNEL_NAMES)[number], Kernel | MultiKernel | undefined> =
    mode === 'fast'
      ? {
          Conv2DBackpropFilter: conv2dBackpropFilterFast,
          Conv2DBackpropInput: conv2dBackpropInputFast,
          BatchMatMul: batchMatMulFast,
          MaxPoolGrad: maxPoolGradFast,
          ResizeNearestNeighborGrad: resizeNearestNeighborGradFast,
          Sum: sumFast,
          SplitV: splitVFast,
        }
      : {
          Conv2DBackpropFilter: conv2dBackpropFilterReference,
          Conv2DBackpropInput: undefined,
          BatchMatMul: undefined,
          MaxPoolGrad: undefined,
          ResizeNearestNeighborGrad: undefined,
          Sum: undefined,
          SplitV: undefined,
        };

  for (const name of GRAD_KERNEL_NAMES) {
    const orig = originals.get(name);
    const mine = choose[name];
    if (tf.getKernel(name, BACKEND)) tf.unregisterKernel(name, BACKEND);
    if (mine) {
      const config: MarkedConfig = {
        kernelName: name,
        backendName: BACKEND,
        kernelFunc: mine as unknown as KernelFunc,
        // The original's setup binds its wasm function; it must still run when we replace it
        // before the backend initialises, since we fall back to it.
        setupFunc: orig?.setupFunc,
        [MARK]: mode,
      };
      tf.registerKernel(config);
    } else if (orig) {
      tf.registerKernel(orig);
    } else {
      throw new Error(`tfjs wasm backend has no ${name} kernel to fall back to`);
    }
  }
  currentMode = mode;
}

/** Which set is registered now (null: none yet). */
export function wasmGradKernelMode(): GradKernelMode | null {
  return currentMode;
}

// ---------------------------------------------------------------------------------------------
// Pure geometry (unit-tested): how the gradients map onto forward convolutions.

export interface ConvGeometry {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  kH: number;
  kW: number;
  strideH: number;
  strideW: number;
  /** Forward padding before the first row / column (tfjs padInfo.top / .left). */
  padTop: number;
  padLeft: number;
}

export interface BackpropInputPlan {
  /** Size of dy after inserting stride-1 zeros between its rows / columns. */
  dilatedH: number;
  dilatedW: number;
  /** Explicit padding of the dilated dy for the stride-1 forward convolution. */
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/**
 * dx[r] = sum_j dyDilated[r - (k-1-padTop) + j] * flip(W)[j], so dx is a stride-1 forward
 * convolution of the dilated dy, padded (k-1-padTop) before and (inH + padTop - dilatedH)
 * after, which yields exactly inH rows. Returns null when a padding would be negative
 * (explicit forward pads larger than the kernel), which the caller leaves to another kernel.
 */
export function planBackpropInput(g: ConvGeometry): BackpropInputPlan | null {
  const dilatedH = (g.outH - 1) * g.strideH + 1;
  const dilatedW = (g.outW - 1) * g.strideW + 1;
  const plan = {
    dilatedH,
    dilatedW,
    top: g.kH - 1 - g.padTop,
    bottom: g.inH + g.padTop - dilatedH,
    left: g.kW - 1 - g.padLeft,
    right: g.inW + g.padLeft - dilatedW,
  };
  return plan.top < 0 || plan.bottom < 0 || plan.left < 0 || plan.right < 0 ? null : plan;
}

/**
 * Images per GEMM chunk of the filter gradient. XNNPACK's GEMM does not block its inner
 * (reduction) dimension, so one GEMM over a whole big batch streams its operands from memory
 * and holds a large im2col buffer. Measured on the seed models: targets of 1500-6000 columns
 * are within 5% of each other; 6000 keeps batch 10 in one chunk, which is best there.
 */
export function filterGradChunk(batch: number, colsPerImage: number, targetCols = 6000): number {
  return Math.max(1, Math.min(batch, Math.round(targetCols / Math.max(1, colsPerImage))));
}

function geometryOf(info: backend_util.Conv2DInfo): ConvGeometry {
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    kH: info.filterHeight,
    kW: info.filterWidth,
    strideH: info.strideHeight,
    strideW: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

// ---------------------------------------------------------------------------------------------
// Heap helpers. Every allocation may grow the wasm memory and detach earlier views, so views
// are taken with heap() after the allocations of a phase.

function alloc(backend: WasmBackend, shape: number[]): TensorInfo {
  return backend.makeOutput(shape, 'float32');
}
function free(backend: WasmBackend, info: TensorInfo): void {
  backend.disposeData(info.dataId);
}
/** Float index of a tensor's first element in HEAPF32. */
function offsetOf(backend: WasmBackend, info: TensorInfo): number {
  return backend.dataIdMap.get(info.dataId).memoryOffset >>> 2;
}
function heap(backend: WasmBackend): Float32Array {
  return backend.wasm.HEAPF32;
}
function convInfoOf(
  xShape: number[],
  filterShape: number[],
  attrs: NamedAttrMap,
): backend_util.Conv2DInfo {
  const fmt = backend_util.convertConv2DDataFormat((attrs.dataFormat as 'NHWC' | 'NCHW') ?? 'NHWC');
  return backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides as number | [number, number],
    1,
    attrs.pad as 'same' | 'valid' | number | backend_util.ExplicitPadding,
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
    false,
    fmt,
  );
}

// ---------------------------------------------------------------------------------------------
// Conv2DBackpropInput

function conv2dBackpropInputFast(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, filter } = inputs;
  const info = convInfoOf(attrs.inputShape as number[], filter.shape, attrs);
  const plan = info.dataFormat === 'channelsLast' && dy.dtype === 'float32' ? planBackpropInput(geometryOf(info)) : null;
  if (!plan) return originalKernel('Conv2DBackpropInput')(args);
  const g = geometryOf(info);
  const { kH, kW, inC, outC } = g;

  const flipped = alloc(backend, [kH, kW, outC, inC]);
  const strided = g.strideH > 1 || g.strideW > 1;
  const dilated = strided ? alloc(backend, [g.batch, plan.dilatedH, plan.dilatedW, outC]) : null;
  const h = heap(backend);
  {
    const src = offsetOf(backend, filter);
    const dst = offsetOf(backend, flipped);
    for (let i = 0; i < kH; i++) {
      for (let j = 0; j < kW; j++) {
        const s0 = src + (i * kW + j) * inC * outC;
        const d0 = dst + ((kH - 1 - i) * kW + (kW - 1 - j)) * outC * inC;
        for (let c = 0; c < inC; c++) {
          const s = s0 + c * outC;
          for (let o = 0; o < outC; o++) h[d0 + o * inC + c] = h[s + o];
        }
      }
    }
  }
  if (dilated) {
    const dst = offsetOf(backend, dilated);
    const src = offsetOf(backend, dy);
    h.fill(0, dst, dst + g.batch * plan.dilatedH * plan.dilatedW * outC);
    for (let n = 0; n < g.batch; n++) {
      for (let r = 0; r < g.outH; r++) {
        for (let c = 0; c < g.outW; c++) {
          const s = src + ((n * g.outH + r) * g.outW + c) * outC;
          const d = dst + ((n * plan.dilatedH + r * g.strideH) * plan.dilatedW + c * g.strideW) * outC;
          h.copyWithin(d, s, s + outC);
        }
      }
    }
  }
  const out = originalKernel('Conv2D')({
    inputs: { x: dilated ?? dy, filter: flipped },
    backend,
    attrs: {
      strides: [1, 1],
      pad: [
        [0, 0],
        [plan.top, plan.bottom],
        [plan.left, plan.right],
        [0, 0],
      ],
      dataFormat: 'NHWC',
      dilations: [1, 1],
      dimRoundingMode: undefined as unknown as string,
    },
  });
  free(backend, flipped);
  if (dilated) free(backend, dilated);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Conv2DBackpropFilter

function gemm(backend: WasmBackend, a: TensorInfo, b: TensorInfo): TensorInfo {
  return originalKernel('BatchMatMul')({
    inputs: { a, b },
    backend,
    attrs: { transposeA: false, transposeB: false },
  });
}

function conv2dBackpropFilterFast(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  const info = convInfoOf(x.shape, attrs.filterShape as number[], attrs);
  if (info.dataFormat !== 'channelsLast' || x.dtype !== 'float32' || dy.dtype !== 'float32') {
    return conv2dBackpropFilterReference(args);
  }
  const g = geometryOf(info);
  const unitStride = g.strideH === 1 && g.strideW === 1 && g.padTop >= 0 && g.padLeft >= 0;
  const rows = g.kH * g.kW * g.inC;
  // Unit stride: GEMM columns are (image, output row, padded column), padded columns carry
  // dy = 0; otherwise columns are (image, output row, output column) filled element-wise.
  const padW = g.outW + g.kW - 1;
  const padH = g.outH + g.kH - 1;
  const colsPerImage = g.outH * (unitStride ? padW : g.outW);
  const chunk = filterGradChunk(g.batch, colsPerImage);

  let result: TensorInfo | null = null;
  for (let n0 = 0; n0 < g.batch; n0 += chunk) {
    const nb = Math.min(chunk, g.batch - n0);
    const cols = nb * colsPerImage;
    const a = alloc(backend, [1, rows, cols]);
    const b = alloc(backend, [1, cols, g.outC]);
    if (unitStride) {
      const plane = padH * padW;
      // Channel-major, zero-padded copy of the chunk: xp[c][n][padH][padW] (+ slack for the
      // last window, which reads kW-1 floats past the end into columns whose dy is 0).
      const xp = alloc(backend, [g.inC * nb * plane + g.kW]);
      const h = heap(backend);
      fillPaddedChannelMajor(h, offsetOf(backend, x), offsetOf(backend, xp), g, n0, nb, padH, padW);
      fillIm2colRowsByCopy(h, offsetOf(backend, xp), offsetOf(backend, a), g, nb, padH, padW);
      fillDyPaddedColumns(h, offsetOf(backend, dy), offsetOf(backend, b), g, n0, nb, padW);
      free(backend, xp);
    } else {
      const h = heap(backend);
      fillIm2colRowsGeneric(h, offsetOf(backend, x), offsetOf(backend, a), g, n0, nb);
      const src = offsetOf(backend, dy) + n0 * g.outH * g.outW * g.outC;
      h.copyWithin(offsetOf(backend, b), src, src + cols * g.outC);
    }
    const part = gemm(backend, a, b);
    free(backend, a);
    free(backend, b);
    if (result === null) {
      result = part;
    } else {
      const h = heap(backend);
      const r = offsetOf(backend, result);
      const p = offsetOf(backend, part);
      const len = rows * g.outC;
      for (let i = 0; i < len; i++) h[r + i] += h[p + i];
      free(backend, part);
    }
  }
  if (result === null) {
    // Empty batch: the gradient is zero.
    result = alloc(backend, [1, rows, g.outC]);
    const h = heap(backend);
    const r = offsetOf(backend, result);
    h.fill(0, r, r + rows * g.outC);
  }
  return { dataId: result.dataId, shape: [g.kH, g.kW, g.inC, g.outC], dtype: 'float32' };
}

/** xp[c][n][r'][q'] = x[n0+n][r'-padTop][q'-padLeft][c], 0 outside the image. */
function fillPaddedChannelMajor(
  h: Float32Array,
  xOff: number,
  xpOff: number,
  g: ConvGeometry,
  n0: number,
  nb: number,
  padH: number,
  padW: number,
): void {
  const plane = padH * padW;
  const cStride = nb * plane;
  h.fill(0, xpOff, xpOff + g.inC * cStride + g.kW);
  const rFrom = Math.max(0, -g.padTop);
  const rTo = Math.min(g.inH, padH - g.padTop);
  const qFrom = Math.max(0, -g.padLeft);
  const qTo = Math.min(g.inW, padW - g.padLeft);
  const C = g.inC;
  for (let n = 0; n < nb; n++) {
    for (let r = rFrom; r < rTo; r++) {
      const dRow = xpOff + n * plane + (r + g.padTop) * padW + g.padLeft;
      const sRow = xOff + (((n0 + n) * g.inH + r) * g.inW) * C;
      for (let q = qFrom; q < qTo; q++) {
        const s = sRow + q * C;
        let d = dRow + q;
        for (let c = 0; c < C; c++) {
          h[d] = h[s + c];
          d += cStride;
        }
      }
    }
  }
}

/** A[(kh,kw,c)][(n,oh,q')] = xp[c][n][oh+kh][q'+kw]: one block copy per (row, image). */
function fillIm2colRowsByCopy(
  h: Float32Array,
  xpOff: number,
  aOff: number,
  g: ConvGeometry,
  nb: number,
  padH: number,
  padW: number,
): void {
  const plane = padH * padW;
  const run = g.outH * padW;
  let d = aOff;
  for (let kh = 0; kh < g.kH; kh++) {
    for (let kw = 0; kw < g.kW; kw++) {
      for (let c = 0; c < g.inC; c++) {
        let s = xpOff + c * nb * plane + kh * padW + kw;
        for (let n = 0; n < nb; n++) {
          h.copyWithin(d, s, s + run);
          d += run;
          s += plane;
        }
      }
    }
  }
}

/** B[(n,oh,q')][co] = dy[n0+n][oh][q'][co] for q' < outW, else 0. */
function fillDyPaddedColumns(
  h: Float32Array,
  dyOff: number,
  bOff: number,
  g: ConvGeometry,
  n0: number,
  nb: number,
  padW: number,
): void {
  const rowLen = g.outW * g.outC;
  const padLen = (padW - g.outW) * g.outC;
  let d = bOff;
  let s = dyOff + n0 * g.outH * rowLen;
  for (let i = 0; i < nb * g.outH; i++) {
    h.copyWithin(d, s, s + rowLen);
    d += rowLen;
    h.fill(0, d, d + padLen);
    d += padLen;
    s += rowLen;
  }
}

/** A[(kh,kw,c)][(n,oh,ow)] = x[n0+n][oh*sh+kh-pt][ow*sw+kw-pl][c], 0 outside: any stride. */
function fillIm2colRowsGeneric(h: Float32Array, xOff: number, aOff: number, g: ConvGeometry, n0: number, nb: number): void {
  const C = g.inC;
  let d = aOff;
  for (let kh = 0; kh < g.kH; kh++) {
    for (let kw = 0; kw < g.kW; kw++) {
      for (let c = 0; c < C; c++) {
        for (let n = 0; n < nb; n++) {
          for (let oh = 0; oh < g.outH; oh++) {
            const r = oh * g.strideH + kh - g.padTop;
            if (r < 0 || r >= g.inH) {
              h.fill(0, d, d + g.outW);
              d += g.outW;
              continue;
            }
            const sRow = xOff + ((n0 + n) * g.inH + r) * g.inW * C + c;
            for (let ow = 0; ow < g.outW; ow++) {
              const q = ow * g.strideW + kw - g.padLeft;
              h[d++] = q < 0 || q >= g.inW ? 0 : h[sRow + q * C];
            }
          }
        }
      }
    }
  }
}

/**
 * Straightforward filter gradient in JS: the benchmark's naive baseline and the fallback for
 * layouts the fast kernel does not handle (NCHW). Loop order keeps the innermost loop on
 * contiguous output channels.
 */
function conv2dBackpropFilterReference(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  const info = convInfoOf(x.shape, attrs.filterShape as number[], attrs);
  const g = geometryOf(info);
  const last = info.dataFormat === 'channelsLast';
  // Element strides of x and dy in their own layouts: [n, row, col, channel].
  const xs = last
    ? [g.inH * g.inW * g.inC, g.inW * g.inC, g.inC, 1]
    : [g.inC * g.inH * g.inW, g.inW, 1, g.inH * g.inW];
  const ys = last
    ? [g.outH * g.outW * g.outC, g.outW * g.outC, g.outC, 1]
    : [g.outC * g.outH * g.outW, g.outW, 1, g.outH * g.outW];
  const xv = backend.typedArrayFromHeap(x);
  const yv = backend.typedArrayFromHeap(dy);
  const dw = new Float32Array(g.kH * g.kW * g.inC * g.outC);
  for (let n = 0; n < g.batch; n++) {
    for (let oh = 0; oh < g.outH; oh++) {
      for (let ow = 0; ow < g.outW; ow++) {
        const yBase = n * ys[0] + oh * ys[1] + ow * ys[2];
        for (let kh = 0; kh < g.kH; kh++) {
          const r = oh * g.strideH + kh - g.padTop;
          if (r < 0 || r >= g.inH) continue;
          for (let kw = 0; kw < g.kW; kw++) {
            const q = ow * g.strideW + kw - g.padLeft;
            if (q < 0 || q >= g.inW) continue;
            const xBase = n * xs[0] + r * xs[1] + q * xs[2];
            const wBase = (kh * g.kW + kw) * g.inC * g.outC;
            for (let c = 0; c < g.inC; c++) {
              const xval = xv[xBase + c * xs[3]];
              if (xval === 0) continue;
              const w0 = wBase + c * g.outC;
              for (let o = 0; o < g.outC; o++) dw[w0 + o] += xval * yv[yBase + o * ys[3]];
            }
          }
        }
      }
    }
  }
  const out = alloc(backend, [g.kH, g.kW, g.inC, g.outC]);
  backend.typedArrayFromHeap(out).set(dw);
  return out;
}

// ---------------------------------------------------------------------------------------------
// BatchMatMul

function batchMatMulFast(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { a, b } = inputs;
  const transposeA = Boolean(attrs.transposeA);
  const transposeB = Boolean(attrs.transposeB);
  const orig = originalKernel('BatchMatMul');
  const batchOf = (t: TensorInfo): number => t.shape.slice(0, -2).reduce((p, v) => p * v, 1);
  // The backend's GEMM path takes only untransposed single matrices; its fallback is a scalar
  // triple loop. Materialising the transpose (a cheap 2-D copy) buys the GEMM path.
  if ((!transposeA && !transposeB) || a.dtype !== 'float32' || b.dtype !== 'float32' || batchOf(a) !== 1 || batchOf(b) !== 1) {
    return orig(args);
  }
  const transpose2d = (t: TensorInfo): TensorInfo => {
    const r = t.shape[t.shape.length - 2];
    const c = t.shape[t.shape.length - 1];
    const out = originalKernel('Transpose')({
      inputs: { x: { dataId: t.dataId, shape: [r, c], dtype: t.dtype } },
      backend,
      attrs: { perm: [1, 0] },
    });
    return { dataId: out.dataId, shape: [1, c, r], dtype: out.dtype };
  };
  const a2 = transposeA ? transpose2d(a) : a;
  const b2 = transposeB ? transpose2d(b) : b;
  const out = orig({ inputs: { a: a2, b: b2 }, backend, attrs: { transposeA: false, transposeB: false } });
  if (transposeA) free(backend, a2);
  if (transposeB) free(backend, b2);
  const rank = Math.max(a.shape.length, b.shape.length);
  const shape = [...new Array(rank - 2).fill(1), out.shape[out.shape.length - 2], out.shape[out.shape.length - 1]];
  return { dataId: out.dataId, shape, dtype: out.dtype };
}

// ---------------------------------------------------------------------------------------------
// MaxPoolGrad

/**
 * dx[argmax of each window] += dy, the argmax being the first strict maximum in row-major
 * window order, as tfjs's cpu backend picks it (it matters for ties, e.g. zeros after relu).
 */
function maxPoolGradFast(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, input } = inputs;
  if (input.dtype !== 'float32' || dy.dtype !== 'float32') return originalKernel('MaxPoolGrad')(args);
  const info = backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs.filterSize as number | [number, number],
    attrs.strides as number | [number, number],
    1,
    attrs.pad as 'same' | 'valid' | number,
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
  );
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const fh = info.effectiveFilterHeight;
  const fw = info.effectiveFilterWidth;
  const dx = alloc(backend, input.shape);
  const h = heap(backend);
  const xOff = offsetOf(backend, input);
  const dyOff = offsetOf(backend, dy);
  const dxOff = offsetOf(backend, dx);
  h.fill(0, dxOff, dxOff + N * H * W * C);
  if (fh === 2 && fw === 2 && info.strideHeight === 2 && info.strideWidth === 2 && info.padInfo.top === 0 && info.padInfo.left === 0) {
    maxPoolGrad2x2(h, xOff, dyOff, dxOff, N, H, W, C, OH, OW);
    return dx;
  }
  const best = new Float32Array(C);
  const where = new Int32Array(C);
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      const r0 = oh * info.strideHeight - info.padInfo.top;
      const rFrom = Math.max(0, r0);
      const rTo = Math.min(H, r0 + fh);
      for (let ow = 0; ow < OW; ow++) {
        const q0 = ow * info.strideWidth - info.padInfo.left;
        const qFrom = Math.max(0, q0);
        const qTo = Math.min(W, q0 + fw);
        best.fill(-Infinity);
        where.fill(-1);
        for (let r = rFrom; r < rTo; r++) {
          for (let q = qFrom; q < qTo; q++) {
            const base = ((n * H + r) * W + q) * C;
            for (let c = 0; c < C; c++) {
              const v = h[xOff + base + c];
              if (v > best[c]) {
                best[c] = v;
                where[c] = base + c;
              }
            }
          }
        }
        const yBase = dyOff + ((n * OH + oh) * OW + ow) * C;
        for (let c = 0; c < C; c++) {
          if (where[c] >= 0) h[dxOff + where[c]] += h[yBase + c];
        }
      }
    }
  }
  return dx;
}

/** The seed's pooling (2x2, stride 2, valid): windows do not overlap, so dx is a plain scatter. */
function maxPoolGrad2x2(h: Float32Array, xOff: number, dyOff: number, dxOff: number, N: number, H: number, W: number, C: number, OH: number, OW: number): void {
  const rowStride = W * C;
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const p00 = ((n * H + 2 * oh) * W + 2 * ow) * C;
        const p01 = p00 + C;
        const p10 = p00 + rowStride;
        const p11 = p10 + C;
        const yBase = dyOff + ((n * OH + oh) * OW + ow) * C;
        for (let c = 0; c < C; c++) {
          let m = -Infinity;
          let at = -1;
          const v00 = h[xOff + p00 + c];
          const v01 = h[xOff + p01 + c];
          const v10 = h[xOff + p10 + c];
          const v11 = h[xOff + p11 + c];
          if (v00 > m) {
            m = v00;
            at = p00;
          }
          if (v01 > m) {
            m = v01;
            at = p01;
          }
          if (v10 > m) {
            m = v10;
            at = p10;
          }
          if (v11 > m) at = p11;
          if (at >= 0) h[dxOff + at + c] = h[yBase + c];
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// ResizeNearestNeighborGrad

/**
 * Integer upsampling without corner alignment (what tfjs-layers' UpSampling2D does): every
 * output pixel (y, x) copies input (floor(y/fy), floor(x/fx)), with or without half-pixel
 * centres, so the gradient is the sum of dy over each fy x fx block. Other geometries go to
 * the backend's kernel.
 */
function resizeNearestNeighborGradFast(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { images, dy } = inputs;
  const [N, H, W, C] = images.shape;
  const [, OH, OW] = dy.shape;
  const fy = OH / H;
  const fx = OW / W;
  if (attrs.alignCorners || !Number.isInteger(fy) || !Number.isInteger(fx) || dy.dtype !== 'float32' || images.shape.length !== 4) {
    return originalKernel('ResizeNearestNeighborGrad')(args);
  }
  const dx = alloc(backend, [N, H, W, C]);
  const h = heap(backend);
  const dyOff = offsetOf(backend, dy);
  const dxOff = offsetOf(backend, dx);
  h.fill(0, dxOff, dxOff + N * H * W * C);
  for (let n = 0; n < N; n++) {
    for (let y = 0; y < OH; y++) {
      const rowOut = dxOff + (n * H + Math.floor(y / fy)) * W * C;
      let s = dyOff + (n * OH + y) * OW * C;
      for (let x = 0; x < OW; x++) {
        const d = rowOut + Math.floor(x / fx) * C;
        for (let c = 0; c < C; c++) h[d + c] += h[s + c];
        s += C;
      }
    }
  }
  return dx;
}

// ---------------------------------------------------------------------------------------------
// Sum over leading axes, SplitV along the last axis

/** Reduced axes (normalised, sorted) are exactly 0..rank-2, i.e. every axis but the last. */
function allButLast(axis: unknown, shape: number[]): boolean {
  const rank = shape.length;
  if (rank < 2) return false;
  const axes = [...new Set(tf.util.parseAxisParam(axis as number | number[], shape))].sort((a, b) => a - b);
  return axes.length === rank - 1 && axes.every((a, i) => a === i);
}

function sumFast(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  if (x.dtype !== 'float32' || !allButLast(attrs.axis, x.shape)) return originalKernel('Sum')(args);
  const C = x.shape[x.shape.length - 1];
  const rows = C === 0 ? 0 : tf.util.sizeFromShape(x.shape) / C;
  const outShape = attrs.keepDims ? [...x.shape.slice(0, -1).map(() => 1), C] : [C];
  const out = alloc(backend, outShape);
  const h = heap(backend);
  // float32 sums in row order, as the backend's kernel adds after its transpose: bit for bit
  // the same gradients (a double accumulator changed training trajectories).
  const acc = new Float32Array(C);
  let s = offsetOf(backend, x);
  for (let r = 0; r < rows; r++, s += C) for (let c = 0; c < C; c++) acc[c] = Math.fround(acc[c] + h[s + c]);
  h.set(acc, offsetOf(backend, out));
  return out;
}

function splitVFast(args: KernelArgs): TensorInfo[] {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  const rank = x.shape.length;
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
  if (x.dtype !== 'float32' || axis !== rank - 1 || rank < 2) {
    return (originalKernel('SplitV') as unknown as MultiKernel)(args);
  }
  const sizes = backend_util.prepareSplitSize(x as unknown as tf.Tensor, attrs.numOrSizeSplits as number | number[], axis);
  const C = x.shape[axis];
  const rows = C === 0 ? 0 : tf.util.sizeFromShape(x.shape) / C;
  const outs = sizes.map((k) => alloc(backend, [...x.shape.slice(0, -1), k]));
  const h = heap(backend);
  const xOff = offsetOf(backend, x);
  let c0 = 0;
  sizes.forEach((k, i) => {
    let d = offsetOf(backend, outs[i]);
    let s = xOff + c0;
    for (let r = 0; r < rows; r++, s += C, d += k) for (let c = 0; c < k; c++) h[d + c] = h[s + c];
    c0 += k;
  });
  return outs;
}
