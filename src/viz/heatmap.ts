/**
 * Heatmap figures as PNG without a graphics stack: panels of maps in a perceptual colormap
 * (viridis) or grey, each with a colour bar labelled with its min and max. Text uses a built-in
 * 5x7 bitmap font (digits, capitals and a little punctuation), so the numbers sit in the image
 * itself instead of a sidecar file.
 */
import { PNG } from 'pngjs';

import { colorOf, finiteRange, type Colormap, type Rgb } from './colormap.js';

// The colour scales are src/viz/colormap.ts (shared with the browser viewer).
export { colorOf, finiteRange, viridis, type Colormap, type Rgb } from './colormap.js';

/** A tick label the bitmap font can draw: 3 significant digits, exponent form when tiny or huge. */
export function formatTick(v: number): string {
  if (!Number.isFinite(v)) return String(v).toUpperCase();
  if (v === 0) return '0';
  const a = Math.abs(v);
  const s = a >= 1e-3 && a < 1e5 ? String(Number(v.toPrecision(3))) : Number(v.toPrecision(3)).toExponential().replace('e+', 'E').replace('e', 'E');
  return s;
}

// 5x7 glyphs: 7 rows of 5 columns, '1' = ink (the classic HD44780 LCD shapes).
const GLYPHS: Record<string, string[]> = {
  '0': ['01110', '10001', '10011', '10101', '11001', '10001', '01110'],
  '1': ['00100', '01100', '00100', '00100', '00100', '00100', '01110'],
  '2': ['01110', '10001', '00001', '00010', '00100', '01000', '11111'],
  '3': ['11111', '00010', '00100', '00010', '00001', '10001', '01110'],
  '4': ['00010', '00110', '01010', '10010', '11111', '00010', '00010'],
  '5': ['11111', '10000', '11110', '00001', '00001', '10001', '01110'],
  '6': ['00110', '01000', '10000', '11110', '10001', '10001', '01110'],
  '7': ['11111', '00001', '00010', '00100', '01000', '01000', '01000'],
  '8': ['01110', '10001', '10001', '01110', '10001', '10001', '01110'],
  '9': ['01110', '10001', '10001', '01111', '00001', '00010', '01100'],
  '.': ['00000', '00000', '00000', '00000', '00000', '01100', '01100'],
  '-': ['00000', '00000', '00000', '11111', '00000', '00000', '00000'],
  '+': ['00000', '00100', '00100', '11111', '00100', '00100', '00000'],
  ':': ['00000', '01100', '01100', '00000', '01100', '01100', '00000'],
  '(': ['00010', '00100', '01000', '01000', '01000', '00100', '00010'],
  ')': ['01000', '00100', '00010', '00010', '00010', '00100', '01000'],
  '/': ['00000', '00001', '00010', '00100', '01000', '10000', '00000'],
  '=': ['00000', '00000', '11111', '00000', '11111', '00000', '00000'],
  '?': ['01110', '10001', '00001', '00010', '00100', '00000', '00100'],
  _: ['00000', '00000', '00000', '00000', '00000', '00000', '11111'],
  ' ': ['00000', '00000', '00000', '00000', '00000', '00000', '00000'],
  A: ['01110', '10001', '10001', '10001', '11111', '10001', '10001'],
  B: ['11110', '10001', '10001', '11110', '10001', '10001', '11110'],
  C: ['01110', '10001', '10000', '10000', '10000', '10001', '01110'],
  D: ['11100', '10010', '10001', '10001', '10001', '10010', '11100'],
  E: ['11111', '10000', '10000', '11110', '10000', '10000', '11111'],
  F: ['11111', '10000', '10000', '11110', '10000', '10000', '10000'],
  G: ['01110', '10001', '10000', '10111', '10001', '10001', '01111'],
  H: ['10001', '10001', '10001', '11111', '10001', '10001', '10001'],
  I: ['01110', '00100', '00100', '00100', '00100', '00100', '01110'],
  J: ['00111', '00010', '00010', '00010', '00010', '10010', '01100'],
  K: ['10001', '10010', '10100', '11000', '10100', '10010', '10001'],
  L: ['10000', '10000', '10000', '10000', '10000', '10000', '11111'],
  M: ['10001', '11011', '10101', '10101', '10001', '10001', '10001'],
  N: ['10001', '10001', '11001', '10101', '10011', '10001', '10001'],
  O: ['01110', '10001', '10001', '10001', '10001', '10001', '01110'],
  P: ['11110', '10001', '10001', '11110', '10000', '10000', '10000'],
  Q: ['01110', '10001', '10001', '10001', '10101', '10010', '01101'],
  R: ['11110', '10001', '10001', '11110', '10100', '10010', '10001'],
  S: ['01111', '10000', '10000', '01110', '00001', '00001', '11110'],
  T: ['11111', '00100', '00100', '00100', '00100', '00100', '00100'],
  U: ['10001', '10001', '10001', '10001', '10001', '10001', '01110'],
  V: ['10001', '10001', '10001', '10001', '10001', '01010', '00100'],
  W: ['10001', '10001', '10001', '10101', '10101', '10101', '01010'],
  X: ['10001', '10001', '01010', '00100', '01010', '10001', '10001'],
  Y: ['10001', '10001', '10001', '01010', '00100', '00100', '00100'],
  Z: ['11111', '00001', '00010', '00100', '01000', '10000', '11111'],
};

export const GLYPH_W = 5;
export const GLYPH_H = 7;

