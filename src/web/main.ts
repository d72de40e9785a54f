/**
 * occmap viewer: browse a dataset's stamps (or drop one), see the classifier's answer, the
 * one-pass estimated occlusion map at once and the exact map when it is done. Both models run in
 * this page (onnxruntime-web): estimates on the page's thread, exact maps in a Web Worker; when
 * `occmap serve` serves the page, its API is an alternative (the "compute" switch).
 */
import type { Dataset } from '../data/dataset-bytes.js';
import { parseDataset } from '../data/dataset-bytes.js';
import { mse } from '../metrics/maps.js';
import type { StampSpec } from '../serve/stamp.js';
import { installApi } from './api.js';
import { PageBackend, ServerBackend, type Backend, type Estimate, type Exact, type PageStamp } from './compute.js';
import { $, el } from './dom.js';
import { availableThreads, configureOrt, loadWebExplainer, WebPredictor } from './engine.js';
import { ExactClient } from './exact-client.js';
import { computeView, newListState, renderHeader, renderRows, updateScores, type ListOptions, type ListState, type Row, type SortKey } from './list.js';
import type { Manifest } from './manifest.js';
import { checkRange } from './range.js';
import { readUpload } from './upload.js';
import { buildViewer, drawChannels, drawEstimate, drawExact, outlineChannels, showTimings, type ViewPanels } from './view.js';

export interface Session {
  manifest: Manifest;
  base: URL;
  page: PageBackend;
  server: ServerBackend | null;
  threads: number;
  spec: StampSpec;
  ds: Dataset | null;
  list: ListState | null;
  listOpts: ListOptions | null;
  sel: number;
  token: number;
  ctrl: AbortController | null;
  mode: 'page' | 'server';
  results: Map<number, { est?: Estimate; exact?: Exact; mode: string }>;
  scored: Promise<void>;
}

const setStatus = (text: string, err = false): void => {
  const s = $('#status');
  s.textContent = text;
  s.classList.toggle('err', err);
};

async function fetchJson<T>(url: URL): Promise<T> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url.pathname}: ${res.status} ${res.statusText}`);
  return (await res.json()) as T;
}

async function fetchBytes(url: URL, onProgress?: (f: number) => void): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new Error(`${url.pathname}: ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length')) || 0;
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    got += value.length;
    if (total) onProgress?.(got / total);
  }
  const out = new Uint8Array(got);
  let o = 0;
  for (const p of parts) (out.set(p, o), (o += p.length));
  return out;
}

function modelsHeader(s: Session): void {
  const m = s.manifest;
  const card = m.explainer.card;
  const variant = `${card.variant ?? 'explainer'}${card.ensemble ? ` ×${card.ensemble}` : ''}${card.condition !== 'none' ? `, ${card.condition}` : ''}`;
  const iso = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated ? 'cross-origin isolated' : 'not isolated: 1 thread';
  const parts = [
    el('span', {}, 'classifier ', el('b', { text: m.classifier.name })),
    el('span', {}, 'explainer ', el('b', { text: m.explainer.name }), ` (${variant})`),
    el('span', {}, 'exact ', el('b', { text: `${m.exact.inferencesPerMap} inferences` })),
    el('span', { title: iso }, 'onnxruntime-web ', el('b', { text: `${s.threads} thread${s.threads === 1 ? '' : 's'}` })),
  ];
  if (m.data) parts.push(el('span', {}, 'data ', el('b', { text: m.data.name }), ` · ${m.data.shape[0]} stamps`));
  $('#models').replaceChildren(...parts);
  if (s.server) {
    const sw = $('#mode');
    sw.hidden = false;
    for (const b of sw.querySelectorAll<HTMLButtonElement>('button')) {
      b.addEventListener('click', () => {
        s.mode = b.dataset.mode as 'page' | 'server';
        for (const o of sw.querySelectorAll('button')) o.setAttribute('aria-pressed', String(o === b));
        if (s.sel >= 0) void showDatasetStamp(s, s.list!.view[s.sel]);
      });
    }
  }
}

