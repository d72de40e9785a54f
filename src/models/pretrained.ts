/**
 * The models shipped with occmap (models/hits2015/, made by `npm run pretrain`; its README.md
 * is their card): what `explain` and `serve` use when no model is given, and what library
 * users get from `pretrained()`.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../util/errors.js';

export interface PretrainedModels {
  /** The folder: models/hits2015 of the installed package. */
  dir: string;
  /** Deep-HiTS-style classifier on the SNR-difference channel (tfjs + ONNX). */
  classifier: string;
  /** The explainer (conditioned on the classifier's predicted class). */
  explainer: string;
  /** Held-out HiTS 2015 stamps with their exact maps (.npz). */
  sample: string;
  /** The model card. */
  card: string;
}

/** dist/src/models/ -> the package root. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Where the pretrained models are; `root` is the package root (for tests). */
export function pretrainedPaths(root = ROOT): PretrainedModels {
  const dir = path.join(root, 'models', 'hits2015');
  return {
    dir,
    classifier: path.join(dir, 'classifier'),
    explainer: path.join(dir, 'explainer'),
    sample: path.join(dir, 'sample.npz'),
    card: path.join(dir, 'README.md'),
  };
}

/** The shipped models, or a one-line error saying they are missing and how to make them. */
export function pretrained(root = ROOT): PretrainedModels {
  const p = pretrainedPaths(root);
  for (const f of [p.classifier, p.explainer, p.sample]) {
    if (!existsSync(f)) throw new UserError(`${f}: the pretrained models are not installed (make them with 'npm run pretrain -- --install', or give the model directories)`);
  }
  return p;
}
