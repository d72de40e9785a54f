/**
 * The study's report, built from an ExperimentResults object alone: one document model
 * (sections of paragraphs, tables, figures) rendered twice, as a self-contained index.html
 * (inline CSS, inline SVG charts, PNG figures as data: URIs: opens offline) and as report.md
 * (figures as files under figures/). results.json is the object itself.
 *
 * Prose states each finding with its numbers, computed here from the results, never written
 * in advance: the same code reports a study where the frozen encoder loses.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { PNG } from 'pngjs';
import { ensureDir, writeFileAtomic } from '../util/atomic.js';
import { heatmapPng, type Panel } from '../viz/heatmap.js';
import { groupedBarSpec, lossCurvesSpec, renderSvg, repeatsSpec, type BarRow, type RepeatRow, type VlSpec } from './charts.js';
import type { DataKey } from './plan.js';
import type { Example, ExperimentResults, MethodMetrics, RunResult } from './results.js';
import { SEED_PAPER } from './seed-paper.js';

export type Block =
  | { kind: 'p'; text: string }
  | { kind: 'list'; items: string[] }
  | { kind: 'table'; caption?: string; head: string[]; rows: string[][] }
  | { kind: 'figure'; id: string; caption: string };

export interface Section {
  id: string;
  title: string;
  blocks: Block[];
}

/** A rendered figure: an SVG document or PNG bytes. */
export type Figure = { id: string; svg: string } | { id: string; png: Uint8Array };

export const DATA_NAMES: Record<DataKey, string> = { mixed: 'Mixed', sn: 'Supernova', nonsn: 'Non-supernova' };
const VARIANT_NAMES = { normal: 'Normal', frozen: 'Frozen', unet: 'U-Net' } as const;
const CONDITION_NAMES = { none: 'none', numeral: 'Numeral', onehot: 'One-hot' } as const;

const f5 = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(5));
const f3 = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(3));
const pct = (a: number, b: number) => `${Math.abs((100 * (a - b)) / b).toFixed(0)}%`;
const ms = (s: number) => (s >= 1 ? `${s.toFixed(2)} s` : s >= 1e-3 ? `${(s * 1e3).toFixed(2)} ms` : `${(s * 1e6).toFixed(0)} µs`);

const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

export function describeRun(r: Pick<RunResult, 'variant' | 'condition' | 'cut' | 'data'>): string {
  const parts = [r.variant === 'unet' ? 'U-Net explainer (encoder initialised from the classifier and trained, skip connections to the decoder)' : `${r.variant} autoencoder`];
  if (r.condition !== 'none') parts.push(`${CONDITION_NAMES[r.condition].toLowerCase()} conditioning`);
  if (r.cut !== 0) parts.push(`cut ${r.cut}`);
  return `${parts.join(', ')}${parts.length > 1 ? ',' : ''} on ${DATA_NAMES[r.data].toLowerCase()} data`;
}

/** Where the demo's configuration comes from: the seed's best, or occmap's own default. */
function demoProvenance(r: RunResult): string {
  if (r.variant === 'frozen' && r.condition === 'onehot' && r.cut === 0 && r.data === 'mixed') return "the seed's best configuration";
  if (r.variant === 'unet') return "occmap's default explainer, not one of the seed's configurations: the seed's best was the frozen autoencoder with one-hot conditioning on mixed data";
  return "not the seed's best configuration (the frozen autoencoder with one-hot conditioning on mixed data)";
}

/** Validation loss (24x24 padded maps, as the seed measured) at the epoch whose weights were kept. */
export function keptValLoss(r: RunResult): number | undefined {
  const h = r.history.find((e) => e.epoch === r.bestEpoch) ?? r.history[r.history.length - 1];
  return h?.valLoss;
}

function runByName(res: ExperimentResults, name: string): RunResult {
  const r = res.runs.find((x) => x.name === name);
  if (!r) throw new Error(`results name run '${name}' but do not hold it`);
  return r;
}

function runsOf(res: ExperimentResults, tag: string): RunResult[] {
  return res.runs.filter((r) => (r.experiments as string[]).includes(tag));
}

function seedExp1(variant: string, data: DataKey): { train: number; val: number } | undefined {
  return SEED_PAPER.exp1.find((s) => s.variant === variant && s.data === data);
}

/** MSE of the mean training map (the same map for every stamp) on a dataset's held-out maps. */
export function meanMapMse(res: ExperimentResults, data: DataKey): number | undefined {
  return res.runs.find((r) => r.data === data && r.metrics.meanMap?.mse)?.metrics.meanMap?.mse?.mean;
}

/** Share of the mean map's held-out error an explainer removes: 1 - MSE / MSE(mean map). */
export function skill(res: ExperimentResults, r: RunResult): number | undefined {
  const m = meanMapMse(res, r.data);
  return m === undefined || !(m > 0) ? undefined : 1 - r.mse.val / m;
}

/** Which of MSE, SSIM, Spearman and top-10% IoU the explainer does better on than the mean map. */
export function beatsMeanMap(r: RunResult): { better: string[]; worse: string[] } {
  const e = r.metrics.explainer;
  const m = r.metrics.meanMap;
  const better: string[] = [];
  const worse: string[] = [];
  const cmp: [string, number | undefined, number | undefined, boolean][] = [
    ['MSE', e.mse?.mean, m?.mse?.mean, false],
    ['SSIM', e.ssim?.mean, m?.ssim?.mean, true],
    ['Spearman', e.spearman?.mean, m?.spearman?.mean, true],
    ['top-10% IoU', e.iou?.mean, m?.iou?.mean, true],
  ];
  for (const [name, a, b, higher] of cmp) {
    if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b)) continue;
    ((higher ? a > b : a < b) ? better : worse).push(name);
  }
  return { better, worse };
}

function examplesFigureId(run: string): string {
  return `examples-${run}`;
}

/** The document: every section the results have data for. Pure. */
export function buildDocument(res: ExperimentResults): Section[] {
  const sections = [
    setupSection(res),
    exp1Section(res),
    exp2Section(res),
    exp3Section(res),
    exp4Section(res),
    demoSection(res),
    fidelitySection(res),
    curvesSection(res),
    modelsSection(res),
    timingSection(res),
    reproSection(res),
  ];
  return sections.filter((x): x is Section => x !== undefined);
}

