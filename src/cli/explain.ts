/**
 * `occmap explain --explainer DIR --input FILE`: one-pass occlusion-map estimates for one stamp
 * or a whole dataset; optionally the exact maps beside them (`--exact --model CLF`) with both
 * timings and the metrics between them.
 */
import { refuseOutputOverInput } from '../util/paths.js';
import type { Command } from 'commander';
import path from 'node:path';
import { readInput } from '../data/stamp-file.js';
import { expectFromCard } from '../data/stamps.js';
import { serializeNpy } from '../data/npy.js';
import { serializeNpz, type NpzEntry } from '../data/npz.js';
import { loadExplainer, occlusionParamsOf, readExplainerCard, type Explainer } from '../explainer/estimate.js';
import { compareMaps, importanceOf, type MapComparison } from '../metrics/compare.js';
import { fitToStamps, loadPredictor } from '../models/load.js';
import { pretrained } from '../models/pretrained.js';
import { classNames } from '../models/condition.js';
import { toRows } from '../serve/stamp.js';
import { argmaxRows, selectChannels, type Predictor } from '../models/predictor.js';
import { exactMaps, type RawMaps } from '../occlusion/exact.js';
import { assertWritable, writeFileAtomic } from '../util/atomic.js';
import { fileError, UserError } from '../util/errors.js';
import { int } from './options.js';
import { heatmapPng, finiteRange, type Panel } from '../viz/heatmap.js';

const EXAMPLES = `
Examples:
  $ occmap explain --explainer expl --input maps.npz --index 7
      the estimated map of stamp 7 -> maps-explained.npz + maps-explained.png (heatmap, colour bar)
  $ occmap explain --explainer expl --input maps.npz --index 7 --exact --model clf
      also the exact map (one classifier inference per patch position): timings and the metrics between them
  $ occmap explain --explainer expl --input hits.npz --out est.npz
      every stamp of a dataset (maps (N,H,W), + std for an ensemble)
  $ occmap explain --explainer expl --input stamp.npy --out est.npy
      one stamp (H,W) or (H,W,C), or a stack (N,H,W) / (N,H,W,C); .npy output holds the maps only
  $ occmap explain --explainer expl --input stamp.png --label 1
      a single-channel (greyscale) PNG, values = grey / 255 (16-bit: / 65535)

Conditioned explainers need the class each map is drawn for: --label K, else the data's
labels, else the classifier's predicted class (--model CLF). When the explainer was trained
on maps of the predicted class and --model is given, the prediction is used.`;

export interface ExplainCliOptions {
  /** Default: the pretrained models (models/hits2015), classifier included. */
  explainer?: string;
  input: string;
  out?: string;
  png?: string;
  index?: string;
  label?: string;
  exact?: boolean;
  model?: string;
  engine: string;
  threads?: string;
  scale?: string;
  quiet?: boolean;
}

/** No explainer given: the shipped models, explainer and classifier. */
function withPretrained(o: ExplainCliOptions): { explainer: string; model?: string } {
  if (o.explainer) return { explainer: o.explainer, model: o.model };
  const p = pretrained();
  if (!o.quiet) process.stderr.write(`explain: using the pretrained HiTS 2015 models (${path.relative(process.cwd(), p.card) || p.card})\n`);
  return { explainer: p.explainer, model: o.model ?? p.classifier };
}

function defaultOut(input: string): string {
  return `${path.basename(input).replace(/\.[^.]+$/, '')}-explained.npz`;
}

export interface ExplainSummary {
  n: number;
  out: string;
  png?: string;
  engine: string;
  msPerMap: number;
  exact?: { msPerMap: number; engine: string } & MapComparison;
  labels?: Int32Array;
  labelSource?: string;
  /** Class probabilities per stamp (n x classes) when a classifier ran. */
  probabilities?: Float32Array;
  classes: string[];
  ids?: string[];
  /** The explainer used (the pretrained one when none was given). */
  explainer: string;
}

/** What a map's values mean: stored with every output. */
export const MAP_LEGEND = "occlusion map in the seed's units (0-1): the classifier's probability of the explained class when a 3x3 patch around the pixel is set to 0, z-scored per map; LOW = important";

/** The stamps, sliced to --index, and where each output goes; every check before any work. */
interface ExplainInput {
  images: Float32Array;
  shape: [number, number, number, number];
  labels?: Int32Array;
  ids?: string[];
  out: string;
  outExt: string;
  pngOut?: string;
  index?: number;
}

