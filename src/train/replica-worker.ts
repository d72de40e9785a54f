/**
 * Worker-thread side of data-parallel training (started by src/train/parallel.ts): a replica
 * of the model on its own tfjs backend. Per step it (1) applies the previous step's summed
 * gradient from shared memory, if told to, (2) computes its shard's gradient into its own
 * shared slot and reports the shard's loss. The data and the epoch's item order live in
 * SharedArrayBuffers written by the main thread, so a step message carries only indices.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { initTf, tf, tfl, type BackendChoice } from '../runtime/tfjs.js';
import { Batcher, type TrainSet } from './batcher.js';
import { installShardDropout, dropoutLayers, type ShardWindow } from './dropout.js';
import { lossView, makeOptimizer, type LossName, type OptimizerName } from './objective.js';
import { applyFlat, evalSums, flatWeights, gradLayout, shardGradient, shardRange } from './replica.js';
import { threadTime, threadTimeSince } from './thread-time.js';

export interface ReplicaInit {
  occmapReplica: true;
  rank: number;
  workers: number;
  backend: BackendChoice;
  modelJson: string;
  weights: { data: Float32Array; shape: number[] }[];
  /** Shapes of the trainable variables, in order: the replica checks it built the same model. */
  varShapes: number[][];
  loss: LossName;
  optimizer: OptimizerName;
  lr?: number;
  data: Omit<TrainSet, 'groups'>;
  order: Int32Array;
  /** The validation items (indices into the data). */
  val: Int32Array;
  slot: Float32Array;
  avg: Float32Array;
}

export type ToReplica =
  | { t: 'step'; apply: boolean; from: number; to: number; seeds: number[] }
  | { t: 'apply' }
  | { t: 'eval'; apply: boolean }
  | { t: 'weights' }
  | { t: 'exit' };

export type FromReplica =
  | { t: 'ready' }
  | { t: 'done'; scaledLoss: number; correct: number; empty: boolean; wallMs: number; cpuMs: number; queuedMs: number }
  | { t: 'applied' }
  | { t: 'evaluated'; lossSum: number; correct: number }
  | { t: 'weights'; flat: Float32Array }
  | { t: 'error'; message: string };

async function main(init: ReplicaInit): Promise<void> {
  const port = parentPort!;
  await initTf(init.backend);
  const model = await tfl.models.modelFromJSON(JSON.parse(init.modelJson) as Parameters<typeof tfl.models.modelFromJSON>[0]);
  model.setWeights(init.weights.map((w) => tf.tensor(w.data, w.shape)));
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const shapes = vars.map((v) => v.shape.join('x')).join(',');
  if (shapes !== init.varShapes.map((s) => s.join('x')).join(',')) {
    throw new Error(`replica ${init.rank} rebuilt a model with trainable shapes ${shapes}, not ${init.varShapes.map((s) => s.join('x')).join(',')}`);
  }
  if (gradLayout(vars).total !== init.slot.length) throw new Error(`replica ${init.rank}: gradient slot size mismatch`);
  const { net, fromLogits } = lossView(model, init.loss);
  const optimizer = makeOptimizer(init.optimizer, init.lr);
  const batcher = new Batcher(init.data);
  const window: ShardWindow = { offset: 0, total: 1 };
  installShardDropout(model, window);
  const drops = dropoutLayers(model);

  port.on('message', (m: ToReplica) => {
    try {
      if (m.t === 'exit') {
        optimizer.dispose();
        model.dispose();
        port.close();
        return;
      }
      if (m.t === 'weights') {
        const flat = flatWeights(model);
        port.postMessage({ t: 'weights', flat } satisfies FromReplica, [flat.buffer as ArrayBuffer]);
        return;
      }
      if (m.t === 'eval') {
        if (m.apply) applyFlat(optimizer, vars, init.avg);
        const [a, b] = shardRange(0, init.val.length, init.rank, init.workers);
        port.postMessage({ t: 'evaluated', ...evalSums(net, fromLogits, init.loss, batcher, init.val, a, b) } satisfies FromReplica);
        return;
      }
      if (m.t === 'apply') {
        applyFlat(optimizer, vars, init.avg);
        port.postMessage({ t: 'applied' } satisfies FromReplica);
        return;
      }
      const t0 = performance.now();
      const tt0 = threadTime();
      if (m.apply) applyFlat(optimizer, vars, init.avg);
      const [a, b] = shardRange(m.from, m.to, init.rank, init.workers);
      if (a === b) {
        port.postMessage({ t: 'done', scaledLoss: 0, correct: 0, empty: true, wallMs: 0, cpuMs: 0, queuedMs: 0 } satisfies FromReplica);
        return;
      }
      drops.forEach((d, i) => (d.seed = m.seeds[i]));
      window.offset = a - m.from;
      window.total = m.to - m.from;
      const batch = batcher.batch(init.order, a, b);
      try {
        const r = shardGradient(net, fromLogits, init.loss, batch, (b - a) / (m.to - m.from), vars, init.slot);
        const own = threadTimeSince(tt0);
        port.postMessage({ t: 'done', ...r, empty: false, wallMs: performance.now() - t0, ...own } satisfies FromReplica);
      } finally {
        batch.dispose();
      }
    } catch (err) {
      port.postMessage({ t: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies FromReplica);
    }
  });
  port.postMessage({ t: 'ready' } satisfies FromReplica);
}

const init = workerData as ReplicaInit | undefined;
if (parentPort && init?.occmapReplica) {
  main(init).catch((err) => {
    parentPort!.postMessage({ t: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies FromReplica);
  });
}