/** The data, the caveat against the seed's numbers, the map datasets and the classifier. */
function setupSection(res: ExperimentResults): Section {
  const d = res.data;
  const sourceName = d.source === 'hits2015' ? 'HiTS 2015 DECam stamps derived by occmap (supernova epochs detected at >= 5 sigma vs constant and variable stars)' : `this data (source: ${d.source ?? 'unknown'})`;
  const mixedMaps = d.datasets.mixed.maps;
  const setup: Block[] = [
    {
      kind: 'p',
      text:
        `Preset '${res.preset}' (${res.presetDescription}). Data: ${d.file}: ${d.stamps} stamps (${d.supernova} supernova, ${d.nonSupernova} not)` +
        (d.objects ? ` from ${d.objects} objects` : '') +
        `. Exact maps of ${res.occlusion.maps} stamps with ${res.settings.occlusion} (${res.occlusion.inferencesPerMap} classifier inferences per map).`,
    },
    {
      kind: 'p',
      text:
        `Caveat, plainly: the seed's numbers come from other data (HiTS 2013, real transients vs bogus detections, 20,000 maps per class, 40,000 mixed) and ours from ${sourceName}, ${mixedMaps} mixed maps. ` +
        `Our MSE is the per-map mean squared error on the 21x21 maps with the weights early stopping kept, averaged over maps; the seed's came from Keras on the 24x24 padded maps, whose 135 zero-padded pixels cost almost nothing ` +
        `(the column 'val loss 24x24' is our figure on that scale). Every run holds out the same objects (${d.datasets.mixed.heldOutObjects} of ${d.datasets.mixed.objects}), split by object, never by epoch; the seed held out the last 25% of its file. ` +
        `Training: batch ${res.settings.batchSize}, early stopping on val loss with patience ${res.settings.patience}, validation ${res.settings.valFraction}, up to ${res.settings.maxEpochs} epochs, loss ${res.settings.loss.toUpperCase()} with ${res.settings.optimizer === 'adam' ? 'Adam' : res.settings.optimizer} (the seed's code: binary cross-entropy with Adadelta; the report says MSE). Same conclusions are evidence; same numbers are not expected.`,
    },
  ];
  const datasetRows = (['mixed', 'sn', 'nonsn'] as const).map((k) => {
    const x = d.datasets[k];
    return [DATA_NAMES[k], String(x.maps), String(x.objects), String(x.maps - x.heldOut), String(x.heldOut), String(x.heldOutObjects)];
  });
  setup.push({ kind: 'table', caption: 'Map datasets of the study (the seed: 20,000 / 20,000 / 40,000 maps).', head: ['data', 'maps', 'objects', 'train maps', 'held-out maps', 'held-out objects'], rows: datasetRows });
  const c = res.classifier;
  if (c.valAccuracy !== undefined) {
    setup.push({
      kind: 'p',
      text:
        `Classifier (${c.trainedHere ? 'trained by this study' : 'given'}: ${c.dir}): the seed's CNN, ${c.parameters ?? '?'} parameters; validation accuracy ${f3(c.valAccuracy)} (balanced ${f3(c.valBalancedAccuracy)}) on ${c.heldOut ?? '?'} held-out stamps, confusion ${JSON.stringify(c.confusion)} (rows: true class). ` +
        `The seed reported ${(SEED_PAPER.classifierTestAccuracy * 100).toFixed(1)}% test accuracy on HiTS 2013.`,
    });
  }
  return { id: 'setup', title: 'Setup', blocks: setup };
}

/** Exp. 1: normal vs frozen encoder on three datasets (Tables 4-5). */
function exp1Section(res: ExperimentResults): Section | undefined {
  if (!res.exp1) return undefined;
  const runs = runsOf(res, 'exp1');
  const order: DataKey[] = ['mixed', 'sn', 'nonsn'];
  const rows4 = (['normal', 'frozen'] as const).flatMap((v) =>
    order.map((k) => {
      const r = runs.find((x) => x.variant === v && x.data === k);
      const s = seedExp1(v, k);
      return [VARIANT_NAMES[v], DATA_NAMES[k], f5(r?.mse.train), f5(r?.mse.val), f5(r && keptValLoss(r)), f5(s?.train), f5(s?.val), r ? `${r.epochsRun} (best ${r.bestEpoch})` : '–'];
    }),
  );
  const best = runByName(res, res.exp1.bestOverall);
  const cmp = order.map((k) => {
    const n = runs.find((x) => x.variant === 'normal' && x.data === k);
    const fz = runs.find((x) => x.variant === 'frozen' && x.data === k);
    return { k, n: n?.mse.val ?? NaN, f: fz?.mse.val ?? NaN };
  });
  const wins = cmp.filter((x) => x.f < x.n).length;
  const blocks: Block[] = [
    {
      kind: 'p',
      text:
        `The ${describeRun(best)} has the lowest held-out MSE of the six (${f5(best.mse.val)}). The frozen encoder (copied from the classifier, not trained) beats training from scratch on ${wins} of 3 datasets: ` +
        cmp.map((x) => `${DATA_NAMES[x.k].toLowerCase()} ${f5(x.f)} vs ${f5(x.n)}`).join(', ') +
        `. The seed found the frozen encoder better on all three and its best model was the frozen one on supernova data (0.01170). ` +
        exp1Scale(res, runs),
    },
    { kind: 'table', caption: 'Table 4. Exp. 1: MSE of the normal and frozen autoencoders on each dataset, ours beside the seed\'s (HiTS 2013).', head: ['model', 'data', 'MSE train', 'MSE val', 'val loss 24x24', 'seed MSE train', 'seed MSE val', 'epochs'], rows: rows4 },
  ];
  const sorted = [...runs].sort((a, b) => b.mse.val - a.mse.val);
  const seedSorted = [...SEED_PAPER.exp1].sort((a, b) => b.val - a.val);
  blocks.push({
    kind: 'table',
    caption: 'Table 5. Exp. 1 models from highest to lowest validation MSE (ours | the seed\'s order).',
    head: ['rank', 'model (ours)', 'data', 'MSE val', 'model (seed)', 'data', 'seed MSE val'],
    rows: sorted.map((r, i) => {
      const s = seedSorted[i];
      return [String(i + 1), VARIANT_NAMES[r.variant], DATA_NAMES[r.data], f5(r.mse.val), s ? VARIANT_NAMES[s.variant as 'normal'] : '', s ? DATA_NAMES[s.data as DataKey] : '', f5(s?.val)];
    }),
  });
  blocks.push({ kind: 'figure', id: 'exp1-bars', caption: 'Exp. 1 validation MSE per model and dataset: ours (21x21 maps) and the seed\'s (24x24, HiTS 2013). Separate y scales.' });
  for (const ex of res.examples.filter((e) => e.run === res.exp1!.bestSn || e.run === res.exp1!.bestNonSn)) {
    blocks.push({ kind: 'figure', id: examplesFigureId(ex.run), caption: exampleCaption(res, ex) });
  }
  return { id: 'exp1', title: 'Experiment 1: normal vs frozen encoder on three datasets', blocks };
}

