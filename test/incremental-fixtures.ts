/**
 * Plain-JS references for the incremental engine's tests (no test cases here): a forward pass
 * of a Net written from the layer definitions (bounds-checked padding, no padded buffers), an
 * executor running the engine's pieces the same way, and random nets.
 */
import type { NetExecutor } from '../src/occlusion/incremental.js';
import { netShapes, padValue, type Net, type Pointwise, type Stage, type TailLayer } from '../src/occlusion/net.js';
import { Rng } from '../src/util/rng.js';

export interface Tensor3 {
  h: number;
  w: number;
  c: number;
  /** NHWC for one item (h, w, c). */
  data: Float64Array;
}

function applyPointwise(x: Float64Array, c: number, p: Pointwise): void {
  const cells = x.length / c;
  const f = (v: number): number => {
    if (p.op === 'leakyRelu') return v < 0 ? p.alpha * v : v;
    if (p.op === 'elu') return v < 0 ? p.alpha * (Math.exp(v) - 1) : v;
    if (p.op === 'clip') return Math.min(p.max, Math.max(p.min, v));
    if (p.op === 'act') {
      switch (p.fn) {
        case 'relu':
          return Math.max(0, v);
        case 'tanh':
          return Math.tanh(v);
        case 'sigmoid':
          return 1 / (1 + Math.exp(-v));
        case 'linear':
          return v;
        default:
          throw new Error(`reference: activation ${p.fn}`);
      }
    }
    throw new Error('unreachable');
  };
  if (p.op === 'affine') {
    for (let i = 0; i < cells; i++) for (let k = 0; k < c; k++) x[i * c + k] = x[i * c + k] * p.scale[k] + p.shift[k];
    return;
  }
  if (p.op === 'act' && p.fn === 'softmax') {
    for (let i = 0; i < cells; i++) {
      let max = -Infinity;
      for (let k = 0; k < c; k++) max = Math.max(max, x[i * c + k]);
      let s = 0;
      for (let k = 0; k < c; k++) s += Math.exp(x[i * c + k] - max);
      for (let k = 0; k < c; k++) x[i * c + k] = Math.exp(x[i * c + k] - max) / s;
    }
    return;
  }
  for (let i = 0; i < x.length; i++) x[i] = f(x[i]);
}

/**
 * One stage on an unpadded input, from the definitions: the input is zero-padded by the stage's
 * ZeroPadding, then read with the stage's own padding by bounds checks (zeros for conv, left
 * out for pooling, as TF does).
 */
export function refStage(s: Stage, x: Tensor3): Tensor3 {
  const [zt, zb, zl, zr] = s.zeroPads;
  const zh = x.h + zt + zb;
  const zw = x.w + zl + zr;
  const at = (y: number, xx: number, k: number): number => {
    const yy = y - zt;
    const xi = xx - zl;
    return yy >= 0 && yy < x.h && xi >= 0 && xi < x.w ? x.data[(yy * x.w + xi) * x.c + k] : 0;
  };
  const [pt, pb, pl, pr] = s.pads;
  const [kh, kw] = s.kernel;
  const [sy, sx] = s.strides;
  const [dy, dx] = s.dilation;
  const oh = Math.floor((zh + pt + pb - ((kh - 1) * dy + 1)) / sy) + 1;
  const ow = Math.floor((zw + pl + pr - ((kw - 1) * dx + 1)) / sx) + 1;
  const out = new Float64Array(oh * ow * s.cout);
  for (let oy = 0; oy < oh; oy++) {
    for (let ox = 0; ox < ow; ox++) {
      for (let co = 0; co < s.cout; co++) {
        let acc = s.kind === 'maxpool' ? -Infinity : 0;
        let count = 0;
        for (let i = 0; i < kh; i++) {
          for (let j = 0; j < kw; j++) {
            const y = oy * sy + i * dy - pt;
            const xx = ox * sx + j * dx - pl;
            if (y < 0 || y >= zh || xx < 0 || xx >= zw) continue;
            count++;
            if (s.kind === 'conv') {
              for (let ci = 0; ci < s.cin; ci++) acc += at(y, xx, ci) * s.kernelHWIO![((i * kw + j) * s.cin + ci) * s.cout + co];
            } else if (s.kind === 'maxpool') acc = Math.max(acc, at(y, xx, co));
            else acc += at(y, xx, co);
          }
        }
        if (s.kind === 'avgpool') acc /= count;
        if (s.kind === 'conv' && s.bias) acc += s.bias[co];
        out[(oy * ow + ox) * s.cout + co] = acc;
      }
    }
  }
  for (const p of s.post) applyPointwise(out, s.cout, p);
  return { h: oh, w: ow, c: s.cout, data: out };
}

