/**
 * An error caused by the user's input (a file, an option). The CLI prints its message as one
 * line and exits non-zero; anything else is a bug and keeps its stack.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** `file: problem`, the shape every input error takes. */
export function fileError(file: string, problem: string): UserError {
  return new UserError(`${file}: ${problem}`);
}

/**
 * A bad value of a named option of a library call. The message names the option fields as the
 * library spells them (`templateEpochs must be an integer >= 2, got 1`); a client words them
 * its own way with `worded` (the CLI: `--template-epochs must be ...`). The problem text may
 * name other fields as `{field}` (`needs {classifier}`), worded the same way (util/paths.ts
 * words its `{field}` flags alike). A problem starting with ':' follows the name directly
 * (`--queue: expected redis://...`).
 */
export class OptionError extends UserError {
  constructor(
    readonly fields: readonly string[],
    readonly problem: string,
  ) {
    super(render(fields, problem, (f) => f));
    this.name = 'OptionError';
  }

  worded(name: (field: string) => string): string {
    return render(this.fields, this.problem, name);
  }
}

function render(fields: readonly string[], problem: string, name: (field: string) => string): string {
  return `${fields.map(name).join('/')}${problem.startsWith(':') ? '' : ' '}${problem.replace(/\{([A-Za-z]+)\}/g, (_, f: string) => name(f))}`;
}

/** `templateEpochs` -> `--template-epochs`: how commander names the option of a field. */
export function flagOf(field: string): string {
  return `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}
