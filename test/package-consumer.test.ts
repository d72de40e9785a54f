/**
 * occmap as a dependency, tried as a new user would: `npm pack`, then `npm install` of the
 * tarball into a fresh project with nothing set (no .npmrc, no ONNXRUNTIME_NODE_INSTALL: on a
 * registry-only machine onnxruntime-node's postinstall cannot download its CUDA files), then
 * every example of docs/api.md (examples/*.ts compiled by a strict TypeScript against the
 * shipped declarations, examples/*.mjs as plain ESM) run through `import ... from 'occmap'`.
 * Then the README's line for the native runtime, and the ONNX example again on it.
 *
 * Packages come from the npm registry through the local cache (--prefer-offline); the test
 * asserts nothing about timing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtempSync } from 'node:fs';
import { exportModelToOnnx } from '../src/models/to-onnx.js';
import { loadModelDir } from '../src/models/model-dir.js';
import { readDataset, writeDataset } from '../src/data/dataset.js';
import { selectChannels } from '../src/models/predictor.js';
import { makeServeFixtures, type ServeFixtures } from './serve-fixtures.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8'));
const installed = (name: string): string => lock.packages[`node_modules/${name}`].version;

let fx: ServeFixtures;
let work: string;
let app: string;
let onnxFile: string;
/** The stamps with only the channel the classifier reads: a bare .onnx file does not say which. */
let oneChannel: string;
/** What `npm install <tarball>` printed on stderr (warnings at --loglevel=warn). */
let installErr = '';

/** The environment of a user's shell: none of the npm_* variables `npm test` passes down. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && k !== 'ONNXRUNTIME_NODE_INSTALL' && k !== 'INIT_CWD') env[k] = v;
  return { ...env, ...extra };
}

function run(cmd: string, args: string[], cwd: string, env = userEnv()): Promise<{ out: string; err: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, env, maxBuffer: 64 << 20 }, (error, out, err) => {
      if (error) reject(new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${error.message}\n${err.slice(-3000)}\n${out.slice(-2000)}`));
      else resolve({ out, err });
    });
  });
}

const npm = (args: string[], cwd: string, env?: NodeJS.ProcessEnv) => run('npm', [...args, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=warn'], cwd, env);

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'occmap-consumer-'));
  fx = await makeServeFixtures();
  // A classifier as a bare .onnx file, as users bring them.
  onnxFile = path.join(work, 'classifier.onnx');
  const m = await loadModelDir(fx.classifier);
  await exportModelToOnnx(m, onnxFile);
  m.dispose();
  const ds = await readDataset(fx.data);
  oneChannel = path.join(work, 'stamps-1ch.npz');
  const [n, h, w, c] = ds.shape;
  await writeDataset(oneChannel, { ...ds, images: selectChannels(ds.images, n, h, w, c, [1]), shape: [n, h, w, 1] });

  // --ignore-scripts: pack the dist/ that `npm test` just built; rebuilding here would rewrite
  // files other test files are reading.
  const { out } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], root, userEnv());
  const tarball = path.join(work, JSON.parse(out)[0].filename);
  app = path.join(work, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }, null, 2));
  installErr = (await npm(['install', tarball, `typescript@${installed('typescript')}`, `@types/node@${installed('@types/node')}`], app)).err;
});

test('installing the tarball on Node 20 prints no engine or config warnings', () => {
  assert.doesNotMatch(installErr, /EBADENGINE|Unknown (project|env|user|builtin) config/, installErr);
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
  if (fx) rmSync(fx.dir, { recursive: true, force: true });
});

test('the tarball ships the library, its declarations, the CLI and the data, and no tests', async () => {
  const dir = path.join(app, 'node_modules', 'occmap');
  for (const f of ['dist/src/index.js', 'dist/src/index.d.ts', 'bin/occmap.js', 'data/hits2015/stamps.npz', 'dist/web/index.html', 'dist/web/app.js', 'dist/web/exact-worker.js', 'README.md']) {
    assert.ok(existsSync(path.join(dir, f)), `${f} shipped`);
  }
  assert.ok(!existsSync(path.join(dir, 'dist/test')), 'no compiled tests');
  assert.ok(!existsSync(path.join(dir, 'test')), 'no test sources');
  const { out } = await run(process.execPath, [path.join(app, 'node_modules', '.bin', 'occmap'), '--version'], app);
  assert.equal(out.trim(), pkg.version);
});

test('every example compiles under strict TypeScript against the shipped types and runs', async () => {
  const examples = path.join(root, 'examples');
  for (const f of readdirSync(examples)) copyFileSync(path.join(examples, f), path.join(app, f));
  const tsconfig = {
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmitOnError: true, outDir: 'out', types: ['node'], skipLibCheck: true },
    include: ['*.ts'],
  };
  writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
  await run(process.execPath, [path.join(app, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], app);
  const js = (name: string) => path.join(app, 'out', name);

  const fn = await run(process.execPath, [js('exact-function.js')], app);
  assert.match(fn.out, /maps 1x9x9, class 1, p = 0\.9\d\d/);
  assert.match(fn.out, /most important pixel: \(4, 4\), value 0\.\d+ \(score drop: positive = important\)/);

  const lm = await run(process.execPath, [js('exact-layers-model.js')], app);
  assert.match(lm.out, /^engine: onnxruntime.*; maps 1x9x9, class 1, p = 0\.953$/m);
  assert.match(lm.out, /^most important pixel: \(4, 4\), value 0\.\d+$/m);
  const same = /^tfjs-\w+ gives the same maps: max \|difference\| (\S+)$/m.exec(lm.out);
  assert.ok(same && Number(same[1]) < 1e-5, lm.out);

  const onnx = await run(process.execPath, [js('exact-onnx.js'), onnxFile, oneChannel], app);
  assert.match(onnx.out, /6 maps of 9x9, 170 inferences each/);
  const native = existsSync(path.join(app, 'node_modules', 'onnxruntime-node'));
  assert.match(onnx.out, native ? /engine: onnxruntime \(/ : /engine: onnxruntime-web \(wasm\)/);
  if (!native) assert.match(onnx.err, /onnxruntime-node is not installed.*ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node/);

  const ex = await run(process.execPath, [js('explainer.js'), fx.classifier, fx.explainer, fx.data], app);
  assert.match(ex.out, /6 maps, estimate [\d.]+ ms\/map on /);
  for (const m of ['mse', 'mae', 'ssim', 'pearson', 'spearman', 'iou']) assert.match(ex.out, new RegExp(`^${m} +-?\\d\\.\\d{4}`, 'm'));

  const esm = await run(process.execPath, [path.join(app, 'plain-esm.mjs'), fx.data, '1'], app);
  assert.match(esm.out, /^mean map +\{"mse":[\d.e-]+,"mae"/m);
  assert.match(esm.out, /^\|SNR\| +\{"mse":/m);
});

test("the README's line for the native runtime installs onnxruntime-node without its download", async () => {
  await npm(['install', `onnxruntime-node@${installed('onnxruntime-node')}`], app, userEnv({ ONNXRUNTIME_NODE_INSTALL: 'skip' }));
  const onnx = await run(process.execPath, [path.join(app, 'out', 'exact-onnx.js'), onnxFile, oneChannel], app);
  assert.match(onnx.out, /engine: onnxruntime \(\d+ threads?\)/);
  assert.doesNotMatch(onnx.err, /not installed/);
});
