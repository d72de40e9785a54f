/**
 * `window.occmap`: the page's models as a small JS API, for tests and power users:
 *
 *   await occmap.ready;
 *   const r = await occmap.explain({ image, shape: [21, 21, 4], label: 1 });  // probabilities + estimate
 *   const x = await occmap.exact({ image, shape: [21, 21, 4] });              // + the exact map, metrics
 *
 * `image`: a flat array (HWC, with `shape`) or nested H x W (x C) lists; the data's channels or
 * only the classifier's. Everything runs in this page (the exact map in its Web Worker).
 */
import { flattenNested, checkStamp, stampFromArray } from '../serve/stamp.js';
import type { Estimate, Exact, PageStamp } from './compute.js';
import type { Manifest } from './manifest.js';
import type { Session } from './main.js';

export interface StampInput {
  image: ArrayLike<number> | unknown[];
  /** [H, W] or [H, W, C] for a flat image. */
  shape?: number[];
  label?: number;
}

export interface OccmapApi {
  ready: Promise<void>;
  /** Resolves when the list's P and disagreement columns are computed. */
  scored: Promise<void>;
  manifest: Manifest | null;
  threads: number;
  crossOriginIsolated: boolean;
  explain(stamp: StampInput): Promise<Estimate & { classes: string[] }>;
  exact(stamp: StampInput, opts?: { onProgress?: (done: number, total: number) => void }): Promise<{ estimate: Estimate; exact: Exact }>;
  /** Dataset stamp i as {image, shape, label, id}. */
  stamp(i: number): { image: Float32Array; shape: [number, number, number]; label: number | null; id: string };
  /** Show dataset stamp i in the viewer. */
  show(i: number): Promise<void>;
}

function toStamp(s: Session, input: StampInput): PageStamp {
  let data: Float32Array;
  let shape: number[];
  if (input.shape) {
    data = Float32Array.from(input.image as ArrayLike<number>);
    shape = input.shape;
  } else ({ data, shape } = flattenNested(input.image, 'image'));
  const st = stampFromArray(data, shape, s.spec, 'image');
  const kind = checkStamp(st, s.spec);
  return { ...st, kind, label: input.label };
}

export function installApi(s: Session | null, error: Error | null, hooks?: { show(i: number): Promise<void> }): void {
  const fail = (): never => {
    throw new Error(`occmap: the page did not load: ${error?.message ?? 'unknown error'}`);
  };
  const api: OccmapApi = {
    ready: s ? Promise.resolve() : Promise.reject(error),
    get scored() {
      return s?.scored ?? Promise.resolve();
    },
    manifest: s?.manifest ?? null,
    threads: s?.threads ?? 0,
    crossOriginIsolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true,
    async explain(input) {
      if (!s) fail();
      const est = await s!.page.estimate(toStamp(s!, input));
      return { ...est, classes: s!.manifest.classifier.classes };
    },
    async exact(input, opts = {}) {
      if (!s) fail();
      const st = toStamp(s!, input);
      const estimate = await s!.page.estimate(st);
      return { estimate, exact: await s!.page.exact(st, estimate, opts.onProgress) };
    },
    stamp(i) {
      const ds = s?.ds;
      if (!ds) throw new Error('occmap: no dataset loaded');
      const [n, h, w, c] = ds.shape;
      if (!(Number.isInteger(i) && i >= 0 && i < n)) throw new RangeError(`occmap.stamp: index ${i} is not in 0..${n - 1}`);
      return { image: ds.images.slice(i * h * w * c, (i + 1) * h * w * c), shape: [h, w, c], label: ds.labels ? ds.labels[i] : null, id: ds.ids?.[i] ?? String(i) };
    },
    show: (i) => (hooks ? hooks.show(i) : Promise.reject(error)),
  };
  if (!s) api.ready.catch(() => undefined);
  (window as unknown as { occmap: OccmapApi }).occmap = api;
}
