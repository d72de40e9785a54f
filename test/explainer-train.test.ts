import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initTf, tf } from '../src/runtime/tfjs.js';
import { buildAutoencoder, parameterCounts } from '../src/models/autoencoder.js';
import { hashModelDir, loadModelDir } from '../src/models/model-dir.js';
import { loadPredictor } from '../src/models/load.js';
import { verifyModelDir } from '../src/models/model-dir.js';
import { trainExplainer, bootstrapIndices, padEdge, gradientKernel, applyKernel, defaultInputSize, firstOutOfUnit } from '../src/explainer/train.js';
import { loadExplainer, conditionTargets, memberMeanStd, type ExplainerCard } from '../src/explainer/estimate.js';
import { leakedGroups } from '../src/data/split.js';
import { flagOf, OptionError, UserError } from '../src/util/errors.js';
import { logRestUnits, normalizeSeed, seedUnitsUnclipped } from '../src/occlusion/geometry.js';
import { Rng } from '../src/util/rng.js';
import { H, W, C, makeClassifier, makeMaps, writeMaps } from './explainer-fixtures.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'occmap-expl-'));
const N = 24;
const data = makeMaps(N, 5);
let clf = '';
let mapsLabel = '';
let mapsPred = '';
const quiet = { quiet: true, log: () => undefined, backend: 'wasm' as const };

before(async () => {
  await initTf('wasm');
  clf = await makeClassifier(path.join(tmp, 'clf'));
  mapsLabel = await writeMaps(path.join(tmp, 'maps-label.npz'), data, 'label');
  mapsPred = await writeMaps(path.join(tmp, 'maps-pred.npz'), data, 'predicted', hashModelDir(clf));
});

const ENCODER = ['conv1', 'conv2', 'conv3', 'conv4', 'conv5'];

test('frozen explainer: card, held-out split by object, encoder equal to the classifier, current ONNX export', async () => {
  const out = path.join(tmp, 'frozen');
  const r = await trainExplainer({ data: mapsLabel, out, classifier: clf, variant: 'frozen', epochs: 2, seed: 1, ...quiet });
  const card = r.card as ExplainerCard & Record<string, any>;
  assert.equal(card.kind, 'explainer');
  assert.equal(card.variant, 'frozen');
  assert.equal(card.condition, 'none');
  assert.deepEqual(card.channels, [1]);
  assert.equal(card.inputSize, 12);
  assert.deepEqual(card.pad, { top: 2, bottom: 1, left: 2, right: 1 });
  assert.equal(card.numClasses, 2);
  assert.equal(card.data, path.resolve(mapsLabel));
  assert.equal(card.classifier, path.resolve(clf));
  assert.equal(card.classifierHash, hashModelDir(clf));
  assert.equal(card.split.by, 'group');
  assert.equal(card.split.seed, 1);
  assert.equal(card.split.valFraction, 0.25);
  // The held-out rows share no object with the training rows.
  const val = card.split.valIndices;
  assert.ok(val.length > 0 && val.length < N);
  const train = Array.from({ length: N }, (_, i) => i).filter((i) => !val.includes(i));
  assert.deepEqual(leakedGroups({ train, val, by: 'group' }, data.ids), []);
  assert.equal(card.split.valCount, val.length);
  // Frozen = the 5 encoder convs of a 1-channel input: 102,144 weights, as in the seed.
  assert.deepEqual(card.parameterCounts.nonTrainable, 102144);
  assert.equal(card.parameterCounts.total, card.parameterCounts.trainable + 102144);
  assert.deepEqual(card.encoderCopied, ENCODER);
  assert.equal(card.training.history.length, card.training.epochsRun);
  assert.ok(card.training.history.every((e: { loss: number; valLoss: number; samplesPerSec: number }) => e.loss > 0 && e.valLoss > 0 && e.samplesPerSec > 0));
  assert.equal(card.options.loss, 'mse');
  assert.equal(typeof card.hash, 'string');
  assert.equal(verifyModelDir(out).onnx, path.join(out, 'model.onnx'));
  assert.deepEqual(readdirSync(path.dirname(out)).filter((f) => f.startsWith('.frozen')), [], 'no staging directory left');

  // Trained, saved and reloaded: the encoder still holds the classifier's weights.
  const saved = await loadModelDir(out);
  const c = await loadModelDir(clf);
  for (const name of ENCODER) {
    const a = saved.getLayer(name).getWeights();
    const b = c.getLayer(name).getWeights();
    a.forEach((t, i) => assert.deepEqual(t.dataSync(), b[i].dataSync(), `${name} weight ${i}`));
  }
  // ... while the decoder moved away from its initial weights.
  const init = buildAutoencoder({ size: 12, frozen: true, seed: 1 * 7919 + 1 });
  assert.notDeepEqual(saved.getLayer('dec_conv1').getWeights()[0].dataSync(), init.getLayer('dec_conv1').getWeights()[0].dataSync());
  [saved, c, init].forEach((m) => m.dispose());
});