/** Exp. 2: numeral vs one-hot conditioning (Table 6). */
function exp2Section(res: ExperimentResults): Section | undefined {
  if (!res.exp2) return undefined;
  const runs = runsOf(res, 'exp2');
  const num = runs.find((r) => r.condition === 'numeral');
  const oh = runs.find((r) => r.condition === 'onehot');
  const uncond = res.runs.find((r) => r.variant === 'frozen' && r.condition === 'none' && r.cut === 0 && r.data === 'mixed' && r.seed === res.seed);
  const best = runByName(res, res.exp2.best);
  const other = best === num ? oh : num;
  let text = `${CONDITION_NAMES[best.condition]} conditioning gives the lower held-out MSE: ${f5(best.mse.val)} vs ${f5(other?.mse.val)} (${other ? pct(best.mse.val, other.mse.val) : '?'} lower).`;
  if (uncond) {
    const better = best.mse.val < uncond.mse.val;
    text += ` Against the unconditioned frozen model on the same mixed data (Exp. 1, ${f5(uncond.mse.val)}), telling the explainer the class ${better ? 'lowers' : 'raises'} the error by ${pct(best.mse.val, uncond.mse.val)}.`;
  }
  text += ` The seed: one-hot 0.01052 < numeral 0.01204 (vs 0.01525 unconditioned). The class given is the one each map explains (the classifier's prediction), which costs one classifier inference at estimation time.`;
  return {
    id: 'exp2',
    title: 'Experiment 2: conditioning on the class (numeral vs one-hot)',
    blocks: [
      { kind: 'p', text },
      {
        kind: 'table',
        caption: 'Table 6. Exp. 2: frozen encoder on mixed data with the class injected into the bottleneck.',
        head: ['conditioning', 'MSE train', 'MSE val', 'val loss 24x24', 'seed MSE train', 'seed MSE val'],
        rows: (['numeral', 'onehot'] as const).map((cnd) => {
          const r = runs.find((x) => x.condition === cnd);
          const s = SEED_PAPER.exp2.find((x) => x.condition === cnd)!;
          return [CONDITION_NAMES[cnd], f5(r?.mse.train), f5(r?.mse.val), f5(r && keptValLoss(r)), f5(s.train), f5(s.val)];
        }),
      },
    ],
  };
}

/** Exp. 3: cuts of the autoencoder. */
function exp3Section(res: ExperimentResults): Section | undefined {
  if (!res.exp3) return undefined;
  const runs = res.exp3.runs.map((n) => runByName(res, n));
  const vals = runs.map((r) => r.mse.val);
  const grows = vals.every((v, i) => i === 0 || v > vals[i - 1]);
  const best = runByName(res, res.exp3.best);
  return {
    id: 'exp3',
    title: 'Experiment 3: cutting the autoencoder at its pooling layers',
    blocks: [
      {
        kind: 'p',
        text:
          `Held-out MSE by cut (frozen encoder, mixed data): ${runs.map((r) => `cut ${r.cut} ${f5(r.mse.val)}`).join(', ')}. ` +
          (grows ? 'The error grows with every cut, as the seed found; ' : `The error does not grow with every cut (the seed found it did); `) +
          `the best is cut ${best.cut}. Cut 1 keeps conv1-conv2 and the first pooling, cut 2 only conv1: the dense bottleneck then sees a larger feature map (more parameters), but fewer convolutions.`,
      },
      {
        kind: 'table',
        caption: 'Exp. 3: cuts of the frozen autoencoder on mixed data (the seed\'s Figure 11 gives only the uncut model\'s number).',
        head: ['cut', 'parameters', 'trainable', 'MSE train', 'MSE val', 'val loss 24x24', 'epochs', 'seed MSE val'],
        rows: runs.map((r) => [String(r.cut), String(r.parameters.total), String(r.parameters.trainable), f5(r.mse.train), f5(r.mse.val), f5(keptValLoss(r)), `${r.epochsRun} (best ${r.bestEpoch})`, r.cut === 0 ? f5(SEED_PAPER.exp3.cut0Val) : 'higher (not given)']),
      },
      { kind: 'figure', id: 'exp3-curves', caption: 'Exp. 3 loss curves: train and validation MSE (24x24 padded maps) per epoch for each cut (the seed\'s Figures 12-13 show BCE loss of its uncut model).' },
    ],
  };
}

