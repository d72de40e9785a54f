/**
 * The data steps of the study (experiments/seed.ts): the stamps to map, the held-out objects,
 * the classifier, the exact maps and the single-class map datasets. Each is a Step of the
 * study's graph (steps.ts): inputs, an output path, run and load; library calls only.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { readDataset, subsetDataset, writeDataset, type Dataset } from '../data/dataset.js';
import { holdoutOfIds, type Holdout } from '../data/holdout.js';
import { readCard, type ModelCard } from '../models/model-dir.js';
import { trainClassifier } from '../models/train-classifier.js';
import { DEFAULT_BATCH_SIZE, SEED_PARAMS, inferencesPerMap } from '../occlusion/exact.js';
import { occludeDataset } from '../occlusion/job.js';
import { writeFileAtomic } from '../util/atomic.js';
import { Rng } from '../util/rng.js';
import type { ProgressCallback } from '../util/progress.js';
import { commonHoldout, selectStamps, type DataKey, type Preset } from './plan.js';
import type { Step } from './steps.js';
import type { TimingResult } from './results.js';

/** What every step of one study reads. */
export interface StudyCtx {
  out: string;
  preset: Preset;
  seed: number;
  command: string;
  quiet?: boolean;
  log: (line: string) => void;
  onProgress?: ProgressCallback;
  /** The input data, read and checked. */
  data: string;
  ds: Dataset;
  /** path, size: what the data steps depend on (plan.json pins the same). */
  dataIdentity: Record<string, unknown>;
}

export const mapsFile = (ctx: StudyCtx, k: DataKey): string => path.join(ctx.out, 'data', `maps-${k}.npz`);

/** The supernova and non-supernova stamps the study maps (data/selection.npz). */
export function selectionStep(ctx: StudyCtx): Step<Dataset> {
  const { ds, preset, seed } = ctx;
  const file = path.join(ctx.out, 'data', 'selection.npz');
  return {
    name: 'selection',
    inputs: { data: ctx.dataIdentity, perClass: preset.perClass, equalClasses: preset.equalClasses, seed },
    output: file,
    load: () => readDataset(file),
    run: async () => {
      const rng = new Rng(seed ^ 0x5e1ec7);
      const pick = selectStamps(ds.labels!, preset, (a) => rng.shuffle(a));
      const rows = [...pick.sn, ...pick.nonsn].sort((a, b) => a - b);
      const selection = subsetDataset(ds, rows);
      selection.ids = ds.ids ? rows.map((r) => ds.ids![r]) : rows.map((r) => `row${r}`);
      selection.meta = {
        ...ds.meta,
        selection: {
          from: path.resolve(ctx.data),
          preset: preset.name,
          seed,
          supernova: pick.sn.length,
          nonSupernova: pick.nonsn.length,
          rows,
          ids: ds.ids ? 'from the data' : 'none in the data: each stamp is its own object (row<N>)',
        },
        command: ctx.command,
      };
      await writeDataset(file, selection);
      return selection;
    },
  };
}

/**
 * The study's one held-out set of objects (data/holdout.json): a share of each class's
 * objects; or, with a given classifier that held objects out (`given`, from its card), exactly
 * those of them the selection holds, so every explainer is judged on objects neither the
 * classifier nor the explainer trained on.
 */
export function holdoutStep(ctx: StudyCtx, selection: Dataset, selectionHash: string, given?: Holdout): Step<string[]> {
  const file = path.join(ctx.out, 'data', 'holdout.json');
  const { valFraction } = ctx.preset;
  const fromClassifier = given?.by === 'group' && given.ids ? given : undefined;
  return {
    name: 'holdout',
    inputs: { selection: selectionHash, valFraction, seed: ctx.seed, ...(fromClassifier ? { classifierHoldout: fromClassifier.ids } : {}) },
    output: file,
    load: async () => (JSON.parse(readFileSync(file, 'utf8')) as { ids: string[] }).ids,
    run: async () => {
      let ids: string[];
      if (fromClassifier) {
        const held = new Set(fromClassifier.ids);
        ids = [...new Set(selection.ids!.filter((g) => held.has(g)))].sort();
        if (ids.length === 0) throw new Error(`the classifier holds out none of the selected objects (${fromClassifier.source})`);
      } else ids = commonHoldout(selection.ids!, selection.labels!, valFraction, ctx.seed);
      const source = fromClassifier ? { from: fromClassifier.source } : { valFraction, seed: ctx.seed };
      await writeFileAtomic(file, JSON.stringify({ ...source, ids }, null, 2) + '\n');
      return ids;
    },
  };
}

/** Does `ds` already hold exact maps of this classifier with these parameters (maps made by occlude)? */
export function mapsMadeBy(ds: Dataset, clfHash: string | undefined, params: Record<string, unknown>): boolean {
  const occ = ds.meta.occlusion as Record<string, unknown> | undefined;
  if (!ds.maps || !occ || !clfHash || occ.modelHash !== clfHash || occ.method !== 'exact') return false;
  return Object.entries(params).every(([k, v]) => JSON.stringify(occ[k]) === JSON.stringify(v));
}

/**
 * The held-out set over the whole input data: every stamp of a held-out object (rows of the
 * data when it has no ids, the selection naming them row<N>).
 */