async function loadSession(): Promise<Session> {
  const base = new URL('./', location.href);
  const manifest = await fetchJson<Manifest>(new URL('occmap.json', base));
  const threads = availableThreads();
  const ortBase = new URL(manifest.ort.base, base).href;
  configureOrt(ortBase, threads);
  const clfUrl = new URL(manifest.classifier.url, base).href;
  const [predictor, explainer] = await Promise.all([
    WebPredictor.load(manifest.classifier, clfUrl, threads),
    loadWebExplainer(manifest.explainer, manifest.explainer.urls.map((u) => new URL(u, base).href), threads),
  ]);
  const exact = new ExactClient(new URL('exact-worker.js', base).href, manifest.classifier, clfUrl, ortBase, threads);
  const [h, w, mc] = manifest.classifier.inputShape;
  const spec: StampSpec = { h, w, modelChannels: mc, dataChannels: manifest.classifier.channels, datasetChannels: manifest.data?.shape[3] };
  return {
    manifest,
    base,
    page: new PageBackend(manifest, predictor, explainer, exact),
    server: manifest.server ? new ServerBackend(new URL(manifest.server.explain, base).href) : null,
    threads,
    spec,
    ds: null,
    list: null,
    listOpts: null,
    sel: -1,
    token: 0,
    ctrl: null,
    mode: 'page',
    results: new Map(),
    scored: Promise.resolve(),
  };
}

// ---------------------------------------------------------------- the list

function buildChips(s: Session): void {
  const m = s.manifest.data!;
  const box = $('#label-filter');
  const chip = (text: string, on: boolean, f: () => void, group: string): HTMLElement =>
    el('button', {
      type: 'button', class: 'chip', role: 'radio', 'aria-checked': String(on), 'data-group': group, text,
      onclick: (ev: Event) => {
        for (const c of box.querySelectorAll(`[data-group="${group}"]`)) c.setAttribute('aria-checked', String(c === ev.currentTarget));
        f();
        refreshList(s, true);
      },
    });
  if (m.hasLabels) {
    const classes = m.classes ?? s.manifest.classifier.classes;
    box.append(chip('all', true, () => (s.list!.label = null), 'label'), ...classes.map((c, k) => chip(c.replace(/_/g, ' '), false, () => (s.list!.label = k), 'label')));
  }
  if (m.split.basis !== 'unknown' && m.split.heldOut.length) {
    box.append(el('span', { class: 'chip-sep' }));
    box.append(chip('any split', true, () => (s.list!.split = 'all'), 'split'), chip('held out', false, () => (s.list!.split = 'held'), 'split'));
    if (m.split.basis === 'file') box.append(chip('trained on', false, () => (s.list!.split = 'trained'), 'split'));
  }
}

function refreshList(s: Session, reselect: boolean): void {
  const L = s.list!;
  const current = L.view[s.sel];
  L.view = computeView(L);
  const table = $<HTMLTableElement>('#stamps');
  renderHeader(table, L, s.listOpts!);
  renderRows(table, L, s.listOpts!);
  const keep = current !== undefined ? L.view.indexOf(current) : -1;
  s.sel = keep;
  markSelected(s, false);
  if (reselect && keep < 0 && L.view.length) select(s, 0);
  $('#count').textContent = `${L.view.length} of ${L.rows.length} stamps`;
}

function markSelected(s: Session, scroll = true): void {
  const table = $<HTMLTableElement>('#stamps');
  for (const tr of table.querySelectorAll('tr[aria-selected="true"]')) tr.setAttribute('aria-selected', 'false');
  const tr = table.tBodies[0].rows[s.sel];
  if (tr) {
    tr.setAttribute('aria-selected', 'true');
    if (scroll) tr.scrollIntoView({ block: 'nearest' });
  }
}

function select(s: Session, pos: number): void {
  if (!s.list || pos < 0 || pos >= s.list.view.length) return;
  s.sel = pos;
  markSelected(s);
  void showDatasetStamp(s, s.list.view[pos]);
}

function positiveClass(m: Manifest): number {
  return m.classifier.numClasses === 2 ? 1 : m.classifier.numClasses - 1;
}

