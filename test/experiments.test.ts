import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  PRESETS,
  commonHoldout,
  meanStd,
  pickBest,
  planExp4,
  planStage1,
  presetOf,
  runName,
  selectStamps,
} from '../src/experiments/plan.js';
import { buildDocument, describeRun, renderMarkdown, writeReport } from '../src/experiments/report.js';
import { RESULTS_SCHEMA, type ExperimentResults, type RunResult } from '../src/experiments/results.js';
import { runExperiments } from '../src/experiments/seed.js';
import { demoSummary } from '../src/cli/demo.js';
import { readDataset, writeDataset } from '../src/data/dataset.js';
import { holdoutOfModelDir } from '../src/data/holdout.js';
import { simulateDataset } from '../src/data/simulate.js';
import { Rng } from '../src/util/rng.js';
import { UserError } from '../src/util/errors.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'occmap-experiments-'));

test('plan: Exp 1-3 runs, names and seeds; a configuration shared by two experiments is trained once', () => {
  const plan = planStage1(PRESETS.quick, 0);
  assert.deepEqual(
    plan.map((r) => r.name),
    [
      'normal-none-cut0-mixed-s0',
      'normal-none-cut0-sn-s0',
      'normal-none-cut0-nonsn-s0',
      'frozen-none-cut0-mixed-s0',
      'frozen-none-cut0-sn-s0',
      'frozen-none-cut0-nonsn-s0',
      'frozen-numeral-cut0-mixed-s0',
      'frozen-onehot-cut0-mixed-s0',
      'frozen-none-cut1-mixed-s0',
      'frozen-none-cut2-mixed-s0',
    ],
  );
  assert.deepEqual(plan.find((r) => r.name === 'frozen-none-cut0-mixed-s0')!.experiments, ['exp1', 'exp3']);
  assert.ok(plan.every((r) => r.seed === 0));
  assert.deepEqual(planStage1(PRESETS.quick, 3).map((r) => r.seed), new Array(10).fill(3));
  assert.deepEqual(planStage1(PRESETS.demo, 2).map((r) => [r.name, r.experiments]), [['unet-onehot-cut0-mixed-s2', ['demo']]]);
});

test('plan: Exp 4 trains each finalist with seeds S..S+repeats-1, the first being the finalist itself', () => {
  const sn = { variant: 'frozen', condition: 'none', cut: 0, data: 'sn', seed: 7 } as const;
  const cond = { variant: 'frozen', condition: 'onehot', cut: 0, data: 'mixed', seed: 7 } as const;
  const groups = planExp4(sn, cond, 7, 5);
  assert.deepEqual(groups.map((g) => [g.key, g.base]), [
    ['bestSn', 'frozen-none-cut0-sn-s7'],
    ['bestConditioned', 'frozen-onehot-cut0-mixed-s7'],
  ]);
  assert.deepEqual(groups[0].runs.map((r) => r.seed), [7, 8, 9, 10, 11]);
  assert.equal(groups[0].runs[0].name, runName(sn));
  assert.deepEqual(groups[1].runs.map((r) => r.name).slice(-1), ['frozen-onehot-cut0-mixed-s11']);
  assert.throws(() => planExp4(sn, cond, 0, 0), /repeats/);
});

test('pickBest: lowest score, first on ties, skips missing scores, fails when none has one', () => {
  const runs = [{ name: 'a' }, { name: 'b' }, { name: 'c' }, { name: 'd' }];
  const score: Record<string, number | undefined> = { a: 0.3, b: 0.1, c: 0.1, d: undefined };
  assert.equal(pickBest(runs, (r) => score[r.name]).name, 'b');
  assert.equal(pickBest(runs, (r) => (r.name === 'd' ? 0.05 : NaN)).name, 'd');
  assert.throws(() => pickBest(runs, () => undefined), /no run/);
});

test('meanStd: hand-computed mean and sample standard deviation', () => {
  const s = meanStd([1, 2, 3, 4]);
  assert.equal(s.mean, 2.5);
  assert.ok(Math.abs(s.std - Math.sqrt(5 / 3)) < 1e-12);
  assert.deepEqual(meanStd([0.5]), { mean: 0.5, std: 0, n: 1 });
  assert.equal(meanStd([]).n, 0);
});

