/**
 * The held-out set: one definition used by classifier and explainer training, evaluation, the
 * study and the server.
 *
 * A held-out set is a list of object ids when the data has ids (every stamp of a held-out
 * object is held out, in any file: epochs and augmented copies of one object are
 * near-duplicates), else a list of rows of one data file. It is derived from a seed (the
 * seeded group split of data/split.ts over the rows used), or taken from a trained model's
 * card: a classifier records its validation objects (training.split.valIds), an explainer its
 * held-out objects (split.valIds). Cards record the held-out set they used, so every later
 * step can ask "did this model see that object?".
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { readDataset } from './dataset.js';
import { splitIndices, type Split } from './split.js';
import { fileError, OptionError } from '../util/errors.js';
import { Rng } from '../util/rng.js';

export interface Holdout {
  /** 'group': `ids` are held out; 'item': `rows` of the data file `dataSha256` are. */
  by: 'group' | 'item';
  /** Held-out object ids, sorted (by group). */
  ids?: string[];
  /** Held-out rows (by item), ascending. */
  rows?: number[];
  /** The data file the rows index (by item), when known. */
  dataSha256?: string;
  /** Where the set came from, for cards and reports. */
  source: string;
}

/** Fewer held-out objects (or, without ids, maps) than this: figures on it are noise; warn. */
export const TINY_HOLDOUT = 10;

/**
 * Hold out `valFraction` of the objects of `rows` (all rows of `ids` when omitted), seeded; the
 * same split the training loop made before this module existed.
 */
export function deriveHoldout(o: { n: number; rows?: readonly number[]; ids?: readonly string[]; valFraction: number; seed: number; dataSha256?: string }): Holdout {
  if (!(o.valFraction > 0 && o.valFraction < 1)) throw new OptionError(['valFraction'], `must be between 0 and 1 (exclusive), got ${o.valFraction}`);
  const rows = o.rows ?? Array.from({ length: o.n }, (_, i) => i);
  const groups = o.ids ? rows.map((r) => o.ids![r]) : undefined;
  const split = splitIndices(rows.length, o.valFraction, o.seed, groups);
  const source = `seed ${o.seed}, ${o.valFraction} of the ${groups ? 'objects' : 'rows'}`;
  if (groups) return { by: 'group', ids: [...new Set(split.val.map((i) => groups[i]))].sort(), source };
  return { by: 'item', rows: split.val.map((i) => rows[i]), dataSha256: o.dataSha256, source };
}

/** Hold out exactly these object ids. */
export function holdoutOfIds(ids: readonly string[], source: string): Holdout {
  return { by: 'group', ids: [...new Set(ids)].sort(), source };
}

/**
 * The train / held-out split of `rows` (dataset rows, all when omitted) under `h`, as indices
 * into `rows`. `file` names the data in errors.
 */
export function applyHoldout(h: Holdout, o: { n: number; rows?: readonly number[]; ids?: readonly string[]; file: string; dataSha256?: string }): Split {
  const rows = o.rows ?? Array.from({ length: o.n }, (_, i) => i);
  const train: number[] = [];
  const val: number[] = [];
  if (h.by === 'group') {
    if (!o.ids) throw fileError(o.file, `has no ids: holding out objects (${h.source}) needs object ids`);
    const set = new Set(h.ids);
    rows.forEach((r, i) => (set.has(o.ids![r]) ? val : train).push(i));
    return { train, val, by: 'group' };
  }
  if (h.dataSha256 && o.dataSha256 && h.dataSha256 !== o.dataSha256) {
    throw fileError(o.file, `is not the file whose rows ${h.source} holds out (it had no ids, so its held-out set is rows of that file)`);
  }
  const set = new Set(h.rows);
  rows.forEach((r, i) => (set.has(r) ? val : train).push(i));
  return { train, val, by: 'item' };
}

/** One-line warnings about a split (tiny held-out set, nothing on a side). */
export function holdoutWarnings(split: Split, ids?: readonly string[], rows?: readonly number[]): string[] {
  const at = (i: number): number => (rows ? rows[i] : i);
  const objects = ids ? new Set(split.val.map((i) => ids[at(i)])).size : split.val.length;
  const what = ids ? 'objects' : 'maps';
  if (split.val.length > 0 && objects < TINY_HOLDOUT) {
    return [`only ${objects} held-out ${what} (${split.val.length} stamps): held-out figures will be noisy; use more data or a larger validation fraction`];
  }
  return [];
}

/** What a card records of its held-out set (classifier: training.split; explainer: split). */
export function holdoutRecord(h: Holdout): { by: 'group' | 'item'; valIds?: string[]; valRows?: number[]; holdoutSource: string } {
  return { by: h.by, ...(h.ids ? { valIds: h.ids } : {}), ...(h.rows ? { valRows: h.rows } : {}), holdoutSource: h.source };
}