async function loadData(s: Session): Promise<void> {
  const m = s.manifest.data!;
  $('#browse').hidden = false;
  $('#count').textContent = `loading ${m.name} (${(m.bytes / 1e6).toFixed(1)} MB)…`;
  const bytes = await fetchBytes(new URL(m.url, s.base), (f) => ($('#count').textContent = `loading ${m.name}… ${Math.round(100 * f)}%`));
  s.ds = await parseDataset(m.name, bytes);
  const held = new Set(m.split.heldOut);
  const rows: Row[] = Array.from({ length: s.ds.shape[0] }, (_, i) => ({
    index: i,
    id: s.ds!.ids?.[i] ?? String(i),
    label: s.ds!.labels ? s.ds!.labels[i] : null,
    heldOut: m.split.basis === 'file' ? held.has(i) : m.split.basis === 'ids' ? (held.has(i) ? true : null) : null,
    p: null,
    predicted: null,
    disagreement: null,
  }));
  s.list = newListState(rows);
  s.listOpts = {
    classes: m.classes ?? s.manifest.classifier.classes,
    positive: positiveClass(s.manifest),
    onSelect: (pos) => select(s, pos),
    onSort: (key: SortKey) => {
      const L = s.list!;
      L.sort = L.sort.key === key ? { key, dir: L.sort.dir === 1 ? -1 : 1 } : { key, dir: key === 'p' || key === 'disagreement' ? -1 : 1 };
      refreshList(s, false);
    },
  };
  buildChips(s);
  refreshList(s, false);
  s.scored = scoreList(s);
}

/** P(positive) and, against the stored maps, the estimate's disagreement, for every row. */
async function scoreList(s: Session): Promise<void> {
  const ds = s.ds!;
  const [, h, w] = ds.shape;
  const k = s.manifest.classifier.numClasses;
  const pos = positiveClass(s.manifest);
  const table = $<HTMLTableElement>('#stamps');
  await s.page.scoreAll(ds.images, ds.shape, ds.labels, (from, to, probs, maps) => {
    for (let i = from; i < to; i++) {
      const r = s.list!.rows[i];
      const p = probs.subarray((i - from) * k, (i - from + 1) * k);
      r.p = p[pos];
      r.predicted = p.indexOf(Math.max(...p));
      if (ds.maps) r.disagreement = mse(maps.subarray((i - from) * h * w, (i - from + 1) * h * w), ds.maps.subarray(i * h * w, (i + 1) * h * w));
    }
    updateScores(table, s.list!, s.listOpts!, Array.from({ length: to - from }, (_, j) => from + j));
    $('#count').textContent = to < ds.shape[0] ? `${s.list!.view.length} of ${ds.shape[0]} stamps · scoring ${to}/${ds.shape[0]}` : `${s.list!.view.length} of ${ds.shape[0]} stamps`;
  });
}

// ---------------------------------------------------------------- one stamp

function splitBadge(s: Session, index: number | null): void {
  const b = $('#split-badge');
  const row = index !== null ? s.list?.rows[index] : undefined;
  b.hidden = !row || row.heldOut === null;
  if (!row || row.heldOut === null) return;
  b.textContent = row.heldOut ? 'held out from the explainer' : 'explainer trained on it';
  b.className = `badge ${row.heldOut ? 'held' : 'trained'}`;
  b.title = s.manifest.data!.split.note;
}

function backend(s: Session): Backend {
  return s.mode === 'server' && s.server ? s.server : s.page;
}

/**
 * Estimate first, then the exact map. A newer stamp aborts the older one's exact map (the
 * worker stops at its next classifier call); results are kept per dataset row and mode.
 */
