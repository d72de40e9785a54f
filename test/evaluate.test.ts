import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readDataset, writeDataset, type Dataset } from '../src/data/dataset.js';
import { saveModelDir } from '../src/models/model-dir.js';
import { loadPredictor } from '../src/models/load.js';
import { exactMaps, SEED_PARAMS } from '../src/occlusion/exact.js';
import { tf, tfl, initTf } from '../src/runtime/tfjs.js';
import { formatReport } from '../src/cli/evaluate.js';
import type { Explainer } from '../src/explainer/estimate.js';
import type { Predictor } from '../src/models/predictor.js';
import { normalizeSeed } from '../src/occlusion/geometry.js';
import { spearman } from '../src/metrics/maps.js';
import { ssimWindow } from '../src/metrics/compare.js';
import {
  evaluateExplainer,
  importanceOf,
  absChannel,
  saliencyAsMap,
  meanMap,
  snrChannelOf,
  stdErrorCorrelation,
  type EvaluableExplainer,
  type EvaluationResult,
  type MethodName,
} from '../src/explainer/evaluate.js';
import { Rng } from '../src/util/rng.js';

const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) < eps, `${a} != ${b}`);
const H = 8;
const W = 8;
const HW = H * W;
const C = 2; // channel 0: the item index (lets fakes find their item), channel 1: SNR difference

/**
 * 10 stamps of 5 objects (2 each), labels alternating. The SNR channel has a bright blob; the
 * exact prob map is low around it (important = low) plus noise, seed-normalised.
 */
function makeData(score: 'prob' | 'drop' = 'prob', normalize: 'seed' | 'none' = 'seed'): Dataset {
  const n = 10;
  const rng = new Rng(7);
  const images = new Float32Array(n * HW * C);
  const maps = new Float32Array(n * HW);
  for (let i = 0; i < n; i++) {
    const cy = 2 + rng.int(4);
    const cx = 2 + rng.int(4);
    const raw = new Float64Array(HW);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const p = y * W + x;
        const blob = Math.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 2);
        images[(i * HW + p) * C] = i;
        images[(i * HW + p) * C + 1] = (rng.next() < 0.5 ? -1 : 1) * (5 * blob + 0.3 * rng.next());
        const importance = blob + 0.2 * rng.next();
        raw[p] = score === 'prob' ? 1 - importance : importance;
      }
    }
    maps.set(normalize === 'seed' ? normalizeSeed(raw) : raw.map((v) => 3 * v + 1), i * HW);
  }
  return {
    images,
    shape: [n, H, W, C],
    labels: Int32Array.from({ length: n }, (_, i) => i % 2),
    maps,
    ids: Array.from({ length: n }, (_, i) => `obj${Math.floor(i / 2)}`),
    meta: { channels: ['index', 'snr_difference'], occlusion: { score, normalize, target: 'predicted' } },
  };
}

/** Shaped like estimate.ts's ExplainerCard (kept structural so evaluate needs no engine). */
type ExplainerCard = EvaluableExplainer['card'] & { [k: string]: unknown };

function card(over: Partial<ExplainerCard> = {}): ExplainerCard {
  return {
    kind: 'explainer',
    variant: 'normal',
    condition: 'none',
    channels: [1],
    inputSize: 8,
    numClasses: 2,
    split: { by: 'group', seed: 1, valFraction: 0.4, valIndices: [7, 2, 3, 6] },
    data: 'maps.npz',
    ...over,
  };
}

/** A fake explainer: `fn(item index, label)` gives its map; records what it was asked. */
function fake(
  c: ExplainerCard,
  fn: (i: number, label?: number) => ArrayLike<number>,
  stdFn?: (i: number) => ArrayLike<number>,
): EvaluableExplainer & { seen: number[]; labelsSeen: (number | undefined)[] } {
  const seen: number[] = [];
  const labelsSeen: (number | undefined)[] = [];
  return {
    card: c,
    seen,
    labelsSeen,
    async estimate(images: Float32Array, shape: [number, number, number, number], labels?: ArrayLike<number>) {
      const [n, h, w, ch] = shape;
      assert.equal(ch, C);
      const maps = new Float32Array(n * h * w);
      const std = stdFn ? new Float32Array(n * h * w) : undefined;
      for (let k = 0; k < n; k++) {
        const i = images[k * h * w * ch];
        seen.push(i);
        labelsSeen.push(labels?.[k]);
        maps.set(fn(i, labels?.[k]), k * h * w);
        std?.set(stdFn!(i), k * h * w);
      }
      return { maps, std };
    },
  };
}

