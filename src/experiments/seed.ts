/**
 * The seed's study (docs/seed.md "Experiments", Exp. 1-4) on any labelled stamp dataset, as a
 * step graph (steps.ts) writing everything under one directory:
 *
 *   DIR/plan.json                 what this directory is a study of (refuses another)
 *   DIR/data/selection.npz        step selection: the stamps mapped (supernova + non-supernova, with ids)
 *   DIR/data/holdout.json         step holdout: the objects every model of the study holds out
 *   DIR/classifier/               step classifier (unless --classifier), holding out those objects
 *   DIR/data/maps-mixed.npz       step maps: their exact maps (resumable: maps-mixed.npz.shards/)
 *   DIR/data/maps-sn.npz, maps-nonsn.npz   steps maps-sn, maps-nonsn: the single-class datasets
 *   DIR/runs/<name>/              step run:<name>: one explainer per configuration
 *   DIR/evals/<name>.json         step eval:<name>: its held-out figures
 *   DIR/timing.json               step timing: exact vs estimated per map, measured once
 *   DIR/steps/<step>.json         each finished step's inputs and their hash
 *   DIR/results.json, report.md, index.html   always rewritten (cheap)
 *
 * A step whose output exists with matching inputs is skipped, so a rerun skips every finished
 * step, an interrupted one continues where it stopped, and a changed input reruns only what
 * depends on it. Steps are library calls (models/, occlusion/, explainer/), never the CLI.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { readDataset, subsetDataset, type Dataset } from '../data/dataset.js';
import { holdoutOfModelDir } from '../data/holdout.js';
import { loadExplainer, readExplainerCard } from '../explainer/estimate.js';
import { CARD_JSON, readCard, type ModelCard } from '../models/model-dir.js';
import { loadPredictor } from '../models/load.js';
import type { Predictor } from '../models/predictor.js';
import { SEED_PARAMS, inferencesPerMap } from '../occlusion/exact.js';
import { ensureDir, writeFileAtomic } from '../util/atomic.js';
import { fileError, OptionError } from '../util/errors.js';
import { refuseOutputOverInput } from '../util/paths.js';
import type { ProgressCallback } from '../util/progress.js';
import { occmapVersion } from '../util/version.js';
import { runName, type DataKey, type Preset } from './plan.js';
import { RESULTS_SCHEMA, type Invocation, type ExperimentResults, type TimingResult } from './results.js';
import { StepGraph, type Step } from './steps.js';
import { classifierStep, classMapsStep, holdoutStep, mapsStep, selectionStep, studyHoldout, type MapsValue, type StudyCtx } from './study-data.js';
import { layerRows, StudyRuns } from './study-runs.js';
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
  /** Progress of the long steps (the exact maps). */
  onProgress?: ProgressCallback;
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


/** Read and check the data, pin the directory to this study (plan.json): nothing is created on bad input. */
async function openStudy(o: RunExperimentsOptions, log: (s: string) => void): Promise<StudyCtx & { nPos: number; nNeg: number }> {
  const seed = o.seed ?? 0;
  if (!(Number.isInteger(seed) && seed >= 0)) throw new OptionError(['seed'], `must be a non-negative integer, got ${seed}`);
  const command = o.command ?? 'occmap experiments';
  // What the study writes under its directory: an input inside any of it would be overwritten.
  const owns = ['plan.json', 'data', 'runs', 'evals', 'steps', 'figures', 'index.html', 'report.md', 'results.json', 'timing.json', 'invocations.json', ...(o.classifier ? [] : ['classifier'])];
  refuseOutputOverInput([{ flag: '{data}', path: o.data }, { flag: '{classifier}', path: o.classifier }], [{ flag: '{out}', path: o.out, kind: 'tree', owns }]);
  if (!existsSync(o.data)) throw fileError(o.data, 'does not exist');
  if (o.classifier && !existsSync(path.join(o.classifier, CARD_JSON))) {
    throw fileError(o.classifier, "is not a classifier directory from 'occmap train-classifier' (no card.json)");
  }
  const ds = await readDataset(o.data);
  if (!ds.labels) throw fileError(o.data, 'has no labels: the study splits maps by class (1 = supernova, 0 = not)');
  for (let i = 0; i < ds.labels.length; i++) {
    if (ds.labels[i] > 1) throw fileError(o.data, `label ${ds.labels[i]} of stamp ${i}: the study needs binary labels (1 = supernova, 0 = not)`);
  }
  let nPos = 0;
  for (const l of ds.labels) nPos += l;
  const nNeg = ds.labels.length - nPos;
  if (nPos < 2 || nNeg < 2) throw fileError(o.data, `has ${nPos} supernova and ${nNeg} non-supernova stamps: the study needs at least 2 of each`);
  const dataIdentity = { data: path.resolve(o.data), dataBytes: statSync(o.data).size };
  const identity = { preset: o.preset.name, seed, ...dataIdentity, classifier: o.classifier ? path.resolve(o.classifier) : null };
  const planFile = path.join(o.out, 'plan.json');
  const continuing = checkPlanFile(planFile, identity);
  ensureDir(o.out);
  for (const d of ['data', 'runs', 'evals']) ensureDir(path.join(o.out, d));
  if (continuing) log(`experiments: continuing the study in ${o.out}`);
  else await writeFileAtomic(planFile, JSON.stringify({ ...identity, createdAt: new Date().toISOString(), command }, null, 2) + '\n');
  return { out: o.out, preset: o.preset, seed, command, quiet: o.quiet, log, onProgress: o.onProgress, data: o.data, ds, dataIdentity, nPos, nNeg };
}