/** Exp. 4: the finalists trained repeatedly (Tables 7-9). */
function exp4Section(res: ExperimentResults): Section | undefined {
  if (!res.exp4) return undefined;
  const blocks: Block[] = [];
  const seedKey = { bestSn: 'frozenSn', bestConditioned: 'onehotMixed' } as const;
  const seedName = { bestSn: 'Frozen, Supernova data', bestConditioned: 'Frozen + one-hot, Mixed data' } as const;
  const parts: string[] = [];
  res.exp4.groups.forEach((g, gi) => {
    const base = runByName(res, g.base);
    const runs = g.runs.map((n) => runByName(res, n));
    const seedRuns = SEED_PAPER.exp4[seedKey[g.key]];
    parts.push(`${describeRun(base)}: val MSE ${f5(g.val.mean)} ± ${f5(g.val.std)} over ${g.val.n} trainings`);
    blocks.push({
      kind: 'table',
      caption: `Table ${7 + gi}. Exp. 4: the ${g.key === 'bestSn' ? 'best Exp. 1 model on supernova data' : 'best Exp. 2 model'} (${describeRun(base)}) trained ${runs.length} times; the seed's finalist: ${seedName[g.key]}.`,
      head: ['training', 'seed', 'MSE train', 'MSE val', 'epochs', 'seed MSE train', 'seed MSE val'],
      rows: Array.from({ length: Math.max(runs.length, seedRuns.length) }, (_, i) => {
        const r = runs[i];
        const s = seedRuns[i];
        return [String(i + 1), r ? String(r.seed) : '', f5(r?.mse.train), f5(r?.mse.val), r ? `${r.epochsRun} (best ${r.bestEpoch})` : '', f5(s?.train), f5(s?.val)];
      }),
    });
  });
  const best = runByName(res, res.exp4.best);
  const t9 = SEED_PAPER.exp4.table9;
  blocks.unshift({
    kind: 'p',
    text:
      `${cap(parts.join('; '))}. The lower mean makes the ${describeRun(best)} the best model of the study. ` +
      `The seed: frozen on supernova data ${f5(t9.frozenSn.mean.val)} ± ${f5(t9.frozenSn.std.val)}, frozen + one-hot on mixed data ${f5(t9.onehotMixed.mean.val)} ± ${f5(t9.onehotMixed.std.val)} (the conditioned model best). ` +
      `Every training holds out the same objects, so the spread is that of initial weights and shuffling; the two finalists are measured on different held-out maps (supernova only vs mixed), as in the seed. ` +
      exp4Skill(res) +
      `Std is the sample standard deviation (n - 1).`,
  });
  blocks.push({
    kind: 'table',
    caption: "Table 9. Exp. 4 statistics: mean and standard deviation over the trainings (the seed's Table 9 as printed; its means differ from the means of its Tables 7-8: 0.01263 and 0.00876 val).",
    head: ['model', 'mean MSE train', 'std train', 'mean MSE val', 'std val', 'mean map MSE val', 'seed mean val', 'seed std val'],
    rows: res.exp4.groups.map((g) => {
      const s = t9[seedKey[g.key]];
      const base = runByName(res, g.base);
      return [describeRun(base), f5(g.train.mean), f5(g.train.std), f5(g.val.mean), f5(g.val.std), f5(meanMapMse(res, base.data)), f5(s.mean.val), f5(s.std.val)];
    }),
  });
  blocks.push({ kind: 'figure', id: 'exp4-repeats', caption: 'Exp. 4: validation MSE of each training (points), mean (black tick) and ± 1 std (bar); ours and the seed\'s.' });
  return { id: 'exp4', title: 'Experiment 4: the finalists trained repeatedly', blocks };
}

/** The demo's explainer. */
function demoSection(res: ExperimentResults): Section | undefined {
  if (!res.demo) return undefined;
  const r = runByName(res, res.demo.run);
  const blocks: Block[] = [
    { kind: 'p', text: `The ${describeRun(r)} (${demoProvenance(r)}): held-out MSE ${f5(r.mse.val)} (train ${f5(r.mse.train)}; val loss on 24x24 padded maps ${f5(keptValLoss(r))}; the seed's best: ${f5(SEED_PAPER.exp4.table9.onehotMixed.mean.val)} on HiTS 2013), ${r.epochsRun} epochs (weights of epoch ${r.bestEpoch}), ${r.trainSeconds.toFixed(0)} s of training.` },
    { kind: 'figure', id: 'demo-curves', caption: 'Train and validation loss per epoch.' },
  ];
  for (const ex of res.examples.filter((e) => e.run === r.name)) blocks.push({ kind: 'figure', id: examplesFigureId(ex.run), caption: exampleCaption(res, ex) });
  return { id: 'demo', title: 'The explainer', blocks };
}

/** Loss curves of every run (when there is no demo section to hold them). */
function curvesSection(res: ExperimentResults): Section | undefined {
  if (!(res.runs.length > 0 && !res.demo)) return undefined;
  return {
    id: 'curves',
    title: 'Loss curves of every training',
    blocks: [{ kind: 'figure', id: 'all-curves', caption: 'Train and validation MSE (24x24 padded maps) per epoch of every run; early stopping keeps the weights of the lowest validation loss.' }],
  };
}

/** Parameter counts per architecture, beside the seed's where it published them. */
function modelsSection(res: ExperimentResults): Section {
  const archs = new Map<string, RunResult>();
  for (const r of res.runs) {
    const key = `${r.variant}|${r.condition}|${r.cut}`;
    if (!archs.has(key)) archs.set(key, r);
  }
  // The seed published parameter counts for its frozen uncut autoencoder only.
  const seedCounts = (r: RunResult): string =>
    r.variant === 'frozen' && r.condition === 'none' && r.cut === 0 ? `${SEED_PAPER.parameters.total} / ${SEED_PAPER.parameters.trainable} / ${SEED_PAPER.parameters.nonTrainable}` : '';
  const archRows = [...archs.values()];
  const withSeed = archRows.some((r) => seedCounts(r) !== '');
  const modelBlocks: Block[] = [];
  if (withSeed) {
    modelBlocks.push({
      kind: 'p',
      text: `The frozen uncut autoencoder has the seed's architecture: ${SEED_PAPER.parameters.total.toLocaleString('en')} parameters, ${SEED_PAPER.parameters.nonTrainable.toLocaleString('en')} frozen (conv1-conv5 copied from the classifier) and ${SEED_PAPER.parameters.trainable.toLocaleString('en')} trained, when the input has one channel and the bottleneck 36 units.`,
    });
  } else {
    modelBlocks.push({
      kind: 'p',
      text: `No model of this study has one of the seed's architectures with published parameter counts (the seed gives them for its frozen uncut autoencoder: ${SEED_PAPER.parameters.total.toLocaleString('en')} parameters, ${SEED_PAPER.parameters.trainable.toLocaleString('en')} trained).`,
    });
  }
  modelBlocks.push({
    kind: 'table',
    caption: 'Parameter counts per architecture.',
    head: ['architecture', 'total', 'trainable', 'non-trainable', ...(withSeed ? ['seed total / trainable / non-trainable'] : [])],
    rows: archRows.map((r) => [
      `${VARIANT_NAMES[r.variant]}${r.condition !== 'none' ? `, ${CONDITION_NAMES[r.condition]}` : ''}${r.cut ? `, cut ${r.cut}` : ''}`,
      String(r.parameters.total),
      String(r.parameters.trainable),
      String(r.parameters.nonTrainable),
      ...(withSeed ? [seedCounts(r)] : []),
    ]),
  });
  if (res.layers) {
    modelBlocks.push({
      kind: 'table',
      caption: `Layers of the final model (${res.layers.run}), as Keras' summary lists them.`,
      head: ['layer', 'type', 'output shape', 'parameters', 'trained'],
      rows: res.layers.rows.map((l) => [l.name, l.type, l.outputShape, String(l.params), l.params === 0 ? '' : l.trainable ? 'yes' : 'no (frozen)']),
    });
  }
  return { id: 'models', title: 'Model summaries', blocks: modelBlocks };
}

