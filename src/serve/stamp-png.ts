/**
 * A PNG request body as a stamp. Apart from src/serve/stamp.ts because PNG decoding (pngjs)
 * needs Node, while stamp.ts is pure and bundled for the browser viewer.
 */
import { readPngStamp } from '../data/stamps.js';
import { UserError } from '../util/errors.js';
import { HttpError, type Stamp } from './stamp.js';

const bad = (message: string): HttpError => new HttpError(400, message);

export function stampFromPng(bytes: Uint8Array): Stamp {
  try {
    const { images, shape } = readPngStamp('PNG body', bytes);
    return { image: images, h: shape[1], w: shape[2], c: shape[3] };
  } catch (err) {
    if (err instanceof UserError) throw bad(err.message);
    throw err;
  }
}