const mapOf = (d: Dataset, i: number) => d.maps!.subarray(i * HW, (i + 1) * HW);

/**
 * Two classes; p1 = clamp(sum of the channel it reads, 0, 1). Deleting pixels lowers p1 by
 * their values: deletion / insertion curves can be computed by hand.
 */
function sumClassifier(channel = 1): Predictor & { calls: number } {
  const p = {
    inputShape: [H, W, 1] as [number, number, number],
    numClasses: 2,
    channels: [channel],
    engine: 'sum-test',
    hash: 'sum',
    calls: 0,
    async predict(images: Float32Array, n: number) {
      p.calls++;
      const out = new Float32Array(n * 2);
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let q = 0; q < HW; q++) s += images[i * HW + q];
        const p1 = Math.min(1, Math.max(0, s));
        out[i * 2] = 1 - p1;
        out[i * 2 + 1] = p1;
      }
      return out;
    },
    dispose() {},
  };
  return p;
}

function method(r: EvaluationResult, name: MethodName) {
  const m = r.methods.find((x) => x.name === name);
  assert.ok(m, `no ${name} row`);
  return m;
}

test('pure helpers: importance orientation, |SNR| as a map, mean map, SNR channel, SSIM window', () => {
  assert.deepEqual(Array.from(importanceOf([0.2, 0.9], 'prob')), [-0.2, -0.9]);
  assert.deepEqual(Array.from(importanceOf([0.2, 0.9], 'drop')), [0.2, 0.9]);
  // |SNR| [0, 1, 2, 3]: mean 1.5, std sqrt(1.25). prob: z of -s = [1.342, 0.447, -0.447, -1.342] -> clip -> (z+1)/2.
  const z = [1.5, 0.5, -0.5, -1.5].map((v) => v / Math.sqrt(1.25));
  const expect = z.map((v) => (Math.max(-1, Math.min(1, v)) + 1) / 2);
  Array.from(saliencyAsMap([0, 1, 2, 3], 'prob')).forEach((v, i) => close(v, expect[i]));
  Array.from(saliencyAsMap([0, 1, 2, 3], 'drop')).forEach((v, i) => close(v, expect[3 - i]));
  assert.deepEqual(Array.from(absChannel([3, 9, -1, 9, 0.5, 9, 2, 9, 10, 9], 5, 2, 0, 'median')), [1, 3, 1.5, 0, 8]); // median 2
  assert.deepEqual(Array.from(absChannel([1, 2, 3, 4], 4, 1, 0, 'median')), [1.5, 0.5, 0.5, 1.5]); // median 2.5
  assert.deepEqual(Array.from(absChannel([1, -2], 2, 1, 0)), [1, 2]);
  assert.deepEqual(Array.from(meanMap(Float32Array.from([1, 2, 3, 4, 5, 6]), 2, [0, 2])), [3, 4]);
  assert.equal(snrChannelOf(4, ['template', 'science', 'difference', 'snr_difference']), 3);
  assert.equal(snrChannelOf(4, undefined, [2]), 2);
  assert.equal(snrChannelOf(4, undefined, undefined, [1]), 1);
  assert.equal(snrChannelOf(1), 0);
  assert.equal(snrChannelOf(3), undefined);
  assert.equal(ssimWindow(21, 21), 7);
  assert.equal(ssimWindow(6, 8), 5);
});