/** Cost of exact vs estimated maps. */
function timingSection(res: ExperimentResults): Section | undefined {
  if (!res.timing) return undefined;
  const t = res.timing;
  const rows = [
    ['exact map (batched)', ms(t.exactPerMap), (1 / t.exactPerMap).toFixed(1), `${t.inferencesPerMap} classifier inferences`],
    ['estimated map (batched)', ms(t.estimatedPerMap), (1 / t.estimatedPerMap).toFixed(1), '1 explainer inference' + (res.runs.find((r) => r.name === res.layers?.run)?.condition !== 'none' ? ' + 1 classifier inference' : '')],
    ['speedup (batched)', `${t.speedupThroughput.toFixed(0)}x`, '', ''],
    ['exact map, one stamp alone', ms(t.exactLatency), '', ''],
    ['estimated map, one stamp alone', ms(t.estimatedLatency), '', ''],
    ['speedup (one stamp)', `${t.speedupLatency.toFixed(0)}x`, '', ''],
  ];
  if (t.occlusionJob) rows.push(['the study\'s occlusion job', ms(t.occlusionJob.seconds / t.occlusionJob.maps), t.occlusionJob.mapsPerSecond.toFixed(1), `${t.occlusionJob.maps} maps, ${t.occlusionJob.inferencesPerSecond.toFixed(0)} inferences/s`]);
  return {
    id: 'timing',
    title: 'Cost: exact vs estimated maps',
    blocks: [
      {
        kind: 'p',
        text: `An exact map took ${ms(t.exactPerMap)} per map batched (${t.inferencesPerMap} inferences on ${t.classifierEngine}), an estimated one ${ms(t.estimatedPerMap)} (${t.explainerEngine}): ${t.speedupThroughput.toFixed(0)}x faster. For one stamp alone: ${ms(t.exactLatency)} vs ${ms(t.estimatedLatency)}, ${t.speedupLatency.toFixed(0)}x. ` +
          (t.speedupThroughput < t.inferencesPerMap
            ? `The seed's claim (1 inference instead of N x N) holds in kind; the ratio is below ${t.inferencesPerMap} because an estimate (${ms(t.estimatedPerMap)}) costs more than one classifier inference inside an exact map (${ms(t.exactPerMap / t.inferencesPerMap)}): the explainer adds a decoder${res.runs.find((r) => r.name === res.layers?.run)?.condition !== 'none' ? ', and a conditioned explainer needs the classifier\'s prediction first' : ''}.`
            : `The measured ratio is at least the ${t.inferencesPerMap} inferences an exact map costs.`),
      },
      { kind: 'table', caption: `Time per map, measured in this run (${t.note}).`, head: ['what', 'time per map', 'maps/s', 'cost'], rows },
    ],
  };
}

/** Command, versions, every training and the wall time of each phase. */
function reproSection(res: ExperimentResults): Section {
  const repro: Block[] = [
    { kind: 'p', text: `Produced by: ${res.command}` },
    { kind: 'list', items: Object.entries(res.versions).map(([k, v]) => `${k} ${v}`) },
    {
      kind: 'table',
      caption: `Every training (seed = initial weights and shuffling; the held-out objects are the same for all, data/holdout.json, split seed ${res.seed}).`,
      head: ['run', 'experiments', 'seed', 'train / held-out maps', 'epochs (kept)', 'seconds', 'directory'],
      rows: res.runs.map((r) => [r.name, r.experiments.join(', '), String(r.seed), `${r.trainCount} / ${r.valCount}`, `${r.epochsRun} (${r.bestEpoch})`, r.trainSeconds?.toFixed(0) ?? '', r.dir]),
    },
    {
      kind: 'table',
      caption: `Wall time of this invocation: ${res.wallSeconds.toFixed(0)} s (steps done by an earlier invocation count 0).`,
      head: ['phase', 'seconds'],
      rows: Object.entries(res.phases).map(([k, v]) => [k, v.toFixed(1)]),
    },
  ];
  repro.push(trainingTimeTable(res));
  if (res.invocations && res.invocations.length > 0) {
    const total = res.invocations.reduce((a, i) => a + i.wallSeconds, 0);
    repro.push({
      kind: 'table',
      caption: `Every invocation on this directory (a rerun skips finished steps): ${total.toFixed(0)} s in all.`,
      head: ['started', 'wall seconds', 'explainers trained', 'evaluated', 'exact maps computed', 'classifier trained'],
      rows: res.invocations.map((i) => [i.startedAt, i.wallSeconds.toFixed(0), String(i.trained), String(i.evaluated), String(i.mapsComputed), i.classifierTrained ? 'yes' : 'no']),
    });
  }
  if (res.notes.length > 0) repro.push({ kind: 'list', items: res.notes });
  return { id: 'reproduce', title: 'Reproducibility', blocks: repro };
}

/** Training seconds per experiment, whichever invocation trained the run (a resumed study's phase table counts only its own). */
function trainingTimeTable(res: ExperimentResults): Block {
  const tags = [...new Set(res.runs.flatMap((r) => r.experiments))];
  const rows = tags.map((t) => {
    const runs = res.runs.filter((r) => r.experiments.includes(t));
    const s = runs.reduce((a, r) => a + (r.trainSeconds ?? 0), 0);
    return [t, String(runs.length), s.toFixed(0), (s / 3600).toFixed(2)];
  });
  const all = res.runs.reduce((a, r) => a + (r.trainSeconds ?? 0), 0);
  rows.push(['all (a run shared by experiments counts once)', String(res.runs.length), all.toFixed(0), (all / 3600).toFixed(2)]);
  if (res.timing?.occlusionJob) rows.push(['exact maps (occlusion job)', String(res.timing.occlusionJob.maps) + ' maps', res.timing.occlusionJob.seconds.toFixed(0), (res.timing.occlusionJob.seconds / 3600).toFixed(2)]);
  return { kind: 'table', caption: 'Compute time of each phase over every invocation: explainer training per experiment (from each run\'s record), and the exact maps.', head: ['phase', 'runs', 'seconds', 'hours'], rows };
}

/** Exp. 4's finalists by the share of the mean map's error they remove on their own data. */
function exp4Skill(res: ExperimentResults): string {
  if (!res.exp4) return '';
  const parts = res.exp4.groups.map((g) => {
    const m = meanMapMse(res, runByName(res, g.base).data);
    return m ? `the ${describeRun(runByName(res, g.base))} removes ${(100 * (1 - g.val.mean / m)).toFixed(0)}% of the mean map's error (${f5(m)})` : '';
  }).filter(Boolean);
  return parts.length ? `Measured against the mean training map of its own data, ${parts.join(', ')}. ` : '';
}

