/**
 * loadModel: any classifier a user has, as a Predictor. Every kind ends in the same head
 * (predictor-head.ts: padding, probabilities, the finite-output check) and runs on ONNX
 * Runtime when it can:
 *
 *   tfjs model directory     verified against card.json, then its model.onnx or its weights
 *                            converted at load (model-dir.ts decides)
 *   .onnx path or bytes      ONNX Runtime
 *   Keras 2 .h5              rebuilt in tfjs, converted to ONNX at load
 *   tfjs LayersModel         converted to ONNX at load (the caller keeps the model)
 *   InferenceSession         run as is (the caller keeps the session)
 *   function (batch, n)      called with NHWC (or NCHW) batches; inputShape and numClasses given
 *
 * tfjs runs a model only when asked (engine 'tfjs') or when a layer has no ONNX converter.
 */
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import type * as ort from 'onnxruntime-common';
import type { Predictor } from './predictor.js';
import { fileError, UserError } from '../util/errors.js';
import { initTf, type BackendChoice, type tfl } from '../runtime/tfjs.js';
import {
  CARD_JSON,
  MODEL_JSON,
  MODEL_ONNX,
  checkEngineChoice,
  hashFile,
  layersModelRun,
  modelDirRun,
  openModelDir,
  verifyModelDir,
  type EngineChoice,
  type ModelRun,
} from './model-dir.js';
import { TfjsCore, outputKind } from './tfjs-predictor.js';
import { openOnnxCore, nhwcToNchw, type InputLayout } from './onnx-predictor.js';
import { noteFallback } from '../occlusion/incremental-engine-name.js';
import { ModelPredictor, looksLikeProbabilities, probeImages, type ModelCore, type OutputKind } from './predictor-head.js';

/** A classifier as a plain function: n images in (NHWC, or NCHW with layout 'NCHW'), n x K values out. */
export type PredictFn = (batch: Float32Array, n: number) => Float32Array | Promise<Float32Array>;

/** What loadModel takes. */
export type ModelInput = string | Uint8Array | tfl.LayersModel | ort.InferenceSession | PredictFn;

export interface LoadOptions {
  /**
   * 'auto' (default): ONNX Runtime, tfjs only for a layer without ONNX converter.
   * 'incremental' (loadPredictor only): occlusion maps by the incremental engine
   * (src/occlusion/) where it can run the model, else 'auto' with the reason (incrementalNote).
   */
  engine?: EngineChoice | 'incremental';
  /** ONNX Runtime intra-op threads (default: the machine's cores). */
  threads?: number;
  /** tfjs backend when tfjs runs or rebuilds the model (default: initTf's auto choice). */
  backend?: BackendChoice;
  /** Images per inference call. */
  batchSize?: number;
  /** Input layout of ONNX models and functions; 'auto': the export's metadata, else guessed (functions: NHWC). */
  layout?: 'auto' | InputLayout;
  /** What the output holds; 'auto': card.json, the output layer's activation, else probed (rows summing to 1). */
  outputs?: 'auto' | OutputKind;
  /** Dataset channels the model reads, in order (default: card.json's, else every channel). */
  channels?: number[];
  /** The model's input is the stamp zero-padded by `pad` on each side (e.g. 27x27 for 21x21 stamps, pad 3). */
  pad?: number;
  /** Functions: the model input [H, W, C] (the padded size when `pad` is set). */
  inputShape?: [number, number, number];
  /** Functions: values per image they return (1: a binary probability or logit). */
  numClasses?: number;
  /** Provenance hash to record (default: the model files' content hash). */
  hash?: string;
  /** Name for messages about in-memory models. */
  name?: string;
  /** One-line notes (integrity not checkable, fallback to tfjs); default: stderr. */
  onNote?: (line: string) => void;
}

export type ModelKind = 'tfjs' | 'onnx' | 'keras';