async function explainInput(o: ExplainCliOptions & { explainer: string }): Promise<ExplainInput> {
  if (o.exact && !o.model) throw new UserError('--exact needs the classifier: --model DIR');
  if (o.scale !== undefined && o.scale !== 'none' && o.scale !== 'minmax') throw new UserError(`--scale must be none or minmax, got '${o.scale}'`);
  const out = o.out ?? defaultOut(o.input);
  const outExt = path.extname(out).toLowerCase();
  if (outExt !== '.npz' && outExt !== '.npy' && outExt !== '.json') throw fileError(out, 'output must end in .npz (maps, probabilities, classes, ...), .json (the same as lists) or .npy (maps only)');
  const index = o.index !== undefined ? int('--index', o.index, 0) : undefined;
  const inputs = [{ flag: '--input', path: o.input }, { flag: '--explainer', path: o.explainer }, { flag: '--model', path: o.model }];
  refuseOutputOverInput(inputs, [{ flag: '--out', path: out }, { flag: '--png', path: o.png }]);
  await assertWritable(out);
  const expect = expectFromCard(readExplainerCard(o.explainer) as unknown as Record<string, unknown>, `the explainer ${o.explainer}`);
  const input = await readInput(o.input, { expect, scale: o.scale === 'minmax' ? 'minmax' : 'none' });
  for (const w of input.warnings) process.stderr.write(`explain: warning: ${o.input}: ${w}\n`);
  let { images, shape } = input;
  let labels = input.labels;
  if (index !== undefined) {
    if (index >= shape[0]) throw fileError(o.input, `has ${shape[0]} stamp(s): --index ${index} is out of range`);
    const item = shape[1] * shape[2] * shape[3];
    images = images.slice(index * item, (index + 1) * item);
    shape = [1, shape[1], shape[2], shape[3]];
    labels = labels ? labels.slice(index, index + 1) : undefined;
  }
  const single = shape[0] === 1;
  const pngOut = single ? (o.png ?? out.replace(/\.[^.]+$/, '') + '.png') : o.png;
  if (o.png && !single) throw new UserError('--png draws one stamp: pick it with --index');
  if (pngOut) {
    refuseOutputOverInput([...inputs, { flag: '--out', path: out }], [{ flag: '--png', path: pngOut }]);
    await assertWritable(pngOut);
  }
  const ids = input.ids && index !== undefined ? input.ids.slice(index, index + 1) : input.ids;
  return { images, shape, labels, ids, out, outExt, pngOut, index };
}

export async function runExplain(opts: ExplainCliOptions): Promise<ExplainSummary> {
  const o = { ...opts, ...withPretrained(opts) };
  const engine = o.engine as 'auto' | 'onnx' | 'tfjs';
  if (!['auto', 'onnx', 'tfjs'].includes(engine)) throw new UserError(`--engine must be auto, onnx or tfjs, got '${o.engine}'`);
  const threads = o.threads !== undefined ? int('--threads', o.threads, 1) : undefined;
  const labelArg = o.label !== undefined ? int('--label', o.label, 0) : undefined;
  const inp = await explainInput(o);
  const { images, shape, labels } = inp;
  const [n, h, w, c] = shape;

  const explainer: Explainer = await loadExplainer(o.explainer, { engine, threads });
  let predictor: Predictor | undefined;
  try {
    const card = explainer.card;
    if (o.model) predictor = await classifierFor(o, card, h, w, threads);
    // The explainer holds this classifier in one graph: the predicted class comes with the estimate.
    const oneCall = !!predictor && explainer.fusedClassifierHash !== undefined && explainer.fusedClassifierHash === predictor.hash;
    // The classifier's probabilities (printed and stored with the maps): from the fused call
    // when there is one, else from one classifier call that also gives the predicted class.
    const classify = (p: Predictor): Promise<Float32Array> => p.predict(selectChannels(images, n, h, w, c, p.channels && p.channels.every((k) => k < c) ? p.channels : undefined), n);
    let probabilities = predictor && !oneCall ? await classify(predictor) : undefined;
    const classes = classNames(card.classes, predictor?.numClasses ?? card.numClasses);
    const cond = conditioning(o, card, { n, labelArg, labels, predictor, oneCall, probabilities });
    let condLabels = cond.condLabels;
    const labelSource = cond.labelSource;

    // One untimed call first: session/kernel set-up is not a per-map cost.
    await explainer.estimate(images.subarray(0, h * w * c), [1, h, w, c], condLabels?.subarray(0, 1));
    const t0 = performance.now();
    const { maps, std, probs } = await explainer.estimate(images, shape, condLabels);
    const msPerMap = (performance.now() - t0) / n;
    // A fused explainer given the class (--label, data labels) runs without its classifier.
    probabilities ??= probs ?? (predictor ? await classify(predictor) : undefined);
    const fusedCall = !!(labelSource && !condLabels && probs);
    if (fusedCall) condLabels = argmaxRows(probs!, n, card.numClasses);

    const ex = o.exact && predictor ? await exactComparison(o, card, predictor, images, shape, maps, condLabels ?? labels, !!condLabels) : undefined;
    // Outputs last, each atomic: the PNG first so the data file marks a finished run.
    if (inp.pngOut) await writeFileAtomic(inp.pngOut, explainPng(card, images, shape, maps, ex?.maps, std, condLabels ? classes[condLabels[0]] : undefined));
    const r = { n, h, w, maps, std, exact: ex, probabilities, classes, condLabels, labelSource, msPerMap };
    await writeExplainOutput(o, inp, card, explainer.engine, r);
    return { n, out: inp.out, png: inp.pngOut, engine: fusedCall ? `${explainer.engine}, classifier and explainer in one fused graph` : explainer.engine, msPerMap, exact: ex?.summary, labels: condLabels, labelSource, probabilities, classes, ids: inp.ids, explainer: o.explainer };
  } finally {
    explainer.dispose();
    predictor?.dispose();
  }
}

