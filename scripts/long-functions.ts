/**
 * List the functions in src/ longer than a limit (default 120 lines): the project's rule is
 * "functions that fit one screen". Functions, methods, constructors, accessors and function
 * expressions / arrow functions are measured from their first to their last line, so a
 * function's nested helpers count towards it (and are also listed on their own when long).
 *
 *   node dist/scripts/long-functions.js [--max 120] [--json] [dir ...]
 *
 * Exit status 1 when any function is over the limit (0 with --report, which only prints).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

export interface LongFunction {
  file: string;
  name: string;
  line: number;
  lines: number;
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir).sort()) {
    const p = path.join(dir, e);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function nameOf(node: ts.Node, sf: ts.SourceFile): string {
  const named = node as ts.Node & { name?: ts.Node };
  if (named.name) return named.name.getText(sf);
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  // `const f = () => ...` / `x: function () {}`: the variable or property it is assigned to
  const parent = node.parent;
  if (parent && (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent))) return parent.name.getText(sf);
  return '(anonymous)';
}

function isFunctionLike(node: ts.Node): node is ts.FunctionLikeDeclaration {
  return (
    ts.isFunctionDeclaration(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isConstructorDeclaration(node) ||
    ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node) ||
    ts.isFunctionExpression(node) ||
    ts.isArrowFunction(node)
  );
}

/** Every function in `text` with a body of more than `max` lines. */
export function longFunctions(file: string, text: string, max: number): LongFunction[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const out: LongFunction[] = [];
  const visit = (node: ts.Node): void => {
    if (isFunctionLike(node) && node.body) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
      const lines = end - start + 1;
      if (lines > max) out.push({ file, name: nameOf(node, sf), line: start + 1, lines });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

function main(argv: string[]): number {
  let max = 120;
  let json = false;
  let report = false;
  const dirs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--max') max = Number(argv[++i]);
    else if (argv[i] === '--json') json = true;
    else if (argv[i] === '--report') report = true;
    else dirs.push(argv[i]);
  }
  if (!(Number.isInteger(max) && max > 0)) {
    process.stderr.write('long-functions: --max must be a positive integer\n');
    return 2;
  }
  const found = (dirs.length ? dirs : ['src']).flatMap((d) => tsFiles(d)).flatMap((f) => longFunctions(f, readFileSync(f, 'utf8'), max));
  found.sort((a, b) => b.lines - a.lines);
  if (json) process.stdout.write(JSON.stringify(found, null, 1) + '\n');
  else for (const f of found) process.stdout.write(`${String(f.lines).padStart(4)}  ${f.file}:${f.line}  ${f.name}\n`);
  if (!json) process.stdout.write(`${found.length} function(s) over ${max} lines\n`);
  return found.length > 0 && !report ? 1 : 0;
}

if (process.argv[1] && path.resolve(process.argv[1]).endsWith(path.join('scripts', 'long-functions.js'))) {
  process.exitCode = main(process.argv.slice(2));
}
