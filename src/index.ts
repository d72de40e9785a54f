/**
 * occmap's public API: what `import ... from 'occmap'` gives. Re-exports only, no logic
 * (DESIGN.md: the api layer). Everything here is typed; docs/api.md shows it in use, and
 * every example there is a file under examples/ that the test suite runs.
 *
 * Nothing here loads onnxruntime-node at import time: ONNX Runtime is loaded on first use,
 * so a program that only trains on tfjs never opens the native library.
 */

// The attribution interface: one call shape, one output shape for every method.
//   const exact = new Occlusion(model, { patch: 3 });            // or { preset: 'captum' }
//   const expl = await Explainer.load('expl/', { model });
//   const a = await exact.attribute(images, { target: 'predicted' }); // { data, shape: [N,H,W], ... }
//   const b = await expl.attribute(images, { target: 'predicted' });
//   compareMaps(b, a).mean                                        // { mse, mae, ssim, pearson, spearman, iou }
export {
  fixedTargets,
  predictBatch,
  type Attribution,
  type AttributeOptions,
  type AttributionMethod,
  type TargetSpec,
} from './methods/attribution.js';
export { Occlusion, OCCLUSION_PRESETS, captumMismatch, occlusionSettings, type OcclusionOptions, type OcclusionPreset, type OcclusionSettings } from './methods/occlusion.js';
export { Explainer, type ExplainerLoadOptions } from './methods/explainer.js';
export { MeanMap, SnrSaliency, type MeanMapOptions, type SnrSaliencyOptions } from './methods/baselines.js';
export { toImageBatch, type ImageBatch, type ImagesInput, type NestedImages, type TensorLike } from './data/images.js';
export {
  compareMaps,
  compareMap,
  METRICS,
  METRIC_NAMES,
  ssimWindow,
  type Comparison,
  type CompareOptions,
  type MapComparison,
  type MapMetric,
  type MapsLike,
  type MapNormalize,
  type MapScore,
  type MetricInfo,
  type MetricMap,
  type MetricName,
  type MetricParams,
} from './metrics/compare.js';

// Models: any classifier occmap can run, as a Predictor (images in, probabilities out).
export { loadModel, loadPredictor, detectKind, fitToStamps, type LoadOptions, type ModelInput, type ModelKind, type PredictFn } from './models/load.js';
export { pretrained, pretrainedPaths, type PretrainedModels } from './models/pretrained.js';
export { ModelOutputError } from './models/predictor-head.js';
export { argmax, argmaxRows, selectChannels, type Predictor } from './models/predictor.js';
export { initTf, tf, tfl, type BackendChoice } from './runtime/tfjs.js';

// Exact occlusion maps (the engine every runner shares) and its pure geometry.
export {
  exactMaps,
  inferencesPerMap,
  inputMismatch,
  SEED_PARAMS,
  DEFAULT_BATCH_SIZE,
  type ExactOptions,
  type ExactProgress,
  type ExactResult,
  type OcclusionParams,
  type Normalize,
  type Score,
  type Target,
} from './occlusion/exact.js';
export { parsePatch, positions, normalizeSeed, type Aggregate, type Geometry } from './occlusion/geometry.js';

// The trained explainer (one-pass estimates) and its evaluation against exact maps.
export {
  loadExplainer,
  readExplainerCard,
  occlusionParamsOf,
  type Explainer as ExplainerModel,
  type ExplainerCard,
  type LoadExplainerOptions,
} from './explainer/estimate.js';
export { evaluateExplainer, type EvaluateOptions, type EvaluationResult, type MethodResult } from './explainer/evaluate.js';
export { readInput, readStampFile, type Input as StampInput } from './data/stamp-file.js';
export {
  readStampBytes,
  decodePngStamp,
  parseFits,
  interpretShape,
  expectFromCard,
  minMaxPerStamp,
  StampError,
  type StampExpect,
  type StampReadOptions,
  type Stamps,
} from './data/stamps.js';

// Metrics: pure functions over flat row-major maps.
export { mse, mae, pearson, spearman, ranks, ssim, topKIoU, topIndices, aucUniform, summarize, type SsimOptions, type Summary } from './metrics/maps.js';
export { deletionInsertion, curveImages, importanceOrder, type CurveOptions } from './metrics/faithfulness.js';

// Datasets: the occmap .npz format, numpy arrays, splits, the simulator.
export {
  readDataset,
  writeDataset,
  datasetFromArrays,
  subsetDataset,
  datasetSize,
  imageAt,
  type Dataset,
  type DatasetMeta,
  type WriteOptions,
} from './data/dataset.js';
export { parseNpy, serializeNpy, toFloat32, type NpyArray, type NumericArray } from './data/npy.js';
export { parseNpz, serializeNpz, type NpzContents, type NpzEntry } from './data/npz.js';
export { splitIndices, type Split } from './data/split.js';
export { simulateDataset, simulateStamp, type SimulateOptions, type SimulateResult } from './data/simulate.js';
export {
  buildHits2015,
  deriveHits2015,
  assembleHits2015,
  formatSummary as formatHits2015Summary,
  type Hits2015Options,
  type Hits2015Result,
  type Hits2015Derived,
  type Hits2015Summary,
} from './data/hits2015.js';

// Library jobs: each returns its results, writes files only when given `out`, and reports
// through callbacks (onProgress: items done / total; log / onEpoch), never to stdout.
//   const clf = await trainClassifier({ data: 'stamps.npz', epochs: 10, onProgress });
//   const maps = await occludeDataset({ model: 'clf/', data: 'stamps.npz', out: 'maps.npz', onProgress });
//   const expl = await trainExplainer({ data: maps.dataset, classifier: 'clf/', onEpoch });
export { trainClassifier, type TrainClassifierOptions, type TrainClassifierResult } from './models/train-classifier.js';
export type { TrainedClassifier, ValidationReport } from './models/classifier.js';
export { trainExplainer, type TrainExplainerOptions, type TrainedExplainer, type ExplainerVariant } from './explainer/train.js';
export type { EpochRecord, TrainResult } from './train/loop.js';
export { occludeDataset, type OccludeDatasetOptions, type OccludeDatasetResult, type OccludeQueueOptions, type OccludeSummary } from './occlusion/job.js';
export { deriveHoldout, holdoutOfModelDir, holdoutOfIds, applyHoldout, type Holdout } from './data/holdout.js';
export type { ProgressCallback, ProgressEvent } from './util/progress.js';

// Models occmap builds, and the tfjs -> ONNX exporter.
export { buildClassifier, type ClassifierOptions } from './models/classifier.js';
export { buildAutoencoder, type AutoencoderOptions, type Condition } from './models/autoencoder.js';
export { modelToOnnx, exportModelToOnnx, type OnnxExportOptions, type OnnxExportInfo } from './models/to-onnx.js';

// Figures.
export { heatmapPng, renderFigure, type Panel, type FigureOptions, type Colormap } from './viz/heatmap.js';

// Errors the library throws for bad input (message names the field or file and the problem).
export { UserError, OptionError, fileError, flagOf } from './util/errors.js';
