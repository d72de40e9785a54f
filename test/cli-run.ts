/** Run the occmap CLI in a child process, optionally SIGKILLed when `killWhen` says so (crash tests). */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const OCCMAP_BIN = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));

export function runOccmap(
  args: string[],
  killWhen?: () => boolean,
  pollMs = 5,
): Promise<{ code: number | null; signal: string | null; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [OCCMAP_BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    let timer: NodeJS.Timeout | undefined;
    if (killWhen) {
      timer = setInterval(() => {
        if (killWhen()) {
          clearInterval(timer);
          child.kill('SIGKILL');
        }
      }, pollMs);
    }
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearInterval(timer);
      resolve({ code, signal, err });
    });
  });
}
