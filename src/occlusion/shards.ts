/**
 * Resumable store for long occlusion jobs: `<out>.shards/` holds `job.json` (what the job
 * is: parameters, model hash, data hash) and one `.npz` per finished shard of consecutive
 * maps, each written atomically, so after a crash or `kill -9` every shard file present is
 * whole and `--resume` only computes the rest.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { parseNpz, serializeNpz } from '../data/npz.js';
import { ensureDir, writeFileAtomic } from '../util/atomic.js';
import { fileError } from '../util/errors.js';
import type { RawMaps } from './exact.js';

/** Everything that determines the maps. Two jobs with equal fingerprints make equal shards. */
export interface JobIdentity {
  params: Record<string, unknown>;
  modelHash: string;
  engine: string;
  dataHash: string;
  shardSize: number;
}

export interface JobFile extends JobIdentity {
  fingerprint: string;
  /** When the job first started: the output's createdAt, the same after a resume. */
  createdAt: string;
  command?: string;
}

export interface ShardData {
  maps: Float32Array;
  /** The maps before normalisation (float64; the same array as `maps` for normalize 'none'). */
  raw: RawMaps;
  targets: Int32Array;
  baseProbs: Float32Array;
}

export interface ShardHeader {
  fingerprint: string;
  index: number;
  start: number;
  count: number;
}

