import { test } from 'node:test';
import assert from 'node:assert/strict';
import { axisMap, changedOut, groupLines, inputSpan, placeWindow, planWindows, propagate, truncate, type AxisMap, type Rect } from '../src/occlusion/windows.js';
import { gatherBlocks, gatherHeap, gatherPatched } from '../src/occlusion/gather.js';
import { netShapes, type Net } from '../src/occlusion/net.js';
import { IncrementalEngine } from '../src/occlusion/incremental.js';
import { occludeInto, positions, type Geometry } from '../src/occlusion/geometry.js';
import { Rng } from '../src/util/rng.js';
import { randomImages, randomNet, refExecutor, refForward, type StageSpec, type Tensor3 } from './incremental-fixtures.js';

/** Outputs of axis `a` that read any of the previous-output cells [lo, hi), by enumeration. */
function bruteChanged(a: AxisMap, lo: number, hi: number, dilation: number, kernel: number): number[] {
  const out: number[] = [];
  for (let o = 0; o < a.out; o++) {
    for (let j = 0; j < kernel; j++) {
      const cell = o * a.stride + j * dilation - a.offset;
      if (cell >= lo && cell < hi) {
        out.push(o);
        break;
      }
    }
  }
  return out;
}

test('changedOut equals the brute-force set of outputs reading the change (all small axes, strides, paddings, even/odd kernels)', () => {
  let cases = 0;
  for (let prev = 1; prev <= 9; prev++) {
    for (const [before, after] of [[0, 0], [1, 2], [2, 1], [3, 3], [0, 2]]) {
      for (let k = 1; k <= 5; k++) {
        for (let s = 1; s <= 3; s++) {
          for (const d of [1, 2]) {
            if (prev + before + after < (k - 1) * d + 1) continue;
            const a = axisMap(prev, before, after, k, s, d);
            for (let lo = 0; lo < prev; lo++) {
              for (let hi = lo + 1; hi <= prev; hi++) {
                const brute = bruteChanged(a, lo, hi, d, k);
                const r = changedOut(a, { lo, hi });
                if (d === 1) {
                  // contiguous, and exactly the hull
                  assert.deepEqual(brute.length === 0 ? [0, 0] : [brute[0], brute[brute.length - 1] + 1], r.hi > r.lo ? [r.lo, r.hi] : [0, 0], JSON.stringify({ prev, before, after, k, s, lo, hi }));
                  assert.equal(brute.length, Math.max(0, r.hi - r.lo));
                } else {
                  for (const o of brute) assert.ok(o >= r.lo && o < r.hi);
                }
                cases++;
              }
            }
          }
        }
      }
    }
  }
  assert.ok(cases > 5000);
});

test('inputSpan is the hull of the cells a window of outputs reads; placeWindow keeps the window inside and around the change', () => {
  for (let k = 1; k <= 4; k++) {
    for (let s = 1; s <= 3; s++) {
      const a = axisMap(11, 1, 2, k, s);
      for (let o0 = 0; o0 < a.out; o0++) {
        for (let n = 1; o0 + n <= a.out; n++) {
          const span = inputSpan(a, o0, n);
          assert.equal(span.lo, o0 * s);
          assert.equal(span.hi, (o0 + n - 1) * s + k);
          assert.ok(span.hi <= a.size);
        }
      }
    }
  }
  assert.equal(placeWindow({ lo: 2, hi: 4 }, 5, 10), 2);
  assert.equal(placeWindow({ lo: 8, hi: 10 }, 5, 10), 5);
  assert.equal(placeWindow({ lo: 0, hi: 1 }, 5, 5), 0);
  assert.throws(() => placeWindow({ lo: 0, hi: 6 }, 5, 10));
});

const cellChanged = (a: Tensor3, b: Tensor3, y: number, x: number): boolean => {
  for (let k = 0; k < a.c; k++) if (a.data[(y * a.w + x) * a.c + k] !== b.data[(y * b.w + x) * b.c + k]) return true;
  return false;
};