test('U-Net: 24x24 in and out, skip connections, frozen encoder count, conditioning input', async () => {
  await initTf('wasm');
  const u = buildAutoencoder({ unet: true, frozen: true });
  assert.deepEqual(u.outputs[0].shape, [null, 24, 24, 1]);
  assert.equal(parameterCounts(u).nonTrainable, 102144);
  assert.ok(u.getLayer('skip1') && u.getLayer('skip2'));
  assert.deepEqual(u.getLayer('skip1').outputShape, [null, 24, 24, 64]);
  assert.deepEqual(u.getLayer('skip2').outputShape, [null, 12, 12, 128]);
  const oh = buildAutoencoder({ unet: true, condition: 'onehot', channels: 2 });
  assert.equal(oh.inputs.length, 2);
  const y = oh.predict([tf.zeros([3, 24, 24, 2]), tf.cast(tf.oneHot(tf.tensor1d([0, 1, 1], "int32"), 2), "float32")]) as tf.Tensor;
  assert.deepEqual(y.shape, [3, 24, 24, 1]);
  assert.throws(() => buildAutoencoder({ unet: true, cut: 1 }), /no cuts/);
  [u, oh, y].forEach((m) => m.dispose());
});

test('conditioned U-Net on the predicted class: targets recomputed with the classifier; ONNX and tfjs estimates agree', async () => {
  const out = path.join(tmp, 'unet-oh');
  const r = await trainExplainer({ data: mapsPred, out, classifier: clf, variant: 'unet', freeze: true, condition: 'onehot', smooth: 3, epochs: 1, seed: 2, ...quiet });
  const card = r.card;
  assert.equal(card.conditionOn, 'predicted');
  // the frozen encoder plus the fixed 3x3 box filter before the sigmoid
  assert.equal((card.parameterCounts as { nonTrainable: number }).nonTrainable, 102144 + 9);
  assert.equal(card.classifierMatchesMaps, true);
  // valTargets = the classifier's argmax on the held-out rows.
  const p = await loadPredictor(clf, { engine: 'tfjs' });
  const val = card.split.valIndices;
  const item = H * W * C;
  const imgs = new Float32Array(val.length * item);
  val.forEach((row, k) => imgs.set(data.images.subarray(row * item, (row + 1) * item), k * item));
  const sel = new Float32Array(val.length * H * W);
  for (let q = 0; q < val.length * H * W; q++) sel[q] = imgs[q * C + 1];
  const probs = await p.predict(sel, val.length);
  p.dispose();
  assert.deepEqual(card.split.valTargets, val.map((_, k) => (probs[2 * k + 1] > probs[2 * k] ? 1 : 0)));

  const onnx = await loadExplainer(out, { engine: 'onnx', threads: 1 });
  const tfjs = await loadExplainer(out, { engine: 'tfjs' });
  assert.match(onnx.engine, /^onnxruntime \(1 thread\)$/);
  assert.match(tfjs.engine, /^tfjs-/);
  const labels = card.split.valTargets!;
  const a = await onnx.estimate(imgs, [val.length, H, W, C], labels);
  const b = await tfjs.estimate(imgs, [val.length, H, W, C], labels);
  assert.equal(a.maps.length, val.length * H * W);
  assert.equal(a.std, undefined);
  let maxDiff = 0;
  for (let i = 0; i < a.maps.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a.maps[i] - b.maps[i]));
  assert.ok(maxDiff < 1e-4, `max |onnx - tfjs| = ${maxDiff}`);
  // The label matters to a conditioned explainer, and is required.
  const flipped = await tfjs.estimate(imgs, [val.length, H, W, C], labels.map((l) => 1 - l));
  assert.notDeepEqual(flipped.maps, b.maps);
  await assert.rejects(tfjs.estimate(imgs, [val.length, H, W, C]), /conditioned/);
  onnx.dispose();
  tfjs.dispose();
});

