/**
 * Whether the explainer can read a stamp the classifier accepts, pure: shared by the server and
 * the browser viewer, so both refuse the same stamps with the same words.
 */
import type { ExplainerCard } from '../explainer/runner.js';
import type { Predictor } from '../models/predictor.js';
import { UserError } from '../util/errors.js';
import { checkStamp, type ChannelKind, type StampSpec } from './stamp.js';

function sameChannels(a: readonly number[] | undefined, b: readonly number[] | undefined): boolean {
  if (!a || !b) return a === b;
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Why the explainer cannot read a stamp the classifier accepts, or null. */
export function explainerProblem(explainer: { card: ExplainerCard }, predictor: Pick<Predictor, 'inputShape' | 'channels'>, kind: ChannelKind, c: number): string | null {
  const ch = explainer.card.channels;
  const C = ch?.length ?? Number((explainer.card.inputShape as number[] | undefined)?.[2]);
  if (kind === 'model') {
    if (C === predictor.inputShape[2] && sameChannels(ch, predictor.channels)) return null;
    return `the explainer reads data channel(s) [${ch?.join(',') ?? '?'}], the classifier [${predictor.channels?.join(',') ?? 'all'}]: send the stamp with all the data's channels`;
  }
  if ((ch && ch.every((k) => k < c)) || c === C) return null;
  return `the explainer reads data channel(s) [${ch?.join(',') ?? '?'}] but the stamp has ${c} channel(s)`;
}

/**
 * The checks that a classifier, an explainer and (optionally) a dataset work together, with
 * one-line errors naming the file at fault. Returns what a stamp must look like.
 */
export function checkModelsFit(
  files: { classifier: string; explainer: string; data?: string },
  predictor: Pick<Predictor, 'inputShape' | 'channels' | 'numClasses'>,
  explainer: { card: ExplainerCard },
  dataset?: { shape: readonly number[] },
): StampSpec {
  const card = explainer.card;
  const [h, w, mc] = predictor.inputShape;
  if (card.numClasses !== predictor.numClasses) {
    throw new UserError(`${files.explainer}: the explainer draws maps for ${card.numClasses} classes, the classifier ${files.classifier} has ${predictor.numClasses}`);
  }
  const imageSize = card.imageSize as number[] | undefined;
  if (Array.isArray(imageSize) && (imageSize[0] !== h || imageSize[1] !== w)) {
    throw new UserError(`${files.explainer}: the explainer was trained on ${imageSize[0]}x${imageSize[1]} stamps, the classifier ${files.classifier} takes ${h}x${w}`);
  }
  const spec: StampSpec = { h, w, modelChannels: mc, dataChannels: predictor.channels, datasetChannels: dataset?.shape[3] };
  if (dataset) {
    const [, dh, dw, dc] = dataset.shape;
    const reads = predictor.channels;
    if (reads && !reads.every((k) => k < dc) && dc !== mc) {
      throw new UserError(
        `${files.data}: has ${dc} channel(s), but the classifier ${files.classifier} reads data channel(s) [${reads.join(',')}] (it was trained on data with more channels): serve a dataset with those channels, or stamps of the classifier's own ${mc}`,
      );
    }
    try {
      checkStamp({ image: new Float32Array(0), h: dh, w: dw, c: dc }, spec);
    } catch (err) {
      throw new UserError(`${files.data}: ${(err as Error).message.replace(/^the stamp/, 'its stamps')}`);
    }
    const problem = explainerProblem(explainer, predictor, 'data', dc);
    if (problem) throw new UserError(`${files.data}: ${problem}`);
  }
  return spec;
}