type Card = Explainer['card'];

/** --model, fitted to the stamps (a classifier whose input is the padded stamp gets them padded by the maps' --pad). */
async function classifierFor(o: ExplainCliOptions & { model?: string }, card: Card, h: number, w: number, threads: number | undefined): Promise<Predictor> {
  const fitted = fitToStamps(await loadPredictor(o.model!, { threads }), h, w, occlusionParamsOf(card).pad);
  if (fitted.padded && !o.quiet) process.stderr.write(`explain: ${o.model} takes the stamps zero-padded by ${fitted.padded} (the maps' --pad): padding them before it\n`);
  if (typeof card.classifierHash === 'string' && fitted.predictor.hash !== card.classifierHash && !o.quiet) {
    process.stderr.write(`explain: note: ${o.model} is not the classifier the explainer was trained with (${card.classifier ?? 'unknown'})\n`);
  }
  return fitted.predictor;
}

/**
 * The conditioning class: explicit, else predicted (when trained so and possible), else data
 * labels, else predicted. With a fused graph the prediction comes with the estimate (no labels here).
 */
function conditioning(
  o: ExplainCliOptions,
  card: Card,
  x: { n: number; labelArg?: number; labels?: Int32Array; predictor?: Predictor; oneCall: boolean; probabilities?: Float32Array },
): { condLabels?: Int32Array; labelSource?: string } {
  if (card.condition === 'none') return {};
  const predicted = (): { condLabels?: Int32Array; labelSource: string } =>
    x.oneCall ? { labelSource: 'classifier prediction' } : { condLabels: argmaxRows(x.probabilities!, x.n, x.predictor!.numClasses), labelSource: 'classifier prediction' };
  if (x.labelArg !== undefined) {
    if (x.labelArg >= card.numClasses) throw new UserError(`--label ${x.labelArg} is not a class of the ${card.numClasses}-class explainer`);
    return { condLabels: new Int32Array(x.n).fill(x.labelArg), labelSource: '--label' };
  }
  if (x.predictor && card.conditionOn === 'predicted') return predicted();
  if (x.labels) {
    if (card.conditionOn === 'predicted' && !o.quiet) {
      process.stderr.write("explain: note: the explainer was trained on maps of the classifier's predicted class; using the data's labels (give --model to use the prediction)\n");
    }
    return { condLabels: x.labels, labelSource: 'data labels' };
  }
  if (x.predictor) return predicted();
  throw fileError(o.input, `has no labels, and the explainer is conditioned (${card.condition}): give --label K, or --model CLF to condition on its predicted class`);
}

/** --exact: the exact maps for the same class as the estimate (when conditioned), and the metrics against them. */
async function exactComparison(
  o: ExplainCliOptions,
  card: Card,
  predictor: Predictor,
  images: Float32Array,
  shape: [number, number, number, number],
  maps: Float32Array,
  labels: Int32Array | undefined,
  conditioned: boolean,
): Promise<{ maps: Float32Array; raw?: RawMaps; summary: NonNullable<ExplainSummary['exact']> }> {
  const [n, h, w] = shape;
  const params = occlusionParamsOf(card);
  const target = conditioned ? 'label' : params.target;
  if (target === 'label' && !labels) throw fileError(o.input, "has no labels, which the explainer's maps (target 'label') need");
  const [ih, iw, ic] = predictor.inputShape;
  await predictor.predict(new Float32Array(ih * iw * ic), 1);
  const te = performance.now();
  const r = await exactMaps(predictor, images, shape, { ...params, target, labels });
  const ems = (performance.now() - te) / n;
  const raw = r.raw !== r.maps ? r.raw : undefined;
  // The same metrics, computed the same way, as evaluate and the server report; the exact
  // map's own importance order from its values before the seed's clip, as evaluate does.
  const importance = raw ? importanceOf(raw, params.score) : undefined;
  const cmp = compareMaps({ data: maps, shape: [n, h, w] }, { data: r.maps, shape: [n, h, w], importance }, { score: params.score, normalize: params.normalize });
  return { maps: r.maps, raw, summary: { msPerMap: ems, engine: predictor.engine, ...cmp.mean } };
}