test('selectStamps: per-class caps, equal classes, seeded and ascending', () => {
  const labels = [1, 0, 0, 1, 0, 0, 0, 1, 0, 0];
  const shuffle = (seed: number) => {
    const rng = new Rng(seed);
    return (a: number[]) => rng.shuffle(a);
  };
  const eq = selectStamps(labels, { perClass: 100, equalClasses: true }, shuffle(1));
  assert.deepEqual(eq.sn, [0, 3, 7]);
  assert.equal(eq.nonsn.length, 3);
  assert.ok(eq.nonsn.every((i) => labels[i] === 0));
  assert.deepEqual(eq.nonsn, [...eq.nonsn].sort((a, b) => a - b));
  const capped = selectStamps(labels, { perClass: 2, equalClasses: false }, shuffle(1));
  assert.equal(capped.sn.length, 2);
  assert.equal(capped.nonsn.length, 2);
  const all = selectStamps(labels, { perClass: 20000, equalClasses: false }, shuffle(1));
  assert.deepEqual([all.sn.length, all.nonsn.length], [3, 7]);
  assert.deepEqual(selectStamps(labels, { perClass: 2, equalClasses: false }, shuffle(1)), capped, 'same seed, same stamps');
});

test('commonHoldout: a share of each class, whole objects, deterministic', () => {
  const ids: string[] = [];
  const labels: number[] = [];
  for (let o = 0; o < 40; o++) {
    for (let e = 0; e < 3; e++) {
      ids.push(`obj${o}`);
      labels.push(o < 12 ? 1 : 0);
    }
  }
  const held = commonHoldout(ids, labels, 0.25, 5);
  const heldPos = held.filter((g) => Number(g.slice(3)) < 12).length;
  const heldNeg = held.length - heldPos;
  assert.equal(heldPos, 3);
  assert.equal(heldNeg, 7);
  assert.deepEqual(commonHoldout(ids, labels, 0.25, 5), held);
  assert.notDeepEqual(commonHoldout(ids, labels, 0.25, 6), held);
});

test('presets: tiny is for tests only; unknown names are a one-line user error', () => {
  assert.equal(presetOf('quick').name, 'quick');
  assert.throws(() => presetOf('tiny'), UserError);
  assert.equal(presetOf('tiny', true).epochs, 1);
  assert.throws(() => presetOf('huge'), /preset must be one of paper, quick/);
  assert.equal(PRESETS.paper.perClass, 20000);
  assert.deepEqual([PRESETS.paper.batchSize, PRESETS.paper.patience, PRESETS.paper.valFraction], [10, 3, 0.25]);
});

// --- the report writer on a synthetic study -------------------------------------------------

function run(name: string, over: Partial<RunResult>, val: number): RunResult {
  return {
    name,
    experiments: ['exp1'],
    variant: 'frozen',
    condition: 'none',
    cut: 0,
    data: 'mixed',
    seed: 0,
    dir: `runs/${name}`,
    parameters: { total: 294789, trainable: 192645, nonTrainable: 102144 },
    epochsRun: 4,
    bestEpoch: 3,
    stoppedEarly: true,
    trainSeconds: 12,
    trainCount: 30,
    valCount: 10,
    history: [1, 2, 3, 4].map((e) => ({ epoch: e, loss: 0.05 / e, valLoss: 0.06 / e + (e === 4 ? 0.01 : 0) })),
    mse: { train: val * 0.9, val },
    metrics: {
      explainer: { mse: { mean: val, std: 0.001, n: 10 }, ssim: { mean: 0.61, std: 0.1, n: 10 }, spearman: { mean: 0.55, std: 0.1, n: 10 }, iou: { mean: 0.4, std: 0.1, n: 10 }, deletion: { mean: 0.3, std: 0.1, n: 10 }, insertion: { mean: 0.7, std: 0.1, n: 10 } },
      meanMap: { mse: { mean: 0.05, std: 0.01, n: 10 }, ssim: { mean: 0.2, std: 0.1, n: 10 } },
      snrSaliency: { spearman: { mean: 0.3, std: 0.1, n: 10 } },
      exactMap: { deletion: { mean: 0.25, std: 0.1, n: 10 }, insertion: { mean: 0.75, std: 0.1, n: 10 } },
    },
    ...over,
  };
}

