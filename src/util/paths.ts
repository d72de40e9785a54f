/**
 * Output = input refusal, shared by every command and library entry point that writes files:
 * `occlude --data d.npz --out d.npz` or `train-explainer --classifier c --out c --force` would
 * otherwise replace the very input being read. Paths are compared after resolving symlinks
 * (realpath), also for outputs that do not exist yet (their nearest existing ancestor is
 * resolved), and by inode for hard links.
 */
import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { OptionError, UserError } from './errors.js';

export interface PathInput {
  /**
   * What names the path in the message: a CLI option or argument as the user typed it
   * ('--data', 'input'), or, from a library function, its option field in braces ('{data}',
   * '{out} (its shard directory)'), worded by each client as OptionError words fields
   * ('data' for a library caller, '--data' from the CLI).
   */
  flag: string;
  path: string | undefined;
}

export interface PathOutput extends PathInput {
  /**
   * - 'file' (default): a file written whole (temp + rename).
   * - 'dir': a directory installed whole, replacing what was there: no input may lie inside it.
   * - 'tree': a directory the command adds to (a study, a demo); only inputs inside the
   *   sub-paths it owns (`owns`, relative to it) would be overwritten.
   */
  kind?: 'file' | 'dir' | 'tree';
  owns?: string[];
}

/**
 * The absolute, symlink-free form of `p`, also when `p` (or some of its parents) does not
 * exist yet: the nearest existing ancestor is resolved and the rest appended.
 */
export function resolveReal(p: string): string {
  const abs = path.resolve(p);
  try {
    return realpathSync(abs);
  } catch {
    const parent = path.dirname(abs);
    if (parent === abs) return abs;
    return path.join(resolveReal(parent), path.basename(abs));
  }
}

function inode(p: string): string | undefined {
  try {
    const st = statSync(p);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** True when `inner` is `outer` or lies inside it (both already resolved). */
function within(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

type Name = (field: string) => string;

/** A flag with its `{field}` parts worded by `name` (the path itself is never rewritten). */
function named(flag: string, name: Name): string {
  return flag.replace(/\{([A-Za-z]+)\}/g, (_, f: string) => name(f));
}

/** Why writing `out` would destroy input `inp`, or null; the flags worded by `name`. */
function conflict(out: PathOutput & { path: string }, inp: PathInput & { path: string }, name: Name): string | null {
  const o = resolveReal(out.path);
  const i = resolveReal(inp.path);
  const same = o === i || (inode(o) !== undefined && inode(o) === inode(i));
  const shown = (x: PathInput & { path: string }) => `${named(x.flag, name)} ${x.path}`;
  const outFlag = named(out.flag, name);
  if (same) return `${shown(out)} is the same ${out.kind === 'file' || !out.kind ? 'file' : 'path'} as ${shown(inp)}: writing it would destroy the input; choose another ${outFlag}`;
  if (out.kind === 'dir' && within(i, o)) {
    return `${shown(out)} would be replaced, and ${shown(inp)} lies inside it: choose another ${outFlag}`;
  }
  if (out.kind === 'tree') {
    for (const sub of out.owns ?? []) {
      const owned = path.join(o, sub);
      if (within(i, owned)) return `${shown(inp)} lies inside ${path.join(out.path, sub)}, which ${outFlag} ${out.path} writes: move the input out of it or choose another ${outFlag}`;
    }
  }
  return null;
}

/**
 * Refuse (a one-line UserError naming both paths) any output that resolves to one of the
 * inputs, or would replace a directory holding one. Undefined paths are skipped, so callers
 * can pass optional options as they are. Two outputs resolving to each other are refused too.
 */
export function refuseOutputOverInput(inputs: PathInput[], outputs: PathOutput[]): void {
  const ins = inputs.filter((x): x is PathInput & { path: string } => typeof x.path === 'string' && x.path !== '');
  const outs = outputs.filter((x): x is PathOutput & { path: string } => typeof x.path === 'string' && x.path !== '');
  const refuse = (say: (name: Name) => string, fields: string[]): never => {
    throw fields.length > 0 ? new OutputOverInputError(fields, say) : new UserError(say((f) => f));
  };
  const fieldsOf = (...xs: PathInput[]) => xs.flatMap((x) => Array.from(x.flag.matchAll(/\{([A-Za-z]+)\}/g), (m) => m[1]));
  for (const out of outs) {
    for (const inp of ins) {
      if (conflict(out, inp, (f) => f)) refuse((name) => conflict(out, inp, name)!, fieldsOf(out, inp));
    }
  }
  for (let a = 0; a < outs.length; a++) {
    for (let b = a + 1; b < outs.length; b++) {
      if (resolveReal(outs[a].path) === resolveReal(outs[b].path)) {
        const [x, y] = [outs[a], outs[b]];
        refuse((name) => `${named(x.flag, name)} ${x.path} and ${named(y.flag, name)} ${y.path} are the same path: choose different outputs`, fieldsOf(x, y));
      }
    }
  }
}

/** The refusal from a library function: its option fields worded by the client (OptionError.worded). */
class OutputOverInputError extends OptionError {
  constructor(
    fields: string[],
    private readonly say: (name: Name) => string,
  ) {
    super(fields, '');
    this.message = say((f) => f);
  }

  override worded(name: Name): string {
    return this.say(name);
  }
}
