/**
 * What an experiments run hands the report writer (and writes as results.json). Everything the
 * report shows is in here, so the report can be rebuilt from results.json alone and the writer
 * is tested on a synthetic object.
 */
import type { Condition } from '../models/autoencoder.js';
import type { DataKey, ExpTag, PresetName } from './plan.js';

export const RESULTS_SCHEMA = 'occmap-experiments/1';

export interface MetricSummary {
  mean: number;
  std: number;
  n: number;
}

/** One method's held-out figures (explainer, or a baseline). */
export type MethodMetrics = Partial<Record<'mse' | 'mae' | 'ssim' | 'pearson' | 'spearman' | 'spearmanTop' | 'iou' | 'deletion' | 'insertion' | 'deletionGap' | 'insertionGap', MetricSummary>>;

export interface Example {
  /** Row in the run's maps dataset. */
  index: number;
  id?: string;
  label?: number;
  mse: number;
  /** h*w values each: the channel the explainer reads, the exact map, the estimate. */
  input: number[];
  /** Name of the input channel shown (e.g. snr_difference). */
  channel?: string;
  exact: number[];
  estimate: number[];
}

export interface RunResult {
  name: string;
  experiments: ExpTag[];
  variant: 'normal' | 'frozen' | 'unet';
  condition: Condition;
  cut: 0 | 1 | 2;
  data: DataKey;
  seed: number;
  /** Relative to the output directory. */
  dir: string;
  parameters: { total: number; trainable: number; nonTrainable: number };
  epochsRun: number;
  bestEpoch: number;
  stoppedEarly: boolean;
  trainSeconds: number;
  trainCount: number;
  valCount: number;
  /** Per epoch, the training loop's losses on the 24x24 padded maps (loss = MSE). */
  history: { epoch: number; loss: number; valLoss: number }[];
  /** Per-map MSE on the 21x21 maps with the kept (best) weights, averaged: the tables' figure. */
  mse: { train: number; val: number };
  /** Held-out figures from evaluate: the explainer and the baselines on the same maps. */
  metrics: { explainer: MethodMetrics; meanMap?: MethodMetrics; snrSaliency?: MethodMetrics; exactMap?: MethodMetrics };
}

export interface TimingResult {
  maps: number;
  classifierEngine: string;
  explainerEngine: string;
  inferencesPerMap: number;
  /** Seconds per map when many maps are computed together (batched throughput). */
  exactPerMap: number;
  estimatedPerMap: number;
  /** One stamp alone, end to end (median of repeats). */
  exactLatency: number;
  estimatedLatency: number;
  speedupThroughput: number;
  speedupLatency: number;
  /** The occlusion job of this run (all maps), for reference. */
  occlusionJob?: { maps: number; seconds: number; mapsPerSecond: number; inferencesPerSecond: number } | null;
  note: string;
}

export interface LayerRow {
  name: string;
  type: string;
  outputShape: string;
  params: number;
  trainable: boolean;
}

export interface Invocation {
  startedAt: string;
  wallSeconds: number;
  trained: number;
  evaluated: number;
  mapsComputed: number;
  classifierTrained: boolean;
  command: string;
}

export interface ExperimentResults {
  schema: typeof RESULTS_SCHEMA;
  preset: PresetName;
  presetDescription: string;
  command: string;
  createdAt: string;
  seed: number;
  versions: Record<string, string>;
  settings: {
    batchSize: number;
    patience: number;
    valFraction: number;
    maxEpochs: number;
    loss: string;
    optimizer: string;
    repeats: number;
    occlusion: string;
  };
  data: {
    file: string;
    source?: string;
    stamps: number;
    supernova: number;
    nonSupernova: number;
    objects?: number;
    classes?: string[];
    /** Maps per dataset of the study and how many of them are held out. */
    datasets: Record<DataKey, { maps: number; heldOut: number; objects: number; heldOutObjects: number }>;
  };
  classifier: {
    dir: string;
    trainedHere: boolean;
    valAccuracy?: number;
    valBalancedAccuracy?: number;
    confusion?: number[][];
    parameters?: number;
    heldOut?: number;
    epochs?: number;
    /** Its card's validation set holds out every object the study holds out (a classifier trained here does). */
    holdsOutStudyObjects?: boolean;
  };
  occlusion: { maps: number; inferencesPerMap: number; engine?: string; seconds?: number; reused: boolean };
  runs: RunResult[];
  exp1?: { bestSn: string; bestNonSn: string; bestOverall: string };
  exp2?: { best: string };
  exp3?: { runs: string[]; best: string };
  exp4?: { groups: { key: 'bestSn' | 'bestConditioned'; base: string; runs: string[]; train: MetricSummary; val: MetricSummary }[]; best: string };
  demo?: { run: string };
  /** Best and worst held-out examples per featured run. */
  examples: { run: string; title: string; best: Example[]; worst: Example[]; h: number; w: number }[];
  layers?: { run: string; rows: LayerRow[] };
  timing?: TimingResult;
  /** Wall seconds of each phase of this invocation (0 when skipped). */
  phases: Record<string, number>;
  wallSeconds: number;
  /** The study's steps (steps.ts): those run by this invocation, and seconds per step (run or skipped). */
  steps?: { ran: string[]; seconds: Record<string, number> };
  /** Every invocation on this directory so far, oldest first (this one last). */
  invocations?: Invocation[];
  notes: string[];
}
