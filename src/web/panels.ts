/**
 * Heatmap panels: a canvas at one pixel per map pixel, scaled up by CSS with nearest-neighbour
 * sampling (stamp pixels stay visible), the library's colour tables, a colour bar, an optional
 * outline overlay (the most important region), a pending state with progress, and a shared
 * hover cursor that reads every panel's value at the pixel under the mouse.
 */
import { colormapTable, type Colormap } from '../viz/colormap.js';
import { $, el, fmt, SVG_NS } from './dom.js';

interface HoverSource {
  name: string;
  values: ArrayLike<number>;
  digits?: number;
}

export const hover = {
  h: 0,
  w: 0,
  cursors: [] as HTMLElement[],
  sources: [] as HoverSource[],
  set(name: string, values: ArrayLike<number> | undefined, digits?: number): void {
    this.sources = this.sources.filter((s) => s.name !== name);
    if (values) this.sources.push({ name, values, digits });
  },
};

function showCursor(x: number, y: number): void {
  for (const cursor of hover.cursors) {
    if (x < 0 || !cursor.isConnected) {
      cursor.style.display = 'none';
      continue;
    }
    Object.assign(cursor.style, {
      display: 'block',
      left: `${(x / hover.w) * 100}%`,
      top: `${(y / hover.h) * 100}%`,
      width: `${100 / hover.w}%`,
      height: `${100 / hover.h}%`,
    });
  }
  const out = $('#readout');
  if (x < 0) {
    out.textContent = 'hover a pixel to read its values';
    return;
  }
  out.replaceChildren(el('b', { text: `x ${x}, y ${y}` }));
  for (const s of hover.sources) out.append(' · ', `${s.name} `, el('b', { text: fmt(s.values[y * hover.w + x], s.digits ?? 3) }));
}

export class Panel {
  readonly fig: HTMLElement;
  private readonly canvas = el('canvas');
  private readonly frame: HTMLElement;
  private readonly subEl = el('span', { class: 'sub' });
  private readonly ticks = el('div', { class: 'ticks' });
  private readonly legendBar = el('canvas', { width: '128', height: '1' });
  private readonly outline: SVGSVGElement;
  private pendingNode: { node: HTMLElement; text: HTMLElement; bar?: HTMLElement } | null = null;

  constructor(parent: HTMLElement, title: string, opts: { id?: string; tag?: string; tagTitle?: string } = {}) {
    const cursor = el('div', { class: 'cursor' });
    this.outline = document.createElementNS(SVG_NS, 'svg');
    this.outline.setAttribute('class', 'outline');
    this.outline.setAttribute('preserveAspectRatio', 'none');
    this.frame = el('div', { class: 'frame' }, this.canvas, this.outline as unknown as Node, cursor);
    const ttl = el('span', { class: 'ttl' }, title, opts.tag ? el('span', { class: 'tag', text: opts.tag, title: opts.tagTitle }) : null);
    this.fig = el('figure', { class: 'panel', id: opts.id }, this.frame, el('figcaption', {}, ttl, this.subEl), el('div', { class: 'legend' }, this.legendBar, this.ticks));
    parent.append(this.fig);
    this.frame.addEventListener('mousemove', (ev) => {
      if (!hover.w) return;
      const r = this.frame.getBoundingClientRect();
      const x = Math.floor(((ev.clientX - r.left) / r.width) * hover.w);
      const y = Math.floor(((ev.clientY - r.top) / r.height) * hover.h);
      showCursor(Math.min(hover.w - 1, Math.max(0, x)), Math.min(hover.h - 1, Math.max(0, y)));
    });
    this.frame.addEventListener('mouseleave', () => showCursor(-1, -1));
    hover.cursors.push(cursor);
  }

  draw(values: ArrayLike<number>, h: number, w: number, cmap: Colormap, lo: number, hi: number, mid?: number): void {
    this.canvas.width = w;
    this.canvas.height = h;
    this.frame.style.aspectRatio = `${w} / ${h}`;
    const ctx = this.canvas.getContext('2d')!;
    const img = ctx.createImageData(w, h);
    const table = colormapTable(cmap);
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
    this.legend(cmap, lo, hi, mid);
    this.fig.dataset.drawn = '1';
  }

  legend(cmap: Colormap, lo: number, hi: number, mid?: number): void {
    const ctx = this.legendBar.getContext('2d')!;
    const table = colormapTable(cmap);
    const img = ctx.createImageData(128, 1);
    for (let i = 0; i < 128; i++) {
      const c = table[Math.round((i / 127) * 255)];
      img.data.set([c[0], c[1], c[2], 255], 4 * i);
    }
    ctx.putImageData(img, 0, 0);
    const m = mid ?? (lo + hi) / 2;
    this.ticks.replaceChildren(el('span', { text: fmt(lo, 2) }), el('span', { text: fmt(m, 2) }), el('span', { text: fmt(hi, 2) }));
  }

  /** The outline of a region (an SVG path in pixel units), or none. */
  setOutline(d: string | null, h: number, w: number, title = ''): void {
    this.outline.setAttribute('viewBox', `0 0 ${w} ${h}`);
    this.outline.replaceChildren();
    if (!d) return;
    // A dark halo under a bright line: visible on any stamp, and in night mode too.
    for (const cls of ['halo', 'line']) {
      const path = document.createElementNS(SVG_NS, 'path');
      path.setAttribute('d', d);
      path.setAttribute('class', cls);
      path.setAttribute('vector-effect', 'non-scaling-stroke');
      if (title) {
        const t = document.createElementNS(SVG_NS, 'title');
        t.textContent = title;
        path.append(t);
      }
      this.outline.append(path);
    }
  }

  sub(text: string): void {
    this.subEl.textContent = text;
  }

  pending(text: string, withBar = true): void {
    if (!this.pendingNode) {
      const textEl = el('div', { class: 'ptext' });
      const bar = withBar ? el('span') : undefined;
      const node = el('div', { class: 'pending' }, el('div', { class: 'spinner' }), textEl, bar ? el('div', { class: 'progress' }, bar) : null);
      this.frame.append(node);
      this.pendingNode = { node, text: textEl, bar };
    }
    this.pendingNode.text.textContent = text;
  }

  progress(f: number): void {
    if (this.pendingNode?.bar) this.pendingNode.bar.style.width = `${Math.round(100 * Math.min(1, Math.max(0, f)))}%`;
  }

  done(): void {
    this.pendingNode?.node.remove();
    this.pendingNode = null;
  }

  clear(): void {
    this.canvas.width = 1;
    this.canvas.height = 1;
    this.canvas.getContext('2d')!.clearRect(0, 0, 1, 1);
    delete this.fig.dataset.drawn;
    this.ticks.replaceChildren();
    this.legendBar.getContext('2d')!.clearRect(0, 0, 128, 1);
  }
}
