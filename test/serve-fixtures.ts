/**
 * Tiny, untrained models and data for the server tests (no test cases here): a seed classifier
 * on 9x9 stamps reading data channel 1 of 2, a seed autoencoder (12x12 input, 3x3 bottleneck)
 * reading the same channel, both with their ONNX exports, and a 6-stamp dataset whose stored
 * maps are the classifier's exact maps.
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeDataset } from '../src/data/dataset.js';
import { buildAutoencoder } from '../src/models/autoencoder.js';
import { buildClassifier } from '../src/models/classifier.js';
import { saveModelDir, writeCard } from '../src/models/model-dir.js';
import { exactMaps, SEED_PARAMS, type OcclusionParams } from '../src/occlusion/exact.js';
import { loadClassifier } from '../src/serve/models.js';
import { initTf } from '../src/runtime/tfjs.js';
import { Rng } from '../src/util/rng.js';

export const H = 9;
export const W = 9;
export const C = 2;
export const N = 6;
export const PARAMS: OcclusionParams = { ...SEED_PARAMS, pad: 1 };

export interface ServeFixtures {
  dir: string;
  classifier: string;
  explainer: string;
  data: string;
  images: Float32Array;
  labels: Int32Array;
}

export function stampImages(n: number, seed = 5): Float32Array {
  const rng = new Rng(seed);
  const x = new Float32Array(n * H * W * C);
  for (let i = 0; i < n; i++) {
    const cy = 2 + rng.int(5);
    const cx = 2 + rng.int(5);
    for (let y = 0; y < H; y++) {
      for (let xx = 0; xx < W; xx++) {
        const o = ((i * H + y) * W + xx) * C;
        x[o] = rng.next() * 0.3;
        x[o + 1] = 0.15 * rng.next() + Math.exp(-((y - cy) ** 2 + (xx - cx) ** 2) / 2);
      }
    }
  }
  return x;
}

export async function makeServeFixtures(): Promise<ServeFixtures> {
  await initTf('auto');
  const dir = mkdtempSync(path.join(tmpdir(), 'occmap-serve-'));
  const classifier = path.join(dir, 'clf');
  const clf = buildClassifier({ inputShape: [H, W, 1], numClasses: 2, pad: 1, seed: 7 });
  await saveModelDir(clf, classifier, {
    kind: 'classifier',
    occmapVersion: 'test',
    createdAt: 'test',
    channels: [1],
    channelNames: ['signal'],
    classes: ['bogus', 'real'],
    numClasses: 2,
    inputShape: [H, W, 1],
  }, { onnx: true });
  clf.dispose();

  const explainer = path.join(dir, 'expl');
  const ae = buildAutoencoder({ size: 12, channels: 1, bottleneck: 9, seed: 3 });
  await saveModelDir(ae, explainer, {
    kind: 'explainer',
    occmapVersion: 'test',
    createdAt: 'test',
    variant: 'normal',
    condition: 'none',
    conditionOn: null,
    channels: [1],
    inputSize: 12,
    inputShape: [12, 12, 1],
    imageSize: [H, W],
    numClasses: 2,
    classes: ['bogus', 'real'],
    split: { by: 'item', seed: 0, valFraction: 0.5, valIndices: [] },
    data: 'test',
    occlusion: { method: 'exact', ...PARAMS },
  }, { onnx: true });
  ae.dispose();

  const images = stampImages(N);
  const labels = Int32Array.from({ length: N }, (_, i) => i % 2);
  const p = await loadClassifier(classifier, { engine: 'auto', threads: 1 });
  const { maps } = await exactMaps(p, images, [N, H, W, C], PARAMS);
  p.dispose();
  const data = path.join(dir, 'stamps.npz');
  await writeDataset(data, {
    images,
    shape: [N, H, W, C],
    labels,
    maps,
    ids: Array.from({ length: N }, (_, i) => `obj-${String.fromCharCode(65 + Math.floor(i / 2))}`),
    meta: { source: 'test', channels: ['noise', 'signal'], classes: ['bogus', 'real'], occlusion: { method: 'exact', ...PARAMS } },
  });
  return { dir, classifier, explainer, data, images, labels };
}

/**
 * A conditioned (one-hot, on the label) ensemble of two autoencoders beside the fixtures:
 * DIR/member-0, DIR/member-1 and the ensemble's card.json.
 */
export async function makeConditionedEnsemble(fx: ServeFixtures): Promise<string> {
  const dir = path.join(fx.dir, 'ensemble');
  mkdirSync(dir);
  const card = {
    kind: 'explainer',
    occmapVersion: 'test',
    createdAt: 'test',
    variant: 'normal',
    condition: 'onehot',
    conditionOn: 'label',
    channels: [1],
    inputSize: 12,
    inputShape: [12, 12, 1],
    imageSize: [H, W],
    numClasses: 2,
    classes: ['bogus', 'real'],
    split: { by: 'item', seed: 0, valFraction: 0.5, valIndices: [] },
    data: 'test',
    occlusion: { method: 'exact', ...PARAMS, target: 'label' },
  };
  for (const k of [0, 1]) {
    const m = buildAutoencoder({ size: 12, channels: 1, bottleneck: 9, condition: 'onehot', numClasses: 2, seed: 11 + k });
    await saveModelDir(m, path.join(dir, `member-${k}`), { ...card, member: k }, { onnx: true });
    m.dispose();
  }
  writeCard(dir, { ...card, ensemble: 2 });
  return dir;
}