test('ensemble K=2: members on bootstrap resamples, same held-out split, mean and per-pixel std', async () => {
  const out = path.join(tmp, 'ens');
  const r = await trainExplainer({ data: mapsLabel, out, channels: '1', variant: 'normal', ensemble: 2, epochs: 1, seed: 3, ...quiet });
  const card = r.card as ExplainerCard & Record<string, any>;
  assert.equal(card.ensemble, 2);
  assert.deepEqual(readdirSync(out).sort(), ['card.json', 'member-0', 'member-1']);
  assert.equal(r.results.length, 2);
  for (const res of r.results) assert.deepEqual(res.splitIndices.val, r.results[0].splitIndices.val);
  assert.notDeepEqual(r.results[0].splitIndices.train, r.results[1].splitIndices.train);
  for (const k of [0, 1]) assert.ok(verifyModelDir(path.join(out, `member-${k}`)).onnx);

  const e = await loadExplainer(out);
  assert.match(e.engine, /onnxruntime/);
  const n = 4;
  const imgs = data.images.slice(0, n * H * W * C);
  const { maps, std } = await e.estimate(imgs, [n, H, W, C]);
  assert.ok(std, 'an ensemble returns a std');
  assert.equal(std.length, n * H * W);
  assert.ok(std.some((v) => v > 0) && std.every((v) => v >= 0));
  // The mean and std are those of the members run one by one.
  const members = [];
  for (const k of [0, 1]) {
    const m = await loadExplainer(path.join(out, `member-${k}`), { engine: 'tfjs' });
    members.push((await m.estimate(imgs, [n, H, W, C])).maps);
    m.dispose();
  }
  const ref = memberMeanStd(members);
  for (let i = 0; i < maps.length; i++) {
    assert.ok(Math.abs(maps[i] - ref.mean[i]) < 1e-4);
    assert.ok(Math.abs(std[i] - ref.std[i]) < 1e-4);
  }
  e.dispose();
});

test('ensemble without bootstrap: members see the whole training part, differ by seed', async () => {
  const r = await trainExplainer({ data: mapsLabel, out: path.join(tmp, 'ens-nb'), channels: '1', variant: 'normal', ensemble: 2, bootstrap: false, epochs: 1, seed: 3, ...quiet });
  assert.equal(r.card.bootstrap, 'none');
  assert.deepEqual(r.results[0].splitIndices.train, r.results[1].splitIndices.train);
  assert.notEqual(r.results[0].history[0].loss, r.results[1].history[0].loss);
});

test('bad requests: frozen without a classifier, data without maps, predicted targets without a classifier', async () => {
  await assert.rejects(trainExplainer({ data: mapsLabel, out: path.join(tmp, 'x1'), variant: 'frozen', ...quiet }),
    // the library names its fields; the CLI words the same error as flags
    (e: Error) => e instanceof OptionError && /^variant frozen .* give classifier/.test(e.message) && /^--variant frozen .* give --classifier/.test(e.worded(flagOf)),
  );
  const noMaps = path.join(tmp, 'nomaps.npz');
  const { writeDataset } = await import('../src/data/dataset.js');
  await writeDataset(noMaps, { images: data.images, shape: [N, H, W, C], labels: data.labels, meta: {} });
  await assert.rejects(trainExplainer({ data: noMaps, out: path.join(tmp, 'x2'), ...quiet }), (e: Error) => e instanceof UserError && e.message.startsWith(noMaps) && /no maps/.test(e.message));
  await assert.rejects(
    trainExplainer({ data: mapsPred, out: path.join(tmp, 'x3'), condition: 'onehot', channels: '1', ...quiet }),
    (e: Error) => e instanceof UserError && /predicted class/.test(e.message) && /needs the classifier/.test(e.message),
  );
  await assert.rejects(trainExplainer({ data: mapsLabel, out: path.join(tmp, 'x4'), variant: 'unet', cut: 1, ...quiet }), /cut applies to the seed autoencoder, not to variant unet/);
  for (const d of ['x1', 'x2', 'x3', 'x4']) assert.equal(existsSync(path.join(tmp, d)), false);
});