function glyph(ch: string): string[] {
  return GLYPHS[ch] ?? GLYPHS[ch.toUpperCase()] ?? GLYPHS['?'];
}

/** Width in pixels of `text` drawn at `scale` (1 px between glyphs). */
export function textWidth(text: string, scale: number): number {
  return text.length === 0 ? 0 : (text.length * (GLYPH_W + 1) - 1) * scale;
}

/** An RGBA image with a few drawing primitives. */
export class Canvas {
  readonly data: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb = [255, 255, 255],
  ) {
    this.data = new Uint8Array(width * height * 4);
    for (let i = 0; i < width * height; i++) this.data.set([...background, 255], i * 4);
  }

  rect(x: number, y: number, w: number, h: number, c: Rgb): void {
    for (let yy = Math.max(0, y); yy < Math.min(this.height, y + h); yy++) {
      for (let xx = Math.max(0, x); xx < Math.min(this.width, x + w); xx++) {
        const o = (yy * this.width + xx) * 4;
        this.data[o] = c[0];
        this.data[o + 1] = c[1];
        this.data[o + 2] = c[2];
        this.data[o + 3] = 255;
      }
    }
  }

  pixel(x: number, y: number): Rgb {
    const o = (y * this.width + x) * 4;
    return [this.data[o], this.data[o + 1], this.data[o + 2]];
  }

  text(x: number, y: number, text: string, scale: number, c: Rgb = [0, 0, 0]): void {
    let cx = x;
    for (const ch of text) {
      const g = glyph(ch);
      for (let r = 0; r < GLYPH_H; r++) {
        for (let k = 0; k < GLYPH_W; k++) if (g[r][k] === '1') this.rect(cx + k * scale, y + r * scale, scale, scale, c);
      }
      cx += (GLYPH_W + 1) * scale;
    }
  }

  toPng(): Uint8Array {
    const png = new PNG({ width: this.width, height: this.height });
    png.data = Buffer.from(this.data.buffer, this.data.byteOffset, this.data.length);
    return new Uint8Array(PNG.sync.write(png));
  }
}

export interface Panel {
  title: string;
  /** h*w values, row-major. */
  values: ArrayLike<number>;
  h: number;
  w: number;
  colormap?: Colormap;
  /** Colour scale; default the panel's own min and max. Share it to compare panels. */
  range?: [number, number];
}

export interface FigureOptions {
  /** Screen pixels per map pixel (default 12: a 21x21 stamp becomes 252 px). */
  scale?: number;
  /** Font pixel size multiplier (default 2: 10x14 px glyphs). */
  fontScale?: number;
}

export interface PanelBox {
  /** Where the map's pixel (0,0) starts in the figure. */
  x: number;
  y: number;
  scale: number;
  range: [number, number];
  /** Colour bar (top = max, bottom = min). */
  bar: { x: number; y: number; w: number; h: number };
}

/**
 * Lay out and draw panels left to right: title on top, the map (nearest-neighbour upscaled),
 * and beside it a colour bar with its max at the top and min at the bottom.
 */
export function renderFigure(panels: Panel[], o: FigureOptions = {}): { canvas: Canvas; boxes: PanelBox[] } {
  const s = o.scale ?? 12;
  const fs = o.fontScale ?? 2;
  const M = 4 * fs;
  const th = GLYPH_H * fs;
  const barW = 7 * fs;
  const ranges = panels.map((p) => p.range ?? finiteRange(p.values));
  const labels = ranges.map(([lo, hi]) => [formatTick(hi), formatTick(lo)]);
  const widths = panels.map((p, i) => {
    const labelW = Math.max(...labels[i].map((t) => textWidth(t, fs)));
    return Math.max(textWidth(p.title, fs), p.w * s + M + barW + M / 2 + labelW);
  });
  const H = Math.max(...panels.map((p) => p.h * s));
  const width = M + widths.reduce((a, b) => a + b + 2 * M, 0) - M;
  const height = M + th + M + H + M;
  const canvas = new Canvas(width, height);
  const boxes: PanelBox[] = [];
  let x0 = M;
  panels.forEach((p, i) => {
    const cmap = p.colormap ?? 'viridis';
    const [lo, hi] = ranges[i];
    canvas.text(x0, M, p.title, fs);
    const y0 = M + th + M;
    for (let y = 0; y < p.h; y++) {
      for (let x = 0; x < p.w; x++) canvas.rect(x0 + x * s, y0 + y * s, s, s, colorOf(p.values[y * p.w + x], lo, hi, cmap));
    }
    const bx = x0 + p.w * s + M;
    const bh = p.h * s;
    for (let y = 0; y < bh; y++) {
      const t = bh > 1 ? 1 - y / (bh - 1) : 0.5;
      canvas.rect(bx, y0 + y, barW, 1, colorOf(lo + t * (hi - lo), lo, hi, cmap));
    }
    const lx = bx + barW + M / 2;
    canvas.text(lx, y0, labels[i][0], fs);
    canvas.text(lx, y0 + bh - th, labels[i][1], fs);
    boxes.push({ x: x0, y: y0, scale: s, range: [lo, hi], bar: { x: bx, y: y0, w: barW, h: bh } });
    x0 += widths[i] + 2 * M;
  });
  return { canvas, boxes };
}

/** renderFigure, encoded as PNG bytes. */
export function heatmapPng(panels: Panel[], o: FigureOptions = {}): Uint8Array {
  return renderFigure(panels, o).canvas.toPng();
}