export function refTail(net: Net, x: Tensor3): Float64Array {
  const [zt, zb, zl, zr] = net.tailZeroPads;
  const h = x.h + zt + zb;
  const w = x.w + zl + zr;
  let v = new Float64Array(h * w * x.c);
  for (let y = 0; y < x.h; y++) for (let xx = 0; xx < x.w; xx++) for (let k = 0; k < x.c; k++) v[((y + zt) * w + xx + zl) * x.c + k] = x.data[(y * x.w + xx) * x.c + k];
  let c = x.c;
  for (const t of net.tail as TailLayer[]) {
    if (t.op === 'flatten') c = v.length;
    else if (t.op === 'dense') {
      const o = new Float64Array(t.units);
      for (let u = 0; u < t.units; u++) {
        let acc = t.bias ? t.bias[u] : 0;
        for (let i = 0; i < t.inputs; i++) acc += v[i] * t.kernel[i * t.units + u];
        o[u] = acc;
      }
      v = o;
      c = t.units;
    } else applyPointwise(v, c, t);
  }
  return v;
}

/** Every stage's output and the model output for one image, from the definitions. */
export function refForward(net: Net, img: Tensor3): { outputs: Tensor3[]; probs: Float64Array } {
  const outputs: Tensor3[] = [];
  let x = img;
  for (const s of net.stages) {
    x = refStage(s, x);
    outputs.push(x);
  }
  return { outputs, probs: refTail(net, x) };
}

/** A stage on a pre-padded NHWC block (valid), as the engine's window graphs compute it. */
function validStage(s: Stage, x: Tensor3): Tensor3 {
  const stripped: Stage = { ...s, pads: [0, 0, 0, 0], zeroPads: [0, 0, 0, 0] };
  // Padded cells of a pooling input hold -Infinity (max) or real zeros; the reference reads them as values.
  return refStage(stripped, x);
}

function pad(x: Tensor3, p: [number, number, number, number], value: number): Tensor3 {
  const [t, b, l, r] = p;
  const h = x.h + t + b;
  const w = x.w + l + r;
  const data = new Float64Array(h * w * x.c).fill(value);
  for (let y = 0; y < x.h; y++) for (let xx = 0; xx < x.w; xx++) for (let k = 0; k < x.c; k++) data[((y + t) * w + xx + l) * x.c + k] = x.data[(y * x.w + xx) * x.c + k];
  return { h, w, c: x.c, data };
}

const f32 = (a: Float64Array): Float32Array => Float32Array.from(a);

/** The engine's pieces in plain JS (float64 inside, float32 between calls like ONNX Runtime). */
export function refExecutor(net: Net): NetExecutor & { calls: { window: number; tail: number } } {
  const sh = netShapes(net);
  const calls = { window: 0, tail: 0 };
  const items = (x: Float32Array, n: number, h: number, w: number, c: number): Tensor3[] =>
    Array.from({ length: n }, (_, i) => ({ h, w, c, data: Float64Array.from(x.subarray(i * h * w * c, (i + 1) * h * w * c)) }));
  const join = (ts: Tensor3[]): Float32Array => {
    const size = ts[0]?.data.length ?? 0;
    const out = new Float32Array(ts.length * size);
    ts.forEach((t, i) => out.set(f32(t.data), i * size));
    return out;
  };
  const round = (t: Tensor3): Tensor3 => ({ ...t, data: Float64Array.from(f32(t.data)) });
  const runFrom = (from: number, x: Tensor3): Float64Array => {
    let v = x;
    for (let i = from; i < net.stages.length; i++) {
      const s = net.stages[i];
      v = round(i === from ? validStage(s, v) : refStage(s, v));
    }
    if (from < net.stages.length) v = pad(v, net.tailZeroPads, 0);
    return refTail({ ...net, tailZeroPads: [0, 0, 0, 0] }, v);
  };
  return {
    calls,
    async base(x, n) {
      const [h, w, c] = net.input;
      const imgs = items(x, n, h, w, c);
      const inputs: Tensor3[][] = net.stages.map(() => []);
      const tails: Tensor3[] = [];
      const probs: Float64Array[] = [];
      for (const img of imgs) {
        let v = img;
        net.stages.forEach((s, i) => {
          v = pad(pad(v, s.zeroPads, 0), s.pads, padValue(s));
          inputs[i].push(v);
          v = round(validStage(s, v));
        });
        v = pad(v, net.tailZeroPads, 0);
        tails.push(v);
        probs.push(refTail({ ...net, tailZeroPads: [0, 0, 0, 0] }, v));
      }
      return { inputs: inputs.map(join), tail: join(tails), probs: Float32Array.from(probs.flatMap((p) => [...p])) };
    },
    async window(stage, blocks, n, bh, bw, last = stage, out) {
      calls.window++;
      const s = net.stages[stage];
      const y = join(
        items(blocks, n, bh, bw, s.cin).map((b) => {
          let v = round(validStage(s, b));
          for (let j = stage + 1; j <= last; j++) v = round(validStage(net.stages[j], v));
          return v;
        }),
      );
      if (!out) return y;
      if (out.length !== y.length) throw new Error(`window output of ${y.length} floats into ${out.length}`);
      out.set(y);
      return out;
    },
    async tail(from, x, n) {
      calls.tail++;
      const [h, w, c] = from < net.stages.length ? sh.stages[from].inShape : [sh.tailInput.h, sh.tailInput.w, sh.tailInput.c];
      return Float32Array.from(items(x, n, h, w, c).flatMap((t) => [...runFrom(from, t)]));
    },
    dispose() {},
  };
}

