/**
 * A stamp dropped on the page, read by the one stamp reader of the CLI, the server and the
 * library (src/data/stamps.ts through src/serve/stamp.ts): .npy, PNG (16-bit exactly: decoded
 * in JavaScript, not by the browser's 8-bit image decoder), FITS / .fits.gz, JSON.
 */
import { checkStamp, stampFromFile, type ChannelKind, type StampSpec } from '../serve/stamp.js';

export interface Upload {
  image: Float32Array;
  h: number;
  w: number;
  c: number;
  kind: ChannelKind;
  notes: string[];
}

export async function readUpload(name: string, bytes: Uint8Array, spec: StampSpec): Promise<Upload> {
  try {
    const stamp = stampFromFile(bytes, name, spec);
    const kind = checkStamp(stamp, spec);
    return { ...stamp, kind, notes: stamp.warnings ?? [] };
  } catch (err) {
    throw new Error(`${name}: ${(err as Error).message.replace(/^the file /, '')}`);
  }
}
