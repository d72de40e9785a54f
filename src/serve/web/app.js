// occmap viewer: browse a dataset's stamps (or upload one), show the classifier's answer, the
// one-pass estimated occlusion map at once and the exact map when the server has computed it.
// Plain ES module, no build step; every heatmap is drawn on a canvas at one pixel per map
// pixel and scaled up by CSS with nearest-neighbour sampling, so stamp pixels stay visible.

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
};

// ---------- colour scales ----------

// Viridis, the same degree-6 fit as src/viz/heatmap.ts (within ~2/255 of matplotlib's table).
const VIRIDIS_C = [
  [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
  [0.1050930431085774, 1.404613529898575, 1.384590162594685],
  [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
  [-4.634230498983486, -5.799100973351585, -19.33244095627987],
  [6.228269936347081, 14.17993336680509, 56.69055260068105],
  [4.776384997670288, -13.74514537774601, -65.35303263337234],
  [-5.435455855934631, 4.645852612178535, 26.3124352495832],
];
function viridis(t) {
  const out = [0, 0, 0];
  for (let k = 0; k < 3; k++) {
    let v = VIRIDIS_C[6][k];
    for (let d = 5; d >= 0; d--) v = v * t + VIRIDIS_C[d][k];
    out[k] = Math.round(255 * Math.min(1, Math.max(0, v)));
  }
  return out;
}
// Diverging with a dark centre (fits the dark page): cyan-blue below zero, orange-red above.
const DIVERGING_STOPS = [
  [0, [120, 214, 255]],
  [0.25, [38, 110, 190]],
  [0.5, [18, 20, 26]],
  [0.75, [196, 64, 48]],
  [1, [255, 190, 110]],
];
function diverging(t) {
  for (let i = 1; i < DIVERGING_STOPS.length; i++) {
    const [t1, c1] = DIVERGING_STOPS[i];
    if (t <= t1) {
      const [t0, c0] = DIVERGING_STOPS[i - 1];
      const f = (t - t0) / (t1 - t0);
      return c0.map((v, k) => Math.round(v + f * (c1[k] - v)));
    }
  }
  return DIVERGING_STOPS[DIVERGING_STOPS.length - 1][1];
}
const grey = (t) => {
  const v = Math.round(255 * t);
  return [v, v, v];
};
const LUTS = {};
function lut(name) {
  if (!LUTS[name]) {
    const f = name === 'viridis' ? viridis : name === 'diverging' ? diverging : grey;
    LUTS[name] = Array.from({ length: 256 }, (_, i) => f(i / 255));
  }
  return LUTS[name];
}

const fmt = (v, d = 3) => (v == null || Number.isNaN(v) ? '–' : Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(d));
const ms = (v) => (v == null ? '–' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : v >= 10 ? `${v.toFixed(0)} ms` : `${v.toFixed(2)} ms`);

function finiteRange(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return lo <= hi ? [lo, hi] : [0, 1];
}
function percentileRange(values, p = 0.005) {
  const s = Float64Array.from(values.filter(Number.isFinite)).sort();
  if (s.length === 0) return [0, 1];
  const at = (q) => s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))];
  const lo = at(p);
  const hi = at(1 - p);
  return hi > lo ? [lo, hi] : [s[0], s[s.length - 1] + (s[0] === s[s.length - 1] ? 1 : 0)];
}

// ---------- panels ----------

const hover = { h: 0, w: 0, frames: [], sources: [] };

