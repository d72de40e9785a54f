/**
 * The one module that creates ONNX Runtime sessions (onnxruntime-node on the CPU, or the
 * wasm build when it is missing: runtime/ort.ts): thread count, graph optimisation, a session cache; a batched runner for any ONNX model; and OnnxPredictor,
 * the Predictor for classifiers in ONNX files (exported here, or brought by the user in NCHW
 * or NHWC layout, with probability or logit outputs).
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fs, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as ort from 'onnxruntime-common';
import { loadOrt, ortEngineName, ortLoaded } from './ort.js';
import { fileError, UserError } from '../util/errors.js';
import type { Predictor } from '../models/predictor.js';
import { META_LAYOUT, META_SOURCE_HASH, readOnnxHeader } from '../models/onnx-proto.js';
import { runBatchedWith, type BatchOptions, type OnnxFeed } from './onnx-batch.js';
import { guessLayout, looksLikeProbabilities, nhwcToNchw, probabilitiesFrom, type InputLayout } from './onnx-arrays.js';

export type GraphOptimization = 'disabled' | 'basic' | 'extended' | 'all';

export interface OnnxSessionOptions {
  /** intra-op threads; default: the machine's logical cores. */
  threads?: number;
  /** default 'all' (incl. ORT's NCHWc conv layout, the fast path on x64). */
  optimization?: GraphOptimization;
  /** Share one session per (model, options) between callers; default true. */
  cache?: boolean;
  /** Name for error messages when `model` is bytes (e.g. the file they came from). */
  source?: string;
}

export function defaultThreads(): number {
  return Math.max(1, typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length);
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

interface CacheEntry {
  key: string;
  session: Promise<ort.InferenceSession>;
  refs: number;
}
const cache = new Map<string, CacheEntry>();
const entryOf = new Map<ort.InferenceSession, CacheEntry>();

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0].trim();
}

/**
 * A session for an ONNX model file or its bytes. With the cache (default), equal requests share
 * one session: release it with `releaseOnnxSession` once per create.
 */
export async function createOnnxSession(model: string | Uint8Array, opts: OnnxSessionOptions = {}): Promise<ort.InferenceSession> {
  const threads = opts.threads ?? defaultThreads();
  if (!Number.isInteger(threads) || threads < 1) throw new UserError(`--threads must be a positive integer, got ${threads}`);
  const optimization = opts.optimization ?? 'all';
  const what = typeof model === 'string' ? model : (opts.source ?? 'ONNX model bytes');
  let id: string;
  if (typeof model === 'string') {
    let st;
    try {
      st = statSync(model);
    } catch {
      throw fileError(model, 'not found');
    }
    if (!st.isFile()) throw fileError(model, 'is not a file');
    id = `${path.resolve(model)}|${st.size}|${st.mtimeMs}`;
  } else {
    id = sha256(model);
  }
  const key = `${id}|${threads}|${optimization}`;
  const make = async (): Promise<ort.InferenceSession> => {
    const so: ort.InferenceSession.SessionOptions = {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      // one graph at a time: inter-op threads would only compete with intra-op ones
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: optimization,
      logSeverityLevel: 3,
    };
    try {
      const rt = await loadOrt();
      if (ortEngineName() === 'onnxruntime') {
        return typeof model === 'string' ? await rt.InferenceSession.create(model, so) : await rt.InferenceSession.create(model, so);
      }
      // The wasm fallback takes its thread count from env, and bytes (it cannot open a path in Node).
      rt.env.wasm.numThreads ??= threads;
      return await rt.InferenceSession.create(typeof model === 'string' ? readFileSync(model) : model, so);
    } catch (err) {
      throw fileError(what, `ONNX Runtime cannot load the model (${firstLine(err)})`);
    }
  };
  if (opts.cache === false) return make();
  let entry = cache.get(key);
  if (!entry) {
    const e: CacheEntry = { key, session: make(), refs: 0 };
    entry = e;
    cache.set(key, e);
    e.session.then(
      (s) => entryOf.set(s, e),
      () => cache.delete(key),
    );
  }
  entry.refs++;
  return entry.session;
}