/** Stacks covering the cases: even/odd kernels, same/valid, strides, dilation, pools, ZeroPadding. */
const STACKS: { name: string; input: [number, number, number]; specs: StageSpec[] }[] = [
  { name: 'seed-like (zero pad 3, 4x4 same, 3x3 same, max 2x2, 3x3 same x3, max 2x2)', input: [13, 13, 1], specs: [
    { kind: 'conv', k: [4, 4], same: true, zeroPads: [3, 3, 3, 3] }, { kind: 'conv', k: [3, 3], same: true }, { kind: 'maxpool', k: [2, 2] },
    { kind: 'conv', k: [3, 3], same: true }, { kind: 'conv', k: [3, 3], same: true }, { kind: 'maxpool', k: [2, 2] }] },
  { name: 'valid 5x5 stride 2, avg 2x2, even 2x2 valid', input: [17, 15, 2], specs: [
    { kind: 'conv', k: [5, 5], s: [2, 2] }, { kind: 'avgpool', k: [2, 2] }, { kind: 'conv', k: [2, 2] }] },
  { name: 'asymmetric zero pad, 3x2 same stride 2, max 3x3 stride 2 same, dilated 3x3', input: [14, 12, 1], specs: [
    { kind: 'conv', k: [3, 2], s: [2, 2], same: true, zeroPads: [1, 2, 0, 3] }, { kind: 'maxpool', k: [3, 3], s: [2, 2], same: true },
    { kind: 'conv', k: [3, 3], d: [2, 2], same: true }] },
];

test('brute force: perturbing one input region changes exactly the propagated region (linear convs and averages), a subset with max pooling', () => {
  const rng = new Rng(3);
  for (const st of STACKS) {
    const net = randomNet(rng, st.input, st.specs);
    const [h, w, c] = st.input;
    const img: Tensor3 = { h, w, c, data: Float64Array.from(randomImages(rng, 1, h, w, c)) };
    const base = refForward(net, img).outputs;
    const axes = netShapes(net).stages;
    const exact = st.specs.every((s) => s.kind !== 'maxpool' && (s.d ?? [1, 1])[0] === 1);
    for (let trial = 0; trial < 25; trial++) {
      const y0 = rng.int(h);
      const x0 = rng.int(w);
      const r: Rect = { y: { lo: y0, hi: Math.min(h, y0 + 1 + rng.int(4)) }, x: { lo: x0, hi: Math.min(w, x0 + 1 + rng.int(4)) } };
      const pert: Tensor3 = { ...img, data: Float64Array.from(img.data) };
      for (let y = r.y.lo; y < r.y.hi; y++) for (let x = r.x.lo; x < r.x.hi; x++) for (let k = 0; k < c; k++) pert.data[(y * w + x) * c + k] += 5 + rng.next();
      const outs = refForward(net, pert).outputs;
      const regions = propagate(axes, r);
      outs.forEach((o, i) => {
        let bb = { y0: Infinity, y1: -Infinity, x0: Infinity, x1: -Infinity };
        for (let y = 0; y < o.h; y++) {
          for (let x = 0; x < o.w; x++) {
            if (!cellChanged(o, base[i], y, x)) continue;
            const reg = regions[i];
            assert.ok(y >= reg.y.lo && y < reg.y.hi && x >= reg.x.lo && x < reg.x.hi, `${st.name}: stage ${i} cell (${y},${x}) changed outside ${JSON.stringify(reg)}`);
            bb = { y0: Math.min(bb.y0, y), y1: Math.max(bb.y1, y + 1), x0: Math.min(bb.x0, x), x1: Math.max(bb.x1, x + 1) };
          }
        }
        const reg = regions[i];
        const none = reg.y.hi <= reg.y.lo || reg.x.hi <= reg.x.lo;
        if (exact) assert.deepEqual([bb.y0, bb.y1, bb.x0, bb.x1], none ? [Infinity, -Infinity, Infinity, -Infinity] : [reg.y.lo, reg.y.hi, reg.x.lo, reg.x.hi], `${st.name}: stage ${i}`);
      });
    }
  }
});

