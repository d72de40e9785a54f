/**
 * The last step of `npm run pretrain`: copy the trained classifier and explainer into the
 * repository (models/hits2015/) with a sample of held-out stamps and their exact maps, and
 * write the model card (README.md) from what the cards and the evaluation recorded, so the
 * shipped figures are the measured ones, not typed in. The folder is staged, then renamed.
 */
import { cpSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { readDataset, writeDataset } from '../src/data/dataset.js';
import { subsetDataset, type Dataset } from '../src/data/dataset-bytes.js';
import { augmentTransforms } from '../src/data/hits2015/build.js';
import { readExplainerCard, type ExplainerCard } from '../src/explainer/estimate.js';
import { writeFusedEstimateFor } from '../src/explainer/fused.js';
import { occmapVersion } from '../src/util/version.js';
import { hashFile, hashModelDir, loadModelDir, MODEL_ONNX, readCard, writeCard } from '../src/models/model-dir.js';
import { exportModelToOnnx, META_SOURCE_HASH } from '../src/models/to-onnx.js';
import { initTf } from '../src/runtime/tfjs.js';

export interface InstallOptions {
  /** The pretrain work directory: classifier/, explainer/, maps.npz, evaluation.json. */
  work: string;
  /** Target folder (models/hits2015). */
  out: string;
  /** Held-out original stamps per class in the sample. */
  perClass?: number;
  command: string;
  /** Said in the card under "Notes" (e.g. how this run departed from the command). */
  notes?: string[];
  log?: (m: string) => void;
}

/** Evenly spaced picks of up to k of xs (deterministic, spread over objects and epochs). */
export function spread<T>(xs: T[], k: number): T[] {
  if (xs.length <= k) return xs;
  return Array.from({ length: k }, (_, i) => xs[Math.floor((i * xs.length) / k)]);
}

/**
 * Rows of the sample: held-out stamps that are originals (not rotated/flipped copies), up to
 * `perClass` of each label, in data order.
 */
export function sampleRows(ds: Dataset, heldOut: number[], perClass: number): number[] {
  const t = ds.labels ? augmentTransforms(ds.labels, ds.meta.derivation as { augment?: unknown; augmentLabels?: unknown } | undefined) : undefined;
  const originals = heldOut.filter((r) => !t || t[r] === 0).sort((a, b) => a - b);
  const byLabel = new Map<number, number[]>();
  for (const r of originals) {
    const l = ds.labels ? ds.labels[r] : 0;
    if (!byLabel.has(l)) byLabel.set(l, []);
    byLabel.get(l)!.push(r);
  }
  return [...byLabel.keys()].sort((a, b) => a - b).flatMap((l) => spread(byLabel.get(l)!, perClass)).sort((a, b) => a - b);
}

const f3 = (v: unknown): string => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(3) : 'n/a');

interface MethodSummary {
  name: string;
  summary: Record<string, { mean: number; std: number; n: number } | undefined>;
}

