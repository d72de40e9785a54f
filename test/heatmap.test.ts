import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PNG } from 'pngjs';
import { viridis, colorOf, formatTick, finiteRange, renderFigure, heatmapPng, textWidth, Canvas } from '../src/viz/heatmap.js';

const near = (a: number[], b: number[], tol: number) => a.every((v, i) => Math.abs(v - b[i]) <= tol);

test('viridis matches matplotlib at its ends and middle (#440154, #21918c, #fde725)', () => {
  assert.ok(near(viridis(0), [0x44, 0x01, 0x54], 3), String(viridis(0)));
  assert.ok(near(viridis(0.5), [0x21, 0x91, 0x8c], 3), String(viridis(0.5)));
  assert.ok(near(viridis(1), [0xfd, 0xe7, 0x25], 4), String(viridis(1)));
  assert.deepEqual(viridis(-1), viridis(0));
  assert.deepEqual(viridis(2), viridis(1));
  // Perceptual order: luminance grows along the map.
  const lum = (c: number[]) => 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  for (let t = 0.1; t <= 1; t += 0.1) assert.ok(lum(viridis(t)) > lum(viridis(t - 0.1)));
});

test('colorOf scales to the range; flat range is the middle; gray', () => {
  assert.deepEqual(colorOf(5, 0, 10, 'gray'), [128, 128, 128]);
  assert.deepEqual(colorOf(0, 0, 10, 'gray'), [0, 0, 0]);
  assert.deepEqual(colorOf(20, 0, 10, 'gray'), [255, 255, 255]);
  assert.deepEqual(colorOf(3, 3, 3, 'gray'), [128, 128, 128]);
  assert.deepEqual(colorOf(1, 0, 1, 'viridis'), viridis(1));
});

test('formatTick and finiteRange', () => {
  assert.equal(formatTick(0), '0');
  assert.equal(formatTick(0.75912), '0.759');
  assert.equal(formatTick(-1.5), '-1.5');
  assert.equal(formatTick(0.0000123), '1.23E-5');
  assert.equal(formatTick(123456), '1.23E5');
  assert.equal(formatTick(0.0002), '2E-4');
  assert.deepEqual(finiteRange([3, NaN, -1, 2]), [-1, 3]);
  assert.deepEqual(finiteRange([NaN]), [0, 0]);
  assert.equal(textWidth('12', 2), (2 * 6 - 1) * 2);
});

test('figure: map pixels in the colormap, bar from max (top) to min (bottom), digits drawn, valid PNG', () => {
  const values = [0, 0.25, 0.5, 1];
  const { canvas, boxes } = renderFigure([{ title: 'EST', values, h: 2, w: 2, range: [0, 1] }], { scale: 4, fontScale: 1 });
  const b = boxes[0];
  // Cell (row 1, col 0) = 0.5, drawn at its 4x4 block.
  assert.deepEqual(canvas.pixel(b.x + 1, b.y + 4 + 1), colorOf(0.5, 0, 1, 'viridis'));
  assert.deepEqual(canvas.pixel(b.x + 4 + 2, b.y + 4 + 2), colorOf(1, 0, 1, 'viridis'));
  assert.deepEqual(canvas.pixel(b.bar.x, b.bar.y), viridis(1));
  assert.deepEqual(canvas.pixel(b.bar.x, b.bar.y + b.bar.h - 1), viridis(0));
  // The tick labels put black ink right of the bar.
  let ink = 0;
  for (let y = b.bar.y; y < b.bar.y + b.bar.h; y++) for (let x = b.bar.x + b.bar.w; x < canvas.width; x++) if (canvas.pixel(x, y)[0] === 0) ink++;
  assert.ok(ink > 10);
  const png = PNG.sync.read(Buffer.from(heatmapPng([{ title: 'A', values, h: 2, w: 2 }, { title: 'B', values, h: 2, w: 2, colormap: 'gray' }])));
  assert.ok(png.width > 2 * 24 && png.height > 24);
});

test('canvas text: the glyph for 1 has its stem in the middle column', () => {
  const c = new Canvas(5, 7);
  c.text(0, 0, '1', 1);
  for (let y = 0; y < 6; y++) assert.deepEqual(c.pixel(2, y), [0, 0, 0]);
  assert.deepEqual(c.pixel(0, 0), [255, 255, 255]);
});

test('canvas text: an underscore (channel names such as snr_difference) is a bottom bar, not the unknown-glyph "?"', () => {
  const c = new Canvas(5, 7);
  c.text(0, 0, '_', 1);
  for (let x = 0; x < 5; x++) assert.deepEqual(c.pixel(x, 6), [0, 0, 0]);
  for (let y = 0; y < 6; y++) assert.deepEqual(c.pixel(2, y), [255, 255, 255]);
});
