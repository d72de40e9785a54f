/**
 * What the browser viewer is told about its models and data (occmap.json): written by
 * `occmap export-web` beside the files, and served by `occmap serve` at /occmap.json. Types
 * only, shared by the Node side that writes it (src/serve/manifest.ts) and the page that reads it.
 * URLs are relative to the manifest's own URL.
 */
import type { OcclusionParams } from '../occlusion/exact.js';
import type { ExplainerCard } from '../explainer/runner.js';

export const MANIFEST_VERSION = 1;

export interface ClassifierManifest {
  url: string;
  /** Model input [H, W, C] (NHWC) as the Predictor sees it. */
  inputShape: [number, number, number];
  numClasses: number;
  classes: string[];
  /** Dataset channels the classifier reads (undefined: all of the stamp's). */
  channels?: number[];
  /** Names of the channels it reads, for the page. */
  channelNames?: string[];
  /** The ONNX graph's input layout and what its first output holds. */
  layout: 'NHWC' | 'NCHW';
  outputs: 'probs' | 'logits';
  /** Units of the raw output (1: a binary sigmoid, expanded to two classes). */
  units: number;
  /** A fixed batch dimension of the graph, when it has one. */
  fixedBatch?: number;
  hash: string;
  name: string;
  bytes: number;
}

export interface ExplainerManifest {
  /** One ONNX file per member (one for a single model). */
  urls: string[];
  /**
   * The fused classifier -> explainer graph (one session call per conditioned estimate:
   * probabilities and map together), when the explainer directory has one.
   */
  fused?: { url: string; bytes: number };
  card: ExplainerCard;
  name: string;
  bytes: number;
}

export interface DataManifest {
  /** The dataset .npz (occmap's format, read in the page by the library's parser). */
  url: string;
  name: string;
  bytes: number;
  /** [N, H, W, C] */
  shape: [number, number, number, number];
  channels: string[];
  classes: string[] | null;
  hasLabels: boolean;
  hasMaps: boolean;
  /**
   * Which of these stamps the explainer was trained on: 'file' when this is the file it was
   * trained on (same sha256): heldOut lists held-out rows, every other row was a training row
   * (or, with trainedOnAll false, may not have been used at all); 'ids' when another file shares
   * object ids with the held-out objects; 'unknown' otherwise.
   */
  split: {
    basis: 'file' | 'ids' | 'unknown';
    heldOut: number[];
    trainedOnAll: boolean;
    note: string;
  };
}

/** Per data channel of the training data: value range, for the out-of-range warning on uploads. */
export interface ChannelRange {
  name: string;
  min: number;
  max: number;
  /** 0.1 and 99.9 percentiles. */
  p001: number;
  p999: number;
}

export interface Manifest {
  version: number;
  createdAt: string;
  classifier: ClassifierManifest;
  explainer: ExplainerManifest;
  /** The occlusion parameters the explainer's training maps were made with. */
  exact: { params: OcclusionParams; inferencesPerMap: number };
  data: DataManifest | null;
  /** Training data's ranges, by data channel; null when it could not be read. */
  training: { source: string; rows: number; channels: ChannelRange[] } | null;
  /** The server's API when `occmap serve` serves the page (the static export has none). */
  server: { explain: string } | null;
  /** onnxruntime-web's files (ort.wasm.min.mjs, the .wasm and its loader). */
  ort: { base: string; version: string };
}