test('an explainer returning the exact maps: MSE 0, SSIM/Pearson/Spearman/IoU 1, same AUCs as the exact map', async () => {
  const d = makeData();
  const ex = fake(card(), (i) => mapOf(d, i));
  const clf = sumClassifier();
  const r = await evaluateExplainer({ explainer: ex, data: d, classifier: clf, steps: 4 });
  const e = method(r, 'explainer');
  for (const k of ['mse', 'mae'] as const) assert.deepEqual(e.perMap[k], [0, 0, 0, 0]);
  for (const k of ['ssim', 'pearson', 'spearman', 'iou'] as const) e.perMap[k]!.forEach((v) => close(v, 1));
  e.perMap.deletionGap!.forEach((v) => close(v, 0));
  e.perMap.insertionGap!.forEach((v) => close(v, 0));
  assert.deepEqual(e.perMap.deletion, r.exact!.perMap.deletion);
  close(e.summary.mse!.std, 0);
  assert.equal(e.summary.spearman!.n, 4);
  // held out: the card's valIndices, sorted; the explainer saw only those
  assert.deepEqual(r.indices, [2, 3, 6, 7]);
  assert.deepEqual(ex.seen, [2, 3, 6, 7]);
  assert.equal(r.objects, 2);
  assert.equal(r.trainingMaps, 6);
  assert.deepEqual(r.labels, [0, 1, 0, 1]);
  // per class: label 0 = items 2, 6; label 1 = items 3, 7
  assert.deepEqual(Object.keys(e.byClass), ['0', '1']);
  assert.equal(e.byClass['0'].mse!.n, 2);
  assert.equal(e.byClass['1'].spearman!.n, 2);
  const mm = method(r, 'meanMap');
  close(mm.byClass['1'].mse!.mean, (mm.perMap.mse![1] + mm.perMap.mse![3]) / 2);
  assert.equal(r.uncertainty, undefined);
  assert.equal(r.snrChannel, 1);
});

test('an explainer returning the mean training map scores exactly as the mean-map baseline', async () => {
  const d = makeData();
  const train = [0, 1, 4, 5, 8, 9];
  const mean = meanMap(d.maps!, HW, train);
  const r = await evaluateExplainer({ explainer: fake(card(), () => Float32Array.from(mean)), data: d, classifier: sumClassifier(), steps: 4 });
  const e = method(r, 'explainer');
  const m = method(r, 'meanMap');
  // (the fake returns float32, the baseline is float64: equal to rounding)
  for (const k of ['mse', 'mae', 'ssim', 'pearson', 'spearman', 'iou', 'deletion', 'insertion'] as const) {
    e.perMap[k]!.forEach((v, i) => close(v, m.perMap[k]![i], 1e-6));
  }
  // the mean map is the same for every stamp: worse than exact on these blob maps
  assert.ok(m.summary.spearman!.mean < 0.9);
});

