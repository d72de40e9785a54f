/**
 * The one module that creates ONNX Runtime sessions (onnxruntime-node on the CPU, or the
 * wasm build when it is missing: runtime/ort.ts): thread count, graph optimisation, a session
 * cache; and a batched runner for any ONNX model. What a model is and which file runs is
 * decided in src/models/ (model-dir.ts, onnx-predictor.ts).
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as ort from 'onnxruntime-common';
import { loadOrt, ortEngineName, ortLoaded } from './ort.js';
import { fileError, UserError, OptionError } from '../util/errors.js';
import { runBatchedWith, type BatchOptions, type OnnxFeed } from './onnx-batch.js';

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
  /**
   * Let idle intra-op threads spin for more work (ORT's default, true). Several sessions run
   * in turn (the incremental engine) must not spin: each one's idle threads would take the
   * cores from the next one's work (measured: 4x slower windows on 2 cores).
   */
  spinning?: boolean;
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
  if (!Number.isInteger(threads) || threads < 1) throw new OptionError(['threads'], `must be a positive integer, got ${threads}`);
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
  const spinning = opts.spinning ?? true;
  const key = `${id}|${threads}|${optimization}|${spinning}`;
  const make = async (): Promise<ort.InferenceSession> => {
    const so: ort.InferenceSession.SessionOptions = {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      // one graph at a time: inter-op threads would only compete with intra-op ones
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: optimization,
      logSeverityLevel: 3,
      ...(spinning ? {} : { extra: { session: { intra_op: { allow_spinning: '0' } } } }),
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

/**
 * Like runOnnxBatched, for several outputs of one graph at once (e.g. the fused
 * classifier -> explainer graph's probabilities and maps): one session.run per chunk.
 */
export async function runOnnxBatchedOutputs(
  session: ort.InferenceSession,
  feeds: OnnxFeed[],
  n: number,
  outputs: readonly string[],
  opts: { batchSize?: number } = {},
): Promise<Record<string, { data: Float32Array; shape: number[] }>> {
  const chunk = Math.max(1, opts.batchSize ?? 1024);
  const sizes = feeds.map((f) => f.shape.reduce((a, b) => a * b, 1));
  feeds.forEach((f, i) => {
    if (f.data.length !== n * sizes[i]) throw new RangeError(`feed ${f.name}: ${f.data.length} values for ${n} items of shape ${JSON.stringify(f.shape)}`);
  });
  const out: Record<string, { data: Float32Array; shape: number[] }> = {};
  for (let start = 0; start < n; start += chunk) {
    const m = Math.min(chunk, n - start);
    const input: Record<string, ort.Tensor> = {};
    feeds.forEach((f, i) => (input[f.name] = new (ortLoaded().Tensor)('float32', f.data.subarray(start * sizes[i], (start + m) * sizes[i]), [m, ...f.shape])));
    const result = await session.run(input, outputs as string[]);
    for (const name of outputs) {
      const t = result[name];
      if (t.type !== 'float32') throw new UserError(`ONNX model output ${name} is ${t.type}, expected float32`);
      const data = t.data as Float32Array;
      const item = data.length / m;
      out[name] ??= { data: new Float32Array(n * item), shape: t.dims.slice(1) as number[] };
      out[name].data.set(data, start * item);
      t.dispose();
    }
  }
  return out;
}

/**
 * One session.run on a whole batch whose output `name` (n items of `shape`) is written into
 * `out` (n x item floats, e.g. a view into a buffer the caller reuses). onnxruntime-node
 * otherwise allocates every output afresh and copies it into a new ArrayBuffer: for the
 * incremental engine's many megabyte-sized window outputs that was a large share of each call.
 */
export async function runOnnxInto(session: ort.InferenceSession, feeds: OnnxFeed[], n: number, name: string, out: Float32Array, shape: number[]): Promise<Float32Array> {
  const T = ortLoaded().Tensor;
  const item = shape.reduce((a, b) => a * b, 1);
  if (out.length !== n * item) throw new RangeError(`output ${name}: ${out.length} floats for ${n} items of shape ${JSON.stringify(shape)}`);
  const input: Record<string, ort.Tensor> = {};
  for (const f of feeds) input[f.name] = new T('float32', f.data, [n, ...f.shape]);
  await session.run(input, { [name]: new T('float32', out, [n, ...shape]) });
  return out;
}

/** One session.run on a whole batch, every output (float32) by name. */
export async function runOnnxOutputs(session: ort.InferenceSession, feeds: OnnxFeed[], n: number): Promise<Record<string, Float32Array>> {
  const input: Record<string, ort.Tensor> = {};
  for (const f of feeds) input[f.name] = new (ortLoaded().Tensor)('float32', f.data, [n, ...f.shape]);
  const result = await session.run(input);
  const out: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(result)) {
    if (t.type !== 'float32') throw new UserError(`ONNX model output ${name} is ${t.type}, expected float32`);
    out[name] = t.data as Float32Array;
  }
  return out;
}
