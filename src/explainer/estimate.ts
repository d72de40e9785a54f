/**
 * One-pass occlusion-map estimates from a trained explainer directory (single model or
 * ensemble). The directory format and the engine choice are models/model-dir.ts's; both
 * engines take the same NHWC arrays.
 *
 * The caller gives dataset images as they are (n,h,w,cData): the explainer picks its channels,
 * pads to its input size the way it was trained (docs/seed.md: 21 -> 24, top/left 2), and crops the
 * estimates back to (n,h,w).
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { SEED_PARAMS, type OcclusionParams } from '../occlusion/exact.js';
import { CARD_JSON, checkEngineChoice, modelDirRun, openModelDir, readCard } from '../models/model-dir.js';
import { tf, type tfl } from '../runtime/tfjs.js';
import { fileError, UserError } from '../util/errors.js';
import { labelUnits } from '../models/condition.js';
import { RunnerExplainer, type Explainer, type ExplainerCard, type FusedRunner, type Runner } from './runner.js';
import { FUSED_ONNX, fusedEstimate } from './fused.js';

export { memberMeanStd, type Estimate, type Explainer, type ExplainerCard } from './runner.js';

export interface LoadExplainerOptions {
  engine?: 'auto' | 'onnx' | 'tfjs';
  /** ONNX Runtime intra-op threads (default: the machine's cores). */
  threads?: number;
  /** Items per inference call (default 1024 on ONNX Runtime, 256 on tfjs). */
  batchSize?: number;
  /** One-line notes (integrity not checkable, fallback to tfjs); default: stderr. */
  onNote?: (line: string) => void;
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

/** card.json of an explainer directory (read by models/model-dir.ts), checked enough that estimate() can trust it. */
export function readExplainerCard(dir: string): ExplainerCard {
  if (!existsSync(dir)) throw fileError(dir, 'does not exist');
  if (!statSync(dir).isDirectory()) throw fileError(dir, "is not a directory (expected an explainer from 'occmap train-explainer')");
  const file = path.join(dir, CARD_JSON);
  const read = readCard(dir);
  if (!read) throw fileError(dir, `not an explainer directory (no ${CARD_JSON})`);
  const card = read as unknown as ExplainerCard;
  if (card.kind !== 'explainer') {
    throw fileError(file, `is not an explainer card (kind ${JSON.stringify((card as { kind?: unknown })?.kind)}; expected 'explainer')`);
  }
  if (!['none', 'numeral', 'onehot'].includes(card.condition)) throw fileError(file, `unknown condition ${JSON.stringify(card.condition)}`);
  if (!(Number.isInteger(card.inputSize) && card.inputSize > 0)) throw fileError(file, "needs a positive integer 'inputSize'");
  if (!(Number.isInteger(card.numClasses) && card.numClasses >= 1)) throw fileError(file, "needs a positive integer 'numClasses'");
  return card;
}

async function onnxRunner(model: string | Uint8Array, source: string, card: ExplainerCard, C: number, nLabel: number, threads: number, o: LoadExplainerOptions): Promise<Runner> {
  const { createOnnxSession, releaseOnnxSession, runOnnxBatched } = await import('../runtime/onnx.js');
  const S = card.inputSize;
  const session = await createOnnxSession(model, { threads, source });
  const want = nLabel > 0 ? ['image', 'label'] : ['image'];
  if (session.inputNames.join() !== want.join()) {
    await releaseOnnxSession(session);
    throw fileError(source, `takes inputs [${session.inputNames.join(', ')}], expected [${want.join(', ')}] for condition '${card.condition}'`);
  }
  return {
    run: async (x, cond, n) => {
      const feeds = [{ name: 'image', data: x, shape: [S, S, C] }];
      if (cond) feeds.push({ name: 'label', data: cond, shape: [nLabel] });
      const out = await runOnnxBatched(session, feeds, n, { batchSize: o.batchSize ?? 1024 });
      return out.data;
    },
    dispose: () => void releaseOnnxSession(session).catch(() => undefined),
  };
}

function tfjsRunner(model: tfl.LayersModel, dir: string, card: ExplainerCard, C: number, nLabel: number, o: LoadExplainerOptions): Runner {
  const S = card.inputSize;
  const chunk = o.batchSize ?? 256;
  const [inS, outS] = [model.inputs[0].shape, model.outputs[0].shape];
  if (inS[1] !== S || inS[2] !== S || inS[3] !== C || model.inputs.length !== (nLabel > 0 ? 2 : 1) || outS[1] !== S || outS[2] !== S) {
    model.dispose();
    throw fileError(dir, `model input (${inS.join(',')}) / output (${outS.join(',')}) do not match card.json (input ${S}x${S}x${C}, condition ${card.condition})`);
  }
  return {
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
  };
}

