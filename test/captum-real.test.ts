/**
 * occmap's captum preset against the REAL Captum (issue 12: "its maps must equal Captum's").
 *
 * test/fixtures/captum/ holds a small torch CNN exported to ONNX, two images and the
 * attributions of Captum v0.8.0's `Occlusion(model).attribute(x, sliding_window_shapes=(4, ph,
 * pw), strides=(1, s, s), baselines=0, target=t)`, made by scripts/captum-fixture.py (torch
 * 1.13.1; see the fixture's README.md and meta.json). No Python or torch is needed here.
 *
 * The model is loaded as a user would (`loadModel(file, { layout: 'NCHW' })`); occmap takes
 * images NHWC, so the NCHW fixture images are transposed. Captum attributes every input
 * element: [N, 4, H, W]; its window spans all 4 channels, so the channels of a pixel carry the
 * same value (checked) and channel 0 is compared with occmap's [N, H, W] map.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Occlusion, loadModel, parseNpy, type Predictor } from '../src/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIR = path.join(ROOT, 'test/fixtures/captum');

interface Case { name: string; patch: [number, number]; stride: number; target: 'predicted' | number }
const meta = JSON.parse(readFileSync(path.join(DIR, 'meta.json'), 'utf8')) as { cases: Case[]; captum: { version: string; commit: string } };

function npy(name: string): { data: Float64Array; shape: number[] } {
  const a = parseNpy(readFileSync(path.join(DIR, name)));
  return { data: Float64Array.from(a.data as ArrayLike<number | bigint>, Number), shape: a.shape };
}

/** [N, C, H, W] -> [N, H, W, C]. */
function toNhwc(a: { data: Float64Array; shape: number[] }): { data: Float32Array; shape: [number, number, number, number] } {
  const [n, c, h, w] = a.shape;
  const out = new Float32Array(n * h * w * c);
  for (let i = 0; i < n; i++) for (let k = 0; k < c; k++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    out[((i * h + y) * w + x) * c + k] = a.data[((i * c + k) * h + y) * w + x];
  }
  return { data: out, shape: [n, h, w, c] };
}

/** Captum's [N, C, H, W] attributions -> [N, H, W], after checking the C channels of every pixel agree. */
function perPixel(a: { data: Float64Array; shape: number[] }, name: string): Float64Array {
  const [n, c, h, w] = a.shape;
  const out = new Float64Array(n * h * w);
  for (let i = 0; i < n; i++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const v = a.data[((i * c) * h + y) * w + x];
    for (let k = 1; k < c; k++) assert.equal(a.data[((i * c + k) * h + y) * w + x], v, `${name}: Captum gave channel ${k} of pixel (${i},${y},${x}) another value`);
    out[(i * h + y) * w + x] = v;
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, keep: (j: number) => boolean = () => true): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let j = 0; j < a.length; j++) if (keep(j)) m = Math.max(m, Math.abs(a[j] - b[j]));
  return m;
}

const images = toNhwc(npy('images.npy'));
const [N, H, W] = images.shape;
const torchProbs = npy('probs.npy').data;
let model: Predictor | undefined;
const getModel = async (): Promise<Predictor> => (model ??= await loadModel(path.join(DIR, 'model.onnx'), { layout: 'NCHW', threads: 1 }));

/**
 * Both sides run the CNN in float32 (torch on CPU, ONNX Runtime): one probability agrees to a
 * few float32 ulps (~1e-7 at 0.8); an attribution is a difference of two probabilities, then a
 * mean of up to 25 of them, so its error is a few times that. 1e-6 is ~10 ulps of the
 * probabilities, 2e5 times below the maps' scale (0.07 to 0.5): a wrong window, stride,
 * average or sign moves values by 1e-3 or more.
 */
const TOL = 1e-6;

test('the ONNX export on occmap gives torch\'s probabilities', async (t) => {
  const m = await getModel();
  assert.deepEqual([m.inputShape, m.numClasses], [[H, W, 4], 2]);
  const p = await m.predict(images.data, N);
  const d = maxAbsDiff(p, torchProbs);
  t.diagnostic(`max |occmap - torch| of the probabilities ${d.toExponential(2)}`);
  assert.ok(d <= TOL, `max |occmap - torch| of the probabilities ${d}`);
});

const divides = (c: Case): boolean => (H - c.patch[0]) % c.stride === 0 && (W - c.patch[1]) % c.stride === 0;

for (const c of meta.cases.filter(divides)) {
  test(`captum preset = Captum ${meta.captum.version}: ${c.name} (window ${c.patch.join('x')}, stride ${c.stride}, target ${c.target})`, async (t) => {
    const captum = perPixel(npy(`${c.name}.npy`), c.name);
    const targets = Array.from(npy(`${c.name}.targets.npy`).data);
    const occ = new Occlusion(await getModel(), { preset: 'captum', patch: c.patch, stride: c.stride });
    const a = await occ.attribute(images, { target: c.target });
    assert.deepEqual(a.shape, [N, H, W]);
    assert.deepEqual(Array.from(a.targets ?? []), targets, 'the classes explained');
    const scale = maxAbsDiff(captum, new Float64Array(captum.length));
    assert.ok(scale > 0.05, `${c.name}: Captum's map is nearly flat (${scale}): the comparison would prove little`);
    const d = maxAbsDiff(a.data, captum);
    t.diagnostic(`max |occmap - Captum| ${d.toExponential(2)}, Captum's max |value| ${scale.toPrecision(3)}`);
    assert.ok(d <= TOL, `${c.name}: max |occmap - Captum| = ${d} (Captum's max |value| ${scale})`);
  });
}

// A stride that does not divide (size - window), here 2 on 21 - 2 = 19: Captum places
// ceil(19 / 2) + 1 = 11 windows per axis, the last one at 20 cut to 1 pixel. occmap's geometry
// has only full windows (0, 2, ..., 18), which leave the last row and column uncovered, so the
// captum preset refuses the stride (and without the preset the geometry check refuses the
// uncovered pixels): no map that differs from Captum's, but no map either.
for (const c of meta.cases.filter((k) => !divides(k))) {
  test(`captum preset refuses ${c.name}, where Captum cuts its last window at the border`, async () => {
    await assert.rejects(
      new Occlusion(await getModel(), { preset: 'captum', patch: c.patch, stride: c.stride }).attribute(images, { target: c.target }),
      /does not divide .*Captum would add a last window cut off at the border/,
    );
  });
  test(`captum preset = Captum ${meta.captum.version}: ${c.name} (window ${c.patch.join('x')}, stride ${c.stride}, cut-off border windows)`, { todo: 'occmap has no window cut off at the border: refused (see the test above)' }, async () => {
    const a = await new Occlusion(await getModel(), { preset: 'captum', patch: c.patch, stride: c.stride }).attribute(images, { target: c.target });
    assert.ok(maxAbsDiff(a.data, perPixel(npy(`${c.name}.npy`), c.name)) <= TOL);
  });
}

test.after(async () => {
  await model?.dispose();
});