/** Maps per dataset, held out, objects: the study's data table. */
function dataInfoOf(ctx: StudyCtx, datasets: Record<DataKey, Dataset>, holdoutIds: string[]): ExperimentResults['data']['datasets'] {
  const holdoutSet = new Set(holdoutIds);
  const info = {} as ExperimentResults['data']['datasets'];
  for (const k of DATA_KEYS) {
    const ids = datasets[k].ids!;
    const objects = new Set(ids);
    const heldOutObjects = [...objects].filter((g) => holdoutSet.has(g)).length;
    const heldOut = ids.filter((g) => holdoutSet.has(g)).length;
    if (heldOut === 0 || heldOut === ids.length) {
      throw fileError(ctx.data, `the ${k} dataset (${ids.length} maps of ${objects.size} objects) leaves ${heldOut === 0 ? 'nothing to hold out' : 'nothing to train on'}: too few objects`);
    }
    info[k] = { maps: ids.length, heldOut, objects: objects.size, heldOutObjects };
  }
  return info;
}

/** Exact vs estimated per map on the final run's held-out stamps (timing.json). */
function timingStep(ctx: StudyCtx, runs: StudyRuns, finalRun: string, runHash: string, datasets: Record<DataKey, Dataset>, maps: MapsValue, classifier: () => Promise<Predictor>): Step<TimingResult> {
  const file = path.join(ctx.out, 'timing.json');
  return {
    name: 'timing',
    inputs: { run: runHash, maps: ctx.preset.timingMaps },
    output: file,
    load: async () => JSON.parse(readFileSync(file, 'utf8')) as TimingResult,
    run: async () => {
      const card = readExplainerCard(runs.dir(finalRun));
      const d = datasets[runs.specs.get(finalRun)!.data];
      const rows = card.split.valIndices.slice(0, ctx.preset.timingMaps);
      const sub = subsetDataset(d, rows);
      ctx.log(`experiments: timing exact vs estimated maps on ${rows.length} held-out stamps (${finalRun})`);
      const explainer = await loadExplainer(runs.dir(finalRun));
      let timing: TimingResult;
      try {
        timing = await measureTiming(await classifier(), explainer, sub.images, sub.shape);
      } finally {
        explainer.dispose();
      }
      timing.occlusionJob = maps.job;
      await writeFileAtomic(file, JSON.stringify(timing, null, 2) + '\n');
      return timing;
    },
  };
}

/** Notes on how this study departs from the seed's sizes. */
function studyNotes(ctx: StudyCtx & { nPos: number; nNeg: number }, selection: Dataset): string[] {
  const { preset, nPos, nNeg } = ctx;
  const notes: string[] = [];
  let selPos = 0;
  for (const l of selection.labels!) selPos += l;
  const nSel = selection.shape[0];
  if (preset.name !== 'paper' && (nPos > preset.perClass || nNeg > preset.perClass)) {
    notes.push(`preset ${preset.name} maps ${selPos} supernova and ${nSel - selPos} non-supernova stamps of the ${ctx.ds.shape[0]} in the data`);
  }
  if (preset.name === 'paper' && (nPos < preset.perClass || nNeg < preset.perClass)) {
    notes.push(`the data has ${nPos} supernova and ${nNeg} non-supernova stamps, fewer than the seed's 20,000 per class: every one is used`);
  }
  if (preset.epochs < 30) notes.push(`explainers trained for at most ${preset.epochs} epochs (the seed: up to 30 with early stopping)`);
  return notes;
}

