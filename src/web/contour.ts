/**
 * The outline of a map's most important region, pure: the pixel-edge boundary of the top
 * fraction of pixels (the same set the top-10% IoU metric compares), as an SVG path in pixel
 * units (viewBox 0 0 w h), so the page can lay it over any stamp panel at any zoom.
 */
import { importanceOf, type MapScore as Score } from '../metrics/compare.js';
import { topIndices } from '../metrics/maps.js';

/** Membership mask (h*w, 1 = in) of the `fraction` most important pixels of `map`. */
export function importantMask(map: ArrayLike<number>, score: Score, fraction = 0.1): Uint8Array {
  const mask = new Uint8Array(map.length);
  for (const i of topIndices(importanceOf(map, score), fraction)) mask[i] = 1;
  return mask;
}

/**
 * Boundary edges of a mask: every side of an in-pixel whose neighbour is out (or off the
 * image), merged along rows and columns into straight runs. Returns an SVG path ('M x y H x'
 * horizontal runs, 'M x y V y' vertical runs).
 */
export function outlinePath(mask: ArrayLike<number>, h: number, w: number): string {
  const at = (y: number, x: number): boolean => y >= 0 && y < h && x >= 0 && x < w && mask[y * w + x] === 1;
  const parts: string[] = [];
  // Horizontal edges lie on grid line y (between rows y-1 and y): an edge where exactly one side is in.
  for (let y = 0; y <= h; y++) {
    let start = -1;
    for (let x = 0; x <= w; x++) {
      const edge = x < w && at(y - 1, x) !== at(y, x);
      if (edge && start < 0) start = x;
      if (!edge && start >= 0) {
        parts.push(`M${start} ${y}H${x}`);
        start = -1;
      }
    }
  }
  for (let x = 0; x <= w; x++) {
    let start = -1;
    for (let y = 0; y <= h; y++) {
      const edge = y < h && at(y, x - 1) !== at(y, x);
      if (edge && start < 0) start = y;
      if (!edge && start >= 0) {
        parts.push(`M${x} ${start}V${y}`);
        start = -1;
      }
    }
  }
  return parts.join('');
}
