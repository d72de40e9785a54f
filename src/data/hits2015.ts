/**
 * The HiTS 2015 stamp dataset: from the shipped science-stamp time series (data/hits2015)
 * derive, per epoch, the seed's four image types (template, science, difference, SNR
 * difference) and a supernova / not-supernova label. docs/data.md explains every choice.
 *
 * The processing is blind to the object class: every object goes through the same sky
 * subtraction, reference epochs, photometric scaling and PSF matching, so a classifier
 * trained on the result cannot learn the processing instead of the sky. Only the label uses
 * the class (a supernova epoch with a central detection is label 1).
 *
 * The work lives in hits2015/, one module per job: stamp-math.ts (pure stamp statistics,
 * blur, PSF fit, normalisation), difference.ts (exposures, registration, PSF-matched
 * subtraction, detection), archive.ts (reading stamps.npz), calibration.ts (exposure scale
 * and seeing from constant stars), derive.ts (the per-epoch derivation), build.ts (balance,
 * augmentation, the dataset and its summary). This module is their public face.
 */
export { HITS_CLASSES, CHANNELS, LABEL_NAMES, DROP_REASONS, parseClasses, type HitsClass, type DropReason } from './hits2015/classes.js';
export {
  framePixels,
  median,
  robustSigma,
  skyStats,
  hasBadPixels,
  gaussianKernel1d,
  convolveSeparable,
  fitGaussianPsf,
  medianStack,
  minMaxNormalise,
  packChannels,
  dihedral,
  type PsfFit,
} from './hits2015/stamp-math.js';
export {
  scienceExposure,
  templateExposure,
  shiftImage,
  registrationShift,
  subtract,
  centralDetection,
  type Exposure,
  type Difference,
  type RegistrationOptions,
  type Detection,
} from './hits2015/difference.js';
export { defaultArchivePath, readHits2015Archive, type Hits2015Archive } from './hits2015/archive.js';
export { Calibration, type CalibrationOptions, type ExposureConditions } from './hits2015/calibration.js';
export type { Hits2015Options, ClassCounts, Hits2015Summary, StampInfo, Hits2015Result, Hits2015Derived } from './hits2015/types.js';
export { deriveHits2015 } from './hits2015/derive.js';
export { assembleHits2015, augmentTransforms, buildHits2015, formatSummary } from './hits2015/build.js';
