/** The HiTS 2015 object classes, the four image channels and the label names of the dataset. */
import { OptionError, UserError } from '../../util/errors.js';

export const HITS_CLASSES = ['supernova', 'constant', 'eclipsing_binary', 'rr_lyrae'] as const;
export type HitsClass = (typeof HITS_CLASSES)[number];
export const CHANNELS = ['template', 'science', 'difference', 'snr_difference'];
export const LABEL_NAMES = ['not_supernova', 'supernova'];
export const DROP_REASONS = ['bad_pixels', 'no_calibration', 'no_template', 'sn_no_detection'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export function parseClasses(list: string | string[] | undefined): HitsClass[] {
  if (list === undefined) return [...HITS_CLASSES];
  const items = (Array.isArray(list) ? list : list.split(',')).map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new OptionError(['classes'], 'is empty');
  for (const c of items) {
    if (!(HITS_CLASSES as readonly string[]).includes(c)) {
      throw new UserError(`unknown class '${c}' (choose from ${HITS_CLASSES.join(', ')})`);
    }
  }
  return [...new Set(items)] as HitsClass[];
}