/** The mean-map scale of Exp. 1: which models learned no more than one fixed map. */
function exp1Scale(res: ExperimentResults, runs: RunResult[]): string {
  const scale = (['mixed', 'sn', 'nonsn'] as const).map((k) => [k, meanMapMse(res, k)] as const).filter(([, v]) => v !== undefined);
  if (scale.length === 0) return '';
  let text = `For scale, the mean training map (one fixed map for every stamp) scores ${scale.map(([k, v]) => `${DATA_NAMES[k].toLowerCase()} ${f5(v)}`).join(', ')} on the same held-out maps`;
  const collapsed = runs.filter((r) => {
    const m = meanMapMse(res, r.data);
    return m !== undefined && r.mse.val >= 0.95 * m;
  });
  text += collapsed.length
    ? `; the ${collapsed.map(describeRun).join(' and the ')} did not get below it (an autoencoder whose softmax bottleneck settles on the average map).`
    : '; every model gets below it.';
  const sn = scale.find(([k]) => k === 'sn')?.[1];
  const mixed = scale.find(([k]) => k === 'mixed')?.[1];
  if (sn !== undefined && mixed !== undefined && sn < mixed / 2) {
    text += ` Supernova maps are alike (one central blob), so a low MSE on them is cheap: compare models on one dataset, or by the share of the mean map's error they remove.`;
  }
  return text;
}

function exampleCaption(res: ExperimentResults, ex: ExperimentResults['examples'][number]): string {
  const r = runByName(res, ex.run);
  const desc = (e: Example) => `${e.id ?? `row ${e.index}`}${e.label !== undefined ? ` (label ${e.label})` : ''}: MSE ${f5(e.mse)}`;
  return (
    `${ex.title}: ${describeRun(r)}. Rows: the ${ex.best.length} held-out maps with the lowest MSE (${ex.best.map(desc).join('; ')}), then the ${ex.worst.length} with the highest (${ex.worst.map(desc).join('; ')}). ` +
    `Columns: the input channel the explainer reads (${ex.best[0]?.channel ?? 'named above the panel'}; grey, its own scale), the exact map and the estimate (shared scale 0-1; low = important), and the error estimate - exact on a diverging scale (blue: estimate below exact, orange: above, dark: 0) shared by every row.`
  );
}

const METRIC_COLS: { key: keyof MethodMetrics; head: string }[] = [
  { key: 'mse', head: 'MSE' },
  { key: 'ssim', head: 'SSIM' },
  { key: 'pearson', head: 'Pearson' },
  { key: 'spearman', head: 'Spearman' },
  { key: 'spearmanTop', head: 'Spearman, top 10%' },
  { key: 'iou', head: 'top-10% IoU' },
  { key: 'deletion', head: 'deletion AUC' },
  { key: 'insertion', head: 'insertion AUC' },
];

function metricCells(m: MethodMetrics | undefined): string[] {
  return METRIC_COLS.map((c) => {
    const s = m?.[c.key];
    if (!s || !Number.isFinite(s.mean)) return '–';
    return c.key === 'mse' ? f5(s.mean) : f3(s.mean);
  });
}

/** Deletion / insertion of each method on the best run's held-out maps, beside the exact map's. */
function faithfulnessTable(r: RunResult): Block {
  const ex = r.metrics.exactMap;
  const rel = (a: number | undefined, b: number | undefined): string =>
    a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? '–' : `${(((a - b) / b) * 100).toFixed(1)}%`;
  const row = (name: string, m: MethodMetrics | undefined): string[] => [
    name,
    f3(m?.deletion?.mean),
    rel(m?.deletion?.mean, ex?.deletion?.mean),
    f3(m?.insertion?.mean),
    rel(m?.insertion?.mean, ex?.insertion?.mean),
  ];
  return {
    kind: 'table',
    caption: `Deletion (lower = more faithful) and insertion (higher = more faithful) AUC on the held-out maps of the ${describeRun(r)}, and each method's difference from the exact map's own AUC.`,
    head: ['method', 'deletion AUC', 'vs exact', 'insertion AUC', 'vs exact'],
    rows: [row('exact map (reference)', ex), row('explainer', r.metrics.explainer), row('mean training map', r.metrics.meanMap), row('|SNR difference|', r.metrics.snrSaliency)],
  };
}