/** What kind of model `modelPath` is, and the path its loader takes (a tfjs directory). */
export function detectKind(modelPath: string): { kind: ModelKind; path: string } {
  if (!existsSync(modelPath)) throw fileError(modelPath, 'does not exist');
  const st = statSync(modelPath);
  const ext = path.extname(modelPath).toLowerCase();
  if (st.isDirectory()) {
    if (existsSync(path.join(modelPath, MODEL_JSON))) return { kind: 'tfjs', path: modelPath };
    throw fileError(modelPath, `is not a model directory (no ${MODEL_JSON}); expected a directory written by 'occmap train-classifier', an .onnx or a Keras .h5 file`);
  }
  if (path.basename(modelPath) === MODEL_JSON) return { kind: 'tfjs', path: path.dirname(modelPath) };
  if (ext === '.onnx') return { kind: 'onnx', path: modelPath };
  if (ext === '.h5' || ext === '.hdf5') return { kind: 'keras', path: modelPath };
  if (ext === '.keras') throw fileError(modelPath, "is a Keras 3 '.keras' archive, which occmap cannot read; save the model with tf.keras 2 as model.save('x.h5')");
  throw fileError(modelPath, 'is not a model: expected a tfjs model directory (model.json + weights.bin), an .onnx or a Keras .h5 file');
}

// ---------------------------------------------------------------- options

const positiveInt = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 1;

function bad(field: string, value: unknown, want: string): UserError {
  return new UserError(`loadModel: ${field} must be ${want}, got ${typeof value === 'function' ? 'a function' : JSON.stringify(value)}`);
}

/** Every option checked before any work: errors name the field and the value. */
export function checkLoadOptions(o: LoadOptions): void {
  checkEngineChoice(o.engine === 'incremental' ? 'auto' : o.engine);
  if (o.threads !== undefined && !positiveInt(o.threads)) throw bad('threads', o.threads, 'a positive integer');
  if (o.batchSize !== undefined && !positiveInt(o.batchSize)) throw bad('batchSize', o.batchSize, 'a positive integer');
  if (o.layout !== undefined && !['auto', 'NHWC', 'NCHW'].includes(o.layout)) throw bad('layout', o.layout, "'auto', 'NHWC' or 'NCHW'");
  if (o.outputs !== undefined && !['auto', 'probs', 'logits'].includes(o.outputs)) throw bad('outputs', o.outputs, "'auto', 'probs' or 'logits'");
  if (o.channels !== undefined && !(Array.isArray(o.channels) && o.channels.length > 0 && o.channels.every((c) => Number.isInteger(c) && c >= 0))) {
    throw bad('channels', o.channels, 'a non-empty list of channel indices (integers >= 0)');
  }
  if (o.pad !== undefined && !(Number.isInteger(o.pad) && o.pad >= 0)) throw bad('pad', o.pad, 'a non-negative integer');
  if (o.inputShape !== undefined && !(Array.isArray(o.inputShape) && o.inputShape.length === 3 && o.inputShape.every(positiveInt))) {
    throw bad('inputShape', o.inputShape, '[height, width, channels] (positive integers)');
  }
  if (o.numClasses !== undefined && !positiveInt(o.numClasses)) throw bad('numClasses', o.numClasses, 'a positive integer');
  if (o.hash !== undefined && typeof o.hash !== 'string') throw bad('hash', o.hash, 'a string');
}

const noteToStderr = (line: string): void => void process.stderr.write(`occmap: ${line}\n`);

// ---------------------------------------------------------------- what each kind gives the head

interface Loaded {
  core: ModelCore;
  hash: string;
  source: string;
  channels?: number[];
  /** What the output holds, when the model says (card.json, the output layer's activation). */
  outputs?: OutputKind;
}

/** A ModelRun (ONNX bytes/file or a tfjs model) as a core. */
async function coreOfRun(run: ModelRun, source: string, o: LoadOptions, ownsModel = true): Promise<ModelCore> {
  if (run.engine === 'tfjs') {
    return new TfjsCore(run.model, { batchSize: o.batchSize, source, keepModel: !ownsModel });
  }
  // occmap's exports (files and conversions) declare NHWC in their metadata.
  return (await openOnnxCore(run.model, { threads: o.threads, batchSize: o.batchSize, source })).core;
}

