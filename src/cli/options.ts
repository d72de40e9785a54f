/**
 * Parsing of numeric and choice options, shared by every command so that a bad value gets the
 * same one-line message everywhere: `--name must be ..., got 'value'`.
 */
import { UserError } from '../util/errors.js';

function flag(name: string): string {
  return name.startsWith('--') ? name : `--${name}`;
}

/** An integer in [min, max]. */
export function int(name: string, v: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v);
  if (!/^\s*-?\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new UserError(`${flag(name)} must be an integer ${range}, got '${v}'`);
  }
  return n;
}

/** A finite number accepted by `ok`; `what` says what is expected ("a number in (0,1)"). */
export function num(name: string, v: string, ok: (x: number) => boolean, what: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || !ok(n)) throw new UserError(`${flag(name)} must be ${what}, got '${v}'`);
  return n;
}

export function choice<T extends string>(name: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v)) throw new UserError(`${flag(name)} must be one of ${allowed.join(', ')}, got '${v}'`);
  return v as T;
}

/** --limit means "the first N" (occlude, evaluate); the training commands' random subset is --subset. */
export const RENAMED_LIMIT = '--limit means the first N items (occlude, evaluate); for a seeded random subset of the training data use --subset N';
