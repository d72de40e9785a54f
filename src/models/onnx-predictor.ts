/**
 * Classifiers on ONNX Runtime: a ModelCore over an ONNX image classifier (exported by occmap,
 * or brought by the user in NCHW or NHWC layout, with a fixed or free batch dimension).
 * Sessions come from runtime/onnx.ts; what the outputs mean is the predictor head's job.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type * as ort from 'onnxruntime-common';
import { fileError, UserError } from '../util/errors.js';
import { META_LAYOUT, readOnnxHeader } from './onnx-proto.js';
import { probeImages, type ModelCore } from './predictor-head.js';
import { ortEngineName } from '../runtime/ort.js';
import { guessLayout, nhwcToNchw, type InputLayout } from '../runtime/onnx-arrays.js';

// Layout helpers shared with the browser viewer.
export { guessLayout, nhwcToNchw, type InputLayout } from '../runtime/onnx-arrays.js';

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0].trim();
}

interface CoreConfig {
  inputName: string;
  outputName: string;
  layout: InputLayout;
  fixedBatch?: number;
  batchSize: number;
}

export class OnnxCore implements ModelCore {
  readonly engine: string;
  private disposed = false;

  constructor(
    readonly session: ort.InferenceSession,
    readonly inputShape: [number, number, number],
    readonly units: number,
    private readonly cfg: CoreConfig,
    readonly threads: number | undefined,
    /** Give the session back on dispose (false: the caller owns it). */
    private readonly release?: (s: ort.InferenceSession) => Promise<void>,
  ) {
    const name = ortEngineName();
    this.engine = threads === undefined ? name : `${name} (${threads} thread${threads === 1 ? '' : 's'})`;
  }

  get layout(): InputLayout {
    return this.cfg.layout;
  }

  /** How the graph is fed and read, for clients that run the same file elsewhere (the browser viewer). */
  get io(): { inputName: string; outputName: string; layout: InputLayout; units: number; fixedBatch?: number } {
    const { inputName, outputName, layout, fixedBatch } = this.cfg;
    return { inputName, outputName, layout, units: this.units, ...(fixedBatch !== undefined ? { fixedBatch } : {}) };
  }

  async run(images: Float32Array, n: number): Promise<Float32Array> {
    if (this.disposed) throw new Error('ONNX model used after dispose()');
    const [h, w, c] = this.inputShape;
    const { runOnnxBatched } = await import('../runtime/onnx.js');
    const { layout, inputName, outputName, fixedBatch, batchSize } = this.cfg;
    const data = layout === 'NCHW' ? nhwcToNchw(images, n, h, w, c) : images;
    const shape = layout === 'NCHW' ? [c, h, w] : [h, w, c];
    const out = await runOnnxBatched(this.session, [{ name: inputName, data, shape }], n, { batchSize, fixedBatch, output: outputName });
    return out.data;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.release) void this.release(this.session).catch(() => undefined);
  }
}

export interface OnnxCoreOptions {
  /** intra-op threads for sessions occmap creates (default: the machine's cores). */
  threads?: number;
  /** Input layout; 'auto': the export's metadata, else guessed from the dims. */
  layout?: 'auto' | InputLayout;
  /** Items per session.run; default 1024. */
  batchSize?: number;
  /** Name for messages (the file the bytes came from). */
  source?: string;
}

export interface OpenedOnnx {
  core: OnnxCore;
  /** sha256 (hex) of the model bytes; undefined for a session given in memory. */
  sha256?: string;
}

/**
 * Open an ONNX image classifier: a file, its bytes, or an InferenceSession the caller made
 * (and keeps: dispose() does not release it). One probe run checks it runs on the declared
 * or guessed layout and gives the number of output units.
 */