/** Give back a session from createOnnxSession; the last release frees it. */
export async function releaseOnnxSession(session: ort.InferenceSession): Promise<void> {
  const e = entryOf.get(session);
  if (e) {
    if (--e.refs > 0) return;
    entryOf.delete(session);
    cache.delete(e.key);
  }
  await session.release();
}

/** Sessions alive in the cache (for tests and diagnostics). */
export function onnxSessionsCached(): number {
  return cache.size;
}

// ---------------------------------------------------------------- batched running

export type { BatchOptions, OnnxFeed } from './onnx-batch.js';

/**
 * Run `n` items through the session in chunks (bounded memory; large batches amortise the
 * per-call overhead). Returns the chosen output for all items, item-major, and its per-item shape.
 */
export async function runOnnxBatched(
  session: ort.InferenceSession,
  feeds: OnnxFeed[],
  n: number,
  opts: BatchOptions = {},
): Promise<{ data: Float32Array; shape: number[] }> {
  return runBatchedWith(ortLoaded().Tensor, session, feeds, n, opts);
}

// The pure array helpers live in onnx-arrays.ts (shared with the browser viewer).
export { guessLayout, looksLikeProbabilities, nhwcToNchw, probabilitiesFrom, softmaxRows, type InputLayout } from './onnx-arrays.js';

// ---------------------------------------------------------------- the predictor

export interface OnnxPredictorOptions extends Omit<OnnxSessionOptions, 'cache' | 'source'> {
  /** Input layout of the model; 'auto': the export's metadata, else guessed from the dims. */
  layout?: 'auto' | InputLayout;
  /** What the (first) output holds; 'logits' applies a softmax (a sigmoid for one unit). 'auto': card.json, else probed. */
  outputs?: 'auto' | 'probs' | 'logits';
  /** Items per session.run; default 1024. */
  batchSize?: number;
  /** Dataset channels the model reads (overrides card.json). */
  channels?: number[];
  /** Provenance hash to report (default: see loadOnnxPredictor). */
  hash?: string;
}

/** The card.json fields read here (the format is owned by src/models/io.ts). */
interface Card {
  channels?: unknown;
  hash?: unknown;
  outputs?: unknown;
}

function readCard(dir: string): Card | undefined {
  const f = path.join(dir, 'card.json');
  if (!existsSync(f)) return undefined;
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as Card;
  } catch (err) {
    throw fileError(f, `not valid JSON (${firstLine(err)})`);
  }
}

function channelsFrom(card: Card | undefined): number[] | undefined {
  const c = card?.channels;
  if (Array.isArray(c) && c.length > 0 && c.every((v) => Number.isInteger(v) && v >= 0)) return c as number[];
  return undefined;
}

export class OnnxPredictor implements Predictor {
  readonly engine: string;
  private disposed = false;

  constructor(
    readonly session: ort.InferenceSession,
    readonly inputShape: [number, number, number],
    readonly numClasses: number,
    readonly hash: string,
    readonly threads: number,
    private readonly cfg: {
      inputName: string;
      outputName: string;
      layout: InputLayout;
      outputs: 'probs' | 'logits';
      /** Units in the model's output (1 = binary sigmoid, expanded to 2 classes). */
      units: number;
      fixedBatch?: number;
      batchSize: number;
    },
    readonly channels?: number[],
  ) {
    this.engine = `${ortEngineName()} (${threads} thread${threads === 1 ? '' : 's'})`;
  }

  get layout(): InputLayout {
    return this.cfg.layout;
  }

  get outputs(): 'probs' | 'logits' {
    return this.cfg.outputs;
  }