function syntheticResults(normalWins: boolean): ExperimentResults {
  const runs: RunResult[] = [];
  const v = (variant: string, k: number) => (variant === 'frozen') === normalWins ? 0.02 + k / 1000 : 0.01 + k / 1000;
  (['normal', 'frozen'] as const).forEach((variant) =>
    (['mixed', 'sn', 'nonsn'] as const).forEach((data, k) => {
      const over: Partial<RunResult> = { variant, data, experiments: variant === 'frozen' && data === 'mixed' ? ['exp1', 'exp3'] : ['exp1'] };
      if (variant === 'frozen' && data === 'sn') over.experiments = ['exp1', 'exp4'];
      runs.push(run(runName({ variant, data, condition: 'none', cut: 0, seed: 0 }), over, v(variant, k)));
    }),
  );
  runs.push(run('frozen-numeral-cut0-mixed-s0', { condition: 'numeral', experiments: ['exp2'] }, 0.0123));
  runs.push(run('frozen-onehot-cut0-mixed-s0', { condition: 'onehot', experiments: ['exp2', 'exp4'] }, 0.0111));
  runs.push(run('frozen-none-cut1-mixed-s0', { cut: 1, experiments: ['exp3'] }, 0.0177));
  runs.push(run('frozen-none-cut2-mixed-s0', { cut: 2, experiments: ['exp3'] }, 0.0199));
  runs.push(run('frozen-none-cut0-sn-s1', { data: 'sn', seed: 1, experiments: ['exp4'] }, 0.0112));
  runs.push(run('frozen-onehot-cut0-mixed-s1', { condition: 'onehot', seed: 1, experiments: ['exp4'] }, 0.0105));
  const px = (k: number) => Array.from({ length: 9 }, (_, i) => ((i + k) % 9) / 9);
  const ex = (k: number) => ({ index: k, id: `obj${k}`, label: 1, mse: 0.001 * (k + 1), input: px(k), exact: px(k + 1), estimate: px(k + 2) });
  const sn = runName({ variant: normalWins ? 'normal' : 'frozen', condition: 'none', cut: 0, data: 'sn', seed: 0 });
  return {
    schema: RESULTS_SCHEMA,
    preset: 'quick',
    presetDescription: 'synthetic',
    command: 'occmap experiments --data x.npz --out y',
    createdAt: '2026-01-01T00:00:00.000Z',
    seed: 0,
    versions: { node: 'v20', occmap: '0.1.0' },
    settings: { batchSize: 10, patience: 3, valFraction: 0.25, maxEpochs: 20, loss: 'mse', optimizer: 'adam', repeats: 2, occlusion: 'seed' },
    data: {
      file: '/x.npz',
      source: 'hits2015',
      stamps: 100,
      supernova: 50,
      nonSupernova: 50,
      objects: 40,
      datasets: { mixed: { maps: 40, heldOut: 10, objects: 20, heldOutObjects: 5 }, sn: { maps: 20, heldOut: 5, objects: 10, heldOutObjects: 3 }, nonsn: { maps: 20, heldOut: 5, objects: 10, heldOutObjects: 2 } },
    },
    classifier: { dir: 'classifier', trainedHere: true, valAccuracy: 0.9, valBalancedAccuracy: 0.88, confusion: [[9, 1], [1, 9]], parameters: 253954, heldOut: 20, epochs: 6 },
    occlusion: { maps: 40, inferencesPerMap: 626, engine: 'onnxruntime', seconds: 8, reused: false },
    runs,
    exp1: { bestSn: sn, bestNonSn: runName({ variant: normalWins ? 'normal' : 'frozen', condition: 'none', cut: 0, data: 'nonsn', seed: 0 }), bestOverall: sn },
    exp2: { best: 'frozen-onehot-cut0-mixed-s0' },
    exp3: { runs: ['frozen-none-cut0-mixed-s0', 'frozen-none-cut1-mixed-s0', 'frozen-none-cut2-mixed-s0'], best: 'frozen-none-cut0-mixed-s0' },
    exp4: {
      groups: [
        { key: 'bestSn', base: 'frozen-none-cut0-sn-s0', runs: ['frozen-none-cut0-sn-s0', 'frozen-none-cut0-sn-s1'], train: meanStd([0.01, 0.011]), val: meanStd([0.011, 0.0112]) },
        { key: 'bestConditioned', base: 'frozen-onehot-cut0-mixed-s0', runs: ['frozen-onehot-cut0-mixed-s0', 'frozen-onehot-cut0-mixed-s1'], train: meanStd([0.009, 0.0095]), val: meanStd([0.0111, 0.0105]) },
      ],
      best: 'frozen-onehot-cut0-mixed-s0',
    },
    examples: [{ run: sn, title: 'Best Exp. 1 model on supernova data', best: [ex(0), ex(1)], worst: [ex(2), ex(3)], h: 3, w: 3 }],
    layers: { run: 'frozen-onehot-cut0-mixed-s0', rows: [{ name: 'conv1', type: 'Conv2D', outputShape: '(None, 24, 24, 32)', params: 544, trainable: false }] },
    timing: { maps: 8, classifierEngine: 'onnxruntime (2 threads)', explainerEngine: 'onnxruntime (2 threads)', inferencesPerMap: 626, exactPerMap: 0.2, estimatedPerMap: 0.0005, exactLatency: 0.25, estimatedLatency: 0.002, speedupThroughput: 400, speedupLatency: 125, occlusionJob: null, note: 'synthetic' },
    phases: { 'read data': 0.1, classifier: 0 },
    wallSeconds: 1.5,
    notes: ['a note'],
  };
}

