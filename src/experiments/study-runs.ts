/**
 * The explainer steps of the study: one training step (DIR/runs/<name>/) and one evaluation
 * step (DIR/evals/<name>.json) per planned configuration, the choice of the finalists (Exp. 1-4),
 * the featured examples, the layer table and each run's row of results.json.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { subsetDataset, type Dataset } from '../data/dataset.js';
import type { Holdout } from '../data/holdout.js';
import { evaluateExplainer, type EvaluationResult, type MethodName } from '../explainer/evaluate.js';
import { loadExplainer } from '../explainer/estimate.js';
import { trainExplainer } from '../explainer/train.js';
import { CARD_JSON, loadModelDir, readCard } from '../models/model-dir.js';
import { fileError } from '../util/errors.js';
import type { Predictor } from '../models/predictor.js';
import { initTf } from '../runtime/tfjs.js';
import { writeFileAtomic } from '../util/atomic.js';
import { formatDuration } from '../util/progress.js';
import { mapsFile, type StudyCtx } from './study-data.js';
import { meanStd, pickBest, planExp4, planStage1, type DataKey, type RunConfig, type RunSpec } from './plan.js';
import type { Example, ExperimentResults, LayerRow, MethodMetrics, RunResult } from './results.js';
import type { StepGraph } from './steps.js';

/** Evaluation cache: what one run's held-out figures are, without the per-map arrays. */
export interface EvalCache {
  mse: { train: number; val: number };
  valIndices: number[];
  valMse: number[];
  metrics: RunResult['metrics'];
}

/** What the run steps share: the maps, the held-out set and the classifier, with their step hashes. */
export interface RunInputs {
  clfDir: string;
  clfHash?: string;
  datasets: Record<DataKey, Dataset>;
  mapsHash: Record<DataKey, string>;
  holdout: Holdout;
  holdoutHash: string;
  classifier: () => Promise<Predictor>;
}

function fmt(v: number | undefined, d = 3): string {
  return v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(d);
}

