/**
 * The browser viewer's files and its manifest (occmap.json), for one classifier, one explainer
 * and optionally a dataset: what `occmap export-web` copies into a folder and what `occmap
 * serve` serves. The page (dist/web/, bundled from src/web/ by scripts/build-web.ts), the ONNX
 * models, the dataset .npz and onnxruntime-web's wasm files; nothing from elsewhere.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readDataset, type Dataset } from '../data/dataset.js';
import { heldOutLookup, holdoutOfCard, type CardLike } from '../data/holdout.js';
import { occlusionParamsOf, readExplainerCard, type ExplainerCard } from '../explainer/estimate.js';
import { hashFile, openModelDir, vouchedOnnxFile } from '../models/model-dir.js';
import { ModelPredictor } from '../models/predictor-head.js';
import { OnnxCore } from '../models/onnx-predictor.js';
import type { Predictor } from '../models/predictor.js';
import { inferencesPerMap } from '../occlusion/exact.js';
import { fileError, UserError } from '../util/errors.js';
import type { ChannelRange, DataManifest, Manifest } from '../web/manifest.js';
import { MANIFEST_VERSION } from '../web/manifest.js';
import { checkModelsFit } from './fit.js';
import { loadClassifier } from './models.js';
import { classNames } from '../models/condition.js';

/** One file of the site: where it goes (a URL path relative to the site) and where it comes from. */
export interface SiteFile {
  url: string;
  file: string;
  type: string;
}

export interface WebSite {
  manifest: Manifest;
  /** Everything but occmap.json itself. */
  files: SiteFile[];
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.npz': 'application/octet-stream',
};

