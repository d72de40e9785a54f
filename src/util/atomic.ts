import { promises as fs, writeFileSync, renameSync, unlinkSync, mkdirSync, statSync, readdirSync, rmSync } from 'node:fs';
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

/**
 * Fail early, before hours of work, when an output file could not be written. The directory
 * is probed by creating (and removing) a file in it: an access(W_OK) check passes for root on
 * read-only or pseudo filesystems such as /proc, where the real write fails much later.
 */
export async function assertWritable(target: string): Promise<void> {
  const dir = path.dirname(path.resolve(target));
  removeStaleTemps(target);
  try {
    const st = await fs.stat(target);
    if (st.isDirectory()) throw fileError(target, 'is a directory, expected a file path');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ENOTDIR') throw err;
  }
  const probe = path.join(dir, `.${path.basename(target)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.probe.tmp`);
  try {
    const h = await fs.open(probe, 'wx');
    await h.close();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' || code === 'ENOTDIR' ? 'does not exist' : `is not writable (${code ?? (err as Error).message})`;
    throw fileError(target, `directory ${dir} ${why}`);
  }
  await fs.rm(probe, { force: true });
}

/**
 * Create an output directory (and parents), with a clear error when that is impossible.
 * Parents are made one by one rather than with mkdir's `recursive`: Node's recursive mkdir
 * loops forever on paths such as /proc/x (mkdir answers ENOENT for an existing parent there).
 */
export function ensureDir(dir: string): void {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  let cur = abs;
  for (;;) {
    let st;
    try {
      st = statSync(cur);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw fileError(dir, `cannot create directory (${code})`);
      const parent = path.dirname(cur);
      if (parent === cur) throw fileError(dir, 'cannot create directory (no existing parent)');
      missing.push(cur);
      cur = parent;
      continue;
    }
    if (!st.isDirectory()) throw fileError(dir, `cannot create directory (${cur} is not a directory)`);
    break;
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && statSync(d).isDirectory()) continue; // made meanwhile by another process
      throw fileError(dir, `cannot create directory (${code ?? (err as Error).message})`);
    }
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove the hidden temp files and staging directories a killed earlier run left beside
 * `target` (`.<name>.[tag.]<pid>.<stamp>.tmp`, written by writeFileAtomic, the model-directory
 * installer and train-explainer), when the process that made them is gone. Those of live
 * processes (a run going on in parallel) are left alone. Returns the names removed.
 */
export function removeStaleTemps(target: string): string[] {
  const abs = path.resolve(target);
  const dir = path.dirname(abs);
  const re = new RegExp(`^\\.{1,2}${escapeRe(path.basename(abs))}\\.(?:[a-z]+\\.)?(\\d+)\\.[0-9a-z]+\\.(?:probe\\.)?tmp(?:$|\\.)`);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = re.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    try {
      rmSync(path.join(dir, name), { recursive: true, force: true });
      removed.push(name);
    } catch {
      // not ours to remove (permissions): harmless, it only takes space
    }
  }
  return removed;
}
