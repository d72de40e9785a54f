/**
 * `occmap serve`: the HTTP API (POST /explain, GET /models, GET /healthz) and the page that
 * browses a dataset's stamps beside their estimated and exact maps. Models are loaded once;
 * estimates are micro-batched on the main thread's engines (one engine call per batch of
 * concurrent requests; ONNX Runtime runs synchronously on the calling thread); exact maps run
 * one at a time in a lower-priority worker thread with its own classifier copy.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { createReadStream, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { readDataset, type Dataset } from '../data/dataset.js';
import { loadExplainer, occlusionParamsOf, type Explainer } from '../explainer/estimate.js';
import { compareMaps, importanceOf } from '../metrics/compare.js';
import { heldOutLookup, holdoutOfCard, type CardLike } from '../data/holdout.js';
import { argmax, selectChannels, type Predictor } from '../models/predictor.js';
import { inferencesPerMap, type OcclusionParams } from '../occlusion/exact.js';
import { UserError } from '../util/errors.js';
import { conditionClass, exactTarget, type ClassChoice } from '../explainer/condition.js';
import { MicroBatcher, type BatchInfo } from './batcher.js';
import { ExactPool } from './exact-pool.js';
import { loadClassifier, type EngineChoice } from './models.js';
import { expectFromCard, minMaxPerStamp, valueWarnings } from '../data/stamps.js';
import { fitToStamps } from '../models/load.js';
import { checkEngineChoice, readCard } from '../models/model-dir.js';
import { ModelOutputError } from '../models/predictor-head.js';
import {
  HttpError,
  binaryKind,
  checkStamp,
  parseLabel,
  stampFromJson,
  stampFromNpy,
  stampFromPng,
  toNested,
  toRows,
  type ChannelKind,
  type Stamp,
  type StampSpec,
} from './stamp.js';
import { checkModelsFit, explainerProblem } from './fit.js';
import { buildWebSite, type WebSite } from './site.js';
import { classNames } from '../models/condition.js';

export const DEFAULT_BODY_LIMIT = 1 << 20;
export const BINARY_TYPES = ['application/octet-stream', 'application/x-npy', 'image/png'];

export interface ServeOptions {
  classifier: string;
  explainer: string;
  data?: string;
  /** Engine of both models (auto: ONNX Runtime where a current export exists). */
  engine?: EngineChoice;
  /** ONNX Runtime threads of the main thread's sessions (default 1: one stamp is tiny). */
  threads?: number;
  /** ONNX Runtime threads of the exact-map worker (default: cores - 1, at least 1). */
  exactThreads?: number;
  bodyLimit?: number;
  /** Nice value of the exact-map thread (default 10: estimates get the CPU first); 0: equal. */
  exactNice?: number;
  /** Exact maps waiting or running before requests for more get a 503. */
  maxExactQueue?: number;
  /** Stamps estimated together at most. */
  maxBatch?: number;
}

export interface ServeContext {
  opts: ServeOptions;
  predictor: Predictor;
  explainer: Explainer;
  exact: ExactPool;
  dataset?: Dataset;
  spec: StampSpec;
  params: OcclusionParams;
  classes: string[];
  startedAt: number;
  /** The viewer's files and manifest; null (with the reason) when the models have no ONNX export. */
  site: WebSite | null;
  siteError?: string;
}

/** Load the models (and dataset) once; every check that can fail does so here, before listening. */
export async function loadServeContext(o: ServeOptions): Promise<ServeContext> {
  const engine = checkEngineChoice(o.engine);
  const threads = o.threads ?? 1;
  const dataset = o.data ? await readDataset(o.data) : undefined;
  let predictor = await loadClassifier(o.classifier, { engine, threads });
  let explainer: Explainer | undefined;
  let exact: ExactPool | undefined;
  let modelPad = 0;
  try {
    explainer = await loadExplainer(o.explainer, { engine, threads });
    const stamp = explainer.card.imageSize as number[] | undefined;
    if (Array.isArray(stamp)) {
      // A classifier whose input is the padded stamp gets the stamps padded by the maps' --pad.
      const fitted = fitToStamps(predictor, stamp[0], stamp[1], occlusionParamsOf(explainer.card).pad);
      [predictor, modelPad] = [fitted.predictor, fitted.padded];
    }
    const spec = checkModelsFit({ classifier: o.classifier, explainer: o.explainer, data: o.data }, predictor, explainer, dataset);
    const card = explainer.card;
    const cores = availableParallelism();
    exact = await ExactPool.start(
      { classifier: o.classifier, engine, threads: o.exactThreads ?? Math.max(1, cores - 1), nice: o.exactNice ?? 10, ...(modelPad ? { pad: modelPad } : {}) },
      { maxQueue: o.maxExactQueue ?? 16 },
    );
    const classes = classNames(card.classes, predictor.numClasses);
    let site: WebSite | null = null;
    let siteError: string | undefined;
    try {
      site = await buildWebSite({ classifier: o.classifier, explainer: o.explainer, data: o.data, server: true }, { predictor, dataset });
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      siteError = err.message;
      process.stderr.write(`serve: note: the viewer page is off (${err.message}); the API works\n`);
    }
    return { opts: o, predictor, explainer, exact, dataset, spec, params: occlusionParamsOf(card), classes, startedAt: Date.now(), site, siteError };
  } catch (err) {
    explainer?.dispose();
    predictor.dispose();
    await exact?.close();
    throw err;
  }
}