test('planWindows: every window holds its position\'s change and fits the output, with few sizes; positions left out change nothing', () => {
  const rng = new Rng(5);
  for (const st of STACKS) {
    const net = randomNet(rng, st.input, st.specs);
    const axes = netShapes(net).stages;
    const g: Geometry = { h: st.input[0], w: st.input[1], ph: 3, pw: 2, stride: 1, pad: 2 };
    for (const groups of [1, 2, 3, 5]) {
      const plan = planWindows(g, axes, { threshold: 2, groups });
      assert.equal(plan.fullFrom, axes.length);
      plan.windows.forEach((win) => {
        assert.ok(new Set(win.h).size <= groups && new Set(win.w).size <= groups);
      });
      const pos = positions(g);
      const activeSet = new Set(plan.active);
      for (let p = 0; p < pos.ys.length; p++) {
        const y = pos.ys[p] - g.pad;
        const x = pos.xs[p] - g.pad;
        const r: Rect = { y: { lo: Math.max(0, y), hi: Math.min(g.h, y + g.ph) }, x: { lo: Math.max(0, x), hi: Math.min(g.w, x + g.pw) } };
        const empty = r.y.hi <= r.y.lo || r.x.hi <= r.x.lo;
        if (!activeSet.has(p)) {
          assert.ok(empty || propagate(axes, r).some((q) => q.y.hi <= q.y.lo || q.x.hi <= q.x.lo));
          continue;
        }
        const a = plan.active.indexOf(p);
        propagate(axes, r).forEach((q, i) => {
          const win = plan.windows[i];
          const [oy, ox, h, w] = [win.oy[a], win.ox[a], win.h[a], win.w[a]];
          assert.ok(oy >= 0 && oy + h <= axes[i].y.out && ox >= 0 && ox + w <= axes[i].x.out);
          assert.ok(oy <= q.y.lo && q.y.hi <= oy + h && ox <= q.x.lo && q.x.hi <= ox + w);
        });
      }
    }
    // Krypton's rule: a threshold of 0 computes everything in full
    assert.equal(planWindows(g, axes, 0).fullFrom, 0);
  }
});

test('groupLines: the cheapest cut of cost-ordered lines into k groups, against every cut', () => {
  const rng = new Rng(11);
  for (let trial = 0; trial < 40; trial++) {
    const n = 1 + rng.int(7);
    const stages = 1 + rng.int(3);
    const lens = Array.from({ length: n }, () => Array.from({ length: stages }, () => 1 + rng.int(9)));
    const weights = Array.from({ length: stages }, () => 1 + rng.int(5));
    const k = 1 + rng.int(3);
    const costOf = (gid: number[]): number => {
      let c = 0;
      for (const g of new Set(gid)) {
        const m = lens.filter((_, i) => gid[i] === g);
        c += m.length * weights.reduce((a, w, s) => a + w * Math.max(...m.map((l) => l[s])), 0);
      }
      return c;
    };
    const got = groupLines(lens, weights, k);
    assert.ok(new Set(got).size <= k);
    // brute force over every assignment of lines to k groups (an upper bound on what contiguous cuts can reach)
    let best = Infinity;
    const gid = new Array<number>(n).fill(0);
    const rec = (i: number): void => {
      if (i === n) {
        best = Math.min(best, costOf(gid));
        return;
      }
      for (let g = 0; g < k; g++) {
        gid[i] = g;
        rec(i + 1);
      }
    };
    rec(0);
    assert.ok(costOf(got) >= best);
    // with one stage the order is total, so the contiguous cut is optimal
    if (stages === 1) assert.equal(costOf(got), best);
  }
});

test('gatherBlocks: base block with the overlay written over the shared part', () => {
  // one 4x5 map, 1 channel, values 100 + index; a 2x2 overlay of -1..-4 at (1, 3), block 3x3 at (0, 2)
  const plane = { data: Float32Array.from({ length: 20 }, (_, i) => 100 + i), h: 4, w: 5, c: 1 };
  const out = gatherBlocks(new Float32Array(9), plane, { map: Int32Array.of(0), y0: Int32Array.of(0), x0: Int32Array.of(2), bh: 3, bw: 3 }, {
    data: [Float32Array.of(0, 0, -1, -2, -3, -4)],
    off: Int32Array.of(2),
    y0: Int32Array.of(1),
    x0: Int32Array.of(3),
    oh: Int32Array.of(2),
    ow: Int32Array.of(2),
  });
  assert.deepEqual([...out], [102, 103, 104, 107, -1, -2, 112, -3, -4]);
});

