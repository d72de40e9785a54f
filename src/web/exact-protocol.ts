/**
 * Messages between the page and its exact-map Web Worker (src/web/exact-worker.ts). Types only.
 */
import type { ExactOptions } from '../occlusion/exact.js';
import type { ClassifierManifest } from './manifest.js';

export type ToExactWorker =
  | { type: 'init'; classifier: ClassifierManifest; url: string; ortBase: string; threads: number }
  | { type: 'run'; id: number; images: Float32Array; shape: [number, number, number, number]; opts: ExactOptions }
  | { type: 'cancel'; id: number };

export type FromExactWorker =
  | { type: 'ready'; engine: string; loadMs: number }
  | { type: 'progress'; id: number; inferences: number; total: number }
  | { type: 'done'; id: number; maps: Float32Array; targets: Int32Array; baseProbs: Float32Array; inferences: number; ms: number }
  | { type: 'error'; id: number; message: string };

/**
 * Images per classifier call in the page: the map's inferences (626 for 21x21) go in a few calls
 * so the progress bar moves and a cancelled map stops early; results do not depend on it.
 */
export const PAGE_EXACT_BATCH = 128;
