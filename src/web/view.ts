/**
 * Drawing one stamp's results: channel panels (the classifier's and the explainer's channels
 * marked, the most important region outlined), the estimate, the exact map, their difference,
 * probabilities, metrics and timings.
 */
import { METRICS, METRIC_NAMES } from '../metrics/compare.js';
import { finiteRange } from '../viz/colormap.js';
import type { Estimate, Exact } from './compute.js';
import { importantMask, outlinePath } from './contour.js';
import { $, className, el, fmt, ms, prettyName } from './dom.js';
import type { Manifest } from './manifest.js';
import { hover, Panel } from './panels.js';

export interface ViewPanels {
  channels: Panel[];
  est: Panel;
  exact: Panel;
  diff: Panel;
  std: Panel | null;
  stored: Panel | null;
}

/** Grey-scale limits that ignore a few extreme pixels (cosmic rays, hot pixels). */
function percentileRange(values: ArrayLike<number>, p = 0.005): [number, number] {
  const s = Float64Array.from(Array.from(values).filter(Number.isFinite)).sort();
  if (s.length === 0) return [0, 1];
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))];
  const [lo, hi] = [at(p), at(1 - p)];
  return hi > lo ? [lo, hi] : [s[0], s[s.length - 1] + (s[0] === s[s.length - 1] ? 1 : 0)];
}

/**
 * `names`: the stamp's channels; `dataChannels`: the data channel each one is (to mark the ones
 * the classifier and the explainer read).
 */
export function buildViewer(m: Manifest, names: string[], dataChannels: number[], hasStd: boolean, hasStored: boolean): ViewPanels {
  hover.cursors = [];
  $('#empty').hidden = true;
  $('#content').hidden = false;
  const chBox = $('#channels');
  chBox.replaceChildren();
  const clf = m.classifier.channels;
  const expl = m.explainer.card.channels;
  const channels = names.map((n, k) => {
    const d = dataChannels[k];
    const byClf = !clf || clf.includes(d);
    const byExpl = !expl || expl.includes(d);
    const tag = byClf && byExpl ? 'classifier + explainer' : byClf ? 'classifier' : byExpl ? 'explainer' : undefined;
    const p = new Panel(chBox, prettyName(n), { tag, tagTitle: tag ? `the ${tag} read${tag.includes('+') ? '' : 's'} this channel` : undefined });
    if (tag) p.fig.classList.add('read');
    return p;
  });
  const mapBox = $('#maps');
  mapBox.replaceChildren();
  return {
    channels,
    est: new Panel(mapBox, 'Estimate', { id: 'panel-estimate' }),
    exact: new Panel(mapBox, 'Exact', { id: 'panel-exact' }),
    diff: new Panel(mapBox, 'Estimate − exact', { id: 'panel-diff' }),
    std: hasStd ? new Panel(mapBox, 'Ensemble std', { id: 'panel-std' }) : null,
    stored: hasStored ? new Panel(mapBox, 'Stored map', { id: 'panel-stored' }) : null,
  };
}

export function channelOf(image: Float32Array, c: number, k: number): Float32Array {
  const px = image.length / c;
  const out = new Float32Array(px);
  for (let p = 0; p < px; p++) out[p] = image[p * c + k];
  return out;
}

export function drawChannels(v: ViewPanels, image: Float32Array, h: number, w: number, c: number, names: string[]): void {
  hover.h = h;
  hover.w = w;
  hover.sources = [];
  names.forEach((n, k) => {
    const values = channelOf(image, c, k);
    const [lo, hi] = percentileRange(values);
    v.channels[k].draw(values, h, w, 'gray', lo, hi);
    v.channels[k].sub(`${fmt(lo, 2)} … ${fmt(hi, 2)}`);
    hover.set(prettyName(n).toLowerCase().replace('snr', 'SNR'), values);
  });
  $('#channels-hint').textContent = `${h}×${w}, ${names.length} channel${names.length > 1 ? 's' : ''}, grey scale clipped at the 0.5/99.5 percentiles · outline: the map's 10% most important pixels`;
}

/** Outline the map's most important 10% on every channel panel. */
export function outlineChannels(v: ViewPanels, m: Manifest, map: ArrayLike<number>, h: number, w: number, which: 'estimate' | 'exact'): void {
  const d = outlinePath(importantMask(map, m.exact.params.score, 0.1), h, w);
  for (const p of v.channels) {
    p.setOutline(d, h, w, `the 10% most important pixels of the ${which} map`);
    p.fig.dataset.outline = which;
  }
}

/** The range the estimate and exact maps share: [0,1] for seed-normalised maps. */
function mapRange(m: Manifest, ...maps: ArrayLike<number>[]): [number, number] {
  if (m.exact.params.normalize === 'seed') return [0, 1];
  const all = maps.flatMap((a) => Array.from(a));
  const [lo, hi] = finiteRange(all);
  return hi > lo ? [lo, hi] : [lo, lo + 1];
}

