/**
 * The incremental engine's NCHWc layout arithmetic (net-layout.ts), against
 * index formulas written out element by element.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseLayout, nchwcFilter, nchwcLayout, nchwcUnsupported, nhwcLayout, packLayout } from '../src/occlusion/net-layout.js';
import type { Net, Stage } from '../src/occlusion/net.js';
import { Rng } from '../src/util/rng.js';

function conv(name: string, cin: number, cout: number, post: Stage['post'] = [{ op: 'act', fn: 'relu' }]): Stage {
  return { name, kind: 'conv', kernel: [3, 3], strides: [1, 1], dilation: [1, 1], pads: [1, 1, 1, 1], zeroPads: [0, 0, 0, 0], cin, cout, kernelHWIO: new Float32Array(9 * cin * cout), post };
}
const pool = (name: string, c: number, zeroPads: Stage['zeroPads'] = [0, 0, 0, 0]): Stage => ({ name, kind: 'maxpool', kernel: [2, 2], strides: [2, 2], dilation: [1, 1], pads: [0, 0, 0, 0], zeroPads, cin: c, cout: c, post: [] });
const net = (stages: Stage[]): Net => ({ input: [12, 12, stages[0].cin], stages, tailZeroPads: [0, 0, 0, 0], tail: [{ op: 'flatten' }], numClasses: 2 });

test('NCHWc layouts: a first convolution with fewer channels than a block reads plain NCHW; the rest pad to whole blocks', () => {
  const n = net([conv('c1', 1, 32), conv('c2', 32, 64), pool('p', 64), conv('c3', 64, 20)]);
  const l = nchwcLayout(n, 16);
  assert.deepEqual(l.inputs, [{ groups: 1, c: 1 }, { groups: 2, c: 16 }, { groups: 4, c: 16 }, { groups: 4, c: 16 }]);
  assert.deepEqual(l.tail, { groups: 2, c: 16 });
  assert.deepEqual(nchwcLayout(net([conv('c1', 4, 16)]), 16).inputs, [{ groups: 4, c: 1 }]);
  assert.deepEqual(nhwcLayout(n).inputs.map((a) => a.c), [1, 32, 64, 64]);
});

test('NCHWc is refused with the reason: no kernels, batch norm, channel-mixing activations, zero padding before a pooling; auto also refuses wasteful padding', () => {
  const ok = net([conv('c1', 1, 32), conv('c2', 32, 64)]);
  assert.equal(nchwcUnsupported(ok, 16, true), null);
  assert.match(nchwcUnsupported(ok, 0, true) ?? '', /no NCHWc kernels/);
  const bn = net([conv('c1', 1, 32, [{ op: 'affine', scale: new Float32Array(32), shift: new Float32Array(32) }])]);
  assert.match(nchwcUnsupported(bn, 16, false) ?? '', /c1 .*batch normalisation/);
  assert.match(nchwcUnsupported(net([conv('c1', 1, 32, [{ op: 'act', fn: 'softmax' }])]), 16, false) ?? '', /softmax mixes channels/);
  assert.match(nchwcUnsupported(net([conv('c1', 1, 32), pool('p', 32, [1, 0, 0, 0])]), 16, false) ?? '', /zero padding before pooling p/);
  // 6 and 8 channels pad to 16: refused by auto, run when asked for
  const small = net([conv('c1', 2, 6), conv('c2', 6, 8)]);
  assert.match(nchwcUnsupported(small, 16, true) ?? '', /\d+% more arithmetic/);
  assert.equal(nchwcUnsupported(small, 16, false), null);
  assert.equal(chooseLayout(small, 16, 'auto').block, 0);
  assert.equal(chooseLayout(small, 16, 'nchwc').block, 16);
  assert.equal(chooseLayout(ok, 16, 'nhwc').block, 0);
  assert.throws(() => chooseLayout(bn, 16, 'nchwc'), /cannot run this model in NCHWc: c1 /);
});

test('packLayout puts NHWC channel k of group g at lane k - g*c, padding lanes 0; NHWC to NHWC copies', () => {
  const rng = new Rng(3);
  const [maps, h, w, C] = [2, 3, 5, 7];
  const src = Float32Array.from({ length: maps * h * w * C }, () => rng.next() + 1);
  for (const a of [{ groups: 2, c: 4 }, { groups: 7, c: 1 }, { groups: 1, c: 7 }, { groups: 1, c: 8 }]) {
    const dst = packLayout(new Float32Array(maps * h * w * a.groups * a.c).fill(NaN), src, maps, h, w, C, a);
    for (let m = 0; m < maps; m++) {
      for (let g = 0; g < a.groups; g++) {
        for (let p = 0; p < h * w; p++) {
          for (let k = 0; k < a.c; k++) {
            const ch = g * a.c + k;
            const got = dst[(((m * a.groups + g) * h * w) + p) * a.c + k];
            assert.equal(got, ch < C ? src[(m * h * w + p) * C + ch] : 0, `groups ${a.groups} c ${a.c}: m${m} g${g} p${p} k${k}`);
          }
        }
      }
    }
  }
});

test('nchwcFilter: OIHWBiBo and OIHWBo orders of a Keras HWIO kernel, padding zero', () => {
  const rng = new Rng(5);
  const [kh, kw, B] = [2, 3, 4];
  for (const [cin, cout, planar] of [[6, 5, false], [3, 9, true], [8, 8, false]] as const) {
    const hwio = Float32Array.from({ length: kh * kw * cin * cout }, () => rng.next() + 1);
    const f = nchwcFilter(hwio, kh, kw, cin, cout, B, planar);
    const [op, ip] = [Math.ceil(cout / B) * B, planar ? cin : Math.ceil(cin / B) * B];
    assert.deepEqual(f.dims, [op, ip, kh, kw]);
    const w = (o: number, i: number, y: number, x: number): number => (o < cout && i < cin ? hwio[((y * kw + x) * cin + i) * cout + o] : 0);
    for (let o = 0; o < op; o++) {
      for (let i = 0; i < ip; i++) {
        for (let y = 0; y < kh; y++) {
          for (let x = 0; x < kw; x++) {
            const [ob, bo, k] = [Math.floor(o / B), o % B, y * kw + x];
            const at = planar
              ? ((ob * cin + i) * kh * kw + k) * B + bo
              : ((((ob * (ip / B) + Math.floor(i / B)) * kh * kw + k) * B + (i % B)) * B) + bo;
            assert.equal(f.data[at], w(o, i, y, x), `cin ${cin} cout ${cout}: o${o} i${i} y${y} x${x}`);
          }
        }
      }
    }
  }
});
