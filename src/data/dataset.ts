/**
 * Dataset files on disk: reading (with a one-line error naming the file) and atomic writing.
 * The format itself (arrays, meta.json, validation) is src/data/dataset-bytes.ts, re-exported here.
 */
import { readFileSync, statSync } from 'node:fs';
import { fileError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { parseDataset, serializeDataset, type Dataset, type WriteOptions } from './dataset-bytes.js';

export * from './dataset-bytes.js';

/**
 * Read a dataset: occmap `.npz`, a plain `.npz`/`.npy` from another tool, or the seed's
 * HiTS 2013 pickle (`.pkl`/`.pickle`). Every problem is a one-line error naming the file.
 */
export async function readDataset(file: string): Promise<Dataset> {
  let bytes: Uint8Array;
  try {
    if (statSync(file).isDirectory()) throw fileError(file, 'is a directory, expected a dataset file');
    bytes = readFileSync(file);
  } catch (err) {
    if ((err as Error).name === 'UserError') throw err;
    throw fileError(file, `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseDataset(file, bytes);
}

/** Write a dataset atomically (temp file + rename): a crash never leaves a partial file. */
export async function writeDataset(file: string, d: Dataset, opts: WriteOptions = {}): Promise<void> {
  await writeFileAtomic(file, serializeDataset(d, opts));
}