interface Assembly {
  ctx: StudyCtx & { nPos: number; nNeg: number };
  o: RunExperimentsOptions;
  clfDir: string;
  clfCard: ModelCard;
  clfHoldsOutStudy: boolean;
  selection: Dataset;
  maps: MapsValue;
  dataInfo: ExperimentResults['data']['datasets'];
  runs: StudyRuns;
  results: Partial<ExperimentResults>;
  examples: ExperimentResults['examples'];
  layers: ExperimentResults['layers'];
  timing: TimingResult;
  phases: Record<string, number>;
  tStart: number;
}

/** results.json: the whole study in one object (RESULTS_SCHEMA). */
function assembleResults(a: Assembly): ExperimentResults {
  const { ctx, o, clfCard, preset } = { ...a, preset: a.ctx.preset };
  const ds = ctx.ds;
  const mixed = a.maps.mixed;
  const clfTraining = (clfCard.training ?? {}) as { valAccuracy?: number; valBalancedAccuracy?: number; valConfusion?: number[][]; split?: { val?: number }; epochsRun?: number };
  return {
    schema: RESULTS_SCHEMA,
    preset: preset.name,
    presetDescription: preset.description,
    command: ctx.command,
    createdAt: new Date().toISOString(),
    seed: ctx.seed,
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
      supernova: ctx.nPos,
      nonSupernova: ctx.nNeg,
      objects: ds.ids ? new Set(ds.ids).size : undefined,
      classes: ds.meta.classes,
      datasets: a.dataInfo,
    },
    classifier: {
      dir: o.classifier ? path.resolve(o.classifier) : path.relative(ctx.out, a.clfDir) || '.',
      trainedHere: !o.classifier,
      valAccuracy: clfTraining.valAccuracy,
      valBalancedAccuracy: clfTraining.valBalancedAccuracy,
      confusion: clfTraining.valConfusion,
      parameters: clfCard.parameters,
      heldOut: clfTraining.split?.val,
      epochs: clfTraining.epochsRun,
      holdsOutStudyObjects: a.clfHoldsOutStudy,
    },
    occlusion: {
      maps: a.selection.shape[0],
      inferencesPerMap: inferencesPerMap(SEED_PARAMS, mixed.shape[1], mixed.shape[2]),
      engine: (mixed.meta.occlusion as { engine?: string } | undefined)?.engine ?? 'onnxruntime',
      seconds: a.maps.seconds,
      reused: a.maps.computed === 0,
    },
    runs: a.runs.rows(),
    ...a.results,
    examples: a.examples,
    layers: a.layers,
    timing: a.timing,
    phases: a.phases,
    wallSeconds: (performance.now() - a.tStart) / 1000,
    notes: studyNotes(ctx, a.selection),
  };
}

/** Write the report and results.json, keeping the wall time of every invocation (invocations.json). */
async function writeAll(full: ExperimentResults, out: string, current: Invocation, tStart: number, graph: StepGraph): Promise<{ html: string; markdown: string; json: string }> {
  const invFile = path.join(out, 'invocations.json');
  let invocations: Invocation[] = [];
  try {
    invocations = existsSync(invFile) ? JSON.parse(readFileSync(invFile, 'utf8')) : [];
  } catch {
    full.notes.push(`${invFile} was unreadable: earlier invocations are not listed`);
  }
  full.invocations = [...invocations, current];
  const finish = () => {
    current.wallSeconds = (performance.now() - tStart) / 1000;
    full.wallSeconds = current.wallSeconds;
  };
  finish();
  const t0 = performance.now();
  const files = await writeReport(full, out);
  full.phases.report = (performance.now() - t0) / 1000;
  finish();
  full.steps = { ran: graph.ran, seconds: graph.seconds };
  await writeFileAtomic(files.json, JSON.stringify(full, null, 1) + '\n');
  await writeFileAtomic(invFile, JSON.stringify(full.invocations, null, 1) + '\n');
  return files;
}

/** Seconds per phase of this invocation, from the steps' own times (same keys as before the step graph). */
function phasesOf(graph: StepGraph, t: Record<string, number>): Record<string, number> {
  const sum = (f: (name: string) => boolean) => Object.entries(graph.seconds).filter(([k]) => f(k)).reduce((a, [, v]) => a + v, 0);
  return {
    'read data': t.read,
    selection: sum((k) => k === 'selection' || k === 'holdout'),
    classifier: sum((k) => k === 'classifier'),
    'exact maps': sum((k) => k.startsWith('maps')),
    [t.demo ? 'explainer (train + evaluate)' : 'Exp 1-4 (train + evaluate)']: sum((k) => k.startsWith('run:') || k.startsWith('eval:')),
    examples: t.examples,
    timing: sum((k) => k === 'timing'),
  };
}

