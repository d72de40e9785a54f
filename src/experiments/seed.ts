/**
 * The seed's study (docs/seed.md "Experiments", Exp. 1-4) on any labelled stamp dataset, as one
 * resumable job writing everything under one directory:
 *
 *   DIR/plan.json                 what this directory is a study of (refuses another)
 *   DIR/classifier/               the classifier (unless --classifier), as train-classifier writes it
 *   DIR/data/selection.npz        the stamps mapped (supernova + non-supernova, with ids)
 *   DIR/data/maps-mixed.npz       their exact maps (resumable occlusion job: maps-mixed.npz.shards/)
 *   DIR/data/maps-sn.npz, maps-nonsn.npz   the single-class datasets
 *   DIR/data/holdout.json         the objects every run holds out
 *   DIR/runs/<name>/              one explainer per configuration (done = card.json exists)
 *   DIR/evals/<name>.json         its held-out figures (done = file exists)
 *   DIR/timing.json               exact vs estimated per map, measured once
 *   DIR/results.json, report.md, index.html
 *
 * A rerun skips every finished step; an interrupted one continues where it stopped.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { readDataset, subsetDataset, writeDataset, type Dataset } from '../data/dataset.js';
import { evaluateExplainer, type EvaluationResult, type MethodName } from '../explainer/evaluate.js';
import { loadExplainer, type ExplainerCard } from '../explainer/estimate.js';
import { trainExplainer } from '../explainer/train.js';
import { CARD_JSON, loadModelDir, readCard, type ModelCard } from '../models/io.js';
import { loadPredictor } from '../models/load.js';
import type { Predictor } from '../models/predictor.js';
import { DEFAULT_BATCH_SIZE, SEED_PARAMS, inferencesPerMap } from '../occlusion/exact.js';
import { initTf } from '../runtime/tfjs.js';
import { ensureDir, writeFileAtomic } from '../util/atomic.js';
import { fileError, UserError } from '../util/errors.js';
import { formatDuration } from '../util/progress.js';
import { Rng } from '../util/rng.js';
import { runOcclude, DEFAULT_SHARD_SIZE } from '../cli/occlude.js';
import { runTrainClassifier } from '../cli/train-classifier.js';
import {
  commonHoldout,
  meanStd,
  pickBest,
  planExp4,
  planStage1,
  runName,
  selectStamps,
  type DataKey,
  type Preset,
  type RunConfig,
  type RunSpec,
} from './plan.js';
import { RESULTS_SCHEMA, type Invocation, type Example, type ExperimentResults, type LayerRow, type MethodMetrics, type RunResult, type TimingResult } from './results.js';
import { measureTiming } from './timing.js';
import { writeReport } from './report.js';

export interface RunExperimentsOptions {
  data: string;
  out: string;
  preset: Preset;
  classifier?: string;
  seed?: number;
  /** Recorded in the report and the model cards. */
  command?: string;
  quiet?: boolean;
  log?: (line: string) => void;
}

export interface RunExperimentsSummary {
  results: ExperimentResults;
  /** Explainers trained / found finished in this invocation. */
  trained: number;
  reused: number;
  evaluated: number;
  mapsComputed: number;
  classifierTrained: boolean;
  timingMeasured: boolean;
  files: { html: string; markdown: string; json: string };
}

const DATA_KEYS: readonly DataKey[] = ['mixed', 'sn', 'nonsn'];

/** Evaluation cache: what one run's held-out figures are, without the per-map arrays. */
interface EvalCache {
  mse: { train: number; val: number };
  valIndices: number[];
  valMse: number[];
  metrics: RunResult['metrics'];
}

export function packageVersion(name: string): string {
  try {
    let dir = path.dirname(new URL(import.meta.resolve(name)).pathname);
    for (let i = 0; i < 8; i++) {
      const f = path.join(dir, 'package.json');
      if (existsSync(f)) {
        const pkg = JSON.parse(readFileSync(f, 'utf8'));
        if (pkg.name === name) return String(pkg.version);
      }
      dir = path.dirname(dir);
    }
  } catch {
    // not installed or not resolvable: reported as unknown
  }
  return 'unknown';
}