function summaryOf(r: EvaluationResult, name: MethodName): MethodMetrics | undefined {
  const m = r.methods.find((x) => x.name === name) ?? (name === 'exactMap' ? r.exact : undefined);
  if (!m) return undefined;
  const out: MethodMetrics = {};
  for (const [k, s] of Object.entries(m.summary)) if (s) (out as Record<string, unknown>)[k] = { mean: s.mean, std: s.std, n: s.n };
  return out;
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

/** The planned runs of one study: each trained and evaluated once, as steps of the graph. */
export class StudyRuns {
  readonly specs = new Map<string, RunSpec>();
  readonly evals = new Map<string, EvalCache>();
  trained = 0;
  reused = 0;
  evaluated = 0;
  private readonly runSeconds: number[] = [];

  constructor(
    private readonly ctx: StudyCtx,
    private readonly graph: StepGraph,
    private readonly inp: RunInputs,
  ) {}

  dir(name: string): string {
    return path.join(this.ctx.out, 'runs', name);
  }

  private trainStep(r: RunSpec, tag: string) {
    const { ctx, inp } = this;
    const { preset } = ctx;
    const dir = this.dir(r.name);
    const settings = { variant: r.variant, condition: r.condition, cut: r.cut, seed: r.seed, epochs: preset.epochs, batchSize: preset.batchSize, patience: preset.patience, valFraction: preset.valFraction };
    return {
      name: `run:${r.name}`,
      inputs: { ...settings, maps: inp.mapsHash[r.data], holdout: inp.holdoutHash, classifier: inp.clfHash ?? null },
      output: dir,
      keepStale: true,
      adopt: async () => existsSync(path.join(dir, CARD_JSON)),
      load: async () => {
        this.reused++;
        ctx.log(`${tag} ${r.name} (${this.tags(r)}): done earlier`);
      },
      run: async () => {
        const avg = this.runSeconds.length ? this.runSeconds.reduce((a, b) => a + b, 0) / this.runSeconds.length : NaN;
        ctx.log(`${tag} training ${r.name} (${this.tags(r)}) on ${inp.datasets[r.data].shape[0]} maps` + (this.runSeconds.length ? `; ~${formatDuration(avg)} per run so far` : ''));
        const t0 = performance.now();
        await trainExplainer({ data: mapsFile(ctx, r.data), out: dir, checkpoint: `${dir}.checkpoint`, classifier: inp.clfDir, ...settings, holdout: inp.holdout, force: true, quiet: true, log: (s) => ctx.log(`    ${s}`), command: ctx.command });
        this.runSeconds.push((performance.now() - t0) / 1000);
        this.trained++;
      },
    };
  }

  private evalStep(r: RunSpec, runHash: string) {
    const { ctx, inp } = this;
    const file = path.join(ctx.out, 'evals', `${r.name}.json`);
    return {
      name: `eval:${r.name}`,
      inputs: { run: runHash, steps: ctx.preset.steps },
      output: file,
      load: async () => JSON.parse(readFileSync(file, 'utf8')) as EvalCache,
      run: async () => {
        const e = await evaluateRun(this.dir(r.name), inp.datasets[r.data], mapsFile(ctx, r.data), await inp.classifier(), ctx.preset.steps);
        await writeFileAtomic(file, JSON.stringify(e) + '\n');
        this.evaluated++;
        const x = e.metrics.explainer;
        ctx.log(`    held out: MSE ${e.mse.val.toFixed(5)} (train ${e.mse.train.toFixed(5)}), SSIM ${fmt(x.ssim?.mean)}, Spearman ${fmt(x.spearman?.mean)}, top-10% IoU ${fmt(x.iou?.mean)}`);
        return e;
      },
    };
  }

  private tags(r: RunSpec): string {
    return r.experiments.map((t) => t.replace('exp', 'Exp ')).join(', ');
  }

  /** Train (or find) and evaluate run `r`, the k-th of `total`. */
  async ensure(r: RunSpec, k: number, total: number): Promise<void> {
    const have = this.specs.get(r.name);
    if (have) {
      // Planned again by a later experiment (Exp 4's first seed): trained and evaluated already.
      for (const t of r.experiments) if (!have.experiments.includes(t)) have.experiments.push(t);
      return;
    }
    this.specs.set(r.name, { ...r, experiments: [...r.experiments] });
    const trained = await this.graph.run(this.trainStep(r, `[${k}/${total}]`));
    const e = await this.graph.run(this.evalStep(r, trained.hash));
    this.evals.set(r.name, e.value);
  }

  private val(name: string): number | undefined {
    return this.evals.get(name)?.mse.val;
  }

  private byTag(tag: string, f: (r: RunSpec) => boolean = () => true): RunSpec[] {
    return [...this.specs.values()].filter((r) => r.experiments.includes(tag as RunSpec['experiments'][number]) && f(r));
  }

  /** Exp. 1-3 (or the demo run): every stage-1 run, then the winners. */
  async stage1(): Promise<{ results: Partial<ExperimentResults>; k: number; total: number }> {
    const { preset, seed } = this.ctx;
    const plan = planStage1(preset, seed);
    const exps = new Set(preset.experiments);
    const total = plan.length + (exps.has('exp4') ? 2 * (preset.repeats - 1) : 0);
    let k = 0;
    for (const r of plan) await this.ensure(r, ++k, total);
    const best = (runs: RunSpec[]) => pickBest(runs, (r) => this.val(r.name)).name;
    const results: Partial<ExperimentResults> = {};
    if (exps.has('exp1')) {
      results.exp1 = { bestSn: best(this.byTag('exp1', (r) => r.data === 'sn')), bestNonSn: best(this.byTag('exp1', (r) => r.data === 'nonsn')), bestOverall: best(this.byTag('exp1')) };
    }
    if (exps.has('exp2')) results.exp2 = { best: best(this.byTag('exp2')) };
    if (exps.has('exp3')) {
      const runs = this.byTag('exp3').sort((a, b) => a.cut - b.cut);
      results.exp3 = { runs: runs.map((r) => r.name), best: best(runs) };
    }
    if (exps.has('demo')) results.demo = { run: this.byTag('demo')[0].name };
    return { results, k, total };
  }

  /** Exp. 4: the finalists trained again with other seeds; mean and std of their MSE. */
  async exp4(results: Partial<ExperimentResults>, k: number, total: number): Promise<ExperimentResults['exp4']> {
    const cfg = (name: string): RunConfig => {
      const s = this.specs.get(name)!;
      return { variant: s.variant, condition: s.condition, cut: s.cut, data: s.data, seed: s.seed };
    };
    const groups = planExp4(cfg(results.exp1!.bestSn), cfg(results.exp2!.best), this.ctx.seed, this.ctx.preset.repeats);
    for (const g of groups) for (const r of g.runs) await this.ensure(r, this.specs.has(r.name) ? k : ++k, total);
    const stats = groups.map((g) => {
      const e = g.runs.map((r) => this.evals.get(r.name)!);
      return { key: g.key, base: g.base, runs: g.runs.map((r) => r.name), train: meanStd(e.map((x) => x.mse.train)), val: meanStd(e.map((x) => x.mse.val)) };
    });
    const best = stats.reduce((a, b) => (b.val.mean < a.val.mean ? b : a));
    return { groups: stats, best: best.base };
  }

  /** Best and worst held-out examples of the featured runs. */
  async examples(results: Partial<ExperimentResults>, h: number, w: number): Promise<ExperimentResults['examples']> {
    const featured: { run: string; title: string }[] = [];
    if (results.exp1) {
      featured.push({ run: results.exp1.bestSn, title: 'Best Exp. 1 model on supernova data' });
      featured.push({ run: results.exp1.bestNonSn, title: 'Best Exp. 1 model on non-supernova data' });
    }
    if (results.demo) featured.push({ run: results.demo.run, title: 'The demo explainer' });
    const out: ExperimentResults['examples'] = [];
    for (const f of featured) {
      const s = this.specs.get(f.run)!;
      const ex = await examplesOf(this.dir(f.run), this.inp.datasets[s.data], this.evals.get(f.run)!, 2);
      out.push({ run: f.run, title: f.title, ...ex, h, w });
    }
    return out;
  }

  rows(): RunResult[] {
    return [...this.specs.values()].map((s) => runResult(s, this.dir(s.name), this.ctx.out, this.evals.get(s.name)!));
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
      channel: (card.channelNames as string[] | undefined)?.[0] ?? data.meta.channels?.[ch],
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
export async function layerRows(dir: string): Promise<LayerRow[]> {
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
  const card = readCard(dir) as Record<string, any> | undefined; // training fields read as train-explainer wrote them
  if (!card) throw fileError(dir, 'has no card.json (the run did not finish)');
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
