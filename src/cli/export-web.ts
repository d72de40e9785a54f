/**
 * `occmap export-web`: the browser viewer as a static folder. A thin shell over exportWeb in
 * src/serve/export-web.ts.
 */
import type { Command } from 'commander';
import { exportWeb } from '../serve/export-web.js';

const EXAMPLES = `
Examples:
  $ occmap export-web --classifier clf --explainer expl --data maps.npz --out site/
  $ python3 -m http.server -d site 8000      # or any static file server; open http://localhost:8000/
The page runs both models in the browser (onnxruntime-web, WebAssembly): probabilities and the
estimated map at once, the exact map in a Web Worker with progress. Stamps can be dropped on it
as .npy or greyscale PNG. Nothing is fetched from elsewhere. Multi-threaded when the page is
cross-origin isolated: a server sending COOP/COEP headers, or (on any server, over http://localhost
or https) the service worker the page installs to add them; otherwise one thread.`;

export function registerExportWeb(program: Command): void {
  program
    .command('export-web')
    .description('write the viewer (page, models, data, wasm) as a self-contained static folder that computes maps in the browser')
    .requiredOption('--classifier <path>', 'classifier: a model directory with a current model.onnx, or an .onnx file')
    .requiredOption('--explainer <dir>', "explainer directory from 'occmap train-explainer' (with its model.onnx)")
    .option('--data <file>', 'a dataset .npz whose stamps the page lists (and their stored maps, if any)')
    .requiredOption('--out <dir>', 'output folder (created; must be empty unless --force)')
    .option('--force', 'replace a non-empty output folder', false)
    .addHelpText('after', EXAMPLES)
    .action(async (o: { classifier: string; explainer: string; data?: string; out: string; force: boolean }) => {
      const r = await exportWeb(o);
      const mb = (b: number): string => `${(b / 1e6).toFixed(1)} MB`;
      process.stdout.write(
        `export-web: ${r.out}: ${r.files} files, ${mb(r.bytes)} (page ${mb(r.parts.page)}, onnxruntime-web ${mb(r.parts.ort)}, models ${mb(r.parts.models)}, data ${mb(r.parts.data)})\n` +
          `  serve it with any static file server, e.g. python3 -m http.server -d ${r.out} 8000\n`,
      );
    });
}
