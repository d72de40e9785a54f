/**
 * `occmap serve`: the HTTP API and the viewer page over one classifier and one explainer
 * (and optionally a dataset to browse). A thin shell over startServer in src/serve/app.ts.
 */
import { pretrained } from '../models/pretrained.js';
import type { Command } from 'commander';
import { isLoopback, startServer, DEFAULT_BODY_LIMIT, type ServeOptions } from '../serve/app.js';
import type { EngineChoice } from '../serve/models.js';
import { UserError } from '../util/errors.js';
import { int } from './options.js';

const EXAMPLES = `
Examples:
  $ occmap serve --classifier clf --explainer expl --data maps.npz
      open http://127.0.0.1:8080/ to browse the stamps of maps.npz, their estimated and exact maps
  $ curl -s --data-binary @stamp.npy -H 'Content-Type: application/octet-stream' \\
      'http://127.0.0.1:8080/explain?exact=1'
      probabilities, the estimated map, the exact map, the metrics between them and the timings
  $ curl -s -H 'Content-Type: application/json' -d '{"image": [[0.1, ...], ...], "label": 1}' \\
      http://127.0.0.1:8080/explain
  $ curl -s --data-binary @stamp.png -H 'Content-Type: image/png' http://127.0.0.1:8080/explain

API: POST /explain (.npy as application/octet-stream or application/x-npy, greyscale PNG as
image/png, or JSON {"image": HxW or HxWxC nested lists, "label"?: k}; ?exact=1 adds the exact
map), GET /models, GET /healthz, GET /api/stamps?offset=&limit= and GET /api/stamps/:i (--data).
A stamp holds the data's channels (all of them) or only the classifier's (e.g. one channel).`;

interface RawServeOptions {
  classifier?: string;
  explainer?: string;
  data?: string;
  port: string;
  host: string;
  engine: string;
  threads: string;
  exactThreads?: string;
  exactNice: string;
  bodyLimit: string;
  maxExactQueue: string;
}


export function parseServeOptions(o: RawServeOptions): ServeOptions & { port: number; host: string } {
  if (!['auto', 'onnx', 'tfjs'].includes(o.engine)) throw new UserError(`--engine must be auto, onnx or tfjs, got '${o.engine}'`);
  if ((o.classifier === undefined) !== (o.explainer === undefined)) {
    throw new UserError('give both --classifier and --explainer, or neither (the pretrained HiTS 2015 models)');
  }
  // Neither model given: the shipped ones, and their held-out sample stamps unless --data says otherwise.
  const shipped = o.classifier === undefined ? pretrained() : undefined;
  return {
    classifier: o.classifier ?? shipped!.classifier,
    explainer: o.explainer ?? shipped!.explainer,
    data: o.data ?? shipped?.sample,
    port: int('--port', o.port, 0, 65535),
    host: o.host,
    engine: o.engine as EngineChoice,
    threads: int('--threads', o.threads, 1),
    exactThreads: o.exactThreads !== undefined ? int('--exact-threads', o.exactThreads, 1) : undefined,
    exactNice: int('--exact-nice', o.exactNice, 0, 19),
    bodyLimit: int('--body-limit', o.bodyLimit, 1024),
    maxExactQueue: int('--max-exact-queue', o.maxExactQueue, 1),
  };
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('HTTP API and web page: stamps, predictions, estimated and exact occlusion maps side by side')
    .option('--classifier <path>', 'classifier: a model directory (its model.onnx runs on ONNX Runtime when current), an .onnx or a Keras .h5 file')
    .option('--explainer <dir>', "explainer directory from 'occmap train-explainer' (with neither model: the pretrained HiTS 2015 models and their sample stamps)")
    .option('--data <file>', 'a dataset .npz whose stamps the page lists (and their stored maps, if any)')
    .option('--port <n>', 'TCP port (0: any free port)', '8080')
    .option('--host <addr>', 'address to listen on (loopback by default; anything else exposes the API)', '127.0.0.1')
    .option('--engine <auto|onnx|tfjs>', 'engine of both models (auto: ONNX Runtime where a current export exists)', 'auto')
    .option('--threads <n>', 'ONNX Runtime threads of the estimate sessions', '1')
    .option('--exact-threads <n>', 'ONNX Runtime threads of the exact-map worker (default: cores - 1)')
    .option('--exact-nice <n>', 'nice value of the exact-map thread: estimates get the CPU first (0: equal priority)', '10')
    .option('--body-limit <bytes>', 'largest request body accepted', String(DEFAULT_BODY_LIMIT))
    .option('--max-exact-queue <n>', 'exact maps waiting or running before more get a 503', '16')
    .addHelpText('after', EXAMPLES)
    .action(async (raw: RawServeOptions) => {
      const o = parseServeOptions(raw);
      if (!isLoopback(o.host)) process.stderr.write(`serve: note: listening on ${o.host}, not loopback: the API is reachable from other machines\n`);
      const s = await startServer(o);
      const { ctx } = s;
      const lines = [
        `occmap serve: ${s.url}/`,
        `  classifier ${o.classifier} on ${ctx.predictor.engine}; exact maps on ${ctx.exact.engine} (worker thread)`,
        `  explainer  ${o.explainer} (${ctx.explainer.card.variant}${ctx.explainer.card.ensemble ? `, ensemble of ${ctx.explainer.card.ensemble}` : ''}) on ${ctx.explainer.engine}`,
      ];
      if (ctx.dataset) lines.push(`  data       ${o.data}: ${ctx.dataset.shape[0]} stamps ${ctx.dataset.shape.slice(1).join('x')}${ctx.dataset.maps ? ' with maps' : ''}`);
      lines.push('  Ctrl-C to stop');
      process.stdout.write(lines.join('\n') + '\n');
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          void s.close().then(resolve, resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}