test('gradient loss: kernel gives [map, g*dx, g*dy] (zero beyond the edge); training saves the 1-channel model', async () => {
  // map [[1,2],[3,5]], g = 2: dx = 2*[[1,-2],[2,-5]], dy = 2*[[2,3],[-3,-5]]
  const y = applyKernel(Float32Array.of(1, 2, 3, 5), 1, 2, gradientKernel(2));
  assert.deepEqual(Array.from(y), [1, 2, 4, 2, -4, 6, 3, 4, -6, 5, -10, -10]);
  const out = path.join(tmp, 'grad');
  const r = await trainExplainer({ data: mapsLabel, out, channels: '1', variant: 'unet', gradWeight: 2, epochs: 1, seed: 4, ...quiet });
  assert.equal((r.card.options as { gradWeight: number }).gradWeight, 2);
  const e = await loadExplainer(out);
  const { maps } = await e.estimate(data.images.slice(0, 2 * H * W * C), [2, H, W, C]);
  assert.equal(maps.length, 2 * H * W);
  e.dispose();
  await assert.rejects(trainExplainer({ data: mapsLabel, out: path.join(tmp, 'x5'), channels: '1', gradWeight: 1, loss: 'bce', ...quiet }), /gradWeight needs loss mse/);
});

test('padEdge repeats the nearest map pixel into the padding', () => {
  // one 2x2 map [[1,2],[3,4]] padded top/left 1, bottom/right 0 -> 3x3
  const out = padEdge(Float32Array.of(1, 2, 3, 4), 1, 2, 2, { top: 1, bottom: 0, left: 1, right: 0 });
  assert.deepEqual(Array.from(out), [1, 1, 2, 1, 1, 2, 3, 3, 4]);
});

test('bootstrapIndices: whole groups with replacement, at least as many items, seeded', () => {
  const train = [0, 1, 2, 3, 4, 5];
  const groups = ['a', 'a', 'b', 'b', 'c', 'c'];
  const s1 = bootstrapIndices(train, new Rng(7), groups);
  assert.deepEqual(s1, bootstrapIndices(train, new Rng(7), groups));
  assert.ok(s1.length >= train.length);
  // Groups come whole: every drawn item's partner is drawn as often.
  const count = (i: number) => s1.filter((x) => x === i).length;
  for (const [i, j] of [[0, 1], [2, 3], [4, 5]]) assert.equal(count(i), count(j));
  const items = bootstrapIndices(train, new Rng(7));
  assert.equal(items.length, train.length);
  assert.ok(items.every((i) => train.includes(i)));
  assert.deepEqual(bootstrapIndices([], new Rng(1)), []);
});

test('conditionTargets, memberMeanStd, defaultInputSize, firstOutOfUnit: hand-computed cases', () => {
  const labels = Int32Array.of(0, 1, 1);
  const predicted = Int32Array.of(1, 1, 0);
  assert.deepEqual(conditionTargets('label', { labels, file: 'f' }), { targets: labels, source: 'label' });
  assert.deepEqual(conditionTargets('predicted', { labels, predicted, file: 'f' }), { targets: predicted, source: 'predicted' });
  assert.deepEqual(Array.from(conditionTargets(1, { labels, file: 'f' }).targets), [1, 1, 1]);
  assert.throws(() => conditionTargets('predicted', { labels, file: 'maps.npz' }), /^UserError: maps.npz: .*predicted/);
  assert.throws(() => conditionTargets('label', { file: 'maps.npz' }), /no labels/);
  // members [1, 3] and [3, 3]: mean [2, 3], population std [1, 0]
  const { mean, std } = memberMeanStd([Float32Array.of(1, 3), Float32Array.of(3, 3)]);
  assert.deepEqual(Array.from(mean), [2, 3]);
  assert.deepEqual(Array.from(std), [1, 0]);
  assert.equal(defaultInputSize(21, 21), 24);
  assert.equal(defaultInputSize(9, 9), 12);
  assert.equal(defaultInputSize(24, 20), 24);
  assert.equal(firstOutOfUnit(Float32Array.of(0, 1, 0.5)), -1);
  assert.equal(firstOutOfUnit(Float32Array.of(0, 1.5)), 1);
  assert.equal(firstOutOfUnit(Float32Array.of(NaN)), 0);
});

