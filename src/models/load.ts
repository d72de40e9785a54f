/**
 * Load any classifier occmap can run as a Predictor. Each model kind is one entry of LOADERS
 * plus one line in detectKind: adding ONNX or Keras .h5 means writing its loader function.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Predictor } from './predictor.js';
import { fileError } from '../util/errors.js';
import { initTf, type BackendChoice } from '../runtime/tfjs.js';
import { CARD_JSON, MODEL_JSON, hashModelDir, loadModelDir, readCard } from './io.js';
import { TfjsPredictor } from './tfjs-predictor.js';

export interface LoadOptions {
  engine?: 'auto' | 'tfjs' | 'onnx';
  threads?: number;
  /** tfjs backend for tfjs models (default: initTf's auto choice). */
  backend?: BackendChoice;
  /** Images per inference call. */
  batchSize?: number;
  /** .onnx models: input layout and output kind ('auto': guessed, see loadOnnxPredictor). */
  layout?: 'auto' | 'NHWC' | 'NCHW';
  outputs?: 'auto' | 'probs' | 'logits';
}

export type ModelKind = 'tfjs' | 'onnx' | 'keras';

type Loader = (modelPath: string, opts: LoadOptions) => Promise<Predictor>;

/** What kind of model `modelPath` is, and the path its loader takes (a tfjs directory). */
export function detectKind(modelPath: string): { kind: ModelKind; path: string } {
  if (!existsSync(modelPath)) throw fileError(modelPath, 'does not exist');
  const st = statSync(modelPath);
  const ext = path.extname(modelPath).toLowerCase();
  if (st.isDirectory()) {
    if (existsSync(path.join(modelPath, MODEL_JSON))) return { kind: 'tfjs', path: modelPath };
    throw fileError(modelPath, `is not a model directory (no ${MODEL_JSON}); expected a directory written by 'occmap train-classifier', an .onnx or a Keras .h5 file`);
  }
  if (path.basename(modelPath) === MODEL_JSON) return { kind: 'tfjs', path: path.dirname(modelPath) };
  if (ext === '.onnx') return { kind: 'onnx', path: modelPath };
  if (ext === '.h5' || ext === '.hdf5') return { kind: 'keras', path: modelPath };
  if (ext === '.keras') throw fileError(modelPath, "is a Keras 3 '.keras' archive, which occmap cannot read; save the model with tf.keras 2 as model.save('x.h5')");
  throw fileError(modelPath, 'is not a model: expected a tfjs model directory (model.json + weights.bin), an .onnx or a Keras .h5 file');
}

async function loadTfjs(dir: string, opts: LoadOptions): Promise<Predictor> {
  if (opts.engine !== 'tfjs') {
    // A current ONNX export beside the model runs several times faster than tfjs.
    const { currentOnnxExport, loadOnnxPredictor } = await import('../runtime/onnx.js');
    const onnx = currentOnnxExport(dir);
    if (onnx) return loadOnnxPredictor(onnx, { threads: opts.threads, batchSize: opts.batchSize });
    if (opts.engine === 'onnx') throw fileError(dir, 'has no model.onnx exported from this model; use --engine tfjs');
  }
  const card = readCard(dir);
  await initTf(opts.backend ?? 'auto');
  const hash = hashModelDir(dir);
  const model = await loadModelDir(dir);
  try {
    const p = new TfjsPredictor(model, { channels: card?.channels, hash, batchSize: opts.batchSize, source: dir });
    if (card?.channels && card.channels.length !== p.inputShape[2]) {
      throw fileError(
        path.join(dir, CARD_JSON),
        `lists ${card.channels.length} channel(s) [${card.channels.join(',')}] but the model takes ${p.inputShape[2]}`,
      );
    }
    return p;
  } catch (err) {
    model.dispose();
    throw err;
  }
}


const LOADERS: Record<ModelKind, Loader> = {
  tfjs: loadTfjs,
  onnx: async (p, opts) => {
    if (opts.engine === 'tfjs') throw fileError(p, 'an .onnx model runs on ONNX Runtime only; drop --engine tfjs');
    // loaded on demand: tfjs-only runs never load the native onnxruntime library
    const { loadOnnxPredictor } = await import('../runtime/onnx.js');
    return loadOnnxPredictor(p, { threads: opts.threads, batchSize: opts.batchSize, layout: opts.layout, outputs: opts.outputs });
  },
  keras: async (p, opts) => {
    if (opts.engine === 'onnx') throw fileError(p, 'a Keras .h5 model runs on tfjs only; drop --engine onnx');
    const { loadKerasH5Predictor } = await import('./keras-h5.js');
    return loadKerasH5Predictor(p, { backend: opts.backend, batchSize: opts.batchSize, outputs: opts.outputs });
  },
};

export async function loadPredictor(modelPath: string, opts: LoadOptions = {}): Promise<Predictor> {
  const { kind, path: p } = detectKind(modelPath);
  return LOADERS[kind](p, opts);
}