/** The model card: provenance, split, figures (from the evaluation), licence. */
function modelCard(o: InstallOptions, ctx: { clf: Record<string, any>; expl: Record<string, any>; evaluation: Record<string, any>; dataSha: string; sampleRows: number; heldOutObjects: number }): string {
  const { clf, expl, evaluation } = ctx;
  const methods = (evaluation.methods ?? []) as MethodSummary[];
  const exact = evaluation.exact as MethodSummary | undefined;
  const m = (name: string) => methods.find((x) => x.name === name)?.summary ?? {};
  const e = m('explainer');
  const row = (label: string, s: MethodSummary['summary']) =>
    `| ${label} | ${f3(s.ssim?.mean)} | ${f3(s.spearman?.mean)} | ${f3(s.spearmanTop?.mean)} | ${f3(s.iou?.mean)} | ${f3(s.deletion?.mean)} | ${f3(s.insertion?.mean)} |`;
  const tr = clf.training ?? {};
  const hist = (tr.history ?? []) as { epoch: number; valAcc?: number }[];
  const best = hist.find((h) => h.epoch === tr.bestEpoch);
  return [
    '# Pretrained HiTS 2015 models',
    '',
    'What `occmap explain` and `occmap serve` use when no model is given. Made by one command,',
    `\`${o.command}\` (scripts/pretrain.ts; docs/pretrained.md says how long each step takes).`,
    '',
    '| file | what |',
    '|---|---|',
    `| classifier/ | the seed's CNN (docs/seed.md), ${clf.parameters} parameters, input: the ${(clf.channelNames ?? []).join(', ')} channel, ${clf.inputShape?.[0]}x${clf.inputShape?.[1]} (zero-padded by ${clf.options?.pad ?? 0} inside the model); tfjs layers + model.onnx |`,
    `| explainer/ | ${expl.variant === 'unet' ? 'U-Net' : expl.variant} explainer, ${expl.condition === 'none' ? 'unconditioned' : `${expl.condition} conditioned on the ${expl.conditionOn === 'predicted' ? "classifier's predicted class" : 'label'}`}, loss on ${LOSS_UNITS[expl.options?.targetUnits as string] ?? LOSS_UNITS.seed}; tfjs + ONNX |`,
    `| sample.npz | ${ctx.sampleRows} held-out stamps (originals, no rotated copies) with their exact maps (maps, maps_raw), labels and ids |`,
    '| heldout-objects.txt | the objects neither model trained on |',
    '',
    '## Data',
    '',
    `Every kept epoch of the shipped HiTS 2015 stamps (\`occmap dataset hits2015 --balance none --augment dihedral --augment-labels supernova\`):`,
    `${clf.data?.shape?.[0]} stamps, sha256 ${ctx.dataSha}; the supernova stamps with their 7 rotations/flips. Exact maps: 3x3 patch, stride 1, fill 0, on the`,
    `stamp zero-padded by 3 (625 positions), probability of the predicted class, seed normalisation.`,
    '',
    `Held out: ${ctx.heldOutObjects} objects (${expl.split?.valCount} stamps, with every rotated copy of theirs) chosen by object, seed ${clf.options?.seed}, fraction ${clf.options?.valFraction}.`,
    "The explainer holds out exactly the classifier's validation objects. Both used these objects' validation loss to pick the epoch whose weights they kept",
    '(early stopping), so the figures below are on objects neither model trained on, but not fully untouched by model selection.',
    '',
    '## Figures (held-out objects)',
    '',
    `Classifier: accuracy ${f3(best?.valAcc)} on ${tr.split?.val} held-out stamps (epoch ${tr.bestEpoch} of ${tr.epochsRun}).`,
    '',
    `Explainer vs exact maps on ${evaluation.indices?.length ?? '?'} held-out maps (\`occmap evaluate --explainer explainer --data maps.npz --out evaluation.json\` in the work directory):`,
    '',
    '| method | SSIM | Spearman | Spearman, top 10% | top-10% IoU | deletion AUC | insertion AUC |',
    '|---|---|---|---|---|---|---|',
    row('explainer', e),
    row('mean training map (baseline)', m('meanMap')),
    row('abs SNR difference (baseline)', m('snrSaliency')),
    `| exact map (reference) | | | | | ${f3(exact?.summary?.deletion?.mean)} | ${f3(exact?.summary?.insertion?.mean)} |`,
    '',
    'Deletion: lower is more faithful; insertion: higher. Spearman, top 10%: rank correlation on the exact map\'s most important',
    "10% of pixels (importance from the maps before the seed's clip).",
    '',
    ...(o.notes && o.notes.length ? ['## Notes', '', ...o.notes.map((n) => `- ${n}`), ''] : []),
    '## Versions',
    '',
    `occmap ${occmapVersion()}; trained with TensorFlow.js layers on the wasm backend; exported to ONNX by occmap.`,
    `Classifier trained ${clf.createdAt}, explainer ${expl.createdAt}.`,
    '',
    '## Licence',
    '',
    'Models: MIT, as occmap. Trained on the HiTS 2015 stamps of `rodrigcd/HiTS_simulations` (MIT, data/hits2015/LICENSE).',
    '',
  ].join('\n');
}

/**
 * Cards name files by this machine's absolute paths: the shipped copies name the pretrain
 * work directory's files instead, and the explainer finds its classifier beside it.
 */
function portableCards(dir: string, work: string): void {
  const rel = (p: unknown): unknown => (typeof p === 'string' && path.isAbsolute(p) ? path.relative(work, p) : p);
  // writeCard records every file's sha256 again (the files are unchanged; the card is not).
  const fix = (file: string, f: (c: Record<string, any>) => void): void => {
    if (!existsSync(file)) return;
    const c = JSON.parse(readFileSync(file, 'utf8'));
    f(c);
    writeCard(path.dirname(file), c);
  };
  fix(path.join(dir, 'classifier', 'card.json'), (c) => {
    if (c.data && typeof c.data === 'object') c.data.file = rel(c.data.file);
  });
  const explainerCard = (c: Record<string, any>) => {
    c.data = rel(c.data);
    if (typeof c.classifier === 'string') c.classifier = '../classifier';
    if (Array.isArray(c.members)) for (const m of c.members) if (typeof m.dir === 'string') m.dir = path.basename(m.dir);
  };
  // Members first: the ensemble's card hashes their files.
  for (let k = 0; existsSync(path.join(dir, 'explainer', `member-${k}`)); k++) {
    fix(path.join(dir, 'explainer', `member-${k}`, 'card.json'), (c) => {
      explainerCard(c);
      if (typeof c.classifier === 'string') c.classifier = '../../classifier';
    });
  }
  fix(path.join(dir, 'explainer', 'card.json'), explainerCard);
}