// The conditioning class and exact-map target rules are shared with the browser viewer.
export { conditionClass, exactTarget, type ClassChoice } from '../explainer/condition.js';

interface EstimateItem {
  stamp: Stamp;
  kind: ChannelKind;
  label?: number;
}

interface EstimateOut {
  probs: Float32Array;
  predicted: number;
  cond?: ClassChoice;
  map: Float32Array;
  std?: Float32Array;
  classifyMs: number;
  estimateMs: number;
}

/** A promise's value and the milliseconds from now until it settles. */
async function timed<T>(p: Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await p;
  return [v, performance.now() - t0];
}

/** Classify and estimate a batch; stamps of one channel count go through the engines together. */
async function estimateBatch(ctx: ServeContext, items: EstimateItem[]): Promise<EstimateOut[]> {
  const { predictor, explainer } = ctx;
  const { h, w } = ctx.spec;
  const k = predictor.numClasses;
  const out: EstimateOut[] = new Array(items.length);
  const byC = new Map<number, number[]>();
  items.forEach((it, i) => byC.set(it.stamp.c, [...(byC.get(it.stamp.c) ?? []), i]));
  for (const [c, idx] of byC) {
    const n = idx.length;
    const mc = predictor.inputShape[2];
    const x = new Float32Array(n * h * w * mc);
    const raw = new Float32Array(n * h * w * c);
    idx.forEach((i, j) => {
      const it = items[i];
      raw.set(it.stamp.image, j * h * w * c);
      x.set(it.kind === 'data' ? selectChannels(it.stamp.image, 1, h, w, c, predictor.channels) : it.stamp.image, j * h * w * mc);
    });
    let probs: Float32Array;
    let conds: (ClassChoice | undefined)[];
    let est: { maps: Float32Array; std?: Float32Array; probs?: Float32Array };
    let classifyMs: number;
    let estimateMs: number;
    if (explainer.card.condition === 'none') {
      // Independent: neither waits for the other's result.
      [[probs, classifyMs], [est, estimateMs]] = await Promise.all([timed(predictor.predict(x, n)), timed(explainer.estimate(raw, [n, h, w, c]))]);
      conds = idx.map(() => undefined);
    } else if (explainer.fusedClassifierHash === predictor.hash && idx.every((i) => conditionClass(explainer.card, items[i].label, 0)?.source === 'predicted')) {
      // The explainer holds this classifier in one graph: class and map in one call
      // (the classifier's time is inside estimateMs).
      [est, estimateMs] = await timed(explainer.estimate(raw, [n, h, w, c]));
      probs = est.probs!;
      classifyMs = 0;
      conds = idx.map((_, j) => ({ class: argmax(probs.subarray(j * k, (j + 1) * k)), source: 'predicted' as const }));
    } else {
      [probs, classifyMs] = await timed(predictor.predict(x, n));
      conds = idx.map((i, j) => conditionClass(explainer.card, items[i].label, argmax(probs.subarray(j * k, (j + 1) * k))));
      [est, estimateMs] = await timed(explainer.estimate(raw, [n, h, w, c], conds.map((cc) => cc!.class)));
    }
    idx.forEach((i, j) => {
      const p = probs.slice(j * k, (j + 1) * k);
      out[i] = {
        probs: p,
        predicted: argmax(p),
        cond: conds[j],
        map: est.maps.slice(j * h * w, (j + 1) * h * w),
        std: est.std?.slice(j * h * w, (j + 1) * h * w),
        classifyMs,
        estimateMs,
      };
    });
  }
  return out;
}