function makePanel(parent, title) {
  const canvas = el('canvas');
  const cursor = el('div', { class: 'cursor' });
  const frame = el('div', { class: 'frame' }, canvas, cursor);
  const ttl = el('span', { class: 'ttl', text: title });
  const sub = el('span', { class: 'sub' });
  const legendBar = el('canvas', { width: '128', height: '1' });
  const ticks = el('div', { class: 'ticks' });
  const legend = el('div', { class: 'legend' }, legendBar, ticks);
  const fig = el('figure', { class: 'panel' }, frame, el('figcaption', {}, ttl, sub), legend);
  parent.append(fig);
  let pending = null;
  frame.addEventListener('mousemove', (ev) => {
    if (!hover.w) return;
    const r = frame.getBoundingClientRect();
    const x = Math.floor(((ev.clientX - r.left) / r.width) * hover.w);
    const y = Math.floor(((ev.clientY - r.top) / r.height) * hover.h);
    showCursor(Math.min(hover.w - 1, Math.max(0, x)), Math.min(hover.h - 1, Math.max(0, y)));
  });
  frame.addEventListener('mouseleave', () => showCursor(-1, -1));
  hover.frames.push({ frame, cursor });
  const panel = {
    fig,
    draw(values, h, w, cmap, lo, hi) {
      canvas.width = w;
      canvas.height = h;
      frame.style.aspectRatio = `${w} / ${h}`;
      const ctx = canvas.getContext('2d');
      const img = ctx.createImageData(w, h);
      const table = lut(cmap);
      const span = hi > lo ? hi - lo : 1;
      for (let p = 0; p < h * w; p++) {
        const t = (values[p] - lo) / span;
        const c = table[Math.round(255 * Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)))];
        img.data[4 * p] = c[0];
        img.data[4 * p + 1] = c[1];
        img.data[4 * p + 2] = c[2];
        img.data[4 * p + 3] = Number.isFinite(values[p]) ? 255 : 0;
      }
      ctx.putImageData(img, 0, 0);
      panel.legend(cmap, lo, hi);
      fig.dataset.drawn = '1';
    },
    legend(cmap, lo, hi, mid) {
      const ctx = legendBar.getContext('2d');
      const table = lut(cmap);
      const img = ctx.createImageData(128, 1);
      for (let i = 0; i < 128; i++) {
        const c = table[Math.round((i / 127) * 255)];
        img.data.set([c[0], c[1], c[2], 255], 4 * i);
      }
      ctx.putImageData(img, 0, 0);
      const m = mid ?? (lo + hi) / 2;
      ticks.replaceChildren(el('span', { text: fmt(lo, 2) }), el('span', { text: fmt(m, 2) }), el('span', { text: fmt(hi, 2) }));
    },
    sub(text) {
      sub.textContent = text;
    },
    pending(text, withBar = true) {
      if (!pending) {
        const bar = el('span');
        pending = { node: el('div', { class: 'pending' }, el('div', { class: 'spinner' }), el('div', { class: 'ptext' }), withBar ? el('div', { class: 'progress' }, bar) : null), bar };
        frame.append(pending.node);
      }
      pending.node.querySelector('.ptext').textContent = text;
      return pending;
    },
    progress(f) {
      if (pending) pending.bar.style.width = `${Math.round(100 * Math.min(1, f))}%`;
    },
    done() {
      pending?.node.remove();
      pending = null;
    },
    clear() {
      canvas.width = 1;
      canvas.height = 1;
      canvas.getContext('2d').clearRect(0, 0, 1, 1);
      delete fig.dataset.drawn;
      ticks.replaceChildren();
      legendBar.getContext('2d').clearRect(0, 0, 128, 1);
    },
  };
  return panel;
}

function showCursor(x, y) {
  for (const { cursor } of hover.frames) {
    if (x < 0 || !cursor.isConnected) {
      cursor.style.display = 'none';
      continue;
    }
    cursor.style.display = 'block';
    cursor.style.left = `${(x / hover.w) * 100}%`;
    cursor.style.top = `${(y / hover.h) * 100}%`;
    cursor.style.width = `${100 / hover.w}%`;
    cursor.style.height = `${100 / hover.h}%`;
  }
  const out = $('#readout');
  if (x < 0) {
    out.textContent = 'hover a pixel to read its values';
    return;
  }
  const parts = [`<b>x ${x}, y ${y}</b>`];
  for (const s of hover.sources) if (s.values) parts.push(`${s.name} <b>${fmt(s.values[y * hover.w + x], s.digits ?? 3)}</b>`);
  out.innerHTML = parts.join(' · ');
}

