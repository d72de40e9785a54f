/**
 * What callers of the incremental engine need without loading it (no node or runtime imports:
 * exact.ts, which the browser bundle includes, reads these): its engine name and the note a
 * predictor carries when the incremental engine was asked for and the full one runs.
 */
import type { Predictor } from '../models/predictor.js';

/** Engine name of the incremental engine in shard identities and outputs (thread count stripped there). */
export const INCREMENTAL_ENGINE = 'onnxruntime-incremental';

/**
 * An engine's name without its thread count ("(2 threads)", "(2 lanes x 1 thread)"): ORT
 * gave bit-identical maps whatever the threads, and a resume with another worker count
 * (hence threads per copy) must find its shards.
 */
export function engineWithoutThreads(engine: string): string {
  return engine.replace(/\s*\((?:\d+ lanes x )?\d+ threads?\)$/, '');
}

const notes = new WeakMap<Predictor, string>();

/** Why `p` runs on the full engine although the incremental one was asked for, if it does. */
export function incrementalNote(p: Predictor): string | undefined {
  return notes.get(p);
}

export function noteFallback<P extends Predictor>(p: P, why: string): P {
  notes.set(p, why);
  return p;
}
