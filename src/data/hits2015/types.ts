/** Options and results of the HiTS 2015 dataset build. */
import type { Dataset } from '../dataset.js';
import type { ProgressCallback } from '../../util/progress.js';
import type { Hits2015Archive } from './archive.js';
import type { DropReason } from './classes.js';

export interface Hits2015Options {
  /** Path of stamps.npz (default: the copy shipped in the package). */
  source?: string;
  /** A preloaded archive (tests; overrides `source`). */
  archive?: Hits2015Archive;
  /** Object classes to use (default all four). */
  classes?: string[];
  balance?: 'none' | 'undersample';
  /** Rotation/flip copies: none, rot (x4 quarter turns), dihedral (x8 with flips). */
  augment?: 'none' | 'rot' | 'dihedral';
  /**
   * Labels whose stamps get the rotation/flip copies (default: every label). [1] augments
   * only the rare supernova class: more of it to learn from without repeating the majority.
   */
  augmentLabels?: number[];
  seed?: number;
  /** Detection threshold: box-aperture SNR of the difference at the centre. */
  detectionSnr?: number;
  /** Supernova epochs without a detection: dropped (default) or labelled not-supernova. */
  snUndetected?: 'drop' | 'negative';
  /** How many of the object's first good epochs make its template. */
  templateEpochs?: number;
  /** The command line, recorded in meta.json. */
  command?: string;
  /** Progress of the derivation (objects); nothing is printed. */
  onProgress?: ProgressCallback;
  /** Kept for old callers; progress only goes to onProgress. */
  quiet?: boolean;
  /** Sub-pixel registration of the template on a significant central source (default on). */
  register?: boolean;
}

export interface ClassCounts {
  objects: number;
  epochs: number;
  kept: number;
  dropped: Record<DropReason, number>;
  label0: number;
  label1: number;
}

export interface Hits2015Summary {
  byClass: Record<string, ClassCounts>;
  total: ClassCounts;
  /** After --balance: stamps per label (null when not balanced). */
  balanced: { label0: number; label1: number } | null;
  augmentFactor: number;
  /** Labels that got the copies (undefined: all). */
  augmentLabels?: number[];
  final: { n: number; label0: number; label1: number; objects: number };
}

/** Per-stamp provenance, aligned with the output dataset. */
export interface StampInfo {
  object: string[];
  objectClass: string[];
  mjd: Float64Array;
  detectionSnr: Float32Array;
  /** Exposure flux scale and seeing (Gaussian sigma, px) used, and the template's seeing. */
  scale: Float32Array;
  seeing: Float32Array;
  templateSeeing: Float32Array;
}

export interface Hits2015Result {
  dataset: Dataset;
  summary: Hits2015Summary;
  stamps: StampInfo;
}

export interface Hits2015Derived {
  h: number;
  w: number;
  /** One HWC stamp (4 channels, normalised) per kept epoch, archive order. */
  images: Float32Array[];
  labels: number[];
  info: {
    object: string[];
    objectClass: string[];
    mjd: number[];
    snr: number[];
    scale: number[];
    seeing: number[];
    templateSeeing: number[];
  };
  byClass: Record<string, ClassCounts>;
  total: ClassCounts;
  /** Parameters and calibration statistics, for meta.json. */
  derivation: Record<string, unknown>;
}
