/**
 * The classifier the server runs, loaded the same way in the main thread and in the exact-map
 * worker: ONNX Runtime when the model is an .onnx file or a directory whose model.onnx is
 * current (exported from the weights its card.json describes), tfjs otherwise.
 */
import { existsSync, statSync } from 'node:fs';
import { loadPredictor } from '../models/load.js';
import type { Predictor } from '../models/predictor.js';
import { UserError } from '../util/errors.js';

export type EngineChoice = 'auto' | 'onnx' | 'tfjs';

export interface ClassifierLoad {
  engine: EngineChoice;
  threads?: number;
}

export async function loadClassifier(modelPath: string, o: ClassifierLoad): Promise<Predictor> {
  if (o.engine !== 'tfjs' && existsSync(modelPath) && statSync(modelPath).isDirectory()) {
    const { currentOnnxExport, loadOnnxPredictor } = await import('../runtime/onnx.js');
    if (currentOnnxExport(modelPath)) return loadOnnxPredictor(modelPath, { threads: o.threads });
    if (o.engine === 'onnx') throw new UserError(`${modelPath}: has no current model.onnx (missing, or exported from other weights): use --engine tfjs or auto`);
  }
  return loadPredictor(modelPath, { engine: o.engine === 'auto' ? undefined : o.engine, threads: o.threads });
}
