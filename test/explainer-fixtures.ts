/**
 * Tiny inputs for the explainer tests (no test cases here): a 2-class seed classifier on 9x9
 * stamps reading data channel 1 of 2, and a maps dataset whose "maps" are a smooth function
 * of the image (a dark disc around the brightest pixel of channel 1, in [0,1]) with object ids.
 */
import path from 'node:path';
import { writeDataset } from '../src/data/dataset.js';
import { buildClassifier } from '../src/models/classifier.js';
import { saveModelDir } from '../src/models/model-dir.js';
import { Rng } from '../src/util/rng.js';

export const H = 9;
export const W = 9;
export const C = 2;

export async function makeClassifier(dir: string, seed = 3): Promise<string> {
  const m = buildClassifier({ inputShape: [H, W, 1], numClasses: 2, pad: 1, seed });
  await saveModelDir(m, dir, {
    kind: 'classifier',
    occmapVersion: 'test',
    createdAt: 'test',
    channels: [1],
    numClasses: 2,
    inputShape: [H, W, 1],
    options: { activation: 'relu' },
  });
  m.dispose();
  return dir;
}

export interface MapsData {
  images: Float32Array;
  maps: Float32Array;
  labels: Int32Array;
  ids: string[];
}

export function makeMaps(n: number, seed = 1): MapsData {
  const rng = new Rng(seed);
  const images = new Float32Array(n * H * W * C);
  const maps = new Float32Array(n * H * W);
  const labels = new Int32Array(n);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const cy = 2 + rng.int(5);
    const cx = 2 + rng.int(5);
    labels[i] = i % 2;
    ids.push(`obj${Math.floor(i / 2)}`);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const d2 = (y - cy) ** 2 + (x - cx) ** 2;
        const o = ((i * H + y) * W + x) * C;
        images[o] = rng.next() * 0.2;
        images[o + 1] = 0.1 * rng.next() + Math.exp(-d2 / 2);
        maps[(i * H + y) * W + x] = 0.2 + 0.6 * (1 - Math.exp(-d2 / 4)) + 0.05 * labels[i];
      }
    }
  }
  return { images, maps, labels, ids };
}

/** Write a maps dataset; `target` is what meta.occlusion says the maps were drawn for. */
export async function writeMaps(
  file: string,
  d: MapsData,
  target: 'predicted' | 'label' = 'label',
  modelHash?: string,
  mapsRaw?: Float32Array,
  occlusion: Record<string, unknown> = {},
): Promise<string> {
  const n = d.labels.length;
  await writeDataset(file, {
    images: d.images,
    shape: [n, H, W, C],
    labels: d.labels,
    maps: d.maps,
    mapsRaw,
    ids: d.ids,
    meta: { source: 'test', occlusion: { method: 'exact', patch: [3, 3], stride: 1, pad: 1, fill: 0, target, score: 'prob', aggregate: 'sum', normalize: 'seed', modelHash, ...occlusion } },
  });
  return file;
}

export const tmpName = (dir: string, name: string): string => path.join(dir, name);