/** The directory's estimate.onnx on ONNX Runtime, when built from the members it holds. */
async function fusedRunner(dir: string, card: ExplainerCard, members: number, C: number, threads: number, o: LoadExplainerOptions, note: (line: string) => void): Promise<FusedRunner | undefined> {
  const hashes = members > 1 ? ((card.members as { hash?: string }[] | undefined) ?? []).map((m) => m.hash) : [card.hash as string | undefined];
  const found = fusedEstimate(dir, hashes);
  if (!found) return undefined;
  // Like model.onnx: used only when card.json records its hash (openModelDir verified it).
  if (!(card as { files?: Record<string, string> }).files?.[FUSED_ONNX]) {
    note(`${found.file} is not recorded in card.json: not used (the classifier and the explainer run as two calls)`);
    return undefined;
  }
  const { createOnnxSession, releaseOnnxSession, runOnnxBatchedOutputs } = await import('../runtime/onnx.js');
  const session = await createOnnxSession(found.file, { threads });
  const names = members > 1 ? Array.from({ length: members }, (_, k) => `map${k}`) : ['map'];
  if (session.inputNames.join() !== 'image' || session.outputNames.join() !== ['probs', ...names].join()) {
    await releaseOnnxSession(session);
    throw fileError(found.file, `has inputs [${session.inputNames.join(', ')}] and outputs [${session.outputNames.join(', ')}], not [image] -> [probs, ${names.join(', ')}]`);
  }
  const S = card.inputSize;
  return {
    classifierHash: found.info.classifierHash,
    run: async (x, n) => {
      const out = await runOnnxBatchedOutputs(session, [{ name: 'image', data: x, shape: [S, S, C] }], n, session.outputNames, { batchSize: o.batchSize ?? 1024 });
      return { probs: out.probs.data, maps: names.map((m) => out[m].data) };
    },
    dispose: () => void releaseOnnxSession(session).catch(() => undefined),
  };
}

/**
 * Load an explainer directory written by `occmap train-explainer`: its files (every member's)
 * verified against card.json, each member on the engine models/model-dir.ts picks (its
 * model.onnx when the card vouches for it, else its weights converted at load; tfjs when asked
 * or when a layer cannot be converted).
 */
export async function loadExplainer(dir: string, opts: LoadExplainerOptions = {}): Promise<Explainer> {
  const card = readExplainerCard(dir);
  const engineChoice = checkEngineChoice(opts.engine);
  const opened = openModelDir(dir);
  const note = opts.onNote ?? ((line: string) => void process.stderr.write(`occmap: ${line}\n`));
  opened.notes.forEach(note);
  const C = card.channels?.length ?? (Array.isArray(card.inputShape) ? Number((card.inputShape as number[])[2]) : NaN);
  if (!(Number.isInteger(C) && C >= 1)) throw fileError(path.join(dir, CARD_JSON), "needs 'channels' or 'inputShape' to know the model's channel count");
  const nLabel = labelUnits(card.condition, card.numClasses);
  const threads = opts.threads ?? (await import('../runtime/onnx.js')).defaultThreads();
  const runners: Runner[] = [];
  const engines = new Set<string>();
  try {
    for (const member of opened.members) {
      const run = await modelDirRun(member, engineChoice, { note });
      if (run.engine === 'onnx') {
        const source = typeof run.model === 'string' ? run.model : member.dir;
        runners.push(await onnxRunner(run.model, source, card, C, nLabel, threads, opts));
        const { ortEngineName } = await import('../runtime/ort.js');
        engines.add(`${ortEngineName()} (${threads} thread${threads === 1 ? '' : 's'})`);
      } else {
        runners.push(tfjsRunner(run.model, member.dir, card, C, nLabel, opts));
        engines.add(`tfjs-${tf.getBackend()}`);
      }
    }
  } catch (err) {
    runners.forEach((r) => r.dispose());
    throw err;
  }
  const engine = [...engines].join(' + ');
  let fused: FusedRunner | undefined;
  try {
    // The fused graph runs on ONNX Runtime: used only when every member does too.
    fused = nLabel > 0 && !engines.has(`tfjs-${tf.getBackend()}`) ? await fusedRunner(dir, card, opened.members.length, C, threads, opts, note) : undefined;
  } catch (err) {
    runners.forEach((r) => r.dispose());
    throw err;
  }
  return new RunnerExplainer(card, engine, runners, C, nLabel, dir, fused);
}