  /** How the graph is fed and read, for clients that run the same file elsewhere (the browser viewer). */
  get io(): { inputName: string; outputName: string; layout: InputLayout; outputs: 'probs' | 'logits'; units: number; fixedBatch?: number } {
    const { inputName, outputName, layout, outputs, units, fixedBatch } = this.cfg;
    return { inputName, outputName, layout, outputs, units, ...(fixedBatch !== undefined ? { fixedBatch } : {}) };
  }

  /** The model's raw first output for n NHWC images (no softmax, no expansion). */
  async raw(images: Float32Array, n: number): Promise<Float32Array> {
    if (this.disposed) throw new Error('OnnxPredictor used after dispose()');
    const [h, w, c] = this.inputShape;
    if (images.length !== n * h * w * c) {
      throw new RangeError(`predict: ${images.length} values for ${n} images of ${h}x${w}x${c}`);
    }
    const { layout, inputName, outputName, fixedBatch, batchSize } = this.cfg;
    const data = layout === 'NCHW' ? nhwcToNchw(images, n, h, w, c) : images;
    const shape = layout === 'NCHW' ? [c, h, w] : [h, w, c];
    const out = await runOnnxBatched(this.session, [{ name: inputName, data, shape }], n, { batchSize, fixedBatch, output: outputName });
    const units = out.data.length / Math.max(1, n);
    if (n > 0 && units !== this.cfg.units) throw new Error(`ONNX model returned ${units} values per image, expected ${this.cfg.units}`);
    return out.data;
  }

  async predict(images: Float32Array, n: number): Promise<Float32Array> {
    const raw = await this.raw(images, n);
    return probabilitiesFrom(raw, n, this.cfg.units, this.cfg.outputs);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    void releaseOnnxSession(this.session).catch(() => undefined);
  }
}

/** Where a model path's .onnx file is: the file itself, or model.onnx inside a model directory. */
export function onnxFileFor(modelPath: string): string | undefined {
  try {
    const st = statSync(modelPath);
    if (st.isFile()) return modelPath;
    if (st.isDirectory()) {
      const f = path.join(modelPath, 'model.onnx');
      return existsSync(f) ? f : undefined;
    }
  } catch {
    // missing: undefined
  }
  return undefined;
}

/**
 * The model.onnx of a tfjs model directory when it was exported from the model now in that
 * directory (its source hash equals card.json's `hash`); undefined when absent or stale.
 */
