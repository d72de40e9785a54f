/**
 * One-pass occlusion-map estimates from a trained explainer directory (single model or
 * ensemble). ONNX Runtime runs the model.onnx export when it is current (exported from the
 * weights card.json describes), tfjs otherwise; both take the same NHWC arrays.
 *
 * The caller gives dataset images as they are (n,h,w,cData): the explainer picks its channels,
 * pads to its input size the way it was trained (docs/seed.md: 21 -> 24, top/left 2), and crops the
 * estimates back to (n,h,w).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { SEED_PARAMS, type OcclusionParams } from '../occlusion/exact.js';
import { CARD_JSON, loadModelDir } from '../models/io.js';
import { initTf, tf, type tfl } from '../runtime/tfjs.js';
import { fileError, UserError } from '../util/errors.js';
import { labelUnits } from '../models/condition.js';
import { RunnerExplainer, type Explainer, type ExplainerCard, type Runner } from './runner.js';

export { memberMeanStd, type Explainer, type ExplainerCard } from './runner.js';

export interface LoadExplainerOptions {
  engine?: 'auto' | 'onnx' | 'tfjs';
  /** ONNX Runtime intra-op threads (default: the machine's cores). */
  threads?: number;
  /** Items per inference call (default 1024 on ONNX Runtime, 256 on tfjs). */
  batchSize?: number;
}

/**
 * The class each map of a maps dataset was drawn for, from meta.occlusion.target: 'label' ->
 * the labels, 'predicted' -> the classifier's predictions (which the caller computes), a
 * number k -> k for all. Pure; throws a one-line UserError naming `file` when a source is missing.
 */
export function conditionTargets(
  target: unknown,
  src: { labels?: Int32Array; predicted?: Int32Array; n?: number; file: string },
): { targets: Int32Array; source: 'label' | 'predicted' | number } {
  if (target === 'predicted') {
    if (!src.predicted) throw fileError(src.file, "maps were drawn for the classifier's predicted class: the predictions are needed (give the classifier)");
    return { targets: src.predicted, source: 'predicted' };
  }
  if (target === 'label') {
    if (!src.labels) throw fileError(src.file, "maps were drawn for each stamp's label, and the data has no labels");
    return { targets: src.labels, source: 'label' };
  }
  if (typeof target === 'number' && Number.isInteger(target) && target >= 0) {
    const n = src.labels?.length ?? src.predicted?.length ?? src.n;
    if (n === undefined) throw new Error('conditionTargets: item count unknown');
    return { targets: new Int32Array(n).fill(target), source: target };
  }
  throw fileError(src.file, `meta.occlusion.target ${JSON.stringify(target)} is not 'predicted', 'label' or a class number`);
}

/** The occlusion parameters the explainer's training maps were made with (seed defaults otherwise). */
export function occlusionParamsOf(card: ExplainerCard): OcclusionParams {
  const o = (card.occlusion ?? {}) as Partial<OcclusionParams>;
  const p: OcclusionParams = { ...SEED_PARAMS };
  if (Array.isArray(o.patch) && o.patch.length === 2) p.patch = [Number(o.patch[0]), Number(o.patch[1])];
  if (typeof o.stride === 'number') p.stride = o.stride;
  if (typeof o.pad === 'number') p.pad = o.pad;
  if (typeof o.fill === 'number' || o.fill === 'mean') p.fill = o.fill;
  if (o.target === 'predicted' || o.target === 'label' || typeof o.target === 'number') p.target = o.target;
  if (o.score === 'prob' || o.score === 'drop') p.score = o.score;
  if (o.aggregate === 'sum' || o.aggregate === 'mean') p.aggregate = o.aggregate;
  if (o.normalize === 'none' || o.normalize === 'seed') p.normalize = o.normalize;
  return p;
}

/** card.json of an explainer directory, checked enough that estimate() can trust it. */
export function readExplainerCard(dir: string): ExplainerCard {
  if (!existsSync(dir)) throw fileError(dir, 'does not exist');
  if (!statSync(dir).isDirectory()) throw fileError(dir, "is not a directory (expected an explainer from 'occmap train-explainer')");
  const file = path.join(dir, CARD_JSON);
  let card: ExplainerCard;
  try {
    card = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw fileError(code ? dir : file, code ? `not an explainer directory (cannot read ${CARD_JSON}: ${code})` : 'is not valid JSON');
  }
  if (!card || typeof card !== 'object' || card.kind !== 'explainer') {
    throw fileError(file, `is not an explainer card (kind ${JSON.stringify((card as { kind?: unknown })?.kind)}; expected 'explainer')`);
  }
  if (!['none', 'numeral', 'onehot'].includes(card.condition)) throw fileError(file, `unknown condition ${JSON.stringify(card.condition)}`);
  if (!(Number.isInteger(card.inputSize) && card.inputSize > 0)) throw fileError(file, "needs a positive integer 'inputSize'");
  if (!(Number.isInteger(card.numClasses) && card.numClasses >= 1)) throw fileError(file, "needs a positive integer 'numClasses'");
  if (card.channels !== undefined && !(Array.isArray(card.channels) && card.channels.every((c) => Number.isInteger(c) && c >= 0))) {
    throw fileError(file, "'channels' must be a list of non-negative channel indices");
  }
  return card;
}

