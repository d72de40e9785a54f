/**
 * Load any classifier occmap can run as a Predictor: a tfjs model directory trained here
 * (with card.json), and later an .onnx file or a Keras .h5 file.
 */
import type { Predictor } from './predictor.js';
import { UserError } from '../util/errors.js';

export interface LoadOptions {
  engine?: 'auto' | 'tfjs' | 'onnx';
  threads?: number;
}

export async function loadPredictor(modelPath: string, _opts: LoadOptions = {}): Promise<Predictor> {
  throw new UserError(`${modelPath}: model loading is not implemented yet`);
}
