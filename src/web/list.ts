/**
 * The dataset's stamps as a sortable table: index, the full object id, label, whether the
 * explainer held the stamp out, P(positive class) from the in-page classifier, and the
 * estimate-vs-exact disagreement (MSE against the stored exact map, or one computed here).
 * Filter by text, label and split; keyboard selection is the caller's.
 */
import { className, el, fmt } from './dom.js';

export interface Row {
  index: number;
  id: string;
  label: number | null;
  /** true: held out from the explainer; false: trained on; null: unknown. */
  heldOut: boolean | null;
  /** P(positive class) once scored. */
  p: number | null;
  predicted: number | null;
  /** MSE between the estimate and the exact map, once both are known. */
  disagreement: number | null;
}

export type SortKey = 'index' | 'id' | 'p' | 'disagreement';

export interface ListState {
  rows: Row[];
  view: number[];
  sort: { key: SortKey; dir: 1 | -1 };
  text: string;
  label: number | null;
  split: 'all' | 'held' | 'trained';
}

export function newListState(rows: Row[]): ListState {
  return { rows, view: rows.map((_, i) => i), sort: { key: 'index', dir: 1 }, text: '', label: null, split: 'all' };
}

/** Rows that pass the filters, in the chosen order (rows without a value last, either way). */
export function computeView(s: ListState): number[] {
  const text = s.text.toLowerCase();
  const keep = s.rows.filter(
    (r) =>
      (s.label === null || r.label === s.label) &&
      (s.split === 'all' || (s.split === 'held' ? r.heldOut === true : r.heldOut === false)) &&
      (!text || r.id.toLowerCase().includes(text) || String(r.index) === text),
  );
  const { key, dir } = s.sort;
  const value = (r: Row): number | string | null => (key === 'id' ? r.id : key === 'index' ? r.index : r[key]);
  keep.sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    if (va === null || vb === null) return va === vb ? a.index - b.index : va === null ? 1 : -1;
    const c = typeof va === 'string' ? va.localeCompare(vb as string) : (va as number) - (vb as number);
    return c !== 0 ? dir * c : a.index - b.index;
  });
  return keep.map((r) => r.index);
}

export interface ListOptions {
  classes: string[] | null;
  positive: number;
  onSelect: (pos: number) => void;
  onSort: (key: SortKey) => void;
}

export function renderHeader(table: HTMLTableElement, s: ListState, o: ListOptions): void {
  const th = (key: SortKey | null, text: string, title: string, cls = ''): HTMLElement => {
    const arrow = key && s.sort.key === key ? (s.sort.dir === 1 ? ' ▲' : ' ▼') : '';
    const attrs: Record<string, unknown> = { class: `${cls}${key ? ' sortable' : ''}`, title, scope: 'col' };
    if (key) attrs['aria-sort'] = s.sort.key === key ? (s.sort.dir === 1 ? 'ascending' : 'descending') : 'none';
    const cell = el('th', attrs, key ? el('button', { type: 'button', 'data-sort': key, onclick: () => o.onSort(key), text: text + arrow }) : text);
    return cell;
  };
  const pos = o.classes?.[o.positive] ?? `class ${o.positive}`;
  table.tHead!.replaceChildren(
    el(
      'tr',
      {},
      th('index', '#', 'row of the dataset', 'num'),
      th('id', 'id', 'object id'),
      th(null, 'label', 'label in the dataset'),
      th('p', `P(${className(pos)})`, `the classifier's probability of ${className(pos)}, computed in this page`, 'num'),
      th('disagreement', 'Δ', 'disagreement: mean squared difference between the estimated and the exact map (stored in the dataset, or computed here)', 'num'),
    ),
  );
}

export function renderRows(table: HTMLTableElement, s: ListState, o: ListOptions): void {
  const frag = document.createDocumentFragment();
  s.view.forEach((index, pos) => frag.append(rowElement(s.rows[index], pos, o)));
  table.tBodies[0].replaceChildren(frag);
}

function rowElement(r: Row, pos: number, o: ListOptions): HTMLElement {
  const lab = r.label === null ? '' : className(o.classes?.[r.label] ?? String(r.label));
  const split = r.heldOut === null ? null : el('span', { class: `split ${r.heldOut ? 'held' : 'trained'}`, title: r.heldOut ? 'held out from the explainer' : 'the explainer was trained on it', text: r.heldOut ? 'held out' : 'trained' });
  const agree = r.predicted !== null && r.label !== null ? (r.predicted === r.label ? 'ok' : 'no') : '';
  return el(
    'tr',
    { 'data-index': String(r.index), 'aria-selected': 'false', onclick: () => o.onSelect(pos) },
    el('td', { class: 'num idx', text: String(r.index) }),
    el('td', { class: 'id' }, el('span', { class: 'idtext', text: r.id }), split),
    el('td', { class: `lab${r.label === o.positive ? ' pos' : ''}` }, lab),
    el('td', { class: `num p ${agree}`, text: r.p === null ? '…' : r.p.toFixed(3), title: agree === 'no' ? 'the classifier disagrees with the label' : undefined }),
    el('td', { class: 'num d', text: r.disagreement === null ? '' : fmt(r.disagreement, 4) }),
  );
}

/** Refresh the score cells of rows already drawn (no re-render, selection and scroll kept). */
export function updateScores(table: HTMLTableElement, s: ListState, o: ListOptions, indices: Iterable<number>): void {
  for (const i of indices) {
    const tr = table.querySelector<HTMLElement>(`tr[data-index="${i}"]`);
    if (!tr) continue;
    const r = s.rows[i];
    const p = tr.querySelector<HTMLElement>('.p')!;
    p.textContent = r.p === null ? '…' : r.p.toFixed(3);
    p.className = `num p ${r.predicted !== null && r.label !== null ? (r.predicted === r.label ? 'ok' : 'no') : ''}`;
    tr.querySelector<HTMLElement>('.d')!.textContent = r.disagreement === null ? '' : fmt(r.disagreement, 4);
  }
  void o;
}
