/**
 * Output = input is refused by every command that writes (issue 11 item 3), an output under
 * /proc fails at once (item 6), and killed runs' staging directories are cleaned up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { refuseOutputOverInput, resolveReal } from '../src/util/paths.js';
import { assertWritable, ensureDir, removeStaleTemps } from '../src/util/atomic.js';
import { assertModelDirWritable } from '../src/models/model-dir.js';
import { writeDataset } from '../src/data/dataset.js';
import { UserError } from '../src/util/errors.js';
import { runOccmap } from './cli-run.js';

const bin = fileURLToPath(new URL('../../bin/occmap.js', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'occ-guard-'));

const run = (args: string[], killWhen?: () => boolean) => runOccmap(args, killWhen, 2);

/** A pid that no process has any more (a child that has exited). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

test('refuseOutputOverInput: same file, symlinks (also to a path not yet there), hard links, directories', () => {
  const d = path.join(tmp, 'unit');
  mkdirSync(path.join(d, 'real'), { recursive: true });
  const f = path.join(d, 'real', 'data.npz');
  writeFileSync(f, 'x');
  symlinkSync(path.join(d, 'real'), path.join(d, 'link'));
  linkSync(f, path.join(d, 'hard.npz'));
  const refuses = (inp: string, out: string, kind?: 'file' | 'dir' | 'tree', owns?: string[]) =>
    assert.throws(() => refuseOutputOverInput([{ flag: '--data', path: inp }], [{ flag: '--out', path: out, kind, owns }]), UserError);
  const allows = (inp: string, out: string, kind?: 'file' | 'dir' | 'tree', owns?: string[]) =>
    refuseOutputOverInput([{ flag: '--data', path: inp }], [{ flag: '--out', path: out, kind, owns }]);
  refuses(f, f);
  refuses(f, path.join(d, 'real', '.', '..', 'real', 'data.npz'));
  refuses(f, path.join(d, 'link', 'data.npz'));
  refuses(f, path.join(d, 'hard.npz'));
  refuses(path.join(d, 'real'), path.join(d, 'link'), 'dir');
  refuses(f, path.join(d, 'link'), 'dir'); // replacing the directory would delete the input
  refuses(f, path.join(d, 'link'), 'tree', ['data.npz']);
  allows(f, path.join(d, 'link'), 'tree', ['runs']);
  allows(f, path.join(d, 'link', 'other.npz'));
  allows(f, path.join(d, 'real', 'sub', 'new.npz'));
  // The output does not exist yet, but its parent is a symlink into the input's directory.
  writeFileSync(path.join(d, 'real', 'later.npz'), 'y');
  assert.equal(resolveReal(path.join(d, 'link', 'nope', 'x.npz')), path.join(resolveReal(path.join(d, 'real')), 'nope', 'x.npz'));
  refuses(path.join(d, 'real', 'later.npz'), path.join(d, 'link', 'later.npz'));
  // Undefined paths are skipped; two outputs on one path are refused.
  refuseOutputOverInput([{ flag: '--model', path: undefined }], [{ flag: '--out', path: f + '.out' }]);
  assert.throws(() => refuseOutputOverInput([], [{ flag: '--out', path: f + '.o' }, { flag: '--png', path: path.join(d, 'link', 'data.npz.o') }]), /same path/);
  // One line, naming both paths and the fix.
  assert.throws(() => refuseOutputOverInput([{ flag: '--data', path: f }], [{ flag: '--out', path: f }]), (e: Error) => !e.message.includes('\n') && e.message.includes(f) && /choose another --out/.test(e.message));
});

test('every command that writes refuses an output that is one of its inputs, and leaves the input as it was', async () => {
  const d = path.join(tmp, 'cmds');
  mkdirSync(d);
  // The refusal comes before anything is read: the inputs need not even be valid.
  const data = path.join(d, 'd.npz');
  writeFileSync(data, 'the input dataset');
  const clf = path.join(d, 'clf');
  mkdirSync(clf);
  writeFileSync(path.join(clf, 'card.json'), '{"kind":"classifier"}');
  const expl = path.join(d, 'expl');
  mkdirSync(expl);
  writeFileSync(path.join(expl, 'card.json'), '{"kind":"explainer"}');
  const study = path.join(d, 'study');
  mkdirSync(path.join(study, 'data'), { recursive: true });
  const inStudy = path.join(study, 'data', 'maps-mixed.npz');
  writeFileSync(inStudy, 'maps');
  const cases: [string, string[]][] = [
    ['occlude', ['occlude', '--model', clf, '--data', data, '--out', data, '--limit', '2']],
    ['occlude (model)', ['occlude', '--model', clf, '--data', data, '--out', clf]],
    ['explain', ['explain', '--explainer', expl, '--input', data, '--out', data]],
    ['explain --png', ['explain', '--explainer', expl, '--input', data, '--out', path.join(d, 'o.npz'), '--png', data]],
    ['evaluate', ['evaluate', '--explainer', expl, '--data', data, '--out', data]],
    ['train-classifier', ['train-classifier', '--data', data, '--out', data, '--force']],
    ['train-explainer', ['train-explainer', '--data', data, '--classifier', clf, '--out', clf, '--force']],
    ['train-explainer (data inside out)', ['train-explainer', '--data', path.join(clf, 'card.json'), '--out', clf, '--force']],
    ['dataset import', ['dataset', 'import', data, '--out', data]],
    ['dataset hits2015', ['dataset', 'hits2015', '--source', data, '--out', data]],
    ['experiments', ['experiments', '--data', inStudy, '--out', study]],
  ];
  const results = await Promise.all(cases.map(([, args]) => run(args)));
  results.forEach((r, k) => {
    const [name] = cases[k];
    assert.equal(r.code, 2, `${name}: ${r.err}`);
    const lines = r.err.trim().split('\n');
    assert.equal(lines.length, 1, `${name}: one line, got ${r.err}`);
    assert.match(r.err, /destroy the input|lies inside/, name);
  });
  assert.equal(readFileSync(data, 'utf8'), 'the input dataset');
  assert.equal(readFileSync(path.join(clf, 'card.json'), 'utf8'), '{"kind":"classifier"}');
  assert.equal(readFileSync(inStudy, 'utf8'), 'maps');
  assert.deepEqual(readdirSync(d).sort(), ['clf', 'd.npz', 'expl', 'study']);
});

test('an output under /proc fails at once (no recursive-mkdir spin), with a one-line error', async () => {
  const t0 = performance.now();
  assert.throws(() => ensureDir('/proc/occmap-x.npz.shards'), /cannot create directory/);
  assert.throws(() => ensureDir('/proc/occmap-a/b/c'), /cannot create directory/);
  await assert.rejects(assertWritable('/proc/occmap-x.npz'), /occmap-x\.npz: directory \/proc/);
  assert.ok(performance.now() - t0 < 1000, `took ${performance.now() - t0} ms`);
  // The command too (process start-up included, well under the old >10 min spin).
  const data = path.join(tmp, 'p.npz');
  await writeDataset(data, { images: new Float32Array(2 * 9 * 9), shape: [2, 9, 9, 1], meta: {} });
  const r = await run(['occlude', '--model', path.join(tmp, 'none'), '--data', data, '--out', '/proc/occmap-x.npz']);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err.trim(), /^occmap: \/proc\/occmap-x\.npz: directory \/proc (does not exist|is not writable)/m);
  ensureDir(path.join(tmp, 'made', 'a', 'b'));
  assert.ok(existsSync(path.join(tmp, 'made', 'a', 'b')));
});

test("staging directories and temp files of dead runs are removed at the next run, a live run's are kept", async () => {
  const d = path.join(tmp, 'stale');
  mkdirSync(d);
  const dead = deadPid();
  const names = [
    `.expl.new.${dead}.1700000000000.tmp`, // train-explainer / saveModelDir staging
    `..expl.new.${dead}.1700000000000.tmp.new.${dead}.1700000000001.tmp`, // nested save of a staged member
    `.expl.old.${dead}.1700000000002.tmp`,
    `.expl.new.${process.pid}.1700000000003.tmp`, // ours: alive
    `.explX.new.${dead}.1700000000004.tmp`, // another output's
  ];
  for (const n of names) mkdirSync(path.join(d, n));
  writeFileSync(path.join(d, `.maps.npz.${dead}.1700000000005.tmp`), 'partial');
  assertModelDirWritable(path.join(d, 'expl'));
  assert.deepEqual(readdirSync(d).sort(), [`.expl.new.${process.pid}.1700000000003.tmp`, `.explX.new.${dead}.1700000000004.tmp`, `.maps.npz.${dead}.1700000000005.tmp`].sort());
  await assertWritable(path.join(d, 'maps.npz'));
  assert.ok(!existsSync(path.join(d, `.maps.npz.${dead}.1700000000005.tmp`)));
  assert.deepEqual(removeStaleTemps(path.join(d, 'explX')), [`.explX.new.${dead}.1700000000004.tmp`]);
});

test('train-classifier killed before its directory is installed leaves no model directory; the rerun cleans up', async () => {
  const d = path.join(tmp, 'tc');
  mkdirSync(d);
  const data = path.join(d, 'data.npz');
  const n = 16;
  const images = Float32Array.from({ length: n * 9 * 9 }, (_, i) => ((i * 7919) % 101) / 101);
  await writeDataset(data, { images, shape: [n, 9, 9, 1], labels: Int32Array.from({ length: n }, (_, i) => i % 2), meta: {} });
  const out = path.join(d, 'clf');
  const args = ['train-classifier', '--data', data, '--out', out, '--epochs', '1', '--pad', '0', '--backend', 'cpu', '--quiet'];
  const staged = () => readdirSync(d).some((f) => f.startsWith('.clf.new.'));
  let sawInstalledWithoutOnnx = false;
  const k = await run(args, () => {
    if (existsSync(out) && !existsSync(path.join(out, 'model.onnx'))) sawInstalledWithoutOnnx = true;
    return staged();
  });
  assert.ok(!sawInstalledWithoutOnnx);
  // The staging directory lives for tens of ms (model, hash, ONNX export): a 2 ms poll sees it.
  assert.equal(k.signal, 'SIGKILL', k.err);
  assert.ok(!existsSync(out), 'no half-installed directory');
  assert.ok(staged(), 'the staging directory of the killed run is still there');
  const r = await run(args);
  assert.equal(r.code, 0, r.err);
  assert.ok(existsSync(path.join(out, 'model.onnx')) && existsSync(path.join(out, 'card.json')));
  assert.deepEqual(readdirSync(d).sort(), ['clf', 'data.npz'], 'the dead run\'s staging directory was removed');
});