/**
 * The explainer's ONNX files made again by this occmap from its (unchanged) tfjs weights: each
 * member's model.onnx, then estimate.onnx, then the card's file hashes. The exporter improves
 * (e.g. a Conv over a thin concatenated part runs as one Conv per part), and the shipped
 * models should run what `train-explainer` would export today.
 */
/** A model directory's model.onnx exported again by this occmap from its tfjs weights. */
async function exportOnnxAgain(dir: string): Promise<void> {
  const model = await loadModelDir(dir);
  await exportModelToOnnx(model, path.join(dir, MODEL_ONNX), { metadata: { [META_SOURCE_HASH]: hashModelDir(dir) } });
  model.dispose();
}

/** What the explainer's loss compared, by train-explainer --target-units, for the card. */
const LOSS_UNITS: Record<string, string> = {
  seed: 'the seed-normalised maps',
  unclipped: "the seed's z-scores before the clip (output clipped to [0,1])",
  'log-rest': 'log(cover - raw map), centred per map (its last layer turns that into seed units)',
};

async function reexportExplainer(dir: string, clfDir: string): Promise<void> {
  const card = readExplainerCard(dir) as unknown as Record<string, any>;
  const members: { dir: string; hash: string }[] = Array.isArray(card.members) ? card.members.map((m: { dir: string; hash: string }) => ({ dir: m.dir, hash: m.hash })) : [{ dir: '.', hash: card.hash }];
  for (const m of members) {
    const mdir = path.join(dir, m.dir);
    await exportOnnxAgain(mdir);
    if (m.dir !== '.') writeCard(mdir, readCard(mdir)!);
  }
  if (card.condition === 'onehot' || card.condition === 'numeral') {
    const clfCard = readCard(clfDir) as { channels?: number[] } | undefined;
    const written = await writeFusedEstimateFor(dir, card as ExplainerCard, { dir: clfDir, hash: card.classifierHash, channels: clfCard?.channels }, members);
    const fe = written.fusedEstimate as { file: string | null; reason?: string };
    if (!fe.file) throw new Error(`${dir}: no fused estimate graph: ${fe.reason}`);
  } else {
    writeCard(dir, card as any);
  }
}

export async function installPretrained(o: InstallOptions): Promise<void> {
  const log = o.log ?? (() => {});
  const w = (f: string) => path.join(o.work, f);
  for (const f of ['classifier', 'explainer', 'maps.npz', 'evaluation.json']) {
    if (!existsSync(w(f))) throw new Error(`${w(f)}: missing; run the earlier pretrain steps first`);
  }
  await initTf('auto');
  const clf = readCard(w('classifier')) as Record<string, any> | undefined;
  if (!clf) throw new Error(`${w('classifier')}: has no card.json`);
  const expl = readExplainerCard(w('explainer')) as unknown as Record<string, any>;
  const evaluation = JSON.parse(readFileSync(w('evaluation.json'), 'utf8'));
  const ds = await readDataset(w('maps.npz'));
  const heldOut = expl.split.valIndices as number[];
  const rows = sampleRows(ds, heldOut, o.perClass ?? 150);
  const heldOutObjects = ds.ids ? [...new Set(heldOut.map((r) => ds.ids![r]))].sort() : [];

  const stage = `${o.out}.staging-${process.pid}`;
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  try {
    // The classifier's tfjs files as trained (the explainer's card names their hash), its ONNX
    // export made again by this occmap, and a card recording every file's hash (it may come
    // from an older occmap that recorded none).
    const clfDir = path.join(stage, 'classifier');
    cpSync(w('classifier'), clfDir, { recursive: true });
    await exportOnnxAgain(clfDir);
    cpSync(w('explainer'), path.join(stage, 'explainer'), { recursive: true });
    portableCards(stage, o.work);
    await reexportExplainer(path.join(stage, 'explainer'), clfDir);
    await writeDataset(path.join(stage, 'sample.npz'), subsetDataset(ds, rows));
    writeFileSync(path.join(stage, 'heldout-objects.txt'), heldOutObjects.join('\n') + '\n');
    const dataSha = (clf.data?.sha256 as string | undefined) ?? (existsSync(w('hits-scale.npz')) ? await hashFile(w('hits-scale.npz')) : 'unknown');
    writeFileSync(path.join(stage, 'README.md'), modelCard(o, { clf, expl, evaluation, dataSha, sampleRows: rows.length, heldOutObjects: heldOutObjects.length }));
    log(`sample: ${rows.length} held-out original stamps; ${heldOutObjects.length} held-out objects`);
    const old = `${o.out}.old-${process.pid}`;
    if (existsSync(o.out)) renameSync(o.out, old);
    renameSync(stage, o.out);
    rmSync(old, { recursive: true, force: true });
  } catch (e) {
    rmSync(stage, { recursive: true, force: true });
    throw e;
  }
}
