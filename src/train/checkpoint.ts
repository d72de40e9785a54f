/**
 * Training checkpoints: the loop's state after every epoch (weights, the best epoch's weights,
 * the optimiser's moments, early-stopping counters, the history), so a training that takes
 * hours resumes after a crash where it stopped. The shuffles and dropout masks are not saved:
 * they come from seeded streams the loop replays. One directory per model: checkpoint.bin (all
 * tensors as float32) and checkpoint.json (their shapes and the state), written json last, so a
 * readable json always describes a complete bin.
 */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { tf } from '../runtime/tfjs.js';
import { ensureDir, writeFileAtomic } from '../util/atomic.js';
import { fileError } from '../util/errors.js';
import type { EpochRecord } from './loop.js';

/** An optimiser variable as tf.Optimizer.getWeights gives it. */
type NamedTensor = { name: string; tensor: tf.Tensor };

export const CHECKPOINT_JSON = 'checkpoint.json';
const CHECKPOINT_BIN = 'checkpoint.bin';

/** The early-stopping state after `epoch` epochs. */
export interface LoopState {
  epoch: number;
  history: EpochRecord[];
  best: number;
  bestEpoch: number;
  wait: number;
  /** Early stopping ended the run (a resumed run trains no further). */
  stopped: boolean;
}

/** What must match for a checkpoint to continue this training (epochs may grow). */
export interface Fingerprint {
  weights: number[][];
  /** FNV-1a of the training data's bytes (inputs, targets, and any extra inputs). */
  data: string;
  train: number;
  val: number;
  seed: number;
  batchSize: number;
  loss: string;
  optimizer: string;
  lr: number | null;
  patience: number;
  workers: number;
}

export interface Restored {
  /** A warning for the log (a checkpoint that cannot be fully checked). */
  note?: string;
  state: LoopState;
  weights: tf.Tensor[];
  bestWeights: tf.Tensor[] | null;
  /** Null when the run that saved it had worker replicas (their optimisers restart). */
  optimizer: NamedTensor[] | null;
}

interface TensorEntry {
  group: 'weights' | 'best' | 'optimizer';
  name?: string;
  shape: number[];
  offset: number;
}

/** FNV-1a (32-bit) over the bytes of typed arrays: which data a checkpoint was trained on. */
export function dataHash(arrays: readonly ArrayBufferView[]): string {
  let h = 0x811c9dc5;
  for (const a of arrays) {
    const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

export async function saveCheckpoint(
  dir: string,
  fp: Fingerprint,
  state: LoopState,
  weights: tf.Tensor[],
  bestWeights: tf.Tensor[] | null,
  optimizer: NamedTensor[] | null,
): Promise<void> {
  ensureDir(dir);
  const all: { group: TensorEntry['group']; name?: string; t: tf.Tensor }[] = [
    ...weights.map((t) => ({ group: 'weights' as const, t })),
    ...(bestWeights ?? []).map((t) => ({ group: 'best' as const, t })),
    ...(optimizer ?? []).map((n) => ({ group: 'optimizer' as const, name: n.name, t: n.tensor })),
  ];
  const size = all.reduce((a, x) => a + x.t.size, 0);
  const bin = new Float32Array(size);
  const entries: TensorEntry[] = [];
  let off = 0;
  for (const x of all) {
    bin.set(x.t.dataSync() as Float32Array, off);
    entries.push({ group: x.group, ...(x.name ? { name: x.name } : {}), shape: x.t.shape, offset: off });
    off += x.t.size;
  }
  await writeFileAtomic(path.join(dir, CHECKPOINT_BIN), new Uint8Array(bin.buffer));
  const json = { kind: 'occmap-training-checkpoint', version: 1, savedAt: new Date().toISOString(), fingerprint: fp, state, values: size, tensors: entries };
  await writeFileAtomic(path.join(dir, CHECKPOINT_JSON), JSON.stringify(json, (_k, v) => (v === Infinity ? 'Infinity' : v)) + '\n');
}

/** The checkpoint in `dir`, or null when there is none; refuses one of another training. */
export function loadCheckpoint(dir: string, fp: Fingerprint): Restored | null {
  const jf = path.join(dir, CHECKPOINT_JSON);
  if (!existsSync(jf)) return null;
  const j = JSON.parse(readFileSync(jf, 'utf8'), (_k, v) => (v === 'Infinity' ? Infinity : v)) as {
    kind?: string;
    fingerprint: Fingerprint;
    state: LoopState;
    values: number;
    tensors: TensorEntry[];
  };
  if (j.kind !== 'occmap-training-checkpoint') throw fileError(jf, 'is not an occmap training checkpoint');
  // Checkpoints of the first version do not record their data: taken as this data, said in the log.
  const unknownData = j.fingerprint.data === undefined;
  const diff = (Object.keys(fp) as (keyof Fingerprint)[]).filter((k) => !(k === 'data' && unknownData) && JSON.stringify(fp[k]) !== JSON.stringify(j.fingerprint[k]));
  if (diff.length) {
    throw fileError(jf, `is the checkpoint of another training (${diff.map((k) => `${k} ${JSON.stringify(j.fingerprint[k])} vs ${JSON.stringify(fp[k])}`).join(', ')}): delete it, or give the same options`);
  }
  const raw = readFileSync(path.join(dir, CHECKPOINT_BIN));
  if (raw.byteLength !== j.values * 4) throw fileError(path.join(dir, CHECKPOINT_BIN), `has ${raw.byteLength} bytes, the checkpoint says ${j.values * 4}`);
  const bin = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const of = (e: TensorEntry) => tf.tensor(bin.subarray(e.offset, e.offset + e.shape.reduce((a, b) => a * b, 1)), e.shape);
  const group = (g: TensorEntry['group']) => j.tensors.filter((e) => e.group === g);
  const best = group('best');
  const opt = group('optimizer');
  return {
    ...(unknownData ? { note: `${jf} does not record which data it was trained on: assumed to be this data` } : {}),
    state: j.state,
    weights: group('weights').map(of),
    bestWeights: best.length ? best.map(of) : null,
    optimizer: fp.workers === 1 ? opt.map((e) => ({ name: e.name!, tensor: of(e) })) : null,
  };
}
