/**
 * Stamps from the files users have: a dataset .npz, a .npy of one stamp or a stack, or a
 * greyscale PNG. The CLI (explain), the server (uploaded stamps) and the library read them here.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { PNG, type PNGWithMetadata } from 'pngjs';
import { readDataset } from './dataset.js';
import { parseNpy, toFloat32 } from './npy.js';
import { fileError, UserError } from '../util/errors.js';

export interface Input {
  images: Float32Array;
  shape: [number, number, number, number];
  labels?: Int32Array;
  /** The input was one stamp (a PNG, a 2-D or H,W,C .npy). */
  single: boolean;
}

function readBytes(file: string): Buffer {
  try {
    if (statSync(file).isDirectory()) throw fileError(file, 'is a directory, expected a .npz, .npy or .png file');
    return readFileSync(file);
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw fileError(file, `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** A greyscale PNG as one (1,H,W,1) image, grey / (2^bit depth - 1): / 255 for 8-bit, / 65535 for 16-bit. */
export function readPngStamp(file: string, bytes: Uint8Array): Input {
  let png: PNGWithMetadata;
  try {
    // skipRescale: 16-bit greys keep their full precision.
    png = PNG.sync.read(Buffer.from(bytes), { skipRescale: true });
  } catch (err) {
    throw fileError(file, `is not a readable PNG (${(err as Error).message})`);
  }
  const { width: w, height: h } = png;
  const data = png.data as unknown as ArrayLike<number>;
  // Unscaled samples run to 2^depth - 1; palette images are expanded to 8-bit colours.
  const max = (png.colorType as number) === 3 ? 255 : 2 ** png.depth - 1;
  const images = new Float32Array(h * w);
  for (let p = 0; p < h * w; p++) {
    const [r, g, b] = [data[4 * p], data[4 * p + 1], data[4 * p + 2]];
    if (r !== g || g !== b) throw fileError(file, `is a colour PNG (pixel ${p % w},${Math.floor(p / w)}); explain reads single-channel (greyscale) PNGs`);
    images[p] = r / max;
  }
  return { images, shape: [1, h, w, 1], single: true };
}

/**
 * A .npy of one stamp (H,W) or (H,W,C) with C <= 4 and C != W, or of many (N,H,W) / (N,H,W,C).
 */
export function npyInput(file: string, bytes: Uint8Array): Input {
  let a;
  try {
    a = parseNpy(bytes);
  } catch (err) {
    throw fileError(file, (err as Error).message);
  }
  let images: Float32Array;
  try {
    images = toFloat32(a);
  } catch {
    throw fileError(file, `has non-numeric dtype ${a.dtype}`);
  }
  const s = a.shape;
  let shape: [number, number, number, number];
  let single = false;
  if (s.length === 2) [shape, single] = [[1, s[0], s[1], 1], true];
  else if (s.length === 3 && s[2] <= 4 && s[1] !== s[2]) [shape, single] = [[1, s[0], s[1], s[2]], true];
  else if (s.length === 3) shape = [s[0], s[1], s[2], 1];
  else if (s.length === 4) shape = s as [number, number, number, number];
  else throw fileError(file, `has shape (${s.join(',')}); expected (H,W), (H,W,C), (N,H,W) or (N,H,W,C)`);
  if (shape.some((d) => d === 0)) throw fileError(file, `has an empty shape (${s.join(',')})`);
  for (let i = 0; i < images.length; i++) if (!Number.isFinite(images[i])) throw fileError(file, `holds a NaN/Inf value at element ${i}`);
  return { images, shape, single };
}

export async function readInput(file: string): Promise<Input> {
  const bytes = readBytes(file);
  const ext = path.extname(file).toLowerCase();
  const isPng = bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
  if (isPng || ext === '.png') return readPngStamp(file, bytes);
  if (bytes[0] === 0x93 || ext === '.npy') return npyInput(file, bytes);
  const ds = await readDataset(file);
  return { images: ds.images, shape: ds.shape, labels: ds.labels, single: false };
}
