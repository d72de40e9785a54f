import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { longFunctions } from '../scripts/long-functions.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('longFunctions: counts a function from its first to its last line, names declarations, methods and arrow functions', () => {
  const body = (n: number) => Array.from({ length: n }, (_, i) => `  x += ${i};`).join('\n');
  const src = [
    `function big() {\n  let x = 0;\n${body(10)}\n  return x;\n}`, // 14 lines
    `const arrow = () => {\n${body(3)}\n};`, // 5 lines
    `class K {\n  method() {\n${body(12)}\n  }\n}`, // method: 14 lines
  ].join('\n');
  const found = longFunctions('x.ts', src, 12);
  assert.deepEqual(found.map((f) => [f.name, f.lines, f.line]), [['big', 14, 1], ['method', 14, 21]]);
  assert.deepEqual(longFunctions('x.ts', src, 4).map((f) => f.name).sort(), ['arrow', 'big', 'method']);
});

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = path.join(dir, e);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('no function over 120 lines anywhere in src/', () => {
  for (const f of files(path.join(ROOT, 'src')).map((x) => path.relative(ROOT, x))) {
    const long = longFunctions(f, readFileSync(path.join(ROOT, f), 'utf8'), 120);
    assert.deepEqual(long, [], `${f}: ${long.map((l) => `${l.name} (${l.lines} lines)`).join(', ')}`);
  }
});