function fidelitySection(res: ExperimentResults): Section {
  const rows: string[][] = [];
  for (const r of res.runs) rows.push([r.name, DATA_NAMES[r.data], 'explainer', ...metricCells(r.metrics.explainer)]);
  const baseRows: string[][] = [];
  for (const k of ['mixed', 'sn', 'nonsn'] as const) {
    const r = res.runs.find((x) => x.data === k);
    if (!r) continue;
    baseRows.push([`(baseline)`, DATA_NAMES[k], 'mean training map', ...metricCells(r.metrics.meanMap)]);
    baseRows.push([`(baseline)`, DATA_NAMES[k], '|SNR difference|', ...metricCells(r.metrics.snrSaliency)]);
    baseRows.push([`(reference)`, DATA_NAMES[k], 'exact map', ...metricCells(r.metrics.exactMap)]);
  }
  const best = res.runs.find((r) => r.name === (res.exp4?.best ?? res.demo?.run ?? res.exp2?.best ?? res.exp1?.bestOverall)) ?? res.runs[0];
  const blocks: Block[] = [];
  if (best) {
    const e = best.metrics.explainer;
    const mm = best.metrics.meanMap;
    const snr = best.metrics.snrSaliency;
    const ex = best.metrics.exactMap;
    blocks.push({
      kind: 'p',
      text:
        `On the held-out maps of the ${describeRun(best)}: SSIM ${f3(e.ssim?.mean)} (mean training map ${f3(mm?.ssim?.mean)}, |SNR difference| ${f3(snr?.ssim?.mean)}), ` +
        `Spearman ${f3(e.spearman?.mean)} (${f3(mm?.spearman?.mean)}, ${f3(snr?.spearman?.mean)}), top-10% IoU ${f3(e.iou?.mean)} (${f3(mm?.iou?.mean)}, ${f3(snr?.iou?.mean)}). ` +
        `Deletion AUC ${f3(e.deletion?.mean)} and insertion AUC ${f3(e.insertion?.mean)} against the exact map's own ${f3(ex?.deletion?.mean)} and ${f3(ex?.insertion?.mean)}: ` +
        `removing pixels in the estimate's order of importance lowers the classifier's probability ${(e.deletion?.mean ?? NaN) <= (ex?.deletion?.mean ?? NaN) ? 'at least as fast as' : 'more slowly than'} the exact map's order.`,
    });
    blocks.push(faithfulnessTable(best));
    const featured = [best, ...(res.exp4 ? res.exp4.groups.map((g) => runByName(res, g.base)) : [])].filter((r, i, a) => a.indexOf(r) === i);
    const verdicts = featured.map((r) => {
      const b = beatsMeanMap(r);
      return `the ${describeRun(r)} beats the mean training map on ${b.better.length} of ${b.better.length + b.worse.length} (${b.better.join(', ') || 'none'}${b.worse.length ? `; not on ${b.worse.join(', ')}` : ''})`;
    });
    const snrWorse = (['mixed', 'sn', 'nonsn'] as const)
      .map((k) => res.runs.find((r) => r.data === k)?.metrics)
      .filter((m) => m?.snrSaliency?.spearman && m.meanMap?.spearman)
      .map((m) => m!.snrSaliency!.spearman!.mean < m!.meanMap!.spearman!.mean);
    const snrNote = snrWorse.length > 0 && snrWorse.every(Boolean) ? ' The |SNR difference| saliency ranks pixels worse than the mean map on every dataset: the classifier does not simply look at bright residuals.' : '';
    blocks.push({ kind: 'p', text: `The baseline to beat is the mean training map: ${verdicts.join('; ')}.${snrNote}` });
  }
  blocks.push({
    kind: 'p',
    text: 'MSE, SSIM and the correlations compare maps in the seed\'s normalised units; IoU compares the 10% most important pixels; deletion (lower is better) and insertion (higher is better) follow the classifier\'s probability of the explained class as pixels are removed from the stamp, or added to an empty one, in order of importance. Baselines need no training: the mean training map (what a collapsed explainer outputs) and |SNR difference| (bright residual = important).',
  });
  blocks.push({ kind: 'table', caption: 'Held-out figures of every model (means over maps), with the baselines on the same maps.', head: ['model', 'data', 'method', ...METRIC_COLS.map((c) => c.head)], rows: [...rows, ...baseRows] });
  return { id: 'fidelity', title: 'How faithful the estimates are: every model against the baselines', blocks };
}

// --- figures -----------------------------------------------------------------------------------

const errorOf = (ex: Example): number[] => ex.estimate.map((v, i) => v - ex.exact[i]);

/** One row: input channel, exact, estimate (0-1, low = important), signed error on a diverging scale +-a. */
function examplePng(ex: Example, h: number, w: number, a: number): Uint8Array {
  const panels: Panel[] = [
    { title: (ex.channel ?? 'input').toUpperCase(), values: ex.input, h, w, colormap: 'gray' },
    { title: 'EXACT', values: ex.exact, h, w, range: [0, 1] },
    { title: 'ESTIMATE', values: ex.estimate, h, w, range: [0, 1] },
    { title: 'EST-EXACT', values: errorOf(ex), h, w, range: [-a, a], colormap: 'diverging' },
  ];
  return heatmapPng(panels, { scale: 8, fontScale: 2 });
}

/** One PNG with a row per example (best first, then worst); the error scale is shared by every row. */
export function examplesPng(exs: Example[], h: number, w: number): Uint8Array {
  const a = Math.max(1e-6, ...exs.flatMap((e) => errorOf(e).map(Math.abs)));
  const rows = exs.map((e) => PNG.sync.read(Buffer.from(examplePng(e, h, w, a))));
  const W = Math.max(...rows.map((r) => r.width));
  const H = rows.reduce((s, r) => s + r.height, 0);
  const out = new PNG({ width: W, height: H });
  out.data.fill(255);
  let y = 0;
  for (const r of rows) {
    PNG.bitblt(r, out, 0, 0, r.width, r.height, 0, y);
    y += r.height;
  }
  return new Uint8Array(PNG.sync.write(out));
}

/** Every figure the document refers to. */
export async function renderFigures(res: ExperimentResults): Promise<Figure[]> {
  const figs: Figure[] = [];
  const svg = async (id: string, spec: VlSpec) => figs.push({ id, svg: await renderSvg(spec) });
  if (res.exp1) {
    const rows: BarRow[] = [];
    for (const r of runsOf(res, 'exp1')) rows.push({ group: DATA_NAMES[r.data], bar: VARIANT_NAMES[r.variant], value: r.mse.val, source: 'ours' });
    for (const s of SEED_PAPER.exp1) rows.push({ group: DATA_NAMES[s.data as DataKey], bar: VARIANT_NAMES[s.variant as 'normal'], value: s.val, source: 'seed (HiTS 2013)' });
    await svg('exp1-bars', groupedBarSpec(rows, { yTitle: 'validation MSE' }));
  }
  if (res.exp3) {
    const runs = res.exp3.runs.map((n) => runByName(res, n));
    await svg('exp3-curves', lossCurvesSpec(runs.map((r) => ({ name: `cut ${r.cut}`, history: r.history })), { columns: 3 }));
  }
  if (res.exp4) {
    const rows: RepeatRow[] = [];
    const short = { bestSn: 'best on SN data', bestConditioned: 'best conditioned' } as const;
    for (const g of res.exp4.groups) for (const n of g.runs) rows.push({ model: short[g.key], source: 'ours', value: runByName(res, n).mse.val });
    for (const s of SEED_PAPER.exp4.frozenSn) rows.push({ model: short.bestSn, source: 'seed (HiTS 2013)', value: s.val });
    for (const s of SEED_PAPER.exp4.onehotMixed) rows.push({ model: short.bestConditioned, source: 'seed (HiTS 2013)', value: s.val });
    await svg('exp4-repeats', repeatsSpec(rows, { yTitle: 'validation MSE' }));
  }
  if (res.demo) {
    const r = runByName(res, res.demo.run);
    await svg('demo-curves', lossCurvesSpec([{ name: r.name, history: r.history }], { columns: 1 }));
  } else if (res.runs.length > 0) {
    await svg('all-curves', lossCurvesSpec(res.runs.map((r) => ({ name: r.name, history: r.history })), { columns: 3 }));
  }
  for (const ex of res.examples) figs.push({ id: examplesFigureId(ex.run), png: examplesPng([...ex.best, ...ex.worst], ex.h, ex.w) });
  return figs;
}

