/**
 * Batched running of an ONNX session, for either runtime: onnxruntime-node and onnxruntime-web
 * share onnxruntime-common's session and tensor interfaces, so the caller passes its runtime's
 * Tensor class (runtime/onnx.ts for Node, src/web/ for the browser) and the chunking is one code.
 */
import type { InferenceSession, Tensor, TensorConstructor } from 'onnxruntime-common';
import { UserError } from '../util/errors.js';

export interface OnnxFeed {
  name: string;
  /** n items, each of `shape` elements, contiguous. */
  data: Float32Array;
  /** Per-item shape (without the batch dimension), in the layout the model expects. */
  shape: number[];
}

export interface BatchOptions {
  /** Items per session.run; default 1024. */
  batchSize?: number;
  /** The model's batch dimension is fixed to this size: chunks are padded to it. */
  fixedBatch?: number;
  /** Output to return; default the first. */
  output?: string;
}

/**
 * Run `n` items through the session in chunks (bounded memory; large batches amortise the
 * per-call overhead). Returns the chosen output for all items, item-major, and its per-item shape.
 */
export async function runBatchedWith(
  Tensor: TensorConstructor,
  session: InferenceSession,
  feeds: OnnxFeed[],
  n: number,
  opts: BatchOptions = {},
): Promise<{ data: Float32Array; shape: number[] }> {
  const fixed = opts.fixedBatch;
  const chunk = fixed ?? Math.max(1, opts.batchSize ?? 1024);
  const outName = opts.output ?? session.outputNames[0];
  const sizes = feeds.map((f) => f.shape.reduce((a, b) => a * b, 1));
  feeds.forEach((f, i) => {
    if (f.data.length !== n * sizes[i]) {
      throw new RangeError(`feed ${f.name}: ${f.data.length} values for ${n} items of shape ${JSON.stringify(f.shape)}`);
    }
  });
  let out: Float32Array | undefined;
  let itemShape: number[] = [];
  let itemSize = 0;
  for (let start = 0; start < n; start += chunk) {
    const m = Math.min(chunk, n - start);
    const rows = fixed ?? m;
    const input: Record<string, Tensor> = {};
    feeds.forEach((f, i) => {
      let part = f.data.subarray(start * sizes[i], (start + m) * sizes[i]);
      if (rows > m) {
        const padded = new Float32Array(rows * sizes[i]);
        padded.set(part);
        part = padded;
      }
      input[f.name] = new Tensor('float32', part, [rows, ...f.shape]);
    });
    const result = await session.run(input, [outName]);
    const t = result[outName];
    if (t.type !== 'float32') throw new UserError(`ONNX model output ${outName} is ${t.type}, expected float32`);
    const data = t.data as Float32Array;
    if (start === 0 && m === n && rows === m) {
      // The whole batch in one call: the output tensor's own array, without a copy.
      return { data, shape: t.dims.slice(1) as number[] };
    }
    if (!out) {
      itemShape = t.dims.slice(1) as number[];
      itemSize = data.length / rows;
      out = new Float32Array(n * itemSize);
    }
    out.set(data.subarray(0, m * itemSize), start * itemSize);
    t.dispose();
  }
  return { data: out ?? new Float32Array(0), shape: itemShape };
}
