/**
 * `occmap <cmd> --help | head` must end quietly: a reader that closes the pipe early is not an
 * error (no EPIPE stack trace, exit status 0).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));

for (const args of [['--help'], ['occlude', '--help'], ['dataset', 'simulate', '--help']]) {
  test(`occmap ${args.join(' ')} into a closed pipe exits quietly`, () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'occ-pipe-'));
    const err = path.join(dir, 'err');
    const rc = path.join(dir, 'rc');
    // `true` exits at once, so the pipe has no reader by the time occmap writes its help:
    // every write fails with EPIPE, deterministically (no race with a reader).
    const script = `{ sleep 0.2; "${process.execPath}" "${bin}" ${args.join(' ')} 2>"${err}"; echo $? >"${rc}"; } | true`;
    const r = spawnSync('sh', ['-c', script], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    assert.equal(readFileSync(err, 'utf8'), '');
    assert.equal(readFileSync(rc, 'utf8').trim(), '0');
  });
}