/** The one-stamp picture: the input's first channel, the estimate, the exact map on the same scale, the ensemble's std. */
function explainPng(card: Card, images: Float32Array, shape: [number, number, number, number], maps: Float32Array, exact: Float32Array | undefined, std: Float32Array | undefined, drawnFor: string | undefined): Uint8Array {
  const [, h, w, c] = shape;
  const ch = card.channels && card.channels.every((k) => k < c) ? card.channels[0] : 0;
  const chName = (card.channelNames as string[] | undefined)?.[0] ?? `channel ${ch}`;
  const panels: Panel[] = [{ title: chName.toUpperCase(), values: Float32Array.from({ length: h * w }, (_, p) => images[p * c + ch]), h, w, colormap: 'gray' }];
  const range = finiteRange(exact ? Float32Array.from([...finiteRange(maps), ...finiteRange(exact)]) : maps);
  panels.push({ title: `ESTIMATE${drawnFor ? ` ${drawnFor.toUpperCase()}` : ''} LOW=IMPORTANT`, values: maps, h, w, range });
  if (exact) panels.push({ title: 'EXACT', values: exact, h, w, range });
  if (std) panels.push({ title: 'STD', values: std, h, w });
  return heatmapPng(panels);
}

interface ExplainResult {
  n: number;
  h: number;
  w: number;
  maps: Float32Array;
  std?: Float32Array;
  exact?: { maps: Float32Array; raw?: RawMaps; summary: NonNullable<ExplainSummary['exact']> };
  probabilities?: Float32Array;
  classes: string[];
  condLabels?: Int32Array;
  labelSource?: string;
  msPerMap: number;
}

/** The data output, as --out's extension says: .npy (maps), .json (one object per stamp) or .npz (everything, with meta.json). */
async function writeExplainOutput(o: ExplainCliOptions & { explainer: string }, inp: ExplainInput, card: Card, engine: string, r: ExplainResult): Promise<void> {
  const { n, h, w, maps, std, exact, probabilities, classes, condLabels } = r;
  const { out, outExt, ids, index } = inp;
  if (outExt === '.npy') return writeFileAtomic(out, serializeNpy(maps, [n, h, w]));
  if (outExt === '.json') {
    return writeFileAtomic(out, JSON.stringify(explainJson({ n, h, w, maps, exact: exact?.maps, probabilities, classes, explained: condLabels, ids }), null, 1) + '\n');
  }
  const arrays: Record<string, NpzEntry> = { maps: { data: maps, shape: [n, h, w] } };
  if (std) arrays.std = { data: std, shape: [n, h, w] };
  if (exact) arrays.exact = { data: exact.maps, shape: [n, h, w] };
  if (exact?.raw) arrays.exact_raw = { data: exact.raw, shape: [n, h, w] };
  if (condLabels) arrays.labels = { data: condLabels, shape: [n] };
  if (probabilities) arrays.probabilities = { data: probabilities, shape: [n, classes.length] };
  const meta = {
    legend: MAP_LEGEND,
    classes,
    explained: condLabels ? 'labels: the class each map is drawn for' : "the explainer's own target",
    ids: ids ?? null,
    explainer: path.resolve(o.explainer),
    variant: card.variant,
    condition: card.condition,
    conditionFrom: r.labelSource ?? null,
    ensemble: card.ensemble ?? 1,
    input: path.resolve(o.input),
    index: index ?? null,
    engine,
    msPerMap: r.msPerMap,
    exact: exact?.summary ?? null,
    command: ['occmap', ...process.argv.slice(2)].join(' '),
    createdAt: new Date().toISOString(),
  };
  return writeFileAtomic(out, serializeNpz(arrays, { 'meta.json': JSON.stringify(meta, null, 2) }));
}

