/**
 * Loading a model directory for the incremental engine (models/load.ts calls this for
 * engine 'incremental'): an IncrementalPredictor when the model is a chain the engine runs,
 * otherwise the full engine's predictor carrying the one-line reason (incrementalNote).
 */
import { initTf } from '../runtime/tfjs.js';
import { loadModelDir, openModelDir } from '../models/model-dir.js';
import type { LoadOptions } from '../models/load.js';
import type { Predictor } from '../models/predictor.js';
import { fileError } from '../util/errors.js';
import { noteFallback } from './incremental-engine-name.js';

export { incrementalNote, noteFallback } from './incremental-engine-name.js';

export async function loadIncremental(dir: string, opts: LoadOptions, fullEngine: () => Promise<Predictor>): Promise<Predictor> {
  // verified against card.json's hashes like every load
  const opened = openModelDir(dir);
  // an explainer or an ensemble: the full engine's loader says what is wrong with it
  if (opened.card?.kind === 'explainer' || opened.members.length !== 1) return fullEngine();
  const v = opened.members[0];
  const card = v.card;
  const channels = opts.channels ?? card?.channels;
  await initTf(opts.backend ?? 'auto');
  const model = await loadModelDir(v.dir);
  // on demand: knowing a predictor's note must not load ONNX Runtime
  const { incrementalPredictorFor } = await import('./incremental-predictor.js');
  let r;
  try {
    r = incrementalPredictorFor(model, {
      threads: opts.threads,
      batchSize: opts.batchSize,
      hash: opts.hash ?? v.hash,
      channels,
      logits: card?.outputs === 'logits',
    });
  } finally {
    model.dispose();
  }
  if ('unsupported' in r) return noteFallback(await fullEngine(), r.unsupported);
  const p = r.predictor;
  if (channels && channels.length !== p.inputShape[2]) {
    p.dispose();
    throw fileError(dir, `${opts.channels ? 'channels' : 'card.json'} lists ${channels.length} channel(s) [${channels.join(',')}] but the model takes ${p.inputShape[2]}`);
  }
  opened.notes.forEach((l) => opts.onNote?.(l));
  return p;
}