function occmapVersion(): string {
  try {
    return JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

export function versions(): Record<string, string> {
  return {
    node: process.version,
    occmap: occmapVersion(),
    'tfjs-core': packageVersion('@tensorflow/tfjs-core'),
    'tfjs-layers': packageVersion('@tensorflow/tfjs-layers'),
    'tfjs-backend-wasm': packageVersion('@tensorflow/tfjs-backend-wasm'),
    'onnxruntime-node': packageVersion('onnxruntime-node'),
    vega: packageVersion('vega'),
    'vega-lite': packageVersion('vega-lite'),
  };
}

function summaryOf(r: EvaluationResult, name: MethodName): MethodMetrics | undefined {
  const m = r.methods.find((x) => x.name === name) ?? (name === 'exactMap' ? r.exact : undefined);
  if (!m) return undefined;
  const out: MethodMetrics = {};
  for (const [k, s] of Object.entries(m.summary)) if (s) (out as Record<string, unknown>)[k] = { mean: s.mean, std: s.std, n: s.n };
  return out;
}

/** Keep only what the plan file pins: a study directory is one preset on one data file. */
function checkPlanFile(file: string, identity: Record<string, unknown>): boolean {
  if (!existsSync(file)) return false;
  let old: Record<string, unknown>;
  try {
    old = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw fileError(file, 'is not valid JSON; delete it (or the whole directory) to start over');
  }
  const diff = Object.keys(identity).filter((k) => JSON.stringify(old[k]) !== JSON.stringify(identity[k]));
  if (diff.length > 0) {
    throw fileError(
      path.dirname(file),
      `holds a study with other ${diff.map((k) => `${k} (${JSON.stringify(old[k])})`).join(', ')}: use another --out, or the same options to continue it`,
    );
  }
  return true;
}

export async function runExperiments(o: RunExperimentsOptions): Promise<RunExperimentsSummary> {
  const tStart = performance.now();
  const startedAt = new Date().toISOString();
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const preset = o.preset;
  const seed = o.seed ?? 0;
  if (!(Number.isInteger(seed) && seed >= 0)) throw new UserError(`--seed must be a non-negative integer, got ${seed}`);
  const out = o.out;
  const command = o.command ?? 'occmap experiments';
  const phases: Record<string, number> = {};
  const notes: string[] = [];
  let phaseStart = performance.now();
  const phase = (name: string) => {
    const now = performance.now();
    phases[name] = (now - phaseStart) / 1000;
    phaseStart = now;
  };
  const rel = (p: string) => path.relative(out, p) || '.';

  // --- what this directory is ----------------------------------------------------------
  if (!existsSync(o.data)) throw fileError(o.data, 'does not exist');
  if (o.classifier && !existsSync(path.join(o.classifier, CARD_JSON))) {
    throw fileError(o.classifier, "is not a classifier directory from 'occmap train-classifier' (no card.json)");
  }
  // The data is read and checked before anything is created: bad input leaves no directory.
  const ds = await readDataset(o.data);
  if (!ds.labels) throw fileError(o.data, 'has no labels: the study splits maps by class (1 = supernova, 0 = not)');
  for (let i = 0; i < ds.labels.length; i++) {
    if (ds.labels[i] > 1) throw fileError(o.data, `label ${ds.labels[i]} of stamp ${i}: the study needs binary labels (1 = supernova, 0 = not)`);
  }
  let nPos = 0;
  for (const l of ds.labels) nPos += l;
  const nNeg = ds.labels.length - nPos;
  if (nPos < 2 || nNeg < 2) throw fileError(o.data, `has ${nPos} supernova and ${nNeg} non-supernova stamps: the study needs at least 2 of each`);
  const identity = {
    preset: preset.name,
    seed,
    data: path.resolve(o.data),
    dataBytes: statSync(o.data).size,
    classifier: o.classifier ? path.resolve(o.classifier) : null,
  };
  const planFile = path.join(out, 'plan.json');
  const continuing = checkPlanFile(planFile, identity);
  ensureDir(out);
  for (const d of ['data', 'runs', 'evals']) ensureDir(path.join(out, d));
  if (continuing) log(`experiments: continuing the study in ${out}`);
  else await writeFileAtomic(planFile, JSON.stringify({ ...identity, createdAt: new Date().toISOString(), command }, null, 2) + '\n');

  phase('read data');

  // --- classifier ------------------------------------------------------------------------
  const clfDir = o.classifier ?? path.join(out, 'classifier');
  let classifierTrained = false;
  if (!o.classifier && !existsSync(path.join(clfDir, CARD_JSON))) {
    log(`experiments: training the classifier on ${ds.shape[0]} stamps (up to ${preset.classifierEpochs} epochs) -> ${clfDir}`);
    await runTrainClassifier({
      data: o.data,
      out: clfDir,
      activation: 'relu',
      pad: '3',
      epochs: String(preset.classifierEpochs),
      batchSize: String(preset.batchSize),
      lr: '0.001',
      patience: String(preset.patience),
      valFraction: String(preset.valFraction),
      seed: String(seed),
      backend: 'auto',
      force: existsSync(clfDir),
      quiet: true,
    });
    classifierTrained = true;
  } else log(`experiments: classifier ${clfDir} (${o.classifier ? 'given' : 'trained by an earlier run'})`);
  const clfCard = readCard(clfDir) as ModelCard;
  const clfHash = clfCard.hash;
  phase('classifier');

  // --- the stamps to map -------------------------------------------------------------------
  const selFile = path.join(out, 'data', 'selection.npz');
  let selection: Dataset;
  if (existsSync(selFile)) selection = await readDataset(selFile);
  else {
    const rng = new Rng(seed ^ 0x5e1ec7);
    const pick = selectStamps(ds.labels, preset, (a) => rng.shuffle(a));
    const rows = [...pick.sn, ...pick.nonsn].sort((a, b) => a - b);
    selection = subsetDataset(ds, rows);
    selection.ids = ds.ids ? rows.map((r) => ds.ids![r]) : rows.map((r) => `row${r}`);
    selection.meta = {
      ...ds.meta,
      selection: {
        from: path.resolve(o.data),
        preset: preset.name,
        seed,
        supernova: pick.sn.length,
        nonSupernova: pick.nonsn.length,
        rows,
        ids: ds.ids ? 'from the data' : 'none in the data: each stamp is its own object (row<N>)',
      },
      command,
    };
    await writeDataset(selFile, selection);
  }
  phase('selection');

  // --- exact maps (the resumable occlusion job) --------------------------------------------
  const mapsFile = (k: DataKey) => path.join(out, 'data', `maps-${k}.npz`);
  let mixed: Dataset | undefined;
  let mapsComputed = 0;
  let occSeconds: number | undefined;
  let occJob: TimingResult['occlusionJob'] = null;
  if (existsSync(mapsFile('mixed'))) {
    const m = await readDataset(mapsFile('mixed'));
    const occ = m.meta.occlusion as { modelHash?: string } | undefined;
    if (m.maps && m.shape[0] === selection.shape[0] && occ?.modelHash === clfHash) mixed = m;
    else log(`experiments: ${mapsFile('mixed')} was made with another classifier or selection: recomputing`);
  }
  const occEngine = 'onnxruntime';
  if (!mixed) {
    const n = selection.shape[0];
    log(`experiments: exact maps of ${n} stamps (${inferencesPerMap(SEED_PARAMS, selection.shape[1], selection.shape[2])} classifier inferences each)`);
    const s = await runOcclude({
      model: clfDir,
      data: selFile,
      out: mapsFile('mixed'),
      params: SEED_PARAMS,
      batchSize: DEFAULT_BATCH_SIZE,
      workers: 1,
      resume: true,
      shardSize: DEFAULT_SHARD_SIZE,
      engine: 'auto',
      quiet: o.quiet,
      command,
    });
    mapsComputed = s.computed;
    occSeconds = s.seconds;
    if (s.computed > 0) occJob = { maps: s.computed, seconds: s.seconds, mapsPerSecond: s.mapsPerSecond, inferencesPerSecond: s.inferencesPerSecond };
    log(`experiments: ${s.computed} maps computed${s.reused ? `, ${s.reused} from earlier shards` : ''} in ${s.seconds.toFixed(1)} s (${s.engine})`);
    mixed = await readDataset(mapsFile('mixed'));
  } else log(`experiments: exact maps found (${mapsFile('mixed')})`);
  const datasets: Record<DataKey, Dataset> = { mixed, sn: mixed, nonsn: mixed };
  for (const [k, lab] of [['sn', 1], ['nonsn', 0]] as const) {
    const file = mapsFile(k);
    let d: Dataset | undefined;
    if (existsSync(file) && mapsComputed === 0) {
      d = await readDataset(file);
      if ((d.meta.occlusion as { modelHash?: string } | undefined)?.modelHash !== clfHash) d = undefined;
    }
    if (!d) {
      const rows: number[] = [];
      mixed.labels!.forEach((l, i) => l === lab && rows.push(i));
      d = subsetDataset(mixed, rows);
      await writeDataset(file, d);
    }
    datasets[k] = d;
  }
  phase('exact maps');

  // --- one held-out set of objects for every run ---------------------------------------------
  const holdoutIds = commonHoldout(mixed.ids!, mixed.labels!, preset.valFraction, seed);
  const holdoutSet = new Set(holdoutIds);
  const dataInfo = {} as ExperimentResults['data']['datasets'];
  for (const k of DATA_KEYS) {
    const d = datasets[k];
    const ids = d.ids!;
    const objects = new Set(ids);
    const heldOutObjects = [...objects].filter((g) => holdoutSet.has(g)).length;
    const heldOut = ids.filter((g) => holdoutSet.has(g)).length;
    if (heldOut === 0 || heldOut === ids.length) {
      throw fileError(o.data, `the ${k} dataset (${ids.length} maps of ${objects.size} objects) leaves ${heldOut === 0 ? 'nothing to hold out' : 'nothing to train on'}: too few objects`);
    }
    dataInfo[k] = { maps: ids.length, heldOut, objects: objects.size, heldOutObjects };
  }
  await writeFileAtomic(path.join(out, 'data', 'holdout.json'), JSON.stringify({ valFraction: preset.valFraction, seed, ids: holdoutIds }, null, 2) + '\n');

  // --- training and evaluation -------------------------------------------------------------
  let trained = 0;
  let reused = 0;
  let evaluated = 0;
  const runSeconds: number[] = [];
  const specs = new Map<string, RunSpec>();
  const evals = new Map<string, EvalCache>();
  let clf: Predictor | undefined;
  const classifier = async () => (clf ??= await loadPredictor(clfDir));

  const runDir = (name: string) => path.join(out, 'runs', name);
  const ensureRun = async (r: RunSpec, k: number, total: number): Promise<void> => {
    const have = specs.get(r.name);
    if (have) {
      // Planned again by a later experiment (Exp 4's first seed): trained and evaluated already.
      for (const t of r.experiments) if (!have.experiments.includes(t)) have.experiments.push(t);
      return;
    }
    specs.set(r.name, { ...r, experiments: [...r.experiments] });
    const dir = runDir(r.name);
    const tags = r.experiments.map((t) => t.replace('exp', 'Exp ')).join(', ');
    if (existsSync(path.join(dir, CARD_JSON))) {
      reused++;
      log(`[${k}/${total}] ${r.name} (${tags}): done earlier`);
    } else {
      const avg = runSeconds.length ? runSeconds.reduce((a, b) => a + b, 0) / runSeconds.length : NaN;
      log(`[${k}/${total}] training ${r.name} (${tags}) on ${datasets[r.data].shape[0]} maps` + (runSeconds.length ? `; ~${formatDuration(avg)} per run so far` : ''));
      const t0 = performance.now();
      await trainExplainer({
        data: mapsFile(r.data),
        out: dir,
        classifier: clfDir,
        variant: r.variant,
        condition: r.condition,
        cut: r.cut,
        epochs: preset.epochs,
        batchSize: preset.batchSize,
        patience: preset.patience,
        valFraction: preset.valFraction,
        seed: r.seed,
        holdoutIds,
        holdoutFrom: 'occmap experiments: the study\'s common held-out objects (data/holdout.json)',
        force: existsSync(dir),
        quiet: true,
        log: (s) => log(`    ${s}`),
        command,
      });
      runSeconds.push((performance.now() - t0) / 1000);
      trained++;
    }
    const evalFile = path.join(out, 'evals', `${r.name}.json`);
    if (existsSync(evalFile)) {
      evals.set(r.name, JSON.parse(readFileSync(evalFile, 'utf8')));
      return;
    }
    const e = await evaluateRun(dir, datasets[r.data], mapsFile(r.data), await classifier(), preset.steps);
    await writeFileAtomic(evalFile, JSON.stringify(e) + '\n');
    evals.set(r.name, e);
    evaluated++;
    const x = e.metrics.explainer;
    log(`    held out: MSE ${e.mse.val.toFixed(5)} (train ${e.mse.train.toFixed(5)}), SSIM ${fmt(x.ssim?.mean)}, Spearman ${fmt(x.spearman?.mean)}, top-10% IoU ${fmt(x.iou?.mean)}`);
  };

  try {
    const stage1 = planStage1(preset, seed);
    const exps = new Set(preset.experiments);
    const total = stage1.length + (exps.has('exp4') ? 2 * (preset.repeats - 1) : 0);
    let k = 0;
    for (const r of stage1) await ensureRun(r, ++k, total);
    phase(exps.has('demo') ? 'explainer (train + evaluate)' : 'Exp 1-3 (train + evaluate)');

    const val = (name: string) => evals.get(name)?.mse.val;
    const byTag = (tag: string, f: (r: RunSpec) => boolean = () => true) => [...specs.values()].filter((r) => r.experiments.includes(tag as RunSpec['experiments'][number]) && f(r));
    const results: Partial<ExperimentResults> = {};
    if (exps.has('exp1')) {
      results.exp1 = {
        bestSn: pickBest(byTag('exp1', (r) => r.data === 'sn'), (r) => val(r.name)).name,
        bestNonSn: pickBest(byTag('exp1', (r) => r.data === 'nonsn'), (r) => val(r.name)).name,
        bestOverall: pickBest(byTag('exp1'), (r) => val(r.name)).name,
      };
    }
    if (exps.has('exp2')) results.exp2 = { best: pickBest(byTag('exp2'), (r) => val(r.name)).name };
    if (exps.has('exp3')) {
      const runs = byTag('exp3').sort((a, b) => a.cut - b.cut);
      results.exp3 = { runs: runs.map((r) => r.name), best: pickBest(runs, (r) => val(r.name)).name };
    }
    if (exps.has('exp4') && results.exp1 && results.exp2) {
      const cfg = (name: string): RunConfig => {
        const s = specs.get(name)!;
        return { variant: s.variant, condition: s.condition, cut: s.cut, data: s.data, seed: s.seed };
      };
      const groups = planExp4(cfg(results.exp1.bestSn), cfg(results.exp2.best), seed, preset.repeats);
      for (const g of groups) for (const r of g.runs) await ensureRun(r, specs.has(r.name) ? k : ++k, total);
      const stats = groups.map((g) => {
        const e = g.runs.map((r) => evals.get(r.name)!);
        return {
          key: g.key,
          base: g.base,
          runs: g.runs.map((r) => r.name),
          train: meanStd(e.map((x) => x.mse.train)),
          val: meanStd(e.map((x) => x.mse.val)),
        };
      });
      const best = stats.reduce((a, b) => (b.val.mean < a.val.mean ? b : a));
      results.exp4 = { groups: stats, best: best.base };
      phase('Exp 4 (train + evaluate)');
    }
    if (exps.has('demo')) results.demo = { run: byTag('demo')[0].name };

    // --- figures: best and worst held-out examples ---------------------------------------------
    const featured: { run: string; title: string }[] = [];
    if (results.exp1) {
      featured.push({ run: results.exp1.bestSn, title: 'Best Exp. 1 model on supernova data' });
      featured.push({ run: results.exp1.bestNonSn, title: 'Best Exp. 1 model on non-supernova data' });
    }
    if (results.demo) featured.push({ run: results.demo.run, title: 'The demo explainer' });
    const examples: ExperimentResults['examples'] = [];
    for (const f of featured) {
      const s = specs.get(f.run)!;
      const ex = await examplesOf(runDir(f.run), datasets[s.data], evals.get(f.run)!, 2);
      examples.push({ run: f.run, title: f.title, ...ex, h: mixed.shape[1], w: mixed.shape[2] });
    }
    phase('examples');

    // --- the final model: timing and layer summary ----------------------------------------------
    const finalRun = results.exp4?.best ?? results.demo?.run ?? results.exp2?.best ?? results.exp1?.bestOverall ?? [...specs.keys()][0];
    const timingFile = path.join(out, 'timing.json');
    let timing: TimingResult;
    let timingMeasured = false;
    if (existsSync(timingFile)) timing = JSON.parse(readFileSync(timingFile, 'utf8'));
    else {
      const card = JSON.parse(readFileSync(path.join(runDir(finalRun), CARD_JSON), 'utf8')) as ExplainerCard;
      const d = datasets[specs.get(finalRun)!.data];
      const rows = card.split.valIndices.slice(0, preset.timingMaps);
      const sub = subsetDataset(d, rows);
      log(`experiments: timing exact vs estimated maps on ${rows.length} held-out stamps (${finalRun})`);
      const explainer = await loadExplainer(runDir(finalRun));
      try {
        timing = await measureTiming(await classifier(), explainer, sub.images, sub.shape);
      } finally {
        explainer.dispose();
      }
      timing.occlusionJob = occJob;
      await writeFileAtomic(timingFile, JSON.stringify(timing, null, 2) + '\n');
      timingMeasured = true;
    }
    phase('timing');
    const layers = { run: finalRun, rows: await layerRows(runDir(finalRun)) };

    // --- assemble -------------------------------------------------------------------------------
    const runs: RunResult[] = [...specs.values()].map((s) => runResult(s, runDir(s.name), out, evals.get(s.name)!));
    const nSel = selection.shape[0];
    let selPos = 0;
    for (const l of selection.labels!) selPos += l;
    if (preset.name !== 'paper' && (nPos > preset.perClass || nNeg > preset.perClass)) {
      notes.push(`preset ${preset.name} maps ${selPos} supernova and ${nSel - selPos} non-supernova stamps of the ${ds.shape[0]} in the data`);
    }
    if (preset.name === 'paper' && (nPos < preset.perClass || nNeg < preset.perClass)) {
      notes.push(`the data has ${nPos} supernova and ${nNeg} non-supernova stamps, fewer than the seed's 20,000 per class: every one is used`);
    }
    if (preset.epochs < 30) notes.push(`explainers trained for at most ${preset.epochs} epochs (the seed: up to 30 with early stopping)`);
    const clfTraining = (clfCard.training ?? {}) as { valAccuracy?: number; valBalancedAccuracy?: number; valConfusion?: number[][]; split?: { val?: number }; epochsRun?: number };
    const full: ExperimentResults = {
      schema: RESULTS_SCHEMA,
      preset: preset.name,
      presetDescription: preset.description,
      command,
      createdAt: new Date().toISOString(),
      seed,
      versions: versions(),
      settings: {
        batchSize: preset.batchSize,
        patience: preset.patience,
        valFraction: preset.valFraction,
        maxEpochs: preset.epochs,
        loss: 'mse',
        optimizer: 'adam',
        repeats: preset.repeats,
        occlusion: "the seed's: patch 3x3, stride 1, fill 0, pad 3, target = predicted class, score = probability, overlapping patches summed, per-map z-score clipped to [-1,1] then (x+1)/2",
      },
      data: {
        file: path.resolve(o.data),
        source: ds.meta.source,
        stamps: ds.shape[0],
        supernova: nPos,
        nonSupernova: nNeg,
        objects: ds.ids ? new Set(ds.ids).size : undefined,
        classes: ds.meta.classes,
        datasets: dataInfo,
      },
      classifier: {
        dir: o.classifier ? path.resolve(o.classifier) : rel(clfDir),
        trainedHere: !o.classifier,
        valAccuracy: clfTraining.valAccuracy,
        valBalancedAccuracy: clfTraining.valBalancedAccuracy,
        confusion: clfTraining.valConfusion,
        parameters: clfCard.parameters,
        heldOut: clfTraining.split?.val,
        epochs: clfTraining.epochsRun,
      },
      occlusion: {
        maps: nSel,
        inferencesPerMap: inferencesPerMap(SEED_PARAMS, mixed.shape[1], mixed.shape[2]),
        engine: (mixed.meta.occlusion as { engine?: string } | undefined)?.engine ?? occEngine,
        seconds: occSeconds,
        reused: mapsComputed === 0,
      },
      runs,
      ...results,
      examples,
      layers,
      timing,
      phases,
      wallSeconds: (performance.now() - tStart) / 1000,
      notes,
    };
    // Wall time per invocation, so a report rewritten by a rerun still tells what the study cost.
    const invFile = path.join(out, 'invocations.json');
    let invocations: Invocation[] = [];
    try {
      invocations = existsSync(invFile) ? JSON.parse(readFileSync(invFile, 'utf8')) : [];
    } catch {
      notes.push(`${invFile} was unreadable: earlier invocations are not listed`);
    }
    const current: Invocation = { startedAt, wallSeconds: 0, trained, evaluated, mapsComputed, classifierTrained, command };
    full.invocations = [...invocations, current];
    const finish = () => {
      current.wallSeconds = (performance.now() - tStart) / 1000;
      full.phases = phases;
      full.wallSeconds = current.wallSeconds;
    };
    finish();
    const files = await writeReport(full, out);
    phase('report');
    finish();
    await writeFileAtomic(files.json, JSON.stringify(full, null, 1) + '\n');
    await writeFileAtomic(invFile, JSON.stringify(full.invocations, null, 1) + '\n');
    return { results: full, trained, reused, evaluated, mapsComputed, classifierTrained, timingMeasured, files };
  } finally {
    clf?.dispose();
  }
}

function fmt(v: number | undefined, d = 3): string {
  return v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(d);
}

/** Train and held-out MSE (21x21, kept weights) and evaluate's held-out figures of one run. */
async function evaluateRun(dir: string, data: Dataset, dataFile: string, classifier: Predictor, steps: number): Promise<EvalCache> {
  const explainer = await loadExplainer(dir);
  try {
    const all = await evaluateExplainer({ explainer, data, dataFile, classifier, split: 'all', baselines: false, faithfulness: false });
    const valSet = new Set(explainer.card.split.valIndices);
    const perMap = all.methods[0].perMap.mse!;
    const tr: number[] = [];
    const va: number[] = [];
    const valIndices: number[] = [];
    all.indices.forEach((row, i) => {
      if (valSet.has(row)) {
        va.push(perMap[i]);
        valIndices.push(row);
      } else tr.push(perMap[i]);
    });
    const held = await evaluateExplainer({ explainer, data, dataFile, classifier, split: 'val', steps });
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    return {
      mse: { train: mean(tr), val: mean(va) },
      valIndices,
      valMse: va,
      metrics: {
        explainer: summaryOf(held, 'explainer')!,
        meanMap: summaryOf(held, 'meanMap'),
        snrSaliency: summaryOf(held, 'snrSaliency'),
        exactMap: summaryOf(held, 'exactMap'),
      },
    };
  } finally {
    explainer.dispose();
  }
}

/** The k lowest- and k highest-error held-out maps of a run, with input, exact and estimate. */
async function examplesOf(dir: string, data: Dataset, e: EvalCache, k: number): Promise<{ best: Example[]; worst: Example[] }> {
  const order = e.valIndices.map((row, i) => ({ row, mse: e.valMse[i] })).sort((a, b) => a.mse - b.mse);
  const best = order.slice(0, k);
  const worst = order.slice(-k).reverse().filter((x) => !best.includes(x));
  const picked = [...best, ...worst];
  const explainer = await loadExplainer(dir);
  try {
    const card = explainer.card;
    const [, h, w, c] = data.shape;
    const hw = h * w;
    const sub = subsetDataset(data, picked.map((p) => p.row));
    let labels: number[] | undefined;
    if (card.condition !== 'none') {
      const vt = card.split.valTargets ?? [];
      const pos = new Map(card.split.valIndices.map((r, i) => [r, vt[i]]));
      labels = picked.map((p) => pos.get(p.row) ?? 0);
    }
    const { maps } = await explainer.estimate(sub.images, sub.shape, labels);
    const ch = card.channels?.[0] ?? 0;
    const toExample = (p: { row: number; mse: number }, i: number): Example => ({
      index: p.row,
      id: data.ids?.[p.row],
      label: data.labels?.[p.row],
      mse: p.mse,
      input: Array.from({ length: hw }, (_, q) => round(sub.images[(i * hw + q) * c + ch])),
      exact: Array.from(sub.maps!.subarray(i * hw, (i + 1) * hw), round),
      estimate: Array.from(maps.subarray(i * hw, (i + 1) * hw), round),
    });
    return { best: best.map((p, i) => toExample(p, i)), worst: worst.map((p, i) => toExample(p, best.length + i)) };
  } finally {
    explainer.dispose();
  }
}

function round(v: number): number {
  return Math.round(v * 1e5) / 1e5;
}

/** Keras-summary-like rows of a saved explainer. */
async function layerRows(dir: string): Promise<LayerRow[]> {
  await initTf();
  const model = await loadModelDir(dir);
  try {
    return model.layers.map((l) => {
      const shape = l.outputShape as (number | null)[] | (number | null)[][];
      const one = (s: (number | null)[]) => `(${s.map((d) => (d === null ? 'None' : d)).join(', ')})`;
      return {
        name: l.name,
        type: l.getClassName(),
        outputShape: Array.isArray(shape[0]) ? (shape as (number | null)[][]).map(one).join(' ') : one(shape as (number | null)[]),
        params: l.countParams(),
        trainable: l.trainable,
      };
    });
  } finally {
    model.dispose();
  }
}

function runResult(s: RunSpec, dir: string, out: string, e: EvalCache): RunResult {
  const card = JSON.parse(readFileSync(path.join(dir, CARD_JSON), 'utf8'));
  const t = card.training ?? {};
  const pc = card.parameterCounts ?? { total: card.parameters, trainable: NaN, nonTrainable: NaN };
  return {
    name: s.name,
    experiments: s.experiments,
    variant: s.variant,
    condition: s.condition,
    cut: s.cut,
    data: s.data,
    seed: s.seed,
    dir: path.relative(out, dir),
    parameters: { total: pc.total, trainable: pc.trainable, nonTrainable: pc.nonTrainable },
    epochsRun: t.epochsRun,
    bestEpoch: t.bestEpoch,
    stoppedEarly: !!t.stoppedEarly,
    trainSeconds: t.wallSeconds,
    trainCount: card.split?.trainCount,
    valCount: card.split?.valCount,
    history: (t.history ?? []).map((h: { epoch: number; loss: number; valLoss: number }) => ({ epoch: h.epoch, loss: h.loss, valLoss: h.valLoss })),
    mse: e.mse,
    metrics: e.metrics,
  };
}

export { runName };
