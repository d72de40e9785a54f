/**
 * estimate.onnx: a conditioned explainer and the classifier it conditions on as one graph
 * (src/models/onnx-fuse.ts), written beside the explainer by train-explainer. An estimate for
 * the classifier's predicted class then costs one ONNX Runtime call, probabilities included.
 *
 * The graph takes the explainer's input (stamps padded to S x S, the explainer's channels);
 * the classifier sees the stamp cropped back out of it, its own channels gathered from the
 * explainer's. It records which classifier (content hash) and which member weights it was
 * built from, so a loader uses it only while those are still what the directory holds.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fuseClassifierExplainer } from '../models/onnx-fuse.js';
import { readOnnxHeader } from '../models/onnx-proto.js';
import { META_LAYOUT } from '../models/to-onnx.js';
import type { Pad } from './data.js';
import type { ExplainerCard } from './runner.js';

export const FUSED_ONNX = 'estimate.onnx';
/** metadata_props key: JSON of FusedInfo. */
export const META_FUSED = 'occmap.fused';

export interface FusedInfo {
  classifierHash: string;
  /** Content hash of each member the graph holds, in output order. */
  memberHashes: string[];
  condition: 'numeral' | 'onehot';
  numClasses: number;
}

export interface FuseInputs {
  classifierOnnx: Uint8Array;
  classifierHash: string;
  /** Data channels the classifier reads. */
  classifierChannels: number[];
  /** Data channels the explainer reads (its input channels, in order). */
  explainerChannels: number[];
  memberOnnx: Uint8Array[];
  memberHashes: string[];
  condition: 'numeral' | 'onehot';
  numClasses: number;
  /** Stamp size and its padding into the explainer input. */
  stamp: { h: number; w: number; pad: Pad };
}

/**
 * The fused graph's bytes, or the reason there is none (e.g. the classifier reads a channel
 * the explainer does not): the caller then keeps the two-call path and says why.
 */
export function buildFusedEstimate(f: FuseInputs): { bytes: Uint8Array } | { reason: string } {
  const classifierChannels = f.classifierChannels.map((c) => f.explainerChannels.indexOf(c));
  if (classifierChannels.some((c) => c < 0)) {
    return { reason: `the classifier reads data channel(s) [${f.classifierChannels.join(',')}], the explainer only [${f.explainerChannels.join(',')}]` };
  }
  const info: FusedInfo = { classifierHash: f.classifierHash, memberHashes: f.memberHashes, condition: f.condition, numClasses: f.numClasses };
  try {
    const bytes = fuseClassifierExplainer({
      classifier: f.classifierOnnx,
      members: f.memberOnnx,
      condition: f.condition,
      numClasses: f.numClasses,
      crop: { top: f.stamp.pad.top, left: f.stamp.pad.left, height: f.stamp.h, width: f.stamp.w },
      classifierChannels,
      metadata: { [META_LAYOUT]: 'NHWC', [META_FUSED]: JSON.stringify(info) },
      docString: `occmap estimate graph: classifier ${f.classifierHash.slice(0, 12)} -> argmax -> ${f.condition} -> ${f.memberOnnx.length} explainer member(s)`,
    });
    return { bytes };
  } catch (err) {
    return { reason: (err as Error).message };
  }
}

/**
 * The fused graph of an explainer directory and what it holds, when it is there and was
 * built from the members the directory holds now (`memberHashes`, in order); else undefined.
 */
export function fusedEstimate(dir: string, memberHashes: readonly (string | undefined)[]): { file: string; info: FusedInfo } | undefined {
  const file = path.join(dir, FUSED_ONNX);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch {
    return undefined;
  }
  let info: FusedInfo;
  try {
    info = JSON.parse(readOnnxHeader(bytes).metadata[META_FUSED] ?? 'null');
  } catch {
    return undefined;
  }
  if (!info || !Array.isArray(info.memberHashes) || typeof info.classifierHash !== 'string') return undefined;
  if (info.memberHashes.length !== memberHashes.length || info.memberHashes.some((h, i) => h !== memberHashes[i])) return undefined;
  return { file, info };
}

/**
 * Write estimate.onnx into a (staged) explainer directory whose members are saved: the
 * classifier from `classifierDir`, converted from its weights (so the graph holds exactly
 * the weights the hash names). Returns what the card records: the file, or why there is none.
 */
export async function writeFusedEstimate(
  dir: string,
  o: {
    classifierDir: string;
    classifierHash: string;
    classifierChannels: number[];
    explainerChannels: number[];
    /** Member directories (relative to dir; '.' for a single model) and their hashes. */
    members: { dir: string; hash: string }[];
    condition: 'numeral' | 'onehot';
    numClasses: number;
    stamp: FuseInputs['stamp'];
  },
): Promise<{ file: string; classifierHash: string } | { file: null; reason: string }> {
  const { loadModelDir } = await import('../models/model-dir.js');
  const { modelToOnnx } = await import('../models/to-onnx.js');
  const { writeFileSync } = await import('node:fs');
  const clf = await loadModelDir(o.classifierDir);
  let classifierOnnx: Uint8Array;
  try {
    classifierOnnx = modelToOnnx(clf).bytes;
  } catch (err) {
    return { file: null, reason: `the classifier has no ONNX export: ${(err as Error).message.split('\n')[0]}` };
  } finally {
    clf.dispose();
  }
  const r = buildFusedEstimate({
    classifierOnnx,
    classifierHash: o.classifierHash,
    classifierChannels: o.classifierChannels,
    explainerChannels: o.explainerChannels,
    memberOnnx: o.members.map((m) => readFileSync(path.join(dir, m.dir, 'model.onnx'))),
    memberHashes: o.members.map((m) => m.hash),
    condition: o.condition,
    numClasses: o.numClasses,
    stamp: o.stamp,
  });
  if ('reason' in r) return { file: null, reason: r.reason };
  writeFileSync(path.join(dir, FUSED_ONNX), r.bytes);
  return { file: FUSED_ONNX, classifierHash: o.classifierHash };
}

/**
 * estimate.onnx for a saved conditioned explainer, its inputs read from the explainer's card
 * (channels, classes, stamp size and padding) and the classifier's: what train-explainer and
 * the pretrained-model install both write. Sets card.fusedEstimate and writes the card again,
 * so the graph's hash is among the directory's files checked at every load.
 */
export async function writeFusedEstimateFor(
  dir: string,
  card: ExplainerCard,
  classifier: { dir: string; hash: string; channels?: number[] },
  members: { dir: string; hash: string }[],
): Promise<ExplainerCard> {
  const { writeCard } = await import('../models/model-dir.js');
  if (card.condition === 'none') throw new Error(`internal: ${dir} is not conditioned, so it has no fused estimate`);
  const [h, w] = card.imageSize as [number, number];
  const channels = card.channels ?? [0];
  card.fusedEstimate = await writeFusedEstimate(dir, {
    classifierDir: classifier.dir,
    classifierHash: classifier.hash,
    classifierChannels: classifier.channels ?? channels,
    explainerChannels: channels,
    members,
    condition: card.condition,
    numClasses: card.numClasses,
    stamp: { h, w, pad: card.pad as Pad },
  });
  const fe = card.fusedEstimate as { file: string | null };
  return writeCard(dir, card as unknown as Parameters<typeof writeCard>[1], { extraFiles: fe.file ? [fe.file] : [] }) as unknown as ExplainerCard;
}