// ---------- API ----------

async function api(path, opts = {}) {
  const res = await fetch(path, opts);
  let body;
  try {
    body = await res.json();
  } catch {
    throw new Error(`${res.status} ${res.statusText}`);
  }
  if (!res.ok) throw new Error(body?.error ?? `${res.status} ${res.statusText}`);
  return body;
}

const flatRows = (rows) => rows.flat();
function channelOf(image, k) {
  return image.flatMap((row) => row.map((px) => px[k]));
}

// ---------- state ----------

const state = {
  models: null,
  items: [],
  total: 0,
  loading: false,
  view: [],
  sel: -1,
  labelFilter: null,
  text: '',
  token: 0,
  results: new Map(), // stamp index -> { est, exact }
  ctrl: null,
};

const ui = {};

function setStatus(text, err = false) {
  const s = $('#status');
  s.textContent = text;
  s.classList.toggle('err', err);
}

function modelsHeader(m) {
  const parts = [];
  const name = (p) => p.split('/').filter(Boolean).pop();
  parts.push(el('span', {}, 'classifier ', el('b', { text: name(m.classifier.path) }), ` · ${m.classifier.engine}`));
  const card = m.explainer.card;
  const variant = `${card.variant ?? 'explainer'}${card.ensemble ? ` ×${card.ensemble}` : ''}${card.condition && card.condition !== 'none' ? `, ${card.condition}` : ''}`;
  parts.push(el('span', {}, 'explainer ', el('b', { text: name(m.explainer.path) }), ` (${variant}) · ${m.explainer.engine}`));
  parts.push(el('span', {}, 'exact ', el('b', { text: `${m.exact.inferencesPerMap} inferences` }), ` · ${m.exact.engine}`));
  if (m.data) parts.push(el('span', {}, 'data ', el('b', { text: name(m.data.path) }), ` · ${m.data.shape[0]} stamps`));
  $('#models').replaceChildren(...parts);
}

// ---------- the stamp list ----------

async function loadMore() {
  if (state.loading || (state.total && state.items.length >= state.total)) return;
  state.loading = true;
  try {
    const page = await api(`/api/stamps?offset=${state.items.length}&limit=1000`);
    state.total = page.total;
    state.classes = page.classes;
    state.items.push(...page.items);
    if (!ui.chipsBuilt) buildChips(page);
    applyFilter(false);
  } catch (e) {
    setStatus(`stamp list: ${e.message}`, true);
  } finally {
    state.loading = false;
  }
}

function buildChips(page) {
  ui.chipsBuilt = true;
  const box = $('#label-filter');
  const hasLabels = page.items.some((it) => it.label != null);
  if (!hasLabels) return;
  const opts = [[null, 'all'], ...page.classes.map((c, k) => [k, c.replace(/_/g, ' ')])];
  for (const [k, text] of opts) {
    box.append(
      el('button', {
        type: 'button', class: 'chip', role: 'radio', 'aria-checked': String(k === null), text,
        onclick: (ev) => {
          state.labelFilter = k;
          for (const c of box.children) c.setAttribute('aria-checked', String(c === ev.currentTarget));
          applyFilter(true);
        },
      }),
    );
  }
}

function applyFilter(reselect) {
  const current = state.view[state.sel];
  const text = state.text.toLowerCase();
  state.view = state.items.filter((it) => (state.labelFilter === null || it.label === state.labelFilter) && (!text || String(it.id).toLowerCase().includes(text) || String(it.index) === text)).map((it) => it.index);
  renderList();
  const keep = current !== undefined ? state.view.indexOf(current) : -1;
  state.sel = keep;
  markSelected(false);
  if (reselect && keep < 0 && state.view.length) select(0);
  $('#count').textContent = `${state.view.length} of ${state.total} stamps${state.items.length < state.total ? ` (${state.items.length} loaded)` : ''}`;
}