export function contentType(file: string): string {
  return TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** dist/web/: the bundled page (dist/src/serve/site.js -> dist/web). */
export function pageDir(): string {
  return path.resolve(here, '../../web');
}

/** The page itself, onnxruntime-web's wasm build and the cross-origin-isolation shim. */
export function pageFiles(): SiteFile[] {
  const dir = pageDir();
  const page = ['index.html', 'style.css', 'app.js', 'exact-worker.js'];
  const missing = page.filter((f) => !existsSync(path.join(dir, f)));
  if (missing.length) throw new UserError(`the viewer is not built (${path.join(dir, missing[0])} is missing): run 'npm run build'`);
  const ortDist = path.dirname(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
  const ort = ['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];
  const coi = require.resolve('coi-serviceworker/coi-serviceworker.min.js');
  return [
    ...page.map((f) => ({ url: f, file: path.join(dir, f), type: contentType(f) })),
    ...ort.map((f) => ({ url: `ort/${f}`, file: path.join(ortDist, f), type: contentType(f) })),
    { url: 'coi-serviceworker.js', file: coi, type: contentType(coi) },
  ];
}

export function ortWebVersion(): string {
  // package.json is not among the package's exports: it sits one folder above dist/.
  const dist = path.dirname(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
  return (JSON.parse(readFileSync(path.join(dist, '..', 'package.json'), 'utf8')) as { version: string }).version;
}

/** Per data channel: min, max and the 0.1 / 99.9 percentiles over the given rows. */
export function channelRanges(ds: Dataset, rows: readonly number[], names: readonly string[]): ChannelRange[] {
  const [, h, w, c] = ds.shape;
  const px = h * w;
  return Array.from({ length: c }, (_, k) => {
    const v = new Float32Array(rows.length * px);
    rows.forEach((i, j) => {
      const base = i * px * c;
      for (let p = 0; p < px; p++) v[j * px + p] = ds.images[base + p * c + k];
    });
    v.sort();
    const at = (q: number): number => v[Math.min(v.length - 1, Math.max(0, Math.round(q * (v.length - 1))))];
    return { name: names[k] ?? `channel ${k}`, min: v[0], max: v[v.length - 1], p001: at(0.001), p999: at(0.999) };
  });
}

export function channelNames(ds: Dataset): string[] {
  const names = Array.isArray(ds.meta.channels) ? ds.meta.channels.map(String) : [];
  return Array.from({ length: ds.shape[3] }, (_, k) => names[k] ?? `channel ${k}`);
}

/**
 * Which of the dataset's rows the explainer held out, by the project's one held-out definition
 * (data/holdout.ts: its held-out objects by id, else rows of its own data file), and whether the
 * other rows were trained on (only known when this is the file it was trained on, all of it).
 */
export function splitOf(card: ExplainerCard, ds: Dataset, sha256: string): DataManifest['split'] {
  const info = card.dataInfo as { sha256?: string; used?: number } | undefined;
  const n = ds.shape[0];
  const h = holdoutOfCard(card as CardLike, "the explainer's held-out set");
  const lookup = heldOutLookup(h, ds.ids, sha256);
  const known = n > 0 && lookup(0) !== null;
  const heldOut = known ? Array.from({ length: n }, (_, i) => i).filter((i) => lookup(i) === true) : [];
  const own = info?.sha256 === sha256;
  if (own && known) {
    const trainedOnAll = card.split.limit === undefined || card.split.limit === null;
    const note = trainedOnAll
      ? `the explainer's own data: ${heldOut.length} held-out stamps, ${n - heldOut.length} trained on`
      : `the explainer's own data, of which it used ${info?.used ?? '?'} stamps (--limit): ${heldOut.length} held out, the rest trained on or unused`;
    return { basis: 'file', heldOut, trainedOnAll, note };
  }
  if (known) {
    return {
      basis: 'ids',
      heldOut,
      trainedOnAll: false,
      note: `not the file the explainer was trained on: ${heldOut.length} stamps belong to its held-out objects; the others' objects may or may not have been trained on`,
    };
  }
  return { basis: 'unknown', heldOut: [], trainedOnAll: false, note: "not the file the explainer was trained on, and no object ids to match its held-out objects: whether a stamp was trained on is unknown" };
}

/** The training data's ranges: the explainer's own training rows when its data file is at hand. */
async function trainingRanges(card: ExplainerCard, data: { ds: Dataset; file: string; sha: string } | undefined): Promise<Manifest['training']> {
  const sha = (card.dataInfo as { sha256?: string } | undefined)?.sha256;
  let src = data && data.sha === sha ? data : undefined;
  if (!src && typeof card.data === 'string' && existsSync(card.data) && statSync(card.data).isFile()) {
    try {
      const file = card.data;
      const fileSha = await hashFile(file);
      if (fileSha === sha) src = { ds: await readDataset(file), file, sha: fileSha };
    } catch {
      src = undefined;
    }
  }
  if (!src) {
    if (!data) return null;
    // Not the training file: its own range is the best guide there is, said as such.
    const rows = Array.from({ length: data.ds.shape[0] }, (_, i) => i);
    return { source: `${path.basename(data.file)}, not the explainer's training file`, rows: rows.length, channels: channelRanges(data.ds, rows, channelNames(data.ds)) };
  }
  const held = new Set(splitOf(card, src.ds, src.sha).heldOut);
  const rows = Array.from({ length: src.ds.shape[0] }, (_, i) => i).filter((i) => !held.has(i));
  return { source: path.basename(src.file), rows: rows.length, channels: channelRanges(src.ds, rows, channelNames(src.ds)) };
}

/** How an ONNX-run predictor's graph is fed and read (for the browser), or undefined when it does not run ONNX. */
function onnxIo(p: Predictor | undefined): (OnnxCore['io'] & { outputs: 'probs' | 'logits' }) | undefined {
  if (!(p instanceof ModelPredictor) || !(p.core instanceof OnnxCore)) return undefined;
  return { ...p.core.io, outputs: p.outputs };
}

export interface WebSiteOptions {
  classifier: string;
  explainer: string;
  data?: string;
  /** Served by `occmap serve`: the page may also ask the server's API. */
  server?: boolean;
}

/** Read and check the models (and data), and list the site's files with its manifest. */
export async function buildWebSite(o: WebSiteOptions, loaded: { predictor?: Predictor; dataset?: Dataset } = {}): Promise<WebSite> {
  const card = readExplainerCard(o.explainer);
  // Only files whose bytes the cards vouch for are shipped (models/model-dir.ts checks them).
  const explainerFiles = openModelDir(o.explainer).members.map((m) => vouchedOnnxFile(m.dir, 'explainer'));
  const clfFile = vouchedOnnxFile(o.classifier, 'classifier');
  // The caller's loaded classifier serves when it runs the ONNX file (its io says how to feed it).
  const own = !onnxIo(loaded.predictor);
  const predictor = own ? await loadClassifier(o.classifier, { engine: 'onnx', threads: 1 }) : loaded.predictor!;
  let ds: Dataset | undefined;
  let manifest: Manifest;
  try {
    const io = onnxIo(predictor);
    if (!io) throw fileError(o.classifier, 'is not an ONNX classifier');
    if ((predictor as ModelPredictor).pad > 0) throw fileError(o.classifier, 'takes the stamps zero-padded before it: the browser viewer does not pad them yet');
    ds = loaded.dataset ?? (o.data ? await readDataset(o.data) : undefined);
    checkModelsFit(o, predictor, { card }, ds);
    const dataSha = o.data ? await hashFile(o.data) : '';
    const classes = classNames(card.classes, predictor.numClasses);
    const clfCard = readJson(path.join(path.dirname(clfFile), 'card.json')) as { channelNames?: unknown } | undefined;
    const params = occlusionParamsOf(card);
    const [h, w] = predictor.inputShape;
    manifest = {
      version: MANIFEST_VERSION,
      createdAt: new Date().toISOString(),
      classifier: {
        url: 'models/classifier.onnx',
        inputShape: predictor.inputShape,
        numClasses: predictor.numClasses,
        classes,
        ...(predictor.channels ? { channels: predictor.channels } : {}),
        ...(Array.isArray(clfCard?.channelNames) ? { channelNames: clfCard.channelNames.map(String) } : {}),
        ...io,
        hash: predictor.hash,
        name: path.basename(path.resolve(o.classifier)),
        bytes: statSync(clfFile).size,
      },
      explainer: {
        urls: explainerFiles.map((_, k) => (explainerFiles.length > 1 ? `models/explainer-${k}.onnx` : 'models/explainer.onnx')),
        card: publicCard(card),
        name: path.basename(path.resolve(o.explainer)),
        bytes: explainerFiles.reduce((a, f) => a + statSync(f).size, 0),
      },
      exact: { params, inferencesPerMap: inferencesPerMap(params, h, w) },
      data: ds
        ? {
            // A name every static server maps back to the same file.
            url: `data/${path.basename(o.data!).replace(/[^A-Za-z0-9._-]/g, '_')}`,
            name: path.basename(o.data!),
            bytes: statSync(o.data!).size,
            shape: ds.shape,
            channels: channelNames(ds),
            classes: Array.isArray(ds.meta.classes) ? ds.meta.classes.map(String) : null,
            hasLabels: !!ds.labels,
            hasMaps: !!ds.maps,
            split: splitOf(card, ds, dataSha),
          }
        : null,
      training: await trainingRanges(card, ds ? { ds, file: o.data!, sha: dataSha } : undefined),
      server: o.server ? { explain: 'explain' } : null,
      ort: { base: 'ort/', version: ortWebVersion() },
    };
  } finally {
    if (own) predictor.dispose();
  }
  const files: SiteFile[] = [
    ...pageFiles(),
    { url: manifest.classifier.url, file: clfFile, type: contentType(clfFile) },
    ...explainerFiles.map((f, k) => ({ url: manifest.explainer.urls[k], file: f, type: contentType(f) })),
    ...(manifest.data ? [{ url: manifest.data.url, file: path.resolve(o.data!), type: contentType(o.data!) }] : []),
  ];
  return { manifest, files };
}

/** The card as a published page shows it: file names, not this machine's absolute paths. */
function publicCard(card: ExplainerCard): ExplainerCard {
  const base = (p: unknown): unknown => (typeof p === 'string' && path.isAbsolute(p) ? path.basename(p) : p);
  const members = Array.isArray(card.members) ? (card.members as Record<string, unknown>[]).map((m) => ({ ...m, dir: base(m.dir) })) : card.members;
  return { ...card, data: base(card.data) as string, classifier: base(card.classifier) as string | undefined, ...(members !== undefined ? { members } : {}) };
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}
