import { promises as fs, writeFileSync, renameSync, unlinkSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileError } from './errors.js';

function tempName(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${Date.now()}.tmp`);
}

/**
 * Write a whole file or nothing: the data goes to a temp file in the same directory, then a
 * rename (atomic on POSIX) puts it in place, so a crash never leaves a partial output.
 */
export async function writeFileAtomic(target: string, data: Uint8Array | string): Promise<void> {
  const tmp = tempName(target);
  try {
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw fileError(target, `cannot write (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

export function writeFileAtomicSync(target: string, data: Uint8Array | string): void {
  const tmp = tempName(target);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, target);
  } catch (err) {
    try { unlinkSync(tmp); } catch { /* nothing written */ }
    throw fileError(target, `cannot write (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** Fail early, before hours of work, when an output file could not be written. */
export async function assertWritable(target: string): Promise<void> {
  const dir = path.dirname(path.resolve(target));
  try {
    await fs.access(dir, fs.constants.W_OK);
  } catch {
    throw fileError(target, `directory ${dir} does not exist or is not writable`);
  }
  try {
    const st = await fs.stat(target);
    if (st.isDirectory()) throw fileError(target, 'is a directory, expected a file path');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Create an output directory (and parents), with a clear error when that is impossible. */
export function ensureDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw fileError(dir, `cannot create directory (${(err as NodeJS.ErrnoException).code})`);
  }
}
