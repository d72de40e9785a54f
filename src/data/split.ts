/**
 * Train/validation splits. Stamps of one object (epochs of one star or supernova) are
 * near-duplicates, so when group ids are known every group lands wholly on one side;
 * otherwise held-out figures would measure memorisation, not generalisation.
 */
import { Rng } from '../util/rng.js';

export interface Split {
  train: number[];
  val: number[];
  /** 'group' when ids were used, 'item' otherwise. */
  by: 'group' | 'item';
}

export function splitIndices(n: number, valFraction: number, seed: number, ids?: readonly string[]): Split {
  if (!(valFraction > 0 && valFraction < 1)) throw new Error(`validation fraction must be in (0,1), got ${valFraction}`);
  const rng = new Rng(seed);
  const target = Math.round(n * valFraction);
  if (!ids) {
    const order = rng.shuffle(Array.from({ length: n }, (_, i) => i));
    return { val: order.slice(0, target).sort((a, b) => a - b), train: order.slice(target).sort((a, b) => a - b), by: 'item' };
  }
  const groups = new Map<string, number[]>();
  ids.forEach((g, i) => {
    const list = groups.get(g);
    if (list) list.push(i);
    else groups.set(g, [i]);
  });
  const names = rng.shuffle([...groups.keys()].sort());
  const valSet = new Set<string>();
  let count = 0;
  for (const g of names) {
    if (count >= target) break;
    // Keep at least one group for training.
    if (valSet.size === names.length - 1) break;
    valSet.add(g);
    count += groups.get(g)!.length;
  }
  const train: number[] = [];
  const val: number[] = [];
  for (let i = 0; i < n; i++) (valSet.has(ids[i]) ? val : train).push(i);
  return { train, val, by: 'group' };
}

/** The groups on both sides of a split (must be empty for a group split). */
export function leakedGroups(split: Split, ids: readonly string[]): string[] {
  const t = new Set(split.train.map((i) => ids[i]));
  return [...new Set(split.val.map((i) => ids[i]))].filter((g) => t.has(g));
}