async function fromModelDir(dir: string, o: LoadOptions, note: (s: string) => void): Promise<Loaded> {
  const opened = openModelDir(dir);
  if (opened.card?.kind === 'explainer') throw fileError(dir, 'is an explainer directory, not a classifier (load it with loadExplainer)');
  if (opened.members.length !== 1) throw fileError(dir, `is an ensemble of ${opened.members.length} models, not one classifier`);
  opened.notes.forEach(note);
  const v = opened.members[0];
  const run = await modelDirRun(v, checkEngineChoice(o.engine), { backend: o.backend, note });
  const hint = run.engine === 'tfjs' ? outputKind(run.model) : undefined;
  const core = await coreOfRun(run, dir, o);
  const channels = v.card?.channels;
  if (channels && !o.channels && channels.length !== core.inputShape[2]) {
    core.dispose();
    throw fileError(path.join(dir, CARD_JSON), `lists ${channels.length} channel(s) [${channels.join(',')}] but the model takes ${core.inputShape[2]}`);
  }
  return { core, hash: v.hash, source: dir, channels, outputs: v.card?.outputs ?? hint };
}

/** An .onnx file; when it is the model.onnx of a model directory whose card records it, that directory's card applies. */
async function fromOnnxFile(file: string, o: LoadOptions, note: (s: string) => void): Promise<Loaded> {
  if (o.engine === 'tfjs') throw fileError(file, "an .onnx model runs on ONNX Runtime only: engine 'tfjs' cannot run it");
  const dir = path.dirname(file);
  if (path.basename(file) === MODEL_ONNX && existsSync(path.join(dir, CARD_JSON)) && existsSync(path.join(dir, MODEL_JSON))) {
    const v = verifyModelDir(dir);
    if (v.onnx) {
      v.notes.forEach(note);
      const core = (await openOnnxCore(file, { threads: o.threads, batchSize: o.batchSize, layout: o.layout, source: file })).core;
      return { core, hash: v.hash, source: file, channels: v.card?.channels, outputs: v.card?.outputs };
    }
  }
  const { core, sha256 } = await openOnnxCore(file, { threads: o.threads, batchSize: o.batchSize, layout: o.layout, source: file });
  return { core, hash: `sha256:${sha256!.slice(0, 16)}`, source: file };
}

async function fromKeras(file: string, o: LoadOptions, note: (s: string) => void): Promise<Loaded> {
  await initTf(o.backend ?? 'auto');
  const { loadKerasH5 } = await import('./keras-h5.js');
  const hash = await hashFile(file);
  const model = await loadKerasH5(file);
  const hint = outputKind(model);
  let run: ModelRun;
  try {
    run = layersModelRun(model, checkEngineChoice(o.engine), file, { note });
  } catch (err) {
    model.dispose();
    throw err;
  }
  return { core: await coreOfRun(run, file, o), hash, source: file, outputs: hint };
}

/** sha256 of a LayersModel's topology and weights: the same model gives the same hash. */
function layersModelHash(model: tfl.LayersModel): string {
  const h = createHash('sha256').update(JSON.stringify(model.toJSON(null, false)));
  for (const w of model.getWeights()) h.update(new Uint8Array((w.dataSync() as Float32Array).buffer.slice(0)));
  return h.digest('hex');
}

async function fromLayersModel(model: tfl.LayersModel, o: LoadOptions, note: (s: string) => void): Promise<Loaded> {
  const source = o.name ?? `tfjs model '${model.name}'`;
  const hint = outputKind(model);
  const hash = layersModelHash(model);
  const run = layersModelRun(model, checkEngineChoice(o.engine), source, { note, keepModel: true });
  return { core: await coreOfRun(run, source, o, false), hash, source, outputs: hint };
}