test('gatherBlocks against element-by-element copying: short and long rows, channel groups (NCHWc), blocks as wide as the plane, separate arrays, one buffer or the gathering memory (queued copies)', () => {
  const rng = new Rng(11);
  const layouts = [[1, 1], [1, 3], [1, 8], [1, 40], [3, 1], [2, 16], [4, 8]];
  for (const [groups, c] of layouts) {
    for (const bw of [6, 11]) {
      const [h, w, maps, items, bh] = [9, 11, 2, 40, 5];
      const planeData = Float32Array.from({ length: maps * groups * h * w * c }, () => rng.next());
      const b = { map: new Int32Array(items), y0: new Int32Array(items), x0: new Int32Array(items), bh, bw };
      const ov = { data: [] as Float32Array[], off: new Int32Array(items), y0: new Int32Array(items), x0: new Int32Array(items), oh: new Int32Array(items), ow: new Int32Array(items) };
      const ovData = Float32Array.from({ length: items * groups * 4 * 5 * c }, () => -rng.next());
      for (let i = 0; i < items; i++) {
        b.map[i] = i % maps;
        b.y0[i] = Math.floor(rng.next() * (h - bh + 1));
        b.x0[i] = Math.floor(rng.next() * (w - bw + 1));
        ov.oh[i] = 1 + Math.floor(rng.next() * 4);
        ov.ow[i] = 1 + Math.floor(rng.next() * 5);
        ov.y0[i] = Math.floor(rng.next() * (h - ov.oh[i] + 1));
        ov.x0[i] = Math.floor(rng.next() * (w - ov.ow[i] + 1));
        ov.off[i] = i * 20 * groups * c;
      }
      // reference: every block cell from the overlay where it covers the cell, else from the plane; each group an image of c channels
      const want = new Float32Array(items * groups * bh * bw * c);
      for (let i = 0; i < items; i++) {
        for (let g = 0; g < groups; g++) {
          for (let y = 0; y < bh; y++) {
            for (let x = 0; x < bw; x++) {
              const [py, px] = [b.y0[i] + y, b.x0[i] + x];
              const inOv = py >= ov.y0[i] && py < ov.y0[i] + ov.oh[i] && px >= ov.x0[i] && px < ov.x0[i] + ov.ow[i];
              for (let k = 0; k < c; k++) {
                want[(((i * groups + g) * bh + y) * bw + x) * c + k] = inOv
                  ? ovData[ov.off[i] + ((g * ov.oh[i] + py - ov.y0[i]) * ov.ow[i] + (px - ov.x0[i])) * c + k]
                  : planeData[(((b.map[i] * groups + g) * h + py) * w + px) * c + k];
              }
            }
          }
        }
      }
      const what = `groups=${groups}, c=${c}, bw=${bw}`;
      const separate = gatherBlocks(new Float32Array(want.length), { data: planeData, h, w, c, groups }, b, { ...ov, data: Array.from({ length: items }, () => ovData) });
      assert.deepEqual([...separate], [...want], `separate arrays, ${what}`);
      const heap = new Float32Array(planeData.length + ovData.length + want.length + 3);
      const planeView = heap.subarray(1, 1 + planeData.length);
      const ovView = heap.subarray(2 + planeData.length, 2 + planeData.length + ovData.length);
      planeView.set(planeData);
      ovView.set(ovData);
      const dst = heap.subarray(heap.length - want.length);
      const shared = gatherBlocks(dst, { data: planeView, h, w, c, groups }, b, { ...ov, data: Array.from({ length: items }, () => ovView) });
      assert.deepEqual([...shared], [...want], `one buffer, ${what}`);
      // the gathering memory: copies queued and run by one WebAssembly call
      const wheap = gatherHeap(heap.length);
      wheap.set(heap);
      const wdst = wheap.subarray(wheap.length - want.length);
      const queued = gatherBlocks(wdst, { data: wheap.subarray(1, 1 + planeData.length), h, w, c, groups }, b, { ...ov, data: Array.from({ length: items }, () => wheap.subarray(2 + planeData.length, 2 + planeData.length + ovData.length)) });
      assert.deepEqual([...queued], [...want], `gathering memory, ${what}`);
    }
  }
});