test('occmap train-explainer CLI: per-epoch lines, summary, card; bad option exits 2 with one line', async () => {
  const { spawnSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));
  const out = path.join(tmp, 'cli');
  let r = spawnSync(process.execPath, [bin, 'train-explainer', '--data', mapsLabel, '--classifier', clf, '--variant', 'unet', '--epochs', '2', '--quiet', '--out', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /epoch 1\/2 {2}loss [\d.]+ {2}val_loss [\d.]+\*? +[\d.]+ samples\/s/);
  assert.match(r.stdout, /unet explainer, val_loss [\d.]+ \(mse\) on \d+ held-out maps \(split by group\)/);
  assert.ok(existsSync(path.join(out, 'card.json')) && existsSync(path.join(out, 'model.onnx')));
  r = spawnSync(process.execPath, [bin, 'train-explainer', '--data', mapsLabel, '--variant', 'frozen', '--out', path.join(tmp, 'cli2')], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('occmap: '));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /--variant frozen .*--classifier/);
  assert.equal(existsSync(path.join(tmp, 'cli2')), false);
  r = spawnSync(process.execPath, [bin, 'train-explainer', '--help'], { encoding: 'utf8' });
  assert.match(r.stdout, /Examples:/);
});

/** The explainer in `out` gives the same maps, all in [0, 1], through ONNX Runtime and tfjs. */
async function assertOnnxEqualsTfjs(out: string): Promise<void> {
  const imgs = data.images.slice(0, 4 * H * W * C);
  const onnx = await loadExplainer(out, { engine: 'onnx', threads: 1 });
  const tfjs = await loadExplainer(out, { engine: 'tfjs' });
  const a = await onnx.estimate(imgs, [4, H, W, C]);
  const b = await tfjs.estimate(imgs, [4, H, W, C]);
  let maxDiff = 0;
  for (let i = 0; i < a.maps.length; i++) {
    assert.ok(a.maps[i] >= 0 && a.maps[i] <= 1, `estimate ${a.maps[i]} outside [0,1]`);
    maxDiff = Math.max(maxDiff, Math.abs(a.maps[i] - b.maps[i]));
  }
  assert.ok(maxDiff < 1e-4, `max |onnx - tfjs| = ${maxDiff}`);
  onnx.dispose();
  tfjs.dispose();
}

test('--target-units unclipped: trained on the z-score units before the clip, saved with a clip to [0,1]; ONNX = tfjs', async () => {
  // Raw maps whose seed normalisation clips (a deep dip): the fixture maps cubed.
  const raw = data.maps.map((v) => v ** 3);
  const seedMaps = new Float32Array(raw.length);
  for (let i = 0; i < N; i++) seedMaps.set(normalizeSeed(raw.subarray(i * H * W, (i + 1) * H * W)), i * H * W);
  const file = await writeMaps(path.join(tmp, 'maps-raw.npz'), { ...data, maps: seedMaps }, 'label', undefined, raw);
  const out = path.join(tmp, 'unclipped');
  const r = await trainExplainer({ data: file, out, channels: '1', variant: 'unet', targetUnits: 'unclipped', epochs: 1, seed: 6, ...quiet });
  assert.equal((r.card.options as { targetUnits: string }).targetUnits, 'unclipped');
  const model = await loadModelDir(out);
  assert.equal(model.layers[model.layers.length - 1].name, 'map_clip');
  model.dispose();
  await assertOnnxEqualsTfjs(out);
  // Maps without maps_raw cannot give the unclipped units.
  await assert.rejects(trainExplainer({ data: mapsLabel, out: path.join(tmp, 'x6'), channels: '1', targetUnits: 'unclipped', ...quiet }), /has no maps_raw/);
});