export function studyHoldout(ctx: StudyCtx, ids: string[]): Holdout {
  const source = "occmap experiments: the study's common held-out objects (data/holdout.json)";
  if (ctx.ds.ids) return holdoutOfIds(ids, source);
  return { by: 'item', rows: ids.map((g) => Number(g.slice(3))).sort((a, b) => a - b), source };
}

/**
 * The classifier (DIR/classifier/), holding out the study's objects: the explainers are then
 * judged on objects neither model saw.
 */
export function classifierStep(ctx: StudyCtx, holdout: Holdout, holdoutHash: string): Step<ModelCard> {
  const { preset, seed } = ctx;
  const dir = path.join(ctx.out, 'classifier');
  const settings = { epochs: preset.classifierEpochs, batchSize: preset.batchSize, patience: preset.patience, valFraction: preset.valFraction, activation: 'relu', pad: 3, lr: 0.001 } as const;
  return {
    name: 'classifier',
    inputs: { data: ctx.dataIdentity, ...settings, seed, holdout: holdoutHash },
    output: dir,
    load: async () => readCard(dir) as ModelCard,
    keepStale: true,
    run: async () => {
      ctx.log(`experiments: training the classifier on ${ctx.ds.shape[0]} stamps (up to ${preset.classifierEpochs} epochs) -> ${dir}`);
      const t = await trainClassifier({ data: ctx.data, out: dir, checkpoint: `${dir}.checkpoint`, force: existsSync(dir), ...settings, seed, holdout, backend: 'auto', command: ctx.command, log: (s) => ctx.log(`    ${s}`) });
      t.model.dispose();
      return readCard(dir) as ModelCard;
    },
  };
}

export interface MapsValue {
  mixed: Dataset;
  /** This invocation's occlusion job (null: the maps were there). */
  job: TimingResult['occlusionJob'];
  computed: number;
  seconds?: number;
}

/** Exact maps of the selection (data/maps-mixed.npz; resumable through its shards). */
export function mapsStep(ctx: StudyCtx, clfDir: string, clfHash: string | undefined, selection: Dataset, selectionHash: string): Step<MapsValue> {
  const file = mapsFile(ctx, 'mixed');
  return {
    name: 'maps',
    inputs: { classifier: clfHash ?? null, selection: selectionHash, params: SEED_PARAMS, batchSize: DEFAULT_BATCH_SIZE },
    output: file,
    load: async () => ({ mixed: await readDataset(file), job: null, computed: 0 }),
    // a study directory from before the stamps: its maps stand when they are of this classifier and selection
    adopt: async () => {
      const m = await readDataset(file);
      return !!m.maps && m.shape[0] === selection.shape[0] && (m.meta.occlusion as { modelHash?: string } | undefined)?.modelHash === clfHash;
    },
    run: async () => {
      const n = selection.shape[0];
      if (mapsMadeBy(selection, clfHash, { ...SEED_PARAMS })) {
        // The data came with this classifier's maps (e.g. occlude's output): no need to redo them.
        ctx.log(`experiments: the data holds exact maps of ${n} stamps by this classifier (seed parameters): used as they are`);
        const mixed: Dataset = { ...selection, meta: { ...selection.meta, command: ctx.command } };
        await writeDataset(file, mixed);
        return { mixed, job: null, computed: 0 };
      }
      ctx.log(`experiments: exact maps of ${n} stamps (${inferencesPerMap(SEED_PARAMS, selection.shape[1], selection.shape[2])} classifier inferences each)`);
      const { dataset, summary: s } = await occludeDataset({
        model: clfDir,
        data: path.join(ctx.out, 'data', 'selection.npz'),
        out: file,
        params: SEED_PARAMS,
        batchSize: DEFAULT_BATCH_SIZE,
        workers: 1,
        resume: true,
        engine: 'auto',
        command: ctx.command,
        onProgress: ctx.onProgress,
        log: (line, level) => {
          if (level === 'warning' || !ctx.quiet) ctx.log(`occlude: ${line}`);
        },
      });
      ctx.log(`experiments: ${s.computed} maps computed${s.reused ? `, ${s.reused} from earlier shards` : ''} in ${s.seconds.toFixed(1)} s (${s.engine})`);
      const job = s.computed > 0 ? { maps: s.computed, seconds: s.seconds, mapsPerSecond: s.mapsPerSecond, inferencesPerSecond: s.inferencesPerSecond } : null;
      return { mixed: dataset, job, computed: s.computed, seconds: s.seconds };
    },
  };
}

/** The supernova-only (label 1) or non-supernova-only (label 0) maps. */
export function classMapsStep(ctx: StudyCtx, k: 'sn' | 'nonsn', mixed: Dataset, mapsHash: string): Step<Dataset> {
  const file = mapsFile(ctx, k);
  const label = k === 'sn' ? 1 : 0;
  return {
    name: `maps-${k}`,
    inputs: { maps: mapsHash, label },
    output: file,
    load: () => readDataset(file),
    run: async () => {
      const rows: number[] = [];
      mixed.labels!.forEach((l, i) => l === label && rows.push(i));
      const d = subsetDataset(mixed, rows);
      await writeDataset(file, d);
      return d;
    },
  };
}
