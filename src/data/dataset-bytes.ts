/**
 * The occmap dataset file: one `.npz` with `images` float32 (N,H,W,C), `labels` int32 (N,),
 * optional `maps` float32 (N,H,W), `ids` (N,) object/group ids, and a `meta.json` member.
 * This module is the only place that knows that layout; it also reads plain arrays from
 * other tools (`.npy` images, `.npz` with x/y names, single PNG/FITS/JSON stamps through the
 * stamp reader, stamps.ts, whose shape rule it shares) and the seed's HiTS 2013 pickle.
 * Pure (bytes in, bytes out); src/data/dataset.ts adds the file reading and atomic writing.
 */
import { parseNpy, toFloat32, numel, type NpyArray } from './npy.js';
import { parseNpz, serializeNpz, type NpzEntry } from './npz.js';
import { applyReading, interpretShape, readStampBytes, sniffFormat, StampError } from './stamps.js';
import { fileError } from '../util/errors.js';

export interface DatasetMeta {
  source?: string;
  /** Names of the image channels, e.g. ['template','science','difference','snr_difference']. */
  channels?: string[];
  /** Names of the label values, index = label. */
  classes?: string[];
  normalisation?: string;
  /** Occlusion parameters and classifier hash when `maps` is present. */
  occlusion?: Record<string, unknown>;
  command?: string;
  createdAt?: string;
  [key: string]: unknown;
}

export interface Dataset {
  images: Float32Array;
  /** [N, H, W, C] */
  shape: [number, number, number, number];
  labels?: Int32Array;
  /** (N, H, W): one map per image. */
  maps?: Float32Array;
  /**
   * (N, H, W): the maps before normalisation (member `maps_raw`), when `maps` are normalised:
   * the summed occlusion scores, whose ranking the seed normalisation's clip flattens.
   */
  mapsRaw?: Float32Array | Float64Array;
  ids?: string[];
  meta: DatasetMeta;
  /** What the reader assumed (e.g. how an ambiguous shape was read); not written to files. */
  warnings?: string[];
}

const IMAGE_KEYS = ['images', 'x', 'X', 'x_train', 'X_train', 'data', 'arr_0'];
const LABEL_KEYS = ['labels', 'y', 'Y', 'y_train', 'Y_train', 'arr_1'];

export function datasetSize(d: Dataset): number {
  return d.shape[0];
}

/** One image (H*W*C floats, HWC order) as a view. */
export function imageAt(d: Dataset, i: number): Float32Array {
  const [, h, w, c] = d.shape;
  const s = h * w * c;
  return d.images.subarray(i * s, (i + 1) * s);
}

/**
 * Images by the one shape rule of stamps.ts (a (21,21,4) array is one 4-channel stamp here as
 * in explain and the server, not 21 stamps of 21x4); `warnings` gets what was assumed.
 */
function imagesFrom(file: string, a: NpyArray, warnings: string[]): { images: Float32Array; shape: [number, number, number, number] } {
  let images: Float32Array;
  try {
    images = toFloat32(a);
  } catch {
    throw fileError(file, `images have non-numeric dtype ${a.dtype}`);
  }
  let reading;
  try {
    reading = interpretShape(a.shape);
  } catch (err) {
    if (err instanceof StampError) throw fileError(file, `images ${err.message}`);
    throw err;
  }
  if (reading.warning) warnings.push(reading.warning);
  return { images: applyReading(images, reading), shape: reading.shape };
}

function assertFinite(file: string, what: string, a: Float32Array | Float64Array, perItem: number): void {
  let bad = 0;
  let first = -1;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad > 0) {
    throw fileError(file, `${what} contain ${bad} NaN/Inf value(s), first in item ${Math.floor(first / perItem)}`);
  }
}