export async function openOnnxCore(model: string | Uint8Array | ort.InferenceSession, o: OnnxCoreOptions = {}): Promise<OpenedOnnx> {
  const rt = await import('../runtime/onnx.js');
  const source = o.source ?? (typeof model === 'string' ? model : model instanceof Uint8Array ? 'ONNX model bytes' : 'ONNX session');
  let session: ort.InferenceSession;
  let metadata: Record<string, string> = {};
  let sha256: string | undefined;
  let threads: number | undefined;
  let release: ((s: ort.InferenceSession) => Promise<void>) | undefined;
  if (typeof model === 'string' || model instanceof Uint8Array) {
    let bytes: Uint8Array;
    if (typeof model === 'string') {
      try {
        bytes = await fs.readFile(model);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw fileError(model, code === 'ENOENT' ? 'not found' : `cannot read (${code ?? firstLine(err)})`);
      }
    } else bytes = model;
    try {
      metadata = readOnnxHeader(bytes).metadata;
    } catch (err) {
      throw fileError(source, `not an ONNX model (${firstLine(err)})`);
    }
    sha256 = createHash('sha256').update(bytes).digest('hex');
    threads = o.threads ?? rt.defaultThreads();
    session = await rt.createOnnxSession(bytes, { threads, source });
    release = rt.releaseOnnxSession;
  } else session = model;
  try {
    const core = await coreOf(session, metadata, source, o, threads, release);
    return { core, sha256 };
  } catch (err) {
    if (release) await release(session);
    throw err;
  }
}

async function coreOf(
  session: ort.InferenceSession,
  metadata: Record<string, string>,
  file: string,
  o: OnnxCoreOptions,
  threads: number | undefined,
  release: ((s: ort.InferenceSession) => Promise<void>) | undefined,
): Promise<OnnxCore> {
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
  if (o.layout && o.layout !== 'auto') layout = o.layout;
  else {
    const declared = metadata[META_LAYOUT];
    layout = declared === 'NHWC' || declared === 'NCHW' ? declared : guessLayout(dims);
    if (!layout) throw fileError(file, `cannot tell whether input shape [${dims.join(', ')}] is NCHW or NHWC; give the layout (layout NCHW|NHWC)`);
  }
  const [, a, b, c] = dims;
  const [h, w, ch] = layout === 'NHWC' ? [a, b, c] : [b, c, a];
  if (typeof h !== 'number' || typeof w !== 'number' || typeof ch !== 'number' || h < 1 || w < 1 || ch < 1) {
    throw fileError(file, `input ${inputName} shape [${dims.join(', ')}] needs a fixed height, width and channel count`);
  }
  const fixedBatch = typeof dims[0] === 'number' && dims[0] > 0 ? dims[0] : undefined;
  const outputName = session.outputNames[0];
  const cfg: CoreConfig = { inputName, outputName, layout, fixedBatch, batchSize: o.batchSize ?? 1024 };
  // One probe run: does it run on this layout, and how many values per image does it give?
  const { runOnnxBatched } = await import('../runtime/onnx.js');
  let out;
  try {
    const x = probeImages([h, w, ch]);
    out = await runOnnxBatched(session, [{ name: inputName, data: layout === 'NCHW' ? nhwcToNchw(x, 2, h, w, ch) : x, shape: layout === 'NHWC' ? [h, w, ch] : [ch, h, w] }], 2, {
      fixedBatch,
      output: outputName,
    });
  } catch (err) {
    if (err instanceof UserError) throw fileError(file, err.message);
    throw fileError(file, `ONNX Runtime cannot run the model on a ${layout} input of ${h}x${w}x${ch} (${firstLine(err)})`);
  }
  if (out.shape.length !== 1 && !(out.shape.length > 1 && out.shape.slice(1).every((d) => d === 1))) {
    throw fileError(file, `output ${outputName} has shape [${['N', ...out.shape].join(', ')}]; a classifier outputs (batch, classes)`);
  }
  return new OnnxCore(session, [h, w, ch], out.data.length / 2, cfg, threads, release);
}
