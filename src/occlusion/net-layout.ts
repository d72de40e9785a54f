/**
 * How the incremental engine stores activations between its steps, pure: NHWC, or ONNX
 * Runtime's NCHWc (channels in blocks of B, each block an image of B interleaved channels:
 * [groups][h][w][B]), the layout MLAS's convolutions and poolings compute in. With NHWC, every
 * window call made ONNX Runtime reorder its input to NCHWc and its output back: 8-60% of each
 * step's time on the AVX-512 host (per-node profile, issue 13). Stored in NCHWc, blocks go to
 * the NCHWc kernels as they are.
 *
 * A stage input with fewer channels than a block stays plain NCHW (groups = channels, c = 1):
 * MLAS's first-layer convolution reads that directly, instead of padding 1 channel to 16.
 */
import type { Net } from './net.js';

/** An activation tensor's layout: `groups` images of h x w cells of `c` interleaved channels. */
export interface ActLayout {
  groups: number;
  c: number;
}

export interface NetLayout {
  /** NCHWc block size, 0 for NHWC. */
  block: number;
  /** Each stage's (padded) input; stage i's output is stored as stage i + 1's input (or the tail's). */
  inputs: ActLayout[];
  tail: ActLayout;
}

/** Stored layout of stage i's input, or of the tail's for i = number of stages. */
export function inputLayout(l: NetLayout, i: number): ActLayout {
  return l.inputs[i] ?? l.tail;
}

/** Layout of stage i's output: the next stage's input (or the tail's). */
export function outputLayout(l: NetLayout, i: number): ActLayout {
  return inputLayout(l, i + 1);
}

/** Floats per spatial cell (channels, padded to whole blocks). */
export function cellFloats(a: ActLayout): number {
  return a.groups * a.c;
}

export function layoutName(l: NetLayout): string {
  return l.block > 0 ? `NCHWc (block ${l.block})` : 'NHWC';
}

function lastChannels(net: Net): number {
  return net.stages.length > 0 ? net.stages[net.stages.length - 1].cout : net.input[2];
}

export function nhwcLayout(net: Net): NetLayout {
  return { block: 0, inputs: net.stages.map((s) => ({ groups: 1, c: s.cin })), tail: { groups: 1, c: lastChannels(net) } };
}

const blocked = (channels: number, block: number): ActLayout => ({ groups: Math.ceil(channels / block), c: block });

/** Activations that mix a cell's channels: not elementwise on blocked data. */
const ACROSS_CHANNELS = new Set(['softmax', 'logSoftmax', 'log_softmax']);

/**
 * Why `net` cannot run in NCHWc, or null. `strict`: also refuse channel counts whose padding
 * to whole blocks would add more than a quarter to the convolutions' arithmetic.
 */
export function nchwcUnsupported(net: Net, block: number, strict: boolean): string | null {
  if (!(block >= 4) || block % 4 !== 0) return `no NCHWc kernels here (block size ${block})`;
  if (net.stages.length === 0) return 'no spatial stages';
  const lay = nchwcLayout(net, block);
  let real = 0;
  let padded = 0;
  for (const [i, s] of net.stages.entries()) {
    for (const p of s.post) {
      if (p.op === 'affine') return `${s.name} is followed by a batch normalisation (per-channel constants are not laid out for NCHWc)`;
      if (p.op === 'act' && ACROSS_CHANNELS.has(p.fn)) return `${s.name}'s ${p.fn} mixes channels`;
    }
    if (s.kind !== 'conv' && i > 0 && s.zeroPads.some((v) => v !== 0)) return `zero padding before pooling ${s.name}`;
    if (s.kind === 'conv') {
      real += s.cin * s.cout;
      padded += cellFloats(lay.inputs[i]) * cellFloats(outputLayout(lay, i));
    }
  }
  if (strict && padded > 1.25 * real) return `its channel counts pad to NCHWc blocks of ${block} with ${Math.round((padded / real - 1) * 100)}% more arithmetic`;
  return null;
}

/** The NCHWc layout of `net` (check nchwcUnsupported first). */
export function nchwcLayout(net: Net, block: number): NetLayout {
  const inputs = net.stages.map((s, i) => (i === 0 && s.kind === 'conv' && s.cin < block ? { groups: s.cin, c: 1 } : blocked(s.cin, block)));
  return { block, inputs, tail: blocked(lastChannels(net), block) };
}

export type LayoutChoice = 'auto' | 'nhwc' | 'nchwc';

/** The layout to run `net` in, given the NCHWc block size this runtime has (0: none). */
export function chooseLayout(net: Net, block: number, choice: LayoutChoice = 'auto'): NetLayout {
  if (choice === 'nhwc') return nhwcLayout(net);
  const why = nchwcUnsupported(net, block, choice === 'auto');
  if (why === null) return nchwcLayout(net, block);
  if (choice === 'nchwc') throw new Error(`the incremental engine cannot run this model in NCHWc: ${why}`);
  return nhwcLayout(net);
}

/**
 * dst = `maps` NHWC images of h x w x `channels` in layout `a` (channels beyond `channels` in
 * the last block are zero). NHWC to NHWC is a copy.
 */
export function packLayout(dst: Float32Array, src: Float32Array, maps: number, h: number, w: number, channels: number, a: ActLayout): Float32Array {
  const cells = h * w;
  if (a.groups === 1 && a.c === channels) {
    dst.set(src.subarray(0, maps * cells * channels));
    return dst;
  }
  const per = cells * a.groups * a.c;
  for (let m = 0; m < maps; m++) {
    for (let g = 0; g < a.groups; g++) {
      const c0 = g * a.c;
      const run = Math.min(a.c, channels - c0);
      let d = m * per + g * cells * a.c;
      let s = m * cells * channels + c0;
      for (let p = 0; p < cells; p++, d += a.c, s += channels) {
        for (let k = 0; k < run; k++) dst[d + k] = src[s + k];
        for (let k = run; k < a.c; k++) dst[d + k] = 0;
      }
    }
  }
  return dst;
}

/**
 * A convolution's weights for MLAS's NCHWc kernels, from Keras HWIO: OIHWBiBo for an NCHWc
 * input ([O/B][I/B][kh][kw][Bi][Bo]), OIHWBo for a plain NCHW input ([O/B][I][kh][kw][Bo]),
 * zero where channels pad to whole blocks; dims are what the NCHWc Conv node declares.
 */
export function nchwcFilter(hwio: Float32Array, kh: number, kw: number, cin: number, cout: number, block: number, planarInput: boolean): { data: Float32Array; dims: number[] } {
  const B = block;
  const op = Math.ceil(cout / B) * B;
  const ip = planarInput ? cin : Math.ceil(cin / B) * B;
  const data = new Float32Array(op * ip * kh * kw);
  const kk = kh * kw;
  const at = (k: number, i: number, o: number): number => (o < cout && i < cin ? hwio[(k * cin + i) * cout + o] : 0);
  let d = 0;
  for (let ob = 0; ob < op; ob += B) {
    if (planarInput) {
      for (let i = 0; i < cin; i++) for (let k = 0; k < kk; k++) for (let bo = 0; bo < B; bo++) data[d++] = at(k, i, ob + bo);
    } else {
      for (let ib = 0; ib < ip; ib += B) {
        for (let k = 0; k < kk; k++) for (let bi = 0; bi < B; bi++) for (let bo = 0; bo < B; bo++) data[d++] = at(k, ib + bi, ob + bo);
      }
    }
  }
  return { data, dims: [op, ip, kh, kw] };
}