async function explainStamp(s: Session, token: number, st: PageStamp, v: ViewPanels, index: number | null, stored?: Float32Array): Promise<void> {
  s.ctrl?.abort();
  const ctrl = new AbortController();
  s.ctrl = ctrl;
  const be = backend(s);
  const key = index ?? -1;
  let entry = index !== null ? s.results.get(key) : undefined;
  if (!entry || entry.mode !== be.where) entry = { mode: be.where };
  if (index !== null) s.results.set(key, entry);
  const { h, w } = st;
  try {
    if (!entry.est) {
      setStatus('estimating…');
      entry.est = await be.estimate(st);
    }
    if (token !== s.token) return;
    const est = entry.est;
    drawEstimate(v, s.manifest, est, h, w);
    outlineChannels(v, s.manifest, est.map, h, w, 'estimate');
    const threads = { page: s.threads, where: `${s.threads} thread${s.threads === 1 ? '' : 's'}` };
    if (!entry.exact) {
      showTimings(s.manifest, est, null, threads);
      $('#metrics').replaceChildren(el('tbody', {}, el('tr', {}, el('td', { class: 'muted', text: 'waiting for the exact map…' }))));
      setStatus(`estimate ready · exact map ${be.where === 'page' ? 'computing in this page' : 'on its way'}`);
      v.exact.clear();
      v.diff.clear();
      v.exact.pending(`computing the exact map (${s.manifest.exact.inferencesPerMap} inferences)…`);
      v.diff.pending('waits for the exact map', false);
      entry.exact = await be.exact(st, est, (done, total) => {
        v.exact.pending(`computing the exact map… ${done}/${total}`);
        v.exact.progress(done / total);
      }, ctrl.signal);
    }
    if (token !== s.token) return;
    drawExact(v, s.manifest, est, entry.exact, h, w, stored);
    outlineChannels(v, s.manifest, entry.exact.map, h, w, 'exact');
    showTimings(s.manifest, est, entry.exact, threads);
    if (index !== null && s.list && !stored) {
      s.list.rows[index].disagreement = entry.exact.metrics.mse;
      updateScores($<HTMLTableElement>('#stamps'), s.list, s.listOpts!, [index]);
    }
    setStatus(`done · estimate ${fmtMs(est.timings.estimateMs)}, exact map ${fmtMs(entry.exact.timings.exactMs)} (${est.where === 'page' ? 'in this page' : 'on the server'})`);
  } catch (e) {
    if ((e as Error).name === 'AbortError' || token !== s.token) return;
    setStatus((e as Error).message, true);
    v.exact.done();
    v.diff.done();
  }
}

const fmtMs = (v: number): string => (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v >= 10 ? 0 : 1)} ms`);

function dataStamp(ds: Dataset, i: number): PageStamp {
  const [, h, w, c] = ds.shape;
  return { image: ds.images.slice(i * h * w * c, (i + 1) * h * w * c), h, w, c, kind: 'data', label: ds.labels ? ds.labels[i] : undefined };
}

async function showDatasetStamp(s: Session, index: number): Promise<void> {
  const token = ++s.token;
  const ds = s.ds!;
  const m = s.manifest.data!;
  const st = dataStamp(ds, index);
  const { h, w, c } = st;
  const stored = ds.maps ? ds.maps.slice(index * h * w, (index + 1) * h * w) : undefined;
  const v = buildViewer(s.manifest, m.channels, Array.from({ length: c }, (_, k) => k), !!s.manifest.explainer.card.ensemble, !!stored);
  $('#title').replaceChildren(el('span', { class: 'full-id', text: s.list!.rows[index].id }), el('span', { class: 'idx', text: `#${index}` }));
  const badge = $('#label-badge');
  badge.hidden = st.label === undefined;
  if (st.label !== undefined) {
    badge.textContent = (m.classes?.[st.label] ?? `class ${st.label}`).replace(/_/g, ' ');
    badge.classList.toggle('pos', st.label === positiveClass(s.manifest));
  }
  splitBadge(s, index);
  $('#range-warning').hidden = true;
  drawChannels(v, st.image, h, w, c, m.channels);
  if (stored && v.stored) {
    v.stored.draw(stored, h, w, 'viridis', 0, s.manifest.exact.params.normalize === 'seed' ? 1 : Math.max(...stored));
    v.stored.sub('from the dataset');
  }
  await explainStamp(s, token, st, v, index, stored);
}