test('gathering memory: more rows than one queue holds, a grown memory, and patches over queued copies give what plain arrays give', () => {
  const rng = new Rng(12);
  const [h, w, c, groups, items, bh, bw] = [13, 13, 16, 4, 1200, 5, 4];
  const planeData = Float32Array.from({ length: groups * h * w * c }, () => rng.next());
  const b = { map: new Int32Array(items), y0: new Int32Array(items), x0: new Int32Array(items), bh, bw };
  const ov = { data: [] as Float32Array[], off: new Int32Array(items), y0: new Int32Array(items), x0: new Int32Array(items), oh: new Int32Array(items).fill(2), ow: new Int32Array(items).fill(2) };
  for (let i = 0; i < items; i++) {
    b.y0[i] = Math.floor(rng.next() * (h - bh + 1));
    b.x0[i] = Math.floor(rng.next() * (w - bw + 1));
    ov.y0[i] = b.y0[i] + 1;
    ov.x0[i] = b.x0[i] + 1;
  }
  const ovData = Float32Array.from({ length: groups * 4 * c }, () => -rng.next());
  const size = items * groups * bh * bw * c;
  const want = gatherBlocks(new Float32Array(size), { data: planeData, h, w, c, groups }, b, { ...ov, data: Array.from({ length: items }, () => ovData) });
  gatherHeap(16);
  // grown past its first size: the views taken after growing hold the data
  const heap = gatherHeap(planeData.length + ovData.length + size);
  heap.set(planeData);
  heap.set(ovData, planeData.length);
  const got = gatherBlocks(heap.subarray(heap.length - size), { data: heap.subarray(0, planeData.length), h, w, c, groups }, b, { ...ov, data: Array.from({ length: items }, () => heap.subarray(planeData.length, planeData.length + ovData.length)) });
  assert.deepEqual([...got], [...want]);
  const patch = { y: Array.from({ length: items }, (_, i) => ({ lo: b.y0[i] + 1, hi: b.y0[i] + 3 })), x: Array.from({ length: items }, (_, i) => ({ lo: b.x0[i], hi: b.x0[i] + 2 })) };
  const fills = Float32Array.from({ length: groups * c }, (_, k) => -1 - k);
  const pWant = gatherPatched(new Float32Array(size), { data: planeData, h, w, c, groups }, { ...b, map: new Int32Array(items) }, patch, fills);
  const pGot = gatherPatched(heap.subarray(heap.length - size), { data: heap.subarray(0, planeData.length), h, w, c, groups }, { ...b, map: new Int32Array(items) }, patch, fills);
  assert.deepEqual([...pGot], [...pWant]);
});

test('gatherPatched in channel groups: the patch takes each real channel\'s fill, channels padding the last group stay 0', () => {
  // one 3x4 map of 5 channels stored as 2 groups of 4 (the last 3 lanes padding), patch rows 1-2, cols 1-2
  const [h, w, groups, c, channels] = [3, 4, 2, 4, 5];
  const data = Float32Array.from({ length: groups * h * w * c }, (_, i) => 1 + i);
  for (let g = 0; g < groups; g++) for (let p = 0; p < h * w; p++) for (let k = 0; k < c; k++) if (g * c + k >= channels) data[(g * h * w + p) * c + k] = 0;
  const fills = Float32Array.of(-1, -2, -3, -4, -5);
  const out = gatherPatched(new Float32Array(groups * h * w * c), { data, h, w, c, groups, channels }, { map: Int32Array.of(0), y0: Int32Array.of(0), x0: Int32Array.of(0), bh: h, bw: w }, { y: [{ lo: 1, hi: 3 }], x: [{ lo: 1, hi: 3 }] }, fills);
  for (let g = 0; g < groups; g++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let k = 0; k < c; k++) {
          const i = ((g * h + y) * w + x) * c + k;
          const ch = g * c + k;
          const inPatch = y >= 1 && x >= 1 && x < 3;
          assert.equal(out[i], ch >= channels ? 0 : inPatch ? fills[ch] : data[i], `g${g} y${y} x${x} k${k}`);
        }
      }
    }
  }
});