test('--split all evaluates every map; a held-out index outside the data is an error naming the file', async () => {
  const d = makeData();
  const ex = fake(card(), (i) => mapOf(d, i));
  const r = await evaluateExplainer({ explainer: ex, data: d, split: 'all', faithfulness: false });
  assert.deepEqual(r.indices, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(r.objects, 5);
  assert.equal(r.exact, undefined);
  assert.ok(r.notes.every((n) => !/no classifier/.test(n)), 'faithfulness off: no complaint about the classifier');
  const lim = await evaluateExplainer({ explainer: ex, data: d, limit: 3, faithfulness: false });
  assert.deepEqual(lim.indices, [2, 3, 6]);
  const bad = card({ split: { by: 'group', seed: 1, valFraction: 0.4, valIndices: [2, 10] } });
  await assert.rejects(evaluateExplainer({ explainer: fake(bad, (i) => mapOf(d, i)), data: d, dataFile: 'x/maps.npz' }), /^UserError: x\/maps\.npz: .*held-out index 10 is outside/);
  const { maps: _drop, ...noMaps } = d;
  await assert.rejects(evaluateExplainer({ explainer: ex, data: noMaps as Dataset, dataFile: 'x/clf-data.npz' }), /x\/clf-data\.npz: has no maps/);
});

test('|SNR| baseline orientation: positively correlated with prob maps (low = important) and with drop maps', async () => {
  for (const score of ['prob', 'drop'] as const) {
    const d = makeData(score);
    const r = await evaluateExplainer({ explainer: fake(card(), (i) => mapOf(d, i)), data: d, faithfulness: false });
    assert.equal(r.score, score);
    const s = method(r, 'snrSaliency');
    assert.ok(s.summary.spearman!.mean > 0.5, `${score}: spearman ${s.summary.spearman!.mean}`);
    assert.ok(s.summary.pearson!.mean > 0.5, `${score}: pearson ${s.summary.pearson!.mean}`);
    assert.ok(s.summary.iou!.mean > 0.3, `${score}: iou ${s.summary.iou!.mean}`);
    // The estimated map in the data's orientation must agree; read the wrong way round, it fails.
    const wrong = await evaluateExplainer({ explainer: fake(card(), (i) => mapOf(d, i)), data: d, faithfulness: false, score: score === 'prob' ? 'drop' : 'prob' });
    assert.ok(method(wrong, 'snrSaliency').summary.spearman!.mean < -0.5);
    assert.ok(method(wrong, 'snrSaliency').summary.iou!.mean < 0.1);
    assert.match(wrong.notes.join('\n'), /were made with score/);
  }
});

test('deletion / insertion by hand: one bright pixel, found first or last', async () => {
  // One bright SNR pixel (value 1) at q; the classifier reads channel 1 only (channel 0
  // holds 5: were it read, p1 would saturate and every curve would be flat at 1).
  const q = 27;
  const images = new Float32Array(2 * HW * C);
  for (let p = 0; p < 2 * HW; p++) images[p * C] = 5;
  images[q * C + 1] = 1;
  images[(HW + q) * C + 1] = 1;
  // exact prob map: q lowest (most important), the rest a gradient so no ties decide the IoU
  const exact = Float32Array.from({ length: 2 * HW }, (_, p) => 0.5 + (p % HW) / 200);
  exact[q] = 0;
  exact[HW + q] = 0;
  const d: Dataset = { images, shape: [2, H, W, C], labels: Int32Array.from([1, 1]), maps: exact, meta: { occlusion: { score: 'prob', normalize: 'seed' } } };
  const c = card({ split: { by: 'item', seed: 1, valFraction: 0.5, valIndices: [0] } });
  // steps 4: k = 0, 16, 32, 48, 64 pixels removed / inserted.
  const right = await evaluateExplainer({ explainer: fake(c, () => exact.subarray(0, HW)), data: d, classifier: sumClassifier(), steps: 4, baselines: false });
  close(right.exact!.perMap.deletion![0], (1 + 0) / 2 / 4); // curve 1,0,0,0,0
  close(right.exact!.perMap.insertion![0], (0.5 + 1 + 1 + 1) / 4); // curve 0,1,1,1,1
  assert.deepEqual(right.targets, [1]);
  // A map with q as its HIGHEST value says q matters least for a prob map: q goes last.
  const flipped = Float32Array.from(exact.subarray(0, HW), (v) => 0.8 - v);
  const wrong = await evaluateExplainer({ explainer: fake(c, () => flipped), data: d, classifier: sumClassifier(), steps: 4, baselines: false });
  const e = method(wrong, 'explainer');
  close(e.perMap.deletion![0], (1 + 1 + 1 + 0.5) / 4); // 1,1,1,1,0
  close(e.perMap.insertion![0], 0.5 / 4); // 0,0,0,0,1
  close(e.perMap.deletionGap![0], 0.875 - 0.125);
  close(e.perMap.iou![0], 0); // top 6 pixels: exact's q, 0..4; the flipped map's 63..58
});

test('faithfulness needs a classifier: skipped with a note', async () => {
  const d = makeData();
  const r = await evaluateExplainer({ explainer: fake(card(), (i) => mapOf(d, i)), data: d });
  assert.equal(r.exact, undefined);
  assert.equal(method(r, 'explainer').perMap.deletion, undefined);
  assert.match(r.notes.join('\n'), /no classifier/);
});

test('maps not seed-normalised: both maps seed-normalised before MSE, and the output says so', async () => {
  const raw = makeData('prob', 'none');
  // An affine copy of the exact map: identical after seed normalisation.
  const affine = (i: number) => Float32Array.from(mapOf(raw, i), (v) => 0.5 * v + 2);
  const r = await evaluateExplainer({ explainer: fake(card(), affine), data: raw, faithfulness: false });
  method(r, 'explainer').perMap.mse!.forEach((v) => close(v, 0, 1e-10));
  assert.match(r.normalisation.comparison, /seed-normalised here/);
  assert.match(r.notes.join('\n'), /seed-normalised here/);
  // On seed-normalised data the estimate is taken as it is: a scale error counts.
  const seed = makeData('prob', 'seed');
  const r2 = await evaluateExplainer({ explainer: fake(card(), (i) => Float32Array.from(mapOf(seed, i), (v) => 0.5 * v + 0.2)), data: seed, faithfulness: false });
  assert.ok(method(r2, 'explainer').summary.mse!.mean > 0.01);
  close(method(r2, 'explainer').summary.spearman!.mean, 1);
});

test('ensemble: std equal to the actual |error| gives rank correlation 1, per map and pooled', async () => {
  const d = makeData();
  const rng = new Rng(3);
  const noise = new Map<number, Float32Array>();
  const noiseOf = (i: number) => {
    if (!noise.has(i)) noise.set(i, Float32Array.from({ length: HW }, () => rng.normal() * 0.1));
    return noise.get(i)!;
  };
  const est = (i: number) => Float32Array.from(mapOf(d, i), (v, p) => v + noiseOf(i)[p]);
  const std = (i: number) => Float32Array.from(noiseOf(i), Math.abs);
  const r = await evaluateExplainer({ explainer: fake(card({ ensemble: 3 }), est, std), data: d, faithfulness: false });
  assert.ok(r.uncertainty);
  r.uncertainty.perMap.forEach((v) => close(v, 1, 1e-6));
  close(r.uncertainty.pooled, 1, 1e-6);
  close(r.uncertainty.summary.mean, 1, 1e-6);
  assert.equal(r.uncertainty.byClass['0'].n, 2);
  // unrelated std: near 0, not 1
  const r2 = await evaluateExplainer({ explainer: fake(card({ ensemble: 3 }), est, () => Float32Array.from({ length: HW }, () => rng.next())), data: d, faithfulness: false });
  assert.ok(Math.abs(r2.uncertainty!.pooled) < 0.3);
});

test('stdErrorCorrelation by hand', () => {
  // map 0: |err| = [0.1, 0.3, 0.2], std ranks agree -> 1; map 1: |err| = [1, 0, 2], std reversed order -> -1
  const exact = [0, 0, 0, 0, 0, 0];
  const est = [0.1, -0.3, 0.2, 1, 0, -2];
  const std = [1, 3, 2, 5, 6, 4];
  const r = stdErrorCorrelation(std, est, exact, 2, 3);
  close(r.perMap[0], 1);
  close(r.perMap[1], -1);
  close(r.pooled, spearman(std, est.map(Math.abs)));
});

test('conditioned explainers get the class training used: labels, the card\'s held-out classes, or predictions', async () => {
  const d = makeData();
  // conditionOn label: the data labels
  const byLabel = fake(card({ condition: 'onehot', conditionOn: 'label' }), (i) => mapOf(d, i));
  const r = await evaluateExplainer({ explainer: byLabel, data: d, faithfulness: false });
  assert.deepEqual(byLabel.labelsSeen, [0, 1, 0, 1]);
  assert.equal(r.conditionLabels, 'label');
  // conditionOn predicted: the card's classes for its held-out rows (valIndices order), no classifier needed
  const split = { by: 'group' as const, seed: 1, valFraction: 0.4, valIndices: [7, 2, 3, 6], valTargets: [1, 1, 0, 0] };
  const fromCard = fake(card({ condition: 'numeral', conditionOn: 'predicted', split }), (i) => mapOf(d, i));
  const r2 = await evaluateExplainer({ explainer: fromCard, data: d, faithfulness: false });
  assert.equal(r2.conditionLabels, 'card');
  assert.deepEqual(fromCard.labelsSeen, [1, 0, 0, 1]); // rows 2, 3, 6, 7
  // --split all: rows without a recorded class need the classifier's predictions
  await assert.rejects(
    evaluateExplainer({ explainer: fake(card({ condition: 'numeral', conditionOn: 'predicted', split }), (i) => mapOf(d, i)), data: d, split: 'all', dataFile: 'm.npz' }),
    /^UserError: m\.npz: the explainer is conditioned on the classifier's predicted class/,
  );
  const withClf = fake(card({ condition: 'numeral', conditionOn: 'predicted', split }), (i) => mapOf(d, i));
  const r3 = await evaluateExplainer({ explainer: withClf, data: d, split: 'all', classifier: sumClassifier(), steps: 2 });
  assert.equal(r3.conditionLabels, 'predicted');
  assert.deepEqual(withClf.labelsSeen, r3.targets);
  // sumClassifier: p1 = clamp(sum of the SNR channel): the predictions follow that sum
  r3.indices.forEach((row, k) => {
    let s = 0;
    for (let p = 0; p < HW; p++) s += d.images[(row * HW + p) * C + 1];
    assert.equal(r3.targets![k], Math.min(1, Math.max(0, s)) > 0.5 ? 1 : 0);
  });
  const { labels: _l, ...unlabelled } = d;
  await assert.rejects(
    evaluateExplainer({ explainer: fake(card({ condition: 'onehot', conditionOn: 'label' }), (i) => mapOf(d, i)), data: unlabelled as Dataset, dataFile: 'u.npz' }),
    /u\.npz: the explainer is conditioned on the stamps' labels and the data has none/,
  );
});

// estimate.ts's Explainer must stay usable where evaluation expects an EvaluableExplainer.
export const explainerFitsEvaluation = (e: Explainer): EvaluableExplainer => e;

test('report: the split line, one row per method plus the exact reference, per-label tables', async () => {
  const d = makeData();
  const r = await evaluateExplainer({ explainer: fake(card(), (i) => mapOf(d, i)), data: d, classifier: sumClassifier(), steps: 2 });
  const text = formatReport(r, ['not_supernova', 'supernova']);
  assert.match(text, /^split: 4 held-out maps from 2 objects .*mean map from 6 training maps$/m);
  assert.match(text, /score prob \(important = LOW values\)/);
  assert.match(text, /^method +MSE +MAE +SSIM +Pearson +Spearman +Spearman@10% +IoU@10% +deletion AUC +insertion AUC$/m);
  assert.match(text, /^explainer +0\.0000 \+- 0\.0000 +0\.0000 \+- 0\.0000 +1\.000 \+- 0\.000 /m);
  assert.match(text, /^mean map +\d/m);
  assert.match(text, /^\|SNR diff\| +\d/m);
  // the exact map row only has the AUC columns
  assert.match(text, /^exact map +- +- +- +- +- +- +- +\d\.\d{3} \+- \d\.\d{3} +\d\.\d{3} \+- \d\.\d{3}$/m);
  assert.match(text, /^label 0 \(not_supernova\): 2 maps$/m);
  assert.match(text, /^label 1 \(supernova\): 2 maps$/m);
});

const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'occ-eval-'));

