/**
 * The report's charts: Vega-Lite specifications rendered headless to SVG by Vega (pure JS, no
 * canvas, no browser), so the HTML report embeds them inline and opens offline.
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';

export type VlSpec = Record<string, unknown>;

const FONT = 'Helvetica, Arial, sans-serif';

const CONFIG = {
  font: FONT,
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#e6e6e6' },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  header: { labelFontSize: 11, titleFontSize: 12 },
  title: { fontSize: 13, anchor: 'start' },
  view: { stroke: '#ccc' },
};

/** A Vega-Lite spec as an SVG document string. */
export async function renderSvg(spec: VlSpec): Promise<string> {
  const compiled = vl.compile({ config: CONFIG, background: 'white', ...spec } as unknown as vl.TopLevelSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export interface CurveRun {
  name: string;
  history: { epoch: number; loss: number; valLoss: number }[];
  bestEpoch?: number;
}

/** Train and validation loss per epoch, one small panel per run. */
export function lossCurvesSpec(runs: CurveRun[], o: { columns?: number; title?: string; yTitle?: string } = {}): VlSpec {
  const values: Record<string, unknown>[] = [];
  for (const r of runs) {
    for (const h of r.history) {
      values.push({ run: r.name, epoch: h.epoch, loss: h.loss, split: 'train' });
      values.push({ run: r.name, epoch: h.epoch, loss: h.valLoss, split: 'validation' });
    }
  }
  return {
    ...(o.title ? { title: o.title } : {}),
    data: { values },
    facet: { field: 'run', type: 'nominal', title: null, sort: runs.map((r) => r.name) },
    columns: o.columns ?? 3,
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 210,
      height: 130,
      mark: { type: 'line', point: { size: 18 } },
      encoding: {
        x: { field: 'epoch', type: 'quantitative', title: 'epoch', axis: { tickMinStep: 1 } },
        y: { field: 'loss', type: 'quantitative', title: o.yTitle ?? 'MSE loss (24x24)', scale: { zero: false } },
        color: { field: 'split', type: 'nominal', title: null, scale: { domain: ['train', 'validation'], range: ['#1f77b4', '#d62728'] } },
      },
    },
  };
}

export interface BarRow {
  group: string;
  bar: string;
  value: number;
  source: string;
}

/** Grouped bars (e.g. val MSE per model and data), ours and the seed's side by side. */
export function groupedBarSpec(rows: BarRow[], o: { title?: string; yTitle: string; groupTitle?: string }): VlSpec {
  return {
    ...(o.title ? { title: o.title } : {}),
    data: { values: rows },
    facet: { column: { field: 'source', type: 'nominal', title: null } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 260,
      height: 180,
      mark: 'bar',
      encoding: {
        x: { field: 'group', type: 'nominal', title: o.groupTitle ?? null, axis: { labelAngle: 0 } },
        xOffset: { field: 'bar', type: 'nominal' },
        y: { field: 'value', type: 'quantitative', title: o.yTitle },
        color: { field: 'bar', type: 'nominal', title: null },
        tooltip: [{ field: 'bar' }, { field: 'group' }, { field: 'value', format: '.5f' }],
      },
    },
  };
}

export interface RepeatRow {
  model: string;
  source: string;
  value: number;
}

/** Each repeat's val MSE as a point, with the mean and a +-1 std bar per model. */
export function repeatsSpec(rows: RepeatRow[], o: { title?: string; yTitle: string }): VlSpec {
  const enc = {
    x: { field: 'model', type: 'nominal', title: null, axis: { labelAngle: 0 } },
  };
  return {
    ...(o.title ? { title: o.title } : {}),
    data: { values: rows },
    facet: { column: { field: 'source', type: 'nominal', title: null } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 220,
      height: 180,
      layer: [
        { mark: { type: 'errorbar', extent: 'stdev', ticks: true }, encoding: { ...enc, y: { field: 'value', type: 'quantitative', title: o.yTitle, scale: { zero: false } } } },
        { mark: { type: 'point', filled: true, opacity: 0.6 }, encoding: { ...enc, y: { field: 'value', type: 'quantitative' } } },
        { mark: { type: 'tick', color: 'black', thickness: 2, size: 22 }, encoding: { ...enc, y: { field: 'value', type: 'quantitative', aggregate: 'mean' } } },
      ],
    },
  };
}

/** Horizontal bars of one metric for several methods (explainer vs baselines). */
export function metricBarsSpec(rows: { method: string; model: string; value: number }[], o: { title?: string; xTitle: string }): VlSpec {
  return {
    ...(o.title ? { title: o.title } : {}),
    data: { values: rows },
    width: 320,
    height: { step: 14 },
    mark: 'bar',
    encoding: {
      y: { field: 'model', type: 'nominal', title: null },
      yOffset: { field: 'method', type: 'nominal' },
      x: { field: 'value', type: 'quantitative', title: o.xTitle },
      color: { field: 'method', type: 'nominal', title: null },
    },
  };
}
