/**
 * NumPy `.npz` archives (a zip of `.npy` members), the container of every occmap dataset.
 * Members that are not `.npy` (such as `meta.json`) are kept as raw bytes, as numpy does.
 */
import { unzipSync, zipSync, type Zippable } from 'fflate';
import { parseNpy, serializeNpy, type NpyArray, type NumericArray, NpyFormatError } from './npy.js';

export interface NpzContents {
  arrays: Map<string, NpyArray>;
  /** Non-array members by file name. */
  files: Map<string, Uint8Array>;
}

/** Deflate's largest possible expansion (258-byte matches coded in 2 bits). */
const MAX_DEFLATE_RATIO = 1032;

export function parseNpz(bytes: Uint8Array): NpzContents {
  if (bytes.length < 4 || bytes[0] !== 0x50 || bytes[1] !== 0x4b) {
    throw new NpyFormatError('not a .npz file (not a zip archive)');
  }
  let entries: Record<string, Uint8Array>;
  let bomb: string | null = null;
  try {
    entries = unzipSync(bytes, {
      // The sizes a member declares are checked before it is inflated: deflate cannot expand
      // more than 1032:1, so a larger claim is a crafted archive that would only exhaust memory.
      filter: (f) => {
        if (f.originalSize > f.size * MAX_DEFLATE_RATIO + 1024 || (f.compression === 0 && f.originalSize !== f.size)) {
          bomb ??= `member ${f.name} claims ${f.originalSize} bytes from ${f.size} stored: a malformed or malicious archive, not read`;
        }
        return bomb === null;
      },
    });
  } catch (err) {
    throw new NpyFormatError(`corrupt or truncated zip archive (${(err as Error).message})`);
  }
  if (bomb) throw new NpyFormatError(bomb);
  const arrays = new Map<string, NpyArray>();
  const files = new Map<string, Uint8Array>();
  for (const [name, data] of Object.entries(entries)) {
    if (name.endsWith('.npy')) {
      try {
        arrays.set(name.slice(0, -4), parseNpy(data));
      } catch (err) {
        throw new NpyFormatError(`member ${name}: ${(err as Error).message}`);
      }
    } else {
      files.set(name, data);
    }
  }
  return { arrays, files };
}

const FIXED_MTIME = new Date(Date.UTC(1980, 0, 1, 12));

export interface NpzEntry {
  data: NumericArray | string[];
  shape: readonly number[];
}

/**
 * Build an `.npz`. `level` 0 stores (fast, numpy's `savez`); 1-9 deflate (numpy's
 * `savez_compressed`); both load with `numpy.load`.
 */
export function serializeNpz(
  arrays: Record<string, NpzEntry>,
  files: Record<string, Uint8Array | string> = {},
  level: 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 = 0,
): Uint8Array {
  const z: Zippable = {};
  // A fixed entry time: the same arrays always give the same bytes (resumed jobs, caches).
  const opts = { level, mtime: FIXED_MTIME };
  for (const [name, a] of Object.entries(arrays)) z[`${name}.npy`] = [serializeNpy(a.data, a.shape), opts];
  for (const [name, f] of Object.entries(files)) {
    z[name] = [typeof f === 'string' ? new TextEncoder().encode(f) : f, opts];
  }
  return zipSync(z);
}