/** Probabilities (n, positions + 1, K) of the occluded images, each computed whole by the reference executor. */
async function fullProbs(net: Net, x: Float32Array, n: number, g: Geometry, fills: Float32Array): Promise<Float32Array> {
  const ex = refExecutor(net);
  const [h, w, c] = net.input;
  const px = h * w * c;
  const pos = positions(g);
  const imgs = new Float32Array(n * (pos.ys.length + 1) * px);
  for (let i = 0; i < n; i++) {
    const img = x.subarray(i * px, (i + 1) * px);
    imgs.set(img, i * (pos.ys.length + 1) * px);
    for (let p = 0; p < pos.ys.length; p++) occludeInto(imgs, (i * (pos.ys.length + 1) + p + 1) * px, img, g, c, pos.ys[p], pos.xs[p], fills.subarray(i * c, (i + 1) * c));
  }
  const b = await ex.base(imgs, n * (pos.ys.length + 1));
  return b.probs;
}

test('the incremental engine (plain-JS executor) gives the probabilities of the whole occluded images, for every plan', async () => {
  const rng = new Rng(7);
  const geoms = (h: number, w: number): Geometry[] => [
    { h, w, ph: 3, pw: 3, stride: 1, pad: 3 },
    { h, w, ph: 2, pw: 4, stride: 2, pad: 1 },
    { h, w, ph: 5, pw: 5, stride: 3, pad: 0 },
  ];
  for (const st of STACKS) {
    const net = randomNet(rng, st.input, st.specs);
    const [h, w, c] = st.input;
    const n = 2;
    const x = randomImages(rng, n, h, w, c);
    const fills = Float32Array.from({ length: n * c }, () => rng.next() - 0.5);
    for (const g of geoms(h, w)) {
      const want = await fullProbs(net, x, n, g, fills);
      for (const [threshold, groups, fuse] of [[2, 1, 0], [2, 3, 1], [0.5, 2, 1], [0, 1, 0], [0.9, 1, 1]]) {
        const engine = new IncrementalEngine(net, refExecutor(net), { fullThreshold: threshold, groups, chunk: 37, fusePools: fuse === 1 });
        const got = await engine.occlusionProbs(x, n, g, fills);
        assert.equal(got.length, want.length);
        let max = 0;
        for (let i = 0; i < got.length; i++) max = Math.max(max, Math.abs(got[i] - want[i]));
        assert.ok(max < 1e-6, `${st.name}, ${JSON.stringify(g)}, threshold ${threshold}, groups ${groups}, fuse ${fuse}: max diff ${max}`);
      }
    }
  }
});

test('truncate keeps the middle of a region; propagate with tau caps every stage at ceil(tau x output)', () => {
  assert.deepEqual(truncate({ lo: 2, hi: 9 }, 3), { lo: 4, hi: 7 });
  assert.deepEqual(truncate({ lo: 2, hi: 4 }, 3), { lo: 2, hi: 4 });
  const axes = [0, 1, 2].map(() => ({ y: axisMap(13, 1, 1, 3, 1), x: axisMap(13, 1, 1, 3, 1) }));
  const exact = propagate(axes, { y: { lo: 6, hi: 7 }, x: { lo: 6, hi: 7 } });
  assert.deepEqual(exact.map((r) => r.y.hi - r.y.lo), [3, 5, 7]);
  const approx = propagate(axes, { y: { lo: 6, hi: 7 }, x: { lo: 6, hi: 7 } }, 0.3);
  assert.deepEqual(approx.map((r) => r.y.hi - r.y.lo), [3, 4, 4]); // ceil(0.3 * 13) = 4
  assert.deepEqual(propagate(axes, { y: { lo: 6, hi: 7 }, x: { lo: 6, hi: 7 } }, 1), exact);
});
