/**
 * Bundles the browser viewer (src/web/) with esbuild into dist/web/: app.js (the page) and
 * exact-worker.js (its exact-map Web Worker), each with the library modules it imports, plus
 * index.html and style.css. onnxruntime-web stays a separate file (ort/ort.wasm.min.mjs, served
 * from its package beside its .wasm) because its threads start workers from its own URL.
 * Run by `npm run build` after tsc: node dist/scripts/build-web.js
 */
import { build, type Plugin } from 'esbuild';
import { copyFileSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/scripts/build-web.js -> the repository root
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const src = path.join(root, 'src/web');
const out = path.join(root, 'dist/web');
const tmp = `${out}.tmp-${process.pid}`;

/** `import ... from 'onnxruntime-web/wasm'` -> the copy the page serves at ./ort/. */
const ortExternal: Plugin = {
  name: 'ort-external',
  setup(b) {
    b.onResolve({ filter: /^onnxruntime-web(\/wasm)?$/ }, () => ({ path: './ort/ort.wasm.min.mjs', external: true }));
  },
};

rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp, { recursive: true });
try {
  await build({
    entryPoints: { app: path.join(src, 'main.ts'), 'exact-worker': path.join(src, 'exact-worker.ts') },
    outdir: tmp,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: true,
    minify: false,
    legalComments: 'none',
    logLevel: 'warning',
    plugins: [ortExternal],
  });
  for (const f of ['index.html', 'style.css']) copyFileSync(path.join(src, f), path.join(tmp, f));
  rmSync(out, { recursive: true, force: true });
  renameSync(tmp, out);
} catch (err) {
  rmSync(tmp, { recursive: true, force: true });
  process.stderr.write(`build-web: ${(err as Error).message}\n`);
  process.exit(1);
}