function fnCore(fn: PredictFn, o: LoadOptions, source: string): ModelCore {
  if (!o.inputShape) throw new UserError(`loadModel: a function model needs inputShape [height, width, channels] (the shape it takes${o.pad ? ', padded' : ''})`);
  if (!o.numClasses) throw new UserError('loadModel: a function model needs numClasses (values it returns per image)');
  const [h, w, c] = o.inputShape;
  const units = o.numClasses;
  const nchw = o.layout === 'NCHW';
  const chunk = o.batchSize ?? 1024;
  return {
    inputShape: [h, w, c],
    units,
    engine: 'function',
    async run(images, n) {
      const out = new Float32Array(n * units);
      const item = h * w * c;
      for (let from = 0; from < n; from += chunk) {
        const m = Math.min(chunk, n - from);
        const part = images.slice(from * item, (from + m) * item);
        const y = await fn(nchw ? nhwcToNchw(part, m, h, w, c) : part, m);
        if (!(y instanceof Float32Array) && !Array.isArray(y)) throw new UserError(`${source}: returned ${typeof y}, expected a Float32Array of ${m} x ${units} values`);
        if (y.length !== m * units) throw new UserError(`${source}: returned ${y.length} values for ${m} image(s), expected ${m * units} (numClasses ${units})`);
        out.set(y, from * units);
      }
      return out;
    },
    dispose: () => undefined,
  };
}

function isSession(x: object): x is ort.InferenceSession {
  const s = x as Partial<ort.InferenceSession>;
  return typeof s.run === 'function' && Array.isArray(s.inputNames) && Array.isArray(s.outputNames);
}

function isLayersModel(x: object): x is tfl.LayersModel {
  const m = x as Partial<tfl.LayersModel>;
  return typeof m.predict === 'function' && Array.isArray(m.inputs) && Array.isArray(m.outputs) && Array.isArray(m.layers);
}

async function loadAny(x: ModelInput, o: LoadOptions, note: (s: string) => void): Promise<Loaded> {
  if (typeof x === 'string') {
    const { kind, path: p } = detectKind(x);
    if (kind === 'tfjs') return fromModelDir(p, o, note);
    if (kind === 'onnx') return fromOnnxFile(p, o, note);
    return fromKeras(p, o, note);
  }
  if (typeof x === 'function') {
    const source = o.name ?? `function ${x.name || '(anonymous)'}`;
    const hash = o.hash ?? `fn:${createHash('sha256').update(x.toString()).digest('hex').slice(0, 16)}`;
    return { core: fnCore(x, o, source), hash, source };
  }
  if (x instanceof Uint8Array) {
    if (o.engine === 'tfjs') throw new UserError("loadModel: ONNX bytes run on ONNX Runtime only: engine 'tfjs' cannot run them");
    const source = o.name ?? 'ONNX model bytes';
    const { core, sha256 } = await openOnnxCore(x, { threads: o.threads, batchSize: o.batchSize, layout: o.layout, source });
    return { core, hash: `sha256:${sha256!.slice(0, 16)}`, source };
  }
  if (x && typeof x === 'object' && isSession(x)) {
    if (o.engine === 'tfjs') throw new UserError("loadModel: an InferenceSession runs on ONNX Runtime only: engine 'tfjs' cannot run it");
    const source = o.name ?? 'ONNX session';
    const { core } = await openOnnxCore(x, { batchSize: o.batchSize, layout: o.layout, source });
    // No bytes to hash: a fresh id, so no run ever mistakes another session's results for its own.
    return { core, hash: `session:${randomUUID()}`, source };
  }
  if (x && typeof x === 'object' && isLayersModel(x)) return fromLayersModel(x, o, note);
  throw new UserError(
    `loadModel: expected a model directory or file path, ONNX bytes (Uint8Array), a tfjs LayersModel, an onnxruntime InferenceSession or a function (batch, n) => probabilities; got ${x === null ? 'null' : typeof x}`,
  );
}

/** 'probs' or 'logits' for a core whose output kind nobody declared: probed on two varied images. */
async function probeOutputs(core: ModelCore, source: string): Promise<OutputKind> {
  if (core.units === 1) throw new UserError(`${source}: the output has one unit: say whether it is a probability or a logit (outputs 'probs' or 'logits')`);
  const raw = await core.run(probeImages(core.inputShape), 2);
  return looksLikeProbabilities(raw, 2, core.units) ? 'probs' : 'logits';
}