const round = (v: number, d = 3): number => (Number.isFinite(v) ? Number(v.toFixed(d)) : v);

/** Fastify's own errors, said in the API's words. */
function describeFrameworkError(err: { code?: string; message: string }, limit: number): string {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return `the body is larger than the ${limit}-byte limit`;
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return `unsupported Content-Type: send application/json, ${BINARY_TYPES.join(', ')}`;
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'the JSON body is empty';
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return 'the body is not valid JSON';
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return 'Content-Length does not match the body';
    default:
      return err instanceof SyntaxError || /JSON/.test(err.message) ? `the body is not valid JSON (${err.message})` : err.message;
  }
}

export function buildApp(ctx: ServeContext): FastifyInstance {
  const bodyLimit = ctx.opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const app = Fastify({ logger: false, bodyLimit, requestTimeout: 60_000, return503OnClosing: true });
  const batcher = new MicroBatcher<EstimateItem, EstimateOut>((items) => estimateBatch(ctx, items), ctx.opts.maxBatch ?? 64);
  const { predictor, explainer, dataset, spec } = ctx;
  const [h, w] = [spec.h, spec.w];

  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser(BINARY_TYPES, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  registerErrors(app, bodyLimit);
  registerModels(app, ctx, batcher, bodyLimit);
  registerExplain(app, ctx, batcher);
  registerStamps(app, ctx);
  registerSite(app, ctx);
  app.addHook('onClose', async () => batcher.close());
  return app;
}

/** JSON errors: 4xx for the client's mistakes, 500 (logged) for the server's. */
function registerErrors(app: FastifyInstance, bodyLimit: number): void {
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    // A model whose outputs are not finite probabilities is the server's fault (500), never a 200.
    let status = err instanceof HttpError ? err.statusCode : err instanceof ModelOutputError ? 500 : err instanceof UserError ? 422 : err.statusCode ?? 500;
    if (!(status >= 400 && status < 600)) status = 500;
    let message = err instanceof HttpError || err instanceof UserError ? err.message : describeFrameworkError(err, bodyLimit);
    if (status >= 500 && !(err instanceof HttpError)) {
      process.stderr.write(`occmap serve: ${req.method} ${req.url}: ${err.stack ?? err.message}\n`);
      message = `internal error: ${err.message.split('\n')[0]}`;
    }
    void reply.code(status).send({ error: message, statusCode: status });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}`, statusCode: 404 });
  });
}

/** GET /healthz and GET /models. */
function registerModels(app: FastifyInstance, ctx: ServeContext, batcher: MicroBatcher<EstimateItem, EstimateOut>, bodyLimit: number): void {
  const { predictor, explainer, dataset, spec } = ctx;
  const [h, w] = [spec.h, spec.w];
  app.get('/healthz', async () => ({
    ok: ctx.exact.state === 'ready' || ctx.exact.state === 'starting',
    uptimeS: Math.round((Date.now() - ctx.startedAt) / 1000),
    exact: { state: ctx.exact.state, pending: ctx.exact.pending, typicalMs: round(ctx.exact.typicalMs, 1) },
    estimates: { pending: batcher.pending },
  }));

  // Beyond loopback the API is public: model directories are shown by name, and absolute
  // paths inside the cards (data files, commands) by their last component.
  const exposed = !isLoopback((ctx.opts as { host?: string }).host ?? '127.0.0.1');
  const shownPath = (p: string): string => (exposed ? path.basename(path.resolve(p)) : path.resolve(p));
  const shown = <T>(card: T): T => (exposed ? redactPaths(card) : card);
  app.get('/models', async () => ({
    classifier: {
      path: shownPath(ctx.opts.classifier),
      engine: predictor.engine,
      hash: predictor.hash,
      inputShape: predictor.inputShape,
      numClasses: predictor.numClasses,
      classes: ctx.classes,
      channels: predictor.channels ?? null,
      card: shown(readClassifierCard(ctx.opts.classifier)),
    },
    explainer: { path: shownPath(ctx.opts.explainer), engine: explainer.engine, card: shown(explainer.card) },
    exact: { engine: ctx.exact.engine, params: ctx.params, inferencesPerMap: inferencesPerMap(ctx.params, h, w), maxQueue: ctx.exact.maxQueue },
    data: dataset
      ? {
          path: shownPath(ctx.opts.data!),
          shape: dataset.shape,
          channels: channelNames(dataset),
          classes: dataset.meta.classes ?? null,
          hasLabels: !!dataset.labels,
          hasMaps: !!dataset.maps,
        }
      : null,
    accepts: { stamp: `${h}x${w}x${spec.modelChannels}${spec.datasetChannels !== undefined ? ` or ${h}x${w}x${spec.datasetChannels}` : ''}`, bodyLimit },
  }));
}

/** POST /explain: the estimate (micro-batched), and the exact map when asked. */
function registerExplain(app: FastifyInstance, ctx: ServeContext, batcher: MicroBatcher<EstimateItem, EstimateOut>): void {
  const { predictor, explainer, spec } = ctx;
  const [h, w] = [spec.h, spec.w];
  const trainedRange = expectFromCard((readClassifierCard(ctx.opts.classifier) ?? {}) as Record<string, unknown>, 'the classifier').range;
  app.post('/explain', async (req: FastifyRequest, reply: FastifyReply) => {
    const tStart = performance.now();
    const q = req.query as Record<string, string | undefined>;
    const wantExact = q.exact !== undefined && !['0', 'false', 'no', ''].includes(q.exact);
    const read = readStamp(req, spec, trainedRange);
    const stamp = read.stamp;
    const label = q.label !== undefined ? parseLabel(q.label, 'query label') : read.label;
    if (label !== undefined && label >= predictor.numClasses) {
      throw new HttpError(422, `label ${label} is not a class of the ${predictor.numClasses}-class classifier`);
    }
    const kind = checkStamp(stamp, spec);
    const problem = explainerProblem(explainer, predictor, kind, stamp.c);
    if (problem) throw new HttpError(422, problem);

    const { out: est, batch } = await batcher.push({ stamp, kind, label });
    const res: Record<string, unknown> = {
      shape: [stamp.h, stamp.w, stamp.c],
      channels: kind,
      probabilities: Array.from(est.probs, (v) => round(v, 6)),
      predicted: est.predicted,
      classes: ctx.classes,
      label: label ?? null,
      condition: est.cond ?? null,
      estimate: { map: toRows(est.map, h, w), ...(est.std ? { std: toRows(est.std, h, w) } : {}), engine: explainer.engine },
    };
    if (stamp.warnings?.length) res.warnings = stamp.warnings;
    // The page shows an uploaded stamp's channels from the server's reading of it.
    if (q.echo !== undefined && q.echo !== '0') res.image = toNested(stamp.image, h, w, stamp.c);
    const timings: Record<string, number> = {
      classifyMs: round(est.classifyMs),
      estimateMs: round(est.estimateMs),
      batchSize: batch.size,
      batchWaitMs: round(batch.waitMs),
    };
    if (wantExact) Object.assign(timings, await addExact(ctx, reply, res, stamp, kind, est, label));
    else {
      res.exact = null;
      // What the page shows while it asks for the exact map.
      res.exactExpectedMs = round(ctx.exact.typicalMs * (ctx.exact.pending + 1), 1);
    }
    timings.totalMs = round(performance.now() - tStart);
    res.timings = timings;
    void reply.header('cache-control', 'no-store');
    return res;
  });
}

/** GET /api/stamps and /api/stamps/:i: the loaded dataset's stamps. */
function registerStamps(app: FastifyInstance, ctx: ServeContext): void {
  const needData = (): Dataset => {
    const dataset = ctx.dataset;
    if (!dataset) throw new HttpError(404, 'no dataset loaded: start the server with --data FILE');
    return dataset;
  };

  // One held-out definition (data/holdout.ts): did the explainer train on this stamp's object?
  let heldOutOf: ((i: number) => boolean | null) | undefined;
  const heldOut = (): ((i: number) => boolean | null) => (heldOutOf ??= heldOutLookup(holdoutOfCard(ctx.explainer.card as CardLike, 'the explainer'), needData().ids));
  app.get('/api/stamps', async (req) => {
    const ds = needData();
    const q = req.query as Record<string, string | undefined>;
    const n = ds.shape[0];
    const offset = q.offset === undefined ? 0 : intParam(q.offset, 'offset', 0);
    const limit = q.limit === undefined ? 100 : intParam(q.limit, 'limit', 1);
    if (limit > 5000) throw new HttpError(400, `limit must be at most 5000, got ${limit}`);
    const items = [];
    for (let i = offset; i < Math.min(n, offset + limit); i++) {
      items.push({ index: i, id: ds.ids?.[i] ?? String(i), label: ds.labels ? ds.labels[i] : null, heldOut: heldOut()(i) });
    }
    return { total: n, offset, limit, items, classes: ds.meta.classes ?? ctx.classes, channels: channelNames(ds), hasMaps: !!ds.maps };
  });

  app.get('/api/stamps/:i', async (req) => {
    const ds = needData();
    const [n, dh, dw, dc] = ds.shape;
    const i = intParam((req.params as { i: string }).i, 'stamp index', 0);
    if (i >= n) throw new HttpError(404, `stamp ${i} does not exist: the dataset has ${n} (0..${n - 1})`);
    const px = dh * dw;
    return {
      index: i,
      id: ds.ids?.[i] ?? String(i),
      label: ds.labels ? ds.labels[i] : null,
      // held out by the explainer (its card's held-out objects): true, false, or null (cannot tell)
      heldOut: heldOut()(i),
      shape: [dh, dw, dc],
      channels: channelNames(ds),
      image: toNested(ds.images.subarray(i * px * dc, (i + 1) * px * dc), dh, dw, dc),
      map: ds.maps ? toRows(ds.maps.subarray(i * px, (i + 1) * px), dh, dw) : null,
    };
  });
}

/** The viewer's files, and the headers that let its onnxruntime-web use threads. */
function registerSite(app: FastifyInstance, ctx: ServeContext): void {
  // The viewer (src/web/, bundled into dist/web/): its files, models and data, and its manifest.
  if (ctx.site) {
    const site = ctx.site;
    for (const f of site.files) {
      app.get(`/${f.url}`, async (_req, reply) => reply.header('content-type', f.type).header('cache-control', 'no-cache').send(createReadStream(f.file)));
    }
    const index = site.files.find((f) => f.url === 'index.html')!;
    app.get('/', async (_req, reply) => reply.header('content-type', index.type).header('cache-control', 'no-cache').send(createReadStream(index.file)));
    app.get('/occmap.json', async (_req, reply) => reply.header('cache-control', 'no-cache').send(site.manifest));
  } else {
    app.get('/', async () => {
      throw new HttpError(404, `the viewer is not available: ${ctx.siteError ?? 'unknown reason'}; the API (POST /explain) works`);
    });
  }
  // Cross-origin isolation, so the page's onnxruntime-web may use threads (SharedArrayBuffer).
  app.addHook('onSend', async (_req, reply, payload) => {
    void reply.header('cross-origin-opener-policy', 'same-origin').header('cross-origin-embedder-policy', 'require-corp').header('cross-origin-resource-policy', 'same-origin');
    return payload;
  });
}

/** The stamp of a POST /explain body (.npy, PNG or JSON), scaled or warned about as ?scale says. */
function readStamp(req: FastifyRequest, spec: ServeContext['spec'], trainedRange: [number, number] | undefined): { stamp: Stamp; label?: number } {
  const q = req.query as Record<string, string | undefined>;
  let stamp: Stamp;
  let label: number | undefined;
  const body = req.body as unknown;
  if (Buffer.isBuffer(body)) {
    if (body.length === 0) throw new HttpError(400, 'the body is empty: send a stamp as .npy, PNG or JSON');
    const kind = binaryKind(String(req.headers['content-type'] ?? ''), body);
    stamp = kind === 'png' ? stampFromPng(new Uint8Array(body.buffer, body.byteOffset, body.byteLength), spec) : stampFromNpy(new Uint8Array(body.buffer, body.byteOffset, body.byteLength), spec);
  } else if (body === undefined || body === null) {
    throw new HttpError(400, `no body: send a stamp as .npy (application/octet-stream), PNG (image/png) or JSON {"image": [[...]]}`);
  } else {
    ({ stamp, label } = stampFromJson(body, spec));
  }
  // ?scale=minmax: the datasets' per-stamp scaling for raw stamps; otherwise values the
  // classifier was not trained on are answered with a warning saying so.
  if (q.scale !== undefined && q.scale !== 'none' && q.scale !== 'minmax') throw new HttpError(400, `scale must be none or minmax, got '${q.scale}'`);
  if (q.scale === 'minmax') stamp = { ...stamp, image: minMaxPerStamp(stamp.image, [1, stamp.h, stamp.w, stamp.c]) };
  else {
    const w = valueWarnings(stamp.image, { range: trainedRange });
    if (w.length) stamp = { ...stamp, warnings: [...(stamp.warnings ?? []), ...w] };
  }
  return { stamp, label };
}

/** The exact map for ?exact=1, and the estimate's metrics against it (the same compareMaps as evaluate and explain --exact). */
async function addExact(ctx: ServeContext, reply: FastifyReply, res: Record<string, unknown>, stamp: Stamp, kind: ReturnType<typeof checkStamp>, est: EstimateOut, label: number | undefined): Promise<Record<string, number>> {
  const [h, w] = [ctx.spec.h, ctx.spec.w];
  const target = exactTarget(ctx.params, est.cond, label, est.predicted);
  const gone = new AbortController();
  const onClose = (): void => {
    if (!reply.raw.writableFinished) gone.abort();
  };
  reply.raw.once('close', onClose);
  const r = await ctx.exact.run(stamp.image, [1, h, w, stamp.c], { ...ctx.params, ...target.opts, modelChannels: kind === 'model' }, gone.signal).finally(() =>
    reply.raw.off('close', onClose),
  );
  // The same metrics, computed the same way, as evaluate and explain --exact report.
  // The exact map's importance order from its values before the seed's clip, as evaluate and explain --exact do.
  const importance = r.raw ? importanceOf(r.raw, ctx.params.score) : undefined;
  const metrics = compareMaps({ data: est.map, shape: [h, w] }, { data: r.maps, shape: [h, w], importance }, { score: ctx.params.score, normalize: ctx.params.normalize }).mean;
  res.exact = {
    map: toRows(r.maps, h, w),
    // Before the seed's normalisation: the order the rank metrics use.
    ...(r.raw ? { raw: toRows(r.raw, h, w) } : {}),
    target: { class: r.targets[0], source: target.source },
    inferences: r.inferences,
    engine: ctx.exact.engine,
    params: ctx.params,
  };
  res.metrics = Object.fromEntries(Object.entries(metrics).map(([k2, v]) => [k2 === 'iou' ? 'iouTop10' : k2, round(v, 6)]));
  return { exactMs: round(r.computeMs), exactQueueMs: round(r.queueMs) };
}

function readClassifierCard(p: string): unknown {
  try {
    return readCard(p) ?? null; // models/model-dir.ts owns the format; a file model has none
  } catch {
    return null;
  }
}

function channelNames(ds: Dataset): string[] {
  const c = ds.shape[3];
  const names = Array.isArray(ds.meta.channels) ? ds.meta.channels.map(String) : [];
  return Array.from({ length: c }, (_, k) => names[k] ?? `channel ${k}`);
}

function intParam(v: string, what: string, min: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new HttpError(400, `${what} must be an integer >= ${min}, got '${v}'`);
  return n;
}

export interface RunningServer {
  app: FastifyInstance;
  ctx: ServeContext;
  url: string;
  close(): Promise<void>;
}

/** A copy of `v` with every absolute path (alone or inside a string such as a command) cut to its last component. */
export function redactPaths<T>(v: T): T {
  if (typeof v === 'string') return v.replace(/(^|[\s='"(])(\/[^\s'"(),;]+)/g, (_, pre: string, p: string) => pre + path.basename(p)) as T;
  if (Array.isArray(v)) return v.map((x) => redactPaths(x)) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redactPaths(x)])) as T;
  return v;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || host.startsWith('127.');
}

/** Load everything, then listen. `port` 0 picks a free port (tests). */
export async function startServer(o: ServeOptions & { port?: number; host?: string }): Promise<RunningServer> {
  const ctx = await loadServeContext(o);
  const app = buildApp(ctx);
  const host = o.host ?? '127.0.0.1';
  const shutdown = async (): Promise<void> => {
    await app.close();
    await ctx.exact.close();
    ctx.explainer.dispose();
    ctx.predictor.dispose();
  };
  try {
    await app.listen({ port: o.port ?? 8080, host });
  } catch (err) {
    await shutdown();
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') throw new UserError(`port ${o.port} on ${host} is in use: pick another with --port`);
    if (e.code === 'EACCES') throw new UserError(`cannot listen on ${host}:${o.port} (permission denied)`);
    if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') throw new UserError(`cannot listen on host '${host}' (${e.code})`);
    throw err;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return { app, ctx, url: `http://${shown}:${port}`, close: shutdown };
}
