/**
 * The seed's claim, measured: an exact map costs (positions + 1) classifier inferences, an
 * estimated map one explainer inference (plus, for a conditioned explainer, the one classifier
 * inference that gives the class it is conditioned on). Both sides run on the same engine
 * (ONNX Runtime when the exports are current) on the same held-out stamps, after a warm-up.
 */
import type { Explainer } from '../explainer/estimate.js';
import { argmaxRows, selectChannels, type Predictor } from '../models/predictor.js';
import { exactMaps, inferencesPerMap, SEED_PARAMS } from '../occlusion/exact.js';
import type { TimingResult } from './results.js';

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Seconds per call of `fn`, repeated until at least `minSeconds` have passed (at least once). */
async function perCall(fn: () => Promise<unknown>, minSeconds: number): Promise<number> {
  let calls = 0;
  const t0 = performance.now();
  do {
    await fn();
    calls++;
  } while ((performance.now() - t0) / 1000 < minSeconds);
  return (performance.now() - t0) / 1000 / calls;
}

export async function measureTiming(
  classifier: Predictor,
  explainer: Explainer,
  images: Float32Array,
  shape: [number, number, number, number],
  o: { latencyRepeats?: number; estimateRepeats?: number; minSeconds?: number } = {},
): Promise<TimingResult> {
  const [n, h, w, c] = shape;
  const px = h * w * c;
  const one = images.subarray(0, px);
  const oneShape: [number, number, number, number] = [1, h, w, c];
  const conditioned = explainer.card.condition !== 'none';
  const k = classifier.numClasses;
  const clfIn = selectChannels(images, n, h, w, c, classifier.channels);
  const clfPx = h * w * classifier.inputShape[2];

  // The estimate as a user gets it: one call of the fused classifier -> explainer graph when
  // the explainer holds this classifier, else (the class, when conditioned) then the explainer.
  const fused = conditioned && explainer.fusedClassifierHash !== undefined && explainer.fusedClassifierHash === classifier.hash;
  const estimate = async (x: Float32Array, xin: Float32Array, m: number) => {
    if (fused) return explainer.estimate(x, [m, h, w, c]);
    let labels: Int32Array | undefined;
    if (conditioned) labels = argmaxRows(await classifier.predict(xin, m), m, k);
    return explainer.estimate(x, [m, h, w, c], labels);
  };

  await exactMaps(classifier, one, oneShape, SEED_PARAMS);
  await estimate(one, clfIn.subarray(0, clfPx), 1);

  const minSeconds = o.minSeconds ?? 0.5;
  const t0 = performance.now();
  await exactMaps(classifier, images, shape, SEED_PARAMS);
  const exactPerMap = (performance.now() - t0) / 1000 / n;
  const estimatedPerMap = (await perCall(() => estimate(images, clfIn, n), minSeconds)) / n;

  // One stamp alone, each side in a loop of its own, as a user running one of them gets it.
  // Alternating them (an exact map, then an estimate) measured the estimate 2-9x slower: the
  // classifier session's intra-op threads still spin for work after the exact map and take
  // the cores from the estimate's session (measured on the demo's models: 3.1-11.3 ms right
  // after an exact map, 1.3-1.7 ms in a loop of its own).
  const repeats = o.latencyRepeats ?? 5;
  const estRepeats = Math.max(repeats, o.estimateRepeats ?? 30);
  const stamp = (r: number) => {
    const i = r % n;
    return { img: images.subarray(i * px, (i + 1) * px), clf: clfIn.subarray(i * clfPx, (i + 1) * clfPx) };
  };
  const exactLat: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const { img } = stamp(r);
    const t = performance.now();
    await exactMaps(classifier, img, oneShape, SEED_PARAMS);
    exactLat.push((performance.now() - t) / 1000);
  }
  const estLat: number[] = [];
  await estimate(stamp(0).img, stamp(0).clf, 1);
  for (let r = 0; r < estRepeats; r++) {
    const { img, clf } = stamp(r);
    const t = performance.now();
    await estimate(img, clf, 1);
    estLat.push((performance.now() - t) / 1000);
  }
  const exactLatency = median(exactLat);
  const estimatedLatency = median(estLat);
  return {
    maps: n,
    classifierEngine: classifier.engine,
    explainerEngine: explainer.engine,
    inferencesPerMap: inferencesPerMap(SEED_PARAMS, h, w),
    exactPerMap,
    estimatedPerMap,
    exactLatency,
    estimatedLatency,
    speedupThroughput: exactPerMap / estimatedPerMap,
    speedupLatency: exactLatency / estimatedLatency,
    note:
      `${n} held-out stamps; exact = the seed's occlusion (${inferencesPerMap(SEED_PARAMS, h, w)} classifier inferences per map, batched); ` +
      `estimated = ${fused ? 'one call of the fused classifier -> class -> explainer graph; ' : `${conditioned ? 'one classifier inference for the class it is conditioned on + ' : ''}one explainer inference; `}` +
      `latency = one stamp alone, each side in a loop of its own: median of ${repeats} exact maps, of ${estRepeats} estimates; after a warm-up call each; the machine was shared with other work`,
  };
}
