/**
 * `occmap evaluate --explainer DIR --data MAPS.npz`: how close an explainer's one-pass maps
 * are to the exact ones on the maps it never trained on, beside the mean-map and |SNR|
 * baselines. A thin shell over evaluateExplainer: files, the classifier, progress, the table
 * and the JSON.
 */
import { refuseOutputOverInput } from '../util/paths.js';
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { readDataset } from '../data/dataset.js';
import { hashFile } from '../models/model-dir.js';
import { fitToStamps, loadPredictor } from '../models/load.js';
import type { Predictor } from '../models/predictor.js';
import { inputMismatch } from '../occlusion/exact.js';
import { assertWritable, writeFileAtomic } from '../util/atomic.js';
import { fileError, UserError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import type { Summary } from '../metrics/maps.js';
import {
  evaluateExplainer,
  type EvaluatePhase,
  type EvaluationResult,
  type MethodName,
  type MethodResult,
  type MetricName,
} from '../explainer/evaluate.js';
import { int } from './options.js';

export interface EvaluateCliOptions {
  explainer: string;
  data: string;
  model?: string;
  out?: string;
  /** commander's --no-faithfulness / --no-baselines */
  faithfulness: boolean;
  baselines: boolean;
  split: string;
  limit?: string;
  steps: string;
  fraction: string;
  score?: string;
  snrCentre: string;
  engine: string;
  threads?: string;
  batchSize: string;
  quiet?: boolean;
}


function oneOf<T extends string>(name: string, text: string, values: readonly T[]): T {
  if (!(values as readonly string[]).includes(text)) throw new UserError(`--${name}: expected one of ${values.join('|')}, got '${text}'`);
  return text as T;
}

const LABELS: Record<MethodName, string> = {
  explainer: 'explainer',
  meanMap: 'mean map',
  snrSaliency: '|SNR diff|',
  exactMap: 'exact map',
};

const COLUMNS: { key: MetricName; title: string; digits: number }[] = [
  { key: 'mse', title: 'MSE', digits: 4 },
  { key: 'mae', title: 'MAE', digits: 4 },
  { key: 'ssim', title: 'SSIM', digits: 3 },
  { key: 'pearson', title: 'Pearson', digits: 3 },
  { key: 'spearman', title: 'Spearman', digits: 3 },
  { key: 'spearmanTop', title: 'Spearman@top', digits: 3 },
  { key: 'iou', title: 'IoU@top', digits: 3 },
  { key: 'deletion', title: 'deletion AUC', digits: 3 },
  { key: 'insertion', title: 'insertion AUC', digits: 3 },
];

function cell(s: Summary | undefined, digits: number): string {
  if (!s || s.n === 0) return '-';
  return `${s.mean.toFixed(digits)} +- ${s.std.toFixed(digits)}`;
}

/** Rows: methods (+ the exact map's own AUCs); columns: metrics as mean +- std. */
export function formatRows(rows: { name: MethodName; summary: MethodResult['summary'] }[], fraction: number): string {
  const cols = COLUMNS.filter((c) => rows.some((r) => r.summary[c.key]));
  const head = ['method', ...cols.map((c) => (c.key === 'iou' || c.key === 'spearmanTop' ? `${c.title.replace('@top', '')}@${Math.round(fraction * 100)}%` : c.title))];
  const body = rows.map((r) => [LABELS[r.name], ...cols.map((c) => cell(r.summary[c.key], c.digits))]);
  const widths = head.map((h, j) => Math.max(h.length, ...body.map((b) => b[j].length)));
  const line = (cells: string[]) => cells.map((x, j) => (j === 0 ? x.padEnd(widths[j]) : x.padStart(widths[j]))).join('  ');
  return [line(head), ...body.map(line)].join('\n');
}

/** The readable report: split, conventions, the table, per-class tables, uncertainty, notes. */
export function formatReport(r: EvaluationResult, classNames?: string[]): string {
  const out: string[] = [];
  const n = r.indices.length;
  const objects = r.objects === n ? '' : ` from ${r.objects} objects`;
  if (r.split === 'val') {
    out.push(`split: ${n} held-out maps${objects} (the explainer's validation split; it never trained on them); mean map from ${r.trainingMaps} training maps`);
  } else {
    out.push(`split: all ${n} maps${objects} (--split all: includes the ${r.trainingMaps} the explainer trained on)`);
  }
  out.push(
    `maps: score ${r.score} (important = ${r.score === 'prob' ? 'LOW' : 'high'} values); MSE/MAE/SSIM/correlations on ${r.normalisation.comparison}`,
  );
  if (r.steps !== undefined) {
    out.push(`deletion / insertion: ${r.steps} steps, removed pixels set to 0; lower deletion AUC and higher insertion AUC = more faithful; the exact map is the reference`);
  }
  if (r.snrChannel !== undefined) {
    out.push(`|SNR diff| baseline: |data channel ${r.snrChannel} - ${r.snrCentre === 'zero' ? '0' : "the stamp's median"}|, high = important; mean map: pixel mean of the training maps`);
  }
  const rows = r.exact ? [...r.methods, r.exact] : r.methods;
  out.push('', formatRows(rows, r.fraction));
  const classes = Object.keys(r.methods[0].byClass);
  for (const k of classes) {
    const name = classNames?.[Number(k)];
    const count = r.methods[0].byClass[k].mse?.n ?? 0;
    out.push('', `label ${k}${name ? ` (${name})` : ''}: ${count} maps`);
    const cr = rows.map((m) => ({ name: m.name, summary: m.byClass[k] }));
    out.push(formatRows(cr, r.fraction));
  }
  if (r.uncertainty) {
    const u = r.uncertainty;
    out.push(
      '',
      `uncertainty: Spearman(predicted std, |estimate - exact|) per map ${cell(u.summary, 3)}, pooled over all pixels ${u.pooled.toFixed(3)}`,
    );
  }
  if (r.notes.length) out.push('', ...r.notes.map((x) => `note: ${x}`));
  return out.join('\n') + '\n';
}

/** The classifier for deletion / insertion: --model, else the card's, resolved as given or beside the explainer. */
function classifierPath(explainerDir: string, fromCard: unknown, given?: string): string | undefined {
  if (given) return given;
  if (typeof fromCard !== 'string' || fromCard === '') return undefined;
  if (existsSync(fromCard)) return fromCard;
  const beside = path.resolve(explainerDir, fromCard);
  if (existsSync(beside)) return beside;
  throw fileError(fromCard, `the classifier named in ${path.join(explainerDir, 'card.json')} does not exist; pass --model CLASSIFIER or --no-faithfulness`);
}

export async function runEvaluate(o: EvaluateCliOptions): Promise<{ result: EvaluationResult; report: string }> {
  const split = oneOf('split', o.split, ['val', 'all'] as const);
  const steps = int('steps', o.steps, 1);
  const fraction = Number(o.fraction);
  if (o.fraction.trim() === '' || !(fraction > 0 && fraction <= 1)) throw new UserError(`--fraction: expected a number in (0, 1], got '${o.fraction}'`);
  const score = o.score === undefined ? undefined : oneOf('score', o.score, ['prob', 'drop'] as const);
  const snrCentre = oneOf('snr-centre', o.snrCentre, ['median', 'zero'] as const);
  const engine = oneOf('engine', o.engine, ['auto', 'onnx', 'tfjs'] as const);
  const threads = o.threads === undefined ? undefined : int('threads', o.threads, 1);
  const limit = o.limit === undefined ? undefined : int('limit', o.limit, 1);
  const batchSize = int('batch-size', o.batchSize, 1);
  refuseOutputOverInput(
    [{ flag: '--data', path: o.data }, { flag: '--explainer', path: o.explainer }, { flag: '--model', path: o.model }],
    [{ flag: '--out', path: o.out }],
  );
  if (o.out) await assertWritable(o.out);

  // Data first: a wrong file fails before any model is loaded.
  const ds = await readDataset(o.data);
  if (!ds.maps) throw fileError(o.data, "has no maps: evaluate compares with exact maps (an 'occmap occlude' output)");

  // Loaded on demand: the explainer module brings tfjs / ONNX Runtime with it.
  const { loadExplainer } = await import('../explainer/estimate.js');
  const explainer = await loadExplainer(o.explainer, { engine, threads });
  let classifier: Predictor | undefined;
  try {
    const card = explainer.card;
    const on = card.conditionOn ?? ds.meta.occlusion?.target ?? 'predicted';
    const needsPredictions = card.condition !== 'none' && on === 'predicted' && (split === 'all' || !Array.isArray(card.split.valTargets));
    const clfPath = o.faithfulness || needsPredictions ? classifierPath(o.explainer, card.classifier, o.model) : undefined;
    const notes: string[] = [];
    const trainedOn = (card.dataInfo as { sha256?: unknown } | undefined)?.sha256;
    if (typeof trainedOn === 'string' && trainedOn !== (await hashFile(o.data))) {
      notes.push(`${o.data} is not the file the explainer was trained on (${card.data}, other contents): its held-out indices may point at other stamps`);
    }
    if (clfPath) {
      // Deletion / insertion cost 2 x (steps+1) inferences per map and method: ONNX Runtime unless --engine tfjs.
      const pad = ds.meta.occlusion?.pad;
      classifier = fitToStamps(await loadPredictor(clfPath, { engine, threads }), ds.shape[1], ds.shape[2], typeof pad === 'number' ? pad : 0).predictor;
      const mismatch = inputMismatch(classifier, ds.shape);
      if (mismatch) throw fileError(clfPath, `${mismatch} (data ${o.data})`);
    }

    const progress = new Map<EvaluatePhase, { bar: Progress; shown: number }>();
    const onProgress = (phase: EvaluatePhase, done: number, total: number, perMap: number) => {
      let p = progress.get(phase);
      if (!p) {
        const label = phase === 'estimate' ? 'estimate' : `deletion/insertion (${perMap} classifier inferences/map)`;
        p = { bar: new Progress({ label, unit: 'maps', total, quiet: o.quiet }), shown: 0 };
        progress.set(phase, p);
      }
      p.bar.tick(done - p.shown);
      p.shown = done;
      if (done >= total) p.bar.stop();
    };
    const t0 = performance.now();
    const result = await evaluateExplainer({
      explainer,
      data: ds,
      dataFile: o.data,
      classifier,
      split,
      baselines: o.baselines,
      faithfulness: o.faithfulness,
      fraction,
      score,
      snrCentre,
      steps,
      limit,
      batchSize,
      onProgress,
    });
    const seconds = (performance.now() - t0) / 1000;
    result.notes.unshift(...notes);
    const report = formatReport(result, ds.meta.classes);
    if (o.out) {
      const doc = {
        kind: 'explainer-evaluation',
        createdAt: new Date().toISOString(),
        command: ['occmap', ...process.argv.slice(2)].join(' '),
        explainer: { dir: path.resolve(o.explainer), engine: explainer.engine, card },
        data: { file: path.resolve(o.data), shape: ds.shape, occlusion: ds.meta.occlusion ?? null },
        classifier: classifier ? { path: clfPath, engine: classifier.engine, hash: classifier.hash } : null,
        seconds,
        ...result,
      };
      await writeFileAtomic(o.out, JSON.stringify(doc, null, 1) + '\n');
    }
    return { result, report };
  } finally {
    classifier?.dispose();
    explainer.dispose();
  }
}

export function registerEvaluate(program: Command): void {
  program
    .command('evaluate')
    .description("score an explainer's one-pass maps against the exact maps on its held-out split, beside trivial baselines")
    .requiredOption('--explainer <dir>', "explainer directory from 'occmap train-explainer'")
    .requiredOption('--data <file>', "maps dataset .npz ('occmap occlude' output) the explainer was trained on")
    .option('--model <path>', "classifier for deletion / insertion (default: the one in the explainer's card)")
    .option('--out <file>', 'write every figure, per map and summarised, as JSON')
    .option('--split <val|all>', "val: the card's held-out maps; all: every map (includes training maps)", 'val')
    .option('--limit <n>', 'evaluate only the first n maps of the split')
    .option('--no-faithfulness', 'skip deletion / insertion (no classifier needed)')
    .option('--no-baselines', 'skip the mean-map and |SNR| baselines')
    .option('--steps <n>', 'deletion / insertion steps (each map costs 2 x (steps+1) inferences per method)', '20')
    .option('--fraction <x>', 'top fraction of pixels for the IoU', '0.1')
    .option('--score <prob|drop>', "how the maps were scored (default: the data's meta.occlusion.score)")
    .option('--snr-centre <zero|median>', "|SNR| baseline: |x| as stored, or |x - the stamp's median| (its sky level: occmap's stamps are min-max scaled per stamp)", 'zero')
    .option('--engine <auto|onnx|tfjs>', 'inference engine for the explainer and the classifier', 'auto')
    .option('--threads <n>', 'ONNX Runtime threads')
    .option('--batch-size <n>', 'maps per explainer call', '256')
    .option('--quiet', 'no progress output')
    .addHelpText(
      'after',
      `
Metrics per map, then mean +- std (population), overall and per label: MSE and MAE (on
seed-normalised maps, as the seed reported), SSIM (scikit-image defaults, 7x7 window),
Pearson and Spearman correlation, IoU of the top 10% most important pixels (with score prob
those are the LOWEST map values), deletion / insertion AUC (classifier probability of the
explained class as pixels are removed / inserted in order of importance; removed = 0). The
same for two baselines: the mean training map, and |SNR difference| as saliency (|x| of the
channel as stored; seed-normalised and flipped for prob maps so important = low). Ensembles (--ensemble K at training)
also get the rank correlation between the predicted per-pixel std and the actual error.

Examples:
  occmap evaluate --explainer expl --data maps.npz
  occmap evaluate --explainer expl --data maps.npz --model clf --out results.json
  occmap evaluate --explainer expl --data maps.npz --no-faithfulness --limit 100
  occmap evaluate --explainer expl --data maps.npz --split all --steps 10`,
    )
    .action(async (o: EvaluateCliOptions) => {
      const { report } = await runEvaluate(o);
      process.stdout.write(report);
      if (o.out) process.stderr.write(`evaluate: wrote ${o.out}\n`);
    });
}