export interface StageSpec {
  kind: Stage['kind'];
  k: [number, number];
  s?: [number, number];
  d?: [number, number];
  same?: boolean;
  cout?: number;
  zeroPads?: [number, number, number, number];
  post?: Pointwise[];
}

/** TF 'same' padding [before, after] of one axis. */
export function same(size: number, k: number, s: number, d = 1): [number, number] {
  const eff = (k - 1) * d + 1;
  const out = Math.ceil(size / s);
  const total = Math.max(0, (out - 1) * s + eff - size);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/** A random Net from stage specs (weights uniform in [-0.5, 0.5]), with a dense head of `classes`. */
export function randomNet(rng: Rng, input: [number, number, number], specs: StageSpec[], classes = 3, tailZeroPads: [number, number, number, number] = [0, 0, 0, 0]): Net {
  const u = (n: number, scale = 0.5): Float32Array => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
  let [h, w, c] = input;
  const stages: Stage[] = specs.map((sp, i) => {
    const zp = sp.zeroPads ?? [0, 0, 0, 0];
    const zh = h + zp[0] + zp[1];
    const zw = w + zp[2] + zp[3];
    const s = sp.s ?? (sp.kind === 'conv' ? [1, 1] : sp.k);
    const d = sp.d ?? [1, 1];
    const py = sp.same ? same(zh, sp.k[0], s[0], d[0]) : [0, 0];
    const px = sp.same ? same(zw, sp.k[1], s[1], d[1]) : [0, 0];
    const cout = sp.kind === 'conv' ? (sp.cout ?? 4) : c;
    const stage: Stage = {
      name: `s${i}`,
      kind: sp.kind,
      kernel: sp.k,
      strides: s,
      dilation: d,
      pads: [py[0], py[1], px[0], px[1]],
      zeroPads: zp,
      cin: c,
      cout,
      kernelHWIO: sp.kind === 'conv' ? u(sp.k[0] * sp.k[1] * c * cout, 1 / Math.sqrt(sp.k[0] * sp.k[1] * c)) : undefined,
      bias: sp.kind === 'conv' ? u(cout, 0.1) : undefined,
      post: sp.post ?? [],
    };
    const eh = (sp.k[0] - 1) * d[0] + 1;
    const ew = (sp.k[1] - 1) * d[1] + 1;
    h = Math.floor((zh + py[0] + py[1] - eh) / s[0]) + 1;
    w = Math.floor((zw + px[0] + px[1] - ew) / s[1]) + 1;
    c = cout;
    return stage;
  });
  const flat = (h + tailZeroPads[0] + tailZeroPads[1]) * (w + tailZeroPads[2] + tailZeroPads[3]) * c;
  const tail: TailLayer[] = [
    { op: 'flatten' },
    { op: 'dense', name: 'd1', units: 8, inputs: flat, kernel: u(flat * 8, 1 / Math.sqrt(flat)), bias: u(8, 0.1) },
    { op: 'act', fn: 'relu' },
    { op: 'dense', name: 'out', units: classes, inputs: 8, kernel: u(8 * classes), bias: u(classes, 0.1) },
    { op: 'act', fn: 'softmax' },
  ];
  return { input, stages, tailZeroPads, tail, numClasses: classes };
}

export function randomImages(rng: Rng, n: number, h: number, w: number, c: number): Float32Array {
  return Float32Array.from({ length: n * h * w * c }, () => rng.next() * 2 - 1);
}
