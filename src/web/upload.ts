/**
 * A stamp dropped on the page: .npy through the library's parser and stamp shape rules
 * (src/data/npy.ts, src/serve/stamp.ts, the same as POST /explain), or a greyscale PNG.
 */
import { binaryKind, checkStamp, stampFromArray, stampFromNpy, type ChannelKind, type StampSpec } from '../serve/stamp.js';

export interface Upload {
  image: Float32Array;
  h: number;
  w: number;
  c: number;
  kind: ChannelKind;
  notes: string[];
}

/**
 * Greyscale PNG pixels / (2^depth - 1), as `occmap explain` reads them. The browser's decoder
 * gives 8 bits per sample: a 16-bit PNG loses its low byte here (said in a note), unlike in Node.
 */
async function pngPixels(bytes: Uint8Array): Promise<{ data: Float32Array; h: number; w: number; notes: string[] }> {
  const depth = bytes.length > 24 ? bytes[24] : 8;
  const bitmap = await createImageBitmap(new Blob([bytes as BlobPart], { type: 'image/png' }), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const { width: w, height: h } = bitmap;
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext('2d')!;
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const data = new Float32Array(h * w);
  for (let p = 0; p < h * w; p++) {
    const [r, g, b] = [rgba[4 * p], rgba[4 * p + 1], rgba[4 * p + 2]];
    if (r !== g || g !== b) throw new Error(`a colour PNG (pixel ${p % w},${Math.floor(p / w)}); the viewer reads single-channel (greyscale) PNGs`);
    data[p] = r / 255;
  }
  const notes = depth === 16 ? ['16-bit PNG read at 8 bits by the browser (values rounded to 1/255)'] : [];
  return { data, h, w, notes };
}

export async function readUpload(name: string, bytes: Uint8Array, spec: StampSpec): Promise<Upload> {
  try {
    const isPng = binaryKind(/\.png$/i.test(name) ? 'image/png' : '', bytes) === 'png';
    let stamp;
    let notes: string[] = [];
    if (isPng) {
      const px = await pngPixels(bytes);
      stamp = stampFromArray(px.data, [px.h, px.w], spec, 'the PNG');
      notes = px.notes;
    } else {
      stamp = stampFromNpy(bytes, spec);
    }
    const kind = checkStamp(stamp, spec);
    return { ...stamp, kind, notes };
  } catch (err) {
    throw new Error(`${name}: ${(err as Error).message.replace(/^body is /, 'is ')}`);
  }
}