function renderList() {
  const list = $('#stamps');
  const byIndex = new Map(state.items.map((it) => [it.index, it]));
  const frag = document.createDocumentFragment();
  state.view.forEach((index, pos) => {
    const it = byIndex.get(index);
    const r = state.results.get(index);
    const lab = it.label == null ? '' : (state.classes?.[it.label] ?? String(it.label)).replace(/_/g, ' ');
    const dot = el('span', { class: `dot${r?.est && it.label != null ? (r.est.predicted === it.label ? ' ok' : ' no') : ''}` });
    frag.append(
      el('li', { 'data-index': String(index), 'aria-selected': 'false', role: 'option', onclick: () => select(pos) },
        el('span', { class: 'idx', text: String(index) }),
        el('span', { class: 'id', text: String(it.id), title: String(it.id) }),
        el('span', { class: `lab${it.label === 1 ? ' pos' : ''}`, text: lab }),
        dot,
      ),
    );
  });
  list.replaceChildren(frag);
}

function markSelected(scroll = true) {
  const list = $('#stamps');
  for (const li of list.querySelectorAll('li[aria-selected="true"]')) li.setAttribute('aria-selected', 'false');
  const li = list.children[state.sel];
  if (li) {
    li.setAttribute('aria-selected', 'true');
    if (scroll) li.scrollIntoView({ block: 'nearest' });
  }
}

function markDot(index) {
  const li = $(`#stamps li[data-index="${index}"]`);
  const it = state.items.find((x) => x.index === index);
  const r = state.results.get(index);
  if (!li || !it || it.label == null || !r?.est) return;
  li.querySelector('.dot').className = `dot ${r.est.predicted === it.label ? 'ok' : 'no'}`;
}

function select(pos) {
  if (pos < 0 || pos >= state.view.length) return;
  state.sel = pos;
  markSelected();
  if (pos > state.view.length - 50) void loadMore();
  void showDatasetStamp(state.view[pos]);
}

// ---------- showing a stamp ----------