export function currentOnnxExport(dir: string): string | undefined {
  const file = path.join(dir, 'model.onnx');
  if (!existsSync(file)) return undefined;
  const hash = readCard(dir)?.hash;
  if (typeof hash !== 'string') return undefined;
  try {
    return readOnnxHeader(readFileSync(file)).metadata[META_SOURCE_HASH] === hash ? file : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Load an ONNX image classifier as a Predictor: a `.onnx` file, or a model directory holding
 * `model.onnx` (and card.json, which gives the dataset channels the model reads).
 *
 * Hash: when the file was exported from the tfjs model whose card.json sits beside it (its
 * `occmap.source_hash` equals the card's `hash`), the card's hash, so outputs record the same
 * provenance whichever engine ran; otherwise `sha256:` + 16 hex digits of the .onnx bytes.
 */
export async function loadOnnxPredictor(modelPath: string, opts: OnnxPredictorOptions = {}): Promise<OnnxPredictor> {
  const file = onnxFileFor(modelPath);
  if (!file) {
    throw fileError(modelPath, existsSync(modelPath) ? 'no model.onnx in this directory' : 'not found');
  }
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    throw fileError(file, `cannot read (${(err as NodeJS.ErrnoException).code ?? firstLine(err)})`);
  }
  let header;
  try {
    header = readOnnxHeader(bytes);
  } catch (err) {
    throw fileError(file, `not an ONNX model (${firstLine(err)})`);
  }
  const card = readCard(path.dirname(file));
  const fromCard = typeof card?.hash === 'string' && header.metadata[META_SOURCE_HASH] === card.hash;
  const threads = opts.threads ?? defaultThreads();
  const session = await createOnnxSession(bytes, { threads, optimization: opts.optimization, source: file });
  try {
    if (session.inputNames.length !== 1) {
      throw fileError(file, `has ${session.inputNames.length} inputs (${session.inputNames.join(', ')}); a classifier takes one image input`);
    }
    const inputName = session.inputNames[0];
    const meta = session.inputMetadata[0];
    if (!meta.isTensor || meta.type !== 'float32') throw fileError(file, `input ${inputName} is not a float32 tensor`);
    const dims = meta.shape;
    if (dims.length !== 4) {
      throw fileError(file, `input ${inputName} has shape [${dims.join(', ')}]; expected 4 dims (batch, height, width, channels in NHWC or NCHW)`);
    }
    let layout: InputLayout | undefined;
    if (opts.layout && opts.layout !== 'auto') layout = opts.layout;
    else {
      const declared = header.metadata[META_LAYOUT];
      layout = declared === 'NHWC' || declared === 'NCHW' ? declared : guessLayout(dims);
      if (!layout) throw fileError(file, `cannot tell whether input shape [${dims.join(', ')}] is NCHW or NHWC; pass the layout (--layout NCHW|NHWC)`);
    }
    const [, a, b, c] = dims;
    const [h, w, ch] = layout === 'NHWC' ? [a, b, c] : [b, c, a];
    if (typeof h !== 'number' || typeof w !== 'number' || typeof ch !== 'number' || h < 1 || w < 1 || ch < 1) {
      throw fileError(file, `input ${inputName} shape [${dims.join(', ')}] needs a fixed height, width and channel count`);
    }
    const fixedBatch = typeof dims[0] === 'number' && dims[0] > 0 ? dims[0] : undefined;
    const outputName = session.outputNames[0];

    // One probe run: the output size, and (for 'auto') whether it holds probabilities.
    const probeN = fixedBatch ?? 2;
    const probe = new Float32Array(probeN * h * w * ch);
    for (let i = probe.length / probeN; i < probe.length; i++) probe[i] = (i % 7) / 7; // zeros, then a ramp
    const probeData = layout === 'NCHW' ? nhwcToNchw(probe, probeN, h, w, ch) : probe;
    let raw;
    try {
      raw = await runOnnxBatched(session, [{ name: inputName, data: probeData, shape: layout === 'NHWC' ? [h, w, ch] : [ch, h, w] }], probeN, {
        fixedBatch,
        output: outputName,
      });
    } catch (err) {
      if (err instanceof UserError) throw fileError(file, err.message);
      throw fileError(file, `ONNX Runtime cannot run the model on a ${layout} input of ${h}x${w}x${ch} (${firstLine(err)})`);
    }
    const units = raw.data.length / probeN;
    if (raw.shape.length !== 1 && !(raw.shape.length > 1 && raw.shape.slice(1).every((d) => d === 1))) {
      throw fileError(file, `output ${outputName} has shape [${['N', ...raw.shape].join(', ')}]; a classifier outputs (batch, classes)`);
    }
    let outputs: 'probs' | 'logits';
    const cardOutputs = card?.outputs === 'probs' || card?.outputs === 'logits' ? card.outputs : undefined;
    if (opts.outputs && opts.outputs !== 'auto') outputs = opts.outputs;
    else if (cardOutputs) outputs = cardOutputs;
    else if (units === 1) {
      throw fileError(file, 'the output has one unit: say whether it is a probability or a logit (--outputs probs|logits)');
    } else outputs = looksLikeProbabilities(raw.data, probeN, units) ? 'probs' : 'logits';

    return new OnnxPredictor(
      session,
      [h, w, ch],
      units === 1 ? 2 : units,
      opts.hash ?? (fromCard ? (card?.hash as string) : `sha256:${sha256(bytes).slice(0, 16)}`),
      threads,
      { inputName, outputName, layout, outputs, units, fixedBatch, batchSize: opts.batchSize ?? 1024 },
      opts.channels ?? channelsFrom(card),
    );
  } catch (err) {
    await releaseOnnxSession(session);
    throw err;
  }
}
