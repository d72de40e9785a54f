/** occmap's own version (package.json), recorded in model cards and study results. */
import { readFileSync } from 'node:fs';

export function occmapVersion(): string {
  try {
    // this file is dist/src/util/version.js in the package
    return JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