// --- rendering ---------------------------------------------------------------------------------

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function mdCell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export function figureFile(f: Figure): string {
  return `figures/${f.id}.${'svg' in f ? 'svg' : 'png'}`;
}

function reportTitle(res: ExperimentResults): string {
  return res.demo ? 'occmap demo: estimating occlusion maps in one pass' : "occmap: the seed's occlusion-map experiments, reproduced";
}

export function renderMarkdown(res: ExperimentResults, sections: Section[], figures: Figure[]): string {
  const byId = new Map(figures.map((f) => [f.id, f]));
  const out: string[] = [`# ${reportTitle(res)}`, '', `${res.createdAt} · preset ${res.preset} · seed ${res.seed}`, ''];
  for (const s of sections) {
    out.push(`## ${s.title}`, '');
    for (const b of s.blocks) {
      if (b.kind === 'p') out.push(b.text, '');
      else if (b.kind === 'list') out.push(...b.items.map((i) => `- ${i}`), '');
      else if (b.kind === 'table') {
        if (b.caption) out.push(`*${b.caption}*`, '');
        out.push(`| ${b.head.map(mdCell).join(' | ')} |`, `|${b.head.map(() => '---').join('|')}|`);
        for (const r of b.rows) out.push(`| ${r.map(mdCell).join(' | ')} |`);
        out.push('');
      } else {
        const f = byId.get(b.id);
        out.push(f ? `![${b.id}](${figureFile(f)})` : `(figure ${b.id} not rendered)`, '', `*${b.caption}*`, '');
      }
    }
  }
  return out.join('\n');
}

const CSS = `
body{font:15px/1.5 Georgia,'Times New Roman',serif;color:#222;max-width:1100px;margin:2em auto;padding:0 1.5em;background:#fff}
h1{font:600 1.7em Helvetica,Arial,sans-serif;margin-bottom:.2em}h2{font:600 1.25em Helvetica,Arial,sans-serif;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.meta{color:#666;font:13px Helvetica,Arial,sans-serif}nav{font:13px Helvetica,Arial,sans-serif;margin:1em 0}nav a{margin-right:1em;color:#1f5fa0;text-decoration:none}
table{border-collapse:collapse;margin:.6em 0 1.4em;font:13px/1.35 Helvetica,Arial,sans-serif}caption{caption-side:top;text-align:left;font-style:italic;padding-bottom:.4em;color:#444}
th,td{border-bottom:1px solid #e2e2e2;padding:.25em .6em;text-align:right;white-space:nowrap}th{border-bottom:2px solid #999;background:#fafafa}td:first-child,th:first-child{text-align:left}
td.t{text-align:left}tr:hover td{background:#f5f8fc}figure{margin:1em 0 1.6em}figcaption{font:13px/1.4 Helvetica,Arial,sans-serif;color:#444;max-width:950px}
figure img,figure svg{max-width:100%;height:auto;border:1px solid #eee}.scroll{overflow-x:auto}ul{font:13px Helvetica,Arial,sans-serif}
`;

/** Cells that read as numbers are right-aligned; words left. */
const NUMERIC = /^[-+–]?\s*[\d.,]+(e[-+]?\d+)?\s*(x|%|s|ms|µs|\(best \d+\)|\(\d+\))?$|^–$|^\d+ \/ \d+$/;

export function renderHtml(res: ExperimentResults, sections: Section[], figures: Figure[]): string {
  const byId = new Map(figures.map((f) => [f.id, f]));
  const parts: string[] = [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(reportTitle(res))}</title>`,
    `<style>${CSS}</style></head><body>`,
    `<h1>${escapeHtml(reportTitle(res))}</h1>`,
    `<p class="meta">${escapeHtml(`${res.createdAt} · preset ${res.preset} · seed ${res.seed} · occmap ${res.versions.occmap ?? '?'}`)}</p>`,
    `<nav>${sections.map((s) => `<a href="#${s.id}">${escapeHtml(s.title.split(':')[0])}</a>`).join('')}</nav>`,
  ];
  for (const s of sections) {
    parts.push(`<section id="${s.id}"><h2>${escapeHtml(s.title)}</h2>`);
    for (const b of s.blocks) {
      if (b.kind === 'p') parts.push(`<p>${escapeHtml(b.text)}</p>`);
      else if (b.kind === 'list') parts.push(`<ul>${b.items.map((i) => `<li>${escapeHtml(i)}</li>`).join('')}</ul>`);
      else if (b.kind === 'table') {
        parts.push('<div class="scroll"><table>');
        if (b.caption) parts.push(`<caption>${escapeHtml(b.caption)}</caption>`);
        parts.push(`<thead><tr>${b.head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>`);
        for (const r of b.rows) parts.push(`<tr>${r.map((c) => `<td${NUMERIC.test(c) ? '' : ' class="t"'}>${escapeHtml(c)}</td>`).join('')}</tr>`);
        parts.push('</tbody></table></div>');
      } else {
        const f = byId.get(b.id);
        let body = '<p>(figure not rendered)</p>';
        if (f && 'svg' in f) body = `<div class="scroll">${f.svg.replace(/^<\?xml[^>]*>\s*/, '')}</div>`;
        else if (f) body = `<img alt="${escapeHtml(b.id)}" src="data:image/png;base64,${Buffer.from(f.png).toString('base64')}">`;
        parts.push(`<figure id="fig-${b.id}">${body}<figcaption>${escapeHtml(b.caption)}</figcaption></figure>`);
      }
    }
    parts.push('</section>');
  }
  parts.push('</body></html>', '');
  return parts.join('\n');
}

/** Write index.html, report.md, figures/ and results.json into `dir`. */
export async function writeReport(res: ExperimentResults, dir: string): Promise<{ html: string; markdown: string; json: string }> {
  const sections = buildDocument(res);
  const figures = await renderFigures(res);
  ensureDir(path.join(dir, 'figures'));
  for (const f of figures) writeFileSync(path.join(dir, figureFile(f)), 'svg' in f ? f.svg : f.png);
  const files = { html: path.join(dir, 'index.html'), markdown: path.join(dir, 'report.md'), json: path.join(dir, 'results.json') };
  await writeFileAtomic(files.json, JSON.stringify(res, null, 1) + '\n');
  await writeFileAtomic(files.markdown, renderMarkdown(res, sections, figures));
  await writeFileAtomic(files.html, renderHtml(res, sections, figures));
  return files;
}