/** The .json output: one object per stamp. */
function explainJson(r: { n: number; h: number; w: number; maps: Float32Array; exact?: Float32Array; probabilities?: Float32Array; classes: string[]; explained?: Int32Array; ids?: string[] }): object {
  const hw = r.h * r.w;
  const rows = (a: Float32Array, i: number) => toRows(Array.from(a.subarray(i * hw, (i + 1) * hw), (v) => Math.round(v * 1e6) / 1e6), r.h, r.w);
  const k = r.classes.length;
  return {
    legend: MAP_LEGEND,
    classes: r.classes,
    stamps: Array.from({ length: r.n }, (_, i) => ({
      id: r.ids?.[i] ?? null,
      probabilities: r.probabilities ? Object.fromEntries(r.classes.map((c, j) => [c, r.probabilities![i * k + j]])) : null,
      explained: r.explained ? r.classes[r.explained[i]] : null,
      map: rows(r.maps, i),
      ...(r.exact ? { exact: rows(r.exact, i) } : {}),
    })),
  };
}

/** The printout's per-stamp lines (the first 20). */
export function stampLines(s: ExplainSummary): string[] {
  const k = s.classes.length;
  const out: string[] = [];
  for (let i = 0; i < Math.min(s.n, 20); i++) {
    const name = s.ids?.[i] ?? `stamp ${i}`;
    const p = s.probabilities ? s.classes.map((c, j) => `P(${c}) ${s.probabilities![i * k + j].toFixed(3)}`).join('  ') : 'no classifier: no probabilities';
    const ex = s.labels ? `  map for: ${s.classes[s.labels[i]]}` : '';
    out.push(`  ${name}: ${p}${ex}`);
  }
  if (s.n > 20) out.push(`  ... ${s.n - 20} more in the output file`);
  return out;
}

export function registerExplain(program: Command): void {
  program
    .command('explain')
    .description('estimate occlusion maps in one inference with a trained explainer; optionally beside the exact maps')
    .option('--explainer <dir>', "explainer directory from 'occmap train-explainer' (default: the pretrained HiTS 2015 explainer and classifier, models/hits2015)")
    .requiredOption('--input <file>', 'stamps: dataset .npz, .npy (one stamp or a stack) or a greyscale .png')
    .option('--out <file>', 'estimated maps: .npz (maps, std, exact, labels) or .npy (maps) (default: <input>-explained.npz here)')
    .option('--png <file>', 'heatmap PNG for one stamp (default: beside --out when one stamp is explained)')
    .option('--index <i>', 'explain only stamp i (0-based) of the input')
    .option('--label <k>', 'conditioned explainers: draw the maps for class k')
    .option('--exact', 'also compute the exact maps (needs --model): timings and MSE/SSIM/Spearman between them')
    .option('--model <dir>', 'the classifier: for --exact, and for the predicted class of conditioned explainers')
    .option('--scale <none|minmax>', "minmax: scale each channel of each stamp to [0,1] as occmap's datasets are (for raw counts, 8-bit values)", 'none')
    .option('--engine <auto|onnx|tfjs>', "explainer engine (auto: ONNX Runtime when the directory's model.onnx is current)", 'auto')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)')
    .option('--quiet', 'no notes on stderr')
    .addHelpText('after', EXAMPLES)
    .action(async (o: ExplainCliOptions) => {
      const s = await runExplain(o);
      const lines = [
        `explained ${s.n} stamp(s) with ${s.explainer} on ${s.engine}: ${s.msPerMap.toFixed(3)} ms/map` +
          (s.labelSource ? ` (conditioned on ${s.labelSource}${s.n === 1 ? `: class ${s.labels![0]}` : ''})` : ''),
      ];
      if (s.exact) {
        lines.push(
          `exact maps on ${s.exact.engine}: ${s.exact.msPerMap.toFixed(2)} ms/map (${(s.exact.msPerMap / Math.max(1e-9, s.msPerMap)).toFixed(0)}x the estimate)`,
          `estimate vs exact${s.n > 1 ? ` (mean over ${s.n} maps)` : ''}: MSE ${s.exact.mse.toFixed(5)}  SSIM ${s.exact.ssim.toFixed(4)}  Spearman ${s.exact.spearman.toFixed(4)}` +
            `  (MAE ${s.exact.mae.toFixed(4)}  Pearson ${s.exact.pearson.toFixed(4)}  top-10% IoU ${s.exact.iou.toFixed(3)})`,
        );
      }
      lines.push(...stampLines(s));
      lines.push(`map legend: ${MAP_LEGEND}`);
      lines.push(`wrote ${s.out}${s.png ? ` and ${s.png}` : ''}`);
      process.stdout.write(lines.join('\n') + '\n');
    });
}