test('--target-units log-rest: trained on log(cover - raw map), saved with its exact inverse to seed units; ONNX = tfjs', async () => {
  // Raw maps of a confident classifier: what the patches take away spans 1e-9 .. 9.
  const raw = Float32Array.from(data.maps, (v) => 9 - 9 * Math.exp(-20 * v));
  const seedMaps = new Float32Array(raw.length);
  for (let i = 0; i < N; i++) seedMaps.set(normalizeSeed(raw.subarray(i * H * W, (i + 1) * H * W)), i * H * W);
  const seedData = { ...data, maps: seedMaps };
  // The fixture's pad 1 covers edge pixels by fewer positions: the inverse would not hold.
  const pad1 = await writeMaps(path.join(tmp, 'maps-lr1.npz'), seedData, 'label', undefined, raw);
  await assert.rejects(trainExplainer({ data: pad1, out: path.join(tmp, 'lr1'), channels: '1', targetUnits: 'log-rest', ...quiet }), /maps-lr1\.npz.*same number of patch positions/);
  const drop = await writeMaps(path.join(tmp, 'maps-lrd.npz'), seedData, 'label', undefined, raw, { pad: 2, score: 'drop' });
  await assert.rejects(trainExplainer({ data: drop, out: path.join(tmp, 'lrd'), channels: '1', targetUnits: 'log-rest', ...quiet }), /maps-lrd\.npz.*score 'prob'/);

  const file = await writeMaps(path.join(tmp, 'maps-lr.npz'), seedData, 'label', undefined, raw, { pad: 2 });
  const out = path.join(tmp, 'log-rest');
  const r = await trainExplainer({ data: file, out, channels: '1', variant: 'unet', targetUnits: 'log-rest', epochs: 1, seed: 6, ...quiet });
  assert.equal((r.card.options as { targetUnits: string }).targetUnits, 'log-rest');
  const model = await loadModelDir(out);
  const head = model.layers[model.layers.length - 1];
  assert.equal(head.name, 'map_from_log_rest');
  // The head alone is the inverse of the target units: the log-rest maps, padded as the
  // explainer's output is, come out as the seed maps.
  const [size, pad] = [r.card.inputSize as number, r.card.pad as { top: number; left: number }];
  const t = new Float32Array(4 * size * size);
  for (let i = 0; i < 4; i++) {
    const lr = logRestUnits(raw.subarray(i * H * W, (i + 1) * H * W), 9);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) t[(i * size + y + pad.top) * size + x + pad.left] = lr[y * W + x];
  }
  const back = tf.tidy(() => (head.apply(tf.tensor4d(t, [4, size, size, 1])) as tf.Tensor).dataSync());
  for (let i = 0; i < 4; i++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const got = back[(i * size + y + pad.top) * size + x + pad.left];
        assert.ok(Math.abs(got - seedMaps[(i * H + y) * W + x]) < 1e-4, `map ${i} (${y},${x}): ${got} vs ${seedMaps[(i * H + y) * W + x]}`);
      }
    }
  }
  model.dispose();
  await assertOnnxEqualsTfjs(out);
});

test('seedUnitsUnclipped: clipped to [0,1] it is the seed normalisation; beyond it the ranking survives', () => {
  const map = Float64Array.from({ length: 49 }, (_, i) => (i === 24 ? -9 : i === 23 ? -5 : (i % 7) * 0.1));
  const u = seedUnitsUnclipped(map);
  const s = normalizeSeed(map);
  for (let i = 0; i < map.length; i++) assert.equal(Math.max(0, Math.min(1, u[i])), s[i]);
  assert.equal(s[24], s[23]);
  assert.ok(u[24] < u[23] && u[23] < 0);
  assert.deepEqual(Array.from(seedUnitsUnclipped([2, 2, 2])), [0.5, 0.5, 0.5]);
});