export async function runExperiments(o: RunExperimentsOptions): Promise<RunExperimentsSummary> {
  const tStart = performance.now();
  const startedAt = new Date().toISOString();
  const log = o.log ?? (() => {});
  const ctx = await openStudy(o, log);
  const tRead = (performance.now() - tStart) / 1000;
  const graph = new StepGraph(path.join(o.out, 'steps'), log);

  const sel = await graph.run(selectionStep(ctx));
  // A given classifier's held-out objects become the study's (when its card says which).
  const given = o.classifier ? await holdoutOfModelDir(o.classifier).catch(() => undefined) : undefined;
  if (given?.by === 'group') log(`experiments: holding out the objects the classifier ${o.classifier} held out`);
  const held = await graph.run(holdoutStep(ctx, sel.value, sel.hash, given));
  const holdout = studyHoldout(ctx, held.value);
  const clfDir = o.classifier ?? path.join(o.out, 'classifier');
  let clfCard: ModelCard;
  let classifierTrained = false;
  if (o.classifier) {
    clfCard = readCard(clfDir) as ModelCard;
    log(`experiments: classifier ${clfDir} (given)`);
  } else {
    const c = await graph.run(classifierStep(ctx, holdout, held.hash));
    if (!c.ran) log(`experiments: classifier ${clfDir} (trained by an earlier run)`);
    clfCard = c.value;
    classifierTrained = c.ran;
  }
  const clfHoldsOutStudy = await classifierHoldsOut(clfDir, held.value);
  const maps = await graph.run(mapsStep(ctx, clfDir, clfCard.hash, sel.value, sel.hash));
  if (!maps.ran) log(`experiments: exact maps found (${path.join(o.out, 'data', 'maps-mixed.npz')})`);
  const mixed = maps.value.mixed;
  const sn = await graph.run(classMapsStep(ctx, 'sn', mixed, maps.hash));
  const nonsn = await graph.run(classMapsStep(ctx, 'nonsn', mixed, maps.hash));
  const datasets: Record<DataKey, Dataset> = { mixed, sn: sn.value, nonsn: nonsn.value };
  const dataInfo = dataInfoOf(ctx, datasets, held.value);

  let clf: Predictor | undefined;
  const classifier = async () => (clf ??= await loadPredictor(clfDir));
  try {
    const runs = new StudyRuns(ctx, graph, { clfDir, clfHash: clfCard.hash, datasets, mapsHash: { mixed: maps.hash, sn: sn.hash, nonsn: nonsn.hash }, holdout, holdoutHash: held.hash, classifier });
    const { results, k, total } = await runs.stage1();
    if (o.preset.experiments.includes('exp4') && results.exp1 && results.exp2) results.exp4 = await runs.exp4(results, k, total);
    const t0 = performance.now();
    const examples = await runs.examples(results, mixed.shape[1], mixed.shape[2]);
    const tExamples = (performance.now() - t0) / 1000;
    const finalRun = results.exp4?.best ?? results.demo?.run ?? results.exp2?.best ?? results.exp1?.bestOverall ?? [...runs.specs.keys()][0];
    const timing = await graph.run(timingStep(ctx, runs, finalRun, graph.hashOf(`run:${finalRun}`)!, datasets, maps.value, classifier));
    const layers = { run: finalRun, rows: await layerRows(runs.dir(finalRun)) };
    const phases = phasesOf(graph, { read: tRead, examples: tExamples, demo: results.demo ? 1 : 0 });
    const full = assembleResults({ ctx, o, clfDir, clfCard, clfHoldsOutStudy, selection: sel.value, maps: maps.value, dataInfo, runs, results, examples, layers, timing: timing.value, phases, tStart });
    const mapsComputed = maps.value.computed;
    const current: Invocation = { startedAt, wallSeconds: 0, trained: runs.trained, evaluated: runs.evaluated, mapsComputed, classifierTrained, command: ctx.command };
    const files = await writeAll(full, o.out, current, tStart, graph);
    return { results: full, trained: runs.trained, reused: runs.reused, evaluated: runs.evaluated, mapsComputed, classifierTrained, timingMeasured: timing.ran, files };
  } finally {
    clf?.dispose();
  }
}

/** Does the classifier hold out every one of the study's held-out objects (per its card)? */
async function classifierHoldsOut(dir: string, ids: string[]): Promise<boolean> {
  try {
    const h = await holdoutOfModelDir(dir);
    const set = new Set(h.ids ?? h.rows?.map((r) => `row${r}`));
    return ids.every((g) => set.has(g));
  } catch {
    return false;
  }
}

export { runName };