/** Canonical JSON (sorted keys) so the fingerprint does not depend on property order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export function fingerprint(id: JobIdentity): string {
  return createHash('sha256').update(canonical(id)).digest('hex');
}

/** sha256 of arrays' bytes, for the data part of a job's identity. */
export function hashArrays(...arrays: (ArrayBufferView | undefined)[]): string {
  const h = createHash('sha256');
  for (const a of arrays) {
    h.update(a ? 'present' : 'absent');
    if (a) h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  return h.digest('hex');
}

/** Names of the identity parts on which two jobs differ, for a useful refusal. */
function differences(a: JobIdentity, b: JobIdentity): string[] {
  const out: string[] = [];
  const keys = new Set([...Object.keys(a.params), ...Object.keys(b.params)]);
  for (const k of keys) if (canonical(a.params[k]) !== canonical(b.params[k])) out.push(`${k} ${canonical(a.params[k])} -> ${canonical(b.params[k])}`);
  if (a.modelHash !== b.modelHash) out.push('model (hash differs)');
  if (a.engine !== b.engine) out.push(`engine ${a.engine} -> ${b.engine}`);
  if (a.dataHash !== b.dataHash) out.push('data (hash differs)');
  if (a.shardSize !== b.shardSize) out.push(`shard size ${a.shardSize} -> ${b.shardSize}`);
  return out;
}

export function shardDirFor(outFile: string): string {
  return `${outFile}.shards`;
}

export class ShardStore {
  readonly fingerprint: string;
  private constructor(
    readonly dir: string,
    readonly job: JobFile,
  ) {
    this.fingerprint = job.fingerprint;
  }

  /**
   * Open the store for a job. A directory left by an earlier run is continued only with
   * `resume`, and only if it belongs to the same job; otherwise a clear refusal, never a
   * silent mix of two jobs' maps.
   */
  static async open(dir: string, id: JobIdentity, opts: { resume: boolean; command?: string }): Promise<ShardStore> {
    const fp = fingerprint(id);
    const jobPath = path.join(dir, 'job.json');
    if (existsSync(dir)) {
      if (!opts.resume) {
        throw fileError(dir, 'shards of an interrupted run exist; add --resume to finish that run, or delete the directory to start over');
      }
      if (existsSync(jobPath)) {
        let old: JobFile;
        try {
          old = JSON.parse(readFileSync(jobPath, 'utf8'));
        } catch {
          throw fileError(jobPath, 'is not valid JSON; delete the shard directory to start over');
        }
        if (old.fingerprint !== fp) {
          const diff = differences(old, id);
          throw fileError(dir, `shards belong to a different job (${diff.join('; ') || 'fingerprint differs'}); rerun with the original options or delete the directory`);
        }
        return new ShardStore(dir, old);
      }
      // A crash between mkdir and the job.json write leaves an empty directory: start it.
    }
    ensureDir(dir);
    const job: JobFile = { ...id, fingerprint: fp, createdAt: new Date().toISOString(), command: opts.command };
    await writeFileAtomic(jobPath, JSON.stringify(job, null, 2));
    return new ShardStore(dir, job);
  }

  /** The engine recorded by an earlier run's job.json in `dir`, if one is there and readable. */
  static recordedEngine(dir: string): string | undefined {
    try {
      const job = JSON.parse(readFileSync(path.join(dir, 'job.json'), 'utf8')) as Partial<JobFile>;
      return typeof job.engine === 'string' ? job.engine : undefined;
    } catch {
      return undefined;
    }
  }

  shardPath(index: number): string {
    return path.join(this.dir, `shard-${String(index).padStart(6, '0')}.npz`);
  }

  /** [start, count] of shard `index` in a job of `total` maps. */
  range(index: number, total: number): [number, number] {
    const start = index * this.job.shardSize;
    return [start, Math.max(0, Math.min(this.job.shardSize, total - start))];
  }

  count(total: number): number {
    return Math.ceil(total / this.job.shardSize);
  }

  /**
   * A finished shard for this job covering exactly [start, start+count), or null. A shard of
   * the same job with another count (an earlier run with a smaller --limit) is recomputed.
   */
  read(index: number, start: number, count: number, mapSize: number, numClasses: number): ShardData | null {
    const file = this.shardPath(index);
    if (!existsSync(file)) return null;
    let header: ShardHeader;
    let arrays;
    try {
      const npz = parseNpz(readFileSync(file));
      header = JSON.parse(new TextDecoder().decode(npz.files.get('header.json')));
      arrays = npz.arrays;
    } catch {
      return null; // cannot happen with atomic writes; recomputing is the safe answer anyway
    }
    if (header.fingerprint !== this.fingerprint) throw fileError(file, 'belongs to a different job than job.json; delete the shard directory');
    if (header.start !== start || header.count !== count) return null;
    const maps = arrays.get('maps')?.data;
    // Shards of a normalize 'none' job store the maps once.
    const raw = arrays.get('raw')?.data ?? maps;
    const targets = arrays.get('targets')?.data;
    const baseProbs = arrays.get('baseProbs')?.data;
    if (!(maps instanceof Float32Array) || maps.length !== count * mapSize) return null;
    // A shard from before raw maps were kept, or kept in float32 (before class-scores.ts):
    // recomputed, so every map of the output has both, all in one precision.
    if (!(raw === maps || raw instanceof Float64Array) || raw.length !== count * mapSize) return null;
    if (!(targets instanceof Int32Array) || targets.length !== count) return null;
    if (!(baseProbs instanceof Float32Array) || baseProbs.length !== count * numClasses) return null;
    return { maps, raw, targets, baseProbs };
  }

  async write(index: number, start: number, count: number, h: number, w: number, d: ShardData): Promise<void> {
    const header: ShardHeader = { fingerprint: this.fingerprint, index, start, count };
    const bytes = serializeNpz(
      {
        maps: { data: d.maps, shape: [count, h, w] },
        ...(d.raw !== d.maps ? { raw: { data: d.raw, shape: [count, h, w] } } : {}),
        targets: { data: d.targets, shape: [count] },
        baseProbs: { data: d.baseProbs, shape: [count, d.baseProbs.length / Math.max(1, count)] },
      },
      { 'header.json': JSON.stringify(header) },
    );
    await writeFileAtomic(this.shardPath(index), bytes);
  }

  /** Shard files present (finished), for reporting. */
  present(): number {
    return readdirSync(this.dir).filter((f) => /^shard-\d+\.npz$/.test(f)).length;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