test('subset + evaluate: one held-out definition (the training side is the rows trained on: no held-out object shared, the mean map from those rows)', async () => {
  const out = path.join(tmp, 'subset');
  const r = await trainExplainer({ data: mapsLabel, out, channels: '1', variant: 'normal', subset: 16, epochs: 1, seed: 7, ...quiet });
  const split = r.card.split as ExplainerCard['split'] & { trainIndices: number[]; valIds: string[]; subset: number };
  assert.equal(split.subset, 16);
  assert.equal(split.trainIndices.length + split.valIndices.length, 16);
  assert.equal(split.trainIndices.length, split.trainCount);
  assert.deepEqual(r.holdout.ids, split.valIds);
  const { readDataset } = await import('../src/data/dataset.js');
  const { evaluateExplainer } = await import('../src/explainer/evaluate.js');
  const ds = await readDataset(mapsLabel);
  const ex = await loadExplainer(out);
  try {
    const e = await evaluateExplainer({ explainer: ex, data: ds, dataFile: mapsLabel, baselines: true, faithfulness: false });
    // before: every row outside the held-out split (24 - val), sharing objects with the held-out rows
    assert.equal(e.trainingMaps, split.trainIndices.length);
    assert.equal(e.sharedObjects, 0);
    assert.ok(!e.notes.some((n) => /random subset/.test(n)));
  } finally {
    ex.dispose();
  }
});

test('conditioned explainers trained with a classifier carry estimate.onnx: one call per estimate == classifier, argmax, explainer', async () => {
  const item = H * W * C;
  const n = 10;
  const imgs = data.images.subarray(0, n * item);
  const p = await loadPredictor(clf); // the fixture classifier has no model.onnx: tfjs
  const sel = new Float32Array(n * H * W);
  for (let q = 0; q < n * H * W; q++) sel[q] = imgs[q * C + 1];
  const probs = await p.predict(sel, n);
  const predicted = Array.from({ length: n }, (_, i) => (probs[2 * i + 1] > probs[2 * i] ? 1 : 0));
  for (const [name, extra] of [['fused-oh', { condition: 'onehot' as const }], ['fused-num-ens', { condition: 'numeral' as const, ensemble: 2 }]] as const) {
    const out = path.join(tmp, name);
    const r = await trainExplainer({ data: mapsPred, out, classifier: clf, variant: 'unet', epochs: 1, seed: 4, ...extra, ...quiet });
    assert.deepEqual(r.card.fusedEstimate, { file: 'estimate.onnx', classifierHash: p.hash });
    assert.ok(existsSync(path.join(out, 'estimate.onnx')));
    const e = await loadExplainer(out, { engine: 'onnx', threads: 1 });
    try {
      assert.equal(e.fusedClassifierHash, p.hash);
      const two = await e.estimate(imgs, [n, H, W, C], predicted);
      const one = await e.estimate(imgs, [n, H, W, C]);
      assert.ok(one.probs, 'the one-call path returns the probabilities');
      for (let i = 0; i < probs.length; i++) assert.ok(Math.abs(one.probs![i] - probs[i]) < 1e-5);
      for (let i = 0; i < two.maps.length; i++) assert.ok(Math.abs(one.maps[i] - two.maps[i]) < 1e-5, `${name}: map value ${i}`);
      if ('ensemble' in extra) for (let i = 0; i < two.std!.length; i++) assert.ok(Math.abs(one.std![i] - two.std![i]) < 1e-5);
    } finally {
      e.dispose();
    }
    // tfjs engine: no fused graph, a label is still required.
    const t = await loadExplainer(out, { engine: 'tfjs' });
    assert.equal(t.fusedClassifierHash, undefined);
    await assert.rejects(t.estimate(imgs, [n, H, W, C]), /needs the class each map is drawn for/);
    t.dispose();
    // estimate.onnx is one of the hashed files: an edited copy is refused at load.
    assert.match((r.card as { files?: Record<string, string> }).files?.['estimate.onnx'] ?? '', /^[0-9a-f]{64}$/);
    const f = path.join(out, 'estimate.onnx');
    const bytes = readFileSync(f);
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(f, bytes);
    await assert.rejects(loadExplainer(out, { engine: 'onnx', threads: 1 }), /estimate\.onnx/);
  }
  p.dispose();
  // Unconditioned explainers stay one call and get no fused graph.
  const plain = await trainExplainer({ data: mapsPred, out: path.join(tmp, 'fused-none'), classifier: clf, variant: 'unet', epochs: 1, seed: 4, ...quiet });
  assert.equal(plain.card.fusedEstimate, undefined);
  assert.ok(!existsSync(path.join(tmp, 'fused-none', 'estimate.onnx')));
});
