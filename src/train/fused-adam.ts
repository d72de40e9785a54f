/**
 * Adam's update as one pass over a flat gradient, in place on the tfjs wasm heap.
 *
 * Why hand-written: tf.train.adam runs ~14 small kernels per variable (340 for the U-Net,
 * 228 for the classifier) plus one tensor upload per variable for a flat gradient; on the
 * wasm backend that cost 10 ms per step for the U-Net (4.9 for the classifier) of which the
 * arithmetic was 3 ms, i.e. 10% of a batch-10 step on two threads and paid by every replica.
 * No library offers a fused optimizer for tfjs.
 *
 * It keeps the state in the tf.AdamOptimizer object itself (its moment variables, accBeta1/2
 * and iteration count), so getWeights/setWeights (checkpoints) and dispose work unchanged, and
 * it reproduces tf.train.adam bit for bit: every intermediate is rounded to float32 in the
 * order the tfjs ops round (for + - * / and sqrt, a double result rounded to float32 is the
 * float32 result), which the tests check against tf.train.adam itself.
 * Other optimizers and backends take tfjs's own path (`false` is returned).
 */
import { tf } from '../runtime/tfjs.js';

/** The parts of tfjs-backend-wasm's backend this module reads. */
interface WasmHeapBackend {
  wasm: { HEAPF32: Float32Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  refCount(dataId: object): number;
}

/** tf.AdamOptimizer's fields (private or protected in its typings; stable since tfjs 1.x). */
interface AdamState {
  learningRate: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  accBeta1: tf.Variable;
  accBeta2: tf.Variable;
  accumulatedFirstMoment: { originalName: string; variable: tf.Variable }[];
  accumulatedSecondMoment: { originalName: string; variable: tf.Variable }[];
  incrementIterations(): void;
}

type DataTensor = tf.Tensor & { dataId: object };

/** The new weights of a step before they become tensors (reused: steps run one at a time per thread). */
let scratch = new Float32Array(0);

function wasmBackend(): WasmHeapBackend | null {
  if (tf.getBackend() !== 'wasm') return null;
  const b = tf.backend() as unknown as Partial<WasmHeapBackend>;
  return b.wasm?.HEAPF32 && b.dataIdMap && typeof b.refCount === 'function' ? (b as WasmHeapBackend) : null;
}

/** Give `v` data of its own when another tensor shares it (an in-place write must not reach that one). */
function ownData(backend: WasmHeapBackend, v: tf.Variable): void {
  if (backend.refCount((v as unknown as DataTensor).dataId) <= 1) return;
  const copy = tf.clone(v);
  v.assign(copy);
  copy.dispose();
}

function offsetOf(backend: WasmHeapBackend, t: tf.Tensor): number {
  const d = backend.dataIdMap.get((t as unknown as DataTensor).dataId);
  if (!d || d.memoryOffset === null) throw new Error('fused Adam: a variable has no data on the wasm heap');
  return d.memoryOffset >>> 2;
}

interface AdamConstants {
  b1: number;
  b2: number;
  c1: number;
  c2: number;
  eps: number;
  nlr: number;
  /** 1 - beta^t, the bias corrections. */
  om1: number;
  om2: number;
}

/**
 * One variable: moments in place at m0 / v0 (float indices into h), its new weights into
 * next[o..o+n). A function of its own with plain locals: as a closure over the caller's
 * mutable offset it ran 2.5x slower.
 */
function adamPass(h: Float32Array, flat: Float32Array, next: Float32Array, o: number, m0: number, v0: number, w0: number, n: number, k: AdamConstants): void {
  const f = Math.fround;
  const { b1, b2, c1, c2, eps, nlr, om1, om2 } = k;
  for (let j = 0; j < n; j++) {
    const g = flat[o + j];
    const nm = f(f(h[m0 + j] * b1) + f(g * c1));
    const nv = f(f(h[v0 + j] * b2) + f(f(g * g) * c2));
    h[m0 + j] = nm;
    h[v0 + j] = nv;
    const mh = f(nm / om1);
    const vh = f(nv / om2);
    next[o + j] = f(f(f(mh / f(f(Math.sqrt(vh)) + eps)) * nlr) + h[w0 + j]);
  }
}

/**
 * Apply `flat` (the gradients of `vars`, concatenated in order) with `optimizer`, in place.
 * Returns false, doing nothing, when this is not tf.train.adam on the wasm backend.
 */
export function fusedAdamApply(optimizer: tf.Optimizer, vars: readonly tf.Variable[], flat: Float32Array): boolean {
  const backend = wasmBackend();
  // Not instanceof: tf.Optimizer's Symbol.hasInstance makes every optimizer an AdamOptimizer.
  if (!backend || optimizer.getClassName() !== 'Adam') return false;
  const total = vars.reduce((a, x) => a + x.size, 0);
  if (total !== flat.length) throw new Error(`fused Adam: gradient of ${flat.length} values for variables of ${total}`);
  const s = optimizer as unknown as AdamState;
  const m = s.accumulatedFirstMoment;
  const v = s.accumulatedSecondMoment;
  // The moments, created as tf.train.adam creates them (zeros, not trainable, same names).
  vars.forEach((x, i) => {
    m[i] ??= { originalName: `${x.name}/m`, variable: tf.tidy(() => tf.zerosLike(x).variable(false)) };
    v[i] ??= { originalName: `${x.name}/v`, variable: tf.tidy(() => tf.zerosLike(x).variable(false)) };
  });
  for (const t of [...m.map((e) => e.variable), ...v.map((e) => e.variable), s.accBeta1, s.accBeta2]) ownData(backend, t);

  const f = Math.fround;
  const h = backend.wasm.HEAPF32; // after every allocation above: views detach when memory grows
  const ab1 = offsetOf(backend, s.accBeta1);
  const ab2 = offsetOf(backend, s.accBeta2);
  const b1 = f(s.beta1);
  const b2 = f(s.beta2);
  const c1 = f(1 - s.beta1);
  const c2 = f(1 - s.beta2);
  const eps = f(s.epsilon);
  const nlr = f(-s.learningRate);
  const om1 = f(1 - h[ab1]);
  const om2 = f(1 - h[ab2]);
  const next = scratch.length >= total ? scratch.subarray(0, total) : (scratch = new Float32Array(total));
  const k: AdamConstants = { b1, b2, c1, c2, eps, nlr, om1, om2 };
  let o = 0;
  for (let i = 0; i < vars.length; i++) {
    adamPass(h, flat, next, o, offsetOf(backend, m[i].variable), offsetOf(backend, v[i].variable), offsetOf(backend, vars[i]), vars[i].size, k);
    o += vars[i].size;
  }
  h[ab1] = f(h[ab1] * b1);
  h[ab2] = f(h[ab2] * b2);
  // The weights get new tensors, as tf.train.adam gives them, not in-place writes: the wasm
  // backend's XNNPACK convolutions and matmuls cache their packed filter per tensor id, so a
  // filter rewritten in place would keep being used in its old packed form.
  o = 0;
  for (const x of vars) {
    const t = tf.tensor(next.subarray(o, o + x.size), x.shape, 'float32');
    x.assign(t);
    t.dispose();
    o += x.size;
  }
  s.incrementIterations();
  return true;
}