function labelsFrom(file: string, a: NpyArray, n: number, imageShape?: readonly number[]): Int32Array {
  if (Array.isArray(a.data)) throw fileError(file, `labels have non-numeric dtype ${a.dtype}`);
  let flat = a.data;
  let shape = a.shape;
  // One-hot labels from other tools: (N, K) -> argmax.
  if (shape.length === 2 && shape[0] === n && shape[1] > 1) {
    const k = shape[1];
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < k; j++) if (Number(flat[i * k + j]) > Number(flat[i * k + best])) best = j;
      out[i] = best;
    }
    return out;
  }
  if (numel(shape) !== n) {
    const hint = n === 1 && imageShape ? `: the images (${imageShape.join(',')}) read as one ${imageShape.join('x')} stamp; store several stamps as (N,H,W) or (N,H,W,C)` : '';
    throw fileError(file, `labels have ${numel(shape)} values for ${n} image(s)${hint}`);
  }
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const v = Number(flat[i]);
    if (!Number.isInteger(v) || v < 0) throw fileError(file, `label ${i} is ${v}, expected a non-negative integer`);
    out[i] = v;
  }
  return out;
}

/** Validate and assemble a dataset from named arrays (from an .npz, a pickle, ...). */
export function datasetFromArrays(
  file: string,
  arrays: Map<string, NpyArray>,
  meta: DatasetMeta = {},
): Dataset {
  const imgKey = IMAGE_KEYS.find((k) => arrays.has(k));
  if (!imgKey) {
    throw fileError(file, `no image array found (looked for ${IMAGE_KEYS.join(', ')}; has ${[...arrays.keys()].join(', ') || 'nothing'})`);
  }
  const warnings: string[] = [];
  const { images, shape } = imagesFrom(file, arrays.get(imgKey)!, warnings);
  const [n, h, w] = shape;
  if (n === 0) throw fileError(file, 'holds no images');
  assertFinite(file, 'images', images, h * w * shape[3]);
  const ds: Dataset = { images, shape, meta };
  if (warnings.length) ds.warnings = warnings;
  const labKey = LABEL_KEYS.find((k) => arrays.has(k));
  if (labKey) ds.labels = labelsFrom(file, arrays.get(labKey)!, n, arrays.get(imgKey)!.shape);
  const maps = arrays.get('maps');
  if (maps) {
    const expected = n * h * w;
    if (numel(maps.shape) !== expected) {
      throw fileError(file, `maps have shape (${maps.shape.join(',')}), expected (${n},${h},${w})`);
    }
    ds.maps = toFloat32(maps);
    assertFinite(file, 'maps', ds.maps, h * w);
  }
  const raw = arrays.get('maps_raw');
  if (raw) {
    if (!ds.maps) throw fileError(file, 'has maps_raw but no maps');
    if (numel(raw.shape) !== n * h * w) throw fileError(file, `maps_raw have shape (${raw.shape.join(',')}), expected (${n},${h},${w})`);
    // float64 as occmap writes them (class-scores.ts); older files' float32 as they are
    ds.mapsRaw = raw.data instanceof Float64Array ? raw.data : toFloat32(raw);
    assertFinite(file, 'maps_raw', ds.mapsRaw, h * w);
  }
  const ids = arrays.get('ids');
  if (ids) {
    if (numel(ids.shape) !== n) throw fileError(file, `ids have ${numel(ids.shape)} values for ${n} images`);
    ds.ids = Array.isArray(ids.data) ? ids.data : Array.from(ids.data as ArrayLike<number | bigint>, (v) => String(v));
  }
  return ds;
}

/**
 * A dataset from a file's bytes (`file` names it in errors; its extension tells a pickle):
 * occmap `.npz`, a plain `.npz`/`.npy` from another tool, or the seed's HiTS 2013 pickle.
 * Pure (no I/O), so the browser viewer reads the same files through it.
 */