/** 'snr_difference' -> 'SNR difference'. */
function prettyName(n) {
  const s = String(n).replace(/_/g, ' ').replace(/\bsnr\b/gi, 'SNR');
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function buildViewer(channelNames, hasStd, hasStored) {
  hover.frames = [];
  $('#empty').hidden = true;
  $('#content').hidden = false;
  const chBox = $('#channels');
  chBox.replaceChildren();
  ui.channels = channelNames.map((n) => makePanel(chBox, prettyName(n)));
  const mapBox = $('#maps');
  mapBox.replaceChildren();
  ui.est = makePanel(mapBox, 'Estimate');
  ui.exact = makePanel(mapBox, 'Exact');
  ui.diff = makePanel(mapBox, 'Estimate − exact');
  ui.std = hasStd ? makePanel(mapBox, 'Ensemble std') : null;
  ui.stored = hasStored ? makePanel(mapBox, 'Stored map') : null;
  ui.est.fig.id = 'panel-estimate';
  ui.exact.fig.id = 'panel-exact';
  ui.diff.fig.id = 'panel-diff';
}

function drawChannels(image, h, w, names) {
  hover.h = h;
  hover.w = w;
  hover.sources = [];
  names.forEach((n, k) => {
    const v = channelOf(image, k);
    const [lo, hi] = percentileRange(v);
    ui.channels[k].draw(v, h, w, 'grey', lo, hi);
    ui.channels[k].sub(`${fmt(lo, 2)} … ${fmt(hi, 2)}`);
    hover.sources.push({ name: prettyName(n).toLowerCase().replace('snr', 'SNR'), values: v });
  });
  $('#channels-hint').textContent = `${h}×${w}, ${names.length} channel${names.length > 1 ? 's' : ''}, grey scale clipped at the 0.5/99.5 percentiles`;
}

/** The range the estimate and exact maps share: [0,1] for seed-normalised maps. */
function mapRange(...maps) {
  if (state.models?.exact?.params?.normalize === 'seed') return [0, 1];
  return finiteRange(maps.filter(Boolean).flat());
}

function drawEstimate(r, h, w) {
  const est = flatRows(r.estimate.map);
  const [lo, hi] = mapRange(est);
  ui.est.draw(est, h, w, 'viridis', lo, hi);
  ui.est.sub(`1 inference · ${ms(r.timings.estimateMs)}`);
  hover.sources = hover.sources.filter((s) => !['estimate', 'std'].includes(s.name));
  hover.sources.push({ name: 'estimate', values: est });
  if (r.estimate.std && ui.std) {
    const std = flatRows(r.estimate.std);
    const [, shi] = finiteRange(std);
    ui.std.draw(std, h, w, 'viridis', 0, shi || 1);
    ui.std.sub('per pixel, over members');
    hover.sources.push({ name: 'std', values: std });
  }
  const probs = $('#probs');
  const top = r.predicted;
  probs.replaceChildren(
    ...r.classes.flatMap((c, k) => [
      el('span', { class: `cls${k === top ? ' top' : ''}`, text: c.replace(/_/g, ' ') }),
      el('div', { class: `bar${k === top ? ' top' : ''}` }, el('span', { style: `width:${(100 * r.probabilities[k]).toFixed(1)}%` })),
      el('span', { class: 'pv', text: r.probabilities[k].toFixed(3) }),
    ]),
  );
  const v = $('#verdict');
  const name = (k) => r.classes[k].replace(/_/g, ' ');
  v.replaceChildren();
  if (r.label != null) {
    const ok = r.label === top;
    v.append('label ', el('b', { text: name(r.label) }), ' · ', el('span', { class: ok ? 'ok' : 'no', text: ok ? 'the classifier agrees' : 'the classifier disagrees' }));
  } else v.append('no label given');
  if (r.condition) v.append(` · explainer conditioned on class ${name(r.condition.class)} (${r.condition.source})`);
  $('#maps-hint').textContent = `${state.models.exact.params.score === 'prob' ? 'low = the class probability drops when the patch hides this pixel (important)' : 'high = important'} · patch ${state.models.exact.params.patch.join('×')}`;
}

function drawExact(r, h, w, stored, first) {
  const est = flatRows(r.estimate.map);
  const ex = flatRows(r.exact.map);
  const [lo, hi] = mapRange(est, ex);
  ui.exact.done();
  ui.exact.draw(ex, h, w, 'viridis', lo, hi);
  ui.exact.sub(`${r.exact.inferences} inferences · ${ms(r.timings.exactMs)}`);
  const diff = est.map((v, p) => v - ex[p]);
  const m = Math.max(1e-3, ...diff.map(Math.abs));
  ui.diff.done();
  ui.diff.draw(diff, h, w, 'diverging', -m, m);
  ui.diff.legend('diverging', -m, m, 0);
  ui.diff.sub(`max |Δ| ${fmt(m, 3)}`);
  hover.sources = hover.sources.filter((s) => !['exact', 'Δ'].includes(s.name));
  hover.sources.push({ name: 'exact', values: ex }, { name: 'Δ', values: diff });
  if (stored && ui.stored) {
    const sm = flatRows(stored);
    let d = 0;
    for (let p = 0; p < sm.length; p++) d = Math.max(d, Math.abs(sm[p] - ex[p]));
    ui.stored.sub(d < 1e-6 ? 'equals the exact map' : `max |Δ| to exact ${fmt(d, 4)}`);
  }
  const M = r.metrics;
  const rows = [
    ['MSE', 'mean squared error, seed units', M.mse, 5],
    ['MAE', 'mean absolute error', M.mae, 4],
    ['SSIM', 'structural similarity (7×7 window, 1 = identical)', M.ssim, 3],
    ['Pearson', 'linear correlation of the pixel values', M.pearson, 3],
    ['Spearman', 'rank correlation: same ordering of importance', M.spearman, 3],
    ['IoU top 10%', 'overlap of the 10% most important pixels', M.iouTop10, 3],
  ];
  $('#metrics').replaceChildren(
    el('tbody', {}, ...rows.map(([k, tip, v, d]) => el('tr', {}, el('td', { class: 'k' }, el('abbr', { title: tip, text: k })), el('td', { class: 'v', text: fmt(v, d) })))),
  );
  // The classifier and estimate figures of the request that drew the estimate shown.
  const t = r.timings;
  const t0 = first?.timings ?? t;
  const trows = [
    ['Classifier', '1 inference', t0.classifyMs],
    ['Estimate', `1 inference${t0.batchSize > 1 ? `, batch of ${t0.batchSize}` : ''}`, t0.estimateMs],
    ['Exact map', `${r.exact.inferences} inferences`, t.exactMs],
    ['Exact queue', 'waiting behind other maps', t.exactQueueMs],
    ['Round trip', 'estimate, as seen here', r.clientEstimateMs],
    ['Round trip', 'exact, as seen here', r.clientExactMs],
  ];
  $('#timings').replaceChildren(
    el('tbody', {},
      ...trows.map(([k, n, v]) => el('tr', {}, el('td', { class: 'k', text: k }), el('td', { class: 'n', text: n }), el('td', { class: 'v', text: ms(v) }))),
      el('tr', {}, el('td', { class: 'k', text: 'Exact ÷ estimate' }), el('td', { class: 'n', text: 'engine time' }), el('td', { class: 'v', text: t0.estimateMs > 0 ? `${Math.round(t.exactMs / t0.estimateMs)}×` : '–' })),
    ),
  );
}

function pendingExact(expectedMs) {
  ui.exact.clear();
  ui.diff.clear();
  const t0 = performance.now();
  const label = (el) => `computing the exact map… ${(el / 1000).toFixed(1)} s${expectedMs > 0 ? ` (≈ ${(expectedMs / 1000).toFixed(1)} s)` : ''}`;
  ui.exact.pending(label(0));
  ui.diff.pending('waits for the exact map', false);
  const timer = setInterval(() => {
    const dt = performance.now() - t0;
    ui.exact.pending(label(dt));
    // Expected-time progress: approaches but never reaches 100% until the map arrives.
    ui.exact.progress(expectedMs > 0 ? 1 - Math.exp(-dt / expectedMs) : 0);
  }, 100);
  return () => clearInterval(timer);
}

function showTimingsEstimate(r) {
  const t = r.timings;
  $('#timings').replaceChildren(
    el('tbody', {},
      el('tr', {}, el('td', { class: 'k', text: 'Classifier' }), el('td', { class: 'n', text: '1 inference' }), el('td', { class: 'v', text: ms(t.classifyMs) })),
      el('tr', {}, el('td', { class: 'k', text: 'Estimate' }), el('td', { class: 'n', text: '1 inference' }), el('td', { class: 'v', text: ms(t.estimateMs) })),
      el('tr', {}, el('td', { class: 'k', text: 'Round trip' }), el('td', { class: 'n', text: 'estimate, as seen here' }), el('td', { class: 'v', text: ms(r.clientEstimateMs) })),
      el('tr', {}, el('td', { class: 'k', text: 'Exact map' }), el('td', { class: 'n', text: `${state.models.exact.inferencesPerMap} inferences` }), el('td', { class: 'v muted', text: '…' })),
    ),
  );
  $('#metrics').replaceChildren(el('tbody', {}, el('tr', {}, el('td', { class: 'muted', text: 'waiting for the exact map…' }))));
}

/**
 * Estimate first, then the exact map: `post(exact)` sends the stamp. Superseded requests are
 * aborted (the server drops a queued exact map whose client went away).
 */
async function explain(token, post, { h, w, stored, index }) {
  state.ctrl?.abort();
  const ctrl = new AbortController();
  state.ctrl = ctrl;
  const entry = index != null ? state.results.get(index) ?? {} : {};
  if (index != null) state.results.set(index, entry);
  let r = entry.est;
  try {
    if (!r) {
      setStatus('estimating…');
      const t0 = performance.now();
      r = await post(false, ctrl.signal);
      r.clientEstimateMs = performance.now() - t0;
      entry.est = r;
    }
    if (token !== state.token) return;
    drawEstimate(r, h, w);
    if (index != null) markDot(index);
    let rx = entry.exact;
    if (!rx) {
      showTimingsEstimate(r);
      setStatus('estimate ready · exact map on its way');
      const stop = pendingExact(r.exactExpectedMs ?? 0);
      try {
        // A short pause first: holding j/k over many stamps does not queue an exact map each.
        await new Promise((res, rej) => {
          const t = setTimeout(res, 150);
          ctrl.signal.addEventListener('abort', () => { clearTimeout(t); rej(new DOMException('aborted', 'AbortError')); }, { once: true });
        });
        const t1 = performance.now();
        rx = await post(true, ctrl.signal);
        rx.clientExactMs = performance.now() - t1;
        rx.clientEstimateMs = r.clientEstimateMs;
        entry.exact = rx;
      } finally {
        stop();
      }
    }
    if (token !== state.token) return;
    drawExact(rx, h, w, stored, r);
    setStatus(`done · exact map ${ms(rx.timings.exactMs)}, estimate ${ms(rx.timings.estimateMs)}`);
  } catch (e) {
    if (e.name === 'AbortError' || token !== state.token) return;
    setStatus(e.message, true);
    ui.exact.done();
    ui.diff.done();
  }
}

async function showDatasetStamp(index) {
  const token = ++state.token;
  let s;
  try {
    s = state.results.get(index)?.stamp ?? (await api(`/api/stamps/${index}`));
  } catch (e) {
    if (token === state.token) setStatus(e.message, true);
    return;
  }
  if (token !== state.token) return;
  state.results.set(index, { ...state.results.get(index), stamp: s });
  const [h, w] = s.shape;
  const hasStd = !!state.models.explainer.card.ensemble;
  buildViewer(s.channels, hasStd, !!s.map);
  $('#title').replaceChildren(String(s.id), el('span', { class: 'idx', text: `#${s.index}` }));
  const badge = $('#label-badge');
  badge.hidden = s.label == null;
  if (s.label != null) {
    badge.textContent = (state.classes?.[s.label] ?? `class ${s.label}`).replace(/_/g, ' ');
    badge.classList.toggle('pos', s.label === 1);
  }
  drawChannels(s.image, h, w, s.channels);
  if (s.map && ui.stored) {
    const sm = flatRows(s.map);
    const [lo, hi] = mapRange(sm);
    ui.stored.draw(sm, h, w, 'viridis', lo, hi);
    ui.stored.sub('from the dataset');
  }
  const body = JSON.stringify({ image: s.image, ...(s.label != null ? { label: s.label } : {}) });
  const post = (exact, signal) => api(`/explain${exact ? '?exact=1' : ''}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal });
  await explain(token, post, { h, w, stored: s.map, index });
}

async function showUpload(file) {
  const token = ++state.token;
  state.sel = -1;
  markSelected(false);
  const bytes = new Uint8Array(await file.arrayBuffer());
  const isPng = bytes[0] === 0x89 && bytes[1] === 0x50;
  const type = isPng || /\.png$/i.test(file.name) ? 'image/png' : 'application/octet-stream';
  const post = async (exact, signal) => api(`/explain?echo=1${exact ? '&exact=1' : ''}`, { method: 'POST', headers: { 'content-type': type }, body: bytes, signal });
  setStatus('reading…');
  let first;
  try {
    const t0 = performance.now();
    first = await post(false);
    first.clientEstimateMs = performance.now() - t0;
  } catch (e) {
    setStatus(`${file.name}: ${e.message}`, true);
    return;
  }
  if (token !== state.token) return;
  const [h, w, c] = first.shape;
  const names = c === state.models.data?.shape?.[3] ? state.models.data.channels : namesForModel(c);
  buildViewer(names, !!first.estimate.std, false);
  $('#title').replaceChildren(file.name, el('span', { class: 'idx', text: 'upload' }));
  $('#label-badge').hidden = true;
  drawChannels(first.image, h, w, names);
  let used = false;
  await explain(token, async (exact, signal) => {
    if (!exact && !used) {
      used = true;
      return first;
    }
    return post(exact, signal);
  }, { h, w });
}

function namesForModel(c) {
  const card = state.models.classifier.card;
  const names = card?.channelNames;
  return Array.from({ length: c }, (_, k) => (Array.isArray(names) && names[k]) || `channel ${k}`);
}

// ---------- wiring ----------

function wireUpload() {
  const drop = $('#drop');
  const input = $('#file');
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      input.click();
    }
  });
  input.addEventListener('change', () => {
    if (input.files?.[0]) void showUpload(input.files[0]);
    input.value = '';
  });
  for (const ev of ['dragenter', 'dragover']) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add('over'); });
  for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const f = e.dataTransfer?.files?.[0];
    if (f) void showUpload(f);
  });
  // Dropping anywhere on the page works too.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => {
    e.preventDefault();
    const f = e.dataTransfer?.files?.[0];
    if (f) void showUpload(f);
  });
}

function wireKeys() {
  document.addEventListener('keydown', (e) => {
    const typing = e.target instanceof HTMLInputElement;
    if (e.key === '/' && !typing) {
      e.preventDefault();
      $('#search').focus();
      return;
    }
    if (typing) {
      if (e.key === 'Escape' || e.key === 'Enter') e.target.blur();
      if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    }
    if (e.metaKey || e.ctrlKey || e.altKey) return;
    const moves = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1, PageDown: 10, PageUp: -10 };
    if (e.key in moves) {
      e.preventDefault();
      const next = state.sel < 0 ? 0 : Math.min(state.view.length - 1, Math.max(0, state.sel + moves[e.key]));
      if (next !== state.sel) select(next);
    } else if (e.key === 'Home' && !typing) {
      e.preventDefault();
      select(0);
    } else if (e.key === 'End' && !typing) {
      e.preventDefault();
      select(state.view.length - 1);
    } else if (e.key === 'n' && !typing) {
      toggleNight();
    }
  });
  $('#search').addEventListener('input', (e) => {
    state.text = e.target.value.trim();
    applyFilter(false);
  });
  $('#stamps').addEventListener('scroll', (e) => {
    const l = e.target;
    if (l.scrollTop + l.clientHeight > l.scrollHeight - 400) void loadMore();
  });
}

function toggleNight() {
  const on = document.body.classList.toggle('night');
  try { localStorage.setItem('occmap-night', on ? '1' : '0'); } catch { /* private mode */ }
}

async function main() {
  wireUpload();
  wireKeys();
  $('#night').addEventListener('click', toggleNight);
  try { if (localStorage.getItem('occmap-night') === '1') document.body.classList.add('night'); } catch { /* private mode */ }
  try {
    state.models = await api('/models');
  } catch (e) {
    $('#models').textContent = `cannot reach the server: ${e.message}`;
    return;
  }
  modelsHeader(state.models);
  if (state.models.data) {
    $('#browse').hidden = false;
    await loadMore();
    if (state.view.length && state.sel < 0) select(0);
  } else {
    $('#nodata').hidden = false;
  }
}

void main();