/** The member model directories of an explainer: itself, or DIR/member-<k>/ for an ensemble. */
export function memberDirs(dir: string, card: ExplainerCard): string[] {
  if (!card.ensemble || card.ensemble <= 1) return [dir];
  const listed = Array.isArray(card.members) ? (card.members as { dir?: unknown }[]).map((m) => m.dir) : undefined;
  const names = listed && listed.every((d) => typeof d === 'string') ? (listed as string[]) : Array.from({ length: card.ensemble }, (_, k) => `member-${k}`);
  if (names.length !== card.ensemble) throw fileError(path.join(dir, CARD_JSON), `lists ${names.length} members for an ensemble of ${card.ensemble}`);
  return names.map((n) => {
    const d = path.resolve(dir, n);
    if (path.dirname(d) !== path.resolve(dir)) throw fileError(path.join(dir, CARD_JSON), `member '${n}' is outside the explainer directory`);
    return d;
  });
}

async function onnxRunners(files: string[], card: ExplainerCard, C: number, nLabel: number, o: LoadExplainerOptions): Promise<{ runners: Runner[]; threads: number }> {
  const { createOnnxSession, releaseOnnxSession, runOnnxBatched, defaultThreads } = await import('../runtime/onnx.js');
  const threads = o.threads ?? defaultThreads();
  const S = card.inputSize;
  const runners: Runner[] = [];
  try {
    for (const file of files) {
      const session = await createOnnxSession(file, { threads });
      runners.push({
        run: async (x, cond, n) => {
          const feeds = [{ name: 'image', data: x, shape: [S, S, C] }];
          if (cond) feeds.push({ name: 'label', data: cond, shape: [nLabel] });
          const out = await runOnnxBatched(session, feeds, n, { batchSize: o.batchSize ?? 1024 });
          return out.data;
        },
        dispose: () => void releaseOnnxSession(session).catch(() => undefined),
      });
      const want = nLabel > 0 ? ['image', 'label'] : ['image'];
      if (session.inputNames.join() !== want.join()) {
        throw fileError(file, `takes inputs [${session.inputNames.join(', ')}], expected [${want.join(', ')}] for condition '${card.condition}'`);
      }
    }
  } catch (err) {
    runners.forEach((r) => r.dispose());
    throw err;
  }
  return { runners, threads };
}

async function tfjsRunners(dirs: string[], card: ExplainerCard, C: number, nLabel: number, o: LoadExplainerOptions): Promise<Runner[]> {
  await initTf();
  const S = card.inputSize;
  const chunk = o.batchSize ?? 256;
  const runners: Runner[] = [];
  try {
    for (const dir of dirs) {
      const model: tfl.LayersModel = await loadModelDir(dir);
      runners.push({
        run: async (x, cond, n) => {
          const out = new Float32Array(n * S * S);
          for (let from = 0; from < n; from += chunk) {
            const to = Math.min(n, from + chunk);
            const y = tf.tidy(() => {
              const xi = tf.tensor4d(x.subarray(from * S * S * C, to * S * S * C), [to - from, S, S, C]);
              const inputs = cond ? [xi, tf.tensor2d(cond.subarray(from * nLabel, to * nLabel), [to - from, nLabel])] : xi;
              return (model.predict(inputs) as tf.Tensor).dataSync() as Float32Array;
            });
            out.set(y, from * S * S);
          }
          return out;
        },
        dispose: () => model.dispose(),
      });
      const [inS, outS] = [model.inputs[0].shape, model.outputs[0].shape];
      if (inS[1] !== S || inS[2] !== S || inS[3] !== C || model.inputs.length !== (nLabel > 0 ? 2 : 1) || outS[1] !== S || outS[2] !== S) {
        throw fileError(dir, `model input (${inS.join(',')}) / output (${outS.join(',')}) do not match card.json (input ${S}x${S}x${C}, condition ${card.condition})`);
      }
    }
  } catch (err) {
    runners.forEach((r) => r.dispose());
    throw err;
  }
  return runners;
}

/**
 * Load an explainer directory written by `occmap train-explainer`. engine 'auto': ONNX Runtime
 * when every member's model.onnx is current, else tfjs; 'onnx' fails when one is not.
 */
export async function loadExplainer(dir: string, opts: LoadExplainerOptions = {}): Promise<Explainer> {
  const card = readExplainerCard(dir);
  const engineChoice = opts.engine ?? 'auto';
  if (!['auto', 'onnx', 'tfjs'].includes(engineChoice)) throw new UserError(`--engine must be auto, onnx or tfjs, got '${engineChoice}'`);
  const dirs = memberDirs(dir, card);
  const C = card.channels?.length ?? (Array.isArray(card.inputShape) ? Number((card.inputShape as number[])[2]) : NaN);
  if (!(Number.isInteger(C) && C >= 1)) throw fileError(path.join(dir, CARD_JSON), "needs 'channels' or 'inputShape' to know the model's channel count");
  const nLabel = labelUnits(card.condition, card.numClasses);

  let onnxFiles: (string | undefined)[] = [];
  if (engineChoice !== 'tfjs') {
    const { currentOnnxExport } = await import('../runtime/onnx.js');
    onnxFiles = dirs.map((d) => currentOnnxExport(d));
    const stale = dirs.find((_, i) => !onnxFiles[i]);
    if (stale !== undefined && engineChoice === 'onnx') {
      throw fileError(stale, 'has no current model.onnx (missing, or exported from other weights): use --engine tfjs');
    }
  }
  let runners: Runner[];
  let engine: string;
  if (engineChoice !== 'tfjs' && onnxFiles.every((f) => f)) {
    const r = await onnxRunners(onnxFiles as string[], card, C, nLabel, opts);
    runners = r.runners;
    const { ortEngineName } = await import('../runtime/ort.js');
    engine = `${ortEngineName()} (${r.threads} thread${r.threads === 1 ? '' : 's'})`;
  } else {
    runners = await tfjsRunners(dirs, card, C, nLabel, opts);
    engine = `tfjs-${tf.getBackend()}`;
  }
  return new RunnerExplainer(card, engine, runners, C, nLabel, dir);
}