export async function parseDataset(file: string, bytes: Uint8Array): Promise<Dataset> {
  const ext = (/\.[^./\\]+$/.exec(file)?.[0] ?? '').toLowerCase();
  try {
    if (ext === '.pkl' || ext === '.pickle' || bytes[0] === 0x80) {
      const { readHits2013Pickle } = await import('./hits2013-pickle.js');
      return datasetFromArrays(file, readHits2013Pickle(bytes), { source: 'hits2013-pickle' });
    }
    if (bytes[0] === 0x93) {
      const a = parseNpy(bytes);
      return datasetFromArrays(file, new Map([['images', a]]), { source: 'npy' });
    }
    const format = sniffFormat(bytes, file);
    if (format === 'png' || format === 'fits' || format === 'json') {
      // Single images and arrays: the stamp reader's rules (FITS primary HDU, PNG greys).
      const st = readStampBytes(bytes, file);
      const ds: Dataset = { images: st.images, shape: st.shape, meta: { source: format } };
      if (st.labels) ds.labels = st.labels;
      if (st.warnings.length) ds.warnings = st.warnings;
      return ds;
    }
    const { arrays, files } = parseNpz(bytes);
    let meta: DatasetMeta = {};
    const metaBytes = files.get('meta.json');
    if (metaBytes) {
      try {
        meta = JSON.parse(new TextDecoder().decode(metaBytes));
      } catch {
        throw fileError(file, 'meta.json member is not valid JSON');
      }
    }
    return datasetFromArrays(file, arrays, meta);
  } catch (err) {
    if (err instanceof StampError) throw fileError(file, err.message);
    if ((err as Error).name === 'UserError') throw err;
    throw fileError(file, (err as Error).message);
  }
}

export interface WriteOptions {
  /** Deflate members (smaller, slower); numpy reads both. */
  compress?: boolean;
}

/** The .npz bytes of a dataset (meta.json gets a createdAt when it has none). */
export function serializeDataset(d: Dataset, opts: WriteOptions = {}): Uint8Array {
  const [n, h, w] = d.shape;
  const arrays: Record<string, NpzEntry> = { images: { data: d.images, shape: d.shape } };
  if (d.labels) arrays.labels = { data: d.labels, shape: [n] };
  if (d.maps) arrays.maps = { data: d.maps, shape: [n, h, w] };
  if (d.mapsRaw && d.mapsRaw !== d.maps) arrays.maps_raw = { data: d.mapsRaw, shape: [n, h, w] };
  if (d.ids) arrays.ids = { data: d.ids, shape: [n] };
  const meta = { ...d.meta, createdAt: d.meta.createdAt ?? new Date().toISOString() };
  return serializeNpz(arrays, { 'meta.json': JSON.stringify(meta, null, 2) }, opts.compress ? 6 : 0);
}

/** A new dataset holding the items at `idx`, in that order. */
export function subsetDataset(d: Dataset, idx: ArrayLike<number>): Dataset {
  const [, h, w, c] = d.shape;
  const s = h * w * c;
  const m = h * w;
  const n = idx.length;
  const images = new Float32Array(n * s);
  const out: Dataset = { images, shape: [n, h, w, c], meta: { ...d.meta } };
  if (d.labels) out.labels = new Int32Array(n);
  if (d.maps) out.maps = new Float32Array(n * m);
  if (d.mapsRaw) out.mapsRaw = d.mapsRaw instanceof Float64Array ? new Float64Array(n * m) : new Float32Array(n * m);
  if (d.ids) out.ids = new Array(n);
  for (let k = 0; k < n; k++) {
    const i = idx[k];
    images.set(d.images.subarray(i * s, (i + 1) * s), k * s);
    if (out.labels) out.labels[k] = d.labels![i];
    if (out.maps) out.maps.set(d.maps!.subarray(i * m, (i + 1) * m), k * m);
    if (out.mapsRaw) out.mapsRaw.set(d.mapsRaw!.subarray(i * m, (i + 1) * m), k * m);
    if (out.ids) out.ids[k] = d.ids![i];
  }
  return out;
}
