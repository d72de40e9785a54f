/**
 * The file side of the stamp reader (stamps.ts holds the pure parsing): read a file of stamps
 * (.npy, .npz dataset, HiTS 2013 pickle, PNG, FITS, JSON), every problem a one-line
 * UserError naming the file.
 */
import { readFileSync, statSync } from 'node:fs';
import { readDataset } from './dataset.js';
import { checkStamps, minMaxPerStamp, readStampBytes, sniffFormat, StampError, valueWarnings, type StampExpect, type StampReadOptions, type Stamps } from './stamps.js';
import { fileError, UserError } from '../util/errors.js';

function readBytes(file: string): Buffer {
  try {
    if (statSync(file).isDirectory()) throw fileError(file, 'is a directory, expected a stamp file (.npy, .npz, .png, .fits, .json)');
    return readFileSync(file);
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw fileError(file, `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** Stamps of `file`, read by the one rule of stamps.ts and checked against `o.expect`. */
export async function readStampFile(file: string, o: StampReadOptions = {}): Promise<Stamps & { ids?: string[] }> {
  const bytes = readBytes(file);
  const format = sniffFormat(bytes, file);
  try {
    if (format === 'npz' || format === 'pickle') {
      const ds = await readDataset(file);
      let images = ds.images;
      const warnings = [...(ds.warnings ?? [])];
      if (o.scale === 'minmax') images = minMaxPerStamp(images, ds.shape);
      else warnings.push(...valueWarnings(images, o.expect));
      const st = { images, shape: ds.shape, labels: ds.labels, ids: ds.ids, single: false, format, warnings };
      checkStamps(st, o.expect);
      return st;
    }
    return readStampBytes(bytes, file, o);
  } catch (err) {
    if (err instanceof StampError) throw fileError(file, err.message);
    throw err;
  }
}

/** Stamp checks as a UserError naming the file (for data read by other means). */
export function checkStampsOf(file: string, st: Pick<Stamps, 'shape' | 'labels'>, expect: StampExpect): void {
  try {
    checkStamps(st, expect);
  } catch (err) {
    if (err instanceof StampError) throw fileError(file, err.message);
    throw err;
  }
}

/** Stamps to explain, as the CLI and the library take them. */
export interface Input {
  images: Float32Array;
  shape: [number, number, number, number];
  labels?: Int32Array;
  /** Stamp ids of a dataset .npz (object ids of HiTS data). */
  ids?: string[];
  /** The input was one stamp (a PNG, a FITS image, a 2-D or (H,W,C) array). */
  single: boolean;
  /** What the reader assumed (the CLI prints them). */
  warnings: string[];
}

/** `readStampFile` in the shape explain and the library use. */
export async function readInput(file: string, o: StampReadOptions = {}): Promise<Input> {
  const st = await readStampFile(file, o);
  return { images: st.images, shape: st.shape, labels: st.labels, ids: st.ids, single: st.single, warnings: st.warnings };
}
