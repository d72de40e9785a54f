import type { NpyArray } from './npy.js';
import { UserError } from '../util/errors.js';

/** Placeholder until the pickle reader lands. */
export function readHits2013Pickle(_bytes: Uint8Array): Map<string, NpyArray> {
  throw new UserError('HiTS 2013 pickle import is not implemented yet');
}
