/**
 * Which class a map is drawn for, pure: the conditioning class of a conditioned explainer and
 * the matching exact-map target. One definition for the server, the CLI and the browser viewer,
 * so an estimate and its exact map always explain the same class.
 */
import type { ExactOptions, OcclusionParams } from '../occlusion/exact.js';
import type { ExplainerCard } from './runner.js';

export interface ClassChoice {
  class: number;
  /** Where the class came from: the request's label, the classifier's prediction, or fixed by the card. */
  source: 'label' | 'predicted' | 'fixed';
}

/**
 * The class a conditioned explainer draws the map for, as it was trained: a fixed class, the
 * given label when it was trained on labels, else the classifier's prediction.
 */
export function conditionClass(card: ExplainerCard, label: number | undefined, predicted: number): ClassChoice | undefined {
  if (card.condition === 'none') return undefined;
  if (typeof card.conditionOn === 'number') return { class: card.conditionOn, source: 'fixed' };
  if (label !== undefined && card.conditionOn !== 'predicted') return { class: label, source: 'label' };
  return { class: predicted, source: 'predicted' };
}

/**
 * The exact map's target, matching the estimate: its conditioning class, else the occlusion
 * target the explainer's training maps had (the label when given, else the prediction).
 */
export function exactTarget(
  params: OcclusionParams,
  cond: ClassChoice | undefined,
  label: number | undefined,
  predicted: number,
): { opts: Pick<ExactOptions, 'target' | 'labels'>; source: ClassChoice['source'] } {
  if (cond) return { opts: { target: 'label', labels: Int32Array.of(cond.class) }, source: cond.source };
  if (params.target === 'label') return { opts: { target: 'label', labels: Int32Array.of(label ?? predicted) }, source: label !== undefined ? 'label' : 'predicted' };
  return { opts: { target: params.target }, source: typeof params.target === 'number' ? 'fixed' : 'predicted' };
}