async function showUpload(s: Session, file: File): Promise<void> {
  const token = ++s.token;
  s.sel = -1;
  markSelected(s, false);
  setStatus('reading…');
  let up;
  try {
    up = await readUpload(file.name, new Uint8Array(await file.arrayBuffer()), s.spec);
  } catch (e) {
    setStatus((e as Error).message, true);
    return;
  }
  if (token !== s.token) return;
  const m = s.manifest;
  const dataChannels = up.kind === 'data' ? Array.from({ length: up.c }, (_, k) => k) : (m.classifier.channels ?? Array.from({ length: up.c }, (_, k) => k));
  const names = dataChannels.map((d) => m.data?.channels[d] ?? m.classifier.channelNames?.[dataChannels.indexOf(d)] ?? `channel ${d}`);
  const v = buildViewer(m, names, dataChannels, !!m.explainer.card.ensemble, false);
  $('#title').replaceChildren(el('span', { class: 'full-id', text: file.name }), el('span', { class: 'idx', text: 'upload' }));
  $('#label-badge').hidden = true;
  splitBadge(s, null);
  const warn = $('#range-warning');
  const checks = m.training ? checkRange(up.image, up.c, dataChannels, m.training.channels).warnings : [];
  const notes = [...up.notes];
  warn.hidden = checks.length === 0 && notes.length === 0;
  warn.replaceChildren(
    ...(checks.length ? [el('b', { text: `Outside the training data's range (${m.training!.source}): ` }), checks.join('; '), '. The classifier and the explainer never saw such values: read both maps with care. '] : []),
    ...(notes.length ? [notes.join('; ')] : []),
  );
  drawChannels(v, up.image, up.h, up.w, up.c, names);
  await explainStamp(s, token, { image: up.image, h: up.h, w: up.w, c: up.c, kind: up.kind }, v, null);
}

// ---------------------------------------------------------------- wiring

function wireUpload(s: Session): void {
  const drop = $('#drop');
  const input = $<HTMLInputElement>('#file');
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') (e.preventDefault(), input.click());
  });
  input.addEventListener('change', () => {
    if (input.files?.[0]) void showUpload(s, input.files[0]);
    input.value = '';
  });
  for (const ev of ['dragenter', 'dragover']) drop.addEventListener(ev, (e) => (e.preventDefault(), drop.classList.add('over')));
  for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('over'));
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => {
    e.preventDefault();
    const f = e.dataTransfer?.files?.[0];
    if (f) void showUpload(s, f);
  });
}

function wireKeys(s: Session): void {
  document.addEventListener('keydown', (e) => {
    const typing = e.target instanceof HTMLInputElement;
    if (e.key === '/' && !typing) return (e.preventDefault(), $('#search').focus());
    if (typing) {
      if (e.key === 'Escape' || e.key === 'Enter') (e.target as HTMLInputElement).blur();
      if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    }
    if (e.metaKey || e.ctrlKey || e.altKey) return;
    const n = s.list?.view.length ?? 0;
    const moves: Record<string, number> = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1, PageDown: 10, PageUp: -10 };
    if (e.key in moves && n) {
      e.preventDefault();
      const next = s.sel < 0 ? 0 : Math.min(n - 1, Math.max(0, s.sel + moves[e.key]));
      if (next !== s.sel) select(s, next);
    } else if (e.key === 'Home' && !typing && n) (e.preventDefault(), select(s, 0));
    else if (e.key === 'End' && !typing && n) (e.preventDefault(), select(s, n - 1));
    else if (e.key === 'n' && !typing) toggleNight();
  });
  $('#search').addEventListener('input', (e) => {
    if (!s.list) return;
    s.list.text = (e.target as HTMLInputElement).value.trim();
    refreshList(s, false);
  });
}

function toggleNight(): void {
  const on = document.documentElement.classList.toggle('night');
  try {
    localStorage.setItem('occmap-night', on ? '1' : '0');
  } catch {
    // private mode: not remembered
  }
}

async function main(): Promise<void> {
  $('#night').addEventListener('click', toggleNight);
  try {
    if (localStorage.getItem('occmap-night') === '1') document.documentElement.classList.add('night');
  } catch {
    // private mode
  }
  if (location.protocol === 'file:') {
    // Browsers refuse fetch() and module workers on file:// pages: the models cannot load.
    // index.html's classic script has already said so (Chromium does not even run this module).
    installApi(null, new Error('opened from file://'));
    return;
  }
  let s: Session;
  try {
    s = await loadSession();
  } catch (e) {
    $('#models').textContent = `cannot load the models: ${(e as Error).message}`;
    installApi(null, e as Error);
    return;
  }
  modelsHeader(s);
  wireUpload(s);
  wireKeys(s);
  if (s.manifest.data) {
    try {
      await loadData(s);
    } catch (e) {
      setStatus(`data: ${(e as Error).message}`, true);
    }
  } else {
    $('#nodata').hidden = false;
  }
  installApi(s, null, { show: (i) => showDatasetStamp(s, i) });
  if (s.list?.view.length && s.sel < 0) select(s, 0);
}

void main();