test('report writer: self-contained HTML, markdown with our and the seed\'s numbers, results.json round trip', async () => {
  const dir = path.join(tmp, 'report');
  const res = syntheticResults(false);
  const files = await writeReport(res, dir);
  const html = readFileSync(files.html, 'utf8');
  assert.match(html, /^<!DOCTYPE html>/);
  assert.match(html, /<\/html>\s*$/);
  for (const tag of ['section', 'table', 'figure', 'svg']) {
    const open = html.match(new RegExp(`<${tag}[\\s>]`, 'g'))?.length ?? 0;
    assert.equal(open, html.match(new RegExp(`</${tag}>`, 'g'))?.length ?? 0, `<${tag}> balanced`);
    assert.ok(open > 0, `has <${tag}>`);
  }
  // Opens offline: nothing is loaded from elsewhere (SVG namespace names are not loads).
  assert.doesNotMatch(html, /\s(src|href)\s*=\s*["']?(https?:)?\/\//i);
  assert.doesNotMatch(html, /url\(\s*["']?(https?:)?\/\//i);
  assert.doesNotMatch(html, /<script|<link|@import/i);
  assert.match(html, /<img alt="examples-[^"]+" src="data:image\/png;base64,/);
  assert.match(html, /<svg[^>]*class="marks"/);

  const md = readFileSync(files.markdown, 'utf8');
  // The seed's Tables 4, 6, 7-9 and Exp 3's number, beside ours.
  for (const seedNumber of ['0.02284', '0.01170', '0.01981', '0.01204', '0.01052', '0.01416', '0.01278', '0.00689', '0.01309', '0.00909', '0.00131']) {
    assert.ok(md.includes(seedNumber), `report.md shows the seed's ${seedNumber}`);
  }
  for (const ours of ['0.01230', '0.01110', '0.01770', '0.01990', '0.01120']) assert.ok(md.includes(ours), `report.md shows our ${ours}`);
  assert.match(md, /\| model \| data \| MSE train \| MSE val \| val loss 24x24 \| seed MSE train \| seed MSE val \| epochs \|/);
  assert.match(md, /Caveat, plainly/);
  assert.match(md, /400x faster/);
  for (const f of readdirSync(path.join(dir, 'figures'))) assert.ok(md.includes(`figures/${f}`), `report.md links ${f}`);

  assert.deepEqual(JSON.parse(readFileSync(files.json, 'utf8')), JSON.parse(JSON.stringify(res)));
});

test('report prose follows the numbers: a study where training from scratch wins says so', () => {
  const frozenWins = renderMarkdown(syntheticResults(false), buildDocument(syntheticResults(false)), []);
  assert.match(frozenWins, /beats training from scratch on 3 of 3 datasets/);
  const normalWins = renderMarkdown(syntheticResults(true), buildDocument(syntheticResults(true)), []);
  assert.match(normalWins, /beats training from scratch on 0 of 3 datasets/);
  assert.match(normalWins, /The normal autoencoder on supernova data has the lowest held-out MSE/);
  assert.match(frozenWins, /The error grows with every cut, as the seed found/);
  // Against the mean training map (MSE 0.05 in the synthetic study): 1 - 0.0111 / 0.05 = 78%.
  assert.match(frozenWins, /frozen autoencoder on supernova data removes 78% of the mean map's error \(0\.05000\)/);
  assert.match(frozenWins, /beats the mean training map on 2 of 2 \(MSE, SSIM\)/);
  assert.match(frozenWins, /mean training map \(one fixed map for every stamp\) scores mixed 0\.05000/);
  assert.equal(describeRun({ variant: 'frozen', condition: 'onehot', cut: 0, data: 'mixed' }), 'frozen autoencoder, one-hot conditioning, on mixed data');
});

// --- end to end on simulated stamps -----------------------------------------------------------

test('experiments end to end (tiny preset, simulated stamps), then a rerun that skips everything', async () => {
  const data = path.join(tmp, 'sim.npz');
  await writeDataset(data, simulateDataset({ n: 40, seed: 3, realFraction: 0.5 }).dataset);
  const out = path.join(tmp, 'study');
  const lines: string[] = [];
  const o = { data, out, preset: PRESETS.tiny, seed: 0, quiet: true, log: (s: string) => lines.push(s) };
  const first = await runExperiments(o);
  const r = first.results;
  assert.equal(first.classifierTrained, true);
  assert.equal(first.mapsComputed, 24);
  assert.equal(first.trained, 12, '6 (Exp 1) + 2 (Exp 2) + 2 (Exp 3 cuts 1, 2) + 2 (Exp 4 second seeds)');
  assert.equal(r.runs.length, 12);
  assert.deepEqual(r.data.datasets.mixed.maps, 24);
  for (const run of r.runs) {
    assert.ok(existsSync(path.join(out, run.dir, 'card.json')), `${run.name} saved`);
    assert.ok(Number.isFinite(run.mse.val) && Number.isFinite(run.mse.train), `${run.name} has MSE`);
    assert.ok(run.metrics.explainer.spearman !== undefined);
  }
  assert.equal(r.exp4!.groups.length, 2);
  for (const g of r.exp4!.groups) assert.deepEqual(g.runs.map((n) => r.runs.find((x) => x.name === n)!.seed), [0, 1]);
  // Every mixed-data run holds out the same objects.
  const held = r.runs.filter((x) => x.data === 'mixed').map((x) => JSON.parse(readFileSync(path.join(out, x.dir, 'card.json'), 'utf8')).split.valIndices.join());
  assert.equal(new Set(held).size, 1);
  assert.ok(r.timing && r.timing.speedupThroughput > 0);
  assert.ok(r.examples.length === 2 && r.examples[0].best.length === 2);
  for (const f of ['index.html', 'report.md', 'results.json']) assert.ok(existsSync(path.join(out, f)), f);

  const second = await runExperiments(o);
  assert.equal(second.classifierTrained, false);
  assert.equal(second.mapsComputed, 0);
  assert.equal(second.trained, 0);
  assert.equal(second.reused, 12);
  assert.equal(second.evaluated, 0);
  assert.equal(second.timingMeasured, false);
  assert.deepEqual(second.results.runs.map((x) => x.mse), r.runs.map((x) => x.mse));
  assert.deepEqual(second.results.invocations!.map((i) => i.trained), [12, 0], 'the report keeps what the first invocation did');

  await assert.rejects(runExperiments({ ...o, seed: 1 }), (e: Error) => e instanceof UserError && /holds a study with other seed/.test(e.message));
  // Bad input: a one-line error naming the file, and no study directory left behind.
  const unlabeled = path.join(tmp, 'unlabeled.npz');
  const sim = simulateDataset({ n: 8, seed: 1 }).dataset;
  delete sim.labels;
  await writeDataset(unlabeled, sim);
  const bad = path.join(tmp, 'bad-study');
  await assert.rejects(runExperiments({ ...o, data: unlabeled, out: bad }), (e: Error) => e instanceof UserError && e.message.startsWith(`${unlabeled}: has no labels`));
  assert.equal(existsSync(bad), false);
  const lines2 = demoSummary({ ...second, results: { ...second.results, demo: { run: r.runs[0].name } } }, 12);
  assert.match(lines2.join('\n'), /validation accuracy/);
  assert.match(lines2.join('\n'), /faster/);
});

test('experiments on maps made by the given classifier: the maps are used as they are, the classifier\'s held-out objects are the study\'s', async () => {
  const data = path.join(tmp, 'sim2.npz');
  await writeDataset(data, simulateDataset({ n: 40, seed: 5, realFraction: 0.5 }).dataset);
  const preset = { ...PRESETS.tiny, experiments: ['demo'] as const, repeats: 1 };
  const first = await runExperiments({ data, out: path.join(tmp, 'study-a'), preset, seed: 0, quiet: true, log: () => undefined });
  assert.ok(first.mapsComputed > 0);
  const clf = path.join(tmp, 'study-a', 'classifier');
  const maps = path.join(tmp, 'study-a', 'data', 'maps-mixed.npz');
  const lines: string[] = [];
  const second = await runExperiments({ data: maps, classifier: clf, out: path.join(tmp, 'study-b'), preset, seed: 3, quiet: true, log: (s) => lines.push(s) });
  assert.equal(second.mapsComputed, 0);
  assert.equal(second.classifierTrained, false);
  assert.ok(lines.some((l) => /holds exact maps of \d+ stamps by this classifier/.test(l)), lines.join('\n'));
  const clfHeld = await holdoutOfModelDir(clf);
  const studyHeld = JSON.parse(readFileSync(path.join(tmp, 'study-b', 'data', 'holdout.json'), 'utf8')).ids as string[];
  const selected = new Set((await readDataset(maps)).ids);
  assert.deepEqual(studyHeld, clfHeld.ids!.filter((g) => selected.has(g)));
});