export interface CardLike {
  kind?: string;
  split?: { by?: string; valIds?: unknown; valIndices?: unknown; valRows?: unknown };
  training?: { split?: { by?: string; valIds?: unknown; valRows?: unknown } };
  data?: unknown;
  dataInfo?: { sha256?: string };
}

/**
 * The held-out set a model's card records: a classifier's validation objects or an explainer's
 * held-out objects (rows of its data file when that had no ids); undefined when it lists none.
 */
export function holdoutOfCard(card: CardLike, source: string): Holdout | undefined {
  const isClassifier = card.kind === 'classifier';
  const split = isClassifier ? card.training?.split : card.split;
  const ids = split?.valIds;
  if (Array.isArray(ids) && ids.length > 0 && ids.every((x) => typeof x === 'string')) return holdoutOfIds(ids as string[], source);
  const rows = isClassifier ? split?.valRows : ((card.split?.valRows ?? card.split?.valIndices) as unknown);
  const sha = isClassifier ? (card.data as { sha256?: string } | undefined)?.sha256 : card.dataInfo?.sha256;
  if (split?.by === 'item' && Array.isArray(rows) && rows.every((x) => Number.isInteger(x))) {
    return { by: 'item', rows: (rows as number[]).slice().sort((a, b) => a - b), dataSha256: sha, source };
  }
  return undefined;
}

/**
 * Per stamp of a dataset: is it held out by `h` (true / false), or unknown (null: rows of
 * another file, or no ids to match objects by)?
 */
export function heldOutLookup(h: Holdout | undefined, ids: readonly string[] | undefined, dataSha256?: string): (i: number) => boolean | null {
  if (!h) return () => null;
  if (h.by === 'group') {
    if (!ids) return () => null;
    const set = new Set(h.ids);
    return (i) => set.has(ids[i]);
  }
  if (!h.dataSha256 || h.dataSha256 !== dataSha256) return () => null;
  const set = new Set(h.rows);
  return (i) => set.has(i);
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * A classifier card from before cards listed their validation objects: the split is derived
 * again exactly as training made it (the seeded split of data/split.ts over the rows used, the
 * seeded subset first), from the data file the card names, checked by its sha256.
 */
async function rederivedClassifierHoldout(card: CardLike, file: string, source: string): Promise<Holdout | undefined> {
  const data = card.data as { file?: string; sha256?: string } | undefined;
  const opts = (card as { options?: { seed?: number; valFraction?: number; limit?: number | null; subset?: number | null } }).options;
  if (!data?.file || !data.sha256 || !opts || !existsSync(data.file)) return undefined;
  if ((await sha256File(data.file)) !== data.sha256) throw fileError(file, `lists no validation objects, and ${data.file} (its training data) has changed since: retrain the classifier`);
  const ds = await readDataset(data.file);
  const n = ds.shape[0];
  const seed = opts.seed ?? 0;
  const subset = opts.subset ?? opts.limit ?? undefined;
  let rows = Array.from({ length: n }, (_, i) => i);
  if (subset !== undefined && subset !== null && subset < n) rows = new Rng(seed ^ 0x11a1).shuffle(rows).slice(0, subset).sort((a, b) => a - b);
  return deriveHoldout({ n, rows, ids: ds.ids, valFraction: opts.valFraction ?? 0.25, seed, dataSha256: data.sha256 });
}

/**
 * The held-out set of a trained model directory: a classifier's validation objects or an
 * explainer's held-out objects (rows of its data file when that had no ids).
 */
export async function holdoutOfModelDir(dir: string): Promise<Holdout> {
  const file = path.join(dir, 'card.json');
  if (!existsSync(file)) throw fileError(dir, 'is not a model directory from occmap (no card.json)');
  let card: CardLike;
  try {
    card = JSON.parse(readFileSync(file, 'utf8')) as CardLike;
  } catch {
    throw fileError(file, 'is not valid JSON');
  }
  const isClassifier = card.kind === 'classifier';
  const source = `the ${isClassifier ? "classifier's validation" : "explainer's held-out"} set of ${path.resolve(dir)}`;
  const h = holdoutOfCard(card, source) ?? (isClassifier ? await rederivedClassifierHoldout(card, file, `${source} (derived again from its card)`) : undefined);
  if (h) return h;
  throw fileError(file, `lists no held-out objects (${isClassifier ? 'training.split.valIds, and its training data is gone' : 'split.valIds'}): ${isClassifier ? 'retrain the classifier' : 'its data had no ids'}`);
}
