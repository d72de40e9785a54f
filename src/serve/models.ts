/**
 * The classifier the server runs, loaded the same way in the main thread and in the exact-map
 * worker (models/load.ts decides the engine: model.onnx when card.json vouches for it, else the
 * weights converted at load; tfjs only when asked).
 */
import { loadPredictor } from '../models/load.js';
import type { Predictor } from '../models/predictor.js';
import type { EngineChoice } from '../models/model-dir.js';

export type { EngineChoice };

export interface ClassifierLoad {
  engine: EngineChoice;
  threads?: number;
  /** The classifier's input is the stamp padded by `pad` on each side. */
  pad?: number;
}

export async function loadClassifier(modelPath: string, o: ClassifierLoad): Promise<Predictor> {
  return loadPredictor(modelPath, { engine: o.engine, threads: o.threads, pad: o.pad });
}