export function drawEstimate(v: ViewPanels, m: Manifest, r: Estimate, h: number, w: number): void {
  const [lo, hi] = mapRange(m, r.map);
  v.est.draw(r.map, h, w, 'viridis', lo, hi);
  v.est.sub(`1 inference · ${ms(r.timings.estimateMs)}${r.where === 'server' ? ' · server' : ''}`);
  hover.set('estimate', r.map);
  if (r.std && v.std) {
    const [, shi] = finiteRange(r.std);
    v.std.draw(r.std, h, w, 'viridis', 0, shi || 1);
    v.std.sub('per pixel, over members');
    hover.set('std', r.std);
  }
  const classes = m.classifier.classes;
  const top = r.predicted;
  $('#probs').replaceChildren(
    ...classes.flatMap((c, k) => [
      el('span', { class: `cls${k === top ? ' top' : ''}`, text: className(c) }),
      el('div', { class: `bar${k === top ? ' top' : ''}` }, el('span', { style: `width:${(100 * r.probabilities[k]).toFixed(1)}%` })),
      el('span', { class: 'pv', text: r.probabilities[k].toFixed(3) }),
    ]),
  );
  const verdict = $('#verdict');
  verdict.replaceChildren();
  if (r.label !== null) {
    const ok = r.label === top;
    verdict.append('label ', el('b', { text: className(classes[r.label] ?? String(r.label)) }), ' · ', el('span', { class: ok ? 'ok' : 'no', text: ok ? 'the classifier agrees' : 'the classifier disagrees' }));
  } else verdict.append('no label given');
  if (r.condition) verdict.append(` · explainer conditioned on ${className(classes[r.condition.class] ?? String(r.condition.class))} (${r.condition.source})`);
  const p = m.exact.params;
  $('#maps-hint').textContent = `${p.score === 'prob' ? 'low = the class probability drops when the patch hides this pixel (important)' : 'high = important'} · patch ${p.patch.join('×')}`;
}

/** Short names for the registry's metrics (its descriptions become the tooltips). */
const METRIC_LABELS: Record<string, [string, number]> = { mse: ['MSE', 5], mae: ['MAE', 4], ssim: ['SSIM', 3], pearson: ['Pearson', 3], spearman: ['Spearman', 3], spearmanTop: ['Spearman top 10%', 3], iou: ['IoU top 10%', 3] };

export function drawExact(v: ViewPanels, m: Manifest, est: Estimate, r: Exact, h: number, w: number, stored?: Float32Array): void {
  const [lo, hi] = mapRange(m, est.map, r.map);
  v.exact.done();
  v.exact.draw(r.map, h, w, 'viridis', lo, hi);
  v.exact.sub(`${r.inferences} inferences · ${ms(r.timings.exactMs)}${r.where === 'server' ? ' · server' : ''}`);
  const diff = est.map.map((x, p) => x - r.map[p]);
  let mx = 1e-3;
  for (const d of diff) mx = Math.max(mx, Math.abs(d));
  v.diff.done();
  v.diff.draw(diff, h, w, 'diverging', -mx, mx, 0);
  v.diff.sub(`max |Δ| ${fmt(mx, 3)}`);
  hover.set('exact', r.map);
  hover.set('Δ', diff);
  if (stored && v.stored) {
    let d = 0;
    for (let p = 0; p < stored.length; p++) d = Math.max(d, Math.abs(stored[p] - r.map[p]));
    v.stored.sub(d < 1e-5 ? '= exact map (< 1e-5)' : `max |Δ| to exact ${fmt(d, 4)}`);
  }
  $('#metrics').replaceChildren(
    el(
      'tbody',
      {},
      ...METRIC_NAMES.map((k) => {
        const [name, d] = METRIC_LABELS[k] ?? [k, 3];
        return el('tr', {}, el('td', { class: 'k' }, el('abbr', { title: METRICS[k].description, text: name })), el('td', { class: 'v', text: fmt(r.metrics[k], d) }));
      }),
    ),
  );
}

export function showTimings(m: Manifest, est: Estimate, ex: Exact | null, threads: { page: number; where: string }): void {
  const row = (k: string, n: string, v: string, cls = 'v'): HTMLElement => el('tr', {}, el('td', { class: 'k', text: k }), el('td', { class: 'n', text: n }), el('td', { class: cls, text: v }));
  const where = est.where === 'page' ? `in this page, ${threads.where}` : 'on the server';
  const rows = [
    row('Classifier', '1 inference', ms(est.timings.classifyMs)),
    row('Estimate', `1 inference, ${where}`, ms(est.timings.estimateMs)),
    row('Both', 'as seen here', ms(est.timings.totalMs)),
  ];
  if (ex) {
    rows.push(row('Exact map', `${ex.inferences} inferences, ${ex.where === 'page' ? 'Web Worker' : 'server worker'}`, ms(ex.timings.exactMs)));
    if (ex.timings.queueMs !== undefined) rows.push(row('Exact queue', 'waiting behind other maps', ms(ex.timings.queueMs)));
    rows.push(row('Exact ÷ estimate', 'time', est.timings.estimateMs > 0 ? `${Math.round(ex.timings.exactMs / est.timings.estimateMs)}×` : '–'));
  } else {
    rows.push(row('Exact map', `${m.exact.inferencesPerMap} inferences`, '…', 'v muted'));
  }
  $('#timings').replaceChildren(el('tbody', {}, ...rows));
}