/**
 * Load any classifier as a Predictor (see the file comment for what `x` may be). The returned
 * predictor takes stamp-size NHWC images (the model's input minus 2*pad) and returns class
 * probabilities; outputs that are not finite probabilities throw ModelOutputError.
 */
export async function loadModel(x: ModelInput, opts: LoadOptions = {}): Promise<ModelPredictor> {
  checkLoadOptions(opts);
  // whole inferences only: the incremental engine's predictor is loadPredictor's
  if (opts.engine === 'incremental') opts = { ...opts, engine: 'auto' };
  const note = opts.onNote ?? noteToStderr;
  const m = await loadAny(x, opts, note);
  try {
    const outputs = opts.outputs && opts.outputs !== 'auto' ? opts.outputs : (m.outputs ?? (await probeOutputs(m.core, m.source)));
    const p = new ModelPredictor(m.core, { outputs, hash: opts.hash ?? m.hash, channels: opts.channels ?? m.channels, pad: opts.pad, source: m.source });
    // A model whose weights are broken fails here, at load, rather than in the first map.
    await p.predict(probeImages(p.inputShape), 2);
    return p;
  } catch (err) {
    m.core.dispose();
    throw err;
  }
}

/**
 * A model path as a Predictor (the CLI's, the workers' and the server's entry): loadModel on a
 * path, or with engine 'incremental' the incremental engine where it can run the model.
 */
export async function loadPredictor(modelPath: string, opts: LoadOptions = {}): Promise<Predictor> {
  if (opts.engine === 'incremental') return loadIncrementalEngine(modelPath, opts);
  return loadModel(modelPath, opts);
}

/** The incremental engine for a tfjs model directory; other kinds: the full engine with the reason. */
async function loadIncrementalEngine(modelPath: string, opts: LoadOptions): Promise<Predictor> {
  checkLoadOptions(opts);
  const full = (): Promise<Predictor> => loadModel(modelPath, { ...opts, engine: 'auto' });
  const { kind, path: p } = detectKind(modelPath);
  if (kind === 'onnx') return noteFallback(await full(), 'an .onnx file has no layer list the incremental engine can read (give the tfjs model directory)');
  if (kind === 'keras') return noteFallback(await full(), 'the incremental engine reads tfjs model directories, not Keras .h5 files');
  if (opts.pad) return noteFallback(await full(), `pad ${opts.pad}: the incremental engine runs models that take the stamps as they are`);
  const { loadIncremental } = await import('../occlusion/incremental-load.js');
  return loadIncremental(p, { ...opts, onNote: opts.onNote ?? noteToStderr }, full);
}

/**
 * The predictor for h x w stamps: `p` itself when it takes them, or `p` fed the stamps
 * zero-padded by `pad` when its input is (h+2pad) x (w+2pad) (a model trained on padded
 * stamps, e.g. the seed's Keras classifier: 27x27 for 21x21 stamps padded by 3), which then
 * gives the same maps as a model that pads internally. Otherwise `p` unchanged, for the
 * caller's shape check to report. `p` must not be used after a padded predictor is returned.
 */
export function fitToStamps(p: Predictor, h: number, w: number, pad: number): { predictor: Predictor; padded: number } {
  const [mh, mw] = p.inputShape;
  if ((mh === h && mw === w) || pad <= 0 || !(p instanceof ModelPredictor)) return { predictor: p, padded: 0 };
  if (mh !== h + 2 * pad || mw !== w + 2 * pad) return { predictor: p, padded: 0 };
  return { predictor: p.withPad(pad), padded: pad };
}

/** By how much the model's input exceeds h x w on every side (0 when not a symmetric margin). */
export function inputMargin(p: Predictor, h: number, w: number): number {
  const [mh, mw] = p.inputShape;
  const d = mh - h;
  return d > 0 && d % 2 === 0 && mw - w === d ? d / 2 : 0;
}