function run(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('CLI: a maps file without maps is a one-line error naming the file; bad options too', async () => {
  const d = makeData();
  const file = path.join(tmp, 'nomaps.npz');
  const { maps: _m, ...noMaps } = d;
  await writeDataset(file, noMaps as Dataset);
  const r = run(['evaluate', '--explainer', path.join(tmp, 'expl'), '--data', file]);
  assert.equal(r.code, 2);
  assert.equal(r.err, `occmap: ${file}: has no maps: evaluate compares with exact maps (an 'occmap occlude' output)\n`);
  const r2 = run(['evaluate', '--explainer', 'x', '--data', file, '--split', 'train']);
  assert.equal(r2.code, 2);
  assert.match(r2.err, /^occmap: --split: expected one of val\|all, got 'train'\n$/);
  const r3 = run(['evaluate', '--explainer', 'x', '--data', path.join(tmp, 'absent.npz')]);
  assert.equal(r3.code, 2);
  assert.match(r3.err, /absent\.npz: cannot read \(ENOENT\)\n$/);
});

test('CLI end to end: a tiny trained ensemble explainer, evaluated by the CLI as by the library', async () => {
  // A random 9x9 CNN reading channel 1 of 2-channel stamps; exact maps with the seed settings;
  // a conditioned ensemble of 2 trained for one epoch (the figures are not the point here).
  await initTf('cpu');
  const clfDir = path.join(tmp, 'clf');
  const m = tfl.sequential({
    layers: [
      tfl.layers.zeroPadding2d({ inputShape: [9, 9, 1], padding: 1 }),
      tfl.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu' }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 2, activation: 'softmax' }),
    ],
  });
  const rng = new Rng(4);
  m.setWeights(m.getWeights().map((w) => tf.tensor(Float32Array.from({ length: w.size }, () => rng.normal() * 0.4), w.shape)));
  await saveModelDir(m, clfDir, { kind: 'classifier', occmapVersion: 'test', createdAt: 'test', channels: [1], numClasses: 2 });
  m.dispose();
  const n = 24;
  const images = Float32Array.from({ length: n * 81 * 2 }, () => rng.next());
  const clf = await loadPredictor(clfDir, { engine: 'tfjs' });
  const ex = await exactMaps(clf, images, [n, 9, 9, 2], SEED_PARAMS);
  clf.dispose();
  const mapsFile = path.join(tmp, 'maps.npz');
  await writeDataset(mapsFile, {
    images,
    shape: [n, 9, 9, 2],
    labels: Int32Array.from({ length: n }, (_, i) => i % 2),
    ids: Array.from({ length: n }, (_, i) => `o${i % 8}`),
    maps: ex.maps,
    meta: { channels: ['x', 'snr_difference'], classes: ['no', 'yes'], occlusion: { ...SEED_PARAMS, modelHash: clf.hash } },
  });
  const expl = path.join(tmp, 'expl');
  const t = run(['train-explainer', '--data', mapsFile, '--classifier', clfDir, '--out', expl, '--epochs', '1', '--condition', 'onehot', '--ensemble', '2', '--quiet']);
  assert.equal(t.code, 0, t.err);

  const json = path.join(tmp, 'eval.json');
  const r = run(['evaluate', '--explainer', expl, '--data', mapsFile, '--out', json, '--steps', '2', '--quiet']);
  assert.equal(r.code, 0, r.err);
  const doc = JSON.parse(readFileSync(json, 'utf8'));
  const cardJson = JSON.parse(readFileSync(path.join(expl, 'card.json'), 'utf8'));
  const held = [...cardJson.split.valIndices].sort((a: number, b: number) => a - b);
  assert.deepEqual(doc.indices, held);
  assert.match(r.out, new RegExp(`^split: ${held.length} held-out maps from \\d+ objects`, 'm'));
  for (const row of [/^explainer +\d/m, /^mean map +\d/m, /^\|SNR diff\| +\d/m, /^exact map +-/m, /^uncertainty: Spearman/m, /^label 1 \(yes\)/m]) assert.match(r.out, row);
  assert.equal(doc.conditionLabels, 'card');
  assert.equal(doc.sharedObjects, 0);
  assert.equal(doc.methods[0].perMap.mse.length, held.length);
  assert.ok(doc.uncertainty.perMap.length === held.length);
  assert.equal(doc.classifier.hash, clf.hash);

  // The library on the same inputs gives the same figures (the CLI is a thin shell).
  const { loadExplainer } = await import('../src/explainer/estimate.js');
  const e = await loadExplainer(expl);
  const c2 = await loadPredictor(clfDir, { engine: 'tfjs' });
  const lib = await evaluateExplainer({ explainer: e, data: await readDataset(mapsFile), classifier: c2, steps: 2 });
  e.dispose();
  c2.dispose();
  for (const k of ['mse', 'spearman', 'iou', 'deletion'] as const) {
    lib.methods.forEach((meth, j) => meth.perMap[k]!.forEach((v, i) => close(v, doc.methods[j].perMap[k][i] ?? NaN, 1e-4)));
  }
  close(lib.uncertainty!.pooled, doc.uncertainty.pooled, 1e-4);
});
